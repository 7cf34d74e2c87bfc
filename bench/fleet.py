"""A class's labs on a fleet: LABS labs spread by a roster over HOSTS inventory hosts and built
through SSH, against the same labs on the same hosts built with the local connection.

    python -m bench.fleet [--labs 30] [--hosts 3] [--no-write]   # or: python -m bench --only fleet

The hosts are inventory names of this machine: an sshd of the benchmark's own on 127.0.0.1
(tests/integration/sshd.py) for the SSH runs, Ansible's local connection for the local ones.
Both runs use the same playbooks, roster (podpath_roster) and capacities (podpath_capacity):
only the connection differs, and with it how the modules run (shipped over SSH and run by the
runtime's Python, or in-process). Each run times `ansible-playbook` as a user types it: the
first build (over SSH it prepares the hosts too), the same build again (nothing to change),
`netns-lab-down.yml`, and over SSH a build on the prepared hosts. Every lab is named 'bf' + 6
random characters, and everything is removed at the end, also after an error: the labs, each
host's runtime (in a temporary folder) and the sshd.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .labs import BenchError, load_average, new_name

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "performance.md"
HEADING = "## Fleet: a class's labs over SSH on several hosts"
LABS, HOSTS = 30, 3
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# The project's goal for a class: 30 labs on prepared hosts over SSH within 5 minutes.
GOAL_S = 300.0

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from labtools import force_remove, marked_namespaces, marked_processes  # noqa: E402
from sshd import ssh_server  # noqa: E402


@dataclass
class Run:
    connection: str
    hosts: int
    labs: int
    times: dict[str, float] = field(default_factory=dict)
    loads: dict[str, str] = field(default_factory=dict)  # the load average when each step started
    changed_again: int = 0

    def step(self, name: str, inventory: Path, playbook: str, *args: str) -> str:
        self.loads[name] = load_average().split()[0]
        self.times[name], out = play(inventory, playbook, *args)
        return out


def play(inventory: Path, playbook: str, *args: str) -> tuple[float, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    started = time.monotonic()
    done = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), f"playbooks/{playbook}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    hosts = RECAP.findall(done.stdout)
    if done.returncode != 0 or not hosts or any(int(h[3]) or int(h[4]) for h in hosts):
        raise BenchError(f"{playbook} on {inventory.name} failed (rc {done.returncode}):\n{done.stdout[-3000:]}"
                         f"\n{done.stderr[-1000:]}")
    return seconds, done.stdout


def changed_labs_tasks(out: str) -> int:
    """How many lab tasks (the netns_* roles but netns_target) reported changed."""
    count, task = 0, ""
    for line in out.splitlines():
        header = re.match(r"^TASK \[(.+)\] \**$", line)
        if header:
            task = header.group(1)
        elif line.startswith("changed: [") and task.startswith("netns_") and not task.startswith("netns_target"):
            count += 1
    return count


def check_labs(labs: list[str], present: bool) -> None:
    wrong = [lab for lab in labs if bool(marked_namespaces(lab)) != present]
    if wrong:
        raise BenchError(f"labs {'missing' if present else 'left'}: {', '.join(wrong)}")


def inventories(folder: Path, server, labs: list[str], hosts: int) -> tuple[Path, Path]:
    """(SSH inventory, local inventory) of the same host names and capacities, and the roster."""
    roster = folder / "roster.csv"
    roster.write_text("student,lab\n" + "".join(f"Student {i + 1:02d},{lab}\n" for i, lab in enumerate(labs)))
    capacity = math.ceil(len(labs) / hosts)
    names = [f"benchpc{i}" for i in range(1, hosts + 1)]
    ssh = {name: dict(server.inventory_vars(), podpath_capacity=capacity,
                      podpath_runtime_dir=str(folder / f"runtime-{name}")) for name in names}
    local = {name: {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "podpath_capacity": capacity} for name in names}
    paths = []
    for kind, hostvars in (("ssh", ssh), ("local", local)):
        path = folder / f"{kind}.yml"
        path.write_text(yaml.safe_dump({"all": {"hosts": hostvars, "vars": {"podpath_roster": str(roster)}}},
                                       sort_keys=False))
        paths.append(path)
    return paths[0], paths[1]


def build_again_down(timed: Run, inventory: Path, names: list[str]) -> None:
    """Time the first build of NAMES with INVENTORY, a second run (what it changed) and the
    removal, checking after each that the labs are there, or gone."""
    timed.step("first build", inventory, "netns-lab.yml")
    check_labs(names, True)
    timed.changed_again = changed_labs_tasks(timed.step("again", inventory, "netns-lab.yml"))
    timed.step("down", inventory, "netns-lab-down.yml")
    check_labs(names, False)


def run(labs: int = LABS, hosts: int = HOSTS, progress=print) -> list[Run]:
    names = [new_name("f") for _ in range(labs)]
    folder = Path(tempfile.mkdtemp(prefix="podpath-bench-fleet-"))
    results = []
    try:
        with ssh_server() as server:
            ssh, local = inventories(folder, server, names, hosts)
            over_ssh = Run("SSH (modules shipped, runtime's Python)", hosts, labs)
            progress(f"  fleet: {labs} labs over {hosts} hosts through SSH (load {load_average()})")
            build_again_down(over_ssh, ssh, names)
            over_ssh.step("build, hosts prepared", ssh, "netns-lab.yml")
            check_labs(names, True)
            play(ssh, "netns-lab-down.yml", "-e", "podpath_remove_runtime=true")
            check_labs(names, False)
            results.append(over_ssh)
            progress("  fleet over SSH: " + ", ".join(f"{k} {v:.1f} s" for k, v in over_ssh.times.items()))
            here = Run("local connection (modules in-process)", hosts, labs)
            progress(f"  fleet: the same labs with the local connection (load {load_average()})")
            build_again_down(here, local, names)
            results.append(here)
            progress("  fleet locally: " + ", ".join(f"{k} {v:.1f} s" for k, v in here.times.items()))
    finally:
        for lab in names:
            if marked_namespaces(lab) or marked_processes(lab):
                force_remove(lab)
        shutil.rmtree(folder, ignore_errors=True)
    return results


def table(results: list[Run]) -> str:
    steps = ["first build", "build, hosts prepared", "again", "down"]
    lines = ["| connection | hosts × labs | " + " | ".join(f"{s} s (per lab)" for s in steps) + " | lab tasks changed again |",
             "|---|---|" + "---:|" * len(steps) + "---:|"]
    for r in results:
        cells = [f"{r.times[s]:.1f} ({r.times[s] / r.labs:.2f})" if s in r.times else "–" for s in steps]
        lines.append(f"| {r.connection} | {r.hosts} × {math.ceil(r.labs / r.hosts)} | " + " | ".join(cells)
                     + f" | {r.changed_again} |")
    return "\n".join(lines)


def goal(results: list[Run]) -> tuple[str, str, str]:
    ssh = results[0]
    seconds = ssh.times["build, hosts prepared"]
    return (f"{ssh.labs} labs on {ssh.hosts} prepared hosts over SSH ≤ {GOAL_S:.0f} s", f"{seconds:.0f} s",
            "met" if seconds <= GOAL_S else "**not met**")


def section(results: list[Run], when: str) -> str:
    ssh, here = results[0], results[1]
    build = ssh.times["build, hosts prepared"] / here.times["first build"]
    again = ssh.times["again"] / here.times["again"]
    loads = "; ".join(f"{r.connection.split(' (')[0]}: " + ", ".join(f"{k} {v}" for k, v in r.loads.items())
                      for r in results)
    return f"""{HEADING}

