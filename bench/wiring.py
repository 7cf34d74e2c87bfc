"""Pod wiring: the podpath_netns module vs. the CNI bridge plugin vs. a loop of `ip` commands.

Each way wires N pods on one node namespace: a namespace per pod, a veth pair whose
host end is a hairpin port of the node's bridge cni0, the pod's address and its
default route via the bridge. The ways:

- module, ansible-playbook: one podpath_netns task for the node and all N pods;
  the wall time of the whole `ansible-playbook` run, Ansible's start included. Twice:
  as the lab runs it (in-process, plugins/action/) and the usual way
  (`podpath_in_process: false`: AnsiballZ and a Python of the module's own).
- module's own work: the same call's `run_module()` alone, in a Python that has
  imported the module already, without Ansible.
- CNI bridge plugin: Debian's /usr/lib/cni/bridge with host-local IPAM, called once per
  pod with CNI_COMMAND=ADD as containerd calls it, after `ip netns add` for the pod.
  The plugin runs inside the node namespace (`ip netns exec NODE`), so its bridge is
  made there; CNI_NETNS is the pod's /run/netns path.
- ip commands: a bash loop of `ip` calls, one per step, as a person would write it.

Nothing is added to the host's own namespace: its links are listed before and after
every run and the benchmark stops if they differ. Every run is removed afterwards, and
the next run starts once the kernel has freed the removed namespaces (it does that in
the background, and would otherwise slow whichever way runs next). The 1-minute load
average is read when each run starts and printed beside the times; the ratio to the CNI
plugin is given from the medians and, less sensitive to a load that changes during the
benchmark, as the median of each repeat's own ratio (the ways of one repeat run one
after the other).

    python -m bench.wiring [--sizes 10,100,500] [--repeats 3] [--no-write] [--profile]
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import ipaddress
import json
import math
import os
import platform
import pstats
import random
import resource
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
HEADING = "## Pod wiring: module vs. CNI bridge plugin vs. ip"
CNI_BIN = Path("/usr/lib/cni")
POD_NETWORK = ipaddress.IPv4Network("10.251.0.0/22")  # room for 500 pods and their gateway
GATEWAY = str(POD_NETWORK.network_address + 1)
BRIDGE = "cni0"
NETNS_DIR = Path("/run/netns")
RUN_ROOT = Path("/run/podpath")
GOAL = 10.0  # the module in one ansible-playbook call, times the CNI plugin's rate, at the largest size
SETTLE_LIMIT = 30.0  # seconds to wait at most for the kernel to free a removed run's namespaces

MODULE_PLAYBOOK = """\
- name: Wire the benchmark's pods with podpath_netns
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wire a node and its pods in one call
      podpath_netns:
        lab: "{{ lab }}"
        namespaces: "{{ namespaces }}"
"""

# Run in a child Python: load the module as the in-process run does, then time its run alone.
DIRECT_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from bench import wiring
wiring._direct_child(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
"""

IP_LOOP = r"""
set -e
lab=$1 n=$2 gw=$3 plen=$4 base=$5  # base: the pod network's address as an integer
node=$lab-node
ip netns add $node
ip -n $node link set lo up
ip -n $node link add {bridge} type bridge
ip -n $node addr add $gw/$plen dev {bridge}
ip -n $node link set {bridge} up
ip netns exec $node sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
for i in $(seq 1 $n); do
  pod=$lab-p$i
  host=${{lab}}h$i
  ip netns add $pod
  ip -n $node link add $host type veth peer name eth0 netns $pod
  ip -n $node link set $host master {bridge}
  ip -n $node link set $host type bridge_slave hairpin on
  ip -n $node link set $host up
  ip -n $pod link set lo up
  ip -n $pod link set eth0 up
  a=$((base + i + 1))
  ip -n $pod addr add $((a >> 24 & 255)).$((a >> 16 & 255)).$((a >> 8 & 255)).$((a & 255))/$plen dev eth0
  ip -n $pod route add default via $gw
done
""".format(bridge=BRIDGE)


