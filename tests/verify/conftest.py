"""Fixtures of the verifier's suites: which lab, and one test id per pod, node and hop.

netns lab:   pytest --hosts=local:// tests/verify [--lab NAME]
netns labs of a class's hosts:
             pytest --hosts=ansible://all --ansible-inventory=CLASSROOM tests/verify
             pytest --hosts=ssh://root@pc01 --lab stu01,stu02 tests/verify
cluster lab: pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

`--hosts` picks the adapter the checks ask (podpath/evidence/lab.py): `local://` the netns
lab on this host (NetnsLab); `ansible://` with an inventory that has the group
control_plane, the cluster lab (ClusterLab); any other host, the netns labs on it
(NetnsLab through that testinfra host): an inventory's host runs the labs its variables
give it (podpath_labs, or its share of podpath_roster), as playbooks/netns-lab.yml builds
them, and `--lab` names them instead (on an ssh:// host, always). Every check of those is
parametrized by host and lab (`[pc01/stu01-echo-1]`). The lab is found from its topology
(inventory/group_vars/all/topology.yml, or --topology) and its state under
/run/podpath/<lab>/ on its host.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest

from podpath.evidence.lab import NAMESPACE_KINDS, CONTAINERD, NETNS_LAB, Unobservable
from podpath.evidence.report import ScenarioReport
from podpath.model import topology as topology_mod


def pytest_addoption(parser):
    group = parser.getgroup("podpath")
    group.addoption("--lab", default=os.environ.get("PODPATH_LAB", "podpath"),
                    help="netns lab to verify, or labs, comma-separated (default: $PODPATH_LAB or podpath)")
    group.addoption("--topology", default=None, help="topology file (default: the project's)")
    group.addoption("--disruptive", action="store_true", default=False,
                    help="also run the checks that break the lab on purpose and repair it")
    group.addoption("--scenario-json", default=None, help="also write each scenario's outcome to this JSON file")
    group.addoption("--scenario-json-each", default=None, metavar="FOLDER",
                    help="also write each lab's scenarios, as --scenario-json does, to FOLDER/<lab>.json "
                         "(<host>__<lab>.json for another host's)")
    group.addoption("--runtime-dir", default=None,
                    help="netns labs on other hosts: where podpath's runtime is there (default: the host's "
                         "podpath_runtime_dir, else /opt/podpath)")


def pytest_configure(config):
    if lab_kind(config) == "netns" and not remote(config) and os.geteuid() != 0:  # a user's own lab: in their sandbox
        from podpath import sandbox

        sandbox.rerun_inside(config, pytest.exit)
    config.addinivalue_line("markers", "scenario(number): the verifier scenario (docs/lab.md) a test proves")
    config.addinivalue_line("markers", "disruptive: breaks the lab on purpose and repairs it")
    config.addinivalue_line("markers", "cluster_lab: a check only the cluster lab can answer")
    config.addinivalue_line("markers", "edge(name): a check of one edge only (ingress-nginx or gateway-api)")
    if not config.pluginmanager.has_plugin("podpath-scenarios"):
        plan = lab_plan(config)
        targets = netns_targets(config) if lab_kind(config) == "netns" else []
        fill = {"{lab}": targets[0].lab if len(targets) == 1 else "<lab>", "{nodes}": " ".join(node.name for node in plan.nodes),
                "<MetalLB address>": plan.ingress_service.load_balancer_ip or "<MetalLB address>",
                "<ingress host>": plan.ingress_host}
        config.pluginmanager.register(ScenarioReport(lab_kind(config), fill, plan.kube_proxy_mode, plan.edge),
                                      "podpath-scenarios")


def _specs(config) -> list[str]:
    hosts = config.getoption("hosts", default=None) or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return [h for h in hosts if h] or ["local://"]


_KIND: dict = {}


def lab_kind(config) -> str:
    """netns or cluster, from --hosts: ansible:// with an inventory that has the group
    control_plane is the cluster lab; anything else, netns labs (this host's, or other hosts')."""
    if "kind" not in _KIND:
        ansible = [h for h in _specs(config) if h.startswith("ansible://")]
        _KIND["kind"] = "cluster" if ansible and _inventory_has_group(config, "control_plane") else "netns"
    return _KIND["kind"]


def remote(config) -> bool:
    """Whether the netns labs are on hosts reached through testinfra, not this one's local://."""
    return any(not h.startswith("local://") for h in _specs(config))


def _ansible_runner(config):
    from testinfra.utils.ansible_runner import AnsibleRunner

    return AnsibleRunner.get_runner(config.getoption("ansible_inventory", None))


