"""Scenarios 1-4: what a pod is made of on its node.

Its own network namespace (a bind mount under /var/run/netns, named cni-<uuid> as
containerd names it), the pause process that holds it, containers that share it (and
which other namespaces they share: the runtime's model, podpath/evidence/lab.py: with
containerd, the pause's UTS namespace too, so every container's host name is the pod's,
and the pause's PID namespace, with the pause as its pid 1, when the pod sets
shareProcessNamespace), and the veth pair that plugs it into the node's cni0 bridge.
Asked of either lab through its adapter: nsenter and /proc on this host (netns lab),
crictl, lsns, ip and kubectl exec on the nodes (cluster lab).
"""
import pytest

NETNS_DIRS = ("/var/run/netns", "/run/netns")


def _ips(addresses):
    return [a.partition("/")[0] for a in addresses]


@pytest.mark.scenario(1)
def test_pod_namespace_is_a_cni_file_under_var_run_netns(lab, pod):
    path = lab.netns_path(pod)
    directory, _, name = path.rpartition("/")
    assert directory in NETNS_DIRS and name.startswith("cni-"), (
        f"pod {pod}: its network namespace is {path}, not /var/run/netns/cni-<uuid>")
    listed = lab.netns_files(pod.node)
    assert name in listed, (f"pod {pod}: {name} is missing from /var/run/netns on {pod.node} "
                            f"({lab.node_command(pod.node, ['ls', '/var/run/netns'])} lists {len(listed)} others): "
                            "the pod has no network namespace")


@pytest.mark.scenario(1)
def test_pod_namespace_has_eth0_with_the_pod_ip(lab, pod):
    addresses = lab.pod_addresses(pod, "eth0")
    wanted = f"{pod.ip}/{pod.prefixlen}" if pod.prefixlen else pod.ip
    found = addresses if pod.prefixlen else _ips(addresses)
    assert wanted in found, (f"pod {pod}: eth0 has {addresses or 'no IPv4 address'}, not the pod IP {wanted} "
                             f"({lab.pod_command(pod, ['ip', 'addr', 'show', 'dev', 'eth0'])})")


@pytest.mark.scenario(1)
def test_pod_namespace_is_a_bind_mount_that_outlives_its_containers(lab, pod):
    # A namespace bind-mounted on a file (nsfs) lives on with no process in it.
    name = lab.netns_path(pod).rpartition("/")[2]
    mounts = lab.netns_bind_mounts(pod)
    lsns = lab.node_command(pod.node, ["lsns", "-t", "net", "-o", "NS,NSFS"], root=True)
    assert any(m.rpartition("/")[2] == name and m.rpartition("/")[0] in NETNS_DIRS for m in mounts), (
        f"pod {pod}: its network namespace is not bind-mounted on /var/run/netns/{name} (nsfs mounts of it: "
        f"{mounts or 'none'}; {lsns})")


@pytest.fixture
def repaired(lab):
    yield
    lab.repair()


@pytest.mark.scenario(1)
@pytest.mark.disruptive
def test_pod_namespace_outlives_a_killed_container(lab, repaired):
    """Stop the only container of an echo pod: the namespace file, the address on eth0 and
    the pause process stay (the cluster's kubelet restarts the container in the same
    sandbox; the netns lab's `podpath up` restarts it afterwards)."""
    pod = lab.pods_of("echo")[0]
    container = pod.containers[0]
    path, holder = lab.netns_path(pod), lab.sandbox_pid(pod)
    assert holder, f"pod {pod}: no pause process before the test"
    what = lab.stop_container(pod, container)
    name = path.rpartition("/")[2]
    assert lab.netns_path(pod) == path, f"pod {pod}: after {what}, its namespace is {lab.netns_path(pod)}, not {path}"
    assert name in lab.netns_files(pod.node), f"pod {pod}: {path} vanished with its container ({what})"
    assert pod.ip in _ips(lab.pod_addresses(pod, "eth0")), f"pod {pod}: eth0 lost {pod.ip} with its container ({what})"
    assert lab.sandbox_pid(pod) == holder, (f"pod {pod}: its pause process (pid {holder}) died or changed with its "
                                            f"container ({what})")


