"""The pure parts of ownership (module_utils/podpath_lab.py, podpath/evidence/status.py):
reading a mark exactly, telling a whole file from a broken one, giving nginx its wrapper's
mark, telling two labs apart, and when MetalLB's election counts as converged. The kernel
parts are tested for real in tests/integration/test_ownership.py."""
from __future__ import annotations

import itertools
import json

import pytest

from podpath.evidence import status
from podpath.model import labdir, topology
from podpath.model.election import announcer
from podpath.model.plan import build
from podpath.model.workloads import render

lab = labdir.lab


@pytest.mark.parametrize("alias, owner", [
    ("podpath-lab=q1", "q1"),
    ("podpath-lab=q12", "q12"),
    ("podpath-lab=q1 ", None),  # not a lab name: no mark, whatever it starts with
    ("podpath-lab=Q1", None),
    ("xpodpath-lab=q1", None),
    ("podpath-lab=", None),
    ("podpath-lab=q1/x", None),
    ("", None),
    (None, None),
])
def test_a_mark_names_a_lab_exactly_or_none(alias, owner):
    assert lab.mark_lab(alias) == owner


def test_a_labs_mark_is_never_another_labs_even_a_prefix_of_it():
    assert lab.mark_lab(lab.netns_mark("q1")) == "q1"
    assert lab.mark_lab(lab.netns_mark("q12")) != "q1"


@pytest.mark.parametrize("environ, marks", [
    (b"PATH=/bin\0PODPATH_OWNER=q1\0PODPATH_ROLE=holder:cni-x\0", ("q1", "holder:cni-x")),
    (b"PODPATH_OWNER=q12\0", ("q12", None)),
    (b"PATH=/bin\0PODPATH_LAB=q1\0", (None, None)),  # the CLI's choice of lab is no mark
    (b"PODPATH_OWNERX=q1\0", (None, None)),
    (b"XPODPATH_OWNER=q1\0", (None, None)),
    (b"nginx: worker process\0\0\0\0", (None, None)),  # nginx wrote its title over its environment
    (b"", (None, None)),
])
def test_the_marks_of_an_environment(environ, marks):
    assert lab.env_marks(environ) == marks


@pytest.mark.parametrize("text, pidfile", [
    ("4242 123456\n", (4242, 123456)),
    ("4242\n", (4242, None)),  # written before start times were recorded
    ("", (None, None)),
    ("42", (42, None)),
    ("4x2\n", (None, None)),
    ("4242 12 7\n", (None, None)),
    ("-1 5\n", (None, None)),
])
def test_a_pidfile_names_a_process_only_when_it_is_whole(tmp_path, text, pidfile):
    path = tmp_path / "x.pid"
    path.write_text(text)
    assert lab.read_pidfile(str(path)) == pidfile


@pytest.fixture
def lab_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(lab, "RUN_ROOT", str(tmp_path))
    (tmp_path / "q1").mkdir()
    return tmp_path / "q1"


@pytest.mark.parametrize("content, corrupt, legacy", [
    ('{"marked": true, "namespaces": ["q1-lan"]}', "", False),
    ('{"namespaces": ["q1-lan"]}', "", True),  # written before the marks
    ('{"namespaces": ["q1-la', "is not valid JSON", False),
    ("", "is not valid JSON", False),
    ('{"namespaces": "q1-lan"}', "does not hold lists of names", False),
    ('["q1-lan"]', "does not hold lists of names", False),
])
def test_a_registry_that_is_not_whole_is_not_trusted(lab_folder, content, corrupt, legacy):
    (lab_folder / "netns.json").write_text(content)
    registry = lab.Registry("q1", "netns.json")
    assert registry.corrupt.startswith(corrupt) and bool(registry.corrupt) == bool(corrupt)
    assert registry.legacy == legacy
    assert registry.owns("namespaces", "q1-lan") == (not corrupt)


def test_a_broken_registry_is_written_whole_again(lab_folder):
    (lab_folder / "netns.json").write_text('{"namesp')
    registry = lab.Registry("q1", "netns.json")
    registry.add("namespaces", ["q1-lan"])
    assert json.loads((lab_folder / "netns.json").read_text()) == {"marked": True, "namespaces": ["q1-lan"]}
    assert not lab.Registry("q1", "netns.json").corrupt


def proc(pid, ppid, net, owner=None, role=None):
    return lab.Proc(pid, ppid, 1000 + pid, net, owner, role)


def test_nginx_takes_its_wrappers_mark_and_a_shell_opened_in_the_namespace_takes_none():
    procs = {p.pid: p for p in [
        proc(1, 0, 10),  # init, in the host's namespace
        proc(100, 1, 20, "q1", "container:workloads:echo-1/echo"),  # the wrapper (unshare), marked
        proc(101, 100, 20),  # nginx's master: its environment was written over
        proc(102, 101, 20),  # a worker
        proc(200, 1, 10),  # a user's shell on the host
        proc(201, 200, 20),  # ... that entered the pod's namespace (nsenter)
        proc(202, 201, 20),  # ... and a command it ran there
        proc(300, 1, 20, "q12", "holder:x"),  # another lab's mark, kept as is
        proc(301, 300, 20),
    ]}
    lab.inherit_marks(procs)
    assert (procs[101].owner, procs[101].role) == ("q1", "container:workloads:echo-1/echo")
    assert (procs[102].owner, procs[102].direct) == ("q1", False)
    assert procs[201].owner is None and procs[202].owner is None
    assert procs[301].owner == "q12" and procs[300].direct


