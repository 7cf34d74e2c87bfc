"""Labs without root next to root's: the reference lab's `podpath up`, `verify` and `down`, and
`podpath labs` (a command that does almost nothing), as root and as an ordinary user, whose
commands run in their sandbox (docs/rootless.md).

    python -m bench.rootless [--repeats 3] [--no-write]

As root. It makes a user of its own (home in a temporary folder, a subordinate ID range) and
runs both sides with the same podpath: this checkout when every user can read it and its
venv's Python, else a clone of this repository in a temporary folder with a venv made from
the system's python3 (how long making it takes is measured too). Every lab is a new one named
`br` + 6 random characters; the labs, the user (with their processes, home and subordinate ID
lines) and the temporary folder are removed at the end, also after an error. The table goes
into docs/performance.md under its own heading.
"""
from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from podpath import sandbox

from .labs import BenchError, load_average, new_name
from .stats import Spread

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Labs without root: root's lab next to a user's"
SYSTEM_PYTHON = "/usr/bin/python3"
ETC = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid")
STEPS = ("up", "shell", "verify", "down", "sandbox")


@dataclass
class Side:
    """Who runs the commands: root, or the user (uid, gid, home)."""
    name: str
    uid: int = 0
    gid: int = 0
    home: str = "/root"


def closed_to_others(path: Path) -> str | None:
    real = path.resolve()
    for folder in reversed(real.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return f"{folder} is closed to other users"
    return None if real.stat().st_mode & stat.S_IROTH else f"{real} cannot be read by other users"


def make_copy(tmp: Path) -> tuple[Path, float]:
    """A clone with its own venv from the system's python3 and the programs built; its seconds."""
    started = time.perf_counter()
    checkout = tmp / "checkout"
    python = checkout / ".venv" / "bin" / "python"
    for argv in (["git", "clone", "-q", str(ROOT), str(checkout)], [SYSTEM_PYTHON, "-m", "venv", str(checkout / ".venv")],
                 [str(python), "-m", "pip", "install", "-q", "-e", str(checkout)],
                 [str(python), "-m", "podpath.runtime.pause_build"]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise BenchError(f"{' '.join(argv[:4])}: {(done.stderr or done.stdout)[-1000:]}")
    return checkout, time.perf_counter() - started


def add_user(name: str, home: Path) -> Side:
    subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/bash", "-K", "HOME_MODE=0700", name], check=True,
                   capture_output=True)
    entry = pwd.getpwnam(name)
    if not sandbox.subordinate_ranges(entry, "/etc/subuid"):
        raise BenchError(f"useradd gave {name} no subordinate IDs (SUB_UID_COUNT in /etc/login.defs)")
    return Side(name, entry.pw_uid, entry.pw_gid, str(home))


def remove_user(user: Side) -> None:
    for box in sandbox.sandboxes(user.uid):
        sandbox.stop(box)
    entry = pwd.getpwnam(user.name)
    ranges = sandbox.subordinate_ranges(entry, "/etc/subuid")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = []
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                uid = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:\t", 1)[1].split()[0])
            except (OSError, IndexError, ValueError):
                continue
            if uid == user.uid or any(first <= uid < first + count for first, count in ranges):
                left.append(pid)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    subprocess.run(["userdel", "-r", user.name], capture_output=True)


def timed(side: Side, podpath: str, *args: str) -> float:
    """Seconds `podpath ARGS` takes as SIDE types it; raises BenchError unless it exits 0."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": side.home, "USER": side.name, "LOGNAME": side.name,
           "LANG": "C.UTF-8"}
    extra = {} if side.uid == 0 else {"user": side.uid, "group": side.gid, "extra_groups": []}
    if side.uid == 0:
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    start = time.perf_counter()
    done = subprocess.run([podpath, *args], capture_output=True, text=True, env=env, cwd=side.home, timeout=900,
                          **extra)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise BenchError(f"podpath {' '.join(args)} as {side.name} exited {done.returncode}:\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return seconds


MAKE_AND_END = """
import time
from podpath import sandbox
who = sandbox.account(None)
start = time.perf_counter()
made = sandbox.create(who)
sandbox.stop(made)
print(time.perf_counter() - start)
"""


def sandbox_seconds(side: Side, podpath: str) -> float:
    """Seconds podpath.sandbox takes, run by SIDE, to make a sandbox (its checks included) and end it."""
    python = str(Path(podpath).with_name("python"))
    done = subprocess.run([python, "-c", MAKE_AND_END], capture_output=True, text=True, cwd=side.home, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": side.home}, user=side.uid, group=side.gid,
                          extra_groups=[])
    if done.returncode:
        raise BenchError(f"making a sandbox as {side.name}: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def run(repeats: int = 3, progress=print) -> dict:
    """{"times": {side: {step: [seconds]}}, "copy_s": seconds to make the copy or None}."""
    before = {path: Path(path).read_bytes() for path in ETC if Path(path).exists()}
    tmp = Path(tempfile.mkdtemp(prefix="podpath-bench-rootless-"))
    os.chmod(tmp, 0o755)
    sides = {"root": Side("root")}
    labs: list[tuple[Side, str]] = []
    result = {"times": {"root": {s: [] for s in STEPS}, "user": {s: [] for s in STEPS}}, "copy_s": None}
    podpath = str(ROOT / ".venv" / "bin" / "podpath")
    try:
        if closed_to_others(ROOT) or closed_to_others(ROOT / ".venv" / "bin" / "python"):
            checkout, result["copy_s"] = make_copy(tmp)
            podpath = str(checkout / ".venv" / "bin" / "podpath")
        sides["user"] = add_user(f"rlb{os.getpid() % 100000}", tmp / "home")
        for i in range(repeats):
            for key in ("root", "user"):
                side, lab = sides[key], new_name("r")
                times = result["times"][key]
                labs.append((side, lab))
                times["up"].append(timed(side, podpath, "up", "--lab", lab, "-q"))
                times["shell"].append(timed(side, podpath, "shell", "--lab", lab, "--", "true"))
                times["verify"].append(timed(side, podpath, "verify", "--lab", lab))
                times["down"].append(timed(side, podpath, "down", "--lab", lab, "-q"))
                labs.remove((side, lab))
                if key == "user":  # making and ending the sandbox alone, as the user
                    times["sandbox"].append(sandbox_seconds(side, podpath))
            progress(f"  rootless run {i + 1}/{repeats}: " + "; ".join(
                f"{key} " + ", ".join(f"{s} {result['times'][key][s][-1]:.2f} s" for s in STEPS
                                      if result["times"][key][s]) for key in sides))
    finally:
        for side, lab in labs:  # what an error left up
            subprocess.run([podpath, "down", "--lab", lab, "-q"], capture_output=True, timeout=300, cwd=side.home,
                           **({} if side.uid == 0 else {"user": side.uid, "group": side.gid, "extra_groups": []}))
        if "user" in sides:
            remove_user(sides["user"])
        shutil.rmtree(tmp, ignore_errors=True)
        after = {path: Path(path).read_bytes() for path in ETC if Path(path).exists()}
        if after != before:
            raise BenchError("the user files in /etc are not as they were: " +
                             ", ".join(p for p in ETC if before.get(p) != after.get(p)))
    return result


NAMES = {"up": "`podpath up` (cold; the user's also makes the sandbox)",
         "shell": "`podpath shell --lab L -- true` (the CLI alone; the user's enters the sandbox)",
         "verify": "`podpath verify`", "down": "`podpath down` (the user's last also ends the sandbox)",
         "sandbox": "making a sandbox (its checks included) and ending it, alone"}


def table(result: dict) -> str:
    lines = ["| command | root: median s | min | max | user: median s | min | max | user − root |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for step in STEPS:
        root, user = Spread.of(result["times"]["root"][step]), Spread.of(result["times"]["user"][step])
        if not root.runs:
            lines.append(f"| {NAMES[step]} | | | | {user.cells(fmt='.3f')} | |")
            continue
        lines.append(f"| {NAMES[step]} | {root.cells()} | {user.cells()} | {user.median - root.median:+.2f} |")
    return "\n".join(lines)


def reading(result: dict) -> str:
    """What the table says: which differences stand out of the runs' spread."""
    said = []
    for step in ("up", "shell", "verify", "down"):
        root, user = Spread.of(result["times"]["root"][step]), Spread.of(result["times"]["user"][step])
        apart = user.low > root.high or root.low > user.high
        said.append(f"`{step}` {user.median - root.median:+.2f} s" + ("" if apart else " (within the spread)"))
    return ("User minus root, medians: " + ", ".join(said) + ". A difference within the spread (the two sides' "
            "min-max ranges overlap) is the shared machine's noise, not the sandbox's cost.")


def section(result: dict, repeats: int, load: str) -> str:
    copy = ("" if result["copy_s"] is None else
            f"\nThe checkout's venv could not be run by other users here (its Python is in root's home), so both sides "
            f"ran a clone in a temporary folder with a venv made from {SYSTEM_PYTHON}: making it (git clone, venv, "
            f"pip install from the local cache, the programs built) took {result['copy_s']:.1f} s.\n")
    return f"""{HEADING}

The reference lab as root, on the host, and as an ordinary user, in their sandbox
([rootless.md](rootless.md)): the same podpath, the same commands, each lab new, {repeats}
run(s) each, one side after the other (`python -m bench.rootless`; load average {load} at
the start). The user's `up` starts with no sandbox, so it includes making one (user,
mount, PID and network namespaces, newuidmap and newgidmap, a tmpfs /run, the kernel modules
tried), and their `down` of the last lab ends it; every user command also enters the
sandbox (setns into 8 namespaces and a fork) before it starts.
{copy}
{table(result)}

{reading(result)}
"""


def write_docs(body: str) -> None:
    from .__main__ import write_sections

    write_sections([(HEADING, body)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rootless", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("python -m bench.rootless makes a user and builds labs: run it as root")
    load = load_average()
    result = run(args.repeats)
    body = section(result, args.repeats, load)
    print("\n" + body)
    if not args.no_write:
        write_docs(body)
        print("written to docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
