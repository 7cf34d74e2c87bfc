"""podpath's warm controller against real labs: a play run in its child gives what the usual
way (ansible-runner starting ansible-playbook) gives; it restarts when it would run other
code or settings; a CLI that dies takes its play with it; and it does not outlive its use."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath import controller
from podpath.runner import ARTIFACTS, playbook_env

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TASK_LINE = re.compile(r"\] \d+/\d+ (.+)$", re.MULTILINE)


@pytest.fixture
def lab_names():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    names: list[str] = []
    yield names
    for name in names:
        down = podpath("down", "--lab", name, "-q")
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def up_until_wiring(name: str) -> tuple[subprocess.Popen, str]:
    """Start `podpath up --lab NAME`; return it once its progress shows the wiring task, with
    what it printed so far."""
    cli = subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", name], cwd=controller.ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in cli.stderr:
        seen += line
        if "Wire the namespaces" in line:
            break
    return cli, seen


def test_a_play_in_the_controller_matches_the_usual_way(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    first = podpath("up", "--lab", name)
    assert first.returncode == 0, first.stderr
    assert controller.status() is not None, "podpath up ran without starting the controller"
    warm = podpath("up", "--lab", name)
    usual = podpath("up", "--lab", name, env=dict(os.environ, PODPATH_CONTROLLER="off"))
    assert warm.returncode == 0 and usual.returncode == 0, warm.stderr + usual.stderr
    assert "(0 tasks changed)" in warm.stdout and "(0 tasks changed)" in usual.stdout, warm.stdout + usual.stdout
    assert "tasks changed)" in first.stdout and "(0 tasks changed)" not in first.stdout, first.stdout
    assert TASK_LINE.findall(warm.stderr) == TASK_LINE.findall(usual.stderr), "the two ways ran other tasks"
    assert "running ansible-playbook the usual way" not in warm.stderr
    runs = sorted(p for p in (ARTIFACTS / name).iterdir())
    assert any((p / "stdout").exists() for p in runs), "the controller's run wrote no log"
    assert any((p / "artifacts").is_dir() for p in runs), "PODPATH_CONTROLLER=off did not use ansible-runner"


def test_each_run_is_a_new_child_of_the_same_controller(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    assert podpath("up", "--lab", name, "-q").returncode == 0
    before = controller.status()
    assert podpath("up", "--lab", name, "-q").returncode == 0
    after = controller.status()
    assert before and after and after["pid"] == before["pid"], (before, after)
    assert after["runs"] == before["runs"] + 1


def test_other_ansible_settings_start_a_new_controller(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    assert podpath("up", "--lab", name, "-q").returncode == 0
    before = controller.status()
    other = podpath("up", "--lab", name, "-q", env=dict(os.environ, ANSIBLE_TIMEOUT="17"))
    assert other.returncode == 0, other.stderr
    after = controller.status()
    assert before and after and after["pid"] != before["pid"], "a run with other ANSIBLE_* settings reused it"
    assert "stops: the environment differs" in controller.log_path().read_text()


def test_a_killed_cli_interrupts_its_play_and_frees_the_lab(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    cli, seen = up_until_wiring(name)
    cli.kill()
    cli.wait()
    assert "Wire the namespaces" in seen, f"up ended before wiring:\n{seen}"
    assert wait_for(lambda: controller.status()["running"] == 0), "the play went on after its CLI was killed"
    log = max((ARTIFACTS / name).iterdir(), key=lambda p: p.stat().st_mtime) / "stdout"
    assert "User interrupted execution" in log.read_text(), log.read_text()[-1500:]
    again = podpath("up", "--lab", name, "-q")  # the lock is free, and up finishes the lab
    assert again.returncode == 0, again.stderr


def test_the_last_down_stops_the_controller_and_an_earlier_one_does_not(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    assert podpath("up", "--lab", name, "-q").returncode == 0
    assert podpath("down", "--lab", name, "-q").returncode == 0
    others = [p.name for p in Path("/run/podpath").iterdir() if not p.name.startswith(".")]
    if others:
        assert controller.status() is not None, f"down stopped the controller while {others} remain"
    else:
        assert controller.status() is None, "the host's last lab is down but the controller still runs"


def test_an_idle_controller_stops_by_itself():
    if os.geteuid() != 0:
        pytest.skip("the controller's folder is root's")
    controller.stop()
    controller.start(dict(os.environ, **playbook_env(), PODPATH_CONTROLLER_IDLE="1"))
    pid = controller.status()["pid"]
    assert wait_for(lambda: controller.status() is None, timeout=20), "the idle controller did not stop"
    assert f"controller {pid} stops: idle for 1 s" in controller.log_path().read_text()


def test_a_run_whose_process_dies_fails_and_is_not_run_again_the_usual_way(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    controller.stop()
    cli, seen = up_until_wiring(name)
    run_pid = int(Path(f"/proc/{controller.status()['pid']}/task/{controller.status()['pid']}/children")
                  .read_text().split()[0])
    os.kill(run_pid, signal.SIGKILL)
    out, err = cli.communicate(timeout=120)
    seen += err
    assert cli.returncode == 1, seen
    assert "ended without a result" in seen, seen
    assert "running ansible-playbook the usual way" not in seen, "a lost run was run again"
    again = podpath("up", "--lab", name, "-q", "--wait")
    assert again.returncode == 0, again.stderr


def test_two_labs_built_at_once_run_side_by_side_in_one_controller(lab_names):
    names = [new_lab_name("k"), new_lab_name("k")]
    lab_names.extend(names)
    controller.start(dict(os.environ, **playbook_env()))
    before = controller.status()
    clis = [subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", name, "-q"], cwd=controller.ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    done = [cli.communicate(timeout=300) for cli in clis]
    assert [cli.returncode for cli in clis] == [0, 0], done
    after = controller.status()
    assert after["pid"] == before["pid"] and after["runs"] == before["runs"] + 2, (before, after)
    for name in names:
        again = podpath("up", "--lab", name)
        assert "(0 tasks changed)" in again.stdout, f"lab {name} was not whole: {again.stdout}{again.stderr}"
