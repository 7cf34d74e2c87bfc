"""What a netns lab runs right now: read from the kernel, compared with the lab's folder.

The kernel is the truth. Every namespace of a lab carries the lab's mark (the alias of its
lo) and every process the lab started carries it in its environment (module_utils/
podpath_lab.py, "marks"); the folder /run/podpath/<lab>/ is a cache of them. `podpath
status` reports what the marks show runs and names each place where the folder says
otherwise; `podpath labs` finds the labs from the marks and says which have lost their
folder; `podpath down` asks `leftovers` whether anything of the lab is left.

The verifier's lookups (containers, holders, speakers, lease) read the folder, which is
fast, and believe a record only when the process it names carries the lab's mark and
started when the record says.

Each container runs under its shim (podpath/runtime/shim.c), which restarts it after the
kubelet's back-off and writes its status file (module_utils/podpath_lab.py,
container_status_path). Status reads the restart count, the last exit and the back-off from
that file, and believes it only as far as the kernel agrees: a "running" status whose pid is
not a process below that shim, or a "waiting" one while the shim runs a container, is not
believed, and a container without a believable status is reported as the kernel shows it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from podpath.model import labdir
from podpath.model.election import announcer
from podpath.model.plan import Plan, build
from podpath.model.workloads import GROUPS, endpoints_dir, lease_path, speaker_status_path
from podpath.runtime.lease import read as read_lease

mark = labdir.lab  # the marks and the kernel view (module_utils/podpath_lab.py)
# A speaker rewrites its status file when what it says changes and renews the file's
# modification time with every heartbeat (each second, podpath/runtime/speaker.c): a file not
# touched for this long is not a running speaker's, whatever it says (a speaker that
# stopped, or froze: SIGSTOP).
SPEAKER_FRESH_S = 5.0
# The names podpath.model.workloads.render gives the node daemons' containers, per group.
NODE_DAEMONS = {"metallb": "metallb-speaker-{node}/speaker", "kube-proxy": "kube-proxy-{node}/kube-proxy"}


def _read_json(path: str | Path) -> tuple[Any, str]:
    """(data, problem): problem is '' for a whole JSON file, 'missing', or what is wrong."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    if not raw:
        return None, "is empty (0 bytes)"
    try:
        return json.loads(raw), ""
    except ValueError:
        return None, f"is not valid JSON ({len(raw)} bytes: half-written?)"


def _json(path: str | Path) -> Any:
    return _read_json(path)[0]


def _records(lab: str, group: str) -> tuple[dict, str]:
    """The container records of GROUP in LAB's folder ({} when the file is missing or broken) and its problem."""
    data, problem = _read_json(Path(labdir.lab_dir(lab), f"containers-{group}.json"))
    if problem:
        return {}, problem if problem != "missing" else ""
    if not isinstance(data, dict):
        return {}, "does not hold container records"
    good = {n: r for n, r in data.items() if isinstance(r, dict) and isinstance(r.get("pid"), int)}
    return good, ("has records without a pid" if len(good) != len(data) else "")


def _record_runs(lab: str, group: str, name: str, record: dict) -> bool:
    """The record names a process that runs and is that container: LAB's mark for it and the
    recorded start time (or, started before the marks, no mark, the start time and a
    namespace with LAB's mark)."""
    pid, start = record.get("pid"), record.get("start")
    if not pid or start is None:
        return False
    return mark.lab_process(pid, lab, mark.container_role(group, name), start) or (
        mark.unmarked_process(pid, start) and mark.process_netns_lab(pid) == lab)


def containers(lab: str) -> dict[str, dict[str, Any]]:
    """Container name -> {pid, netns, running, group, init} for every group of the lab, from its
    records: PID is the recorded process (the container's shim), RUNNING whether the container
    itself runs now (not only its shim: one waiting out its back-off does not), INIT its first
    process, read once with RUNNING (a second look may fall into a restart)."""
    result = {}
    for group in GROUPS:
        for name, record in _records(lab, group)[0].items():
            pid = record.get("pid")
            init = container_init(pid) if _record_runs(lab, group, name, record) else None
            runs = init is not None or (bool(pid) and _record_runs(lab, group, name, record) and not mark.is_shim(pid))
            result[name] = {"pid": pid, "netns": record.get("netns"), "running": runs, "group": group,
                            "init": init if runs else None}
    return result


