"""Helpers for tests that build whole labs: run the CLI, snapshot the host, clean up for sure.

What belongs to a lab is found here by the marks podpath puts on it (the alias of a
namespace's lo, the PODPATH_OWNER variable in a process's environment: module_utils/
podpath_lab.py), read with other tools than podpath's own (`ip -j link show lo`, /proc
read directly), and, as a safety net, by the names and command lines a lab uses.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from podpath.model import labdir
from podpath.model.topology import TOPOLOGY_FILE as DEFAULT_TOPOLOGY

ROOT = Path(__file__).resolve().parents[2]
NETNS_DIR = labdir.lab.NETNS_DIR
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/bridge/bridge-nf-call-iptables",
           "net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/route_localnet")


def podpath(*args: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podpath.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def verify(lab: str, tmp_path: Path, *extra: str) -> dict[str, dict]:
    """Run the verifier's suite against LAB as a user would (pytest --hosts=local://) and return
    its scenario report (--scenario-json): scenario number -> result, with the output as '_output'."""
    out = tmp_path / "scenarios.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "--hosts=local://", "--lab", lab, "-q", "-p",
                           "no:cacheprovider", "-o", "addopts=", "--scenario-json", str(out), *extra,
                           str(ROOT / "tests" / "verify")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.exists(), f"the verifier wrote no scenario report:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    result = json.loads(out.read_text())
    result["_output"] = done.stdout
    return result


def failed(result: dict) -> list[int]:
    """The scenarios that failed in a report of verify(), in order."""
    return sorted(int(n) for n, r in result.items() if not n.startswith("_") and r["outcome"] == "FAIL")


def new_lab_name(prefix: str) -> str:
    return prefix + os.urandom(3).hex()


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else f"<{argv[0]} failed: {done.stderr.strip()}>"


def host_snapshot() -> dict[str, str]:
    """The host's own network namespace, as text: links, addresses, routes, rules, firewall,
    listening sockets and the sysctls a lab could touch."""
    links = json.loads(_run(["ip", "-j", "link"]) or "[]")
    for link in links:  # counters and timers move on their own; what matters is what exists
        for key in ("stats", "stats64", "operstate", "linkmode"):
            link.pop(key, None)
    iptables = "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in _run(["iptables-save"]).splitlines()
                         if not line.startswith("#"))
    nft = re.sub(r"counter packets \d+ bytes \d+", "counter", _run(["nft", "list", "ruleset"]))
    sysctls = {}
    for key in SYSCTLS:
        try:
            sysctls[key] = Path("/proc/sys", key).read_text().strip()
        except OSError:
            sysctls[key] = None
    return {
        "links": json.dumps(links, sort_keys=True),
        "addresses": _run(["ip", "-o", "addr"]),
        "routes": _run(["ip", "route", "show", "table", "all"]),
        "rules": _run(["ip", "rule"]),
        "iptables": iptables,
        "nft": nft,
        "listening": _listening(),
        "sysctls": json.dumps(sysctls, sort_keys=True),
    }


def _listening() -> str:
    """The host namespace's listening sockets, but those held only by processes that carry no
    podpath mark: other programs on a shared machine (another test run's local server) open
    and close theirs at any time; a lab's process never may."""
    marked = {pid for pid, (_ppid, _cmd, env) in _processes().items() if b"\0PODPATH_OWNER=" in b"\0" + env}
    kept = []
    for line in _run(["ss", "-H", "-ltnup"]).splitlines():
        pids = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if not pids or pids & marked:
            words = line.split()
            kept.append(f"{words[0]} {words[4]}")  # the protocol and the local address (not the queues)
    return "\n".join(sorted(kept))


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [key for key in before if before[key] != after.get(key)]


_LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def lo_alias(netns: str) -> str | None:
    """The alias of lo in the namespace bound at NETNS_DIR/NETNS, asked from inside it and read
    with pyroute2's decoder, not podpath's ('' for none, None if there is no such namespace).
    `ip -n` reads the same, at 20 ms a namespace on a host with hundreds of them."""
    from pyroute2.netlink import NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_GETLINK
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    request = ifinfmsg()
    request["index"] = 1
    request["header"] = {"type": RTM_GETLINK, "flags": NLM_F_REQUEST, "sequence_number": 1}
    request.encode()
    try:
        fd = os.open(labdir.lab.netns_path(netns), os.O_RDONLY)
    except OSError:
        return None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET) != 0:
            return None
        try:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:  # made inside the namespace
                sock.send(request.data)
                answer = ifinfmsg(sock.recv(65536))
            answer.decode()
            return answer.get_attr("IFLA_IFALIAS") or ""
        finally:
            assert _LIBC.setns(home, CLONE_NEWNET) == 0, "could not return to the test's own namespace"
    finally:
        os.close(fd)
        os.close(home)