class FakeView(lab.KernelView):
    """A KernelView over made-up processes and namespace marks."""

    def __init__(self, procs, marks, bound):
        self.home = 10
        self.bound = bound
        self.names = {}
        for name, inode in bound.items():
            self.names.setdefault(inode, []).append(name)
        self._procs = lab.inherit_marks({p.pid: p for p in procs})
        self._members = None
        self._marks = {inode: (owner, lab.netns_mark(owner) if owner else "") for inode, owner in marks.items()}


def test_two_labs_whose_names_are_prefixes_are_told_apart_and_a_forged_mark_counts_for_nothing():
    view = FakeView(
        [proc(1, 0, 10),
         proc(100, 1, 20, "q1", "holder:q1-cp1"), proc(101, 1, 20, "q1", "container:metallb:s"),
         proc(102, 101, 20, "q1", "container:metallb:s"),  # the lease's python under its unshare
         proc(200, 1, 30, "q12", "holder:q12-cp1"),
         proc(300, 1, 10, "q1", "holder:q1-cp1"),  # a forged mark in the host's namespace
         proc(400, 1, 40, "q1", "holder:q1-x")],  # a forged mark in a namespace without one
        marks={20: "q1", 30: "q12", 40: None}, bound={"q1-cp1": 20, "q12-cp1": 30, "q1-x": 40})
    assert sorted(p.pid for p in view.processes("q1")) == [100, 101, 102]
    assert sorted(p.pid for p in view.units("q1")) == [100, 101]
    assert [p.pid for p in view.processes("q12")] == [200]
    assert view.namespaces("q1") == ({"q1-cp1": 20}, {})
    found = view.labs()
    assert sorted(found) == ["q1", "q12"] and found["q1"]["namespaces"] == ["q1-cp1"]


def test_a_namespace_no_longer_bound_is_still_the_labs_while_a_process_holds_it():
    view = FakeView([proc(1, 0, 10), proc(100, 1, 50, "q1", "holder:q1-cp1"), proc(101, 1, 50)],
                    marks={50: "q1"}, bound={})
    assert view.namespaces("q1") == ({}, {50: [100, 101]})


def test_the_status_knows_every_container_the_lab_runs_by_its_name_and_group():
    plan = build(topology.load(), "q1")
    rendered = {c["name"]: group for group, spec in render(plan, "python3").items() for c in spec["containers"]}
    assert status.expected_containers(plan) == rendered


ADDRESS = "192.168.56.200"


def speaker(announcing=(), link_ok=True):
    return {"announcing": list(announcing), "link_ok": link_ok}


def test_one_announcer_the_election_gives_is_converged():
    nodes = ["cp1", "worker1", "worker2"]
    elected = announcer(nodes, ADDRESS)
    live = {n: speaker([ADDRESS] if n == elected else []) for n in nodes}
    vote = status.election(ADDRESS, live, nodes)
    assert vote["settling"] == [] and vote["announcers"] == [elected] == [vote["elected"]]


@pytest.mark.parametrize("case", ["two", "none", "the wrong one", "a silent speaker"])
def test_the_election_is_settling_until_exactly_the_elected_node_announces(case):
    nodes = ["cp1", "worker1", "worker2"]
    elected = announcer(nodes, ADDRESS)
    other = next(n for n in nodes if n != elected)
    announcing = {"two": {elected, other}, "none": set(), "the wrong one": {other}, "a silent speaker": {elected}}[case]
    live = {n: speaker([ADDRESS] if n in announcing else []) for n in nodes}
    if case == "a silent speaker":
        del live[other]
    vote = status.election(ADDRESS, live, nodes)
    assert vote["settling"], f"{case}: status would call the lab healthy"


def test_status_and_the_verifiers_scenario_13_agree_on_every_state_of_the_speakers():
    """The verifier passes scenario 13's speaker check when the speakers report exactly the
    elected node among those with their link up (tests/verify/test_load_balancer_ingress.py);
    status is converged in exactly those cases."""
    nodes = ["cp1", "worker1", "worker2"]
    for links in itertools.product([True, False], repeat=3):
        for announcing in itertools.product([True, False], repeat=3):
            live = {n: speaker([ADDRESS] if a else [], link) for n, link, a in zip(nodes, links, announcing)}
            candidates = sorted(n for n, s in live.items() if s["link_ok"])
            reported = sorted(n for n, a in zip(nodes, announcing) if a)
            verifier_passes = bool(candidates) and reported == [announcer(candidates, ADDRESS)]
            vote = status.election(ADDRESS, live, nodes)
            assert (not vote["settling"]) == verifier_passes, (links, announcing, vote)
