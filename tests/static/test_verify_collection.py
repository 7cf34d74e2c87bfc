"""The cluster suites of the verifier collect against an inventory, and cover every scenario.

No cluster runs here, so the cluster lab's checks (tests/verify/test_cluster_*.py) are
collected, never run: pytest --collect-only against a three-node inventory written to
tmp_path, whose hosts are local connections that are never used (collection does not
connect; only the checks would). A small plugin prints each collected item's markers, so
that the scenarios can be counted per lab.
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
            "netns": item.get_closest_marker("netns_lab") is not None,
            "disruptive": item.get_closest_marker("disruptive") is not None,
        }))
'''


def collect(tmp_path: Path, *extra: str) -> list[dict]:
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(INVENTORY)
    (tmp_path / "podpath_collect_plugin.py").write_text(PLUGIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         "-p", "podpath_collect_plugin", str(ROOT / "tests" / "verify"), "--hosts=ansible://all",
         f"--ansible-inventory={inventory}", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"collection failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    return [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("PODPATH-ITEM ")]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> list[dict]:
    """Every collected item, the disruptive ones included."""
    return collect(tmp_path_factory.mktemp("collect"), "--disruptive")


def test_every_scenario_has_a_cluster_test(collected):
    items = collected
    cluster = [i for i in items if i["cluster"]]
    assert cluster, "no cluster lab test was collected"
    covered = {i["scenario"] for i in cluster}
    missing = sorted(set(SCENARIOS) - covered)
    assert not missing, f"scenarios without a cluster lab test: {missing}"


def test_every_cluster_test_names_its_scenario(collected):
    items = collected
    unnamed = [i["id"] for i in items if i["cluster"] and i["scenario"] not in SCENARIOS]
    assert not unnamed, f"cluster tests without @pytest.mark.scenario(N) of a known scenario: {unnamed}"


def test_cluster_tests_are_parametrized_per_node_and_pod(collected):
    items = collected
    ids = [i["id"] for i in items if i["cluster"]]
    for node in ("cp1", "worker1", "worker2"):
        assert any(f"[{node}]" in i for i in ids), f"no cluster test runs per node for {node}"
    for pod in ("echo-1", "echo-3", "ingress-nginx-2", "multi-container"):
        assert any(f"[{pod}]" in i or f"-{pod}]" in i or f"[{pod}-" in i for i in ids), (
            f"no cluster test runs for the pod slot {pod}")


def test_the_default_run_leaves_the_disruptive_tests_out(tmp_path):
    items = collect(tmp_path)
    disruptive = [i["id"] for i in items if i["disruptive"]]
    assert not disruptive, f"disruptive tests collected without --disruptive: {disruptive}"
