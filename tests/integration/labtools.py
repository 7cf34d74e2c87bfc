"""Helpers for tests that build whole labs: run the CLI, snapshot the host, clean up for sure."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding", "net/bridge/bridge-nf-call-iptables",
           "net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/route_localnet")


def podpath(*args: str, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podpath.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


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
        "listening": _run(["ss", "-H", "-ltnu"]),
        "sysctls": json.dumps(sysctls, sort_keys=True),
    }


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [key for key in before if before[key] != after.get(key)]


def lab_namespaces(lab: str) -> list[str]:
    registry = Path(f"/run/podpath/{lab}/netns.json")
    owned = json.loads(registry.read_text()).get("namespaces", []) if registry.exists() else []
    named = [ns for ns in os.listdir("/run/netns") if ns.startswith(lab + "-")] if os.path.isdir("/run/netns") else []
    return sorted(set(owned) | set(named))


def lab_processes(lab: str) -> list[int]:
    """Processes whose command line names the lab's folder or namespaces (pause, nginx, daemons)."""
    marker = f"/run/podpath/{lab}/".encode()
    netns_marker = f"/run/netns/{lab}-".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes()
            state = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (marker in cmdline or netns_marker in cmdline):
            pids.append(int(entry))
    return pids


def force_remove(lab: str) -> None:
    """Last resort after a failed `down`: remove what the registry and the names say."""
    for pid in lab_processes(lab):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for ns in lab_namespaces(lab):
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    subprocess.run(["rm", "-rf", f"/run/podpath/{lab}", f"/run/podpath/.runs/{lab}",
                    f"/run/podpath/.locks/{lab}.lock"])


def lab_fingerprint(lab: str) -> dict:
    """What a running lab is: its namespaces and, per node, its nat rules (for 'unchanged' checks)."""
    rules = {}
    for ns in lab_namespaces(lab):
        if ns.startswith(lab + "-"):
            out = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--", "iptables-save", "-t", "nat"],
                                 capture_output=True, text=True).stdout
            rules[ns] = [re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#")]
    return {"namespaces": lab_namespaces(lab), "rules": rules, "processes": len(lab_processes(lab))}
