"""podpath_netns run through ansible-playbook against real namespaces on this host.

What the module did is read back with tools that share no code with it: `ip -j`,
/run/netns and /proc. Each test has a lab of its own (see conftest.py), removed
afterwards whatever happens; nothing is created in the host's own namespace.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

# The helpers live in this folder's conftest.py; load them by path rather than by the
# module name "conftest", which each test folder of the project has.
_HELPERS = importlib.util.spec_from_file_location("podpath_netns_integration_helpers",
                                                  Path(__file__).with_name("conftest.py"))
helpers = importlib.util.module_from_spec(_HELPERS)
sys.modules[_HELPERS.name] = helpers
_HELPERS.loader.exec_module(helpers)
NetnsLab = helpers.NetnsLab
alive, ip_json, net_inode_of, netns_inode, wait_until = (helpers.alive, helpers.ip_json, helpers.net_inode_of,
                                                         helpers.netns_inode, helpers.wait_until)
NETNS_DIR, RUN_ROOT = helpers.NETNS_DIR, helpers.RUN_ROOT

pytestmark = pytest.mark.netns

SUBNET = "10.250.1"
GATEWAY = f"{SUBNET}.1"
TCP_PORT = 18080


# -- the spec: a node with its bridge, and pods wired to it as the CNI bridge plugin does --
def node_spec(lab: NetnsLab) -> dict[str, Any]:
    return {"name": lab.ns("node"), "sysctls": {"net.ipv4.ip_forward": 1},
            "links": [{"name": "cni0", "kind": "bridge", "addresses": [f"{GATEWAY}/24"]}]}


def host_veth(lab: NetnsLab, i: int) -> str:
    return f"{lab.name}h{i}"


def pod_spec(lab: NetnsLab, i: int) -> dict[str, Any]:
    return {"name": lab.ns(f"pod{i}"), "holder": True, "hostname": f"pod{i}",
            "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{SUBNET}.{i + 1}/24"],
                       "peer": {"name": host_veth(lab, i), "namespace": lab.ns("node"), "master": "cni0",
                                "hairpin": True}}],
            "routes": [{"dst": "default", "gateway": GATEWAY}]}


def lab_spec(lab: NetnsLab, pods=(1, 2)) -> list[dict[str, Any]]:
    return [node_spec(lab)] + [pod_spec(lab, i) for i in pods]


# -- reading the system with ip ----------------------------------------------------------
def links_of(netns: str) -> dict[str, dict]:
    return {link["ifname"]: link for link in ip_json("-d", "-n", netns, "link", "show")}


def ipv4_of(netns: str, dev: str) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for entry in ip_json("-n", netns, "addr", "show", "dev", dev)
            for a in entry.get("addr_info", []) if a["family"] == "inet"}


def gateway_routes_of(netns: str) -> set[tuple[str, str]]:
    return {(r["dst"], r["gateway"]) for r in ip_json("-n", netns, "route", "show") if "gateway" in r}


def sysctl_in(netns: str, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    return subprocess.run(["ip", "netns", "exec", netns, "cat", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def problems(spec: list[dict[str, Any]]) -> list[str]:
    """What differs between SPEC and the system, read with ip. Empty when all is in place."""
    found = []
    wanted = []  # (netns, name, kind, addresses, master, hairpin)
    for ns in spec:
        for link in ns.get("links", []):
            wanted.append((ns["name"], link["name"], link["kind"], link.get("addresses", []), link.get("master"),
                           link.get("hairpin")))
            peer = link.get("peer")
            if peer:
                wanted.append((peer["namespace"], peer["name"], "veth", peer.get("addresses", []),
                               peer.get("master"), peer.get("hairpin")))
    for ns in spec:
        if not os.path.exists(NETNS_DIR / ns["name"]):
            found.append(f"{ns['name']}: no namespace")
            continue
        links = links_of(ns["name"])
        if "UP" not in links["lo"]["flags"]:
            found.append(f"{ns['name']}: lo is down")
        for key, value in ns.get("sysctls", {}).items():
            if sysctl_in(ns["name"], key) != str(int(value)):
                found.append(f"{ns['name']}: {key} is not {value}")
        missing = {(r.get("dst", "default"), r["gateway"]) for r in ns.get("routes", [])} - gateway_routes_of(ns["name"])
        found += [f"{ns['name']}: no route {dst} via {gw}" for dst, gw in sorted(missing)]
    for netns, name, kind, addresses, master, hairpin in wanted:
        if not os.path.exists(NETNS_DIR / netns):
            continue
        link = links_of(netns).get(name)
        if link is None:
            found.append(f"{netns}: no link {name}")
            continue
        info = link.get("linkinfo", {})
        if info.get("info_kind") != kind:
            found.append(f"{netns}: {name} is a {info.get('info_kind')}, not a {kind}")
        if "UP" not in link["flags"]:
            found.append(f"{netns}: {name} is down")
        if ipv4_of(netns, name) != set(addresses):
            found.append(f"{netns}: {name} has {sorted(ipv4_of(netns, name))}, not {sorted(addresses)}")
        if link.get("master") != master:
            found.append(f"{netns}: {name} has master {link.get('master')}, not {master}")
        if hairpin is not None and info.get("info_slave_data", {}).get("hairpin") != hairpin:
            found.append(f"{netns}: {name} has hairpin {info.get('info_slave_data', {}).get('hairpin')}")
    return found


def holder_in_place(lab: NetnsLab, netns: str) -> bool:
    pid = lab.holder_pid(netns)
    return bool(pid) and alive(pid) and net_inode_of(pid) == netns_inode(netns)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


# -- a lab wired once, read by the tests that change nothing -------------------------------
@pytest.fixture(scope="module")
def wired(module_lab: NetnsLab):
    spec = lab_spec(module_lab)
    first = module_lab.apply(spec)
    return module_lab, spec, first


def test_first_run_reports_changed(wired):
    _, _, first = wired
    assert first.changed
    assert first.module["changes"]


def test_wiring_is_as_asked(wired):
    _, spec, _ = wired
    assert problems(spec) == []


def test_namespaces_are_under_run_netns_and_in_the_registry(wired):
    lab, spec, _ = wired
    names = sorted(ns["name"] for ns in spec)
    assert lab.namespaces() == names
    assert lab.registry.exists()
    assert all(name in lab.registry.read_text() for name in names)


@pytest.mark.parametrize("i", [1, 2], ids=["pod1", "pod2"])
def test_host_end_is_a_hairpin_port_of_the_bridge(wired, i):
    lab, _, _ = wired
    link = links_of(lab.ns("node"))[host_veth(lab, i)]
    assert link["master"] == "cni0"
    assert link["linkinfo"]["info_slave_kind"] == "bridge"
    assert link["linkinfo"]["info_slave_data"]["hairpin"] is True


@pytest.mark.parametrize("i", [1, 2], ids=["pod1", "pod2"])
def test_pod_has_its_address_and_default_route(wired, i):
    lab, _, _ = wired
    assert ipv4_of(lab.ns(f"pod{i}"), "eth0") == {f"{SUBNET}.{i + 1}/24"}
    assert ("default", GATEWAY) in gateway_routes_of(lab.ns(f"pod{i}"))


@pytest.mark.parametrize("i", [1, 2], ids=["pod1", "pod2"])
def test_holder_runs_in_the_pods_namespace(wired, i):
    lab, _, first = wired
    netns = lab.ns(f"pod{i}")
    pid = lab.holder_pid(netns)
    assert holder_in_place(lab, netns)
    assert first.module["namespaces"][netns]["holder_pid"] == pid


@pytest.mark.parametrize("i", [1, 2], ids=["pod1", "pod2"])
def test_holder_sets_the_pods_host_name(wired, i):
    lab, _, _ = wired
    if not shutil.which("nsenter"):
        pytest.skip("nsenter (util-linux) is not installed")
    pid = lab.holder_pid(lab.ns(f"pod{i}"))
    name = subprocess.run(["nsenter", "--target", str(pid), "--uts", "hostname"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert name == f"pod{i}"


def test_node_has_ip_forwarding_on(wired):
    lab, _, _ = wired
    assert sysctl_in(lab.ns("node"), "net.ipv4.ip_forward") == "1"


SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
print("ready", flush=True)
s.settimeout(10)
conn, peer = s.accept()
conn.sendall(("pong from " + peer[0]).encode())
conn.close()
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as c:
    print(c.recv(100).decode())
"""