# -- names and addresses ---------------------------------------------------------------
def new_lab() -> str:
    """A lab name of its own for one run ('bw' + 5 characters; podpath allows 10)."""
    return "bw" + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


def pod_ip(i: int) -> str:
    return str(POD_NETWORK.network_address + i + 1)  # pod 1 gets .2: .1 is the gateway


def module_spec(lab: str, n: int) -> list[dict[str, Any]]:
    """The podpath_netns `namespaces` argument for a node and N pods."""
    node = f"{lab}-node"
    spec = [{"name": node, "sysctls": {"net.ipv4.ip_forward": 1},
             "links": [{"name": BRIDGE, "kind": "bridge", "addresses": [f"{GATEWAY}/{POD_NETWORK.prefixlen}"]}]}]
    for i in range(1, n + 1):
        spec.append({"name": f"{lab}-p{i}",
                     "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{pod_ip(i)}/{POD_NETWORK.prefixlen}"],
                                "peer": {"name": f"{lab}h{i}", "namespace": node, "master": BRIDGE, "hairpin": True}}],
                     "routes": [{"dst": "default", "gateway": GATEWAY}]})
    return spec


# -- the host's own namespace must not change -------------------------------------------------
def host_links() -> list[tuple[str, str]]:
    links = json.loads(subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                                      check=True).stdout)
    return sorted((link["ifname"], link.get("linkinfo", {}).get("info_kind", "")) for link in links)


@contextlib.contextmanager
def host_untouched(what: str):
    before = host_links()
    yield
    after = host_links()
    if after != before:
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        raise RuntimeError(f"{what} changed the host's own namespace: added {added}, removed {removed}")


# -- clean-up ---------------------------------------------------------------------------------
def lab_namespaces(lab: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(lab + "-"))
    except FileNotFoundError:
        return []


def remove_lab(lab: str) -> None:
    """Delete every namespace of LAB (one `ip -batch`), its IPAM and registry folders."""
    names = lab_namespaces(lab)
    if names:
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"netns delete {n}\n" for n in names),
                       text=True, capture_output=True, timeout=600)
    left = lab_namespaces(lab)
    if left:
        raise RuntimeError(f"could not remove the namespaces of {lab}: {left[:5]}...")
    shutil.rmtree(RUN_ROOT / lab, ignore_errors=True)


