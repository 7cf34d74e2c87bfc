"""Soak: one reference lab under a steady load for a long time, an ingress controller killed and
restarted every few minutes; what fails and what grows.

    python -m bench.soak                  # 30 minutes at 100 requests/s, a controller killed every 5 minutes
    python -m bench.soak --quick          # 3 minutes, one killed every minute

One lab is built (b + 's' + 6 random characters) and taken down at the end. The generator of
bench.load runs in the lab's client namespace for the whole run (open loop, keep-alive off: a
new connection per request, so conntrack and the neighbour tables see the traffic), bounded by
rate x duration requests. Every KILL_EVERY the leader's ingress controller is killed as
tests/integration/test_reliability.py kills it (SIGKILL to its container, again if its shim starts
it at once, until it stays down, 3 kills at most) and RESTART_AFTER_S later `podpath up`
restarts it. docs/reliability.md gives a controller's failover window: no request fails more
than 2 s after it stops. A failed request counts as in that window when it was due between
WINDOW_BEFORE_S before the first kill and WINDOW_S after it.

Every SAMPLE the lab's processes (not the generator) are read: PSS, RSS and open files of
each, and in each of the lab's namespaces the conntrack entries and the neighbour entries.
Conntrack is read twice: the kernel's counter (nf_conntrack_count), which still counts the
entries that expired until its garbage collector frees them, in batches; then the entries
that live (the lines of /proc/net/nf_conntrack: reading it skips, and frees, the expired
ones). Whether conntrack grows is judged on the live entries.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import load as loadgen

HEADING = "## Soak: one lab under steady load, a controller killed every 5 minutes"
RATE = 100.0
DURATION_S = 30 * 60.0
KILL_EVERY_S = 5 * 60.0
SAMPLE_S = 60.0
QUICK = {"duration": 3 * 60.0, "kill_every": 60.0, "sample": 15.0}
RESTART_AFTER_S = 5.0
WINDOW_BEFORE_S = 0.5
WINDOW_S = 2.0  # docs/reliability.md: "none after 2 s"


# -- what a lab's processes and namespaces hold ----------------------------------------------------
def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _role(pid: int) -> str | None:
    for item in _read(f"/proc/{pid}/environ").split(b"\0"):
        if item.startswith(b"PODPATH_ROLE="):
            return item[13:].decode(errors="replace")
    return None


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in ticks) of PID."""
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[19])


def kind(pid: int, comm: str, roles: dict[int, str | None]) -> str:
    """What a lab process is, by its role (or its nearest ancestor's) and its program:
    'ingress: python', 'workloads: nginx worker', 'holder: podpath-pause', ..."""
    role, at, hops = roles.get(pid), pid, 0
    while role is None and hops < 8:
        st = _stat(at)
        if not st or st[0] <= 1:
            break
        at, hops = st[0], hops + 1
        role = roles.get(at) if at in roles else _role(at)
    group = (role or "?").split(":")[0]
    if group == "container":
        group = role.split(":")[1]
    if comm == "nginx":
        comm = "nginx worker" if b"worker process" in _read(f"/proc/{pid}/cmdline") else "nginx master"
    return f"{group}: {comm}"


def _kib(pid: int, key: bytes) -> int:
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def processes(pids: list[int]) -> dict[tuple[int, int], dict]:
    """{(pid, start): {'kind', 'pss', 'rss' (KiB), 'fds'}} of PIDS."""
    roles = {pid: _role(pid) for pid in pids}
    out = {}
    for pid in pids:
        st = _stat(pid)
        comm = _read(f"/proc/{pid}/comm").decode(errors="replace").strip()
        if not st or not comm:
            continue
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        out[(pid, st[1])] = {"kind": kind(pid, comm, roles), "pss": _kib(pid, b"Pss:"), "rss": _kib(pid, b"Rss:"),
                             "fds": fds}
    return out


def namespace_counts(namespaces: list[str]) -> dict[str, tuple[int, int, int]]:
    """{namespace: (conntrack entries that live, neighbour entries, the kernel's conntrack
    counter)} for each of NAMESPACES. The counter is read first: reading the entries frees
    the expired ones it still counts."""
    script = ("cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo 0; "
              "(cat /proc/net/nf_conntrack 2>/dev/null || true) | wc -l; "
              "ip -o neigh show | wc -l")
    out = {}
    for ns in namespaces:
        done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], capture_output=True, text=True,
                              timeout=30)
        words = done.stdout.split()
        if len(words) == 3:
            out[ns] = (int(words[1]), int(words[2]), int(words[0]))
    return out


