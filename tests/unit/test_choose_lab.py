"""Which lab a command works on when --lab is not given (podpath.cli.choose_lab)."""
from __future__ import annotations

import argparse

import pytest

from podpath import cli
from podpath.evidence import status

CASES = [
    # (verb, --lab, $PODPATH_LAB, labs on the host, the lab chosen or the error's words, said on stderr)
    ("status", "stu1", None, ["a", "b"], "stu1", ""),
    ("status", None, "stu2", ["a", "b"], "stu2", ""),
    ("status", None, None, ["stu1"], "stu1", "using lab stu1, the only lab on this host"),
    ("down", None, None, ["stu1"], "stu1", "using lab stu1"),
    ("up", None, None, ["stu1"], "stu1", "using lab stu1"),
    ("status", None, None, ["podpath"], "podpath", ""),
    ("up", None, None, [], "podpath", ""),
    ("status", None, None, [], "there is no lab on this host", ""),
    ("verify", None, None, ["stu1", "stu2"], "2 labs (stu1, stu2): say which with --lab NAME or set PODPATH_LAB", ""),
    ("up", None, None, ["stu1", "stu2"], "2 labs (stu1, stu2)", ""),
]


@pytest.mark.parametrize("verb, lab, env, labs, expected, said", CASES)
def test_the_lab_a_command_works_on(monkeypatch, capsys, verb, lab, env, labs, expected, said):
    monkeypatch.setattr(status, "list_labs", lambda: [{"lab": name} for name in labs])
    if env:
        monkeypatch.setenv("PODPATH_LAB", env)
    else:
        monkeypatch.delenv("PODPATH_LAB", raising=False)
    args = argparse.Namespace(verb=verb, lab=lab)
    if " " in expected:
        with pytest.raises(cli.CliError) as error:
            cli.choose_lab(args)
        assert expected in str(error.value)
    else:
        assert cli.choose_lab(args) == expected
        err = capsys.readouterr().err
        assert (said in err) if said else err == ""
