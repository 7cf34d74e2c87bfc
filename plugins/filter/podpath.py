# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
"""podpath_plan: from the topology to every argument of the netns lab's modules.

Runs on the controller, where the podpath package is installed (the project's .venv).
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
    """Validate TOPO and return {netns, iptables, containers, summary} for lab LAB.

    PYTHON is the interpreter that runs the lab's Python daemons (speaker, lease).
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
        raise AnsibleFilterError("topology: %s" % exc)
    lab_plan = plan.build(topo, lab)
    return {
        "netns": plan.netns_spec(lab_plan),
        "iptables": {node.netns: kubeproxy.render(lab_plan, node.name) for node in lab_plan.nodes},
        "containers": workloads.render(lab_plan, python),
        "summary": {
            "namespaces": 2 + len(lab_plan.nodes) + len(lab_plan.pods),
            "pods": len(lab_plan.pods),
            "load_balancer_ip": lab_plan.ingress_service.load_balancer_ip,
            "client_netns": lab_plan.client_netns,
        },
    }


class FilterModule:
    def filters(self):
        return {"podpath_plan": podpath_plan}
