"""What podpath_netns removes shows in check mode and in diff mode, as its documentation says
(check_mode and diff_mode: full): state=absent and pruning give a before/after diff, and
check mode names what would be removed, with changed=True, and removes nothing.

Labs and cleanup come from conftest.py; every run goes through ansible-playbook.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.netns

SUBNET = "10.250.9"


def spec(lab, pods=(1, 2)):
    namespaces = [{"name": lab.ns("node"), "links": [{"name": "cni0", "kind": "bridge",
                                                      "addresses": [f"{SUBNET}.1/24"]}]}]
    for i in pods:
        namespaces.append({
            "name": lab.ns(f"pod{i}"), "holder": True,
            "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{SUBNET}.{i + 1}/24"],
                       "peer": {"name": f"{lab.name}h{i}", "namespace": lab.ns("node"), "master": "cni0"}}],
            "routes": [{"dst": "default", "gateway": f"{SUBNET}.1"}]})
    return namespaces


def blocks(text: str) -> dict[str, str]:
    """A diff side as {title: text}: the module writes one '# title' block per namespace or folder."""
    found: dict[str, str] = {}
    title = None
    for line in text.splitlines(keepends=True):
        if line.startswith("# "):
            title = line[2:].strip()
            found[title] = ""
        elif title is not None:
            found[title] += line
    return found


def test_check_mode_of_state_absent_names_what_it_would_remove_and_removes_nothing(netns_lab):
    netns_lab.apply(spec(netns_lab))
    built = netns_lab.namespaces()
    check = netns_lab.apply(state="absent", check=True, diff=True)
    assert check.changed
    assert sorted(check.module["removed"]) == built
    assert netns_lab.namespaces() == built, "check mode removed something"

    before, after = blocks(check.module["diff"]["before"]), blocks(check.module["diff"]["after"])
    assert sorted(before) == sorted(after) == built
    assert all(text == "absent\n" for text in after.values()), after
    pod1 = json.loads(before[netns_lab.ns("pod1")])
    assert pod1["links"]["eth0"]["addresses"] == [f"{SUBNET}.2/24"]
    assert pod1["routes"] == [["default", f"{SUBNET}.1"]]
    assert json.loads(before[netns_lab.ns("node")])["links"][f"{netns_lab.name}h1"]["master"] == "cni0"


def test_state_absent_shows_the_same_diff_when_it_removes(netns_lab):
    netns_lab.apply(spec(netns_lab))
    check = netns_lab.apply(state="absent", check=True, diff=True)
    gone = netns_lab.apply(state="absent", diff=True)
    assert gone.changed and gone.module["diff"] == check.module["diff"]
    assert sorted(gone.module["removed"]) == sorted(check.module["removed"])
    assert netns_lab.namespaces() == []


def test_purge_shows_the_lab_folder_in_the_diff(netns_lab):
    netns_lab.apply(spec(netns_lab, pods=(1,)))
    check = netns_lab.apply(state="absent", purge=True, check=True, diff=True)
    folder = str(netns_lab.lab_dir)
    assert blocks(check.module["diff"]["before"])[folder] == "present\n"
    assert blocks(check.module["diff"]["after"])[folder] == "absent\n"
    assert netns_lab.lab_dir.exists()


def test_check_mode_of_a_prune_names_the_namespace_and_shows_it_go(netns_lab):
    netns_lab.apply(spec(netns_lab, pods=(1, 2)))
    check = netns_lab.apply(spec(netns_lab, pods=(1,)), check=True, diff=True)
    pod2 = netns_lab.ns("pod2")
    assert check.changed
    assert check.module["removed"] == [pod2]
    assert pod2 in netns_lab.namespaces(), "check mode pruned the namespace"
    before, after = blocks(check.module["diff"]["before"]), blocks(check.module["diff"]["after"])
    assert after[pod2] == "absent\n"
    assert json.loads(before[pod2])["links"]["eth0"]["addresses"] == [f"{SUBNET}.3/24"]
    # the node loses the veth's host end with the pod's namespace
    assert f"{netns_lab.name}h2" in json.loads(before[netns_lab.ns("node")])["links"]


def test_a_prune_shows_the_diff_it_announced(netns_lab):
    netns_lab.apply(spec(netns_lab, pods=(1, 2)))
    check = netns_lab.apply(spec(netns_lab, pods=(1,)), check=True, diff=True)
    pruned = netns_lab.apply(spec(netns_lab, pods=(1,)), diff=True)
    assert pruned.module["removed"] == check.module["removed"] == [netns_lab.ns("pod2")]
    assert blocks(pruned.module["diff"]["after"])[netns_lab.ns("pod2")] == "absent\n"
    assert netns_lab.ns("pod2") not in netns_lab.namespaces()


def test_the_removal_diff_is_the_same_in_process_and_the_usual_way(netns_lab):
    netns_lab.apply(spec(netns_lab))
    in_process = netns_lab.apply(state="absent", check=True, diff=True)
    usual = netns_lab.apply(state="absent", check=True, diff=True, podpath_in_process=False)
    for key in ("changed", "removed", "changes", "diff"):
        assert in_process.module[key] == usual.module[key], key
