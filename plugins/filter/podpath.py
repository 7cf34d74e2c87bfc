# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""podpath_plan: from the topology to every argument of the netns lab's modules.

Runs in ansible-playbook's own process, which must import the podpath package (the
project's .venv). This is where the topology is checked, once per play, whichever way
the play was started: the checks' error names the value and the fix, after
topology.REFUSED, so that `podpath up` can tell a refused topology from a failed task.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    from podpath.model import kubeproxy, plan, topology, workloads
    from podpath.model.labdir import check_lab_name
    IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover
    IMPORT_ERROR = exc


def podpath_plan(topo, lab, python):
    """Validate TOPO and return {netns, kube_proxy: {mode, rules}, containers} for lab LAB.

    PYTHON is the interpreter that runs the lab's Python daemons (the node processes); the
    programs of podpath's builder are beside it: podpath-ingress (the ingress controllers') and
    podpath-speaker (podpath.model.workloads).
    """
    if IMPORT_ERROR is not None:
        raise AnsibleFilterError("the podpath package is not importable (%s): run make venv, and run "
                                 "ansible-playbook from the project's .venv" % IMPORT_ERROR)
    error = check_lab_name(lab)
    if error:
        raise AnsibleFilterError(error)
    try:
        topology.validate(topo)
    except topology.TopologyError as exc:
        raise AnsibleFilterError(topology.REFUSED + str(exc))
    lab_plan = plan.build(topo, lab)
    return {
        "netns": plan.netns_spec(lab_plan),
        "kube_proxy": {"mode": lab_plan.kube_proxy_mode,
                       "rules": {node.netns: kubeproxy.render(lab_plan, node.name) for node in lab_plan.nodes}},
        "containers": workloads.render(lab_plan, python),
    }


class FilterModule:
    def filters(self):
        return {"podpath_plan": podpath_plan}
