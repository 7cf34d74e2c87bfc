"""The gateway-api edge, built for real: NGINX Gateway Fabric's data plane in pod namespaces.

One lab of its own is built from inventory/gateway-api.yml (the reference lab with
edge: gateway-api). The verifier passes on it; each of the gateway edge's faults
(podpath/evidence/faults.py GATEWAY_CATALOGUE) fails its scenario and `podpath up`
repairs it; switching the lab to the ingress-nginx edge and back replaces the edge's pods;
`podpath down` leaves nothing of the lab behind.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from podpath.evidence import faults
from podpath.evidence.probe import NetnsLab
from podpath.evidence.status import containers as lab_containers
from podpath.model import topology
from labtools import failed, force_remove, lab_namespaces, lab_processes, new_lab_name, podpath, verify

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_TOPOLOGY = ROOT / "inventory" / "gateway-api.yml"
INGRESS_TOPOLOGY = ROOT / "inventory" / "group_vars" / "all" / "topology.yml"
pytestmark = [pytest.mark.netns, pytest.mark.slow]




def up(name: str, topology_file: Path) -> None:
    done = podpath("up", "--lab", name, "--topology", str(topology_file), "-q")
    assert done.returncode == 0, f"podpath up failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def lab_name():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = new_lab_name("gw")
    try:
        up(name, GATEWAY_TOPOLOGY)
        yield name
    finally:
        down = podpath("down", "--lab", name, "-q")
        if down.returncode != 0 or lab_namespaces(name) or lab_processes(name):
            force_remove(name)
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"


@pytest.fixture
def lab(lab_name):
    return NetnsLab(lab_name, topology.load(GATEWAY_TOPOLOGY))


def test_gateway_lab_runs_the_data_plane_and_no_controller(lab):
    running = {name for name, record in lab_containers(lab.name).items() if record["running"]}
    data_plane = {f"{p.name}/nginx" for p in lab.plan.gateway_pods}
    assert data_plane and data_plane <= running, f"data-plane containers not running: {sorted(data_plane - running)}"
    controllers = {name for name in running if name.endswith("/controller")}
    assert not controllers, f"a lab with the gateway edge runs ingress controllers: {sorted(controllers)}"


def test_verifier_passes_on_the_gateway_lab(lab, tmp_path):
    result = verify(lab.name, tmp_path)
    assert not failed(result), (f"scenarios {failed(result)} fail on a healthy gateway lab:\n"
                                f"{result['_output'][-4000:]}")
    for number in (15, 16, 17, 19):
        assert result[str(number)]["outcome"] == "PASS", f"scenario {number}: {result[str(number)]}"
    assert "data-plane pods serve" in result["_output"], "the report does not give scenario 15 the gateway's title"


@pytest.mark.parametrize("name", sorted(faults.GATEWAY_CATALOGUE))
def test_gateway_fault_fails_its_scenario_and_up_repairs_it(lab, tmp_path, name):
    fault = faults.GATEWAY_CATALOGUE[name]
    broken = faults.break_lab(lab, fault)
    try:
        result = verify(lab.name, tmp_path)
        assert fault.scenario in failed(result), (
            f"fault {name} ({broken.what}) did not fail scenario {fault.scenario}; failed: {failed(result)}")
    finally:
        up(lab.name, GATEWAY_TOPOLOGY)
    result = verify(lab.name, tmp_path)
    assert not failed(result), (f"after fault {name} and podpath up, scenarios {failed(result)} still fail:\n"
                                f"{result['_output'][-3000:]}")


def test_switching_the_edge_replaces_the_edges_pods(lab, tmp_path):
    """ingress-nginx and back: each edge's pods run, the other's stop, and the verifier passes."""
    try:
        up(lab.name, INGRESS_TOPOLOGY)
        running = {n for n, r in lab_containers(lab.name).items() if r["running"]}
        assert not {n for n in running if n.startswith("demo-gateway-nginx-")}, f"gateway pods still run: {running}"
        assert {n for n in running if n.endswith("/controller")}, f"no ingress controller runs: {sorted(running)}"
        result = verify(lab.name, tmp_path)
        assert not failed(result), f"after switching to ingress-nginx: {failed(result)} fail"
    finally:
        up(lab.name, GATEWAY_TOPOLOGY)
    running = {n for n, r in lab_containers(lab.name).items() if r["running"]}
    assert not {n for n in running if n.endswith("/controller")}, f"controllers still run: {sorted(running)}"


def test_down_removes_the_gateway_lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = new_lab_name("gwd")
    try:
        up(name, GATEWAY_TOPOLOGY)
        assert lab_processes(name), "the gateway lab runs no process"
        down = podpath("down", "--lab", name, "-q")
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"
        assert not lab_namespaces(name), f"namespaces left: {lab_namespaces(name)}"
        assert not lab_processes(name), f"processes left: {lab_processes(name)}"
    finally:
        if lab_namespaces(name) or lab_processes(name):
            force_remove(name)