def host_neighbours() -> int:
    """Entries of the host's ARP table: one table for every namespace (its limit too)."""
    try:
        lines = Path("/proc/net/stat/arp_cache").read_text().split("\n")
        return int(lines[1].split()[0], 16)
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class Sample:
    t: float  # seconds since the load started
    procs: dict[tuple[int, int], dict]
    counts: dict[str, tuple[int, int, int]]  # namespace: (conntrack entries that live, neighbours, counter)
    load: str
    host_neigh: int = 0  # the host's ARP entries, every namespace's
    arp_fulls: int = 0  # the kernel found that table full, since the start

    def total(self, key: str) -> int:
        return sum(p[key] for p in self.procs.values())

    @property
    def conntrack(self) -> int:
        """The conntrack entries that live, in every namespace of the lab."""
        return sum(c[0] for c in self.counts.values())

    @property
    def conntrack_counter(self) -> int:
        """The kernel's conntrack counters: the entries that live and the expired ones not yet freed."""
        return sum(c[2] for c in self.counts.values())

    @property
    def neighbours(self) -> int:
        return sum(c[1] for c in self.counts.values())


@dataclass
class Kill:
    t: float  # time.time() of the first SIGKILL
    pod: str
    kills: int
    lease_after: str = ""
    up_s: float = 0.0
    up_changed: int | None = None
    up_error: str = ""


@dataclass
class Soak:
    rate: float
    duration: float
    kill_every: float
    outcome: loadgen.Outcome | None = None
    samples: list[Sample] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    lab: str = ""
    error: str = ""

    def in_window(self, due: float) -> bool:
        return any(k.t - WINDOW_BEFORE_S <= due <= k.t + WINDOW_S for k in self.kills)


# -- the run -------------------------------------------------------------------------------------------
def kill_leader(lab: str) -> Kill:
    """SIGKILL the leader's controller (the container's first process) until it stays down for a
    second, 3 kills at most, as test_reliability does."""
    from podpath.evidence.probe import NetnsLab
    from podpath.model import topology

    facts = NetnsLab(lab, topology.load())
    leader = (facts.lease() or {}).get("holderIdentity")
    pod = facts.plan.pod(leader) if leader else facts.plan.ingress_pods[0]
    killed: set[int] = set()
    first = 0.0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and len(killed) < 3:
        pid = facts.container_pid(pod.name, "controller")
        if pid and pid not in killed and b"podpath-ingress" in _read(f"/proc/{pid}/cmdline"):
            os.kill(pid, signal.SIGKILL)
            first = first or time.time()
            killed.add(pid)
            deadline = time.monotonic() + 1.0
        time.sleep(0.05)
    return Kill(first or time.time(), pod.name, len(killed))


