#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: podpath_iptables
short_description: Apply whole iptables rule sets to lab network namespaces, atomically
description:
  - Applies one C(iptables-restore) payload per network namespace, the way kube-proxy
    applies its rules. The tables named in the payload are replaced in one transaction.
  - Idempotent. After applying, the module records what C(iptables-save) then shows; a
    later call with the same payload changes nothing unless the namespace's rules have
    been changed by hand since (a deleted KUBE-SEP rule, for example), in which case
    they are restored and the call reports changed.
  - nf_tables tables that iptables does not own (added with C(nft) by hand) are removed
    from the lab's namespaces when the rules are applied.
  - Only namespaces that lab O(lab) owns are accepted, proven by the mark podpath_netns sets
    on each (the alias of its C(lo), C(podpath-lab=<lab>)); the root namespace never is.
version_added: "0.1.0"
author: podpath contributors (!UNKNOWN)
requirements:
  - Linux, root; iptables (nf_tables backend) and nsenter (util-linux)
options:
  lab:
    description: The lab that owns the namespaces.
    type: str
    required: true
  rules:
    description:
      - Namespace name to its C(iptables-restore) payload (text in C(iptables-save)'s format,
        with its C(COMMIT) lines). Each namespace must be one that O(lab) owns.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
    description: Reports the namespaces whose rules would be applied, and applies none.
  diff_mode:
    support: none
    description: No diff is shown.
  platform:
    support: full
    platforms: linux
    description: Linux network namespaces and the iptables (nf_tables) tools.
"""

EXAMPLES = r"""
- name: Apply kube-proxy's rules on every node of the lab
  podpath.lab.podpath_iptables:
    lab: podpath
    rules:
      podpath-cp1: "{{ lookup('ansible.builtin.file', 'cp1.rules') }}"
"""

RETURN = r"""
applied:
  description: Namespaces whose rules were (or, in check mode, would be) applied.
  returned: always
  type: list
  elements: str
  sample: ["podpath-worker1"]
rule_counts:
  description: Namespace to the number of rules (-A lines) in its payload.
  returned: always
  type: dict
  sample: {"podpath-worker1": 42}
"""

import hashlib
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.podpath_lab import Registry, lab_dir, netns_owner, netns_path, require_lab_and_root, write_file

COUNTERS = re.compile(r"\[\d+:\d+\]")
NFT_COUNTERS = re.compile(r"counter packets \d+ bytes \d+")


# Tables that iptables-nft itself keeps; any other nf_tables table in a lab namespace
# was added by hand (a drill, a student's experiment) and is removed on apply.
IPTABLES_TABLES = {("ip", "filter"), ("ip", "nat"), ("ip", "mangle"), ("ip", "raw"), ("ip", "security")}


def in_netns(ns, argv):
    return ["nsenter", "--net=%s" % netns_path(ns), "--"] + argv


def ruleset(module, ns):
    """What the namespace's firewall holds, without counters, and the foreign tables in it.

    With nft, one `nft list ruleset` shows both the iptables tables and any other; without it,
    iptables-save is read."""
    if module.get_bin_path("nft"):
        rc, out, err = module.run_command(in_netns(ns, ["nft", "list", "ruleset"]))
        if rc == 0:
            text = NFT_COUNTERS.sub("counter", out)
            tables = [tuple(line.split()[1:3]) for line in text.splitlines() if line.startswith("table ")]
            return text, sorted(t for t in tables if t not in IPTABLES_TABLES)
    rc, out, err = module.run_command(in_netns(ns, ["iptables-save"]))
    if rc != 0:
        module.fail_json(msg="iptables-save failed in namespace %s: %s" % (ns, err.strip()))
    lines = [COUNTERS.sub("", line).rstrip() for line in out.splitlines() if line and not line.startswith("#")]
    return "\n".join(lines), []


def fingerprint(module, ns):
    text = ruleset(module, ns)[0]
    return hashlib.sha256(text.encode()).hexdigest()


ARGUMENT_SPEC = dict(lab=dict(type="str", required=True), rules=dict(type="dict", required=True))


def run_module(module):
    """The module's work; MODULE is an AnsibleModule, or the controller's stand-in for one
    when the task runs in-process (plugins/action/podpath_iptables.py)."""
    lab = require_lab_and_root(module, "podpath_iptables")
    for tool in ("iptables-restore", "iptables-save", "nsenter"):
        if not module.get_bin_path(tool):
            module.fail_json(msg="%s is missing: install it with apt-get install iptables util-linux" % tool)
    registry = Registry(lab, "netns.json")
    rules = module.params["rules"]
    for ns, payload in rules.items():
        owner, alias = netns_owner(ns)
        # the namespace's mark says whose it is; a folder written before the marks, its registry
        if owner != lab and not (alias == "" and registry.legacy and registry.owns("namespaces", ns)):
            module.fail_json(msg="namespace %s is not a namespace of lab %s (%s): podpath_iptables only changes the "
                                 "lab's own namespaces (build them first with podpath_netns)"
                                 % (ns, lab, "no such namespace" if alias is None else "its lo's alias is %r" % alias))
        if not isinstance(payload, str) or "COMMIT" not in payload:
            module.fail_json(msg="the rules for namespace %s are not an iptables-restore payload (no COMMIT line)" % ns)
    state_path = os.path.join(lab_dir(lab), "iptables.json")
    try:
        with open(state_path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        state = {}
    applied = []
    for ns in sorted(rules):
        wanted = hashlib.sha256(rules[ns].encode()).hexdigest()
        record = state.get(ns, {})
        if record.get("payload") == wanted and record.get("saved") == fingerprint(module, ns):
            continue
        applied.append(ns)
        if module.check_mode:
            continue
        for family, name in ruleset(module, ns)[1]:
            module.run_command(in_netns(ns, ["nft", "delete", "table", family, name]), check_rc=True)
        rc, out, err = module.run_command(in_netns(ns, ["iptables-restore", "-w"]), data=rules[ns], binary_data=True)
        if rc != 0:
            module.fail_json(msg="iptables-restore refused the rules for namespace %s: %s" % (ns, err.strip()),
                             applied=applied)
        state[ns] = {"payload": wanted, "saved": fingerprint(module, ns)}
    if applied and not module.check_mode:
        write_file(state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")
    module.exit_json(changed=bool(applied), applied=applied,
                     rule_counts={ns: text.count("\n-A ") for ns, text in rules.items()})


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
