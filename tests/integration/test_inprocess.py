"""The podpath modules run two ways through ansible-playbook: in-process in the controller
(plugins/action/, the default on localhost) and the usual way, as a module file Ansible
ships and runs in a Python of its own (`podpath_in_process: false`; what remote hosts get).

Both ways must be the same module: the same input gives the same result, check mode and
diff report the same, bad input fails with the same message, and what one way built the
other finds unchanged. Labs and cleanup come from conftest.py.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.netns

SUBNET = "10.250.7"
USUAL = {"podpath_in_process": False}


def spec(lab, pods=(1, 2), address_of=None):
    address_of = address_of or {}
    namespaces = [{"name": lab.ns("node"), "sysctls": {"net.ipv4.ip_forward": 1},
                   "links": [{"name": "cni0", "kind": "bridge", "addresses": [f"{SUBNET}.1/24"]}]}]
    for i in pods:
        namespaces.append({
            "name": lab.ns(f"pod{i}"), "holder": True, "hostname": f"pod{i}",
            "links": [{"name": "eth0", "kind": "veth", "addresses": [address_of.get(i, f"{SUBNET}.{i + 1}/24")],
                       "peer": {"name": f"{lab.name}h{i}", "namespace": lab.ns("node"), "master": "cni0",
                                "hairpin": True}}],
            "routes": [{"dst": "default", "gateway": f"{SUBNET}.1"}]})
    return namespaces


def comparable(result):
    """The module's answer without what differs between any two runs (pids)."""
    return {key: result.module.get(key) for key in ("changed", "failed", "msg", "changes", "removed", "diff")}


def test_the_in_process_run_ships_no_module_file_and_the_usual_run_does(netns_lab):
    in_process = netns_lab.run(spec(netns_lab), json_output=False, extra_argv=("-vvv",))
    usual = netns_lab.run(spec(netns_lab), json_output=False, extra_argv=("-vvv",), **USUAL)
    assert in_process.rc == 0 and usual.rc == 0, f"{in_process}\n{usual}"
    assert "AnsiballZ_podpath_netns.py" not in in_process.stdout
    assert "AnsiballZ_podpath_netns.py" in usual.stdout


def test_a_lab_built_the_usual_way_is_unchanged_in_process(netns_lab):
    built = netns_lab.apply(spec(netns_lab), **USUAL)
    assert built.changed
    again = netns_lab.apply(spec(netns_lab))
    assert not again.changed, again.module.get("changes")


def test_a_lab_built_in_process_is_unchanged_the_usual_way(netns_lab):
    assert netns_lab.apply(spec(netns_lab)).changed
    again = netns_lab.apply(spec(netns_lab), **USUAL)
    assert not again.changed, again.module.get("changes")


def test_check_mode_and_diff_report_the_same_both_ways(netns_lab):
    netns_lab.apply(spec(netns_lab))
    wanted = spec(netns_lab, pods=(1, 2, 3), address_of={2: f"{SUBNET}.40/24"})
    in_process = netns_lab.run(wanted, check=True, diff=True)
    usual = netns_lab.run(wanted, check=True, diff=True, **USUAL)
    assert in_process.changed and in_process.module.get("diff")
    assert comparable(in_process) == comparable(usual)
    assert netns_lab.ns("pod3") not in netns_lab.namespaces()


def test_removal_reports_the_same_both_ways(netns_lab):
    netns_lab.apply(spec(netns_lab))
    check_in_process = netns_lab.run(state="absent", check=True)
    check_usual = netns_lab.run(state="absent", check=True, **USUAL)
    assert check_in_process.changed
    assert comparable(check_in_process) == comparable(check_usual)


@pytest.mark.parametrize("params, words", [
    ({"lab": "Bad-Lab"}, "lab name 'Bad-Lab' is not valid"),
    ({"state": "gone"}, "value of state must be one of: present, absent, got: gone"),
    ({"pause": "/nonexistent/podpath-pause"}, "pause program /nonexistent/podpath-pause is not an executable file"),
], ids=["lab-name", "state-choice", "pause"])
def test_bad_input_fails_with_the_same_message_both_ways(netns_lab, params, words):
    in_process = netns_lab.run(spec(netns_lab), **params)
    usual = netns_lab.run(spec(netns_lab), **params, **USUAL)
    assert in_process.failed and usual.failed
    assert words in in_process.msg
    assert in_process.msg == usual.msg
    assert netns_lab.namespaces() == []