@pytest.mark.scenario(2)
def test_pause_process_holds_the_pod_namespace(lab, pod):
    pid = lab.sandbox_pid(pod)
    assert pid, f"pod {pod}: no pause process holds its network namespace"
    comm = lab.process_name(pod.node, pid)
    assert comm == lab.runtime.sandbox_process, (
        f"pod {pod}: the sandbox's process (pid {pid}) is {comm!r}, not {lab.runtime.sandbox_process}")
    held = lab.namespace_of_pid(pod.node, pid, "net")
    bound = lab.namespace_of_netns_file(pod)
    assert held == bound, (f"pod {pod}: pause (pid {pid}) is in network namespace {held}, but "
                           f"{lab.netns_path(pod)} is {bound} (readlink /proc/{pid}/ns/net; stat -L the file)")


@pytest.mark.scenario(2)
def test_lsns_shows_the_pod_namespace_with_its_processes(lab, pod):
    count = lab.processes_in_netns(pod)
    assert count >= 1 + len(pod.containers), (
        f"pod {pod}: lsns -t net counts {count} processes in its network namespace; expected pause and at least "
        f"one per container ({len(pod.containers)})")


def _multi_container_pod(lab):
    pods = lab.pods_of("multi-container")
    assert pods, "the multi-container pod is not running"
    return pods[0]


@pytest.mark.scenario(3)
def test_containers_of_a_pod_share_or_own_each_namespace_as_the_runtime_does(lab, namespace_kind):
    """The runtime's model (podpath/evidence/lab.py) says which namespaces a pod's containers
    share with its sandbox, and which each has for itself."""
    pod = _multi_container_pod(lab)
    kind = namespace_kind
    expected = lab.runtime.expectation(kind, pod.share_process_namespace)
    spaces = {c: lab.container_namespaces(pod, c)[kind] for c in pod.containers}
    holder = lab.sandbox_pid(pod)
    assert holder, f"pod {pod}: no pause process"
    sandbox = lab.namespace_of_pid(pod.node, holder, kind)
    shown = lab.exec_command(pod, pod.containers[0], ["readlink", f"/proc/self/ns/{kind}"])
    if expected == "shared":
        assert set(spaces.values()) == {sandbox}, (
            f"pod {pod}: with {lab.runtime.name}, every container joins the sandbox's {kind} namespace {sandbox}; "
            f"the containers are in {spaces} ({shown})")
        if kind == "net":
            assert sandbox == lab.namespace_of_netns_file(pod), (
                f"pod {pod}: the sandbox's network namespace {sandbox} is not {lab.netns_path(pod)}")
    else:
        assert len(set(spaces.values())) == len(spaces) and sandbox not in spaces.values(), (
            f"pod {pod}: with {lab.runtime.name}, each container has its own {kind} namespace; containers "
            f"{spaces}, sandbox {sandbox} ({shown})")


@pytest.mark.scenario(3)
def test_every_container_of_a_pod_has_the_pod_name_as_its_host_name(lab, pod):
    """The pause sets the pod's name as the host name of its UTS namespace, which every
    container joins (the kubelet asks containerd for the pod's name; dockershim gave each
    container a UTS namespace of its own)."""
    seen = {c: lab.container_hostname(pod, c) for c in pod.containers}
    wrong = {c: name for c, name in seen.items() if name != pod.name}
    assert not wrong, (f"pod {pod}: containers see the host names {wrong}, not the pod's name {pod.name} "
                       f"({lab.exec_command(pod, next(iter(wrong)), ['hostname'])})")


