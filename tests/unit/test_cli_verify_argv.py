"""The verifier's pytest run: the plugins it turns off are pytest's own, by their names."""
from __future__ import annotations

import argparse

from _pytest.config import default_plugins

from podpath import cli


def test_every_plugin_the_verifier_turns_off_is_one_of_pytests_own():
    # pytest ignores `-p no:NAME` for a NAME it has no plugin by: a renamed plugin would run again unnoticed
    assert set(cli.VERIFY_NO_PLUGINS) <= set(default_plugins)


def test_the_verifier_runs_pytest_without_them_and_keeps_the_suite_last_before_the_options_it_adds():
    argv = cli.verify_argv(argparse.Namespace(lab="stu01", junitxml=None, disruptive=False, verbose=False), [])
    turned_off = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-p"}
    assert {f"no:{name}" for name in cli.VERIFY_NO_PLUGINS} <= turned_off
    assert argv[argv.index("--tb=no") - 1] == str(cli.ROOT / "tests" / "verify")
