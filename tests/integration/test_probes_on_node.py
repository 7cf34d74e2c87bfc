"""Readiness on a real lab: each node's process probes only its own pods, publishes their
readiness to endpoints/<node>.json, and every node's rules follow it.

One lab for the module (named 'prb' + random), removed at the end whatever happens. What
belongs to the lab is read with the kernel's tools (tcpdump, the node's rules); the node's
published file is the lab's own record of readiness.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from labtools import force_remove, lab_namespaces, podpath

from podpath.evidence.probe import NetnsLab
from podpath.model import labdir, topology, workloads

pytestmark = [pytest.mark.netns, pytest.mark.slow]

CAPTURE_S = 4  # seconds of capture on the LAN
WAIT_S = 40  # the most any change here may take before a check gives up (the slowest: 3 probes 10 s apart)


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    for tool in ("tcpdump", "iptables-save"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.skip(f"{tool} is not installed (make deps installs it)")
    name = "prb" + os.urandom(3).hex()[:5]
    try:
        up = podpath("up", "--lab", name, "-q")
        assert up.returncode == 0, f"podpath up failed:\n{up.stdout}\n{up.stderr}"
        yield NetnsLab(name, topology.load())
    finally:
        down = podpath("down", "--lab", name, "-q")
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"


def wait_until(predicate, timeout: float = WAIT_S, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def rules(lab: NetnsLab, node: str) -> str:
    """The node's kube-proxy rules as the kernel holds them, in the node's mode."""
    conf = json.loads(Path(labdir.lab_dir(lab.name), "kube-proxy", f"{node}.conf").read_text())
    argv = ["nft", "list", "ruleset"] if conf.get("mode") == "nftables" else ["iptables-save", "-t", "nat"]
    return lab.exec_in(lab.node_netns(node), argv).stdout


def holding(lab: NetnsLab, address: str) -> list[str]:
    """The nodes whose rules send traffic to ADDRESS (ip:port)."""
    return [n.name for n in lab.plan.nodes if re.search(rf"\b{re.escape(address)}\b", rules(lab, n.name))]


def published(lab: NetnsLab, pod) -> dict:
    """What POD's node published of it."""
    doc = json.loads(Path(workloads.endpoints_path(lab.name, pod.node)).read_text())
    return doc["pods"][pod.name]


def everyone(lab: NetnsLab) -> list[str]:
    return [n.name for n in lab.plan.nodes]


def echo_address(lab: NetnsLab, pod) -> str:
    return f"{pod.ip}:{lab.plan.echo_service.ports[0].target_port}"


def listening(pid: int, port: int) -> bool:
    with open(f"/proc/{pid}/net/tcp") as handle:
        return any(line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port
                   for line in list(handle)[1:])


def test_every_node_publishes_its_own_pods_and_no_others(lab):
    for node in lab.plan.nodes:
        path = Path(workloads.endpoints_path(lab.name, node.name))
        assert wait_until(path.exists), f"{node.name} published nothing at {path}"
        doc = json.loads(path.read_text())
        mine = {p.name for p in lab.plan.pods_on(node.name) if p.containers}
        assert set(doc["pods"]) == mine, f"{node.name} published {sorted(doc['pods'])}, its pods are {sorted(mine)}"
        assert all(p["conditions"]["ready"] for p in doc["pods"].values()), f"{node.name}: not all ready: {doc}"


def test_an_idle_lab_sends_nothing_to_pods_across_the_lan(lab):
    """A capture on the LAN bridge sees the speakers' messages (the capture works) and not one
    packet to or from a pod: no VXLAN, no pod address."""
    pods = ipaddress.ip_network(lab.plan.pod_network)
    speaker_port = workloads.SPEAKER_PORT
    time.sleep(2)  # past the first probes of `up`
    done = subprocess.run(["ip", "netns", "exec", lab.plan.lan_netns, "timeout", str(CAPTURE_S), "tcpdump", "-nn",
                           "-l", "-q", "-i", "lan0"], capture_output=True, text=True, timeout=CAPTURE_S + 20)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    speakers = [line for line in lines if re.search(rf"\.{speaker_port}[: ]", line)]
    assert speakers, f"the capture saw none of the speakers' messages (UDP {speaker_port}): {done.stderr[-500:]}"
    to_pods = []
    for line in lines:
        addresses = re.findall(r"\b(\d+\.\d+\.\d+\.\d+)(?:\.(\d+))?\b", line)
        if any(ipaddress.ip_address(a) in pods for a, _ in addresses) or any(p == "8472" for _, p in addresses):
            to_pods.append(line)
    assert not to_pods, f"{len(to_pods)} packets of pod traffic crossed the idle lab's LAN, e.g. {to_pods[:3]}"


def status(lab: NetnsLab, group: str, pod, container: str) -> dict:
    """What the container's shim last wrote of it."""
    return json.loads(Path(workloads.container_status_path(lab.name, group, f"{pod.name}/{container}")).read_text())


