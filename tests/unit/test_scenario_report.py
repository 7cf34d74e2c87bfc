"""The verifier's report of a failed scenario: its hop, each failed check's evidence, and the
command that shows the hop (podpath.evidence.report, podpath.evidence.scenarios.LOOK)."""
from __future__ import annotations

import pytest

from podpath.evidence.report import EVIDENCE_CHARS, ScenarioReport
from podpath.evidence.scenarios import LOOK, LOOK_NFTABLES, SCENARIOS

FILL = {"{lab}": "stu1", "{nodes}": "cp1 worker1 worker2", "<MetalLB address>": "192.168.56.200",
        "<ingress host>": "demo.lab.local"}


def test_every_scenario_has_a_hop_and_a_command_for_each_lab():
    assert sorted(LOOK) == sorted(SCENARIOS)
    for number, (hop, netns, cluster) in LOOK.items():
        assert hop and netns and cluster, f"scenario {number} lacks a hop or a command"


@pytest.mark.parametrize("number", sorted(LOOK))
def test_the_netns_command_names_the_lab_it_is_for(number):
    command = ScenarioReport("netns", FILL).next_command(number)
    assert "{" not in command, f"scenario {number}: a placeholder left unfilled: {command}"
    assert "stu1" in command, f"scenario {number}: the command does not name lab stu1: {command}"


def test_a_failed_scenario_gives_hop_evidence_and_next_command():
    report = ScenarioReport("netns", FILL)
    long = "x" * (EVIDENCE_CHARS + 50)
    bad = [("test_a[echo-1]", "failed", "pod echo-1 got exit 28"), ("test_a[echo-2]", "failed", long)]
    lines = report.failure_lines(11, bad)
    text = "\n".join(lines)
    assert lines[0].split() == ["hop:", *LOOK[11][0].split()]
    assert "check:    test_a[echo-1]" in text and "evidence: pod echo-1 got exit 28" in text
    assert any(line.strip().endswith("...") and len(line.split("evidence: ")[1]) == EVIDENCE_CHARS for line in lines)
    assert lines[-1].strip() == "next:     " + LOOK[11][1].replace("{lab}", "stu1").replace(
        "{nodes}", "cp1 worker1 worker2")


def test_more_than_three_failed_checks_are_counted_not_listed():
    bad = [(f"t[{i}]", "failed", f"m{i}") for i in range(5)]
    text = "\n".join(ScenarioReport("cluster", FILL).failure_lines(7, bad))
    assert text.count("check:") == 3 and "2 more failed check(s)" in text
    assert "vagrant ssh" in text, "a cluster lab's next command runs through Vagrant"


def test_a_passing_scenario_has_no_failure_lines():
    report = ScenarioReport("netns", FILL)
    report.outcomes[5] = [("t", "passed", "")]
    assert not any("hop:" in line for line in report.lines())


def test_a_run_that_checked_nothing_does_not_say_all_passed():
    assert ScenarioReport("netns", FILL).lines()[-1].endswith("no check ran")


@pytest.mark.parametrize("number", sorted(LOOK_NFTABLES))
def test_in_nftables_mode_kube_proxys_hops_are_shown_with_nft(number):
    """A lab whose topology says kube_proxy.mode: nftables has no KUBE-* chains to grep: the
    commands of kube-proxy's hops list the table ip kube-proxy instead."""
    for kind in ("netns", "cluster"):
        report = ScenarioReport(kind, FILL, "nftables")
        command = report.next_command(number)
        assert "nft list" in command and "kube-proxy" in command and "iptables" not in command, command
        assert report.failure_lines(number, [("t", "failed", "x")])[0].split()[1:] == LOOK_NFTABLES[number][0].split()
    assert ScenarioReport("netns", FILL).next_command(number) == ScenarioReport("netns", FILL, "iptables").next_command(
        number), "iptables, the default mode, keeps the iptables commands"
    assert "iptables" in ScenarioReport("netns", FILL).next_command(number)


class _Marker:
    def __init__(self, *args):
        self.args = args


class _Item:
    """A collected check of scenario NUMBER on lab TARGET (the parametrized `lab` fixture)."""

    def __init__(self, nodeid: str, number: int, target: str | None):
        self.nodeid = nodeid
        self._number = number
        if target is not None:
            self.callspec = type("CallSpec", (), {"params": {"lab": type("Target", (), {"id": target})()}})()

    def get_closest_marker(self, name):
        return _Marker(self._number) if name == "scenario" else None


class _Report:
    def __init__(self, nodeid: str, outcome: str, message: str = ""):
        self.nodeid, self.when, self.outcome = nodeid, "call", outcome
        self.passed, self.failed, self.skipped = outcome == "passed", outcome == "failed", outcome == "skipped"
        self.longrepr = type("Longrepr", (), {"reprcrash": type("Crash", (), {"message": message})()})()


def _finish(report: ScenarioReport, **options) -> None:
    config = type("Config", (), {"getoption": lambda self, name, default=None: options.get(name, default)})()
    report.pytest_sessionfinish(type("Session", (), {"config": config})(), 0)


def test_a_run_of_several_labs_writes_each_labs_own_scenarios(tmp_path):
    import json

    report = ScenarioReport("netns", dict(FILL, **{"{lab}": "<lab>"}))
    items = [_Item(f"t.py::test_x[{lab}]", 11, lab) for lab in ("stu1", "stu2")]
    items += [_Item(f"t.py::test_y[{lab}]", 3, lab) for lab in ("stu1", "stu2")]
    report.pytest_collection_modifyitems(None, None, items)
    for nodeid, outcome in (("t.py::test_x[stu1]", "passed"), ("t.py::test_x[stu2]", "failed"),
                            ("t.py::test_y[stu1]", "passed"), ("t.py::test_y[stu2]", "passed")):
        report.pytest_runtest_logreport(_Report(nodeid, outcome, "AssertionError: no REJECT rule"))
    _finish(report, scenario_json_each=str(tmp_path))
    stu1, stu2 = (json.loads((tmp_path / f"{lab}.json").read_text()) for lab in ("stu1", "stu2"))
    assert stu1["11"] == {"outcome": "PASS", "failures": []} and stu1["3"]["outcome"] == "PASS"
    assert stu2["11"] == {"outcome": "FAIL", "failures": ["no REJECT rule"]} and stu2["3"]["outcome"] == "PASS"
    assert stu1["1"]["outcome"] == "NOT RUN"


def test_a_run_of_one_lab_writes_its_file_under_the_labs_name(tmp_path):
    import json

    report = ScenarioReport("netns", FILL)
    report.pytest_collection_modifyitems(None, None, [_Item("t.py::test_x", 11, None)])
    report.pytest_runtest_logreport(_Report("t.py::test_x", "passed"))
    _finish(report, scenario_json_each=str(tmp_path), scenario_json=str(tmp_path / "all.json"))
    assert json.loads((tmp_path / "stu1.json").read_text()) == json.loads((tmp_path / "all.json").read_text())
    assert json.loads((tmp_path / "stu1.json").read_text())["11"]["outcome"] == "PASS"
