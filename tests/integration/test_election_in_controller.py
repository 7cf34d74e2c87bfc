"""The ingress controllers' leader election lives in the controller's process, on a real lab.

Each ingress pod has one container, `controller`: its first process is the controller
program (podpath-ingress), nginx is that process's child and listens in the pod's
network namespace. Killing the leader's nginx ends its controller, which stops renewing the
lease; another controller takes the lease once its duration has run out (within a retry
period), and leaseTransitions goes up. The election fault (every controller process frozen)
leaves nginx serving and the lease unrenewed, and `podpath up` repairs it.

One lab of its own ('elc' + random) for the module, removed at the end whatever happens.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import time

import pytest
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath.evidence import faults
from podpath.evidence import status as lab_status
from podpath.evidence.lab import CONTROLLER_HEADER
from podpath.evidence.probe import NetnsLab
from podpath.model import labdir, topology
from podpath.runtime import pause_build

pytestmark = [pytest.mark.netns, pytest.mark.slow]
WAIT = 20.0  # seconds before giving up on something that takes a few at most
SLACK = 0.5  # seconds a busy host may add to a controller's retry period


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = new_lab_name("elc")
    try:
        up = podpath("up", "--lab", name, "-q")
        assert up.returncode == 0, f"podpath up --lab {name} failed:\n{up.stdout}\n{up.stderr}"
        made = NetnsLab(name, topology.load())
        wait_for(lambda: leader(made), "the controllers elected no leader")
        yield made
    finally:
        down = podpath("down", "--lab", name, "-q")
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)


def wait_for(probe, message: str, seconds: float = WAIT):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{message} within {seconds:.0f} s")


def default_retry() -> float:
    """The controllers' retry period: the lab leaves podpath-ingress's default, which its --help
    says."""
    done = subprocess.run([str(pause_build.ingress_path()), "--help"], capture_output=True, text=True, timeout=10)
    return float(re.search(r"--retry .*\(default ([0-9.]+)", done.stdout).group(1))


def leader(lab: NetnsLab) -> str | None:
    """The holder of a fresh lease, as `podpath status` says."""
    return lab_status.lab_status(lab.plan)["leader"]


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return None


def nginx_of(lab: NetnsLab, pod: str) -> tuple[int, int]:
    """(the controller's pid, its nginx master's pid) for POD, once its container runs the
    controller program with one nginx child (a container being started again may not yet)."""
    def found():
        controller = lab.container_pid(pod, "controller")
        try:
            with open(f"/proc/{controller}/cmdline", "rb") as handle:
                runs = handle.read().split(b"\0")[0] == bytes(pause_build.ingress_path())
        except (OSError, TypeError):
            return None
        masters = [p for p in children(controller) if comm(p) == "nginx"]
        return (controller, masters[0]) if runs and len(masters) == 1 else None
    return wait_for(found, f"{pod}: no controller with one nginx child")


def state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid: int) -> bool:
    return state(pid) in (None, "Z", "X")


def listening(pid: int) -> set[int]:
    with open(f"/proc/{pid}/net/tcp") as handle:
        next(handle)
        return {int(f.split()[1].rsplit(":", 1)[1], 16) for f in handle if f.split()[3] == "0A"}


def test_each_controller_pod_runs_the_controller_with_nginx_as_its_child_in_the_pod_namespace(lab):
    for pod in lab.plan.ingress_pods:
        assert [c.name for c in pod.containers] == ["controller"], f"{pod.name}: containers {pod.containers}"
        controller, master = nginx_of(lab, pod.name)
        with open(f"/proc/{controller}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
        assert argv[0] == bytes(pause_build.ingress_path()) and pod.name.encode() in argv, f"{pod.name}: {argv}"
        pod_net = os.stat(labdir.lab.netns_path(pod.netns)).st_ino
        for pid in (controller, master):
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == pod_net, f"{pod.name}: pid {pid} is not in {pod.netns}"
        assert {80, 10254} <= listening(master), f"{pod.name}: nginx (pid {master}) does not listen on 80 and 10254"


def test_killing_the_leaders_nginx_ends_its_controller_and_another_takes_the_lease(lab, capsys):
    old = leader(lab)
    assert old, "no leader before the test"
    others = {p.name for p in lab.plan.ingress_pods} - {old}
    last = None
    for _round in range(4):
        controller, master = nginx_of(lab, old)
        os.kill(master, signal.SIGKILL)
        wait_for(lambda: gone(controller), f"{old}'s controller (pid {controller}) did not exit when its nginx died")
        # nothing of the old leader's pod runs now: this is its last renewal, unless its container is
        # started again at once (a restart policy), whose new controller renews under the same name
        last = lab.lease()
        assert last and last["holderIdentity"] in (old, *others), f"the lease after the kill: {last}"
        if last["holderIdentity"] != old:
            break

        def moved_or_renewed():
            now = lab.lease() or {}
            return now.get("holderIdentity") != old or now.get("renewTime", 0) > last["renewTime"]
        wait_for(moved_or_renewed, f"the lease neither moved from {old} nor was renewed")
        if (lab.lease() or {}).get("holderIdentity") != old:
            break
    taken = lab.lease()
    assert taken["holderIdentity"] in others, f"the lease did not move from {old}: {taken}"
    duration, retry = float(last["leaseDurationSeconds"]), default_retry()
    gap = taken["acquireTime"] - last["renewTime"]
    with capsys.disabled():
        print(f"\n[election] {old}'s nginx killed: {taken['holderIdentity']} took the lease {gap:.2f} s after "
              f"{old}'s last renewal (duration {duration:g} s, retry {retry:g} s)")
    assert gap > duration, (f"{taken['holderIdentity']} took the lease {gap:.2f} s after the last renewal, before "
                            "it expired")
    assert gap <= duration + retry + SLACK, (
        f"{taken['holderIdentity']} took the lease {gap:.2f} s after {old}'s last renewal: later than its duration "
        f"({duration:g} s) and a retry period ({retry:g} s)")
    assert taken["leaseTransitions"] == last["leaseTransitions"] + 1, (last, taken)
    logs = [p for p in glob.glob(f"{labdir.lab_dir(lab.name)}/**/*.log", recursive=True)
            if old in os.path.basename(p) and "controller" in os.path.basename(p)]
    assert any("killed by SIGKILL" in open(p).read() for p in logs), f"{old}'s controller did not log it: {logs}"

    up = podpath("up", "--lab", lab.name, "-q")
    assert up.returncode == 0, up.stdout + up.stderr
    wait_for(lambda: lab_status.lab_status(lab.plan)["healthy"], f"lab {lab.name} is not healthy after up")
    nginx_of(lab, old)


def test_frozen_controllers_renew_nothing_while_nginx_serves_and_up_repairs_them(lab):
    what = faults.CATALOGUE["election"].apply(lab)
    report = lab_status.lab_status(lab.plan)
    assert report["leader"] is None, f"after '{what}', status still shows the leader {report['leader']}"
    lease = lab.lease()
    assert time.time() - lease["renewTime"] > lease["leaseDurationSeconds"], f"the lease is still fresh: {lease}"
    for pod in lab.plan.ingress_pods:
        answer = lab.node_get(pod.node, pod.ip, pod.port, host=lab.plan.ingress_host)
        assert answer.status == 200 and answer.headers.get(CONTROLLER_HEADER) == pod.name, (
            f"{pod.name}: with its controller frozen its nginx should serve on; got {answer.error or answer.status}")
    up = podpath("up", "--lab", lab.name, "-q")
    assert up.returncode == 0, up.stdout + up.stderr
    holder = wait_for(lambda: leader(lab), "no controller holds a fresh lease after up")
    assert holder in {p.name for p in lab.plan.ingress_pods}
    for pod in lab.plan.ingress_pods:
        controller, _master = nginx_of(lab, pod.name)
        assert state(controller) in ("S", "R"), f"{pod.name}: controller {controller} is in state {state(controller)}"