def namespaces_in_kernel() -> int | None:
    """How many network namespaces the kernel holds (the net_namespace slab's active
    objects), removed ones it has not freed yet included; None where it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("net_namespace "):
                return int(line.split()[1])
    return None


def settle(before: int | None, limit: float = SETTLE_LIMIT) -> None:
    """Wait until the kernel has freed the namespaces of a removed run: their count is back
    to BEFORE (read before the run), or has stopped falling for a second (other users of the
    machine make and remove namespaces too), at most LIMIT seconds."""
    if before is None:
        return
    deadline = time.monotonic() + limit
    last, since = namespaces_in_kernel(), time.monotonic()
    while last is not None and last > before and time.monotonic() < deadline:
        time.sleep(0.1)
        now = namespaces_in_kernel()
        if now is None:
            return
        if now < last:
            since = time.monotonic()
        elif time.monotonic() - since > 1.0:
            return
        last = now


def load_average() -> float:
    return os.getloadavg()[0]


def verify(lab: str, n: int) -> None:
    """Every pod is a port of cni0 in the node, and the last pod has its address and route."""
    node = f"{lab}-node"
    ports = json.loads(subprocess.run(["ip", "-j", "-n", node, "link", "show", "master", BRIDGE],
                                      capture_output=True, text=True, check=True).stdout)
    if len(ports) != n:
        raise RuntimeError(f"{lab}: {len(ports)} ports on {BRIDGE}, expected {n}")
    last = f"{lab}-p{n}"
    addrs = subprocess.run(["ip", "-n", last, "-4", "-o", "addr", "show", "dev", "eth0"], capture_output=True,
                           text=True, check=True).stdout
    routes = subprocess.run(["ip", "-n", last, "route", "show", "default"], capture_output=True, text=True,
                            check=True).stdout
    if pod_ip(n) not in addrs or f"via {GATEWAY}" not in routes:
        raise RuntimeError(f"{lab}: pod {n} is not wired: {addrs!r} {routes!r}")


# -- the four ways ------------------------------------------------------------------------------
def run_module_playbook(lab: str, n: int, workdir: Path, in_process: bool = True) -> float:
    playbook = workdir / "wire.yml"
    playbook.write_text(MODULE_PLAYBOOK)
    variables = workdir / "vars.json"
    variables.write_text(json.dumps({"lab": lab, "namespaces": module_spec(lab, n), "podpath_in_process": in_process}))
    ansible = Path(sys.executable).parent / "ansible-playbook"
    start = time.perf_counter()
    done = subprocess.run([str(ansible), str(playbook), "-e", f"@{variables}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return elapsed


def run_module_usual(lab: str, n: int, workdir: Path) -> float:
    return run_module_playbook(lab, n, workdir, in_process=False)


def _direct_child(args_file: str, result_file: str, profile_file: str | None) -> None:
    """In a child process: run the module on ARGS_FILE as the in-process run does (argument
    check and run_module), and write its time and result."""
    from podpath.play import inprocess

    module = inprocess.load_library("podpath_netns")
    args = json.loads(Path(args_file).read_text())
    profiler = cProfile.Profile() if profile_file else None
    cpu = time.process_time()
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    start = time.perf_counter()
    if profiler:
        result = profiler.runcall(inprocess.run, module, "podpath_netns", args)
    else:
        result = inprocess.run(module, "podpath_netns", args)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    system = resource.getrusage(resource.RUSAGE_SELF).ru_stime - system
    if profiler:
        profiler.dump_stats(profile_file)
    Path(result_file).write_text(json.dumps({"seconds": elapsed, "cpu": cpu, "system": system, "output": result}))


def run_module_direct(lab: str, n: int, workdir: Path, profile_file: str | None = None) -> float:
    args = workdir / "args.json"
    args.write_text(json.dumps({"lab": lab, "namespaces": module_spec(lab, n)}))
    result = workdir / "direct.json"
    argv = [sys.executable, "-c", DIRECT_CHILD, str(ROOT), str(args), str(result)]
    if profile_file:
        argv.append(profile_file)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not result.exists():
        raise RuntimeError(f"the module did not run:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    data = json.loads(result.read_text())
    output = data["output"]
    if output.get("failed"):
        raise RuntimeError(f"the module failed: {output.get('msg')}")
    OWN_CPU["seconds"] = data["cpu"]  # the run's own, without the child Python's start and imports
    OWN_CPU["system"] = data["system"]
    return data["seconds"]


def remove_module_lab(lab: str, workdir: Path) -> None:
    """state: absent through the module (in-process), then the safety net."""
    args = workdir / "absent.json"
    args.write_text(json.dumps({"lab": lab, "state": "absent"}))
    subprocess.run([sys.executable, "-c", DIRECT_CHILD, str(ROOT), str(args), str(workdir / "absent-out.json")],
                   capture_output=True, text=True, timeout=1800)
    remove_lab(lab)


OWN_CPU: dict[str, float] = {}  # set by a way that measures its CPU time itself


def children_cpu() -> tuple[float, float]:
    """CPU seconds (user and system, and system alone) of the finished child processes this
    process waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def cni_config(ipam_dir: Path) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "podpath-bench", "type": "bridge", "bridge": BRIDGE,
        "isGateway": True, "ipMasq": False, "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                 "ranges": [[{"subnet": str(POD_NETWORK), "gateway": GATEWAY}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    })


