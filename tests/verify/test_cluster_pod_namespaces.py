"""Scenarios 1-4 on the cluster lab: what a pod is made of on its node.

containerd names each pod's network namespace /var/run/netns/cni-<uuid> and keeps it as a
bind mount; the pause process (the sandbox) holds it; the pod's containers join it; flannel's
bridge plugin plugs it into cni0 with a veth pair. Evidence comes from crictl, lsns and ip on
the pod's node, and from kubectl exec into the multi-container pod.
"""
import re
import time

import pytest

from podpath.evidence.cluster_probe import NETNS_DIR

pytestmark = pytest.mark.cluster_lab


@pytest.mark.scenario(1)
def test_pod_namespace_is_a_cni_file_under_var_run_netns(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    sandbox = lab.sandbox(pod)
    directory, _, name = sandbox.netns_path.rpartition("/")
    assert directory in (NETNS_DIR, "/run/netns") and name.startswith("cni-"), (
        f"pod {pod}: its sandbox's network namespace is {sandbox.netns_path}, not {NETNS_DIR}/cni-<uuid>")
    listed = lab.netns_names(pod.node)
    assert name in listed, (f"pod {pod}: {name} is missing from {NETNS_DIR} on {pod.node} "
                            f"(ls lists {listed or 'nothing'})")


@pytest.mark.scenario(1)
def test_pod_namespace_has_eth0_with_the_pod_ip(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    netns = lab.sandbox(pod).netns_path.rpartition("/")[2]
    addresses = [a.get("local") for link in lab.ip_json(pod.node, "addr", "show", "dev", "eth0", netns=netns)
                 for a in link.get("addr_info", []) if a.get("family") == "inet"]
    assert pod.ip in addresses, (f"pod {pod}: eth0 in {netns} has {addresses or 'no IPv4 address'}, "
                                 f"but Kubernetes says the pod IP is {pod.ip}")


@pytest.mark.scenario(1)
def test_pod_namespace_is_a_bind_mount_that_outlives_its_containers(lab, k8s_pod):
    # A namespace bind-mounted on a file (nsfs) lives on with no process in it.
    pod = lab.pod(k8s_pod)
    sandbox = lab.sandbox(pod)
    inode = lab.inode_of(pod.node, sandbox.netns_path)
    space = lab.lsns(pod.node).get(inode)
    assert space, f"pod {pod}: lsns on {pod.node} does not list namespace {inode} ({sandbox.netns_path})"
    name = sandbox.netns_path.rpartition("/")[2]
    assert any(p.endswith(f"/netns/{name}") for p in space.nsfs), (
        f"pod {pod}: namespace {inode} is not bind-mounted on {sandbox.netns_path} (lsns NSFS: {space.nsfs or 'none'})")


@pytest.mark.scenario(1)
@pytest.mark.disruptive
def test_pod_namespace_outlives_a_killed_container(lab):
    """Stop the busybox container of the multi-container pod; kubelet restarts it (restartPolicy
    Always) in the same sandbox: same namespace file, same IP. Nothing is left to restore."""
    pod = lab.pods_of("multi-container")[0]
    before = lab.sandbox(pod)
    container = pod.containers[0]
    cid = pod.container_ids.get(container)
    assert cid, f"pod {pod}: container {container} has no container id"
    lab.must(pod.node, ["crictl", "stop", "--timeout", "2", cid], root=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        again = next((p for p in lab.pods_of("multi-container", refresh=True) if p.name == pod.name), None)
        if again and again.ready and again.restarts.get(container, 0) > pod.restarts.get(container, 0):
            break
        time.sleep(3)
    else:
        pytest.fail(f"pod {pod}: container {container} was not restarted within 120 s after crictl stop")
    after = lab.sandbox(again)
    assert (after.id, after.netns_path) == (before.id, before.netns_path), (
        f"pod {pod}: the sandbox changed when {container} died ({before.id[:12]} {before.netns_path} -> "
        f"{after.id[:12]} {after.netns_path}); the namespace should have outlived the container")
    assert again.ip == pod.ip, f"pod {pod}: its IP changed from {pod.ip} to {again.ip} when {container} died"


@pytest.mark.scenario(2)
def test_pause_process_holds_the_pod_namespace(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    sandbox = lab.sandbox(pod)
    comm = lab.comm(pod.node, sandbox.pid)
    assert comm == "pause", f"pod {pod}: the sandbox's process (pid {sandbox.pid}) is {comm!r}, not pause"
    held = lab.ns_inode_of_pid(pod.node, sandbox.pid)
    bound = lab.inode_of(pod.node, sandbox.netns_path)
    assert held == bound, (f"pod {pod}: pause (pid {sandbox.pid}) is in network namespace {held}, "
                           f"but {sandbox.netns_path} is namespace {bound}")


@pytest.mark.scenario(2)
def test_lsns_shows_the_pod_namespace_with_its_processes(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    sandbox = lab.sandbox(pod)
    inode = lab.ns_inode_of_pid(pod.node, sandbox.pid)
    space = lab.lsns(pod.node).get(inode)
    assert space and space.nprocs >= 1 + len(pod.containers), (
        f"pod {pod}: lsns on {pod.node} counts {space.nprocs if space else 0} processes in namespace {inode}; "
        f"expected pause and at least one per container ({len(pod.containers)})")


def _multi_container_pod(lab):
    pods = lab.pods_of("multi-container")
    assert pods, "the multi-container pod is not running"
    return pods[0]


def _readlink(lab, pod, container, kind):
    out = lab.exec_in_pod(pod, container, ["readlink", f"/proc/self/ns/{kind}"])
    assert out.ok, f"pod {pod}: readlink in container {container} failed: {out.stderr.strip()}"
    return out.stdout.strip()


@pytest.mark.scenario(3)
def test_containers_of_a_pod_share_one_network_namespace(lab):
    pod = _multi_container_pod(lab)
    nets = {c: _readlink(lab, pod, c, "net") for c in pod.containers}
    sandbox_net = f"net:[{lab.inode_of(pod.node, lab.sandbox(pod).netns_path)}]"
    assert set(nets.values()) == {sandbox_net}, (
        f"pod {pod}: containers are in network namespaces {nets}; the pod's sandbox is {sandbox_net}")
    # each container keeps its own mount and UTS namespaces
    for kind in ("mnt", "uts"):
        spaces = {c: _readlink(lab, pod, c, kind) for c in pod.containers}
        assert len(set(spaces.values())) == len(spaces), f"pod {pod}: containers share a {kind} namespace: {spaces}"


@pytest.mark.scenario(3)
def test_containers_of_a_pod_see_the_pod_ip_on_eth0(lab):
    pod = _multi_container_pod(lab)
    # busybox has the ip applet; the nginx image has no ip tool but shares the namespace (above)
    out = lab.exec_in_pod(pod, "busybox", ["ip", "-4", "addr", "show", "dev", "eth0"])
    seen = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)
    assert seen == [pod.ip], (f"pod {pod}: container busybox sees {seen or out.stderr.strip() or 'no address'} "
                              f"on eth0, not the pod IP {pod.ip}")


@pytest.mark.scenario(3)
def test_containers_of_a_pod_reach_each_other_on_localhost(lab):
    pod = _multi_container_pod(lab)
    # busybox's wget asks nginx, which listens in the other container, on the shared loopback
    out = lab.exec_in_pod(pod, "busybox", ["wget", "-q", "-T", "3", "-O", "-", f"http://127.0.0.1:{pod.port}/"])
    assert out.ok and "nginx" in out.stdout.lower(), (
        f"pod {pod}: busybox cannot reach nginx on 127.0.0.1:{pod.port} (exit {out.rc}): "
        f"{(out.stderr or out.stdout).strip()[:200]}")


@pytest.mark.scenario(4)
def test_pod_veth_is_a_port_of_cni0(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    netns = lab.sandbox(pod).netns_path.rpartition("/")[2]
    eth0, veth = lab.host_veth(pod, netns)
    assert veth, (f"pod {pod}: no link on {pod.node} has ifindex {eth0.get('link_index')}, the peer of the pod's "
                  "eth0 (the pod has no host-side veth)")
    assert veth.get("master") == "cni0", (
        f"pod {pod}: its host-side veth {veth.get('ifname')} on {pod.node} is attached to "
        f"{veth.get('master') or 'no bridge'}, not cni0")
    assert veth.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin") is True, (
        f"pod {pod}: hairpin mode is off on {veth.get('ifname')}; the pod could not reach itself through a Service")


@pytest.mark.scenario(4)
def test_pod_veth_is_the_peer_of_the_pod_eth0(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    netns = lab.sandbox(pod).netns_path.rpartition("/")[2]
    eth0, veth = lab.host_veth(pod, netns)
    assert veth and veth.get("link_index") == eth0.get("ifindex"), (
        f"pod {pod}: eth0 (index {eth0.get('ifindex')}, peer {eth0.get('link_index')}) and "
        f"{veth.get('ifname') if veth else 'no link'} on {pod.node} are not the two ends of one veth pair")
    assert veth.get("linkinfo", {}).get("info_kind") == "veth", (
        f"pod {pod}: {veth.get('ifname')} on {pod.node} is a {veth.get('linkinfo', {}).get('info_kind')}, not a veth")
