"""podpath's layers (docs/development.md): each imports only the layers below it, so the
layout of podpath/ is the architecture. Every import of every module is read, also the ones
inside functions."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import pytest

PACKAGE = ROOT / "podpath"
# layer -> the podpath layers it may import (itself always)
ALLOWED = {
    "model": set(),
    "runtime": {"model"},
    "play": {"model"},
    "evidence": {"model", "runtime"},
    "cluster": {"model"},
    "sandbox": {"model", "runtime"},
    "cli": {"model", "runtime", "play", "evidence", "cluster", "sandbox"},
}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "podpath" and len(parts) > 1 else None


def podpath_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every podpath module PATH imports."""
    tree = ast.parse(path.read_text(), str(path))
    here = ["podpath", *path.relative_to(PACKAGE).with_suffix("").parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("podpath")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = here[:-node.level]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("podpath"):
                names = [f"{module}.{a.name}" for a in node.names] if module.count(".") == 0 else [module]
                found += [(node.lineno, n) for n in names]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_in_a_known_layer():
    unknown = [str(p.relative_to(PACKAGE)) for p in MODULES
               if p.name != "__init__.py" or p.parent != PACKAGE
               if (p.relative_to(PACKAGE).parts[0].removesuffix(".py")) not in ALLOWED]
    assert not unknown, f"modules outside the layers of docs/development.md: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path):
    layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if layer == "__init__":
        return
    wrong = [f"line {line}: {module}" for line, module in podpath_imports(path)
             if layer_of(module) not in ALLOWED[layer] | {layer}]
    assert not wrong, f"podpath/{path.relative_to(PACKAGE)} ({layer}) imports above or beside its layer: {wrong}"


# The lab's daemons run in every lab, so each module they import is memory in each of them
# (docs/performance.md, the lab at rest). What each one must not load:
DAEMON_MUST_NOT_IMPORT = {
    # the topology model, the renderers of up's files, the module's helpers (ctypes); and the
    # standard modules whose work a lighter one does: dataclasses (podpath.model.record),
    # subprocess (daemon.run), selectors (daemon.Waiter), socket's and signal's enums (_socket,
    # _signal), base64 (digest.base32), the json package and the re and enum it loads
    # (daemon.parse_json and json_text, with _json)
    "podpath.runtime.proxier": ("podpath.model.plan", "podpath.model.topology", "podpath.model.workloads",
                                "podpath.model.labdir", "ctypes", "jinja2", "hashlib", "typing", "dataclasses",
                                "inspect", "ast", "dis", "tokenize", "subprocess", "threading", "locale",
                                "selectors", "socket", "signal", "base64", "json", "re", "enum", "collections",
                                "functools"),
}


@pytest.mark.parametrize("daemon", sorted(DAEMON_MUST_NOT_IMPORT))
def test_a_daemon_of_the_lab_loads_only_what_it_runs(daemon):
    probe = (f"import sys, {daemon}; "
             f"print(' '.join(m for m in {DAEMON_MUST_NOT_IMPORT[daemon]!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [], f"{daemon} imports {done.stdout.strip()}"


def test_the_daemons_sha256_is_sha256():
    import hashlib

    from podpath.model.digest import sha256

    for data in (b"", b"worker1#192.168.56.200", bytes(range(256)) * 9):
        assert sha256(data) == hashlib.sha256(data).digest()
