"""How the CLI runs a play, against real labs: through ansible-runner; a signal to the CLI stops
its play while the lab stays locked; a killed CLI takes its play with it; and the next command
on the lab finds the lab whole again."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from labtools import ROOT, lab_namespaces, new_lab_name, podpath

from podpath.model.labdir import RUNS
from podpath.model.topology import TOPOLOGY_FILE
from podpath.play.playbook import play_processes

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TASK_LINE = re.compile(r"\] \d+/\d+ (.+)$", re.MULTILINE)


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="module")
def slow_topology(tmp_path_factory) -> str:
    """The reference topology with 80 idle pods per node: its wiring task takes a second or
    more, so a signal sent when the task starts finds the play still in it."""
    data = yaml.safe_load(TOPOLOGY_FILE.read_text())
    data["podpath_topology"]["workloads"]["idle_pods_per_node"] = 80
    path = tmp_path_factory.mktemp("topology") / "slow.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def up_until_wiring(name: str, topology: str | None = None) -> tuple[subprocess.Popen, str]:
    """Start `podpath up --lab NAME`; return it once its progress shows the wiring task, with
    what it printed so far."""
    extra = ["--topology", topology] if topology else []
    cli = subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", name, *extra], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in cli.stderr:
        seen += line
        if "Wire the namespaces" in line:
            break
    assert "Wire the namespaces" in seen, f"up ended before wiring:\n{seen}"
    return cli, seen


def newest_log(name: str) -> str:
    run = max((p for p in (RUNS / name).iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return next(run.glob("artifacts/*/stdout")).read_text()


def test_up_runs_its_play_through_ansible_runner(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    first = podpath("up", "--lab", name)
    assert first.returncode == 0, first.stderr
    again = podpath("up", "--lab", name)
    assert again.returncode == 0 and "(0 tasks changed)" in again.stdout, again.stdout + again.stderr
    assert TASK_LINE.findall(first.stderr) == TASK_LINE.findall(again.stderr), "the two runs ran other tasks"
    runs = [p for p in (RUNS / name).iterdir() if p.is_dir()]
    assert len(runs) == 2 and all(list(p.glob("artifacts/*/job_events/*.json")) for p in runs), runs
    assert not play_processes(name), "a play outlived its command"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_cli_stops_its_play_before_the_lab_is_free(lab_names, signum, slow_topology):
    name = new_lab_name("k")
    lab_names.append(name)
    cli, seen = up_until_wiring(name, slow_topology)
    cli.send_signal(signum)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 128 + signum, f"exit {cli.returncode}\n{seen}{err}"
    assert "interrupted" in err and f"podpath up --lab {name} finishes it" in err, err
    # the CLI ended only after its play, which it stopped before the play's end
    assert not play_processes(name), "the CLI ended before its play"
    assert "PLAY RECAP" not in newest_log(name), "the play ran to its end: " + newest_log(name)[-1500:]
    again = podpath("up", "--lab", name, "-q", "--topology", slow_topology)
    assert again.returncode == 0, again.stderr
    whole = podpath("up", "--lab", name, "--topology", slow_topology)
    assert "(0 tasks changed)" in whole.stdout, f"the lab was not whole after the repair: {whole.stdout}"


def test_a_killed_cli_takes_its_play_with_it(lab_names, slow_topology):
    name = new_lab_name("k")
    lab_names.append(name)
    cli, _ = up_until_wiring(name, slow_topology)
    assert play_processes(name), "no play process is marked with its lab"
    cli.kill()
    cli.wait()
    assert wait_for(lambda: not play_processes(name), timeout=10), \
        f"the play went on after its CLI was killed: {play_processes(name)}"
    again = podpath("up", "--lab", name, "-q", "--topology", slow_topology)  # the lock is free: up finishes it
    assert again.returncode == 0, again.stderr
    whole = podpath("up", "--lab", name, "--topology", slow_topology)
    assert "(0 tasks changed)" in whole.stdout, f"the lab was not whole after the repair: {whole.stdout}"


def test_a_killed_down_is_finished_by_the_next_down(lab_names):
    name = new_lab_name("k")
    lab_names.append(name)
    assert podpath("up", "--lab", name, "-q").returncode == 0
    cli = subprocess.Popen([sys.executable, "-m", "podpath.cli", "down", "--lab", name], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in cli.stderr:
        if "] 1/" in line or "] 2/" in line:
            break
    cli.kill()
    cli.wait()
    down = podpath("down", "--lab", name)
    assert down.returncode == 0, down.stderr
    assert not lab_namespaces(name), f"down left {lab_namespaces(name)}"


def test_two_labs_built_at_once_both_come_up(lab_names):
    names = [new_lab_name("k"), new_lab_name("k")]
    lab_names.extend(names)
    clis = [subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", name, "-q"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    done = [cli.communicate(timeout=300) for cli in clis]
    assert [cli.returncode for cli in clis] == [0, 0], done
    for name in names:
        again = podpath("up", "--lab", name)
        assert "(0 tasks changed)" in again.stdout, f"lab {name} was not whole: {again.stdout}{again.stderr}"
