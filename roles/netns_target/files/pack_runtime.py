"""netns_target: pack podpath's runtime on Ansible's control node, once per play.

    python pack_runtime.py OUT_DIR      (the Python of the checkout's .venv: ansible_playbook_python)

Builds the programs of podpath's builder (`python -m podpath.runtime.pause_build`, which
prints the path of each program it built, one a line: podpath-pause and any other) and packs,
from the checkout this file is in: podpath/ (the package, without caches), module_utils/
(which the package reads beside itself), bin/ (the programs), VERSION (a hash of all of
it) and COMMIT (the checkout's commit when it was packed, for people). The archive is the same bytes for the same files (sorted,
no times, no owners), named by its version, so that Ansible copies it only when the
checkout changed. Prints JSON: {"path", "version", "built", "programs"}.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".tmp"}


def tree(folder: Path, prefix: str) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(folder).parts) \
                and path.suffix not in SKIP_SUFFIXES:
            found.append((f"{prefix}/{path.relative_to(folder).as_posix()}", path))
    return found


def programs() -> list[Path]:
    """The programs podpath's builder builds, as it prints them."""
    done = subprocess.run([sys.executable, "-m", "podpath.runtime.pause_build"], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"podpath's builder failed on the control node: {done.stderr.strip() or done.stdout.strip()}"
                         " (make pause shows why; it needs gcc)")
    built = [Path(line.strip()) for line in done.stdout.splitlines() if line.strip()]
    missing = [str(p) for p in built if not p.is_file()]
    if not built or missing:
        raise SystemExit(f"podpath's builder printed no program it built: {done.stdout!r}")
    return built


def commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "no git"


# What the verifier needs beside the package, so that `podpath verify`, `status`, `drill` and
# `report` run on the host as they do here (`podpath verify --inventory` asks them): its suites,
# the reference topology and its schema, the list of the commands a lab runs.
VERIFIER_FILES = ["inventory/group_vars/all/topology.yml", "inventory/topology.schema.json", "debian-packages.txt"]
# The verifier's Python packages, pure Python, copied from the control node's environment into
# verifier/ (the runtime's podpath.pth names it after lib/): pytest and pytest-testinfra with
# what they import, and their dist-info, through which pytest finds testinfra's plugin.
VERIFIER_DISTS = ["pytest", "pluggy", "iniconfig", "packaging", "pytest_testinfra"]


def verifier_packages() -> list[tuple[str, Path]]:
    """(name in the archive, path) of each file of VERIFIER_DISTS, as installed here."""
    from importlib import metadata

    found = []
    for name in VERIFIER_DISTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"the control node's Python ({sys.executable}) has no {name}, which the hosts' verifier "
                             "needs: make venv installs it (pip install -e .)") from None
        for entry in dist.files or []:
            path = Path(dist.locate_file(entry)).resolve()
            rel = entry.as_posix()
            if rel.startswith("..") or "__pycache__" in rel or path.suffix in SKIP_SUFFIXES | {".so"} \
                    or rel.endswith(("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")) or not path.is_file():
                continue
            found.append((f"verifier/{rel}", path))
    return found


def main(out_dir: str) -> dict:
    files = tree(ROOT / "podpath", "podpath") + [
        (f"module_utils/{p.name}", p) for p in sorted((ROOT / "module_utils").glob("*.py"))]
    files += [(f"tests/verify/{p.name}", p) for p in sorted((ROOT / "tests" / "verify").glob("*.py"))]
    files += [(name, ROOT / name) for name in VERIFIER_FILES] + verifier_packages()
    built = programs()
    files += [(f"bin/{p.name}", p) for p in built]
    digest = hashlib.sha256()
    for name, path in files:
        mode = 0o755 if os.access(path, os.X_OK) and name.startswith("bin/") else 0o644
        digest.update(f"{name}\0{mode:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    version = digest.hexdigest()[:16]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"podpath-runtime-{version}.tar.gz"
    result = {"path": str(target), "version": version, "built": False, "programs": [p.name for p in built]}
    if target.exists():
        return result
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        notes = {"VERSION": version + "\n", "COMMIT": commit() + "\n"}
        entries = [*files, *((name, None) for name in notes)]
        for name, path in sorted(entries, key=lambda e: e[0]):
            data = notes[name].encode() if path is None else path.read_bytes()
            info = tarfile.TarInfo("./" + name)
            info.size, info.mtime, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0, 0, "root", "root"
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp = target.with_suffix(".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    os.replace(tmp, target)
    for old in out.glob("podpath-runtime-*.tar.gz"):  # one archive kept: the checkout's current one
        if old != target:
            old.unlink()
    result["built"] = True
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: pack_runtime.py OUT_DIR")
    print(json.dumps(main(sys.argv[1])))
