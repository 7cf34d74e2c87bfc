"""podpath's layers (docs/development.md): each imports only the layers below it, so the
layout of podpath/ is the architecture. Every import of every module is read, also the ones
inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "podpath"
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
