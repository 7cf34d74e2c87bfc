"""podpath_containers writes its files with the mode a playbook means, however YAML read it.

An unquoted `mode: 0644` reaches the module as the number 420; the file must get 0644, not
0420 (what reading the number's decimal digits as octal made of it). `mode: 644`, the
number six hundred and forty-four, is refused before anything is written. Both ways of
running the module (in-process and the usual way) are run.
"""
from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from podpath.model import labdir

pytestmark = pytest.mark.netns  # writes under /run/podpath, as root

ROOT = Path(__file__).resolve().parents[2]
RUN_ROOT = Path(labdir.RUN_ROOT)

PLAYBOOK = """\
- name: Write a lab's files with podpath_containers
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the files, no container
      podpath_containers:
        lab: {lab}
        group: files
        files:
          - {{path: {folder}/quoted.conf, content: "a\\n", mode: "0600"}}
          - {{path: {folder}/unquoted.conf, content: "b\\n", mode: {mode}}}
"""


@pytest.fixture
def lab(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("podpath_containers runs as root: run the integration tests as root")
    name = "f" + secrets.token_hex(3)
    yield name
    shutil.rmtree(RUN_ROOT / name, ignore_errors=True)


def play(lab: str, mode: str, tmp_path: Path, in_process: bool) -> subprocess.CompletedProcess:
    playbook = tmp_path / "files.yml"
    playbook.write_text(PLAYBOOK.format(lab=lab, folder=labdir.lab_dir(lab), mode=mode))
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), str(playbook),
            "-e", f"podpath_in_process={'true' if in_process else 'false'}"]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "usual"])
def test_an_unquoted_yaml_octal_mode_gives_that_mode(lab, tmp_path, in_process):
    done = play(lab, "0644", tmp_path, in_process)
    assert done.returncode == 0, done.stdout[-3000:]
    assert stat.S_IMODE(os.stat(RUN_ROOT / lab / "unquoted.conf").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(RUN_ROOT / lab / "quoted.conf").st_mode) == 0o600


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "usual"])
def test_a_mode_without_its_leading_zero_is_refused_and_nothing_is_written(lab, tmp_path, in_process):
    done = play(lab, "644", tmp_path, in_process)
    assert done.returncode != 0
    assert "644 (a number: octal 1204)" in done.stdout, done.stdout[-3000:]
    assert not (RUN_ROOT / lab).exists()
