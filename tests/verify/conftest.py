"""Fixtures of the verifier's suites: which lab, and one test id per pod, node and hop.

netns lab:   pytest --hosts=local:// tests/verify [--lab NAME]
cluster lab: pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

`--hosts` picks the adapter the checks ask (podpath/evidence/lab.py): `local://` the netns
lab on this host (NetnsLab), anything else the cluster lab (ClusterLab). The lab is found
from its topology (inventory/group_vars/all/topology.yml, or --topology) and, for the
netns lab, its state under /run/podpath/<lab>/.
"""
from __future__ import annotations

import os

import pytest

from podpath.evidence.lab import NAMESPACE_KINDS, CONTAINERD, NETNS_LAB, Unobservable
from podpath.evidence.report import ScenarioReport
from podpath.model import topology as topology_mod


def pytest_addoption(parser):
    group = parser.getgroup("podpath")
    group.addoption("--lab", default=os.environ.get("PODPATH_LAB", "podpath"),
                    help="netns lab to verify (default: $PODPATH_LAB or podpath)")
    group.addoption("--topology", default=None, help="topology file (default: the project's)")
    group.addoption("--disruptive", action="store_true", default=False,
                    help="also run the checks that break the lab on purpose and repair it")
    group.addoption("--scenario-json", default=None, help="also write each scenario's outcome to this JSON file")


def pytest_configure(config):
    if lab_kind(config) == "netns" and os.geteuid() != 0:  # a user's own lab: verify it in their sandbox
        from podpath import sandbox

        sandbox.rerun_inside(config, pytest.exit)
    config.addinivalue_line("markers", "scenario(number): the verifier scenario (docs/lab.md) a test proves")
    config.addinivalue_line("markers", "disruptive: breaks the lab on purpose and repairs it")
    config.addinivalue_line("markers", "cluster_lab: a check only the cluster lab can answer")
    config.addinivalue_line("markers", "edge(name): a check of one edge only (ingress-nginx or gateway-api)")
    if not config.pluginmanager.has_plugin("podpath-scenarios"):
        plan = lab_plan(config)
        fill = {"{lab}": config.getoption("lab"), "{nodes}": " ".join(node.name for node in plan.nodes),
                "<MetalLB address>": plan.ingress_service.load_balancer_ip or "<MetalLB address>",
                "<ingress host>": plan.ingress_host}
        config.pluginmanager.register(ScenarioReport(lab_kind(config), fill, plan.kube_proxy_mode, plan.edge),
                                      "podpath-scenarios")


def lab_kind(config) -> str:
    """netns or cluster, from --hosts: local:// is this host's netns lab."""
    hosts = config.getoption("hosts", default=None) or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return "cluster" if any(h and not h.startswith("local://") for h in hosts) else "netns"


_LAB = {}
# The topology file and the lab's plan, read once a run: the hooks that give tests
# one id per pod or node run once per test function, and a YAML load takes 10-20 ms. The
# file does not change while the verifier runs.
_TOPOLOGY: dict = {}
_PLAN: dict = {}


def topology_path(config) -> str | None:
    """--topology, else the topology `podpath up` kept for a netns lab built from its own, else None (the project's)."""
    path = config.getoption("topology")
    if path is None and lab_kind(config) == "netns":
        from podpath.model import labdir

        kept = os.path.join(labdir.lab_dir(config.getoption("lab")), "topology.yml")
        path = kept if os.path.isfile(kept) else None
    return path


def load_topology(config) -> dict:
    path = topology_path(config)
    if path not in _TOPOLOGY:
        _TOPOLOGY[path] = topology_mod.load(path)
    return _TOPOLOGY[path]


def lab_plan(config):
    """The plan of the lab (podpath/model/plan.py): the netns lab's, or what the cluster lab
    was built from (its names, addresses and counts)."""
    key = (topology_path(config), config.getoption("lab"))
    if key not in _PLAN:
        from podpath.model.plan import build

        _PLAN[key] = build(load_topology(config), config.getoption("lab"))
    return _PLAN[key]


