"""Evidence from a running netns lab: real traffic and real tools, run in its namespaces.

Every check of the verifier, `podpath trace` and the drills asks the lab through
this class. It runs commands (curl, arping, ping, ip -j, iptables-save, conntrack)
inside the lab's namespaces with nsenter, through a runner: testinfra's `host.run`
in the suites, subprocess elsewhere. Nothing here sends traffic from, or changes, the
host's own namespace.
"""
from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from podpath.evidence import status as lab_status
from podpath.model.plan import Plan, Pod, build


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


Runner = Callable[[list[str]], Result]


def local_runner(argv: list[str]) -> Result:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


def testinfra_runner(host) -> Runner:
    """A runner over a testinfra host: the command line is quoted word by word."""
    def run(argv: list[str]) -> Result:
        out = host.run(" ".join(shlex.quote(a) for a in argv))
        return Result(out.rc, out.stdout, out.stderr)
    return run


@dataclass
class Http:
    rc: int  # curl's exit code: 0 answered, 7 refused, 28 timed out
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    error: str = ""

    def field(self, key: str) -> str | None:
        """A key=value field of the echo backend's one-line answer."""
        match = re.search(rf"(?:^|\s){re.escape(key)}=(\S*)", self.body)
        return match.group(1) if match else None


CURL_ERRORS = {6: "could not resolve host", 7: "connection refused or no route", 28: "timed out",
               52: "empty reply", 56: "connection reset"}


@functools.lru_cache(maxsize=None)
def neighbour_table_limit() -> int | None:
    """The host's cap on neighbour entries, shared by every namespace (gc_thresh3), or None
    where it cannot be read."""
    try:
        return int(Path("/proc/sys/net/ipv4/neigh/default/gc_thresh3").read_text())
    except (OSError, ValueError):
        return None


class NetnsLab:
    """One netns lab, seen from inside its namespaces."""

    kind = "netns"

    def __init__(self, lab: str, topology: dict, run: Runner = local_runner):
        self.name = lab
        self.topology = topology
        self.plan: Plan = build(topology, lab)
        self.run = run

    # -- where things are ------------------------------------------------------------
    def node_netns(self, node: str) -> str:
        return self.plan.node(node).netns

    def pods(self) -> list[Pod]:
        return list(self.plan.pods)

    def exec_in(self, netns: str, argv: list[str]) -> Result:
        return self.run(["nsenter", f"--net=/run/netns/{netns}", "--"] + argv)

    def exec_in_pid(self, pid: int, argv: list[str]) -> Result:
        """Run in the network namespace of process PID (a container), as `nsenter -t PID -n` does."""
        return self.run(["nsenter", "-t", str(pid), "-n", "--"] + argv)

    # -- traffic ---------------------------------------------------------------------
    def curl(self, netns: str, url: str, host: str | None = None, timeout: float = 2.0) -> Http:
        argv = ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-"]
        if host:
            argv += ["-H", f"Host: {host}"]
        return parse_http(self.exec_in(netns, argv + [url]))

    def curl_pid(self, pid: int, url: str, timeout: float = 2.0) -> Http:
        return parse_http(self.exec_in_pid(pid, ["curl", "-sS", "-m", str(timeout), "-D", "-", "-o", "-", url]))

    def ping(self, netns: str, ip: str) -> Result:
        return self.exec_in(netns, ["ping", "-c", "1", "-W", "1", ip])

    def arping(self, netns: str, iface: str, ip: str, count: int = 3) -> set[str]:
        """MAC addresses that answered ARP requests for IP (arping from iputils or Debian's arping)."""
        # -W: 0.2 s between requests, so a check takes well under a second
        out = self.exec_in(netns, ["arping", "-c", str(count), "-W", "0.2", "-w", "2", "-i", iface, ip])
        return {m.lower() for m in re.findall(r"((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})", out.stdout)}

    # -- state -----------------------------------------------------------------------
    def ip_json(self, netns: str, *args: str) -> list:
        out = self.exec_in(netns, ["ip", "-j", *args])
        return json.loads(out.stdout or "[]") if out.ok else []

    def link(self, netns: str, name: str) -> dict | None:
        links = self.ip_json(netns, "-d", "link", "show", "dev", name)
        return links[0] if links else None

    def ipv4(self, netns: str, dev: str) -> list[str]:
        return [f"{a['local']}/{a['prefixlen']}" for link in self.ip_json(netns, "addr", "show", "dev", dev)
                for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def route_get(self, netns: str, ip: str) -> dict | None:
        routes = self.ip_json(netns, "route", "get", ip)
        return routes[0] if routes else None

    def iptables_save(self, netns: str, table: str = "nat") -> str:
        return self.exec_in(netns, ["iptables-save", "-t", table]).stdout

    def conntrack(self, netns: str, dst: str) -> list[str]:
        out = self.exec_in(netns, ["conntrack", "-L", "-p", "tcp", "--orig-dst", dst])
        return [line for line in out.stdout.splitlines() if line.startswith("tcp")]

    def neighbours(self, netns: str, dev: str) -> dict[str, str]:
        return {n["dst"]: n.get("lladdr", "").lower() for n in self.ip_json(netns, "neigh", "show", "dev", dev)
                if n.get("lladdr")}

    def fills_neighbour_table(self) -> bool:
        """Whether the two entries per pod that a check of every pod makes could fill half of
        the host's neighbour table (the kernel's default cap, 1024, where it cannot be read)."""
        return 4 * len(self.plan.pods) >= (neighbour_table_limit() or 1024)

    def forget_neighbours(self, pod: Pod) -> None:
        """Delete the neighbour entries that traffic between POD and its node made: the pod's
        (for its gateway) and its node's on cni0 (for the pod)."""
        self.run(["ip", "-n", pod.netns, "neigh", "flush", "dev", "eth0"])
        self.run(["ip", "-n", self.node_netns(pod.node), "neigh", "del", pod.ip, "dev", "cni0"])

    def node_macs(self) -> dict[str, str]:
        """Node name -> MAC of its eth1, read from the node's namespace."""
        macs = {}
        for node in self.plan.nodes:
            link = self.link(node.netns, "eth1")
            if link:
                macs[node.name] = link["address"].lower()
        return macs

    def containers(self) -> dict[str, dict]:
        return lab_status.containers(self.name)

    def container_pid(self, pod: str, container: str) -> int | None:
        """The pid of the container's first process (for nsenter -t), or None if it is not running."""
        record = self.containers().get(f"{pod}/{container}")
        if not record or not record["running"]:
            return None
        return lab_status.container_init(record["pid"]) or record["pid"]

    def holder(self, netns: str) -> int | None:
        return lab_status.holders(self.name, [netns])[netns]

    def speakers(self) -> dict[str, dict | None]:
        return lab_status.speakers(self.name, [n.name for n in self.plan.nodes])

    def lease(self) -> dict | None:
        return lab_status.lease(self.name, self.topology)


def parse_http(out: Result) -> Http:
    if out.rc != 0:
        return Http(rc=out.rc, status=None, error=out.stderr.strip() or CURL_ERRORS.get(out.rc, f"curl exit {out.rc}"))
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    match = re.match(r"HTTP/\S+ (\d+)", lines[0]) if lines else None
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Http(rc=0, status=int(match.group(1)) if match else None, headers=headers, body=body.strip())
