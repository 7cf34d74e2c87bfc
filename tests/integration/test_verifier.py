"""The verifier must pass on a healthy lab and fail, at the right scenario, on a broken one.

One lab of its own is built for this module. For each fault of the catalogue
(podpath/evidence/faults.py) the lab is broken in one hop, the verifier runs, and the scenario
of that hop must fail; then `podpath up` repairs the lab and the verifier must pass
again. The healthy lab is also verified many times in a row, to catch flaky checks.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from podpath.evidence import faults

from podpath.model import topology
from podpath.evidence.probe import NetnsLab

from labtools import failed, verify

ROOT = Path(__file__).resolve().parents[2]
HEALTHY_RUNS = int(os.environ.get("PODPATH_HEALTHY_RUNS", "20"))
pytestmark = [pytest.mark.netns, pytest.mark.slow]


def podpath(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podpath.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)




@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = "vfy" + os.urandom(3).hex()
    try:
        up = podpath("up", "--lab", name, "-q")
        assert up.returncode == 0, f"podpath up failed:\n{up.stdout}\n{up.stderr}"
        yield NetnsLab(name, topology.load())
    finally:
        down = podpath("down", "--lab", name, "-q")
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"
        left = [ns for ns in os.listdir("/run/netns") if ns.startswith(name + "-")]
        assert not left, f"podpath down left namespaces behind: {left}"


def test_forget_neighbours_removes_the_entries_a_ping_between_pod_and_node_made(lab):
    """What the verifier does after each pod's ping on a lab big enough to fill the host's
    neighbour table (tests/verify/test_reachability.py)."""
    endpoints = {name for svc in lab.plan.services for name in svc.endpoints}
    pod = next(p for p in lab.pods() if p.name not in endpoints)  # no kube-proxy probe asks it
    node = lab.plan.node(pod.node)
    assert lab.ping(pod.netns, node.ip).ok, f"pod {pod.name} cannot ping its node {node.name}"
    assert node.gateway in lab.neighbours(pod.netns, "eth0"), "the ping left no entry for the gateway in the pod"
    assert pod.ip in lab.neighbours(node.netns, "cni0"), "the ping left no entry for the pod in its node"
    lab.forget_neighbours(pod)
    assert node.gateway not in lab.neighbours(pod.netns, "eth0")
    assert pod.ip not in lab.neighbours(node.netns, "cni0")


def test_released_neighbours_are_gone_but_flannel_s_permanent_ones_and_the_lab_still_passes(lab, tmp_path,
                                                                                          monkeypatch):
    """What the verifier does once a lab's checks are done on a host whose neighbour table is
    crowded (NetnsLab.release_neighbours): every entry its traffic made goes, the permanent
    ones flannel's VXLAN needs stay, and the lab answers as before (it asks ARP again)."""
    from podpath.evidence import nodeprobe

    def entries(permanent: bool) -> dict[str, list]:
        return {ns: [n for n in lab.ip_json(ns, "neigh", "show") if ("PERMANENT" in n.get("state", [])) == permanent]
                for ns in lab.plan.netns_names}

    before = verify(lab.name, tmp_path)
    assert not failed(before), failed(before)
    assert lab.neighbours(lab.plan.client_netns, "eth0"), "the verify left no entry in the client"
    made, permanent = entries(False), entries(True)
    assert any(permanent.values()), "flannel's VXLAN entries are permanent ones: none found"
    monkeypatch.setattr(nodeprobe, "neighbour_table_crowded", lambda: True)
    assert lab.release_neighbours()
    left = entries(False)
    # the client talks only when asked; in the other namespaces the kubelet's probes may ask ARP
    # again at once, so fewer entries, not none
    assert left[lab.plan.client_netns] == [], left[lab.plan.client_netns]
    assert sum(map(len, left.values())) < sum(map(len, made.values())) // 2, (made, left)
    assert entries(True) == permanent
    after = verify(lab.name, tmp_path)
    assert not failed(after), failed(after)


def test_healthy_lab_passes_every_scenario_many_times(lab, tmp_path):
    flaky = []
    for run in range(HEALTHY_RUNS):
        result = verify(lab.name, tmp_path)
        if failed(result):
            flaky.append((run, failed(result), result["_output"][-1500:]))
    assert not flaky, f"{len(flaky)} of {HEALTHY_RUNS} runs of a healthy lab failed: {flaky[:2]}"


@pytest.mark.disruptive
def test_the_disruptive_checks_pass_and_leave_the_lab_whole(lab, tmp_path):
    """Scenario 14 (failover) and the killed container of scenario 1 break the lab and repair
    it: they pass on a healthy lab, and every scenario passes after them."""
    result = verify(lab.name, tmp_path, "--disruptive")
    assert not failed(result), (f"with --disruptive, scenarios {failed(result)} fail\n"
                                f"{result['_output'][-2500:]}")
    assert result["14"]["outcome"] == "PASS", f"scenario 14 did not run: {result['14']}"
    after = verify(lab.name, tmp_path)
    assert not failed(after), (f"after the disruptive checks, scenarios {failed(after)} fail\n"
                               f"{after['_output'][-2500:]}")


@pytest.mark.disruptive
@pytest.mark.parametrize("fault", sorted(faults.CATALOGUE), ids=sorted(faults.CATALOGUE))
def test_verifier_catches_the_fault_and_up_repairs_it(lab, fault, tmp_path):
    spec = faults.CATALOGUE[fault]
    what = spec.apply(lab)
    broken = verify(lab.name, tmp_path)
    assert spec.scenario in failed(broken), (
        f"after '{what}', scenario {spec.scenario} should fail; failed: {failed(broken)}\n"
        f"{broken['_output'][-2500:]}")
    up = podpath("up", "--lab", lab.name, "-q")
    assert up.returncode == 0, f"podpath up could not repair '{what}':\n{up.stdout}\n{up.stderr}"
    repaired = verify(lab.name, tmp_path)
    assert not failed(repaired), (f"after '{what}' and podpath up, scenarios {failed(repaired)} still fail\n"
                                  f"{repaired['_output'][-2500:]}")