def test_pods_reach_each_other_over_tcp(wired):
    lab, _, _ = wired
    server = subprocess.Popen(["ip", "netns", "exec", lab.ns("pod2"), sys.executable, "-c", SERVER, str(TCP_PORT)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        client = subprocess.run(["ip", "netns", "exec", lab.ns("pod1"), sys.executable, "-c", CLIENT,
                                 f"{SUBNET}.3", str(TCP_PORT)], capture_output=True, text=True, timeout=20)
        assert client.stdout.strip() == f"pong from {SUBNET}.2", client.stderr
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("src, dst", [(1, 2), (2, 1)], ids=["pod1-to-pod2", "pod2-to-pod1"])
def test_pods_ping_each_other(wired, src, dst):
    lab, _, _ = wired
    if not shutil.which("ping"):
        pytest.skip("ping (iputils-ping) is not installed; the TCP test covers reachability")
    done = subprocess.run(["ip", "netns", "exec", lab.ns(f"pod{src}"), "ping", "-c", "1", "-W", "2",
                           f"{SUBNET}.{dst + 1}"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr


def test_second_identical_run_changes_nothing(wired):
    lab, spec, _ = wired
    again = lab.apply(spec)
    assert not again.changed, again.module["changes"]
    assert again.module["changes"] == []


def test_check_mode_on_the_applied_spec_reports_no_change(wired):
    lab, spec, _ = wired
    check = lab.apply(spec, check=True)
    assert not check.changed, check.module["changes"]


# -- check mode and diff on a fresh lab ----------------------------------------------------
def test_check_mode_on_a_fresh_spec_reports_changes_and_creates_nothing(netns_lab):
    result = netns_lab.apply(lab_spec(netns_lab), check=True)
    assert result.changed
    assert f"{netns_lab.ns('node')}: create namespace" in result.module["changes"]
    assert f"{netns_lab.ns('pod1')}: start holder" in result.module["changes"]
    assert netns_lab.namespaces() == []
    assert not netns_lab.registry.exists()
    assert not netns_lab.lab_dir.exists()


def test_diff_shows_before_and_after(netns_lab):
    spec = lab_spec(netns_lab, pods=(1,))
    shown = netns_lab.run(spec, check=True, diff=True, json_output=False)
    assert shown.rc == 0, shown.stdout + shown.stderr
    assert "--- before" in shown.stdout and "+++ after" in shown.stdout
    assert f"-absent" in shown.stdout
    assert f'+        "{SUBNET}.2/24"' in shown.stdout


def test_diff_of_a_repair_shows_the_missing_address(netns_lab):
    spec = lab_spec(netns_lab, pods=(1,))
    netns_lab.apply(spec)
    ip("-n", netns_lab.ns("pod1"), "addr", "del", f"{SUBNET}.2/24", "dev", "eth0")
    result = netns_lab.apply(spec, check=True, diff=True)
    diff = result.module["diff"]
    assert f"{SUBNET}.2/24" not in diff["before"]
    assert f"{SUBNET}.2/24" in diff["after"]
    assert netns_lab.ns("pod1") in diff["before"]


# -- repairs: damage one thing by hand, the next run notices and heals it ----------------------
def _no_address(lab):
    ip("-n", lab.ns("pod1"), "addr", "del", f"{SUBNET}.2/24", "dev", "eth0")


def _no_route(lab):
    ip("-n", lab.ns("pod1"), "route", "del", "default")


def _hairpin_off(lab):
    ip("-n", lab.ns("node"), "link", "set", host_veth(lab, 1), "type", "bridge_slave", "hairpin", "off")


def _port_detached(lab):
    ip("-n", lab.ns("node"), "link", "set", host_veth(lab, 1), "nomaster")


def _link_down(lab):
    ip("-n", lab.ns("pod1"), "link", "set", "eth0", "down")


def _host_veth_deleted(lab):
    ip("-n", lab.ns("node"), "link", "del", host_veth(lab, 1))


def _bridge_deleted(lab):
    ip("-n", lab.ns("node"), "link", "del", "cni0")


def _forwarding_off(lab):
    subprocess.run(["ip", "netns", "exec", lab.ns("node"), "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"],
                   check=True)


def _stray_address(lab):
    ip("-n", lab.ns("pod1"), "addr", "add", f"{SUBNET}.99/24", "dev", "eth0")


REPAIRS = [
    ("address-removed", _no_address, "pod1: add 10.250.1.2/24 to eth0"),
    ("route-removed", _no_route, "pod1: add route default via 10.250.1.1"),
    ("hairpin-off", _hairpin_off, "node: set hairpin on on {h1}"),
    ("port-detached", _port_detached, "node: attach {h1} to cni0"),
    ("link-down", _link_down, "pod1: set eth0 up"),
    ("host-veth-deleted", _host_veth_deleted, "pod1: create veth eth0 <-> {lab}-node/{h1}"),
    ("bridge-deleted", _bridge_deleted, "node: create bridge cni0"),
    ("forwarding-off", _forwarding_off, "node: set net.ipv4.ip_forward=1"),
    ("stray-address", _stray_address, "pod1: remove 10.250.1.99/24 from eth0"),
]


@pytest.mark.parametrize("damage, line", [pytest.param(d, l, id=i) for i, d, l in REPAIRS])
def test_next_run_heals_a_hand_made_change(netns_lab, damage: Callable[[NetnsLab], None], line: str):
    spec = lab_spec(netns_lab)
    netns_lab.apply(spec)
    damage(netns_lab)
    assert problems(spec), "the damage did not show"
    expected = f"{netns_lab.name}-" + line.format(lab=netns_lab.name, h1=host_veth(netns_lab, 1))

    check = netns_lab.apply(spec, check=True)
    assert check.changed and expected in check.module["changes"], check.module["changes"]
    assert problems(spec), "check mode repaired something"

    repair = netns_lab.apply(spec)
    assert repair.changed
    assert repair.module["changes"] == check.module["changes"], "check mode and the real run disagree"
    assert problems(spec) == []


# -- removal -------------------------------------------------------------------------------
def test_purge_removes_the_lab_folder_with_what_others_kept_there(netns_lab):
    netns_lab.apply(lab_spec(netns_lab))
    kept = netns_lab.lab_dir / "leases" / "ingress.json"  # as a daemon of the lab writes it
    kept.parent.mkdir()
    kept.write_text("{}")
    check = netns_lab.apply(state="absent", purge=True, check=True)
    assert f"remove {netns_lab.lab_dir}" in check.module["changes"]
    assert kept.exists() and len(netns_lab.namespaces()) == 3, "check mode removed something"

    gone = netns_lab.apply(state="absent", purge=True)
    assert f"remove {netns_lab.lab_dir}" in gone.module["changes"]
    assert netns_lab.namespaces() == []
    assert not netns_lab.lab_dir.exists()
    again = netns_lab.apply(state="absent", purge=True)
    assert not again.changed


def test_purge_is_refused_while_the_folder_lists_containers(netns_lab):
    netns_lab.apply(lab_spec(netns_lab))
    (netns_lab.lab_dir / "containers-workloads.json").write_text("{}")
    refused = netns_lab.run(state="absent", purge=True)
    assert refused.failed
    assert "containers-workloads.json" in refused.msg and "podpath_containers" in refused.msg, refused.msg
    assert len(netns_lab.namespaces()) == 3, "a refused purge removed namespaces"
    (netns_lab.lab_dir / "containers-workloads.json").unlink()


def test_state_absent_removes_every_namespace_and_holder(netns_lab):
    spec = lab_spec(netns_lab)
    netns_lab.apply(spec)
    holders = [netns_lab.holder_pid(netns_lab.ns(f"pod{i}")) for i in (1, 2)]
    assert all(holders)

    check = netns_lab.apply(state="absent", check=True)
    assert check.changed
    assert len(netns_lab.namespaces()) == 3, "check mode removed something"

    gone = netns_lab.apply(state="absent")
    assert gone.changed
    assert sorted(gone.module["removed"]) == sorted(ns["name"] for ns in spec)
    assert netns_lab.namespaces() == []
    assert wait_until(lambda: not any(alive(pid) for pid in holders)), f"holders still run: {holders}"
    assert not netns_lab.registry.exists()

    again = netns_lab.apply(state="absent")
    assert not again.changed


def test_one_run_prunes_a_pod_dropped_from_the_spec(netns_lab):
    netns_lab.apply(lab_spec(netns_lab, pods=(1, 2)))
    result = netns_lab.run(lab_spec(netns_lab, pods=(1,)))
    assert not result.failed, result.msg
    assert result.module["removed"] == [netns_lab.ns("pod2")]


def test_a_pod_dropped_from_the_spec_is_pruned(netns_lab):
    netns_lab.apply(lab_spec(netns_lab, pods=(1, 2)))
    old_holder = netns_lab.holder_pid(netns_lab.ns("pod2"))
    first = netns_lab.run(lab_spec(netns_lab, pods=(1,)))
    assert first.changed or first.failed
    assert f"{netns_lab.ns('pod2')}: remove namespace (no longer wanted)" in first.module["changes"]
    if first.failed:  # PRUNE_BUG: a second run finishes the job
        netns_lab.apply(lab_spec(netns_lab, pods=(1,)))
    assert netns_lab.namespaces() == [netns_lab.ns("node"), netns_lab.ns("pod1")]
    assert wait_until(lambda: not alive(old_holder))
    assert netns_lab.ns("pod2") not in netns_lab.registry.read_text()
    assert not netns_lab.holder_pidfile(netns_lab.ns("pod2")).exists()
    # the namespace goes once its last user has gone; its veth pair goes with it
    assert wait_until(lambda: host_veth(netns_lab, 2) not in links_of(netns_lab.ns("node")))
    assert problems(lab_spec(netns_lab, pods=(1,))) == []
    assert not netns_lab.apply(lab_spec(netns_lab, pods=(1,))).changed


def test_without_prune_a_dropped_pod_keeps_its_namespace(netns_lab):
    netns_lab.apply(lab_spec(netns_lab, pods=(1, 2)))
    result = netns_lab.apply(lab_spec(netns_lab, pods=(1,)), prune=False)
    assert result.module["removed"] == []
    assert not any("remove namespace" in line for line in result.module["changes"])
    assert netns_lab.ns("pod2") in netns_lab.namespaces()
    assert holder_in_place(netns_lab, netns_lab.ns("pod2"))


# -- holders -------------------------------------------------------------------------------
def test_a_killed_holder_is_restarted_in_the_namespace(netns_lab):
    spec = lab_spec(netns_lab, pods=(1,))
    netns_lab.apply(spec)
    netns = netns_lab.ns("pod1")
    old = netns_lab.holder_pid(netns)
    assert holder_in_place(netns_lab, netns)
    os.kill(old, signal.SIGKILL)
    assert wait_until(lambda: not alive(old))

    result = netns_lab.apply(spec)
    assert result.changed
    assert f"{netns}: start holder" in result.module["changes"]
    new = netns_lab.holder_pid(netns)
    assert new and new != old
    assert alive(new)
    assert net_inode_of(new) == os.stat(NETNS_DIR / netns).st_ino
    assert result.module["namespaces"][netns]["holder_pid"] == new
    assert problems(spec) == []


# -- ownership -----------------------------------------------------------------------------
def test_a_namespace_made_outside_the_lab_is_refused_and_left_alone(netns_lab):
    foreign = netns_lab.ns("pod1")
    netns_lab.foreign.add(foreign)
    ip("netns", "add", foreign)
    try:
        inode = netns_inode(foreign)
        result = netns_lab.run(lab_spec(netns_lab, pods=(1,)))
        assert result.failed
        assert f"network namespace {foreign} already exists" in result.msg
        assert f"ip netns delete {foreign}" in result.msg
        assert netns_inode(foreign) == inode
        assert list(links_of(foreign)) == ["lo"]
        assert netns_lab.namespaces() == [foreign], "something was created before the refusal"

        netns_lab.apply(state="absent")
        assert netns_inode(foreign) == inode, "state: absent removed a namespace the lab does not own"
    finally:
        subprocess.run(["ip", "netns", "delete", foreign], capture_output=True)


def test_a_namespace_of_another_lab_is_refused(netns_lab, other_lab):
    other_lab.apply([node_spec(other_lab)])
    taken = other_lab.ns("node")
    inode = netns_inode(taken)
    spec = lab_spec(netns_lab, pods=(1,))
    spec[0]["name"] = taken
    spec[1]["links"][0]["peer"]["namespace"] = taken
    result = netns_lab.run(spec)
    assert result.failed
    assert f"network namespace {taken} already exists and belongs to lab {other_lab.name}" in result.msg
    assert netns_inode(taken) == inode
    assert sorted(links_of(taken)) == ["cni0", "lo"]
    assert netns_lab.namespaces() == []


@pytest.mark.parametrize("root", ["veth-peer", "root-links"])
def test_the_root_namespace_is_refused_without_allow_root_namespace(netns_lab, root):
    host_before = {link["ifname"] for link in ip_json("link", "show")}
    spec = lab_spec(netns_lab, pods=(1,))
    params: dict[str, Any] = {}
    if root == "veth-peer":
        peer = spec[1]["links"][0]["peer"]
        del peer["namespace"], peer["master"], peer["hairpin"]
        expected = "would be created in the root namespace"
    else:
        params["root_links"] = [{"name": f"{netns_lab.name}br", "kind": "bridge"}]
        expected = "root_links would change the namespace the module runs in"
    result = netns_lab.run(spec, **params)
    assert result.failed
    assert expected in result.msg and "allow_root_namespace" in result.msg
    assert netns_lab.namespaces() == []
    host_after = {link["ifname"] for link in ip_json("link", "show")}
    assert not {n for n in host_after - host_before if netns_lab.name in n}


# -- bad input: refused before any change ------------------------------------------------------
def _mutate(fn):
    def build(lab):
        spec = lab_spec(lab, pods=(1,))
        fn(lab, spec)
        return spec, {}
    return build


def _params(**params):
    def build(lab):
        return lab_spec(lab, pods=(1,)), params
    return build


def _pod_link(spec):
    return spec[1]["links"][0]


BAD_INPUT = [
    ("malformed-cidr", _mutate(lambda lab, s: _pod_link(s).update(addresses=["10.250.1.300/24"])),
     "'10.250.1.300/24'"),
    ("network-address", _mutate(lambda lab, s: _pod_link(s).update(addresses=["10.250.1.0/24"])),
     "10.250.1.0/24 on eth0 in namespace {lab}-pod1 is the network address"),
    ("ifname-16-bytes", _mutate(lambda lab, s: _pod_link(s)["peer"].update(name=lab.name + "h12345678")),
     "'{lab}h12345678' in namespace {lab}-node is 16 bytes"),
    ("overlapping-subnets", _mutate(lambda lab, s: s[0]["links"].append(
        {"name": "cni1", "kind": "bridge", "addresses": ["10.250.1.129/25"]})), "10.250.1.129/25 on cni1"),
    ("peer-namespace-not-listed", _mutate(lambda lab, s: _pod_link(s)["peer"].update(namespace=lab.ns("ghost"))),
     "in namespace {lab}-ghost, which is not listed"),
    ("gateway-outside-subnets", _mutate(lambda lab, s: s[1]["routes"][0].update(gateway="10.9.9.1")),
     "gateway 10.9.9.1 of route default in namespace {lab}-pod1"),
    ("sysctl-outside-net", _mutate(lambda lab, s: s[0]["sysctls"].update({"kernel.pid_max": 4096})),
     "'kernel.pid_max'"),
    ("missing-kernel-feature", _mutate(lambda lab, s: s[0]["sysctls"].update({"net.ipv4.podpath_no_such": 1})),
     "the kernel has no sysctl net.ipv4.podpath_no_such"),
    ("namespace-listed-twice", _mutate(lambda lab, s: s.append(copy.deepcopy(s[0]))),
     "namespace {lab}-node is listed twice"),
    ("bad-lab-name", _params(lab="Bad-Lab"), "lab name 'Bad-Lab' is not valid"),
    ("pause-not-executable", _params(pause="/nonexistent/podpath-pause"),
     "pause program /nonexistent/podpath-pause is not an executable file"),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=i) for i, b, e in BAD_INPUT])
def test_bad_input_fails_before_any_change(netns_lab, build, expected):
    spec, params = build(netns_lab)
    result = netns_lab.run(spec, **params)
    assert result.failed
    assert expected.format(lab=netns_lab.name) in result.msg, result.msg
    assert netns_lab.namespaces() == []
    assert not netns_lab.lab_dir.exists()
    assert not os.path.exists(RUN_ROOT / "Bad-Lab")
