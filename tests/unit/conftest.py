"""Unit tests leave nothing on the host: the topology check's marks go to a temporary folder."""
from __future__ import annotations

import pytest

from podpath.model import topology


@pytest.fixture(autouse=True)
def schema_marks_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(topology, "SCHEMA_PASSED", tmp_path / "schema-passed")
