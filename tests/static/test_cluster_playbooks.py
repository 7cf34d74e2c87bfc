"""What the Ansible tools can tell without a machine: every playbook parses, and every
Ansible and YAML file of both labs passes ansible-lint's production profile and yamllint."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted(path.name for path in (ROOT / "playbooks").glob("*.yml"))
# Both inventories: the netns lab's (localhost) and the example of real machines (the
# cluster groups), so that every play's host pattern resolves.
INVENTORIES = ["-i", "inventory/localhost.yml", "-i", "inventory/hosts.example.yml"]
# Every Ansible and YAML file of both labs.
ANSIBLE_FILES = [
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "playbooks").glob("*.yml")),
    "inventory/hosts.example.yml",
    "inventory/localhost.yml",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "inventory" / "group_vars" / "all").glob("*.yml")),
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "roles").iterdir() if path.is_dir()),
]


def run(argv: list[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_cluster_playbooks_exist() -> None:
    assert {"site.yml", "reset.yml"} <= set(PLAYBOOKS)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(tool: Callable[[str], str], playbook: str) -> None:
    result = run([tool("ansible-playbook"), "--syntax-check", *INVENTORIES, f"playbooks/{playbook}"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile(tool: Callable[[str], str]) -> None:
    result = run([tool("ansible-lint"), "--offline", "--profile", "production", "--format", "pep8",
                  *ANSIBLE_FILES], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint(tool: Callable[[str], str]) -> None:
    result = run([tool("yamllint"), "--strict", "--format", "parsable", *ANSIBLE_FILES])
    assert result.returncode == 0, result.stdout + result.stderr