def stop(lab: NetnsLab, group: str, pod, container: str) -> dict:
    """SIGKILL the container's process until its restart back-off keeps it stopped for a while
    (the shim starts it again at once after its first exit, as the kubelet does); its status then."""
    for _ in range(5):
        before = status(lab, group, pod, container)
        if before["state"] == "waiting" and (before["backoffUntil"] or 0) > time.time() + 1:
            return before
        assert wait_until(lambda: status(lab, group, pod, container)["state"] == "running", step=0.01)
        before = status(lab, group, pod, container)
        os.kill(before["pid"], signal.SIGKILL)
        assert wait_until(lambda: status(lab, group, pod, container)["started"] != before["started"], step=0.01)
    raise AssertionError(f"{pod.name}/{container} is not kept stopped after 5 kills: {status(lab, group, pod, container)}")


@pytest.mark.parametrize("group, app, container", [("workloads", "echo", "echo"),
                                                   ("ingress", "ingress-nginx", "controller")])
def test_a_stopped_container_leaves_every_nodes_rules_until_it_runs_and_passes_its_probe(lab, group, app, container):
    """Its shim says at once that it stopped (waiting, in back-off), the node's kubelet part
    publishes the pod not ready, and every node's kube-proxy part takes it out: before a probe
    could fail three times (the published state says why). After the back-off it runs again
    and comes back once its probe passes."""
    pod = next(p for p in lab.plan.pods if p.app == app)
    svc = next(s for s in lab.plan.services if s.app == app)
    address = f"{pod.ip}:{svc.ports[0].target_port}"
    assert holding(lab, address) == everyone(lab)
    stopped = stop(lab, group, pod, container)
    assert stopped["state"] == "waiting" and stopped["backoffUntil"], stopped
    assert wait_until(lambda: not holding(lab, address), step=0.02), f"{pod.name} still in {holding(lab, address)}"
    if status(lab, group, pod, container)["state"] == "waiting":  # still in its back-off: the file says so too
        state = published(lab, pod)
        assert state["conditions"]["ready"] is False
        assert state["containers"][container]["state"] == "waiting", state
    assert wait_until(lambda: status(lab, group, pod, container)["state"] == "running")
    assert wait_until(lambda: holding(lab, address) == everyone(lab)), holding(lab, address)
    assert published(lab, pod)["conditions"]["ready"] is True


def test_a_pod_that_stops_listening_leaves_after_its_failure_threshold_and_comes_back(lab):
    """nginx reloads a configuration that listens elsewhere: its process lives, its port is
    closed. The echo probe (tcpSocket every 2 s, 3 failures) takes the pod out of every node's
    rules; the configuration back, the next probe that passes brings it back."""
    pod = lab.plan.echo_pods[-1]
    address = echo_address(lab, pod)
    port = lab.plan.echo_service.ports[0].target_port
    conf = Path(workloads.pod_dir(lab.name, pod), "echo.conf")
    original = conf.read_text()
    assert f"listen {port}" in original
    master = lab.container_pid(pod.name, "echo")
    assert holding(lab, address) == everyone(lab)
    try:
        conf.write_text(original.replace(f"listen {port}", f"listen {port + 1}"))
        os.kill(master, signal.SIGHUP)
        assert wait_until(lambda: not listening(master, port)), "nginx still listens after its reload"
        assert wait_until(lambda: not holding(lab, address)), f"{pod.name} still in {holding(lab, address)}"
        state = published(lab, pod)
        assert state["conditions"]["ready"] is False
        assert state["containers"]["echo"]["state"] != "terminated", "the container stopped; it should live"
        assert lab.container_pid(pod.name, "echo") == master, "the container's process changed"
    finally:
        conf.write_text(original)
        os.kill(master, signal.SIGHUP)
    assert wait_until(lambda: listening(master, port))
    assert wait_until(lambda: holding(lab, address) == everyone(lab)), holding(lab, address)
    assert published(lab, pod)["conditions"]["ready"] is True


def test_a_node_cut_off_from_the_lan_has_its_pods_leave_the_other_nodes_rules_until_its_link_returns(lab):
    node = lab.plan.nodes[0]
    pod = next(p for p in lab.plan.ingress_pods if p.node == node.name)
    address = f"{pod.ip}:{lab.plan.ingress_service.ports[0].target_port}"
    others = [n.name for n in lab.plan.nodes if n.name != node.name]
    assert holding(lab, address) == everyone(lab)
    assert lab.exec_in(node.netns, ["ip", "link", "set", "eth1", "down"]).ok
    try:
        assert wait_until(lambda: not set(others) & set(holding(lab, address))), holding(lab, address)
        doc = json.loads(Path(workloads.endpoints_path(lab.name, node.name)).read_text())
        assert doc["nodeReady"]["ready"] is False
        assert doc["pods"][pod.name]["containers"]["controller"]["ready"] is True, "the container itself stays ready"
    finally:
        assert lab.exec_in(node.netns, ["ip", "link", "set", "eth1", "up"]).ok
    assert wait_until(lambda: holding(lab, address) == everyone(lab)), holding(lab, address)
    assert podpath("up", "--lab", lab.name, "-q").returncode == 0
