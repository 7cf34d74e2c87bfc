"""The reference lab at rest: what its processes cost while nobody uses it, what its LAN
carries, and how fast a killed backend leaves its Service.

Each run makes a new reference lab, lets it settle, then:

- *idle CPU*: the CPU time of every process of the lab (utime + stime from /proc/PID/stat)
  and of the children each one reaped meanwhile (cutime + cstime: the short-lived
  iptables-restore or nft a node process runs), over IDLE_S seconds, in % of one core,
  also per kind of process, with the load average when it started;
- *memory*: the PSS of every process of the lab, per kind of process;
- *LAN*: a capture with tcpdump on the LAN bridge, inside the lab's LAN namespace, for
  CAPTURE_S seconds: packets to or from a pod (inside flannel's VXLAN, UDP 8472, or bare
  with host-gw), the speakers' own messages (their UDP port), and the rest;
- *leave time*: SIGKILL to the process of one echo backend's container, then the time until
  no node's nat rules hold the backend's address any more (killed again if its shim started
  it again at once and it came back first: its restart back-off then keeps it out).

    python -m bench.idle [--repeats N]     # prints the table; python -m bench writes it
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from podpath.model import labdir, topology, workloads
from podpath.evidence.probe import NetnsLab

from .labs import Labs, lab_pids, new_name
from .stats import Spread

IDLE_S = 20.0  # seconds of CPU accounting per run
CAPTURE_S = 5.0  # seconds of LAN capture per run
SETTLE_S = 3.0  # seconds after `up` before measuring: the first probes and speaker rounds
LEAVE_TIMEOUT_S = 60.0
GOAL_CPU = 0.5  # % of one core, one idle reference lab
GOAL_PSS_MIB = 40.0  # PSS of all the processes of one idle reference lab
VXLAN_PORT = 8472

# kind of process -> what its command line holds
KINDS = (("node processes (kubelet + kube-proxy)", "podpath.runtime.proxier"),
         ("MetalLB speakers", "podpath-speaker"),
         ("ingress controllers' processes (leader election)", "podpath-ingress"),
         ("container shims", "podpath-shim"),
         ("nginx (controllers, backends)", "nginx"),
         ("pause", "podpath-pause"))
OTHER = "other (container runtime wrappers, sleep)"


INTRO = f"""Each run is a new reference lab, left alone {SETTLE_S:g} s after `podpath up`, then measured
as nobody uses it ([netns-lab.md](netns-lab.md#readiness-probes-where-the-kubelet-runs-them)). *Idle CPU*:
utime + stime of every process of the lab, with cutime + cstime of the children they reaped
(short-lived commands), over {IDLE_S:g} s, from /proc/PID/stat, with the 1-minute load average
when it started; those are 10 ms ticks, sampled, so
each kind's share is taken from its exact run time (/proc/PID/schedstat, plus its children's
ticks). *LAN*: tcpdump on `lan0` in the lab's LAN namespace, {CAPTURE_S:g} s; a pod's packets
cross it inside flannel's VXLAN (UDP 8472) or bare (host-gw). *Killed backend*: SIGKILL to
echo-1's container process, then the time until no node's nat rules hold its address (its
shim starts it again at once after a first exit, as the kubelet does; if it is back before
the rules were seen without it, it is killed again, and its back-off keeps it out). *Memory*:
the PSS of each process of the lab (/proc/PID/smaps_rollup: its shared pages split among
the processes that map them, so a library every Python process maps counts once in all),
per kind of process, when the idle measure ends."""


@dataclass
class IdleRun:
    cpu_percent: float
    by_kind: dict[str, float]
    processes: int
    lan: dict[str, float]  # packets per second: 'pods', 'speakers', 'other'
    leave_s: float | None
    leave_what: str
    memory: dict[str, tuple[int, float]] = field(default_factory=dict)  # kind -> (processes, MiB PSS)
    load: float = 0.0  # 1-minute load average when the idle measure started


@dataclass
class Idle:
    runs: list[IdleRun] = field(default_factory=list)


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(start time, utime + stime, cutime + cstime, both in clock ticks, and the nanoseconds it ran,
    from /proc/PID/schedstat, which is exact where the ticks are sampled) of PID, or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ran = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        return int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]), ran
    except (OSError, IndexError, ValueError):
        return None


def _kind(pid: int) -> str:
    """What the process is, from its program (argv[0]) and, for Python, its module."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return OTHER
    # nginx writes its title over its argv ("nginx: master process nginx -e /run/..."): the
    # program is what comes before the colon
    program = os.path.basename(argv[0].decode(errors="replace").split(":")[0])
    if program in ("nsenter", "unshare", "sleep", ""):
        return OTHER
    # for Python, its module or script, wherever it stands among the interpreter's options
    words = program if not program.startswith("python") else " ".join(a.decode(errors="replace") for a in argv[1:5])
    return next((kind for kind, word in KINDS if word in words), OTHER)


def _pss(pid: int) -> int | None:
    """The proportional set size of PID in KiB (its shared pages split among their users), or None."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


def memory(lab: str) -> dict[str, tuple[int, float]]:
    """{kind: (processes, MiB of PSS)} of LAB's processes, and "all" for the whole lab."""
    out: dict[str, tuple[int, float]] = {}
    for pid in lab_pids(lab):
        kib = _pss(pid)
        if kib is None:
            continue
        for kind in (_kind(pid), "all"):
            count, mib = out.get(kind, (0, 0.0))
            out[kind] = (count + 1, mib + kib / 1024)
    return out


def idle_cpu(lab: str, seconds: float = IDLE_S) -> tuple[float, dict[str, float], int]:
    """(% of one core, {kind: % of one core}, processes) of LAB's processes over SECONDS.

    The total is what /proc/PID/stat counts: utime + stime of every process of the lab, and
    cutime + cstime of the children each one reaped meanwhile (short-lived commands). A
    process that started meanwhile counts whole; one that ended counts through its parent's
    cutime/cstime when a process of the lab reaped it. Those counts are clock ticks (10 ms
    here), sampled: a process that runs less than a tick may show none, or a whole one. The
    share of each kind is therefore taken from the exact run time (/proc/PID/schedstat) plus
    its reaped children's ticks."""
    before = {pid: (_stat(pid), _kind(pid)) for pid in lab_pids(lab)}
    time.sleep(seconds)
    after_pids = lab_pids(lab)
    hz = os.sysconf("SC_CLK_TCK")
    total_ticks = 0
    by_kind: dict[str, float] = {}
    for pid in after_pids:
        now = _stat(pid)
        if now is None:
            continue
        then, kind = before.get(pid, (None, _kind(pid)))
        if not then or then[0] != now[0]:
            then = (now[0], 0, 0, 0)
        total_ticks += (now[1] - then[1]) + (now[2] - then[2])
        used_s = (now[3] - then[3]) / 1e9 + (now[2] - then[2]) / hz
        by_kind[kind] = by_kind.get(kind, 0.0) + 100.0 * used_s / seconds
    return 100.0 * total_ticks / hz / seconds, by_kind, len(after_pids)


def lan_packets(lab: NetnsLab, seconds: float = CAPTURE_S) -> dict[str, float]:
    """Packets per second on the lab's LAN bridge, by what they are."""
    speaker_port = workloads.SPEAKER_PORT
    pods = ipaddress.ip_network(lab.plan.pod_network)
    argv = ["ip", "netns", "exec", lab.plan.lan_netns, "timeout", str(seconds), "tcpdump", "-nn", "-l", "-q",
            "-i", "lan0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 10)
    counts = {"pods": 0, "speakers": 0, "other": 0}
    for line in done.stdout.splitlines():
        words = line.split()
        if len(words) < 5 or words[1] != "IP":
            counts["other"] += bool(words)
            continue
        src, dst = words[2], words[4].rstrip(":")
        ports = {a.rsplit(".", 1)[1] for a in (src, dst) if a.count(".") == 4}
        hosts = {a.rsplit(".", 1)[0] if a.count(".") == 4 else a for a in (src, dst)}
        if str(VXLAN_PORT) in ports or any(_in(h, pods) for h in hosts):
            counts["pods"] += 1
        elif str(speaker_port) in ports:
            counts["speakers"] += 1
        else:
            counts["other"] += 1
    return {k: v / seconds for k, v in counts.items()}


def _in(address: str, network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _nat_rules(lab: NetnsLab, netns: str, mode: str) -> str:
    argv = ["nft", "list", "ruleset"] if mode == "nftables" else ["iptables-save", "-t", "nat"]
    return lab.exec_in(netns, argv).stdout


def _mode(lab: str, node: str) -> str:
    try:
        return json.loads(Path(labdir.lab_dir(lab), "kube-proxy", f"{node}.conf").read_text()).get("mode", "iptables")
    except (OSError, ValueError):
        return "iptables"


def leave_time(lab: NetnsLab) -> tuple[float | None, str]:
    """Seconds from SIGKILL of an echo backend's container process to no node's rules holding
    its address (None: still held after LEAVE_TIMEOUT_S), and what was killed.

    The container's shim starts it again at once after a first exit (as the kubelet does):
    when it is back in every node's rules before the rules were seen without it, it is
    killed again, and its restart back-off then keeps it out."""
    svc = lab.plan.echo_service
    pod = svc.pods[0]
    address = f"{pod.ip}:{svc.ports[0].target_port}"
    what = f"{pod.name}/echo ({address})"
    modes = {n.netns: _mode(lab.name, n.name) for n in lab.plan.nodes}

    def held() -> list[str]:
        return [ns for ns, mode in modes.items() if address in _nat_rules(lab, ns, mode)]
    status_path = workloads.container_status_path(lab.name, "workloads", f"{pod.name}/echo")
    for _ in range(5):
        deadline = time.monotonic() + LEAVE_TIMEOUT_S
        while len(held()) != len(modes) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = lab.container_pid(pod.name, "echo")
        if len(held()) != len(modes) or not pid:
            return None, f"{what}: not running, or not in every node's rules, before the kill"
        start = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while time.monotonic() - start < LEAVE_TIMEOUT_S:
            if not held():
                return time.monotonic() - start, what
            status = _read(status_path)
            if status.get("state") == "running" and status.get("pid") not in (None, pid) and \
                    time.monotonic() - start > 1.0:
                break  # started again and back before the rules were seen without it: again
    return None, what


def _read(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run(repeats: int = 3, progress=print, prefix: str = "") -> Idle:
    """REPEATS runs, each on a new lab (named b + i + 6 random characters, or PREFIX + random)."""
    result = Idle()
    topo = topology.load()
    with Labs() as labs:
        for i in range(repeats):
            name = (prefix + new_name("i")[2:])[:8] if prefix else new_name("i")
            labs.create(name)
            lab = NetnsLab(name, topo)
            time.sleep(SETTLE_S)
            load = os.getloadavg()[0]
            cpu, by_kind, processes = idle_cpu(name)
            mem = memory(name)
            lan = lan_packets(lab)
            leave, what = leave_time(lab)
            labs.down(name)
            result.runs.append(IdleRun(cpu, by_kind, processes, lan, leave, what, mem, load))
            progress(f"  idle run {i + 1}/{repeats} (load {load:.2f}): {cpu:.2f} % of one core, "
                     f"{mem.get('all', (0, 0.0))[1]:.1f} MiB PSS, LAN {lan['pods']:.1f} pod packets/s, "
                     f"{lan['speakers']:.1f} speaker packets/s; {what} left every node's rules in "
                     f"{'-' if leave is None else f'{leave:.2f} s'}")
    return result


def table(result: Idle) -> str:
    runs = result.runs
    cpu = Spread.of([r.cpu_percent for r in runs])
    lines = ["| measure | median | min | max |", "|---|---:|---:|---:|",
             f"| idle CPU of the whole lab, % of one core ({IDLE_S:g} s) | {cpu.cells()} |"]
    kinds = [k for k, _ in KINDS] + [OTHER]
    for kind in kinds:
        values = [r.by_kind.get(kind, 0.0) for r in runs]
        if any(values):
            lines.append(f"| … of which {kind} (exact run time) | {Spread.of(values).cells('.3f')} |")
    for key, label in (("pods", "to or from a pod"), ("speakers", "the speakers' messages"),
                       ("other", "anything else (ARP, ...)")):
        lines.append(f"| LAN packets/s {label} ({CAPTURE_S:g} s capture on lan0) | "
                     f"{Spread.of([r.lan[key] for r in runs]).cells('.1f')} |")
    lines.append(f"| 1-minute load average when the idle measure started | "
                 f"{Spread.of([r.load for r in runs]).cells()} |")
    leaves = [r.leave_s for r in runs if r.leave_s is not None]
    lost = len(runs) - len(leaves)
    lines.append(f"| killed backend ({runs[0].leave_what if runs else '-'}) out of every node's rules, s"
                 f"{f' ({lost} run(s) never)' if lost else ''} | {Spread.of(leaves).cells()} |")
    return "\n".join(lines) + "\n\n" + memory_table(result)


def memory_table(result: Idle) -> str:
    """PSS of each kind of process of the lab (median of the runs), and how many there are."""
    lines = ["| kind of process | processes | PSS MiB of all of them, median | min | max | PSS MiB each (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in [k for k, _ in KINDS] + [OTHER, "all"]:
        runs = [r.memory[kind] for r in result.runs if kind in r.memory]
        if not runs:
            continue
        count = runs[len(runs) // 2][0]
        total = Spread.of([mib for _, mib in runs])
        label = "the whole lab" if kind == "all" else kind
        lines.append(f"| {label} | {count} | {total.cells('.1f')} | {total.median / max(count, 1):.2f} |")
    return "\n".join(lines)


def goal(result: Idle) -> tuple[str, str, str]:
    median = Spread.of([r.cpu_percent for r in result.runs]).median
    return (f"one idle reference lab ≤ {GOAL_CPU:g} % of one core", f"{median:.2f} %",
            "met" if median <= GOAL_CPU else "**not met**")


def goal_memory(result: Idle) -> tuple[str, str, str]:
    whole = Spread.of([r.memory["all"][1] for r in result.runs if "all" in r.memory]).median
    return (f"one idle reference lab ≤ {GOAL_PSS_MIB:g} MiB PSS", f"{whole:.1f} MiB",
            "met" if whole <= GOAL_PSS_MIB else "**not met**")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prefix", default="", help="lab names start with this instead of 'bi' (up to 4 characters)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench.idle builds labs: run it as root")
    result = run(args.repeats, prefix=args.prefix[:4])
    print("\n" + table(result) + "\n")
    print("goal: " + " | ".join(goal(result)))
    print("goal: " + " | ".join(goal_memory(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
