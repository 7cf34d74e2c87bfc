"""Scenarios 1-4: what a pod is made of on its node.

Its own network namespace (a bind mount under /var/run/netns, named cni-<uuid> as
containerd names it), the pause process that holds it, containers that share it, and
the veth pair that plugs it into the node's cni0 bridge.
"""
import os

import pytest

pytestmark = pytest.mark.netns_lab


def nsfs_mounts() -> set[str]:
    """Mount points of namespace files (fstype nsfs), from this process's mountinfo."""
    points = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "nsfs":
                points.add(left.split()[4])
    return points


@pytest.mark.scenario(1)
def test_pod_namespace_is_under_var_run_netns(lab, pod):
    path = f"/var/run/netns/{pod.netns}"
    assert pod.netns.startswith("cni-"), f"pod {pod.name}: namespace {pod.netns} is not named cni-<uuid>"
    assert os.path.exists(path), f"pod {pod.name}: {path} does not exist (the pod has no network namespace)"


@pytest.mark.scenario(1)
def test_pod_namespace_has_eth0_with_the_pod_ip(lab, pod):
    addresses = lab.ipv4(pod.netns, "eth0")
    assert f"{pod.ip}/{pod.prefixlen}" in addresses, (
        f"pod {pod.name}: eth0 in {pod.netns} has {addresses or 'no IPv4 address'}, not {pod.ip}/{pod.prefixlen}")


@pytest.mark.scenario(1)
def test_pod_namespace_is_a_bind_mount_that_outlives_containers(lab, pod):
    # A namespace file that is a mount of nsfs keeps the namespace alive with no process in it.
    path = f"/run/netns/{pod.netns}"
    assert path in nsfs_mounts(), f"pod {pod.name}: {path} is not a bind mount of the namespace (nsfs)"


@pytest.mark.scenario(2)
def test_pause_process_holds_the_pod_namespace(lab, pod):
    pid = lab.holder(pod.netns)
    assert pid, f"pod {pod.name}: no pause process is running for {pod.netns}"
    with open(f"/proc/{pid}/comm") as handle:
        comm = handle.read().strip()
    assert "pause" in comm, f"pod {pod.name}: the holder (pid {pid}) is {comm!r}, not a pause process"
    held = os.stat(f"/proc/{pid}/ns/net").st_ino
    bound = os.stat(f"/run/netns/{pod.netns}").st_ino
    assert held == bound, (f"pod {pod.name}: pause pid {pid} is in network namespace {held}, "
                           f"but /run/netns/{pod.netns} is {bound}")


def _multi_container_pod(lab):
    return next(p for p in lab.pods() if len(p.containers) > 1 and p.app == "multi-container")


@pytest.mark.scenario(3)
def test_containers_of_a_pod_share_one_network_namespace(lab):
    pod = _multi_container_pod(lab)
    pids = {c.name: lab.container_pid(pod.name, c.name) for c in pod.containers}
    assert all(pids.values()), f"pod {pod.name}: containers not running: {[c for c, p in pids.items() if not p]}"
    nets = {c: os.stat(f"/proc/{pid}/ns/net").st_ino for c, pid in pids.items()}
    pod_net = os.stat(f"/run/netns/{pod.netns}").st_ino
    assert set(nets.values()) == {pod_net}, f"pod {pod.name}: containers' network namespaces {nets}, pod's {pod_net}"
    # each container has its own mount, UTS and PID namespaces, and shares the pod's IPC one
    for kind in ("mnt", "pid", "uts"):
        inodes = {os.stat(f"/proc/{pid}/ns/{kind}").st_ino for pid in pids.values()}
        assert len(inodes) == len(pids), f"pod {pod.name}: containers share a {kind} namespace; each needs its own"
    ipc = {os.stat(f"/proc/{pid}/ns/ipc").st_ino for pid in pids.values()}
    assert len(ipc) == 1, f"pod {pod.name}: containers are in different IPC namespaces {ipc}"


@pytest.mark.scenario(3)
def test_containers_of_a_pod_see_the_same_ip(lab):
    pod = _multi_container_pod(lab)
    for container in pod.containers:
        pid = lab.container_pid(pod.name, container.name)
        out = lab.exec_in_pid(pid, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        assert f"inet {pod.ip}/" in out.stdout, (
            f"pod {pod.name}: container {container.name} sees {out.stdout.strip() or out.stderr.strip()}, "
            f"not {pod.ip}")


@pytest.mark.scenario(3)
def test_containers_of_a_pod_reach_each_other_on_localhost(lab):
    pod = _multi_container_pod(lab)
    sleeper, server = pod.containers[0], pod.containers[1]
    pid = lab.container_pid(pod.name, sleeper.name)
    answer = lab.curl_pid(pid, f"http://127.0.0.1:{pod.port}/")
    assert answer.status == 200, (f"pod {pod.name}: {sleeper.name} cannot reach {server.name} on "
                                  f"127.0.0.1:{pod.port}: {answer.error or answer.status}")
    assert f"container={server.name}" in answer.body, f"pod {pod.name}: localhost answered {answer.body!r}"


@pytest.mark.scenario(4)
def test_pod_veth_is_a_port_of_cni0(lab, pod):
    node_ns = lab.node_netns(pod.node)
    veth = lab.link(node_ns, pod.host_veth)
    assert veth, f"pod {pod.name}: node {pod.node} has no link {pod.host_veth} (the pod's host-side veth)"
    assert veth.get("master") == "cni0", (
        f"pod {pod.name}: {pod.host_veth} on {pod.node} is attached to {veth.get('master') or 'no bridge'}, not cni0")
    assert veth.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin") is True, (
        f"pod {pod.name}: hairpin mode is off on {pod.host_veth}; a pod could not reach itself through a Service")


@pytest.mark.scenario(4)
def test_pod_veth_is_the_peer_of_the_pod_eth0(lab, pod):
    eth0 = lab.link(pod.netns, "eth0")
    veth = lab.link(lab.node_netns(pod.node), pod.host_veth)
    assert eth0 and veth, f"pod {pod.name}: eth0 or {pod.host_veth} is missing"
    assert eth0.get("link_index") == veth["ifindex"] and veth.get("link_index") == eth0["ifindex"], (
        f"pod {pod.name}: eth0 (peer index {eth0.get('link_index')}) and {pod.host_veth} "
        f"(index {veth['ifindex']}) are not the two ends of one veth pair")