def run_cni(lab: str, n: int, workdir: Path) -> float:
    """ip netns add + one bridge plugin ADD per pod, the plugin inside the node namespace."""
    node = f"{lab}-node"
    subprocess.run(["ip", "netns", "add", node], check=True)  # the node exists before its pods
    config = cni_config(workdir / "ipam")
    base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0",
                "CNI_PATH": str(CNI_BIN)}
    start = time.perf_counter()
    for i in range(1, n + 1):
        pod = f"{lab}-p{i}"
        subprocess.run(["ip", "netns", "add", pod], check=True)
        env = dict(base_env, CNI_CONTAINERID=f"{lab}{i:08d}", CNI_NETNS=str(NETNS_DIR / pod))
        done = subprocess.run(["ip", "netns", "exec", node, str(CNI_BIN / "bridge")], input=config, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the bridge plugin failed for {pod}: {done.stdout} {done.stderr}")
    return time.perf_counter() - start


def run_ip_loop(lab: str, n: int, workdir: Path) -> float:
    script = workdir / "wire.sh"
    script.write_text(IP_LOOP)
    start = time.perf_counter()
    done = subprocess.run(["bash", str(script), lab, str(n), GATEWAY, str(POD_NETWORK.prefixlen),
                           str(int(POD_NETWORK.network_address))],
                          capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the ip loop failed: {done.stderr[-2000:]}")
    return elapsed


METHODS = [
    ("module (ansible-playbook, one call, in-process)", run_module_playbook, remove_module_lab),
    ("module (ansible-playbook, one call, the usual way)", run_module_usual, remove_module_lab),
    ("module's own work (run_module alone)", run_module_direct, remove_module_lab),
    ("CNI bridge plugin (one ADD per pod)", run_cni, lambda lab, workdir: remove_lab(lab)),
    ("ip commands (shell loop)", run_ip_loop, lambda lab, workdir: remove_lab(lab)),
]
CNI = METHODS[3][0]


def check_tools() -> None:
    if os.geteuid() != 0:
        sys.exit("bench.wiring creates network namespaces: run it as root")
    missing = [p for p in (CNI_BIN / "bridge", CNI_BIN / "host-local") if not p.exists()]
    missing += [t for t in ("ip", "bash") if not shutil.which(t)]
    if not (Path(sys.executable).parent / "ansible-playbook").exists():
        missing.append("ansible-playbook beside this Python (make venv)")
    if missing:
        sys.exit(f"bench.wiring needs {', '.join(map(str, missing))}: make deps installs "
                 "containernetworking-plugins and iproute2")


def run(sizes=(10, 100, 500), repeats: int = 3) -> list[dict]:
    """Wire each size REPEATS times each way; one row per (size, way) with times in seconds."""
    check_tools()
    rows = []
    for n in sizes:
        times: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
        loads: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
        systems: dict[str, list[float]] = {name: [] for name, _, _ in METHODS}
        for _ in range(repeats):
            for name, wire, remove in METHODS:
                lab = new_lab()
                with tempfile.TemporaryDirectory(prefix=f"podpath-bench-{lab}-") as tmp:
                    workdir = Path(tmp)
                    before = namespaces_in_kernel()
                    loads[name].append(load_average())
                    try:
                        with host_untouched(f"{name} with {n} pods"):
                            OWN_CPU.clear()
                            cpu, system = children_cpu()
                            times[name].append(wire(lab, n, workdir))
                            cpu_after, system_after = children_cpu()
                            cpus[name].append(OWN_CPU.get("seconds", cpu_after - cpu))
                            systems[name].append(OWN_CPU.get("system", system_after - system))
                            verify(lab, n)
                    finally:
                        remove(lab, workdir)
                        settle(before)
        cni_median = statistics.median(times[CNI])
        for name, _, _ in METHODS:
            median = statistics.median(times[name])
            rows.append({"pods": n, "method": name, "repeats": repeats, "seconds": times[name],
                         "median_s": median, "min_s": min(times[name]), "max_s": max(times[name]),
                         "pods_per_s": n / median, "vs_cni": cni_median / median,
                         "vs_cni_paired": statistics.median(c / t for c, t in zip(times[CNI], times[name])),
                         "load": loads[name], "cpu_s": statistics.median(cpus[name]),
                         "system_s": statistics.median(systems[name]),
                         "cpu_vs_cni": statistics.median(cpus[CNI]) / max(statistics.median(cpus[name]), 1e-9)})
    return rows


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    versions = {}
    for pkg in ("containernetworking-plugins", "iproute2"):
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        versions[pkg] = done.stdout.strip() or "?"
    from importlib.metadata import version
    return {"cpus": str(os.cpu_count()), "cpu": model, "kernel": platform.release(), "os": os_name,
            "python": platform.python_version(), "ansible-core": version("ansible-core"),
            "pyroute2": version("pyroute2"), **versions}


def table(rows: list[dict]) -> str:
    lines = ["| pods | way | median s | min s | max s | pods/s | × CNI plugin | × CNI, per repeat | CPU s | "
             "system CPU s | × CNI's CPU | load avg |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        load = r.get("load") or [float("nan")]
        lines.append(f"| {r['pods']} | {r['method']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} "
                     f"| {r['pods_per_s']:.0f} | {r['vs_cni']:.1f} | {r.get('vs_cni_paired', r['vs_cni']):.1f} "
                     f"| {r.get('cpu_s', float('nan')):.2f} | {r.get('system_s', float('nan')):.2f} "
                     f"| {r.get('cpu_vs_cni', float('nan')):.1f} "
                     f"| {min(load):.1f}–{max(load):.1f} |")
    return "\n".join(lines)


def verdict(rows: list[dict], target: float = GOAL) -> str:
    """One sentence on the goal: the module at GOAL times the CNI plugin's rate at the largest N."""
    if not rows:
        return ""
    n = max(r["pods"] for r in rows)
    at_n = {r["method"]: r for r in rows if r["pods"] == n}
    playbook, usual, direct = (at_n[METHODS[i][0]]["vs_cni"] for i in range(3))
    met = "meets" if playbook >= target else "misses"
    paired = at_n[METHODS[0][0]].get("vs_cni_paired", playbook)
    text = (f"At {n} pods the module in one ansible-playbook call wires {playbook:.1f} times the CNI plugin's "
            f"rate ({paired:.1f} times as the median of each repeat's ratio), which {met} the goal of "
            f"{target:g} times ({usual:.1f} times when Ansible runs it the usual way); the module's own work "
            f"alone is {direct:.1f} times.")
    bound = best_ratio(rows)
    if bound:
        small, start, kernel, ratio = bound
        text += (f" The kernel's own work for the module's {n} pods is {kernel:.2f} s of system CPU, and the "
                 f"ansible-playbook call with {small} pods takes {start:.2f} s: a call whose Python cost "
                 f"nothing beyond those would take about {start + kernel:.2f} s, {ratio:.1f} times the CNI "
                 f"plugin.")
    return text


def best_ratio(rows: list[dict]):
    """(small N, the one-call time at small N, the module's own system CPU at the largest N,
    the CNI plugin's median at the largest N over the sum of the two): what the module in one
    ansible-playbook call could reach at best, if its Python took no time beyond Ansible's start
    (the call at the smallest size) and the kernel's work of the wiring (its system CPU time).
    None without two sizes or without that CPU time."""
    sizes = sorted({r["pods"] for r in rows})
    if len(sizes) < 2:
        return None
    small, n = sizes[0], sizes[-1]
    at = {(r["pods"], r["method"]): r for r in rows}
    kernel = at[n, METHODS[2][0]].get("system_s")
    if kernel is None or math.isnan(kernel):  # not measured
        return None
    start = at[small, METHODS[0][0]]["median_s"]
    return small, start, kernel, at[n, CNI]["median_s"] / (start + kernel)


def section(rows: list[dict], box: dict[str, str]) -> str:
    repeats = rows[0]["repeats"] if rows else 0
    return f"""{HEADING}

Measured with `python -m bench.wiring` (`make bench`). Each way wires N pods on one node
namespace: a namespace per pod, a veth pair whose host end is a hairpin port of the node's
bridge `cni0`, the pod's address and its default route. Median, min and max of {repeats} runs;
pods/s and the ratio to the CNI plugin use the median; "per repeat" is the median of each
repeat's own ratio (the ways of a repeat run one after the other, so a load that changes
between repeats cancels out); the load average (1 minute) is read as each run starts.
*CPU s* is the CPU time (user and system) the way used, the median of the runs: of the
processes it started (`ansible-playbook` and its workers, the plugin and `ip` processes),
and for the module's own work that of its run alone; *system CPU s* is its system part, the
kernel's work done for the way's own calls (namespaces, links, addresses, routes, files,
processes). It depends far less on the load of other users than the wall time does; kernel
work done later in the kernel's own threads (freeing namespaces, link events) is in neither.
After each run the lab is removed and the next waits until the kernel has freed its
namespaces.

- *module (ansible-playbook, one call, in-process)*: one `podpath_netns` task for the node
  and all pods, the whole `ansible-playbook` run timed, Ansible's own start-up included;
  the module runs in `ansible-playbook`'s process, as in the lab ([module.md](module.md)).
- *module (ansible-playbook, one call, the usual way)*: the same with
  `podpath_in_process: false`: Ansible ships the module and runs it in a new Python.
- *module's own work*: the argument check and `run_module()` alone, in a Python that has
  imported the module.
- *CNI bridge plugin*: `ip netns add` and one `/usr/lib/cni/bridge` ADD per pod (host-local
  IPAM, hairpinMode), run inside the node namespace with `ip netns exec`, as containerd calls
  it once per pod (without the loopback plugin containerd also calls).
- *ip commands*: a bash loop with one `ip` call per step.

The host's own links are compared before and after every run; nothing is added there.

{table(rows)}

{verdict(rows)}

Machine: {box['cpus']} × {box['cpu']}, kernel {box['kernel']}, {box['os']}; Python {box['python']},
ansible-core {box['ansible-core']}, pyroute2 {box['pyroute2']}, containernetworking-plugins
{box['containernetworking-plugins']}, iproute2 {box['iproute2']}.
"""


def write_docs(text: str, path: Path = DOCS) -> None:
    """Put TEXT in place of the section under HEADING, keeping the rest of the file and the
    section's hand-written part: its '### ' subsections, which follow the benchmark's text."""
    if not path.exists():
        path.write_text("# Performance\n\n" + text)
        return
    old = path.read_text()
    start = old.find(HEADING + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(HEADING))
    rest = old[end + 1:] if end >= 0 else ""
    section = old[start:end + 1] if end >= 0 else old[start:]
    kept = section.find("\n### ")
    if kept >= 0:
        text = text.rstrip("\n") + "\n" + section[kept:].rstrip("\n") + "\n"
    path.write_text(old[:start] + text + ("\n" + rest if rest else ""))


def profile(n: int = 500, top: int = 30) -> str:
    """cProfile of the module's run_module() wiring N pods (in-process), by cumulative time."""
    check_tools()
    lab = new_lab()
    with tempfile.TemporaryDirectory(prefix=f"podpath-bench-{lab}-") as tmp:
        workdir = Path(tmp)
        stats_file = str(workdir / "module.prof")
        try:
            with host_untouched(f"the profiled module run with {n} pods"):
                seconds = run_module_direct(lab, n, workdir, profile_file=stats_file)
        finally:
            remove_module_lab(lab, workdir)
        out = io.StringIO()
        stats = pstats.Stats(stats_file, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        out.write("\n--- by own time ---\n")
        stats.sort_stats("tottime").print_stats(top)
    return f"module run_module() with {n} pods under cProfile: {seconds:.2f} s\n{out.getvalue()}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wiring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,500", help="pod counts, comma-separated (default 10,100,500)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way per size (default 3)")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOCS.relative_to(ROOT)}")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the module at the largest size")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rows = run(sizes, args.repeats)
    box = machine()
    print(table(rows))
    print(f"\n{verdict(rows)}\n{box['cpus']} × {box['cpu']}, kernel {box['kernel']}")
    if not args.no_write:
        write_docs(section(rows, box))
        print(f"written to {DOCS.relative_to(ROOT)}")
    if args.profile:
        print(profile(max(sizes)))


if __name__ == "__main__":
    main()
