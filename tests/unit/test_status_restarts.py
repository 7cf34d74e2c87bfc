"""How `podpath status` words a container's state, restarts and back-off (podpath/evidence/
status.py), from the states it reads; tests/integration/test_restarts.py reads them from a
real lab."""
from __future__ import annotations

import pytest

from podpath.evidence import status


def state(**given) -> dict:
    info = {"state": "running", "restarts": 0, "pid": 42, "last": None, "backoff": None, "backoff_left": None,
            "believed": True, "said": ""}
    info.update(given)
    return info


KILLED = {"exitCode": None, "signal": 9, "finished": 100.0}
FAILED = {"exitCode": 1, "signal": None, "finished": 100.0}


@pytest.mark.parametrize("info, shown", [
    (state(), "up"),
    (state(restarts=2, last=KILLED), "up restarts=2"),
    (state(restarts=None, believed=False), "up restarts=?"),
    (state(state="waiting", pid=None, restarts=1, last=KILLED, backoff=10.0, backoff_left=9.6),
     "waiting (back-off 10 s, 9.6 s left, last exit: signal 9) restarts=1"),
    (state(state="waiting", pid=None, restarts=3, last=FAILED, backoff=40.0, backoff_left=0.0),
     "waiting (back-off 40 s, 0 s left, last exit: exit code 1) restarts=3"),
    (state(state="waiting", pid=None, restarts=None, believed=False), "waiting (last exit: unknown) restarts=?"),
    (state(state="down", pid=None, restarts=None), "DOWN"),
])
def test_each_state_is_worded_as_status_prints_it(info, shown):
    assert status.describe_state(info) == shown


def report(pods: list[dict], daemons: dict | None = None) -> dict:
    return {"lab": "stu1", "state": "NOT healthy", "namespaces": 12, "folder": "/run/podpath/stu1",
            "folder_exists": True, "load_balancer_ip": "192.168.56.200",
            "election": {"announcers": ["cp1"], "elected": "cp1", "candidates": ["cp1"]}, "leader": None,
            "pods": pods, "daemons": daemons or {}, "problems": [], "settling": [], "mismatches": []}


def pod(name: str, **states: dict) -> dict:
    return {"name": name, "node": "worker1", "ip": "10.244.1.3", "pause_pid": 7,
            "containers": {c: i["state"] == "running" for c, i in states.items()}, "container_states": states}


def test_the_pods_table_shows_each_containers_restarts_and_back_off():
    text = status.render(report([
        pod("ingress-nginx-controller-3", controller=state(state="waiting", pid=None, restarts=2, last=KILLED,
                                                           backoff=20.0, backoff_left=13.0)),
        pod("echo-1", echo=state(restarts=1, last=KILLED)),
        pod("multi-container-pod", **{"container-1": state(), "container-2": state(state="down", pid=None)}),
    ]))
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith(("ingress", "echo", "multi"))}
    assert lines["ingress-nginx-controller-3"].endswith(
        "controller:waiting (back-off 20 s, 13 s left, last exit: signal 9) restarts=2")
    assert lines["echo-1"].endswith("echo:up restarts=1")
    assert lines["multi-container-pod"].endswith("container-1:up container-2:DOWN")


def test_node_daemons_that_restarted_are_listed_and_the_others_are_not():
    text = status.render(report([], daemons={
        "kube-proxy-cp1/kube-proxy": state(restarts=1, last=KILLED),
        "metallb-speaker-cp1/speaker": state(),
    }))
    assert "node daemons restarted: kube-proxy-cp1/kube-proxy:up restarts=1" in text
    assert "metallb-speaker-cp1" not in text


def test_a_report_from_before_the_restart_counts_still_renders():
    """A report without container_states (its pods say only up or down) prints as before."""
    old = pod("echo-1")
    old.update(containers={"echo": True}, container_states=None)
    assert "echo:up" in status.render(report([old]))


def test_a_container_whose_shim_does_not_run_is_down():
    assert status.container_state("stu1", "workloads", "echo-1/echo", None)["state"] == "down"
