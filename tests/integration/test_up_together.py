"""Real `podpath up`s that start while another play runs are built in one play
(podpath.play.together): each lab is whole afterwards, each `up` says what it waited for and
reports its own lab, a lab whose topology is refused fails alone and leaves no trace, and
the labs' logs are found from each lab's own folder."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import time

import pytest
import yaml
from labtools import ROOT, lab_namespaces, lab_processes, new_lab_name, podpath

from podpath.model import labdir, topology
from podpath.model.labdir import RUNS
from podpath.play.together import Together

pytestmark = [pytest.mark.netns, pytest.mark.slow]


def queued() -> set[str]:
    return {p.stem for p in Together().queue.glob("*.json")}


def test_ups_queued_behind_a_play_are_built_together_and_each_lab_is_whole(lab_names, tmp_path):
    names = [new_lab_name("t") for _ in range(3)]
    lab_names.extend(names)
    bad_name = new_lab_name("t")
    lab_names.append(bad_name)
    bad = copy.deepcopy(topology.load())
    bad["service_network"] = "10.96.0.0/33"
    bad_file = tmp_path / "bad.yml"
    bad_file.write_text(yaml.safe_dump({"podpath_topology": bad}))

    queue = Together()
    held = queue.lock(lambda leader: None)  # as if another `up` were running its play
    try:
        ups = {name: subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", name], cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in names}
        ups[bad_name] = subprocess.Popen([sys.executable, "-m", "podpath.cli", "up", "--lab", bad_name,
                                          "--topology", str(bad_file)], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while queued() < set(ups) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queued() >= set(ups), f"not every up queued its lab: {queued()}"
    finally:
        Together.unlock(held)
    said = {name: up.communicate(timeout=300) for name, up in ups.items()}
    codes = {name: up.returncode for name, up in ups.items()}

    for name in ups:
        assert "waits its turn" in said[name][1], f"{name} waited without saying so:\n{said[name][1]}"
    leaders = [name for name in ups if "labs started together in one play" in said[name][1]]
    assert len(leaders) == 1, f"expected one play for all four labs, led by one up: {leaders}"

    assert codes[bad_name] == 2 and "topology refused" in said[bad_name][1], said[bad_name]
    assert not lab_namespaces(bad_name) and not os.path.exists(labdir.lab_dir(bad_name)), \
        "the refused lab left something behind"
    for name in names:
        assert codes[name] == 0, f"up of {name} failed:\n{said[name][1]}"
        assert f"lab {name} is up" in said[name][0]
        assert len(lab_namespaces(name)) == 12 and len(lab_processes(name)) > 0, f"lab {name} is not whole"
        status = podpath("status", "--lab", name)
        assert status.returncode == 0, status.stdout + status.stderr
        runs = [p for p in (RUNS / name).iterdir() if p.name.startswith("netns-lab")]
        assert runs and all(p.is_dir() for p in runs), f"lab {name}'s folder has no log of its play"
        played = [p.resolve() for p in runs if p.is_symlink()]
    for name in names:
        assert podpath("down", "--lab", name, "-q").returncode == 0
    assert not any(p.exists() for p in played), "the log of the labs' play outlived every lab of it"
