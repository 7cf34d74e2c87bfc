"""`vagrant validate` of the Vagrantfile, for each provider whose configuration Vagrant can
check here, and the facts about it that validate does not look at."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"

# VirtualBox is not installed here. To decide whether the provider is usable, Vagrant only
# runs `VBoxManage --version`; this stand-in answers that (and logs every call) so that Vagrant
# validates the VirtualBox settings of the Vagrantfile too. The test then checks that
# nothing else was asked of it. Where VirtualBox is installed, the real one is used.
VBOXMANAGE_STAND_IN = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls.log"
[ "$1" = --version ] && echo 7.0.20r163906
exit 0
"""


def vagrant_validate(vagrant: str, tmp_path: Path, provider: str | None, *args: str,
                     path_prefix: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"), VAGRANT_NO_COLOR="1",
               VAGRANT_CHECKPOINT_DISABLE="1")
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    if provider:
        env["VAGRANT_DEFAULT_PROVIDER"] = provider
    return subprocess.run([vagrant, "validate", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_validate_without_provider_settings(tool: Callable[[str], str], tmp_path: Path) -> None:
    result = vagrant_validate(tool("vagrant"), tmp_path, None, "--ignore-provider")
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_with_libvirt_settings(tool: Callable[[str], str], tmp_path: Path) -> None:
    vagrant = tool("vagrant")
    plugins = subprocess.run([vagrant, "plugin", "list"], capture_output=True, text=True, timeout=60, check=False)
    if "vagrant-libvirt" not in plugins.stdout:
        pytest.skip("vagrant-libvirt is not installed here (Debian package vagrant-libvirt)")
    result = vagrant_validate(vagrant, tmp_path, "libvirt")
    assert result.returncode == 0, result.stdout + result.stderr


def test_validate_with_virtualbox_settings(tool: Callable[[str], str], tmp_path: Path) -> None:
    vagrant = tool("vagrant")
    if shutil.which("VBoxManage"):
        result = vagrant_validate(vagrant, tmp_path, "virtualbox")
        assert result.returncode == 0, result.stdout + result.stderr
        return
    stand_in = tmp_path / "bin"
    stand_in.mkdir()
    (stand_in / "VBoxManage").write_text(VBOXMANAGE_STAND_IN)
    (stand_in / "VBoxManage").chmod(0o755)
    result = vagrant_validate(vagrant, tmp_path, "virtualbox", path_prefix=str(stand_in))
    assert result.returncode == 0, result.stdout + result.stderr
    calls = set((stand_in / "calls.log").read_text().split("\n")) - {""}
    assert calls == {"--version"}, f"Vagrant asked VirtualBox for more than its version: {calls}"


def test_provisioner_runs_the_site_playbook_on_all_machines() -> None:
    text = VAGRANTFILE.read_text()
    playbook = re.search(r'ansible\.playbook = "([^"]+)"', text)
    assert playbook and (ROOT / playbook.group(1)).is_file(), "the provisioner's playbook must exist"
    assert 'ansible.limit = "all"' in text
    assert "--nicpromisc2" in text and '"allow-all"' in text


def test_vagrantfile_repeats_no_address_or_version(topology: dict, versions: dict) -> None:
    text = VAGRANTFILE.read_text()
    repeated = [node["ip"] for node in topology["nodes"] if node["ip"] in text]
    repeated += [box["version"] for box in versions["boxes"].values() if box["version"] in text]
    assert not repeated, f"read these from the topology and versions files instead: {repeated}"
