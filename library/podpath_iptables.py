#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: podpath_iptables
short_description: Apply kube-proxy's whole rule sets (iptables or nftables) to lab network namespaces, atomically
description:
  - Applies one payload per network namespace, the way kube-proxy applies its rules, in the
    format of kube-proxy's mode O(mode), in one transaction per namespace. With
    C(iptables), an C(iptables-restore) payload; the tables named in it are replaced.
    With C(nftables), an C(nft -f) payload (kube-proxy's table C(ip kube-proxy)), which
    replaces the tables it adds.
  - The module owns the namespace's whole netfilter rule set. The tables the mode does not
    own are removed when the rules are applied, so that switching O(mode) leaves no rules of
    the other mode behind; with C(nftables), in the same transaction as the payload.
    C(iptables) owns the tables C(iptables-nft) keeps (C(ip filter), C(ip nat), ...); every
    other C(nf_tables) table (C(ip kube-proxy), or one added with C(nft) by hand) is removed.
    C(nftables) owns the tables its payload adds; every other table (those of C(iptables-nft)
    included) is removed.
  - Idempotent. After applying, the module records what the namespace's rule set then is; a
    later call with the same payload changes nothing unless the namespace's rules have been
    changed by hand since (a deleted KUBE-SEP rule, a flushed endpoint chain), in which case
    they are restored and the call reports changed.
  - Only namespaces that lab O(lab) owns are accepted, proven by the mark podpath_netns sets
    on each (the alias of its C(lo), C(podpath-lab=<lab>)); the root namespace never is.
version_added: "0.1.0"
author: podpath contributors (!UNKNOWN)
requirements:
  - Linux, root; nsenter (util-linux); with O(mode=iptables), iptables (nf_tables backend);
    with O(mode=nftables), nft (nftables) and a kernel of 5.13 or later, as kube-proxy's
    nftables mode needs
options:
  lab:
    description: The lab that owns the namespaces.
    type: str
    required: true
  mode:
    description:
      - kube-proxy's mode, which says the format of O(rules) and the tables the module owns.
    type: str
    choices: [iptables, nftables]
    default: iptables
  rules:
    description:
      - Namespace name to its payload. With O(mode=iptables), text in C(iptables-save)'s
        format, with its C(COMMIT) lines; with O(mode=nftables), C(nft -f) commands that add
        at least one table. Each namespace must be one that O(lab) owns.
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
    description: Linux network namespaces and the iptables (nf_tables) and nft tools.
"""

EXAMPLES = r"""
- name: Apply kube-proxy's rules on every node of the lab
  podpath.lab.podpath_iptables:
    lab: podpath
    rules:
      podpath-cp1: "{{ lookup('ansible.builtin.file', 'cp1.rules') }}"

- name: The same lab with kube-proxy in nftables mode (its iptables rules are removed)
  podpath.lab.podpath_iptables:
    lab: podpath
    mode: nftables
    rules:
      podpath-cp1: "{{ lookup('ansible.builtin.file', 'cp1.nft') }}"
"""

RETURN = r"""
applied:
  description: Namespaces whose rules were (or, in check mode, would be) applied.
  returned: always
  type: list
  elements: str
  sample: ["podpath-worker1"]
rule_counts:
  description: Namespace to the number of rules in its payload (C(-A) lines, or C(add rule) commands).
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
NFT_TABLE = re.compile(r"^\s*(?:add\s+|create\s+)?table\s+(ip6?|inet|arp|bridge|netdev)\s+([\w.-]+)", re.M)

# Tables that iptables-nft itself keeps: what the iptables mode owns. Any other nf_tables
# table in a lab namespace (the nftables mode's, or one added by hand: a drill, a student's
# experiment) is removed on apply.
IPTABLES_TABLES = {("ip", "filter"), ("ip", "nat"), ("ip", "mangle"), ("ip", "raw"), ("ip", "security")}
# Per mode: the tools it needs, and the command that applies a payload from stdin, atomically.
TOOLS = {"iptables": ("iptables-restore", "iptables-save", "nsenter"), "nftables": ("nft", "nsenter")}
APPLY = {"iptables": ["iptables-restore", "-w"], "nftables": ["nft", "-f", "-"]}
PACKAGES = {"iptables": "iptables util-linux", "nftables": "nftables util-linux"}


def in_netns(ns, argv):
    return ["nsenter", "--net=%s" % netns_path(ns), "--"] + argv


def ruleset(module, ns):
    """What the namespace's firewall holds, without counters, and every nf_tables table in it.

    With nft, one `nft list ruleset` shows both the iptables tables and any other; without it,
    iptables-save is read."""
    if module.get_bin_path("nft"):
        rc, out, err = module.run_command(in_netns(ns, ["nft", "list", "ruleset"]))
        if rc == 0:
            text = NFT_COUNTERS.sub("counter", out)
            return text, sorted({tuple(line.split()[1:3]) for line in text.splitlines() if line.startswith("table ")})
    rc, out, err = module.run_command(in_netns(ns, ["iptables-save"]))
    if rc != 0:
        module.fail_json(msg="iptables-save failed in namespace %s: %s" % (ns, err.strip()))
    lines = [COUNTERS.sub("", line).rstrip() for line in out.splitlines() if line and not line.startswith("#")]
    return "\n".join(lines), []


def fingerprint(module, ns):
    text = ruleset(module, ns)[0]
    return hashlib.sha256(text.encode()).hexdigest()


def owned_tables(mode, payload):
    """The (family, name) tables the mode owns in a namespace whose payload is PAYLOAD."""
    if mode == "iptables":
        return IPTABLES_TABLES
    return set(NFT_TABLE.findall(payload))


def payload_error(mode, payload):
    """Why PAYLOAD is not a payload of MODE, or None."""
    if not isinstance(payload, str):
        return "not text"
    if mode == "iptables" and "COMMIT" not in payload:
        return "not an iptables-restore payload (no COMMIT line)"
    if mode == "nftables" and not NFT_TABLE.search(payload):
        return "not an nft -f payload that adds a table (no 'add table FAMILY NAME' line)"
    return None


def rule_count(payload):
    return sum(1 for line in payload.splitlines() if line.startswith(("-A ", "add rule ")))


ARGUMENT_SPEC = dict(lab=dict(type="str", required=True),
                     mode=dict(type="str", choices=["iptables", "nftables"], default="iptables"),
                     rules=dict(type="dict", required=True))


def run_module(module):
    """The module's work; MODULE is an AnsibleModule, or the controller's stand-in for one
    when the task runs in-process (plugins/action/podpath_iptables.py)."""
    lab = require_lab_and_root(module, "podpath_iptables")
    mode = module.params["mode"]
    for tool in TOOLS[mode]:
        if not module.get_bin_path(tool):
            module.fail_json(msg="%s is missing (kube-proxy's %s mode needs it): install it with apt-get install %s"
                                 % (tool, mode, PACKAGES[mode]))
    registry = Registry(lab, "netns.json")
    rules = module.params["rules"]
    for ns, payload in rules.items():
        owner, alias = netns_owner(ns)
        # the namespace's mark says whose it is; a folder written before the marks, its registry
        if owner != lab and not (alias == "" and registry.legacy and registry.owns("namespaces", ns)):
            module.fail_json(msg="namespace %s is not a namespace of lab %s (%s): podpath_iptables only changes the "
                                 "lab's own namespaces (build them first with podpath_netns)"
                                 % (ns, lab, "no such namespace" if alias is None else "its lo's alias is %r" % alias))
        problem = payload_error(mode, payload)
        if problem:
            module.fail_json(msg="the rules for namespace %s are %s: mode %s applies them with %s"
                                 % (ns, problem, mode, " ".join(APPLY[mode])))
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
        if (record.get("payload") == wanted and record.get("mode", "iptables") == mode
                and record.get("saved") == fingerprint(module, ns)):
            continue
        applied.append(ns)
        if module.check_mode:
            continue
        owned = owned_tables(mode, rules[ns])
        foreign = [table for table in ruleset(module, ns)[1] if table not in owned]
        if mode == "nftables":
            # the other tables go in the same transaction as the new ones: no moment with both or neither
            script = "".join("delete table %s %s\n" % table for table in foreign) + rules[ns]
        else:
            for family, name in foreign:
                module.run_command(in_netns(ns, ["nft", "delete", "table", family, name]), check_rc=True)
            script = rules[ns]
        rc, out, err = module.run_command(in_netns(ns, APPLY[mode]), data=script, binary_data=True)
        if rc != 0:
            module.fail_json(msg="%s refused the rules for namespace %s: %s" % (APPLY[mode][0], ns, err.strip()),
                             applied=applied)
        state[ns] = {"mode": mode, "payload": wanted, "saved": fingerprint(module, ns)}
    if applied and not module.check_mode:
        write_file(state_path, json.dumps(state, indent=1, sort_keys=True) + "\n")
    module.exit_json(changed=bool(applied), applied=applied,
                     rule_counts={ns: rule_count(text) for ns, text in rules.items()})


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
