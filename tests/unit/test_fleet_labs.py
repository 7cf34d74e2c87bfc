"""Which labs each host of a fleet runs (plugins/filter/podpath_fleet.py): -e podpath_lab,
podpath_labs, a roster spread by capacity, the inventory's podpath_lab; bad input refused
with the value and the fix; the packages of debian-packages.txt's section [lab]."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from podpath.model import labdir

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("podpath_fleet_filter", ROOT / "plugins" / "filter" / "podpath_fleet.py")
fleet = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet)


def roster(tmp_path, text: str) -> str:
    path = tmp_path / "roster.csv"
    path.write_text(text)
    return str(path)


def labs_of(hostvars, **kw):
    return {host: fleet.host_labs(host, hostvars, list(hostvars), **kw) for host in hostvars}


def test_the_lab_name_rule_is_the_modules_rule():
    assert fleet.LAB_NAME.pattern == labdir.lab.LAB_NAME.pattern
    assert fleet.LAB_NAME_RULE == labdir.lab.LAB_NAME_RULE


def test_a_given_lab_wins_over_everything(tmp_path):
    hostvars = {"pc1": {"podpath_labs": ["a1"]}, "pc2": {"podpath_capacity": 3}}
    assert labs_of(hostvars, given_lab="student07", roster=roster(tmp_path, "student,lab\nA,b1\n")) == \
        {"pc1": ["student07"], "pc2": ["student07"]}


def test_podpath_labs_then_roster_then_the_inventory_lab(tmp_path):
    hostvars = {"pc1": {"podpath_labs": ["a1", "a2"], "podpath_capacity": 5, "podpath_lab": "podpath"},
                "pc2": {"podpath_capacity": 2, "podpath_lab": "podpath"},
                "pc3": {"podpath_lab": "podpath"}}
    path = roster(tmp_path, "student,lab\nAda,s1\nBob,s2\n")
    assert labs_of(hostvars, roster=path) == {"pc1": ["a1", "a2"], "pc2": ["s1", "s2"], "pc3": []}
    assert labs_of(hostvars) == {"pc1": ["a1", "a2"], "pc2": ["podpath"], "pc3": ["podpath"]}
    assert labs_of({"pc9": {}}) == {"pc9": []}


def test_the_roster_is_spread_by_capacity_in_natural_host_order(tmp_path):
    students = "".join(f"Student {i},s{i:02d}\n" for i in range(1, 10))
    hostvars = {"pc10": {"podpath_capacity": 3}, "pc2": {"podpath_capacity": "6"}}  # INI gives strings
    spread = labs_of(hostvars, roster=roster(tmp_path, "student,lab\n" + students))
    # each student to the host least full before it (assigned / capacity), ties to pc2 (2 < 10)
    assert spread == {"pc2": ["s01", "s03", "s04", "s06", "s07", "s09"], "pc10": ["s02", "s05", "s08"]}


def test_the_spread_is_the_same_for_every_host_and_any_limit(tmp_path):
    path = roster(tmp_path, "student,lab\n" + "".join(f"S{i},s{i}\n" for i in range(7)))
    hostvars = {f"pc{i}": {"podpath_capacity": 3} for i in range(1, 4)}
    everyone = labs_of(hostvars, roster=path)
    # a play limited to pc3 still spreads over every host of the inventory
    assert fleet.host_labs("pc3", hostvars, list(hostvars), roster=path) == everyone["pc3"]
    assert sorted(sum(everyone.values(), [])) == sorted(f"s{i}" for i in range(7))


def test_a_student_added_at_the_end_moves_nobody(tmp_path):
    hostvars = {"a": {"podpath_capacity": 2}, "b": {"podpath_capacity": 5}, "c": {"podpath_capacity": 3}}
    lines = "".join(f"S{i},s{i}\n" for i in range(8))
    before = labs_of(hostvars, roster=roster(tmp_path, "student,lab\n" + lines))
    after = labs_of(hostvars, roster=roster(tmp_path, "student,lab\n" + lines + "New,s8\n"))
    for host, labs in before.items():
        assert after[host][:len(labs)] == labs


def test_comments_blank_lines_and_quoted_names(tmp_path):
    path = roster(tmp_path, "# class 4B\nstudent,lab\n\n\"Lovelace, Ada\",s1\n  # absent today\nBob,s2\n")
    assert fleet.read_roster(path) == [("Lovelace, Ada", "s1"), ("Bob", "s2")]


@pytest.mark.parametrize("text, words", [
    ("", ["no students", "student,lab"]),
    ("name,lab\nAda,s1\n", ["'name,lab'", "header"]),
    ("student,lab\n", ["no students"]),
    ("student,lab\nAda,Student_1\n", ["line 2", "'Student_1'", "lower-case"]),
    ("student,lab\nAda,s1\nBob,s1\n", ["line 3", "'s1'", "line 2", "own"]),
    ("student,lab\nAda,s1\nAda,s2\n", ["line 3", "'Ada'", "once"]),
    ("student,lab\nAda,s1,extra\n", ["line 2", "3 fields", "quote"]),
    ("student,lab\n,s1\n", ["line 2", "no student name"]),
])
def test_a_bad_roster_is_refused_with_the_line_and_the_fix(tmp_path, text, words):
    with pytest.raises(fleet.FleetError) as error:
        fleet.read_roster(roster(tmp_path, text))
    for word in words:
        assert word in str(error.value)


def test_a_missing_roster_is_named(tmp_path):
    with pytest.raises(fleet.FleetError, match=re.escape(str(tmp_path / "nope.csv")) + ".*student,lab"):
        fleet.read_roster(str(tmp_path / "nope.csv"))


@pytest.mark.parametrize("value", [0, -2, "ten", 2.5, True, ""])
def test_a_bad_capacity_is_refused_with_the_host_and_the_value(tmp_path, value):
    hostvars = {"pc1": {"podpath_capacity": value}}
    with pytest.raises(fleet.FleetError) as error:
        fleet.host_labs("pc1", hostvars, ["pc1"], roster=roster(tmp_path, "student,lab\nA,s1\n"))
    assert "pc1" in str(error.value) and repr(value) in str(error.value) and "whole number" in str(error.value)


def test_too_few_places_or_no_capacity_is_refused_with_the_counts(tmp_path):
    path = roster(tmp_path, "student,lab\nA,s1\nB,s2\nC,s3\n")
    with pytest.raises(fleet.FleetError, match=r"3 students but the hosts take 2 labs in all \(pc1: 2\)"):
        fleet.host_labs("pc1", {"pc1": {"podpath_capacity": 2}}, ["pc1"], roster=path)
    with pytest.raises(fleet.FleetError, match="no host of the inventory has podpath_capacity"):
        fleet.host_labs("pc1", {"pc1": {}}, ["pc1"], roster=path)


@pytest.mark.parametrize("labs, words", [
    ("student01", ["not a list", "[student01, student02]"]),
    (["ok1", "Bad"], ["'Bad'", "pc1"]),
    (["s1", "s1"], ["twice", "'s1'"]),
])
def test_bad_podpath_labs_are_refused(labs, words):
    with pytest.raises(fleet.FleetError) as error:
        fleet.host_labs("pc1", {"pc1": {"podpath_labs": labs}}, ["pc1"])
    for word in words:
        assert word in str(error.value)


def test_a_bad_given_lab_is_refused():
    with pytest.raises(fleet.FleetError, match="-e podpath_lab"):
        fleet.host_labs("pc1", {"pc1": {}}, ["pc1"], given_lab="Not-A-Lab")


def test_the_lab_packages_are_the_section_lab_of_debian_packages():
    text = (ROOT / "debian-packages.txt").read_text()
    found = fleet.packages(text, "lab")
    assert {"iproute2", "nginx-light", "python3-pyroute2", "python3-yaml"} <= set(found)
    assert not {"gcc", "vagrant", "openssh-server", "graphviz"} & set(found), "a control-node package in [lab]"
    every = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert found == every[:len(found)], "the section [lab] is not the first lines of the file"
    with pytest.raises(fleet.FleetError, match=r"# \[nope\]"):
        fleet.packages(text, "nope")


def test_the_summary_names_failed_hosts():
    hostvars = {"pc1": {"podpath_host_labs": ["s1", "s2"]}, "pc2": {"podpath_host_labs": ["s3"]}, "pc3": {}}
    lines = fleet.summary(["pc3", "pc2", "pc1"], ["pc1", "pc3"], hostvars)
    assert lines[0] == "pc1 runs s1, s2"
    assert lines[1].startswith("pc2: FAILED or UNREACHABLE") and "s3" in lines[1]
    assert lines[2] == "pc3: no lab"


def test_only_the_local_connection_is_local():
    assert fleet.is_local("local") and fleet.is_local("ansible.builtin.local")
    assert not fleet.is_local("ssh") and not fleet.is_local(None) and not fleet.is_local("paramiko")


def test_the_runtime_goes_to_the_hosts_with_labs_that_are_not_the_control_node():
    hosts = [{"inventory_hostname": "pc1", "podpath_host_labs": ["s1"]},
             {"inventory_hostname": "pc2", "podpath_host_labs": []},
             {"inventory_hostname": "localhost", "podpath_host_labs": ["s2"], "ansible_connection": "local"},
             {"inventory_hostname": "pc3", "podpath_host_labs": ["s3"], "ansible_connection": "ssh"}]
    assert fleet.remote_hosts(hosts) == ["pc1", "pc3"]
