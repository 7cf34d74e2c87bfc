"""Shared helpers of the static checks: where the repository is, how to find a tool, the
lab's two variable files (topology and versions) as plain data, and the cluster roles'
templates rendered once by Ansible for the whole session."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from render_roles import Rendered, render_all

ROOT = Path(__file__).resolve().parents[2]
GROUP_VARS = ROOT / "inventory" / "group_vars" / "all"


def find_tool(name: str) -> str:
    """The path of a command-line tool: the one beside this Python first (the project's .venv),
    then PATH. Skips the calling test, naming the tool and how to install it, when it is absent."""
    beside = Path(sys.prefix) / "bin" / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    pytest.skip(f"{name} is not installed here (make venv installs the Python tools, make deps the Debian ones)")


def load_vars(name: str) -> dict[str, Any]:
    """One file of inventory/group_vars/all, as Ansible would load it."""
    return yaml.safe_load((GROUP_VARS / name).read_text())


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """find_tool, for tests: tool("ansible-lint") is a path, or the test is skipped."""
    return find_tool


@pytest.fixture(scope="session")
def topology() -> dict[str, Any]:
    return load_vars("topology.yml")["podpath_topology"]


@pytest.fixture(scope="session")
def versions() -> dict[str, Any]:
    return load_vars("versions.yml")["podpath_versions"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    """Every template of roles/cluster_* rendered by Ansible for cp1, worker1 and worker2:
    template id (role/file) -> host -> text."""
    return render_all(find_tool("ansible-playbook"), tmp_path_factory.mktemp("rendered"))
