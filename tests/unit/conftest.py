"""Unit tests leave nothing on the host: the topology check's marks go to a temporary folder.
The speaker program is built once from its source for the tests that run it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podpath.model import topology
from podpath.runtime import pause_build


@pytest.fixture(autouse=True)
def schema_marks_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "SCHEMA_PASSED", tmp_path / "schema-passed")


@pytest.fixture(scope="session")
def speaker_program(tmp_path_factory) -> Path:
    """podpath-speaker built from podpath/runtime/speaker.c into a folder of the tests' own."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build podpath-speaker (apt-get install gcc)")
    return pause_build.compile_program(pause_build.SPEAKER_SOURCE,
                                       tmp_path_factory.mktemp("speaker") / "podpath-speaker")
