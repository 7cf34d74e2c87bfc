"""Load: requests from a lab's client namespace to its MetalLB address at fixed, rising rates.

    python -m bench.load                      # 60 s per rate, keep-alive off and on; prints the table
    python -m bench.load --quick              # 5 s per rate, a few rates

One reference lab is built (named b + 'l' + 6 random characters) and taken down at the end. The
generator is this file run with `ip netns exec <lab>-client`: an open-loop generator (wrk2's
way) that starts request i at i/rate seconds, whatever happened to the ones before, and
measures each request's latency from the moment it was due, so a server that falls behind
shows in the latency instead of slowing the generator down. Every request is
`GET / HTTP/1.1` with the Ingress' Host to the MetalLB address, port 80; it counts as
answered when a whole `200` response came within TIMEOUT_S. *keep-alive off*: a new TCP
connection per request (`Connection: close`, the server closes first, so the client's
ephemeral ports are not held in TIME_WAIT); *keep-alive on*: requests share up to
MAX_CONNECTIONS connections, a new one opened when none is free.

Traffic never leaves the lab's namespaces (client -> the LAN bridge -> a node -> a controller
pod -> a backend pod), and each run is bounded: rate x seconds requests at most, and a hard
end TIMEOUT_S after the last one is due.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_S = 2.0  # a request not answered within this counts as failed
MAX_CONNECTIONS = 256  # keep-alive: the pool's limit
MAX_IN_FLIGHT = 4096  # keep-alive off: connections open at once, at most
RATES = (100, 200, 400, 800, 1600, 3200)
QUICK_RATES = (100, 400, 1600)
SECONDS = 60.0
QUICK_SECONDS = 5.0
ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Load: requests per second through the MetalLB address"


# -- the generator (runs in the client namespace) -------------------------------------------------
class _Conn(asyncio.Protocol):
    """One TCP connection that reads HTTP/1.1 responses with a Content-Length."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.eof = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        self._check()

    def eof_received(self):
        self.eof = True
        self._check()
        return False

    def connection_lost(self, exc):
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("closed before the whole response"))

    def _check(self):
        if not self.waiter or self.waiter.done():
            return
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buf[:head_end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop >= 0 else len(head)])
        end = head_end + 4 + length
        if len(self.buf) < end:
            return
        status = bytes(self.buf[9:12])
        del self.buf[:end]
        self.waiter.set_result(status)

    def request(self, payload: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(payload)
        return self.waiter


@dataclass
class Outcome:
    rate: float
    seconds: float
    keepalive: bool
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # answered requests, from when each was due
    answered_due: list[float] = field(default_factory=list)  # when each of those was due, s after start_wall
    start_wall: float = 0.0  # time.time() when request 0 was due
    failed_at: list[float] = field(default_factory=list)  # time.time() when each failed request was due
    lag_ms: list[float] = field(default_factory=list)  # how late the generator started requests (a sample)
    cpu_s: float = 0.0  # the generator's own CPU time
    wall_s: float = 0.0
    connections: int = 0  # TCP connections opened

    def as_json(self) -> dict:
        return self.__dict__


async def _generate(ip: str, host: str, rate: float, seconds: float, keepalive: bool) -> Outcome:
    loop = asyncio.get_running_loop()
    out = Outcome(rate, seconds, keepalive)
    payload = (f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: podpath-bench\r\n"
               f"Connection: {'keep-alive' if keepalive else 'close'}\r\n\r\n").encode()
    idle: list[_Conn] = []
    open_count = 0
    slots = asyncio.Semaphore(MAX_CONNECTIONS if keepalive else MAX_IN_FLIGHT)
    total = int(rate * seconds)
    tasks: set[asyncio.Task] = set()

    def fail(kind: str, due_wall: float) -> None:
        out.errors[kind] = out.errors.get(kind, 0) + 1
        out.failed_at.append(due_wall)

    async def one(due: float, due_wall: float) -> None:
        nonlocal open_count
        conn = None
        try:
            async with asyncio.timeout_at(due + TIMEOUT_S):
                if keepalive:
                    while idle and (conn := idle.pop()).closed:
                        conn = None
                    if conn is None:
                        await slots.acquire()
                        try:
                            _, conn = await loop.create_connection(_Conn, ip, 80)
                        except BaseException:
                            slots.release()
                            raise
                        open_count += 1
                        out.connections += 1
                else:
                    await slots.acquire()
                    try:
                        _, conn = await loop.create_connection(_Conn, ip, 80)
                    except BaseException:
                        slots.release()
                        raise
                    out.connections += 1
                status = await conn.request(payload)
            if status != b"200":
                fail(f"HTTP {status.decode(errors='replace')}", due_wall)
            else:
                out.ok += 1
                out.latencies_ms.append((loop.time() - due) * 1000)
                out.answered_due.append(round(due - start, 3))
            if keepalive and not conn.closed and not conn.eof:
                idle.append(conn)
                conn = None
        except TimeoutError:
            fail("timeout", due_wall)
        except ConnectionRefusedError:
            fail("refused", due_wall)
        except ConnectionResetError:
            fail("reset", due_wall)
        except OSError as err:
            fail(type(err).__name__ + (f" {err.errno}" if err.errno else ""), due_wall)
        finally:
            if conn is not None:
                if conn.transport:
                    conn.transport.close()
                if keepalive:
                    open_count -= 1
                slots.release()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = loop.time() + 0.05
    start_wall = out.start_wall = time.time() + 0.05
    i = 0
    while i < total:
        now = loop.time()
        while i < total and start + i / rate <= now:
            due = start + i / rate
            if i % 50 == 0:
                out.lag_ms.append((now - due) * 1000)
            task = loop.create_task(one(due, start_wall + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
            out.sent += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT_S + 5)
    for conn in idle:
        conn.transport.close()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out.cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    out.wall_s = loop.time() - start
    return out


def generate(ip: str, host: str, rate: float, seconds: float, keepalive: bool) -> Outcome:
    """Requests at RATE per second for SECONDS (bounded: rate x seconds of them) to http://IP/."""
    if not (0 < rate <= 20000 and 0 < seconds <= 3600):
        raise ValueError(f"rate {rate}/s for {seconds} s is outside what the generator does (1-20000/s, 1-3600 s)")
    return asyncio.run(_generate(ip, host, rate, seconds, keepalive))


def run_in_client(lab: str, rate: float, seconds: float, keepalive: bool, summary: bool = True) -> Outcome:
    """The generator in LAB's client namespace (`ip netns exec`), toward the lab's MetalLB address."""
    from podpath.evidence.probe import NetnsLab
    from podpath.model import topology

    facts = NetnsLab(lab, topology.load())
    argv = ["ip", "netns", "exec", facts.plan.client_netns, sys.executable, "-m", "bench.load", "--generate",
            "--ip", facts.plan.ingress_service.load_balancer_ip, "--host", facts.topology["ingress"]["host"],
            "--rate", str(rate), "--seconds", str(seconds)] + (["--keepalive"] if keepalive else [])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 60)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    out = Outcome(**{k: data[k] for k in Outcome.__dataclass_fields__})
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


# -- the benchmark ----------------------------------------------------------------------------------
@dataclass
class Step:
    outcome: Outcome
    load: str
    lab_cpu: float  # % of one core the lab's processes used during the step
    arp_fulls: int = 0  # the host's neighbour table was found full during the step (every namespace's)

    @property
    def failed(self) -> int:
        return self.outcome.sent - self.outcome.ok

    @property
    def achieved(self) -> float:
        return self.outcome.ok / self.outcome.seconds


def run(rates=RATES, seconds: float = SECONDS, progress=print) -> dict[bool, list[Step]]:
    """Each rate of RATES for SECONDS, keep-alive off then on, on one new lab. A mode stops
    rising after the first rate with a failed request, or where it answered less than 95 % of
    the rate (the lab or the generator is saturated)."""
    from .labs import Labs, arp_table_fulls, cpu_ticks, lab_pids, load_average, new_name

    steps: dict[bool, list[Step]] = {False: [], True: []}
    with Labs() as labs:
        lab = new_name("l")
        labs.create(lab)
        run_in_client(lab, 20, 1.0, False)  # warm the path (ARP, conntrack) once
        for keepalive in (False, True):
            for rate in rates:
                pids = lab_pids(lab)
                before, fulls = cpu_ticks(pids), arp_table_fulls()
                started = time.monotonic()
                out = run_in_client(lab, rate, seconds, keepalive)
                lab_cpu = 100.0 * (cpu_ticks(pids) - before) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - started)
                step = Step(out, load_average(), lab_cpu, arp_table_fulls() - fulls)
                steps[keepalive].append(step)
                progress(f"  load keep-alive {'on' if keepalive else 'off'} {rate}/s: {out.ok}/{out.sent} answered, "
                         f"p50 {percentile(out.latencies_ms, 50):.1f} ms, p99 {percentile(out.latencies_ms, 99):.1f} ms,"
                         f" errors {out.errors or 'none'}, generator CPU {100 * out.cpu_s / out.wall_s:.0f} %, "
                         f"lab CPU {lab_cpu:.0f} %, load {step.load}")
                if step.failed or step.achieved < 0.95 * rate:
                    break
    return steps