def container_init(pid: int) -> int | None:
    """The container's first process, for the process its record names. Below a shim: the
    process the shim's status file names, if it runs below that shim, else the one the kernel
    shows (None while the container waits out its back-off). Below the runtime wrapper of a
    lab started before the shims (unshare --fork): the wrapper's child."""
    if not mark.is_shim(pid):
        kids = mark.children(pid)
        return kids[0] if kids else None
    proc = mark.read_process(pid)
    kind, _, rest = ((proc.role if proc else None) or "").partition(":")
    if proc and proc.owner and kind == "container" and ":" in rest:
        group, name = rest.split(":", 1)
        status = mark.read_container_status(mark.container_status_path(proc.owner, group, name))[0]
        believed = mark.status_pid(status, name, pid)
        if believed:
            return believed
    return mark.shim_container(pid)


def _init_pid(pid: int | None) -> int | None:
    if not pid:
        return None
    return container_init(pid) if mark.is_shim(pid) else (container_init(pid) or pid)


def container_state(lab: str, group: str, name: str, pid: int | None, now: float | None = None) -> dict[str, Any]:
    """What container NAME of GROUP is doing, its unit (shim) being PID (None: none runs):
    state ("running", "waiting" or "down"), restarts, the container's first process, the last
    exit and the back-off, from the shim's status file as far as the kernel agrees with it.
    "believed" says whether the file was; "said" what was wrong with it, else ''."""
    info: dict[str, Any] = {"state": "down", "restarts": None, "pid": None, "last": None, "backoff": None,
                            "backoff_left": None, "believed": False, "said": ""}
    if not pid:
        return info
    if not mark.is_shim(pid):  # a lab started before the shims: its wrapper is the container
        return dict(info, state="running", pid=_init_pid(pid))
    path = mark.container_status_path(lab, group, name)
    status, problem = mark.read_container_status(path)
    believed = mark.status_pid(status, name, pid)
    kernel = mark.shim_container(pid)
    short = os.path.relpath(path, labdir.lab_dir(lab))
    if believed:
        return dict(info, state="running", restarts=status["restarts"], pid=believed, last=status["last"],
                    believed=True)
    problem = "is missing" if problem == "missing" else problem
    if kernel:  # the container runs; its file is missing, broken or not of this run
        said = (f"{short} {problem}; the container runs as pid {kernel}" if problem else
                f"{short} says {status['name']} is {status['state']}" + (
                    f" as pid {status['pid']}" if status["pid"] else "") + f"; the container runs as pid {kernel}")
        return dict(info, state="running", pid=kernel, said=said)
    info["state"] = "waiting"
    if status and status["name"] == name and status["state"] == "waiting":
        now = time.time() if now is None else now
        last, until = status["last"], status["backoffUntil"]
        backoff = round(until - last["finished"], 1) if last and until else None
        return dict(info, restarts=status["restarts"], last=last, backoff=backoff,
                    backoff_left=max(0.0, round(until - now, 1)) if until else None, believed=True)
    info["said"] = (f"{short} {problem}; its shim runs no container" if problem else
                    f"{short} says {status['name']} is {status['state']}; its shim runs no container")
    return info


def exit_words(last: dict | None) -> str:
    """A last exit in words: 'signal 9', 'exit code 1', or 'unknown'."""
    if not last:
        return "unknown"
    if last.get("signal"):
        return f"signal {last['signal']}"
    return f"exit code {last['exitCode']}" if last.get("exitCode") is not None else "unknown"


def _waiting_words(info: dict[str, Any]) -> str:
    """'back-off 20 s, 13 s left, last exit: signal 9'"""
    parts = []
    if info["backoff"] is not None:
        parts.append(f"back-off {info['backoff']:g} s")
    if info["backoff_left"] is not None:
        parts.append(f"{info['backoff_left']:g} s left")
    return ", ".join(parts + [f"last exit: {exit_words(info['last'])}"])


