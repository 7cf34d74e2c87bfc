"""Unit tests leave nothing on the host: the topology check's marks go to a temporary folder, and
the C program the tests of the ingress controller and its lease run is built in one."""
from __future__ import annotations

import pytest

from podpath.model import topology


@pytest.fixture(autouse=True)
def schema_marks_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "SCHEMA_PASSED", tmp_path / "schema-passed")


@pytest.fixture(scope="session")
def ingress_program(tmp_path_factory):
    """podpath-ingress, the ingress controllers' program, built from its source (ingress.c) into a
    folder of the test session's own."""
    import shutil

    from podpath.runtime import pause_build

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build podpath-ingress (apt-get install gcc)")
    return pause_build.compile_program(pause_build.INGRESS_SOURCE,
                                       tmp_path_factory.mktemp("ingress") / "podpath-ingress")
