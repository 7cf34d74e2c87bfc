"""Build podpath-pause (pause.c) next to the interpreter: `python -m podpath.runtime.pause_build`.

The lab's pods are held by this small C program, as Kubernetes pods are held by the
pause container. It is built once per virtual environment with the system's C compiler.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("pause.c")


def pause_path() -> Path:
    """Where the built program lives: the bin/ folder of the running environment."""
    return Path(sys.prefix) / "bin" / "podpath-pause"


def build(force: bool = False) -> Path:
    target = pause_path()
    if not force and target.exists() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return target
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("podpath: no C compiler to build podpath-pause; install it with: apt-get install gcc")
    tmp = target.with_suffix(".tmp")
    cmd = [cc, "-O2", "-Wall", "-Wextra", "-o", str(tmp), str(SOURCE)]
    static = cmd[:2] + ["-static"] + cmd[2:]
    # A static binary keeps each pod's holder at a few hundred KiB; fall back to a dynamic one.
    if subprocess.run(static, capture_output=True).returncode != 0:
        subprocess.run(cmd, check=True)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
