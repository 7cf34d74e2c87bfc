"""Building podpath's C programs (podpath/runtime/pause_build.py) when several `podpath up`s
find them stale at the same moment, as a class does after an update: every builder succeeds,
every program is there and whole, and no temporary file is left behind; and the lab runs the
ingress controllers' and the speakers' programs from where the builder puts them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILDERS = 6
# one builder: pause_build with its programs in FOLDER instead of the environment's bin/
BUILDER = r"""
import sys
from pathlib import Path
from podpath.runtime import pause_build
folder = Path(sys.argv[1])
pause_build.pause_path = lambda: folder / "podpath-pause"
pause_build.shim_path = lambda: folder / "podpath-shim"
pause_build.ingress_path = lambda: folder / "podpath-ingress"
pause_build.speaker_path = lambda: folder / "podpath-speaker"
pause_build.build()
"""


def test_builders_started_together_all_succeed_and_leave_whole_programs(tmp_path):
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler (apt-get install gcc)")
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(BUILDERS)]
    outs = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    for p in procs:
        p.stdout.close()
    failed = [out for code, out in outs if code != 0]
    assert not failed, f"{len(failed)} of {BUILDERS} builders failed; the first said:\n{failed[0]}"
    for name in ("podpath-pause", "podpath-shim", "podpath-ingress", "podpath-speaker"):
        program = tmp_path / name
        assert program.exists() and os.access(program, os.X_OK), f"{name} was not built"
        assert program.read_bytes()[:4] == b"\x7fELF", f"{name} is not a whole executable"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
    assert not left, f"temporary files left behind: {left}"


def test_the_lab_runs_the_ingress_controllers_program_where_the_builder_puts_it():
    """The plan gets the lab's Python (ansible_playbook_python here, the runtime's venv on a
    fleet's host, where every built program is installed beside it)."""
    from podpath.model import plan, topology, workloads
    from podpath.runtime import pause_build

    containers = workloads.render(plan.build(topology.load(), "t"), sys.executable)["ingress"]["containers"]
    assert containers and all(c["argv"][0] == str(pause_build.ingress_path()) for c in containers), \
        [c["argv"][:2] for c in containers]
    assert (pause_build.INGRESS_SOURCE, pause_build.ingress_path()) in pause_build.programs()


def test_the_lab_runs_the_speaker_the_builder_builds():
    from podpath.model import plan, topology, workloads
    from podpath.runtime import pause_build

    lab = plan.build(topology.load(), "podpath")
    python = pause_build.pause_path().with_name("python")  # the environment's Python, beside its programs
    speakers = workloads.render(lab, str(python))["metallb"]["containers"]
    assert len(speakers) == len(lab.nodes)
    assert {c["argv"][0] for c in speakers} == {str(pause_build.speaker_path())}
    assert (pause_build.SPEAKER_SOURCE, pause_build.speaker_path()) in pause_build.programs()