def _inventory_has_group(config, group: str) -> bool:
    from testinfra.utils.ansible_runner import itergroup

    try:
        return any(True for _ in itergroup(_ansible_runner(config).inventory, group))
    except Exception:  # no inventory: the cluster lab's own checks say what is missing
        return True


@dataclass(frozen=True)
class Target:
    """One netns lab this run verifies: on which host (its name in the inventory or the
    --hosts spec; None for this host), through which testinfra host spec, and the Python
    that runs the lab there."""

    where: str | None
    spec: str
    lab: str
    python: str
    remote: bool

    @property
    def id(self) -> str:
        return f"{self.where}/{self.lab}" if self.where else self.lab


_TARGETS: dict = {}


def _given_labs(config) -> list[str] | None:
    """--lab when it was given on the command line (comma-separated names), else None."""
    args = [str(a) for a in config.invocation_params.args]
    if not any(a == "--lab" or a.startswith("--lab=") for a in args):
        return None
    return [name.strip() for name in config.getoption("lab").split(",") if name.strip()]


def _fleet_filter():
    from podpath.model import labdir
    from podpath.model.topology import ROOT

    return labdir.load_file("podpath_fleet_filter", ROOT / "plugins" / "filter" / "podpath_fleet.py")


def netns_targets(config) -> list[Target]:
    """Every netns lab of this run, in the order of --hosts and of each host's labs."""
    if "targets" in _TARGETS:
        return _TARGETS["targets"]
    targets = []
    given = _given_labs(config)
    runtime = config.getoption("runtime_dir")
    for spec in _specs(config):
        if spec.startswith("local://"):  # this host's labs: --lab names one or more (podpath report)
            targets += [Target(None, spec, lab, sys.executable, False) for lab in (given or [config.getoption("lab")])]
        elif spec.startswith("ansible://"):
            runner = _ansible_runner(config)
            names = runner.get_hosts(spec[len("ansible://"):].split("?")[0] or "all")
            every = runner.get_hosts("all")
            hostvars = {h: runner.get_variables(h) for h in every}
            fleet = _fleet_filter()
            for host in names:
                own = hostvars[host]
                local = own.get("ansible_connection") in ("local", "ansible.builtin.local")
                roster = own.get("podpath_roster")
                if isinstance(roster, str):
                    roster = roster.replace("{{ inventory_dir }}", str(own.get("inventory_dir", ".")))
                labs = given if given is not None else fleet.host_labs(host, hostvars, every, None, roster)
                python = sys.executable if local else \
                    f"{runtime or own.get('podpath_runtime_dir') or '/opt/podpath'}/venv/bin/python"
                targets += [Target(host, f"ansible://{host}", lab, python, not local) for lab in labs]
        else:
            where = spec.split("://", 1)[1].split("?")[0].rpartition("@")[2]
            python = f"{runtime or '/opt/podpath'}/venv/bin/python"
            targets += [Target(where, spec, lab, python, True) for lab in (given or [config.getoption("lab")])]
    if not targets:
        raise pytest.UsageError(f"--hosts={','.join(_specs(config))}: no host of it has a netns lab (give the "
                                "hosts podpath_labs in the inventory, or name the labs with --lab)")
    _TARGETS["targets"] = targets
    return targets


_LAB = {}
# The topology file and the lab's plan, read once a run: the hooks that give tests
# one id per pod or node run once per test function, and a YAML load takes 10-20 ms. The
# file does not change while the verifier runs.
_TOPOLOGY: dict = {}
_PLAN: dict = {}


def topology_path(config) -> str | None:
    """--topology, else the topology `podpath up` kept for a netns lab built from its own, else None (the project's)."""
    path = config.getoption("topology")
    if path is None and lab_kind(config) == "netns" and not remote(config):  # another host's labs: the playbook's
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


def make_lab(config, target: Target | None = None):
    key = target.id if target else "lab"
    if key in _LAB:
        return _LAB[key]
    topo = load_topology(config)
    if lab_kind(config) == "cluster":
        from podpath.evidence.cluster import ClusterLab

        _LAB[key] = ClusterLab(lab_plan(config), config.getoption("hosts"),
                               config.getoption("ansible_inventory", None))
    else:
        import testinfra
        from podpath.evidence.probe import NetnsLab, testinfra_runner

        target = target or netns_targets(config)[0]
        host = testinfra.get_host(target.spec, ansible_inventory=config.getoption("ansible_inventory", None))
        _share_ssh_connection(host)
        _LAB[key] = NetnsLab(target.lab, topo, testinfra_runner(host), remote=target.remote, python=target.python,
                             where=target.where)
    return _LAB[key]


_SSH: dict = {}