def run(rate: float = RATE, duration: float = DURATION_S, kill_every: float = KILL_EVERY_S,
        sample_every: float = SAMPLE_S, progress=print) -> Soak:
    from podpath.evidence.probe import NetnsLab
    from podpath.evidence.status import owned_namespaces
    from podpath.model import topology

    from .labs import BenchError, Labs, arp_table_fulls, lab_pids, load_average, new_name, podpath

    soak = Soak(rate, duration, kill_every)
    with Labs() as labs, tempfile.TemporaryDirectory(prefix="podpath-soak-") as tmp:
        lab = soak.lab = new_name("s")
        labs.create(lab)
        facts = NetnsLab(lab, topology.load())
        namespaces = owned_namespaces(lab)
        loadgen.run_in_client(lab, 20, 1.0, False)  # warm the path once
        result_file = Path(tmp, "outcome.json")
        argv = ["ip", "netns", "exec", facts.plan.client_netns, sys.executable, "-m", "bench.load", "--generate",
                "--ip", facts.plan.ingress_service.load_balancer_ip, "--host", facts.topology["ingress"]["host"],
                "--rate", str(rate), "--seconds", str(duration)]
        with result_file.open("w") as sink:
            gen = subprocess.Popen(argv, cwd=loadgen.ROOT, stdout=sink, stderr=subprocess.PIPE, text=True)
        started = time.time()
        fulls0 = arp_table_fulls()
        try:
            next_kill = kill_every
            next_sample = 10.0  # the first after a short warm-up
            while gen.poll() is None:
                now = time.time() - started
                if now >= next_sample:
                    pids = [p for p in lab_pids(lab) if p != gen.pid]
                    sample = Sample(now, processes(pids), namespace_counts(namespaces), load_average(),
                                    host_neighbours(), arp_table_fulls() - fulls0)
                    soak.samples.append(sample)
                    progress(f"  soak {now / 60:.1f} min: {len(sample.procs)} processes, PSS "
                             f"{sample.total('pss') / 1024:.1f} MiB, {sample.total('fds')} open files, conntrack "
                             f"{sample.conntrack}, neighbours {sample.neighbours}, load {sample.load}")
                    next_sample += sample_every
                if now >= next_kill and now < duration - RESTART_AFTER_S - 5:
                    kill = kill_leader(lab)
                    soak.kills.append(kill)
                    time.sleep(RESTART_AFTER_S)
                    try:
                        up = podpath("up", "--lab", lab)
                        kill.up_s, kill.up_changed = up.seconds, up.changed
                    except BenchError as err:
                        kill.up_error = str(err).splitlines()[0]
                    kill.lease_after = (facts.lease() or {}).get("holderIdentity", "")
                    progress(f"  soak {(kill.t - started) / 60:.1f} min: killed {kill.pod}'s controller "
                             f"({kill.kills} kill(s)), lease now {kill.lease_after}; up {kill.up_s:.1f} s, "
                             f"{kill.up_changed} changed {kill.up_error}")
                    next_kill += kill_every
                time.sleep(0.5)
            err = gen.stderr.read()
            if gen.returncode != 0:
                raise BenchError(f"the load generator failed ({gen.returncode}): {err[-2000:]}")
            data = json.loads(result_file.read_text())
            soak.outcome = loadgen.Outcome(**{k: data[k] for k in loadgen.Outcome.__dataclass_fields__})
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    return soak


# -- the tables --------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> str:
    return f"{loadgen.percentile(values, q):.1f}" if values else "-"


