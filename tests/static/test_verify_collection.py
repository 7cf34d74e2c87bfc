"""The verifier's suites collect for both labs, and cover every scenario in each.

The checks of tests/verify/ are written once and asked of either lab through its adapter
(podpath/evidence/lab.py). No cluster runs here, so they are collected, never run, against
each lab: the cluster lab with pytest --collect-only against a three-node inventory written
to tmp_path, whose hosts are local connections that are never used (collection does not
connect; only the checks would); the netns lab from its plan (no lab needs to be up). A
small plugin prints each collected item's markers, so that the checks can be counted per
scenario and per lab.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podpath.evidence.scenarios import SCENARIOS

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]

INVENTORY = """\
[control_plane]
cp1 ansible_connection=local
[workers]
worker1 ansible_connection=local
worker2 ansible_connection=local
[cluster:children]
control_plane
workers
"""

# Loaded with -p: one JSON line per collected item, with its scenario and lab markers.
PLUGIN = '''\
import json


def pytest_collection_finish(session):
    for item in session.items:
        scenario = item.get_closest_marker("scenario")
        print("PODPATH-ITEM " + json.dumps({
            "id": item.nodeid,
            "scenario": scenario.args[0] if scenario else None,
            "cluster": item.get_closest_marker("cluster_lab") is not None,
            "disruptive": item.get_closest_marker("disruptive") is not None,
        }))
'''


def collect(tmp_path: Path, *extra: str, lab: str = "cluster") -> list[dict]:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(INVENTORY)
    (tmp_path / "podpath_collect_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    hosts = ["--hosts=ansible://all", f"--ansible-inventory={inventory}"] if lab == "cluster" else \
        ["--hosts=local://", "--lab", "collect"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-p", "podpath_collect_plugin", str(ROOT / "tests" / "verify"), *hosts, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"collection failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("PODPATH-ITEM ")]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> list[dict]:
    """Every check collected for the cluster lab, the disruptive ones included."""
    return collect(tmp_path_factory.mktemp("collect"), "--disruptive")


@pytest.fixture(scope="module")
def collected_netns(tmp_path_factory) -> list[dict]:
    """Every check collected for the netns lab, the disruptive ones included."""
    return collect(tmp_path_factory.mktemp("collect-netns"), "--disruptive", lab="netns")


# Checks per scenario for the reference topology (3 nodes, 7 pods), the disruptive ones
# included, when the two labs had a suite each: the shared suite may only add to them.
FLOOR = {
    "netns": {1: 22, 2: 7, 3: 3, 4: 14, 5: 2, 6: 14, 7: 1, 8: 3, 9: 3, 10: 4, 11: 1, 12: 15, 13: 5, 14: 1, 15: 1,
              16: 4, 17: 2, 18: 2, 19: 1},
    "cluster": {1: 22, 2: 14, 3: 3, 4: 14, 5: 4, 6: 16, 7: 1, 8: 3, 9: 3, 10: 6, 11: 1, 12: 15, 13: 6, 14: 1,
                15: 1, 16: 4, 17: 2, 18: 2, 19: 1},
}


def test_every_scenario_has_a_cluster_test(collected):
    assert collected, "no cluster lab test was collected"
    missing = sorted(set(SCENARIOS) - {i["scenario"] for i in collected})
    assert not missing, f"scenarios without a cluster lab test: {missing}"


def test_every_scenario_has_a_netns_test(collected_netns):
    missing = sorted(set(SCENARIOS) - {i["scenario"] for i in collected_netns})
    assert not missing, f"scenarios without a netns lab test: {missing}"


@pytest.mark.parametrize("lab", ["cluster", "netns"])
def test_no_scenario_has_fewer_checks_than_before_the_suites_were_shared(lab, collected, collected_netns):
    items = collected if lab == "cluster" else collected_netns
    counts = {n: sum(1 for i in items if i["scenario"] == n) for n in SCENARIOS}
    fewer = {n: (counts[n], floor) for n, floor in FLOOR[lab].items() if counts[n] < floor}
    assert not fewer, f"{lab} lab: scenarios with fewer checks than before (now, before): {fewer}"


def test_every_check_names_its_scenario(collected, collected_netns):
    unnamed = [i["id"] for i in collected + collected_netns if i["scenario"] not in SCENARIOS]
    assert not unnamed, f"checks without @pytest.mark.scenario(N) of a known scenario: {unnamed}"


def test_checks_are_parametrized_per_node_and_pod(collected, collected_netns):
    for items, pods in ((collected, ("echo-1", "echo-3", "ingress-nginx-2", "multi-container")),
                        (collected_netns, ("echo-1", "echo-3", "ingress-nginx-controller-2", "multi-container-pod"))):
        ids = [i["id"] for i in items]
        for node in ("cp1", "worker1", "worker2"):
            assert any(f"[{node}]" in i for i in ids), f"no test runs per node for {node}"
        for pod in pods:
            assert any(f"[{pod}]" in i or f"[{pod}-" in i for i in ids), f"no test runs for the pod {pod}"


def test_the_namespace_checks_follow_each_lab_runtime(collected, collected_netns):
    """Scenario 3: both labs make pods as containerd does: UTS shared with the sandbox, PID the
    container's own in the reference topology (no shareProcessNamespace)."""
    def kinds(items):
        return sorted(i["id"].rsplit("[", 1)[1].rstrip("]") for i in items
                      if "test_containers_of_a_pod_share_or_own_each_namespace" in i["id"])
    assert kinds(collected) == ["ipc-shared", "mnt-own", "net-shared", "pid-own", "uts-shared"]
    assert kinds(collected_netns) == kinds(collected)


def test_a_check_only_the_cluster_can_answer_is_left_out_of_a_netns_run(collected, collected_netns):
    cluster_only = {i["id"] for i in collected if i["cluster"]}
    assert cluster_only, "no cluster-only check (the control plane left out of the election) was collected"
    assert not cluster_only & {i["id"] for i in collected_netns}


def test_the_default_run_leaves_the_disruptive_tests_out(tmp_path):
    items = collect(tmp_path)
    disruptive = [i["id"] for i in items if i["disruptive"]]
    assert not disruptive, f"disruptive tests collected without --disruptive: {disruptive}"
