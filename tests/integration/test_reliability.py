"""Reliability and security of the netns lab: faults it survives, input it refuses,
the host it leaves untouched, labs that do not see each other.

Each test builds what it needs (labs named 'r' + random) and removes it. Figures that
docs/reliability.md reports (failed requests during a failover, takeover time) are
printed with `-s`; the assertions are the issue's goals, not timings of speed.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labtools import (ROOT, force_remove, host_snapshot, lab_fingerprint, lab_namespaces, lab_processes,
                      new_lab_name, podpath, snapshot_diff)

from podpath.model import labdir, topology
from podpath.evidence.probe import NetnsLab

netns_path = labdir.lab.netns_path

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")


class Labs:
    """Labs made by one test; all removed at the end, whatever happens."""

    def __init__(self):
        self.names: list[str] = []

    def up(self, name: str | None = None, *args: str) -> NetnsLab:
        name = name or new_lab_name("r")
        self.names.append(name)
        done = podpath("up", "--lab", name, "-q", *args)
        assert done.returncode == 0, f"podpath up --lab {name} failed:\n{done.stdout}\n{done.stderr}"
        return NetnsLab(name, topology.load())

    def remove(self, name: str) -> None:
        done = podpath("down", "--lab", name, "-q")
        if done.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        if name in self.names:
            self.names.remove(name)


@pytest.fixture
def labs():
    made = Labs()
    yield made
    for name in list(made.names):
        made.remove(name)


@pytest.fixture(scope="module")
def shared_lab():
    """One lab for the tests that break a single hop and repair it."""
    made = Labs()
    try:
        yield made.up()
    finally:
        for name in list(made.names):
            made.remove(name)


def verify_failed(lab: str, tmp_path: Path) -> set[int]:
    out = tmp_path / "scenarios.json"
    subprocess.run([sys.executable, "-m", "pytest", "--hosts=local://", "--lab", lab, "-q", "-p", "no:cacheprovider",
                    "-o", "addopts=", "--scenario-json", str(out), str(ROOT / "tests" / "verify")], cwd=ROOT,
                   capture_output=True, text=True, timeout=600)
    import json

    data = json.loads(out.read_text())
    return {int(n) for n, r in data.items() if r["outcome"] == "FAIL"}


def request_loop(lab: NetnsLab, seconds: float, event=None) -> list[tuple[float, bool]]:
    """Requests from the client to the MetalLB address for SECONDS, after EVENT() runs at t=0,
    paced evenly over them (500 at most): (time since the event, answered) for each. Paced, so
    the loop lasts SECONDS however fast each answer comes."""
    svc = lab.plan.ingress_service
    host = lab.topology["ingress"]["host"]
    results = []
    start = time.monotonic()
    if event:
        event()
    every = seconds / 500
    while time.monotonic() - start < seconds and len(results) < 500:
        answer = lab.curl(lab.plan.client_netns, f"http://{svc.load_balancer_ip}/", host=host, timeout=0.5)
        results.append((time.monotonic() - start, answer.status == 200))
        time.sleep(max(0.0, start + len(results) * every - time.monotonic()))
    return results


# -- the host untouched, labs isolated ----------------------------------------------------
def test_host_namespace_is_the_same_before_up_after_up_and_after_down(labs):
    before = host_snapshot()
    lab = labs.up()
    during = host_snapshot()
    labs.remove(lab.name)
    after = host_snapshot()
    assert not snapshot_diff(before, during), f"up changed the host's namespace: {snapshot_diff(before, during)}"
    assert not snapshot_diff(before, after), f"down left the host's namespace changed: {snapshot_diff(before, after)}"
    assert not lab_namespaces(lab.name) and not lab_processes(lab.name), "down left namespaces or processes"
    assert not Path(labdir.lab_dir(lab.name)).exists(), "down left the lab's folder"


def test_two_labs_with_the_same_addresses_do_not_see_each_other(labs, tmp_path):
    a, b = labs.up(), labs.up()
    marker = f"/isolation-{os.urandom(4).hex()}"
    svc = a.plan.ingress_service
    answer = a.curl(a.plan.client_netns, f"http://{svc.load_balancer_ip}{marker}", host=a.topology["ingress"]["host"])
    assert answer.status == 200, f"lab {a.name}'s client got {answer.error or answer.status}"

    def logged(lab):
        return any(marker in p.read_text() for p in Path(labdir.lab_dir(lab), "pods").glob("*/controller-access.log"))
    assert logged(a.name), f"lab {a.name}'s controllers did not log the request {marker}"
    assert not logged(b.name), f"lab {b.name}'s controllers saw a request sent in lab {a.name}"
    macs_a = set(a.arping(a.plan.client_netns, "eth0", svc.load_balancer_ip, count=2))
    assert macs_a and macs_a <= set(a.node_macs().values()), "lab A's ARP answer did not come from lab A's nodes"
    assert not macs_a & set(b.node_macs().values()), f"lab {b.name}'s nodes answered ARP in lab {a.name}"
    labs.remove(b.name)
    assert not verify_failed(a.name, tmp_path), f"lab {a.name} fails the verifier after lab {b.name} went down"


def test_a_second_command_on_a_locked_lab_is_refused_or_waits(shared_lab):
    from podpath.cli import LabLock

    with LabLock(shared_lab.name, wait=False):
        refused = podpath("up", "--lab", shared_lab.name, "-q")
        waiting = subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", shared_lab.name, "-q", "--wait"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        still_waiting = waiting.poll() is None
    assert refused.returncode == 4 and "being changed by another podpath command" in refused.stderr, refused.stderr
    assert still_waiting, "podpath up --wait did not wait for the lock"
    assert waiting.wait(timeout=300) == 0, waiting.stderr.read()


# -- faults survived -------------------------------------------------------------------------
def test_a_killed_container_leaves_namespace_and_ip_and_up_restarts_it(shared_lab):
    """Killed once, a container comes back at once (its shim restarts it, as the kubelet does);
    killed again, it waits out its back-off, and `up` restarts it at once."""
    lab = shared_lab
    pod = lab.plan.echo_pods[0]
    pid = lab.container_pid(pod.name, "echo")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while lab.container_pid(pod.name, "echo") in (None, pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = lab.container_pid(pod.name, "echo")
    assert again not in (None, pid), "the killed container did not come back"
    os.kill(again, signal.SIGKILL)
    time.sleep(0.3)
    assert lab.container_pid(pod.name, "echo") is None, "killed again, the container did not wait out its back-off"
    assert os.path.exists(netns_path(pod.netns)) and lab.holder(pod.netns), "the namespace or its pause went away"
    assert f"{pod.ip}/{pod.prefixlen}" in lab.ipv4(pod.netns, "eth0"), f"{pod.name} lost its address"
    up = podpath("up", "--lab", lab.name)
    assert up.returncode == 0 and "0 tasks changed" not in up.stdout, up.stdout + up.stderr
    assert lab.container_pid(pod.name, "echo") not in (None, pid, again), "up did not restart the container"


def test_a_killed_pause_leaves_the_namespace_and_up_restores_the_holder(shared_lab):
    lab = shared_lab
    pod = lab.plan.echo_pods[-1]
    pid = lab.holder(pod.netns)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    assert os.path.exists(netns_path(pod.netns)), "the namespace went away with its pause process"
    assert lab.curl(lab.node_netns(pod.node), f"http://{pod.ip}:{pod.port}/").status == 200, (
        f"{pod.name} stopped answering when its pause process died; the bind mount should hold the namespace")
    assert podpath("up", "--lab", lab.name, "-q").returncode == 0
    new = lab.holder(pod.netns)
    assert new and new != pid and os.stat(f"/proc/{new}/ns/net").st_ino == os.stat(netns_path(pod.netns)).st_ino


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_requests_keep_succeeding_when_an_ingress_controller_stops(shared_lab, capsys):
    lab = shared_lab
    lease = lab.lease() or {}
    leader = lease.get("holderIdentity")
    pod = lab.plan.pod(leader) if leader else lab.plan.ingress_pods[0]

    def stop_pod():
        # SIGKILL its only container, the controller (nginx's parent, and the process that renews
        # the lease). A restart policy starts a container again at once the first time, and the
        # pod's new controller would keep the lease under the pod's name: kill each new one until
        # none comes back within a second (the back-off keeps the container down), three at most
        killed: set[int] = set()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and len(killed) < 3:
            pid = lab.container_pid(pod.name, "controller")
            if pid and pid not in killed and b"podpath-ingress" in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                deadline = time.monotonic() + 1.0
            time.sleep(0.05)
    results = request_loop(lab, 6.0, stop_pod)
    failed = [t for t, ok in results if not ok]
    late = [t for t in failed if t > 2.0]
    new_lease = lab.lease() or {}
    with capsys.disabled():
        print(f"\n[reliability] controller {pod.name} stopped: {len(results)} requests in 6 s, {len(failed)} failed "
              f"(last at {max(failed, default=0):.2f} s); lease {leader} -> {new_lease.get('holderIdentity')}")
    assert not late, f"{len(late)} requests failed more than 2 s after {pod.name} stopped (at {late[:5]})"
    assert new_lease.get("holderIdentity") not in (None, "", pod.name), (
        f"the leader lease did not move from {pod.name}: {new_lease}")
    assert podpath("up", "--lab", lab.name, "-q").returncode == 0


def test_the_metallb_address_fails_over_within_five_seconds(shared_lab, capsys):
    lab = shared_lab
    address = lab.plan.ingress_service.load_balancer_ip
    owner = next(n for n, s in lab.speakers().items() if s and address in s.get("announcing", []))
    macs = lab.node_macs()

    def link_down():
        assert lab.exec_in(lab.node_netns(owner), ["ip", "link", "set", "eth1", "down"]).ok
    results = request_loop(lab, 8.0, link_down)
    new_owner = [n for n, m in macs.items() if m in lab.arping(lab.plan.client_netns, "eth0", address, count=2)]
    failed = [t for t, ok in results if not ok]
    recovered = next((t for t, ok in results if ok and all(ok2 for t2, ok2 in results if t2 >= t)), None)
    with capsys.disabled():
        print(f"\n[reliability] {owner}'s link down: {len(results)} requests in 8 s, {len(failed)} failed; "
              f"answers again from {recovered and round(recovered, 2)} s; new announcer {new_owner}")
    assert new_owner and new_owner != [owner], f"nobody took {address} over from {owner}"
    assert recovered is not None and recovered <= 5.0, f"requests failed until {recovered} s after the failover"
    assert podpath("up", "--lab", lab.name, "-q").returncode == 0


# Where `up` is killed: 0.1 s into the task whose banner ansible-playbook printed last.
KILL_POINTS = {
    "wiring": ("Wire the namespaces", True),  # (banner text, check that a new up finishes the lab)
    "workloads": ("Run the echo backends", True),
    "speakers": ("Run MetalLB's speaker", False),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_up_killed_half_way_is_finished_by_the_next_up_or_removed_by_down(labs, point):
    banner, up_again = KILL_POINTS[point]
    name = new_lab_name("r")
    labs.names.append(name)
    play = subprocess.Popen([str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/netns-lab.yml", "-e",
                             f"podpath_lab={name}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = ""
    for line in play.stdout:
        seen += line
        if line.startswith("TASK [") and banner in line:
            break
    time.sleep(0.1)
    os.killpg(play.pid, signal.SIGKILL)
    play.wait()
    assert banner in seen, f"the play ended before the task '{banner}' started:\n{seen[-2000:]}"
    if up_again:
        again = podpath("up", "--lab", name, "-q")
        assert again.returncode == 0, f"up after an up killed in the {point} task failed: {again.stderr}"
        assert lab_fingerprint(name)["namespaces"], "the second up built nothing"
    labs.remove(name)
    assert not lab_namespaces(name), f"down after an up killed in the {point} task left {lab_namespaces(name)}"
    assert not lab_processes(name), f"down after an up killed in the {point} task left processes {lab_processes(name)}"
    assert not Path(labdir.lab_dir(name)).exists()


# -- bad input refused ---------------------------------------------------------------------------
BAD_TOPOLOGIES = {
    "overlapping-cidrs": ("pod_network", "192.168.0.0/16", "overlaps"),
    "pool-outside": ("metallb.pool", "10.0.0.200-10.0.0.220", "10.0.0.200"),
    "replicas-zero": ("ingress.replicas", 0, "replicas is 0"),
    "long-node-name": ("nodes.0.name", "controlplane-one", "controlplane-one"),
    "malformed-cidr": ("service_network", "10.96.0.0/33", "10.96.0.0/33"),
}


def _set(topo: dict, path: str, value) -> None:
    keys = path.split(".")
    target = topo
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    target[keys[-1]] = value


@pytest.mark.parametrize("case", sorted(BAD_TOPOLOGIES), ids=sorted(BAD_TOPOLOGIES))
def test_bad_topology_is_refused_before_any_change(case, shared_lab, tmp_path):
    import copy

    import yaml

    path, value, expected = BAD_TOPOLOGIES[case]
    topo = copy.deepcopy(topology.load())
    _set(topo, path, value)
    bad = tmp_path / "topology.yml"
    bad.write_text(yaml.safe_dump({"podpath_topology": topo}))
    name = new_lab_name("r")
    host_before, lab_before = host_snapshot(), lab_fingerprint(shared_lab.name)
    done = podpath("up", "--lab", name, "--topology", str(bad))
    assert done.returncode == 2, f"exit {done.returncode}: {done.stderr}"
    assert expected in done.stderr, f"the message does not name {expected!r}: {done.stderr}"
    assert not lab_namespaces(name) and not Path(labdir.lab_dir(name)).exists(), "something was built"
    assert not snapshot_diff(host_before, host_snapshot()), "the host changed"
    assert lab_fingerprint(shared_lab.name) == lab_before, f"the running lab {shared_lab.name} changed"


@pytest.mark.parametrize("name", ["../etc", "a/b", "lab;rm", "$(id)", "Lab", "toolonglab01", "a b", ""])
def test_bad_lab_names_are_refused(name):
    done = podpath("up", "--lab", name)
    assert done.returncode == 2 and "lab name" in done.stderr and repr(name) in done.stderr, done.stderr


def test_an_unknown_mode_is_refused():
    done = podpath("up", "--mode", "kvm")
    assert done.returncode == 2 and "kvm" in done.stderr, done.stderr


def test_a_missing_tool_is_named_with_its_package(tmp_path):
    # a PATH with every tool but nginx
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for entry in Path(folder).iterdir():
            if entry.name != "nginx" and not (bin_dir / entry.name).exists():
                (bin_dir / entry.name).symlink_to(entry)
    done = podpath("up", "--lab", new_lab_name("r"), env={**os.environ, "PATH": str(bin_dir)})
    assert done.returncode == 3 and "nginx" in done.stderr and "nginx-light" in done.stderr, done.stderr


def test_a_namespace_the_lab_does_not_own_is_refused_and_kept(labs):
    name = new_lab_name("r")
    squatter = f"{name}-cp1"
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        done = podpath("up", "--lab", name)
        labs.names.append(name)
        assert done.returncode == 1 and squatter in done.stderr, done.stderr
        assert os.path.exists(netns_path(squatter)), "podpath removed a namespace it does not own"
    finally:
        subprocess.run(["ip", "netns", "delete", squatter])


# -- security --------------------------------------------------------------------------------------
def test_an_injection_in_a_name_runs_nothing(tmp_path):
    witness = tmp_path / "pwned"
    for name in (f"x;touch {witness}", f"$(touch {witness})", f"`touch {witness}`"):
        done = podpath("up", "--lab", name)
        assert done.returncode == 2
    assert not witness.exists(), "a lab name reached a shell"


def test_generated_files_are_not_world_writable(shared_lab):
    loose = [str(p) for p in Path(labdir.lab_dir(shared_lab.name)).rglob("*")
             if not p.is_symlink() and p.stat().st_mode & stat.S_IWOTH]
    assert not loose, f"world-writable files: {loose[:5]}"


def test_nginx_workers_run_unprivileged(shared_lab):
    workers = []
    for pid in lab_processes(shared_lab.name):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if args.startswith(b"nginx: master"):
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                status = Path(f"/proc/{child}/status").read_text()
                uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
                workers.append((int(child), int(uid)))
    assert workers, "no nginx worker found"
    assert all(uid != 0 for _, uid in workers), f"nginx workers running as root: {workers}"


def test_the_lab_listens_on_nothing_in_the_host_namespace(shared_lab):
    out = subprocess.run(["ss", "-H", "-ltnup"], capture_output=True, text=True).stdout
    mine = [line for line in out.splitlines() if any(str(pid) in line for pid in lab_processes(shared_lab.name))]
    assert not mine, f"the lab listens in the host's namespace: {mine}"