{ssh.labs} reference labs, a roster of {ssh.labs} students spread by `podpath_capacity` over {ssh.hosts}
inventory hosts, built by `ansible-playbook -i INVENTORY playbooks/netns-lab.yml -e podpath_roster=...`
([classroom.md](classroom.md)). The hosts are names of this one machine: an sshd of the
benchmark's own on 127.0.0.1 for the SSH rows (each host with its own runtime folder), the local
connection for the other, with the same playbooks, roster and capacities. Ansible's forks run the
hosts in parallel (the `free` strategy), each host's labs one after another. *first build*: no
lab yet; over SSH it also prepares the hosts (checks, packages, podpath's runtime into a new
virtualenv); *build, hosts prepared*: the labs again after `down`, with the runtime in place;
*again*: the same play on built labs (the last column: lab tasks that reported changed, 0
expected). One run of {when}; `python -m bench.fleet` (or `python -m bench --only fleet`).

{table(results)}

Load average (1 min) when each step started, on this shared {os.cpu_count()}-core machine: {loads}.
One run, and the load of other work moved during it: read the ratios as rough. Building on
prepared hosts over SSH took {build:.1f} × the local first build, and a run over built labs
{again:.1f} × the local one: over SSH each module is shipped and started in a new Python, where
locally it runs in-process, and a run that changes nothing is mostly that start. On real
machines each host has CPUs of its own, where here the three hosts and the control node share
these {os.cpu_count()}.
"""


def write_docs(text: str, path: Path = DOCS) -> None:
    """Put TEXT in place of the section under HEADING (or at the end), keeping the rest of the file."""
    old = path.read_text() if path.exists() else "# Performance\n"
    start = old.find(HEADING + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(HEADING))
    rest = old[end + 1:] if end >= 0 else ""
    path.write_text(old[:start] + text + ("\n" + rest if rest else ""))


def main(argv=None) -> int:
    from datetime import datetime, timezone

    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--labs", type=int, default=LABS, help=f"labs in the roster (default {LABS})")
    parser.add_argument("--hosts", type=int, default=HOSTS, help=f"inventory hosts (default {HOSTS})")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOCS.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench.fleet builds labs: run it as root")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = run(args.labs, args.hosts)
    text = section(results, when)
    print("\n" + text)
    print("goal:", " | ".join(goal(results)))
    if not args.no_write:
        write_docs(text)
        print(f"written to {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
