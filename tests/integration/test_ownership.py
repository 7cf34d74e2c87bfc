"""Nothing a lab made is lost track of: the kernel is the truth, the lab's folder a cache.

Each case of docs/reliability.md ("What a lab owns") for real, on labs built with `podpath
up`: the folder removed while the lab runs, the folder outliving its namespaces and
processes (a reboot), each kind of broken file, a pidfile naming a pid another program has
now, two labs whose names are prefixes of each other, and a namespace and processes of
other programs named like a lab's. After each: the host's own namespace is unchanged,
`down` leaves nothing of the lab (found by its marks, read here with pyroute2 and /proc
rather than podpath's own code, and by its names), and the other lab still passes the
verifier.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from labtools import (_processes, force_remove, host_snapshot, lab_namespaces, marked_namespaces, marked_processes,
                      podpath, snapshot_diff)

from podpath.model import labdir, topology
from podpath.model.plan import build
from podpath.model.workloads import lease_path

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BASE = "o" + os.urandom(2).hex()
A, B = BASE, BASE + "2"  # A's name is a prefix of B's
PLAN_NAMESPACES = len(build(topology.load(), "x").netns_names)


def new_name() -> str:
    return "o" + os.urandom(3).hex()


@pytest.fixture(scope="module")
def host():
    """The host's own namespace before this module's labs, checked again after each test."""
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    return host_snapshot()


def up(name: str) -> subprocess.CompletedProcess:
    done = podpath("up", "--lab", name, "-q")
    assert done.returncode == 0, f"podpath up --lab {name} failed:\n{done.stdout}\n{done.stderr}"
    return done


def down_and_check(name: str, foreign: set[int] = frozenset()) -> None:
    """`down` NAME, then check the kernel: nothing with its mark, none of its namespaces, no folder."""
    done = podpath("down", "--lab", name, "-q")
    assert done.returncode == 0, f"podpath down --lab {name}: {done.stderr}"
    assert_nothing_left(name, foreign)


def assert_nothing_left(name: str, foreign: set[int] = frozenset()) -> None:
    left_ns = marked_namespaces(name)
    left_procs = sorted(set(marked_processes(name)) - set(foreign))
    assert not left_ns and not left_procs, f"lab {name} left namespaces {left_ns} and processes {left_procs}"
    plan = build(topology.load(), name)
    assert not set(plan.netns_names) & set(os.listdir(labdir.lab.NETNS_DIR)), "a namespace of the plan is still bound"
    assert not Path(labdir.lab_dir(name)).exists(), f"down left {labdir.lab_dir(name)}"


def remove_for_sure(name: str) -> None:
    if podpath("down", "--lab", name, "-q").returncode != 0 or marked_namespaces(name):
        force_remove(name)


def status(name: str) -> tuple[int, dict]:
    done = podpath("status", "--lab", name, "--json")
    assert done.stdout.startswith("{"), f"status --lab {name} printed no report: {done.stderr}"
    return done.returncode, json.loads(done.stdout)


def healthy(name: str, timeout: float = 15.0) -> dict:
    """The status of NAME once it says healthy (the election settles within seconds of `up`)."""
    deadline = time.monotonic() + timeout
    while True:
        rc, report = status(name)
        if report["state"] == "healthy" or time.monotonic() > deadline:
            assert rc == 0 and report["state"] == "healthy", (report["state"], report["problems"], report["settling"])
            return report
        time.sleep(0.5)


def labs() -> dict[str, dict]:
    done = podpath("labs", "--json")
    assert done.returncode == 0, done.stderr
    return {item["lab"]: item for item in json.loads(done.stdout)}


def verified(name: str) -> None:
    done = podpath("verify", "--lab", name)
    assert done.returncode == 0, f"lab {name} fails the verifier:\n{done.stdout[-2500:]}"


def started_roles(name: str) -> Counter:
    """How many processes carry each PODPATH_ROLE of lab NAME in their own environment, not
    counting a child that carries its parent's (the lease container's python under unshare)."""
    procs = _processes()

    def marks(env: bytes) -> tuple[str, str] | None:
        words = dict(w.split(b"=", 1) for w in env.split(b"\0") if b"=" in w)
        owner = words.get(b"PODPATH_OWNER")
        return (owner.decode(), words.get(b"PODPATH_ROLE", b"").decode()) if owner else None
    counted = Counter()
    for pid, (ppid, _cmd, env) in procs.items():
        mine = marks(env)
        if mine and mine[0] == name and not (ppid in procs and marks(procs[ppid][2]) == mine):
            counted[mine[1]] += 1
    return counted


def assert_each_started_once(name: str) -> None:
    roles = started_roles(name)
    twice = {role: n for role, n in roles.items() if n > 1}
    assert not twice, f"lab {name} runs these more than once: {twice}"
    plan = build(topology.load(), name)
    assert sum(r.startswith("holder:") for r in roles) == len(plan.pods), roles


def start_foreign(argv: list[str], env: dict | None = None) -> subprocess.Popen:
    """A process of another program, in a session of its own."""
    return subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_foreign(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


@pytest.fixture(scope="module")
def pair(host):
    """Labs A and A2, up side by side for the whole module; A2 is the other lab each test's
    lab must leave passing the verifier."""
    try:
        up(A)
        up(B)
        yield
    finally:
        for name in (A, B):
            remove_for_sure(name)


# -- labs whose names are prefixes of each other ---------------------------------------------
def test_labs_whose_names_are_prefixes_of_each_other_are_told_apart(pair, host):
    listed = labs()
    for name in (A, B):
        assert listed[name]["namespaces"] == PLAN_NAMESPACES, listed[name]
        assert listed[name]["processes_running"] == listed[name]["processes"] > 0, listed[name]
        assert listed[name]["folder"] and listed[name]["state"] == "ok", listed[name]
        assert len(marked_namespaces(name)) == PLAN_NAMESPACES
    assert not set(marked_namespaces(A)) & set(marked_namespaces(B))
    assert not set(marked_processes(A)) & set(marked_processes(B))
    reports = {name: healthy(name) for name in (A, B)}
    pauses = {name: {p["pause_pid"] for p in reports[name]["pods"]} for name in (A, B)}
    assert not pauses[A] & pauses[B], "the two labs report the same pause processes"
    for name in (A, B):
        assert pauses[name] <= set(marked_processes(name)), f"{name}'s pause pids are not its own processes"
    assert_each_started_once(A)
    assert_each_started_once(B)

    down_and_check(A)
    assert len(marked_namespaces(B)) == PLAN_NAMESPACES, f"down --lab {A} took namespaces of {B}"
    verified(B)
    assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())


# -- the folder removed while the lab runs ---------------------------------------------------
def remove_folder(name: str) -> None:
    """Remove the folder of NAME while its processes run. They write into it as it goes (the
    lease, a shim telling that a daemon whose files vanished has exited), which makes rmtree
    find a folder not empty: remove again until it is gone."""
    for _ in range(50):
        try:
            shutil.rmtree(labdir.lab_dir(name))
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    shutil.rmtree(labdir.lab_dir(name))


def test_a_lab_whose_folder_is_removed_is_still_seen_adopted_by_up_and_removed_by_down(pair, host):
    name = new_name()
    try:
        up(name)
        before = {p["name"]: p["pause_pid"] for p in healthy(name)["pods"]}
        remove_folder(name)

        rc, report = status(name)
        assert rc == 1 and not report["healthy"], "status calls a lab whose folder is gone healthy"
        assert any("is missing" in m for m in report["mismatches"]), report["mismatches"]
        assert {p["name"]: p["pause_pid"] for p in report["pods"]} == before, (
            "status did not report the pause processes that run (it read the folder, not the kernel)")
        item = labs().get(name)
        assert item and not item["folder"] and "folder missing" in item["state"], item
        assert item["namespaces"] == PLAN_NAMESPACES and item["processes_running"] > 0, item

        again = podpath("up", "--lab", name, "-q")
        assert again.returncode == 0, again.stderr
        assert "lost its folder" in again.stderr, again.stderr
        after = healthy(name)
        assert {p["name"]: p["pause_pid"] for p in after["pods"]} == before, "up replaced pause processes it could adopt"
        assert not after["mismatches"], after["mismatches"]
        assert_each_started_once(name)
        verified(name)

        remove_folder(name)
        down_and_check(name)
        verified(B)
        assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())
    finally:
        remove_for_sure(name)


# -- the folder outlives the namespaces and processes (a reboot) -------------------------------
def test_a_folder_that_outlives_its_lab_is_not_believed_and_up_builds_the_lab_again(pair, host):
    name = new_name()
    try:
        up(name)
        healthy(name)
        for pid in marked_processes(name):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # gone with its parent (an nginx worker after its master)
        for ns in marked_namespaces(name):
            subprocess.run(["ip", "netns", "delete", ns], check=True)
        deadline = time.monotonic() + 5
        while marked_processes(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not marked_processes(name) and Path(labdir.lab_dir(name), "netns.json").exists()
        lease = Path(lease_path(build(topology.load(), name)))
        lease.write_bytes(b"")  # as a crash while the file was being written leaves it

        rc, report = status(name)
        assert rc == 1 and report["state"] == "NOT healthy"
        assert any(p.startswith("namespaces missing") for p in report["problems"]), report["problems"]
        assert report["election"]["announcers"] == [] and not any(report["announcing"].values()), (
            f"status believed a speaker's file of a speaker that no longer runs: {report['announcing']}")
        assert all(p["pause_pid"] is None for p in report["pods"])
        assert any("left from a speaker that no longer runs" in m for m in report["mismatches"]), report["mismatches"]
        assert any("is empty (0 bytes)" in m for m in report["mismatches"]), report["mismatches"]
        assert report["leader"] is None
        item = labs()[name]
        assert item["processes_running"] == 0 and item["namespaces"] == 0 and "nothing of it runs" in item["state"]

        up(name)
        healthy(name)
        assert_each_started_once(name)
        verified(name)
        down_and_check(name)
        verified(B)
        assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())
    finally:
        remove_for_sure(name)


# -- broken files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def broken_lab(pair, host):
    """A lab whose files the tests below break one at a time, and `up` rebuilds; and a foreign
    process whose pid they write into the lab's files, which must outlive everything."""
    name = new_name()
    foreign = start_foreign(["sleep", "3600"])
    try:
        up(name)
        healthy(name)
        yield name, foreign.pid
    finally:
        remove_for_sure(name)
        alive = foreign.poll() is None
        stop_foreign([foreign])
        assert alive, "a process of another program, whose pid was written into the lab's files, was killed"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def break_registry(name: str, foreign: int) -> str:
    truncate(Path(labdir.lab_dir(name), "netns.json"))
    return "netns.json is not valid JSON"


