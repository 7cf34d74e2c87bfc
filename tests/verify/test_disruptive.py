"""Disruptive scenarios: break a hop on purpose, watch the lab cope, then repair it.

Run only on request (`podpath verify --disruptive`, or `-m disruptive`). Each test
restores the lab with `podpath up` before it ends, so the lab is whole afterwards.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from election import elected

pytestmark = [pytest.mark.netns_lab, pytest.mark.disruptive]

# MetalLB's speakers must move the address within this many seconds (docs/lab.md, scenario 14).
FAILOVER_DEADLINE = 5.0


@pytest.fixture
def restore(lab):
    yield
    done = subprocess.run([sys.executable, "-m", "podpath.cli", "up", "--lab", lab.name, "-q"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"podpath up could not restore lab {lab.name}: {done.stderr}"


def announcer(lab):
    address = lab.plan.ingress_service.load_balancer_ip
    owners = [n for n, s in lab.speakers().items() if s and address in s.get("announcing", [])]
    assert len(owners) == 1, f"expected one node announcing {address}, found {owners}"
    return owners[0]


@pytest.mark.scenario(14)
def test_metallb_ip_moves_when_the_announcing_node_fails(lab, restore):
    address = lab.plan.ingress_service.load_balancer_ip
    failed = announcer(lab)
    macs = lab.node_macs()
    out = lab.exec_in(lab.node_netns(failed), ["ip", "link", "set", "eth1", "down"])
    assert out.ok, f"could not take {failed}'s eth1 down: {out.stderr}"
    started = time.monotonic()
    new_owner = None
    while time.monotonic() - started < FAILOVER_DEADLINE + 3:
        answered = lab.arping(lab.plan.client_netns, "eth0", address, count=1)
        owners = [n for n, m in macs.items() if m in answered]
        if owners and owners != [failed]:
            new_owner = owners[0]
            break
    took = time.monotonic() - started
    survivors = [n.name for n in lab.plan.nodes if n.name != failed]
    assert new_owner, f"no node took {address} over within {took:.1f} s after {failed}'s link went down"
    assert took <= FAILOVER_DEADLINE, f"{new_owner} took {address} over after {took:.1f} s, later than 5 s"
    assert new_owner == elected(survivors, address), (
        f"{new_owner} took {address} over; the election among {survivors} gives {elected(survivors, address)}")


@pytest.mark.scenario(1)
def test_pod_namespace_and_ip_outlive_a_killed_container(lab, restore):
    pod = next(p for p in lab.pods() if p.app == "echo")
    pid = lab.container_pid(pod.name, pod.containers[0].name)
    assert pid, f"container {pod.containers[0].name} of {pod.name} is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    assert os.path.exists(f"/run/netns/{pod.netns}"), f"{pod.name}'s namespace vanished with its container"
    assert f"{pod.ip}/{pod.prefixlen}" in lab.ipv4(pod.netns, "eth0"), f"{pod.name} lost {pod.ip} with its container"
    assert lab.holder(pod.netns), f"{pod.name}'s pause process died with its container"
