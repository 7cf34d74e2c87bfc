"""Unit tests leave nothing on the host: the topology check's marks go to a temporary folder, and
the C programs the tests of the ingress controller, its lease and the speaker run are built in
folders of the test session's own."""
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
def ingress_program(tmp_path_factory):
    """podpath-ingress, the ingress controllers' program, built from its source (ingress.c) into a
    folder of the test session's own."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build podpath-ingress (apt-get install gcc)")
    return pause_build.compile_program(pause_build.INGRESS_SOURCE,
                                       tmp_path_factory.mktemp("ingress") / "podpath-ingress")


@pytest.fixture(scope="session")
def speaker_program(tmp_path_factory) -> Path:
    """podpath-speaker built from podpath/runtime/speaker.c into a folder of the tests' own."""
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build podpath-speaker (apt-get install gcc)")
    return pause_build.compile_program(pause_build.SPEAKER_SOURCE,
                                       tmp_path_factory.mktemp("speaker") / "podpath-speaker")