def describe_state(info: dict[str, Any]) -> str:
    """A container's state as status prints it: 'up', 'up restarts=2', 'DOWN', or
    'waiting (back-off 20 s, 13 s left, last exit: signal 9) restarts=2'."""
    restarts = "?" if info["restarts"] is None else str(info["restarts"])
    if info["state"] == "running":
        return "up" if info["restarts"] == 0 else f"up restarts={restarts}"
    if info["state"] == "waiting":
        return f"waiting ({_waiting_words(info)}) restarts={restarts}"
    return "DOWN"


def holders(lab: str, netns_names: list[str]) -> dict[str, int | None]:
    """Namespace -> the pid of its holder, from its pidfile, believed only if that process is
    LAB's holder of the namespace (or, started before the marks, an unmarked process in it)."""
    out = {}
    for ns in netns_names:
        pid, start = mark.read_pidfile(mark.holder_pidfile(lab, ns))
        ok = bool(pid) and (mark.lab_process(pid, lab, mark.holder_role(ns), start) or (
            mark.unmarked_process(pid, start) and mark.net_inode(pid) == _inode(ns)))
        out[ns] = pid if ok else None
    return out


def _inode(ns: str) -> int | None:
    try:
        return os.stat(mark.netns_path(ns)).st_ino
    except OSError:
        return None