@pytest.mark.scenario(3)
def test_pid_1_of_each_container_is_the_pause_exactly_when_the_pod_shares_its_pid_namespace(lab):
    """With shareProcessNamespace the containers share the pause's PID namespace: pid 1 is the
    pause and each container sees the others' processes (ps). Without it each container has
    its own, whose pid 1 is its own first process, and sees neither the pause nor the others."""
    pod = _multi_container_pod(lab)
    pause = lab.runtime.sandbox_process
    seen = {c: lab.container_processes(pod, c) for c in pod.containers}
    shown = lab.exec_command(pod, pod.containers[0], ["ps", "-e"])
    if pod.share_process_namespace:
        wrong = {c: procs.get(1) for c, procs in seen.items() if procs.get(1) != pause}
        assert not wrong, f"pod {pod} shares its PID namespace, but pid 1 in {wrong} is not {pause} ({shown})"
        views = {c: sorted(procs) for c, procs in seen.items()}
        assert len({tuple(v) for v in views.values()}) == 1, (
            f"pod {pod} shares its PID namespace, but its containers see different processes: {seen} ({shown})")
    else:
        wrong = {c: procs for c, procs in seen.items() if procs.get(1) == pause or pause in procs.values()}
        assert not wrong, (f"pod {pod} does not share its PID namespace, but containers see the sandbox's {pause}: "
                           f"{wrong} ({shown})")
        assert all(procs.get(1) for procs in seen.values()), f"pod {pod}: a container sees no pid 1: {seen}"


@pytest.mark.scenario(3)
def test_containers_of_a_pod_see_the_pod_ip_on_eth0(lab):
    pod = _multi_container_pod(lab)
    seen = {c: lab.container_ipv4(pod, c) for c in pod.containers}
    looked = {c: ips for c, ips in seen.items() if ips is not None}  # None: the image has no `ip`
    assert looked, f"pod {pod}: no container has a tool to show its addresses"
    wrong = {c: ips for c, ips in looked.items() if ips != [pod.ip]}
    assert not wrong, f"pod {pod}: containers see {wrong} on eth0, not the pod IP {pod.ip} (ip -4 addr show dev eth0)"


@pytest.mark.scenario(3)
def test_containers_of_a_pod_reach_each_other_on_localhost(lab):
    pod = _multi_container_pod(lab)
    # the first container does not listen; the second serves on the shared loopback
    client, server = pod.containers[0], pod.containers[1]
    answer = lab.container_get(pod, client, f"http://127.0.0.1:{pod.port}/")
    assert answer.status == 200, (f"pod {pod}: {client} cannot reach {server} on 127.0.0.1:{pod.port}: "
                                  f"{answer.error or answer.status}")
    mark = lab.page_mark(pod, server)
    assert mark in answer.body.lower(), f"pod {pod}: localhost answered {answer.body[:200]!r}, not {server}'s page"


@pytest.mark.scenario(4)
def test_pod_veth_is_a_port_of_cni0(lab, pod):
    eth0, veth = lab.pod_links(pod)
    assert veth, (f"pod {pod}: no link on {pod.node} is the peer of its eth0 (peer index {eth0.get('link_index')}): "
                  "the pod has no host-side veth")
    shown = lab.node_command(pod.node, ["ip", "-d", "link", "show", "dev", veth.get("ifname", "")])
    assert veth.get("master") == "cni0", (
        f"pod {pod}: its host-side veth {veth.get('ifname')} on {pod.node} is attached to "
        f"{veth.get('master') or 'no bridge'}, not cni0 ({shown})")
    assert veth.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin") is True, (
        f"pod {pod}: hairpin mode is off on {veth.get('ifname')}; the pod could not reach itself through a Service")


@pytest.mark.scenario(4)
def test_pod_veth_is_the_peer_of_the_pod_eth0(lab, pod):
    eth0, veth = lab.pod_links(pod)
    assert eth0 and veth, f"pod {pod}: eth0 or its host-side veth is missing"
    assert eth0.get("link_index") == veth.get("ifindex") and veth.get("link_index") == eth0.get("ifindex"), (
        f"pod {pod}: eth0 (index {eth0.get('ifindex')}, peer {eth0.get('link_index')}) and {veth.get('ifname')} on "
        f"{pod.node} (index {veth.get('ifindex')}, peer {veth.get('link_index')}) are not the two ends of one "
        "veth pair")
    assert veth.get("linkinfo", {}).get("info_kind") == "veth", (
        f"pod {pod}: {veth.get('ifname')} on {pod.node} is a {veth.get('linkinfo', {}).get('info_kind')}, not a veth")