def break_containers(name: str, foreign: int) -> str:
    truncate(Path(labdir.lab_dir(name), "containers-workloads.json"))
    return "containers-workloads.json is not valid JSON"


def break_holder_pidfile(name: str, foreign: int) -> str:
    pod = build(topology.load(), name).echo_pods[0]
    Path(labdir.holder_pidfile(name, pod.netns)).write_text(f"{foreign} {start_time(foreign)}\n")
    return f"holders/{pod.netns}.pid names pid {foreign}, which is not the pod's holder"


def break_container_record(name: str, foreign: int) -> str:
    path = Path(labdir.lab_dir(name), "containers-workloads.json")
    records = json.loads(path.read_text())
    records["echo-1/echo"].update(pid=foreign, start=start_time(foreign))
    path.write_text(json.dumps(records))
    return f"records echo-1/echo as pid {foreign}, which is not that container"


BREAKS = {"registry-truncated": break_registry, "containers-truncated": break_containers,
          "holder-pidfile-recycled": break_holder_pidfile, "container-record-recycled": break_container_record}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_a_broken_file_is_named_by_status_not_trusted_and_rebuilt_by_up(broken_lab, kind, host):
    name, foreign = broken_lab
    before = {p["name"]: p["pause_pid"] for p in healthy(name)["pods"]}
    said = BREAKS[kind](name, foreign)
    rc, report = status(name)
    assert any(said in m for m in report["mismatches"]), f"status does not say {said!r}: {report['mismatches']}"
    assert {p["name"]: p["pause_pid"] for p in report["pods"]} == before, "status believed the broken file"
    assert not report["problems"], report["problems"]

    up(name)
    after = healthy(name)
    assert not after["mismatches"], f"up left the folder wrong: {after['mismatches']}"
    assert {p["name"]: p["pause_pid"] for p in after["pods"]} == before, "up replaced pause processes that ran"
    assert_each_started_once(name)
    assert os.path.exists(f"/proc/{foreign}"), f"the foreign process {foreign} named by the broken file was killed"
    verified(name)
    assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())