def make_lab(config):
    if "lab" in _LAB:
        return _LAB["lab"]
    topo = load_topology(config)
    if lab_kind(config) == "cluster":
        from podpath.evidence.cluster import ClusterLab

        _LAB["lab"] = ClusterLab(lab_plan(config), config.getoption("hosts"),
                                 config.getoption("ansible_inventory", None))
    else:
        import testinfra
        from podpath.evidence.probe import NetnsLab, testinfra_runner

        _LAB["lab"] = NetnsLab(config.getoption("lab"), topo, testinfra_runner(testinfra.get_host("local://")))
    return _LAB["lab"]


@pytest.fixture(scope="session")
def lab(request):
    driver = make_lab(request.config)
    if driver.kind == "netns":
        from podpath.evidence.status import lab_exists

        if not lab_exists(driver.name):  # neither its folder nor anything with its mark in the kernel
            pytest.exit(f"lab {driver.name} does not exist on this host: build it with podpath up --lab {driver.name}",
                        returncode=pytest.ExitCode.USAGE_ERROR)
    return driver


# -- one test id per pod, node and namespace kind ------------------------------------------------
# Ids come from the plan (netns lab: the pods' names) or the topology (cluster lab: slots such
# as echo-2, resolved to a real pod when the check runs): collecting never connects to a lab.

def _pod_refs(config, *apps):
    if lab_kind(config) == "cluster":
        from podpath.evidence.cluster import pod_slots

        return pod_slots(lab_plan(config), *apps)
    from podpath.evidence.probe import pod_refs

    return pod_refs(lab_plan(config), *apps)


def runtime_model(config):
    """The namespace model of the pods' runtime, per lab (podpath/evidence/lab.py)."""
    return CONTAINERD if lab_kind(config) == "cluster" else NETNS_LAB


def pytest_generate_tests(metafunc):
    config = metafunc.config
    for name, apps in (("pod", ()), ("echo_pod", ("echo",)), ("ingress_pod", ("ingress-nginx",))):
        if name in metafunc.fixturenames:
            refs = _pod_refs(config, *apps)
            metafunc.parametrize(name, refs, ids=[r.id for r in refs], indirect=True)
    if "node" in metafunc.fixturenames:
        names = [n.name for n in lab_plan(config).nodes]
        metafunc.parametrize("node", names, ids=names)
    if "namespace_kind" in metafunc.fixturenames:
        # named after what the model expects of the multi-container pod, whose option the plan knows
        model = runtime_model(config)
        share = any(p.share_process_namespace for p in lab_plan(config).pods if p.app == "multi-container")
        metafunc.parametrize("namespace_kind", NAMESPACE_KINDS,
                             ids=[f"{k}-{model.expectation(k, share)}" for k in NAMESPACE_KINDS])


@pytest.fixture
def pod(lab, request):
    return lab.pod(request.param)


@pytest.fixture
def echo_pod(lab, request):
    return lab.pod(request.param)


@pytest.fixture
def ingress_pod(lab, request):
    return lab.pod(request.param)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """What this machine cannot observe is skipped, saying why and what to run instead."""
    try:
        return (yield)
    except Unobservable as exc:
        pytest.skip(str(exc))


def pytest_collection_modifyitems(config, items):
    """The default run changes nothing: the disruptive checks are left out (and listed). A
    check only the cluster lab can answer is left out of a netns run."""
    netns = lab_kind(config) == "netns"
    edge = lab_plan(config).edge  # a check of the other edge's pods is left out too
    keep, drop = [], []
    for item in items:
        disruptive = item.get_closest_marker("disruptive") and not config.getoption("disruptive")
        other_edge = (item.get_closest_marker("edge") or pytest.mark.edge(edge).mark).args[0] != edge
        (drop if disruptive or other_edge or (netns and item.get_closest_marker("cluster_lab")) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