def requests_table(soak: Soak, minutes_per_row: float) -> str:
    """Per interval: requests due, answered, failed (in a kill's window / outside), p50 and p99."""
    o = soak.outcome
    width = minutes_per_row * 60
    rows = int(soak.duration // width) + (soak.duration % width > 0)
    lat: list[list[float]] = [[] for _ in range(rows)]
    for due, ms in zip(o.answered_due, o.latencies_ms):
        lat[min(rows - 1, int(due // width))].append(ms)
    failed_in = [0] * rows
    failed_out = [0] * rows
    for due in o.failed_at:
        i = min(rows - 1, max(0, int((due - o.start_wall) // width)))
        if soak.in_window(due):
            failed_in[i] += 1
        else:
            failed_out[i] += 1
    kills = [0] * rows
    for k in soak.kills:
        kills[min(rows - 1, int((k.t - o.start_wall) // width))] += 1
    lines = ["| minutes | controller killed | answered | failed in a kill's window | failed outside it | p50 ms "
             "| p99 ms | max ms |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i in range(rows):
        lines.append(f"| {i * minutes_per_row:g}–{min((i + 1) * minutes_per_row, soak.duration / 60):g} "
                     f"| {kills[i] or ''} | {len(lat[i])} | {failed_in[i]} | {failed_out[i]} | {_pct(lat[i], 50)} "
                     f"| {_pct(lat[i], 99)} | {max(lat[i], default=0):.0f} |")
    return "\n".join(lines)


def kills_table(soak: Soak) -> str:
    o = soak.outcome
    lines = ["| at min | pod | SIGKILLs | failed requests in its window | lease after | `podpath up` s | changed |",
             "|---:|---|---:|---:|---|---:|---:|"]
    for k in soak.kills:
        failed = sum(1 for due in o.failed_at if k.t - WINDOW_BEFORE_S <= due <= k.t + WINDOW_S)
        lines.append(f"| {(k.t - o.start_wall) / 60:.1f} | {k.pod} | {k.kills} | {failed} | {k.lease_after} "
                     f"| {k.up_s:.1f} | {k.up_changed if k.up_error == '' else k.up_error} |")
    return "\n".join(lines)


def growth_table(soak: Soak) -> str:
    """Per kind of process: count, PSS, open files at the first and last sample, and the largest
    growth of one process that lived through the whole run."""
    first, last = soak.samples[0], soak.samples[-1]
    kinds = sorted({p["kind"] for s in (first, last) for p in s.procs.values()})
    lines = ["| process | count first → last | PSS MiB first → last | largest PSS growth of one process KiB "
             "| open files first → last | largest growth of one process's open files |",
             "|---|---|---|---:|---|---:|"]
    for k in kinds:
        a = {key: p for key, p in first.procs.items() if p["kind"] == k}
        b = {key: p for key, p in last.procs.items() if p["kind"] == k}
        both = set(a) & set(b)
        dpss = max((b[x]["pss"] - a[x]["pss"] for x in both), default=0)
        dfds = max((b[x]["fds"] - a[x]["fds"] for x in both), default=0)
        lines.append(f"| {k} | {len(a)} → {len(b)} | {sum(p['pss'] for p in a.values()) / 1024:.1f} → "
                     f"{sum(p['pss'] for p in b.values()) / 1024:.1f} | {dpss:+d} | "
                     f"{sum(p['fds'] for p in a.values())} → {sum(p['fds'] for p in b.values())} | {dfds:+d} |")
    lines.append(f"| **all** | {len(first.procs)} → {len(last.procs)} | {first.total('pss') / 1024:.1f} → "
                 f"{last.total('pss') / 1024:.1f} | | {first.total('fds')} → {last.total('fds')} | |")
    return "\n".join(lines)


def series_table(soak: Soak) -> str:
    """The lab's totals at each sample (up to 12 rows, evenly picked)."""
    picks = soak.samples
    if len(picks) > 12:
        step = (len(picks) - 1) / 11
        picks = [soak.samples[round(i * step)] for i in range(12)]
    lines = ["| minute | processes | PSS MiB | RSS MiB | open files | conntrack entries that live "
             "| conntrack counter (expired ones not yet freed too) | neighbour entries "
             "| host's ARP entries (all namespaces) | host's ARP table full since the start | load average |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in picks:
        lines.append(f"| {s.t / 60:.1f} | {len(s.procs)} | {s.total('pss') / 1024:.1f} | {s.total('rss') / 1024:.1f} "
                     f"| {s.total('fds')} | {s.conntrack} | {s.conntrack_counter} | {s.neighbours} | {s.host_neigh} "
                     f"| {s.arp_fulls} "
                     f"| {s.load} |")
    return "\n".join(lines)


def slope(soak: Soak, value) -> float:
    """Least-squares growth of VALUE(sample) per 10 minutes over the second half of the run
    (after the first kills have settled what a restart makes)."""
    half = [s for s in soak.samples if s.t >= soak.samples[-1].t / 2]
    if len(half) < 3:
        half = soak.samples
    xs = [s.t / 600 for s in half]
    ys = [value(s) for s in half]
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0
    return statistics.linear_regression(xs, ys).slope


def verdicts(soak: Soak) -> list[str]:
    o = soak.outcome
    outside = [d for d in o.failed_at if not soak.in_window(d)]
    pss = slope(soak, lambda s: s.total("pss") / 1024)
    fds = slope(soak, lambda s: s.total("fds"))
    ct = slope(soak, lambda s: s.conntrack)
    ne = slope(soak, lambda s: s.neighbours)
    return [
        f"- requests: {o.sent} due, {o.ok} answered, {len(o.failed_at)} failed, **{len(outside)} outside a kill's "
        f"{WINDOW_S:g} s window** (goal: none); errors {o.errors or 'none'}",
        f"- latency over the whole run: p50 {_pct(o.latencies_ms, 50)} ms, p99 {_pct(o.latencies_ms, 99)} ms, "
        f"max {max(o.latencies_ms, default=0):.0f} ms; the generator used "
        f"{100 * o.cpu_s / max(o.wall_s, 1):.1f} % of one core",
        f"- growth per 10 minutes over the second half (least squares; goal: flat): PSS {pss:+.2f} MiB, "
        f"open files {fds:+.1f}, conntrack entries that live {ct:+.0f} (the kernel's counter "
        f"{slope(soak, lambda s: s.conntrack_counter):+.0f}), neighbour entries {ne:+.1f}",
    ]


def section(soak: Soak) -> str:
    minutes = soak.duration / 60
    rows_every = 5 if minutes >= 15 else 1
    return f"""{HEADING}

`python -m bench.soak` (part `soak` of `make bench`; `--quick` for {QUICK['duration'] / 60:g} minutes): one
reference lab, {soak.rate:g} requests/s for {minutes:g} minutes from its client namespace to the MetalLB
address (bench.load's open-loop generator, keep-alive off: a connection per request). Every
{soak.kill_every / 60:g} minutes the leader's ingress controller is killed (SIGKILL, again if its shim
restarts it at once, until it stays down) and {RESTART_AFTER_S:g} s later `podpath up` restarts it.
A failed request is *in a kill's window* when it was due from {WINDOW_BEFORE_S:g} s before the
kill to {WINDOW_S:g} s after it, the failover window of [reliability.md](reliability.md).
The lab's processes (every process in its namespaces, not the generator) and its namespaces
are read every {soak.samples[1].t - soak.samples[0].t if len(soak.samples) > 1 else 0:.0f} s.
Lab {soak.lab}.

{chr(10).join(verdicts(soak))}

Requests per {rows_every} minute(s):

{requests_table(soak, rows_every)}

Each kill:

{kills_table(soak)}

The lab's totals over the run:

{series_table(soak)}

Each kind of process, first sample → last (a killed controller's process is replaced, so its
count stays and its growth is the new one's):

{growth_table(soak)}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 minutes, a kill every minute")
    p.add_argument("--minutes", type=float, help="how long (default 30)")
    p.add_argument("--output", help="also write the section to this file")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench.soak builds a lab: run it as root")
    from .labs import load_average

    if args.quick:
        duration, kill_every, sample = QUICK["duration"], QUICK["kill_every"], QUICK["sample"]
    else:
        duration, kill_every, sample = DURATION_S, KILL_EVERY_S, SAMPLE_S
    if args.minutes:
        duration = args.minutes * 60
    print(f"load average {load_average()}", flush=True)
    soak = run(RATE, duration, kill_every, sample)
    text = section(soak) + f"\nLoad average at the end: {load_average()}.\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# How much growth per 10 minutes (second half of the run) still counts as flat.
FLAT = {"PSS MiB": 1.0, "open files": 2.0, "conntrack entries": None, "neighbour entries": 2.0}
FLAT_CONNTRACK_SHARE = 0.05  # conntrack: 5 % of its mean, it follows the request rate


def goals(soak: Soak) -> list[tuple[str, str, str]]:
    """The Goals rows: no failure outside a kill's window; flat growth."""
    o = soak.outcome
    minutes = f"{soak.duration / 60:g} min at {soak.rate:g}/s, a controller killed every {soak.kill_every / 60:g} min"
    outside = sum(1 for d in o.failed_at if not soak.in_window(d))
    rows = [(f"soak: no request fails outside a controller's {WINDOW_S:g} s failover window ({minutes})",
             f"{outside} of {o.sent} outside ({len(o.failed_at)} failed in all, {len(soak.kills)} kills)",
             "met" if outside == 0 else "**not met**")]
    half = [s for s in soak.samples if s.t >= soak.samples[-1].t / 2] or soak.samples
    mean_ct = statistics.mean(s.conntrack for s in half) if half else 0
    growth = {"PSS MiB": slope(soak, lambda s: s.total("pss") / 1024),
              "open files": slope(soak, lambda s: s.total("fds")),
              "conntrack entries": slope(soak, lambda s: s.conntrack),
              "neighbour entries": slope(soak, lambda s: s.neighbours)}
    limits = dict(FLAT, **{"conntrack entries": FLAT_CONNTRACK_SHARE * mean_ct})
    flat = all(abs(growth[k]) <= limits[k] for k in growth)
    rows.append(("soak: the lab's memory, open files, conntrack entries that live and neighbour entries flat "
                 "(growth per 10 min, second half)", ", ".join(f"{k} {v:+.1f}" for k, v in growth.items()),
                 "met" if flat else "**not met**"))
    return rows