def _share_ssh_connection(host) -> None:
    """Over SSH, one connection per host for all the checks' commands (OpenSSH's
    ControlMaster, in a folder of this run, closed at its end), unless the SSH options already
    choose: a new connection per command costs a login each, and a busy sshd may refuse some."""
    import tempfile

    backend = host.backend
    if getattr(backend, "NAME", "") == "ansible":  # its commands go through the host Ansible's variables give
        backend = getattr(backend.ansible_runner.get_host(backend.host, ssh_config=backend.ssh_config,
                                                          ssh_identity_file=backend.ssh_identity_file),
                          "backend", None)
    if getattr(backend, "NAME", "") not in ("ssh", "safe-ssh") or backend.controlpath or \
            "control" in (backend.ssh_extra_args or "").lower():
        return
    if "dir" not in _SSH:
        _SSH["dir"] = tempfile.mkdtemp(prefix="podpath-ssh-")
    backend.controlpath = os.path.join(_SSH["dir"], "%%C")  # testinfra %-formats the command: ssh gets %C
    backend.controlpersist = max(backend.controlpersist, 60)


def pytest_unconfigure(config):
    """Close the SSH connections this run opened, and their folder."""
    folder = _SSH.pop("dir", None)
    if folder:
        import shutil
        import subprocess

        for name in os.listdir(folder):
            subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(folder, name)}", "-O", "exit", "podpath"],
                           capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(request):
    target = getattr(request, "param", None)
    driver = make_lab(request.config, target)
    if driver.kind == "netns" and not driver.remote:
        from podpath.evidence.status import lab_exists

        if not lab_exists(driver.name):  # neither its folder nor anything with its mark in the kernel
            pytest.exit(f"lab {driver.name} does not exist on this host: build it with podpath up --lab {driver.name}",
                        returncode=pytest.ExitCode.USAGE_ERROR)
    if driver.kind == "netns":
        driver.prefetch()  # the node batches run in the background from here on
        if driver.remote and not driver.lab_facts()["exists"]:
            pytest.fail(f"lab {driver.name} does not exist on {driver.where}: build it with ansible-playbook -i "
                        f"INVENTORY playbooks/netns-lab.yml --limit {driver.where}", pytrace=False)
    yield driver
    if driver.kind == "netns":
        # on a host whose shared neighbour table is crowded, the entries this lab's checks left
        # REACHABLE go, before the next lab's checks (NetnsLab.release_neighbours)
        driver.release_neighbours()


# -- one test id per pod, node and namespace kind ------------------------------------------------
# Ids come from the plan (netns lab: the pods' names) or the topology (cluster lab: slots such
# as echo-2, resolved to a real pod when the check runs): collecting never connects to a lab.

def _pod_refs(config, *apps):
    if lab_kind(config) == "cluster":
        from podpath.evidence.cluster import pod_slots

        return pod_slots(lab_plan(config), *apps)
    from podpath.evidence.probe import pod_refs

    return pod_refs(lab_plan(config), *apps)


def _served_pod_refs(config):
    """The pods a node can ask on a port (of a netns lab: the plan knows which have one; of
    a cluster lab: every slot, the check skipping one without)."""
    refs = _pod_refs(config)
    if lab_kind(config) == "cluster":
        return refs
    served = {p.name for p in lab_plan(config).pods if p.port}
    return [r for r in refs if r.id in served]


def runtime_model(config):
    """The namespace model of the pods' runtime, per lab (podpath/evidence/lab.py)."""
    return CONTAINERD if lab_kind(config) == "cluster" else NETNS_LAB


def pytest_generate_tests(metafunc):
    config = metafunc.config
    if "lab" in metafunc.fixturenames and lab_kind(config) == "netns" and \
            (remote(config) or len(netns_targets(config)) > 1):
        # every check once per host and lab, named after them
        targets = netns_targets(config)
        metafunc.parametrize("lab", targets, ids=[t.id for t in targets], indirect=True, scope="session")
    for name, refs_of in (("pod", _pod_refs), ("echo_pod", lambda c: _pod_refs(c, "echo")),
                          ("ingress_pod", lambda c: _pod_refs(c, "ingress-nginx")), ("served_pod", _served_pod_refs)):
        if name in metafunc.fixturenames:
            refs = refs_of(config)
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
def served_pod(lab, request):
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
    elsewhere = netns and remote(config)  # a disruptive check repairs with podpath up: this host's labs only
    edge = lab_plan(config).edge  # a check of the other edge's pods is left out too
    keep, drop = [], []
    for item in items:
        disruptive = item.get_closest_marker("disruptive") and (elsewhere or not config.getoption("disruptive"))
        other_edge = (item.get_closest_marker("edge") or pytest.mark.edge(edge).mark).args[0] != edge
        (drop if disruptive or other_edge or (netns and item.get_closest_marker("cluster_lab")) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
