"""Fixtures of the verifier's suites.

netns lab:   pytest --hosts=local:// tests/verify [--lab NAME]
cluster lab: pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

The lab is found from its topology (inventory/group_vars/all/topology.yml, or
--topology) and, for the netns lab, its state under /run/podpath/<lab>/.
"""
from __future__ import annotations

import os

import pytest

from podpath.model import topology as topology_mod
from podpath.evidence.report import ScenarioReport

def pytest_addoption(parser):
    group = parser.getgroup("podpath")
    group.addoption("--lab", default=os.environ.get("PODPATH_LAB", "podpath"),
                    help="netns lab to verify (default: $PODPATH_LAB or podpath)")
    group.addoption("--topology", default=None, help="topology file (default: the project's)")
    group.addoption("--disruptive", action="store_true", default=False,
                    help="also run the checks that break the lab on purpose and repair it")
    group.addoption("--scenario-json", default=None, help="also write each scenario's outcome to this JSON file")


def pytest_configure(config):
    config.addinivalue_line("markers", "scenario(number): the verifier scenario (docs/lab.md) a test proves")
    config.addinivalue_line("markers", "disruptive: breaks the lab on purpose and repairs it")
    config.addinivalue_line("markers", "netns_lab: a check of the netns lab (its namespaces, pidfiles, processes)")
    config.addinivalue_line("markers", "cluster_lab: a check of the cluster lab (kubectl, crictl on the nodes)")
    if not config.pluginmanager.has_plugin("podpath-scenarios"):
        config.pluginmanager.register(ScenarioReport(), "podpath-scenarios")


def _cluster_mode(config) -> bool:
    hosts = config.getoption("hosts", default=None) or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return any(h and not h.startswith("local://") for h in hosts)


_LAB = {}
# The topology file and the netns lab's plan, read once a run: the hooks that give tests
# one id per pod or node run once per test function (about 75), and a YAML load takes
# 10-20 ms. The file does not change while the verifier runs.
_TOPOLOGY: dict = {}
_PLAN: dict = {}


def load_topology(config) -> dict:
    path = config.getoption("topology")
    if path not in _TOPOLOGY:
        _TOPOLOGY[path] = topology_mod.load(path)
    return _TOPOLOGY[path]


def netns_plan(config):
    key = (config.getoption("topology"), config.getoption("lab"))
    if key not in _PLAN:
        from podpath.model.plan import build

        _PLAN[key] = build(load_topology(config), config.getoption("lab"))
    return _PLAN[key]


def make_lab(config):
    if "lab" in _LAB:
        return _LAB["lab"]
    topo = load_topology(config)
    if _cluster_mode(config):
        from podpath.evidence.cluster_probe import ClusterLab

        _LAB["lab"] = ClusterLab(topo, config.getoption("hosts"), config.getoption("ansible_inventory", None))
    else:
        import testinfra
        from podpath.evidence.probe import NetnsLab, testinfra_runner

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


def pytest_ignore_collect(collection_path, config):
    """A netns run leaves the cluster suites (test_cluster_*.py) uncollected: every one of
    their checks would be skipped, and importing and parametrizing them costs a third of a
    second. A file named on the command line is still collected, and its checks skipped
    below, saying why. A cluster run collects everything (the netns checks skip)."""
    if (collection_path.name.startswith("test_cluster_") and collection_path.suffix == ".py"
            and not _cluster_mode(config)):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """Each lab runs its own checks: the other lab's are skipped, saying why."""
    cluster = _cluster_mode(config)
    if not config.getoption("disruptive"):
        # the default run changes nothing: the disruptive checks are left out, and listed
        keep = [i for i in items if not i.get_closest_marker("disruptive")]
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("disruptive")])
        items[:] = keep
    for item in items:
        if cluster and item.get_closest_marker("netns_lab"):
            item.add_marker(pytest.mark.skip(reason="a netns lab check; this run verifies the cluster lab"))
        if not cluster and item.get_closest_marker("cluster_lab"):
            item.add_marker(pytest.mark.skip(reason="a cluster lab check; this run verifies the netns lab "
                                                    "(use --hosts=ansible://all --ansible-inventory=...)"))


def pytest_generate_tests(metafunc):
    """One test id per pod and per node of the netns lab's plan, so a failure names it."""
    if not metafunc.definition.get_closest_marker("netns_lab"):
        return
    if not {"pod", "node", "ingress_pod", "echo_pod"} & set(metafunc.fixturenames):
        return
    plan = netns_plan(metafunc.config)
    for name, pods in (("pod", plan.pods), ("ingress_pod", plan.ingress_pods), ("echo_pod", plan.echo_pods)):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, pods, ids=[p.name for p in pods])
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", plan.nodes, ids=[n.name for n in plan.nodes])


# --- cluster lab: one test id per node and per pod slot ------------------------------------
# (podpath/evidence/cluster_probe.py; tests/verify/test_cluster_*.py). A hook of its own, so that the
# netns lab's pytest_generate_tests above stays as it is. Ids come from the topology only:
# collecting the cluster suites never connects to a node; a slot (echo-2) is resolved to a
# real pod when its test runs, and the failure message names that pod.
@pytest.hookimpl(specname="pytest_generate_tests")
def pytest_generate_tests_cluster_lab(metafunc):
    if not metafunc.definition.get_closest_marker("cluster_lab"):
        return
    from podpath.evidence.cluster_probe import pod_slots

    topo = load_topology(metafunc.config)
    slots = {"k8s_pod": pod_slots(topo), "k8s_echo": pod_slots(topo, "echo"),
             "k8s_controller": pod_slots(topo, "ingress-nginx")}
    for name, values in slots.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, values, ids=[s.id for s in values])
    if "k8s_node" in metafunc.fixturenames:
        names = [n["name"] for n in topo["nodes"]]
        metafunc.parametrize("k8s_node", names, ids=names)
# --- end of the cluster lab section ---------------------------------------------------------