def test_an_empty_lease_file_in_a_running_lab_is_written_again_by_the_controllers(broken_lab):
    name, _foreign = broken_lab
    lease = Path(lease_path(build(topology.load(), name)))
    healthy(name)
    lease.write_bytes(b"")
    rc, report = status(name)  # the file is empty, or already written again: either way a report
    assert report["lab"] == name and rc in (0, 1)
    after = healthy(name)
    assert lease.stat().st_size > 0 and after["leader"], "the controllers did not write the lease again"
    assert not after["mismatches"], after["mismatches"]
    verified(name)


def test_an_empty_file_in_place_of_a_namespace_is_made_a_namespace_again(broken_lab):
    """What a run killed between making a namespace's file and binding it would leave."""
    name, _foreign = broken_lab
    pod = build(topology.load(), name).echo_pods[-1]
    path = Path(labdir.lab.netns_path(pod.netns))
    subprocess.run(["ip", "netns", "delete", pod.netns], check=True)
    path.touch()
    up(name)
    assert os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev, "no namespace is bound there"
    healthy(name)
    assert_each_started_once(name)
    verified(name)


def test_down_with_every_file_broken_removes_the_lab_and_nothing_else(broken_lab, host):
    name, foreign = broken_lab
    for kind in ("holder-pidfile-recycled", "container-record-recycled", "containers-truncated", "registry-truncated"):
        BREAKS[kind](name, foreign)
    down_and_check(name, {foreign})
    assert os.path.exists(f"/proc/{foreign}"), "down killed the process a broken pidfile named"
    verified(B)
    assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())