def marked_namespaces(lab: str) -> list[str]:
    """The namespaces bound under NETNS_DIR whose lo carries LAB's mark (exactly)."""
    names = os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else []
    return sorted(ns for ns in names if lo_alias(ns) == f"podpath-lab={lab}")


def _processes() -> dict[int, tuple[int, bytes, bytes]]:
    """pid -> (parent pid, command line, environment) of every live process but this one."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] in ("Z", "X"):
                continue
            found[int(entry)] = (int(stat[1]), Path("/proc", entry, "cmdline").read_bytes(),
                                 Path("/proc", entry, "environ").read_bytes())
        except (OSError, IndexError, ValueError):
            continue
    return found


def marked_processes(lab: str) -> list[int]:
    """Processes with PODPATH_OWNER=LAB in their own environment, and their descendants (nginx
    writes its title over its environment; its master and workers descend from the wrapper)."""
    procs = _processes()
    marked = {pid for pid, (_ppid, _cmd, env) in procs.items() if f"PODPATH_OWNER={lab}".encode() in env.split(b"\0")}
    grown = True
    while grown:
        more = {pid for pid, (ppid, _cmd, _env) in procs.items() if ppid in marked} - marked
        marked |= more
        grown = bool(more)
    return sorted(marked)


def lab_namespaces(lab: str) -> list[str]:
    """LAB's namespaces by every sign: its mark, its registry and its name prefix."""
    registry = Path(labdir.lab_dir(lab), "netns.json")
    try:
        owned = json.loads(registry.read_text()).get("namespaces", [])
    except (OSError, ValueError, AttributeError):
        owned = []
    named = [ns for ns in os.listdir(NETNS_DIR) if ns.startswith(lab + "-")] if os.path.isdir(NETNS_DIR) else []
    present = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
    return sorted((set(owned) & present) | set(named) | set(marked_namespaces(lab)))


def lab_processes(lab: str) -> list[int]:
    """LAB's processes by every sign: its mark (and descent from a marked one), and a command
    line that names the lab's folder or namespaces (pause, nginx, daemons)."""
    marker = f"{labdir.lab_dir(lab)}/".encode()
    netns_marker = f"{labdir.lab.netns_path(lab)}-".encode()
    named = [pid for pid, (_ppid, cmdline, _env) in _processes().items() if marker in cmdline or netns_marker in cmdline]
    return sorted(set(named) | set(marked_processes(lab)))


def force_remove(lab: str) -> None:
    """Last resort after a failed `down`: remove what the marks, the registry and the names say."""
    for pid in lab_processes(lab):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for ns in lab_namespaces(lab):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    subprocess.run(["rm", "-rf", labdir.lab_dir(lab), str(labdir.RUNS / lab), str(labdir.LOCKS / f"{lab}.lock")])


def lab_fingerprint(lab: str) -> dict:
    """What a running lab is: its namespaces and, per node, its nat rules (for 'unchanged' checks)."""
    rules = {}
    for ns in lab_namespaces(lab):
        if ns.startswith(lab + "-"):
            out = subprocess.run(["nsenter", f"--net={labdir.lab.netns_path(ns)}", "--", "iptables-save", "-t", "nat"],
                                 capture_output=True, text=True).stdout
            rules[ns] = [re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#")]
    return {"namespaces": lab_namespaces(lab), "rules": rules, "processes": len(lab_processes(lab))}


def ip_json(*args: str):
    """`ip -j ARGS` as Python data."""
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=30).stdout
    return json.loads(out or "[]")


@contextlib.contextmanager
def lab_from_topology(prefix: str, folder: Path, change):
    """A lab built with `podpath up` from a copy of the reference topology that CHANGE (given
    the podpath_topology mapping) alters, as (lab name, topology file); then it takes the lab
    down (by force if `down` failed or left anything) and checks that the host's own namespace
    is as it was."""
    import yaml

    name = new_lab_name(prefix)
    path = folder / "topology.yml"
    data = yaml.safe_load(DEFAULT_TOPOLOGY.read_text())
    change(data["podpath_topology"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = host_snapshot()
    try:
        up = podpath("up", "--lab", name, "--topology", str(path), "--quiet")
        assert up.returncode == 0, f"podpath up failed:\n{up.stdout}\n{up.stderr}"
        yield name, path
    finally:
        down = podpath("down", "--lab", name, "--quiet")
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        assert down.returncode == 0, f"podpath down failed:\n{down.stdout}\n{down.stderr}"
        assert not lab_namespaces(name), f"namespaces of {name} left behind"
        changed = snapshot_diff(before, host_snapshot())
        assert not changed, f"the lab changed the host's own namespace: {changed}"