def _touched(path: str | Path) -> float:
    """The modification time of PATH (0 when it cannot be read)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _live_speaker(lab: str, status: Any, now: float, touched: float) -> bool:
    """STATUS (a speaker's status file, last modified at TOUCHED) is a running speaker's: its
    pid is a MetalLB container of LAB (or, started before the marks, an unmarked process) and
    the speaker wrote it or renewed its modification time lately (it does with every
    heartbeat)."""
    if not isinstance(status, dict) or not isinstance(status.get("pid"), int):
        return False
    fresh = now - touched < SPEAKER_FRESH_S
    proc = mark.read_process(status["pid"])
    return fresh and proc is not None and (
        proc.owner == lab and (proc.role or "").startswith(mark.container_role("metallb", "")) or proc.owner is None)


def speakers(lab: str, nodes: list[str]) -> dict[str, dict | None]:
    """Node -> its speaker's status, only when a speaker of LAB runs there and wrote it lately
    (a file left by a speaker that has gone says nothing about now); else None."""
    now = time.time()
    out = {}
    for node in nodes:
        path = speaker_status_path(lab, node)
        status = _json(path)
        out[node] = status if _live_speaker(lab, status, now, _touched(path)) else None
    return out


def _plan(plan: Plan | str, topology: dict | None) -> Plan:
    """PLAN itself; or, from callers that still pass a lab name and a topology, their plan."""
    return plan if isinstance(plan, Plan) else build(topology, plan)


def lease(plan: Plan | str, topology: dict | None = None) -> dict | None:
    """The ingress controllers' leader lease in PLAN's lab, or None."""
    return read_lease(lease_path(_plan(plan, topology)))


def owned_namespaces(lab: str) -> list[str]:
    """The namespaces the lab's registry lists (a cache: `lab_status` reads the marks)."""
    data = _json(Path(labdir.lab_dir(lab), "netns.json"))
    names = data.get("namespaces", []) if isinstance(data, dict) else []
    return [n for n in names if isinstance(n, str)]


def expected_containers(plan: Plan) -> dict[str, str]:
    """Container name -> group, for every container PLAN's lab runs (as workloads.render names them)."""
    names = {}
    for pod in plan.pods:
        group = "ingress" if pod.app == plan.edge_app else "workloads"  # the edge's pods: controllers or gateway
        for c in pod.containers:
            names[f"{pod.name}/{c.name}"] = group
    for group, pattern in NODE_DAEMONS.items():
        for node in plan.nodes:
            names[pattern.format(node=node.name)] = group
    return names


def _units(view, lab: str) -> tuple[dict[str, list], dict[str, list], list]:
    """LAB's processes by what their marks say they are: holders by namespace, containers by
    name (with their group), and those with a role podpath does not know."""
    held: dict[str, list] = {}
    running: dict[str, list] = {}
    other = []
    for proc in view.units(lab):
        kind, _, rest = (proc.role or "").partition(":")
        if kind == "holder":
            held.setdefault(rest, []).append(proc)
        elif kind == "container" and ":" in rest:
            group, name = rest.split(":", 1)
            running.setdefault(name, []).append((group, proc))
        else:
            other.append(proc)
    return held, running, other


def _has_folder(lab: str) -> bool:
    """LAB has its folder, with its registry (a daemon may make the folder again, never the registry)."""
    return os.path.exists(os.path.join(labdir.lab_dir(lab), "netns.json"))


def _folder_mismatches(plan: Plan, view, bound: dict, held: dict, running: dict) -> list[str]:
    """Every place where LAB's folder says something other than what the marks show."""
    lab = plan.lab
    folder = labdir.lab_dir(lab)
    if not _has_folder(lab):
        return [f"the folder {folder} is missing (or has lost its registry netns.json): podpath up --lab {lab} "
                f"adopts what runs and writes it again, podpath down --lab {lab} removes what runs"]
    out = []
    registry = mark.Registry(lab, "netns.json")
    if registry.corrupt:
        out.append(f"{registry.path} {registry.corrupt}")
    else:
        listed = set(registry.items("namespaces"))
        unmarked = sorted(listed - set(bound))
        unlisted = sorted(set(bound) - listed)
        if unmarked:
            out.append(f"netns.json lists namespaces that do not carry lab {lab}'s mark (gone, or not the lab's): "
                       f"{', '.join(unmarked)}")
        if unlisted:
            out.append(f"netns.json does not list namespaces that carry lab {lab}'s mark: {', '.join(unlisted)}")
    for pod in plan.pods:
        path = mark.holder_pidfile(lab, pod.netns)
        pid, start = mark.read_pidfile(path)
        real = [p.pid for p in held.get(pod.netns, [])]
        if not os.path.exists(path):
            if real:
                out.append(f"holders/{pod.netns}.pid is missing; the holder runs as pid {real[0]}")
        elif not pid:
            out.append(f"holders/{pod.netns}.pid does not hold a pid (half-written?)")
        elif pid not in real:
            what = (f"the holder runs as pid {real[0]}" if real else "no holder of the pod runs")
            out.append(f"holders/{pod.netns}.pid names pid {pid}, which is not the pod's holder (gone, or another "
                       f"program's now); {what}")
    recorded: dict[str, int] = {}
    for group in GROUPS:
        records, problem = _records(lab, group)
        if problem:
            out.append(f"containers-{group}.json {problem}")
        for name, record in sorted(records.items()):
            recorded[name] = record["pid"]
            real = [p for g, p in running.get(name, []) if g == group]
            if not real or record["pid"] != real[0].pid or record.get("start") != real[0].start:
                now_runs = f"; it runs as pid {real[0].pid}" if real else "; it does not run"
                out.append(f"containers-{group}.json records {name} as pid {record['pid']}, which is not that container "
                           f"(gone, or another program's now){now_runs}")
    for name, procs in sorted(running.items()):
        if name not in recorded:
            out.append(f"{name} runs as pid {procs[0][1].pid} and the folder has no record of it")
    now = time.time()
    for node in plan.nodes:
        path = speaker_status_path(lab, node.name)
        status, problem = _read_json(path)
        if problem and problem != "missing":
            out.append(f"metallb/{node.name}.json {problem}")
        elif status is not None and not _live_speaker(lab, status, now, _touched(path)):
            said = ", ".join((status.get("announcing") if isinstance(status, dict) else None) or []) or "nothing"
            out.append(f"metallb/{node.name}.json is left from a speaker that no longer runs (it says {node.name} "
                       f"announces {said}): not believed")
    raw = Path(lease_path(plan))
    if raw.exists() and raw.stat().st_size == 0:
        out.append(f"{raw.relative_to(folder)} is empty (0 bytes): the controllers write it again within a retry")
    elif raw.exists() and lease(plan) is None:
        out.append(f"{raw.relative_to(folder)} is not a lease (not valid JSON)")
    return out


def election(address: str, live: dict[str, dict], speaking: list[str]) -> dict[str, Any]:
    """Where MetalLB's election stands for ADDRESS, from LIVE (node -> the status a running
    speaker wrote lately) and SPEAKING (the nodes whose speaker process runs).

    It has converged when every running speaker has spoken and exactly one node announces,
    the one the election gives among the nodes that can (a running speaker, its link up): the
    verifier's scenario 13 asks the same of the speakers (and of ARP). Else "settling" says
    why, in words."""
    candidates = sorted(n for n, s in live.items() if s.get("link_ok"))
    elected = announcer(candidates, address)
    announcers = sorted(n for n, s in live.items() if address in (s.get("announcing") or []))
    settling = []
    silent = sorted(set(speaking) - set(live))
    if silent:
        settling.append(f"the speakers on {', '.join(silent)} run but have not written their status lately (just "
                        "started?): who announces cannot be told yet")
    elif live and not candidates:
        settling.append(f"no node can announce {address}: every running speaker reports its link down")
    elif live and announcers != [elected]:
        settling.append(f"MetalLB's election has not converged: {', '.join(announcers) or 'nobody'} "
                        f"{'announce' if len(announcers) > 1 else 'announces'} {address}; among the nodes that can "
                        f"({', '.join(candidates) or 'none'}) it gives {elected or 'nobody'}")
    return {"address": address, "candidates": candidates, "elected": elected, "announcers": announcers,
            "settling": settling}


def lab_status(plan: Plan | str, topology: dict | None = None, view=None) -> dict[str, Any]:
    """What runs in PLAN's lab, what is missing from it and where its folder says otherwise.

    state is "healthy", "settling" (everything runs, but MetalLB's election has not converged
    to one announcer, or the ingress controllers have no fresh leader yet: what the verifier's
    scenarios 13 and 15 would fail on now) or "NOT healthy"."""
    plan = _plan(plan, topology)
    lab = plan.lab
    view = view if view is not None else mark.KernelView()
    bound, unbound = view.namespaces(lab)
    held, running, other = _units(view, lab)
    problems: list[str] = []

    missing, unmarked = [], []
    registry = mark.Registry(lab, "netns.json")
    for ns in plan.netns_names:
        if ns in bound:
            continue
        if ns in view.bound:
            owner, alias = view.owner(view.bound[ns])
            if alias == "" and registry.legacy and registry.owns("namespaces", ns):
                unmarked.append(ns)
                continue
            problems.append(f"namespace {ns} exists but is not lab {lab}'s: it belongs to "
                            f"{mark.describe_owner(owner, alias)}")
        else:
            missing.append(ns)
    if missing:
        problems.append(f"namespaces missing: {', '.join(missing)}")
    if unmarked:
        problems.append(f"lab {lab} was built before the ownership marks: {len(unmarked)} of its namespaces carry "
                        f"none, nor do its processes (podpath up --lab {lab} marks them and restarts the processes)")
    extra = sorted(set(bound) - set(plan.netns_names))
    if extra:
        problems.append(f"namespaces of lab {lab} that its plan does not have (another topology?): {', '.join(extra)}")
    for inode, pids in sorted(unbound.items()):
        problems.append(f"a namespace of lab {lab} that is no longer bound under {mark.NETNS_DIR} is held by "
                        f"{_describe_pids(pids)}")

    def in_bound(proc, ns: str) -> bool:
        return ns in bound and proc.net == bound[ns]

    expected = expected_containers(plan)
    now = time.time()

    def state_of(name: str, netns: str) -> dict[str, Any]:
        unit = next((p for _g, p in running.get(name, []) if in_bound(p, netns)), None)
        return container_state(lab, expected.get(name, ""), name, unit.pid if unit else None, now)

    def not_running(name: str, info: dict[str, Any]) -> str:
        if info["state"] == "waiting":
            restarts = "?" if info["restarts"] is None else info["restarts"]
            return f"{name}: waiting to restart (CrashLoopBackOff: {_waiting_words(info)}, restarts {restarts})"
        return f"{name}: not running"

    pods = []
    for pod in plan.pods:
        pause = next((p.pid for p in held.get(pod.netns, []) if in_bound(p, pod.netns)), None)
        states = {c.name: state_of(f"{pod.name}/{c.name}", pod.netns) for c in pod.containers}
        pods.append({"name": pod.name, "node": pod.node, "ip": pod.ip, "netns": pod.netns, "pause_pid": pause,
                     "containers": {c: i["state"] == "running" for c, i in states.items()},
                     "container_pids": {c: i["pid"] for c, i in states.items()},
                     "restarts": {c: i["restarts"] for c, i in states.items()}, "container_states": states})
    problems += [f"{p['name']}: pause process not running" for p in pods if not p["pause_pid"]]
    problems += [not_running(f"{p['name']}/{c}", p["container_states"][c]) for p in pods
                 for c, ok in p["containers"].items() if not ok]
    daemons = {}
    for node in plan.nodes:
        for group, pattern in NODE_DAEMONS.items():
            name = pattern.format(node=node.name)
            daemons[name] = state_of(name, node.netns)
            if daemons[name]["state"] != "running":
                problems.append(not_running(name, daemons[name]))
    for name, procs in sorted(running.items()):
        if name not in expected:
            problems.append(f"{name} runs (pid {procs[0][1].pid}) but the plan has no such container")
        elif len(procs) > 1:
            problems.append(f"{name} runs {len(procs)} times (pids {', '.join(str(p.pid) for _g, p in procs)})")
    for ns, procs in sorted(held.items()):
        if len(procs) > 1:
            problems.append(f"{ns} has {len(procs)} holders (pids {', '.join(str(p.pid) for p in procs)})")
    problems += [f"process {p.pid} carries lab {lab}'s mark with a role podpath does not know ({p.role!r})"
                 for p in other]
    if not _has_folder(lab) and (bound or held or running):
        problems.append(f"the lab's folder {labdir.lab_dir(lab)} is missing while the lab runs (its daemons cannot "
                        f"write their state, its logs are gone): podpath up --lab {lab} adopts what runs and repairs "
                        "the rest")

    # MetalLB: what the live speakers say, and whether that is the one announcer the election gives
    address = plan.ingress_service.load_balancer_ip
    live = {n: s for n, s in speakers(lab, [n.name for n in plan.nodes]).items() if s}
    speaking = [n.name for n in plan.nodes if any(in_bound(p, n.netns) for _g, p in running.get(
        NODE_DAEMONS["metallb"].format(node=n.name), []))]
    vote = election(address, live, speaking)
    settling = list(vote["settling"])
    # the ingress controllers' leader: a lease renewed within its duration, held by a running controller
    ls = lease(plan) or {}
    holder = ls.get("holderIdentity") or None
    try:
        fresh = time.time() - float(ls.get("renewTime")) < float(ls.get("leaseDurationSeconds"))
    except (TypeError, ValueError):
        fresh = False
    electing = {p["name"] for p in pods if p["containers"].get("controller")}  # the election runs in the controller
    leader = holder if fresh and holder in electing else None
    if plan.ingress_pods and not leader:
        settling.append(f"the ingress controllers have no leader with a fresh lease yet (lease: "
                        f"{holder or 'no holder'}{'' if fresh or not holder else ', expired'})")
    state = "NOT healthy" if problems else "settling" if settling else "healthy"
    mismatches = _folder_mismatches(plan, view, bound, held, running)
    if _has_folder(lab):
        every = {f"{p['name']}/{c}": i for p in pods for c, i in p["container_states"].items()} | daemons
        mismatches += [f"{i['said']}: not believed" for _n, i in sorted(every.items()) if i["said"]]
    return {"lab": lab, "state": state, "healthy": state == "healthy", "problems": problems, "settling": settling,
            "mismatches": mismatches, "daemons": daemons, "folder": labdir.lab_dir(lab),
            "folder_exists": _has_folder(lab), "namespaces": len(bound) + len(unbound),
            "pods": pods, "announcing": {n: (s or {}).get("announcing", []) for n, s in live.items()},
            "election": {k: vote[k] for k in ("address", "candidates", "elected", "announcers")},
            "leader": leader, "load_balancer_ip": address,
            "gateway": (f"{plan.gateway.namespace}/{plan.gateway.name} (GatewayClass {plan.gateway.gateway_class}), "
                        f"data plane {plan.edge_service.name}, no leader election") if plan.gateway else None}


def unready_pods(lab: str, nodes: list[str]) -> list[str]:
    """What the nodes of LAB publish as not ready yet (endpoints/<node>.json, the kubelet's part
    of each node process): pods whose `ready` condition is false, and nodes that have published
    nothing. A kube-proxy re-renders its rules when this changes; [] when everything is ready."""
    waiting = []
    for node in nodes:
        doc, _problem = _read_json(Path(endpoints_dir(lab), f"{node}.json"))
        if not isinstance(doc, dict) or not isinstance(doc.get("pods"), dict):
            waiting.append(f"node {node} has not published its pods' readiness")
            continue
        waiting += [f"{name} on {node}" for name, entry in sorted(doc["pods"].items())
                    if not (isinstance(entry, dict) and (entry.get("conditions") or {}).get("ready") is True)]
    return waiting


def _describe_pids(pids: list[int], limit: int = 5) -> str:
    """'pids 12 (nginx), 13 (bash)', with a count for the rest."""
    shown = []
    for pid in sorted(pids)[:limit]:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = "gone"
        shown.append(f"{pid} ({comm})")
    more = f" and {len(pids) - limit} more" if len(pids) > limit else ""
    return f"pid{'s' if len(pids) > 1 else ''} {', '.join(shown)}{more}"


def render(report: dict[str, Any]) -> str:
    folder = report["folder"] + ("" if report["folder_exists"] else " (MISSING)")
    election = report["election"]
    elected = f" (elected among {', '.join(election['candidates'])})" if election["announcers"] == [
        election["elected"]] else ""
    lines = [f"lab {report['lab']}: {report['state']}, {report['namespaces']} namespaces, folder {folder}",
             f"MetalLB {report['load_balancer_ip']} announced by: "
             f"{', '.join(election['announcers']) or 'nobody'}{elected}",
             f"gateway {report['gateway']}" if report.get("gateway") else
             f"ingress leader (lease holder): {report['leader'] or 'none'}", "",
             f"{'POD':<30} {'NODE':<9} {'IP':<15} {'PAUSE':>7}  CONTAINERS"]
    for pod in report["pods"]:
        states = pod.get("container_states") or {}
        conts = " ".join(f"{c}:{describe_state(states[c]) if c in states else ('up' if ok else 'DOWN')}"
                         for c, ok in pod["containers"].items())
        lines.append(f"{pod['name']:<30} {pod['node']:<9} {pod['ip']:<15} {pod['pause_pid'] or '-':>7}  {conts}")
    restarted = [f"{n}:{describe_state(i)}" for n, i in sorted((report.get("daemons") or {}).items())
                 if i["state"] == "running" and i["restarts"]]
    if restarted:
        lines += ["", "node daemons restarted: " + " ".join(restarted)]
    if report["problems"]:
        lines += ["", "problems:"] + [f"  - {p}" for p in report["problems"]]
    if report["settling"]:
        lines += ["", "settling (look again in a few seconds):"] + [f"  - {s}" for s in report["settling"]]
    if report["mismatches"]:
        lines += ["", f"the folder says otherwise (podpath up --lab {report['lab']} writes it again from what runs):"]
        lines += [f"  - {m}" for m in report["mismatches"]]
    return "\n".join(lines)


def _folder_labs() -> list[str]:
    """Labs that have a folder with a registry under RUN_ROOT."""
    root = Path(labdir.RUN_ROOT)
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [e.name for e in entries if not e.name.startswith(".") and not labdir.check_lab_name(e.name)
            and (e / "netns.json").exists()]


def _recorded_roles(lab: str) -> set[str]:
    """What the folder says the lab started: holder and container roles."""
    roles = {mark.holder_role(p.name[:-len(".pid")]) for p in Path(labdir.lab_dir(lab), "holders").glob("*.pid")}
    for group in GROUPS:
        roles |= {mark.container_role(group, name) for name in _records(lab, group)[0]}
    return roles


def list_labs(view=None) -> list[dict[str, Any]]:
    """Every lab on this host: those whose mark the kernel holds, and those with only a folder.

    Each with its namespaces and the processes it started (holders, containers) as the marks
    show them, how many of those the folder lists, and whether the folder is there. Without
    root the kernel cannot be read (other users' environments, entering namespaces): the
    folders alone are listed, with "kernel": False."""
    folders = _folder_labs()
    if os.geteuid() != 0:
        return [{"lab": lab, "namespaces": len(owned_namespaces(lab)), "processes": len(_recorded_roles(lab)),
                 "processes_running": None, "folder": True, "state": "unknown (run as root to read the kernel)",
                 "kernel": False} for lab in folders]
    view = view if view is not None else mark.KernelView()
    found = view.labs()
    labs = []
    for lab in sorted(set(found) | set(folders)):
        seen = found.get(lab, {"namespaces": [], "unbound": {}, "processes": []})
        units = {p.role for p in view.units(lab)} if lab in found else set()
        has_folder = _has_folder(lab)
        recorded = _recorded_roles(lab) if has_folder else set()
        namespaces = len(seen["namespaces"]) + len(seen["unbound"])
        if not has_folder:
            state = (f"folder missing: podpath up --lab {lab} adopts what runs, podpath down --lab {lab} removes it")
        elif not namespaces and not units:
            listed = owned_namespaces(lab)
            if any(n in view.bound and view.owner(view.bound[n]) == (None, "") for n in listed):
                state = f"made before the ownership marks: podpath up --lab {lab} marks it"
            else:
                state = (f"nothing of it runs (after a reboot?): podpath up --lab {lab} builds it again, "
                         f"podpath down --lab {lab} removes the folder")
        else:
            state = "ok"
        labs.append({"lab": lab, "namespaces": namespaces, "processes": len(units | recorded),
                     "processes_running": len(units), "folder": has_folder, "state": state, "kernel": True})
    return labs


def lab_exists(lab: str) -> bool:
    """The lab has a folder with its registry, or the kernel holds a namespace or process with
    its mark (a lab whose folder was lost still exists)."""
    if Path(labdir.lab_dir(lab), "netns.json").exists():
        return True
    return os.geteuid() == 0 and kernel_has(lab)


def kernel_has(lab: str, view=None) -> bool:
    """The kernel holds a namespace or process with LAB's mark."""
    view = view if view is not None else mark.KernelView()
    bound, unbound = view.namespaces(lab)
    return bool(bound or unbound or view.processes(lab))


def leftovers(lab: str, view=None) -> list[str]:
    """What of LAB the kernel still holds, in words: namespaces bound under /run/netns with its
    mark, namespaces with its mark that processes still hold, processes with its mark."""
    view = view if view is not None else mark.KernelView()
    bound, unbound = view.namespaces(lab)
    out = [f"namespace {ns}" for ns in sorted(bound)]
    out += [f"a namespace no longer bound under {mark.NETNS_DIR}, held by {_describe_pids(pids)}"
            for _inode, pids in sorted(unbound.items())]
    procs = [p.pid for p in view.processes(lab)]
    if procs:
        out.append(f"{len(procs)} process{'es' if len(procs) > 1 else ''} with its mark: {_describe_pids(procs)}")
    return out