def best(steps: list[Step]) -> Step | None:
    """The highest rate with no failed request, below which no request failed either."""
    good = None
    for step in steps:
        if step.failed:
            break
        good = step
    return good


def table(steps: dict[bool, list[Step]]) -> str:
    lines = ["| keep-alive | rate /s | sent | failed | errors | p50 ms | p90 ms | p99 ms | max ms "
             "| generator late p99 ms | generator CPU % | lab CPU % | host's ARP table full | load average |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for keepalive, rows in steps.items():
        for s in rows:
            o = s.outcome
            lat = o.latencies_ms
            errors = ", ".join(f"{k} {v}" for k, v in sorted(o.errors.items())) or "-"
            lines.append(f"| {'on' if keepalive else 'off'} | {o.rate:g} | {o.sent} | {s.failed} | {errors} "
                         f"| {percentile(lat, 50):.1f} | {percentile(lat, 90):.1f} | {percentile(lat, 99):.1f} "
                         f"| {max(lat, default=float('nan')):.0f} | {percentile(o.lag_ms, 99):.1f} "
                         f"| {100 * o.cpu_s / o.wall_s:.0f} | {s.lab_cpu:.0f} | {s.arp_fulls} | {s.load} |")
    return "\n".join(lines)


def summary(steps: dict[bool, list[Step]]) -> str:
    out = []
    for keepalive, rows in steps.items():
        top = best(rows)
        mode = f"keep-alive {'on' if keepalive else 'off'}"
        if top is None:
            out.append(f"- {mode}: a request failed already at {rows[0].outcome.rate:g}/s")
            continue
        o = top.outcome
        limit = next((r for r in rows if r.failed or r.achieved < 0.95 * r.outcome.rate), None)
        why = ("every rate tried passed" if limit is None else
               f"at {limit.outcome.rate:g}/s {limit.failed} of {limit.outcome.sent} failed" if limit.failed else
               f"at {limit.outcome.rate:g}/s only {limit.achieved:.0f}/s were answered")
        out.append(f"- {mode}: **{o.rate:g}/s** with none failed, p50 {percentile(o.latencies_ms, 50):.1f} ms, "
                   f"p99 {percentile(o.latencies_ms, 99):.1f} ms ({why})")
    return "\n".join(out)


def breakdown(steps: dict[bool, list[Step]]) -> str:
    """Where the CPU went at the top rate of each mode: the generator's share and the lab's."""
    out = []
    for keepalive, rows in steps.items():
        if not rows:
            continue
        top = rows[-1]
        o = top.outcome
        gen = 100 * o.cpu_s / o.wall_s
        out.append(f"- keep-alive {'on' if keepalive else 'off'} at {o.rate:g}/s: the generator used {gen:.0f} % of "
                   f"one core ({1e6 * o.cpu_s / max(o.sent, 1):.0f} µs a request), the lab's processes "
                   f"{top.lab_cpu:.0f} % ({1e4 * top.lab_cpu * o.wall_s / max(o.sent, 1):.0f} µs a request), "
                   f"{o.connections} connections opened; the rest of the 200 % of the 2 cores is the kernel's "
                   "softirq work (veth, bridge, DNAT) and the other sessions' load")
    return "\n".join(out)


def section(steps: dict[bool, list[Step]], seconds: float) -> str:
    return f"""{HEADING}

`python -m bench.load` (part `load` of `make bench`): one reference lab, requests from its client
namespace to the MetalLB address `192.168.56.200` with the Ingress' Host, each rate for
{seconds:g} s, open loop (request i starts at i/rate s; latency from when it was due, so a
server that falls behind shows here). A request fails when no whole `200` came within
{TIMEOUT_S:g} s. *keep-alive off*: a new connection per request; *on*: up to
{MAX_CONNECTIONS} shared connections. A mode stops rising after the first rate with a failure
or with less than 95 % answered. *generator late*: how late the generator itself started
requests (its own limit); CPU in % of one core, the lab's processes summed (nginx, the node
processes, the speakers, the shims). *host's ARP table full*: how often during the step the
kernel found its neighbour table full; that table and its limit are shared by every namespace
of the host, so other labs on the host can take this lab's entries.

{table(steps)}

The highest rate with no failed request (no request failed below it either):

{summary(steps)}

Where the time goes at the top rate:

{breakdown(steps)}
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--generate", action="store_true", help="be the generator (in the client namespace); prints JSON")
    p.add_argument("--ip")
    p.add_argument("--host")
    p.add_argument("--rate", type=float, default=100)
    p.add_argument("--seconds", type=float, default=SECONDS)
    p.add_argument("--keepalive", action="store_true")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s per rate, rates {QUICK_RATES}")
    args = p.parse_args(argv)
    if args.generate:
        if not args.ip or not args.host:
            p.error("--generate needs --ip and --host")
        out = generate(args.ip, args.host, args.rate, args.seconds, args.keepalive)
        json.dump(out.as_json(), sys.stdout)
        return 0
    if os.geteuid() != 0:
        sys.exit("python -m bench.load builds a lab: run it as root")
    seconds = QUICK_SECONDS if args.quick else SECONDS
    from .labs import load_average

    print(f"load average {load_average()}")
    steps = run(QUICK_RATES if args.quick else RATES, seconds)
    print(section(steps, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())


GOAL_RATE = 100.0  # the soak's rate: a lab must carry it without a failure, both ways


def goals(steps: dict[bool, list[Step]]) -> list[tuple[str, str, str]]:
    tops = {ka: best(rows) for ka, rows in steps.items()}
    measured = "; ".join(
        f"keep-alive {'on' if ka else 'off'}: " + (f"{t.outcome.rate:g}/s, p99 {percentile(t.outcome.latencies_ms, 99):.0f} ms"
                                                  if t else "a failure at the first rate")
        for ka, t in tops.items())
    met = all(t is not None and t.outcome.rate >= GOAL_RATE for t in tops.values())
    return [(f"load: ≥ {GOAL_RATE:g} requests/s with none failed, keep-alive off and on (highest rate with none "
             "failed)", measured, "met" if met else "**not met**")]
