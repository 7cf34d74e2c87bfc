"""The podpath.lab collection builds from the repository's module files, and ansible-test
sanity finds nothing in it.

collection/build.py assembles library/, module_utils/ and plugins/action/ into a collection
(imports of the podpath module_utils rewritten for it), builds the tarball with
ansible-galaxy, installs it in a temporary folder and runs every ansible-test sanity test
there (validate-modules, pylint, pep8, import, ansible-doc, yamllint, ...). The only
ignores are in collection/tests/sanity/ignore-2.19.txt, each with its reason. The first run
on a machine makes ansible-test's test environments under build/ (1.5 to 2.5 minutes);
later runs take about 15 s. See docs/module.md.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.static, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUILD = [sys.executable, str(ROOT / "collection" / "build.py")]


def version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


@pytest.fixture(scope="module")
def tarball() -> Path:
    done = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    path = ROOT / "build" / f"podpath-lab-{version()}.tar.gz"
    assert path.is_file(), done.stdout
    return path


def test_the_collection_holds_the_repositorys_modules_utils_and_action_plugins(tarball):
    expected = {f"plugins/modules/{p.name}" for p in (ROOT / "library").glob("podpath_*.py")}
    expected |= {f"plugins/module_utils/{p.name}" for p in (ROOT / "module_utils").glob("podpath_*.py")}
    expected |= {f"plugins/action/{p.name}" for p in (ROOT / "plugins" / "action").glob("podpath_*.py")}
    with tarfile.open(tarball) as archive:
        files = {m.name for m in archive.getmembers() if m.isfile()}
        manifest = json.load(archive.extractfile("MANIFEST.json"))
    assert {f for f in files if f.endswith(".py")} == expected
    assert {"LICENSE", "README.md", "meta/runtime.yml", "tests/sanity/ignore-2.19.txt"} <= files
    assert manifest["collection_info"]["version"] == version(), "the collection's version is not pyproject.toml's"
    assert manifest["collection_info"]["license"] == ["Apache-2.0"]


def test_its_python_files_are_the_repositorys_with_the_collections_imports(tarball):
    sources = {f"plugins/modules/{p.name}": p for p in (ROOT / "library").glob("podpath_*.py")}
    sources |= {f"plugins/module_utils/{p.name}": p for p in (ROOT / "module_utils").glob("podpath_*.py")}
    with tarfile.open(tarball) as archive:
        for name, source in sources.items():
            shipped = archive.extractfile(name).read().decode()
            assert "ansible.module_utils.podpath_" not in shipped, name
            assert shipped == re.sub(r"ansible\.module_utils\.podpath_",
                                     "ansible_collections.podpath.lab.plugins.module_utils.podpath_",
                                     source.read_text()), f"{name} differs from {source} by more than its imports"
            ast.parse(shipped)


def test_every_ignore_entry_says_why():
    lines = (ROOT / "collection" / "tests" / "sanity" / "ignore-2.19.txt").read_text().splitlines()
    for line in lines:
        assert re.match(r"^\S+ \S+:\S+ # \w.+", line), f"an ignore entry without its reason: {line!r}"


def test_ansible_test_sanity_finds_nothing_in_the_built_collection():
    done = subprocess.run([*BUILD, "--sanity"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    findings = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
                if re.match(r"ERROR: (plugins|meta|tests)/", line)]
    assert done.returncode == 0 and findings == [], (
        f"ansible-test sanity: {len(findings)} finding(s)\n" + "\n".join(findings or done.stderr.splitlines()[-40:]))
    assert "Running sanity test \"validate-modules\"" in done.stdout + done.stderr
