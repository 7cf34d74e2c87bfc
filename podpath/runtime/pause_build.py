"""Build podpath's C programs next to the interpreter: `python -m podpath.runtime.pause_build`.

- podpath-pause (pause.c) holds each pod's namespaces, as the pause container holds a
  Kubernetes pod's;
- podpath-shim (shim.c) runs each container: it starts it, reaps it, writes its status and
  restarts it after the kubelet's back-off, as containerd's shim and the kubelet do;
- podpath-ingress (ingress.c) is the first process of each ingress-nginx controller pod: nginx
  is its child, and it takes part in the leader election, as ingress-nginx's controller does;
- podpath-speaker (speaker.c) is MetalLB's speaker in layer 2 mode, one per node.

Each is built once per virtual environment with the system's C compiler, statically where
the C library allows it: a few hundred KiB each, and one runs per pod or per container.
podpath.model.workloads finds them beside the lab's Python, here and on a fleet's hosts
(whose runtime gets every program this builder prints).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "pause.c"
SHIM_SOURCE = HERE / "shim.c"
INGRESS_SOURCE = HERE / "ingress.c"
SPEAKER_SOURCE = HERE / "speaker.c"


def pause_path() -> Path:
    """Where the pause program lives: the bin/ folder of the running environment."""
    return Path(sys.prefix) / "bin" / "podpath-pause"


def shim_path() -> Path:
    """Where the shim lives: beside the pause program."""
    return Path(sys.prefix) / "bin" / "podpath-shim"


def ingress_path() -> Path:
    """Where the ingress controller program lives: beside the pause program."""
    return Path(sys.prefix) / "bin" / "podpath-ingress"


def speaker_path() -> Path:
    """Where the MetalLB speaker lives: beside the pause program (the lab runs the one beside
    its Python, podpath.model.workloads)."""
    return Path(sys.prefix) / "bin" / "podpath-speaker"


def compile_program(source: Path, target: Path) -> Path:
    """Compile SOURCE into the executable TARGET (replaced whole, never half-written)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit(f"podpath: no C compiler to build {target.name}; install it with: apt-get install gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")  # this process's own
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(source)]
    static = cmd[:2] + ["-static"] + cmd[2:]
    # A static binary keeps each process at a few hundred KiB; fall back to a dynamic one.
    if subprocess.run(static, capture_output=True).returncode != 0:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise SystemExit(f"podpath: cannot build {target.name} from {source}:\n{done.stderr}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def _stale(target: Path, source: Path) -> bool:
    return not target.exists() or target.stat().st_mtime < source.stat().st_mtime


@contextlib.contextmanager
def _build_lock(folder: Path):
    """One build at a time in FOLDER: a class's `podpath up`s started together after an update
    find the programs stale at the same moment; the first builds them and the others wait, then
    find them fresh. Without a lock file that can be made there (a folder this user may not
    write), no lock: the build itself would fail there all the same, saying why."""
    try:
        handle = open(folder / ".podpath-build.lock", "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def programs() -> tuple:
    """(source, target) of every C program podpath builds."""
    return ((SOURCE, pause_path()), (SHIM_SOURCE, shim_path()), (INGRESS_SOURCE, ingress_path()),
            (SPEAKER_SOURCE, speaker_path()))


def build(force: bool = False) -> Path:
    """Build every program of programs() that is missing or older than its source (every one
    with FORCE), one builder at a time; returns the pause program's path."""
    wanted = programs()
    if force or any(_stale(target, source) for source, target in wanted):
        with _build_lock(pause_path().parent):
            for source, target in wanted:
                if force or _stale(target, source):  # again: another builder may have just built it
                    compile_program(source, target)
    return pause_path()


if __name__ == "__main__":
    build(force="--force" in sys.argv)
    for _, built in programs():
        print(built)
