"""`podpath report` on two real student labs of this host, one broken by a drill: the report
names the broken lab's first failing hop and passes the other, in text, JUnit XML, HTML and
the results file that gathers hosts. Both labs are removed at the end."""
from __future__ import annotations

import os
import shutil
import socket
import xml.etree.ElementTree as ET

import pytest
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath.evidence import classreport as cr
from podpath.evidence import faults
from podpath.evidence.scenarios import LOOK, SCENARIOS

pytestmark = [pytest.mark.netns, pytest.mark.slow]
# The drill: the REJECT of the Service without endpoints goes. Its scenario (11) fails, and no
# scenario before it, so that scenario's hop is the broken lab's first failing one.
FAULT = "reject-rule"


def seed_of(name: str) -> int:
    return next(seed for seed in range(1000) if faults.pick(seed).name == name)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    good, broken = new_lab_name("crp"), new_lab_name("crp")
    folder = tmp_path_factory.mktemp("report")
    try:
        for lab in (good, broken):
            up = podpath("up", "--lab", lab)
            assert up.returncode == 0, up.stdout + up.stderr
        drill = podpath("drill", "start", "--lab", broken, "--seed", str(seed_of(FAULT)))
        assert drill.returncode == 0, drill.stdout + drill.stderr
        files = {kind: folder / f"class.{kind}" for kind in ("html", "xml", "json")}
        out = podpath("report", "--labs", f"{good},{broken}", "--html", str(files["html"]),
                      "--junit", str(files["xml"]), "--json", str(files["json"]))
        yield good, broken, out, files
    finally:
        for lab in (good, broken):
            down = podpath("down", "--lab", lab)
            if down.returncode != 0 or lab_namespaces(lab):
                force_remove(lab)
            assert not lab_namespaces(lab), f"lab {lab} is still there"


def failing(files, lab: str) -> list[int]:
    """The scenarios of LAB that failed, as the results file of the same run says."""
    return next(r for r in cr.read_results([files["json"]]) if r.lab == lab).failing


def test_the_report_names_the_broken_labs_first_failing_hop_and_passes_the_other(report):
    good, broken, out, files = report
    scenario = faults.CATALOGUE[FAULT].scenario
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {line.split()[1]: line.split(None, 3) for line in out.stdout.splitlines()
            if line.split()[1:2] in ([good], [broken])}
    host = socket.gethostname()
    assert rows[good] == [host, good, f"{len(SCENARIOS) - 1}/{len(SCENARIOS)}", "-"]  # 14 is disruptive: not run
    failed = failing(files, broken)
    assert failed[0] == scenario, f"the drill broke scenario {scenario}'s hop, yet {failed} fail"
    assert rows[broken][:3] == [host, broken, f"{len(SCENARIOS) - 1 - len(failed)}/{len(SCENARIOS)}"]
    assert rows[broken][3] == f"scenario {scenario}: {LOOK[scenario][0]}"
    assert f"podpath: verifying lab {broken} (2/2)" in out.stderr


def test_the_junit_report_fails_only_the_broken_labs_scenario(report):
    good, broken, _, files = report
    scenario = faults.CATALOGUE[FAULT].scenario
    suites = {s.get("name"): s for s in ET.parse(files["xml"]).getroot().findall("testsuite")}
    host = socket.gethostname()
    assert set(suites) == {f"{host}/{good}", f"{host}/{broken}"}
    assert suites[f"{host}/{good}"].get("failures") == "0"
    failed = [c for c in suites[f"{host}/{broken}"].findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [f"scenario {n:02d}: {SCENARIOS[n]}" for n in failing(files, broken)]
    assert failed[0].get("name") == f"scenario {scenario:02d}: {SCENARIOS[scenario]}"
    failure = failed[0].find("failure")
    assert failure.get("message") == f"hop: {LOOK[scenario][0]}"
    assert "evidence: " in failure.text and f"next: for n in cp1 worker1 worker2; do ip netns exec {broken}-$n" \
        in failure.text


def test_the_page_and_the_results_file_say_the_same(report):
    good, broken, _, files = report
    scenario = faults.CATALOGUE[FAULT].scenario
    page = ET.parse(files["html"]).getroot()
    rows = {tr.get("data-student"): tr for tr in page.iter("tr") if tr.get("data-student")}
    host = socket.gethostname()
    assert rows[f"{host}/{good}"].get("class") == "pass"
    assert rows[f"{host}/{broken}"].get("class") == "fail"
    assert f"scenario {scenario}: {LOOK[scenario][0]}" in "".join(rows[f"{host}/{broken}"].itertext())
    again = {r.lab: r for r in cr.read_results([files["json"]])}
    assert (again[good].status, again[broken].status, again[broken].first_failing) == ("pass", "fail", scenario)
