"""A container that exits is restarted by its shim, as the kubelet restarts it with
restartPolicy Always, and `podpath status` shows its restarts and its back-off.

One lab (named 'rst' + random) for the module, built with `podpath up` and removed with
`podpath down`. The containers are killed with SIGKILL, as `kill -9` does, or made to
fail on start; each test leaves the lab healthy again (`podpath up`). The times printed
with `-s` (a killed backend answering again) are docs/reliability.md's; the assertions are
about what happens, not how fast.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from labtools import new_lab_name, podpath

from podpath.evidence import faults
from podpath.evidence.probe import NetnsLab
from podpath.model import labdir, topology

pytestmark = [pytest.mark.netns, pytest.mark.slow]
mark = labdir.lab
BACKOFF_S = 10.0  # the kubelet's first back-off, which the shim keeps


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = new_lab_name("rst")
    try:
        done = podpath("up", "--lab", name, "-q")
        assert done.returncode == 0, f"podpath up failed:\n{done.stdout}\n{done.stderr}"
        yield NetnsLab(name, topology.load())
    finally:
        down = podpath("down", "--lab", name, "-q")
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"
        assert not Path(labdir.lab_dir(name)).exists(), "podpath down left the lab's folder (its status files)"


def status_file(lab: NetnsLab, group: str, name: str) -> dict | None:
    data, problem = mark.read_container_status(mark.container_status_path(lab.name, group, name))
    assert problem in ("", "missing"), f"{name}'s status file {problem}"
    return data


def wait_for(what: str, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            assert value, f"{what} did not happen within {timeout:g} s"
            return value
        time.sleep(0.02)


def report(lab: NetnsLab) -> dict:
    done = podpath("status", "--lab", lab.name, "--json")
    assert done.stdout.startswith("{"), done.stderr
    return json.loads(done.stdout)


def text(lab: NetnsLab) -> str:
    return podpath("status", "--lab", lab.name).stdout


def pod_report(lab: NetnsLab, pod: str) -> dict:
    return next(p for p in report(lab)["pods"] if p["name"] == pod)


def repaired(lab: NetnsLab) -> None:
    done = podpath("up", "--lab", lab.name, "-q")
    assert done.returncode == 0, f"podpath up could not repair the lab:\n{done.stdout}\n{done.stderr}"
    wait_for("a healthy lab", lambda: report(lab)["state"] == "healthy")


def kill_echo(lab: NetnsLab, pod) -> int:
    status = status_file(lab, "workloads", f"{pod.name}/echo")
    assert status and status["state"] == "running", status
    os.kill(status["pid"], signal.SIGKILL)
    return status["pid"]


def answers(lab: NetnsLab, pod) -> bool:
    return lab.curl(lab.node_netns(pod.node), f"http://{pod.ip}:{pod.port}/", timeout=0.5).status == 200


def test_a_killed_backend_comes_back_by_itself_and_status_counts_the_restart(lab, capsys):
    pod = lab.plan.echo_pods[0]
    assert answers(lab, pod), f"{pod.name} does not answer before the test"
    before = pod_report(lab, pod.name)
    assert before["restarts"]["echo"] == 0 and before["containers"]["echo"]
    killed_at = time.monotonic()
    killed = kill_echo(lab, pod)
    again = wait_for(f"{pod.name} answering again", lambda: answers(lab, pod) and time.monotonic())
    status = wait_for("the restart in the status file", lambda: (lambda s: s if s and s["restarts"] == 1
                                                                  and s["state"] == "running" else None)(
        status_file(lab, "workloads", f"{pod.name}/echo")))
    assert status["pid"] != killed and status["last"]["signal"] == signal.SIGKILL, status
    after = pod_report(lab, pod.name)
    assert after["containers"]["echo"] and after["restarts"]["echo"] == 1, after
    assert after["container_pids"]["echo"] == status["pid"], "status does not show the restarted container's pid"
    assert f"echo:up restarts=1" in next(line for line in text(lab).splitlines() if line.startswith(pod.name + " "))
    assert os.path.exists(mark.netns_path(pod.netns)) and lab.holder(pod.netns) == before["pause_pid"], (
        "the pod's namespace or its pause process changed with its container")
    with capsys.disabled():
        print(f"\n[restarts] {pod.name}'s nginx killed (SIGKILL): answering again after "
              f"{again - killed_at:.3f} s (shim: exit to restart {status['started'] - status['last']['finished']:.3f} s)")
    repaired(lab)


def test_killed_again_it_waits_its_back_off_and_status_shows_it(lab):
    pod = lab.plan.echo_pods[1]
    name = f"{pod.name}/echo"
    kill_echo(lab, pod)
    wait_for("the first restart", lambda: (status_file(lab, "workloads", name) or {}).get("restarts") == 1
             and status_file(lab, "workloads", name)["state"] == "running")
    kill_echo(lab, pod)
    waiting = wait_for("the back-off", lambda: (lambda s: s if s and s["state"] == "waiting" else None)(
        status_file(lab, "workloads", name)))
    assert waiting["restarts"] == 1 and waiting["pid"] is None, waiting
    assert waiting["backoffUntil"] == pytest.approx(waiting["last"]["finished"] + BACKOFF_S, abs=0.05), waiting
    seen = pod_report(lab, pod.name)
    info = seen["container_states"]["echo"]
    assert not seen["containers"]["echo"] and info["state"] == "waiting" and info["backoff"] == BACKOFF_S, info
    assert not answers(lab, pod), f"{pod.name} answers while its container waits out its back-off"
    shown = text(lab)
    line = next(line for line in shown.splitlines() if line.startswith(pod.name + " "))
    assert "echo:waiting (back-off 10 s" in line and "last exit: signal 9) restarts=1" in line, line
    assert f"{name}: waiting to restart (CrashLoopBackOff" in shown and "NOT healthy" in shown, shown
    # the shim starts it again once the back-off is over
    back = wait_for("the restart after the back-off", lambda: (lambda s: s if s and s["state"] == "running" else None)(
        status_file(lab, "workloads", name)), timeout=BACKOFF_S + 20)
    assert back["restarts"] == 2 and back["started"] >= waiting["backoffUntil"] - 0.01, back
    assert wait_for(f"{pod.name} answering again", lambda: answers(lab, pod))
    repaired(lab)


def test_up_restarts_a_container_in_back_off_at_once(lab):
    pod = lab.plan.echo_pods[-1]
    name = f"{pod.name}/echo"
    kill_echo(lab, pod)
    wait_for("the first restart", lambda: (status_file(lab, "workloads", name) or {}).get("restarts") == 1
             and status_file(lab, "workloads", name)["state"] == "running")
    kill_echo(lab, pod)
    waiting = wait_for("the back-off", lambda: (lambda s: s if s and s["state"] == "waiting" else None)(
        status_file(lab, "workloads", name)))
    done = podpath("up", "--lab", lab.name)
    assert done.returncode == 0 and "0 tasks changed" not in done.stdout, done.stdout + done.stderr
    now = status_file(lab, "workloads", name)
    assert now["state"] == "running" and time.time() < waiting["backoffUntil"], (
        f"up returned with {name} {now['state']}, or only after its back-off was over")
    assert answers(lab, pod)
    assert pod_report(lab, pod.name)["restarts"]["echo"] == 0, "a new shim starts the count again, as a new pod"
    wait_for("a healthy lab", lambda: report(lab)["state"] == "healthy")


def test_a_node_daemon_is_restarted_too(lab):
    node = lab.plan.nodes[0].name
    name = f"kube-proxy-{node}/kube-proxy"
    status = status_file(lab, "kube-proxy", name)
    os.kill(status["pid"], signal.SIGKILL)
    back = wait_for("kube-proxy's restart", lambda: (lambda s: s if s and s["restarts"] == 1
                                                     and s["state"] == "running" else None)(
        status_file(lab, "kube-proxy", name)))
    assert back["pid"] != status["pid"]
    daemon = report(lab)["daemons"][name]
    assert daemon["state"] == "running" and daemon["restarts"] == 1, daemon
    assert f"{name}:up restarts=1" in text(lab)
    repaired(lab)


def test_status_does_not_believe_a_status_file_the_kernel_contradicts(lab):
    pod = lab.plan.echo_pods[0]
    name = f"{pod.name}/echo"
    path = Path(mark.container_status_path(lab.name, "workloads", name))
    real = status_file(lab, "workloads", name)
    forged = dict(real, pid=os.getpid(), restarts=7)  # a process that is not below the shim
    path.write_text(json.dumps(forged))
    seen = pod_report(lab, pod.name)
    assert seen["containers"]["echo"] and seen["restarts"]["echo"] is None, seen
    assert seen["container_pids"]["echo"] == real["pid"], "status took the forged file's pid"
    mismatches = report(lab)["mismatches"]
    assert any(str(os.getpid()) in m and "not believed" in m for m in mismatches), mismatches
    path.write_text(json.dumps(dict(real, state="waiting", pid=None)))  # waiting, while the container runs
    assert pod_report(lab, pod.name)["containers"]["echo"], "status believed a file that says waiting"
    repaired(lab)
    assert status_file(lab, "workloads", name)["state"] == "running"


def test_the_controller_drill_crash_loops_with_a_growing_restart_count_until_up(lab):
    fault = faults.CATALOGUE["controller"]
    pod = lab.plan.ingress_pods[-1]
    name = f"{pod.name}/controller"
    hint = fault.hint(lab.plan, None)
    assert pod.name in hint.fails and pod.netns in hint.hop
    fault.apply(lab)
    first = status_file(lab, "ingress", name)
    assert first["state"] == "waiting" and first["restarts"] == 1 and first["last"]["exitCode"] == 1, first
    second = wait_for("the second crash", lambda: (lambda s: s if s and s["restarts"] == 2
                                                   and s["state"] == "waiting" else None)(
        status_file(lab, "ingress", name)), timeout=BACKOFF_S + 20)
    assert second["backoffUntil"] - second["last"]["finished"] == pytest.approx(2 * BACKOFF_S, abs=0.05), second
    shown = text(lab)
    assert "controller:waiting (back-off 20 s" in shown and "last exit: exit code 1) restarts=2" in shown, shown
    repaired(lab)
    assert status_file(lab, "ingress", name)["state"] == "running"
