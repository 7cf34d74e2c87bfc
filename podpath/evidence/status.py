"""What a netns lab runs right now, read from its folder and from /proc.

Used by `podpath status`, `podpath labs` and the verifier's fixtures: the registry
says which namespaces the lab owns, the pidfiles which processes it started.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from podpath.model import labdir
from podpath.runtime.lease import read as read_lease
from podpath.model.plan import Plan, build
from podpath.model.workloads import GROUPS, lease_path, speaker_status_path


def _json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def containers(lab: str) -> dict[str, dict[str, Any]]:
    """Container name -> {pid, netns, running, group} for every group of the lab."""
    result = {}
    for group in GROUPS:
        for name, record in (_json(Path(labdir.lab_dir(lab), f"containers-{group}.json")) or {}).items():
            pid = record.get("pid")
            running = labdir.alive(pid) and labdir.lab.start_time(pid) == record.get("start")
            result[name] = {"pid": pid, "netns": record.get("netns"), "running": running, "group": group}
    return result


def container_init(pid: int) -> int | None:
    """The container's first process: the child of its runtime wrapper (unshare --fork)."""
    kids = labdir.lab.children(pid)
    return kids[0] if kids else None


def _init_pid(record: dict | None) -> int | None:
    if not record or not record["running"]:
        return None
    return container_init(record["pid"]) or record["pid"]


def holders(lab: str, netns_names: list[str]) -> dict[str, int | None]:
    out = {}
    for ns in netns_names:
        pid = labdir.read_pid(labdir.holder_pidfile(lab, ns))
        out[ns] = pid if pid and labdir.alive(pid) else None
    return out


def speakers(lab: str, nodes: list[str]) -> dict[str, dict | None]:
    return {node: _json(speaker_status_path(lab, node)) for node in nodes}


def _plan(plan: Plan | str, topology: dict | None) -> Plan:
    """PLAN itself; or, from callers that still pass a lab name and a topology, their plan."""
    return plan if isinstance(plan, Plan) else build(topology, plan)


def lease(plan: Plan | str, topology: dict | None = None) -> dict | None:
    """The ingress controllers' leader lease in PLAN's lab, or None."""
    return read_lease(lease_path(_plan(plan, topology)))


def owned_namespaces(lab: str) -> list[str]:
    return list((_json(Path(labdir.lab_dir(lab), "netns.json")) or {}).get("namespaces", []))


def lab_status(plan: Plan | str, topology: dict | None = None) -> dict[str, Any]:
    """What runs in PLAN's lab and what is missing from it."""
    plan = _plan(plan, topology)
    lab = plan.lab
    owned = owned_namespaces(lab)
    present = [ns for ns in owned if os.path.exists(labdir.lab.netns_path(ns))]
    held = holders(lab, [p.netns for p in plan.pods])
    procs = containers(lab)
    spk = speakers(lab, [n.name for n in plan.nodes])
    announcing = {n: s.get("announcing", []) for n, s in spk.items() if s}
    ls = lease(plan) or {}
    pods = []
    for pod in plan.pods:
        pods.append({"name": pod.name, "node": pod.node, "ip": pod.ip, "netns": pod.netns,
                     "pause_pid": held.get(pod.netns),
                     "containers": {c.name: procs.get(f"{pod.name}/{c.name}", {}).get("running", False)
                                    for c in pod.containers},
                     "container_pids": {c.name: _init_pid(procs.get(f"{pod.name}/{c.name}"))
                                        for c in pod.containers}})
    problems = []
    missing = sorted(set(plan.netns_names) - set(present))
    if missing:
        problems.append(f"namespaces missing: {', '.join(missing)}")
    problems += [f"{p['name']}: pause process not running" for p in pods if not p["pause_pid"]]
    problems += [f"{p['name']}/{c}: not running" for p in pods for c, ok in p["containers"].items() if not ok]
    problems += [f"metallb speaker on {n}: not running" for n, s in spk.items() if not s]
    return {"lab": lab, "healthy": not problems, "problems": problems, "namespaces": len(present),
            "pods": pods, "announcing": announcing, "leader": ls.get("holderIdentity"),
            "load_balancer_ip": plan.ingress_service.load_balancer_ip}


def render(report: dict[str, Any]) -> str:
    lines = [f"lab {report['lab']}: {'healthy' if report['healthy'] else 'NOT healthy'}, "
             f"{report['namespaces']} namespaces",
             f"MetalLB {report['load_balancer_ip']} announced by: "
             f"{', '.join(n for n, a in report['announcing'].items() if a) or 'nobody'}",
             f"ingress leader (lease holder): {report['leader'] or 'none'}", "",
             f"{'POD':<30} {'NODE':<9} {'IP':<15} {'PAUSE':>7}  CONTAINERS"]
    for pod in report["pods"]:
        conts = " ".join(f"{c}:{'up' if ok else 'DOWN'}" for c, ok in pod["containers"].items())
        lines.append(f"{pod['name']:<30} {pod['node']:<9} {pod['ip']:<15} {pod['pause_pid'] or '-':>7}  {conts}")
    if report["problems"]:
        lines += ["", "problems:"] + [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines)


def list_labs() -> list[dict[str, Any]]:
    root = Path(labdir.RUN_ROOT)
    labs = []
    for entry in sorted(root.iterdir()) if root.exists() else []:
        if entry.name.startswith(".") or not (entry / "netns.json").exists():
            continue
        procs = containers(entry.name)
        labs.append({"lab": entry.name, "namespaces": len(owned_namespaces(entry.name)),
                     "processes": len(procs), "processes_running": sum(p["running"] for p in procs.values())})
    return labs
