"""The modules' sources keep each fact in one place and ask of the managed host only what
their documentation says.

- The Linux interface-name limit, /run/podpath and /run/netns are written once, in
  module_utils/podpath_lab.py, and imported from there.
- pyroute2 gives podpath_netlink only netlink constants. The names below exist, with the
  same values, in every pyroute2 the module was run with: 0.5.14 (Debian 11), 0.7.2
  (Debian 12), 0.7.7 (Debian 13, what the cluster lab's nodes install) and 0.9.7 (the
  project's .venv). A new name must be checked against Debian 13's 0.7.7 before it is added
  (tests/integration/test_module_pyroute2.py runs the module with it).
- Every licence header names a LICENSE file the project has.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "library").glob("*.py"), *(ROOT / "module_utils").glob("*.py"),
                  *(ROOT / "plugins" / "action").glob("*.py")])
LAB = ROOT / "module_utils" / "podpath_lab.py"

PYROUTE2_NAMES = {
    "pyroute2.netlink": {"NLM_F_ACK", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_EXCL", "NLM_F_REPLACE", "NLM_F_REQUEST",
                         "NLMSG_DONE", "NLMSG_ERROR"},
    "pyroute2.netlink.rtnl": {"RTM_DELADDR", "RTM_DELLINK", "RTM_DELNEIGH", "RTM_DELROUTE", "RTM_GETADDR",
                              "RTM_GETLINK", "RTM_GETNEIGH", "RTM_GETROUTE", "RTM_NEWADDR", "RTM_NEWLINK",
                              "RTM_NEWNEIGH", "RTM_NEWROUTE"},
}


def code_of(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def strings_in_code(tree: ast.Module) -> list[str]:
    """The string constants of TREE outside the DOCUMENTATION, EXAMPLES and RETURN blocks and docstrings."""
    docs = {id(node.value) for node in tree.body if isinstance(node, ast.Assign)
            and any(getattr(t, "id", None) in ("DOCUMENTATION", "EXAMPLES", "RETURN") for t in node.targets)}
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs | docstrings]


def assigned_names(tree: ast.Module) -> set[str]:
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


@pytest.mark.parametrize("path", [p for p in SOURCES if p != LAB], ids=lambda p: p.name)
def test_the_run_folders_are_written_only_in_podpath_lab(path):
    written = [s for s in strings_in_code(code_of(path)) if "/run/podpath" in s or "/run/netns" in s]
    assert written == [], f"{path.name} writes {written}: use podpath_lab's RUN_ROOT, lab_dir, NETNS_DIR or netns_path"


def test_podpath_lab_is_the_home_of_the_paths_and_the_interface_name_limit():
    names = assigned_names(code_of(LAB))
    assert {"RUN_ROOT", "NETNS_DIR", "IFNAME_MAX"} <= names
    for path in SOURCES:
        if path != LAB:
            defined = {n for n in assigned_names(code_of(path)) if re.match(r"IFNAMSIZ$|IFNAME_MAX$|RUN_ROOT$|NETNS_DIR$", n)}
            assert not defined, f"{path.name} defines {defined} again: import it from podpath_lab"


def test_the_interface_name_check_uses_the_limit_of_podpath_lab():
    tree = code_of(ROOT / "module_utils" / "podpath_netns_spec.py")
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                and node.module == "ansible.module_utils.podpath_lab" for alias in node.names}
    assert "IFNAME_MAX" in imported
    assert not re.search(r"\b1[56]\b", "".join(s for s in strings_in_code(tree) if "interface name" in s)), \
        "a message of podpath_netns_spec spells the limit out instead of using IFNAME_MAX"


def test_pyroute2_gives_only_the_constants_checked_against_debian_13s_package():
    used: dict[str, set[str]] = {}
    for path in SOURCES:
        for node in ast.walk(code_of(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyroute2":
                used.setdefault(node.module, set()).update(alias.name for alias in node.names)
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "pyroute2" for a in node.names):
                pytest.fail(f"{path.name} imports pyroute2 as a whole: import the constants by name")
    assert used == PYROUTE2_NAMES, (
        "the modules use pyroute2 names that were not checked against pyroute2 0.7.7 (Debian 13's "
        f"python3-pyroute2): {used}. Check them there, then list them here")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_the_licence_header_names_a_licence_file_the_project_has(path):
    header = "".join(path.read_text().splitlines(keepends=True)[:5])
    named = re.findall(r"see (\w+)", header)
    assert named, f"{path.name} has no licence header"
    for name in named:
        assert (ROOT / name).is_file(), f"{path.name}'s header names {name}, which the project does not have"
    assert "Apache License 2.0" in header