# -- what other programs made, named like a lab's ---------------------------------------------
def test_namespaces_and_processes_named_like_a_labs_are_left_alone(pair, host):
    name = new_name()
    lookalikes = [f"{name}-extra", f"cni-{uuid.uuid4()}"]
    foreign: list[subprocess.Popen] = []
    try:
        for ns in lookalikes:
            subprocess.run(["ip", "netns", "add", ns], check=True)
        inodes = {ns: os.stat(labdir.lab.netns_path(ns)).st_ino for ns in lookalikes}
        argv = [sys.executable, "-c", "import time; time.sleep(3600)", f"{labdir.lab_dir(name)}/pods/echo-1",
                "podpath-pause", labdir.lab.netns_path(f"{name}-cp1")]
        base = {"PATH": os.environ["PATH"]}
        foreign.append(start_foreign(argv, dict(base, PODPATH_LAB=name)))  # the CLI's choice of lab, in a shell
        foreign.append(start_foreign(argv, dict(base, PODPATH_OWNER=name, PODPATH_ROLE="holder:x")))  # a forged mark
        foreign.append(start_foreign(["ip", "netns", "exec", lookalikes[0], "sleep", "3600"]))
        up(name)
        report = healthy(name)
        assert report["namespaces"] == PLAN_NAMESPACES, "status counts namespaces that are not the lab's"
        assert labs()[name]["namespaces"] == PLAN_NAMESPACES

        # a process of another program in one of the lab's namespaces: down removes the
        # namespace's name and the lab's processes, and says the namespace is still held
        sleeper = start_foreign(["nsenter", f"--net={labdir.lab.netns_path(f'{name}-cp1')}", "sleep", "3600"])
        foreign.append(sleeper)
        time.sleep(0.3)
        held = podpath("down", "--lab", name)
        assert held.returncode == 1 and "NOT down" in held.stderr and str(sleeper.pid) in held.stderr, held.stderr
        assert sleeper.poll() is None, "down killed a process that is not the lab's"
        sleeper.kill()
        sleeper.wait(timeout=10)
        down_and_check(name, {p.pid for p in foreign})

        assert {ns: os.stat(labdir.lab.netns_path(ns)).st_ino for ns in lookalikes} == inodes, (
            "down removed or replaced a namespace named like the lab's")
        assert all(p.poll() is None for p in foreign if p is not sleeper), "down killed a process named like the lab's"
        verified(B)
        assert not snapshot_diff(host, host_snapshot()), snapshot_diff(host, host_snapshot())
    finally:
        stop_foreign([p for p in foreign if p.poll() is None])
        for ns in lookalikes:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        remove_for_sure(name)
        assert not [ns for ns in lab_namespaces(name) if ns not in lookalikes]


def test_iptables_rules_go_only_into_namespaces_with_the_labs_mark(tmp_path):
    """podpath_iptables proves ownership by the namespace's mark, as podpath_netns and
    podpath_containers do: a namespace named like the lab's but without its mark is refused
    and left as it was, even where the lab's folder (a cache) lists it."""
    if os.geteuid() != 0:
        pytest.skip("namespaces need root")
    lab = "o" + uuid.uuid4().hex[:6]
    foreign = f"{lab}-cp1"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        registry = Path(labdir.lab_dir(lab), "netns.json")  # a folder that claims the namespace
        registry.parent.mkdir(parents=True)
        registry.write_text(json.dumps({"namespaces": [foreign], "marked": True}))
        before = subprocess.run(["ip", "netns", "exec", foreign, "iptables-save"], capture_output=True, text=True)
        args = json.dumps({"lab": lab, "rules": {foreign: "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"}})
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "podpath_iptables",
                               "-a", args], cwd=root, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg")))
        assert done.returncode != 0 and f"namespace {foreign} is not a namespace of lab {lab}" in done.stdout, \
            done.stdout + done.stderr
        after = subprocess.run(["ip", "netns", "exec", foreign, "iptables-save"], capture_output=True, text=True)
        assert "-A INPUT -j DROP" not in after.stdout and after.stdout.count("\n") == before.stdout.count("\n")
    finally:
        subprocess.run(["ip", "netns", "delete", foreign])
        shutil.rmtree(labdir.lab_dir(lab), ignore_errors=True)
