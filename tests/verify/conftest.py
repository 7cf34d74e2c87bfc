"""Fixtures of the verifier's suites.

netns lab:   pytest --hosts=local:// tests/verify [--lab NAME]
cluster lab: pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

The lab is found from its topology (inventory/group_vars/all/topology.yml, or
--topology) and, for the netns lab, its state under /run/podpath/<lab>/.
"""
from __future__ import annotations

import os

import pytest

from podpath import topology as topology_mod
from podpath.report import ScenarioReport

def pytest_addoption(parser):
    group = parser.getgroup("podpath")
    group.addoption("--lab", default=os.environ.get("PODPATH_LAB", "podpath"),
                    help="netns lab to verify (default: $PODPATH_LAB or podpath)")
    group.addoption("--topology", default=None, help="topology file (default: the project's)")


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(number): the verifier scenario (LAB.md) a test proves")
    config.addinivalue_line("markers", "disruptive: breaks the lab on purpose and repairs it")
    config.addinivalue_line("markers", "netns_only: needs the netns lab's internals")
    if not config.pluginmanager.has_plugin("podpath-scenarios"):
        config.pluginmanager.register(ScenarioReport(), "podpath-scenarios")


def _cluster_mode(config) -> bool:
    hosts = config.getoption("hosts", default=None) or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return any(h and not h.startswith("local://") for h in hosts)


_LAB = {}


def make_lab(config):
    if "lab" in _LAB:
        return _LAB["lab"]
    topo = topology_mod.load(config.getoption("topology"))
    if _cluster_mode(config):
        from podpath.cluster_probe import ClusterLab

        _LAB["lab"] = ClusterLab(topo, config.getoption("hosts"), config.getoption("ansible_inventory", None))
    else:
        import testinfra
        from podpath.probe import NetnsLab, testinfra_runner

        _LAB["lab"] = NetnsLab(config.getoption("lab"), topo, testinfra_runner(testinfra.get_host("local://")))
    return _LAB["lab"]


@pytest.fixture(scope="session")
def lab(request):
    driver = make_lab(request.config)
    if driver.kind == "netns":
        state = f"/run/podpath/{driver.name}/netns.json"
        if not os.path.exists(state):
            pytest.skip(f"lab {driver.name} is not up on this host (no {state}): build it with "
                        f"podpath up --lab {driver.name}")
    return driver


def pytest_generate_tests(metafunc):
    """One test id per pod and per node, so a failure names the pod or node."""
    if not {"pod", "node", "ingress_pod", "echo_pod"} & set(metafunc.fixturenames):
        return
    driver = make_lab(metafunc.config)
    if "pod" in metafunc.fixturenames:
        pods = driver.pods()
        metafunc.parametrize("pod", pods, ids=[p.name for p in pods])
    if "ingress_pod" in metafunc.fixturenames:
        pods = [p for p in driver.pods() if p.app == "ingress-nginx"]
        metafunc.parametrize("ingress_pod", pods, ids=[p.name for p in pods])
    if "echo_pod" in metafunc.fixturenames:
        pods = [p for p in driver.pods() if p.app == "echo"]
        metafunc.parametrize("echo_pod", pods, ids=[p.name for p in pods])
    if "node" in metafunc.fixturenames:
        nodes = driver.plan.nodes
        metafunc.parametrize("node", nodes, ids=[n.name for n in nodes])
