"""The podpath command against a real netns lab: every verb, its progress, its errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath.evidence import faults

pytestmark = [pytest.mark.netns, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    name = new_lab_name("c")
    up = podpath("up", "--lab", name)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield name, up
    finally:
        down = podpath("down", "--lab", name)
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        assert down.returncode == 0, down.stderr


def test_up_shows_progress_over_every_task_and_says_what_next(lab):
    name, up = lab
    steps = re.findall(r"\] (\d+)/(\d+) ", up.stderr)
    assert steps, f"no progress lines: {up.stderr[:500]}"
    assert steps[-1][0] == steps[-1][1], f"progress ended at {steps[-1]}, not at the last task"
    assert [int(n) for n, _ in steps] == list(range(1, len(steps) + 1)), "progress skipped or repeated a task"
    assert f"podpath verify --lab {name}" in up.stdout


def test_a_second_up_changes_nothing(lab):
    name, _ = lab
    again = podpath("up", "--lab", name)
    assert again.returncode == 0 and "(0 tasks changed)" in again.stdout, again.stdout


def test_the_labs_links_have_no_ipv6_address(lab):
    name, _ = lab
    for netns in lab_namespaces(name):
        out = subprocess.run(["ip", "-n", netns, "-6", "-o", "addr"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "", f"{netns} has IPv6 addresses:\n{out.stdout}"


def test_status_reports_a_healthy_lab(lab):
    name, _ = lab
    out = podpath("status", "--lab", name, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["healthy"], report["problems"]
    assert all(p["pause_pid"] for p in report["pods"]) and report["leader"]
    assert sum(bool(a) for a in report["announcing"].values()) == 1


def test_labs_lists_the_lab(lab):
    name, _ = lab
    listed = {item["lab"]: item for item in json.loads(podpath("labs", "--json").stdout)}
    assert name in listed and listed[name]["processes_running"] == listed[name]["processes"] > 0


def test_verify_passes_with_one_line_per_scenario(lab, tmp_path):
    name, _ = lab
    junit = tmp_path / "verify.xml"
    out = podpath("verify", "--lab", name, "--junitxml", str(junit))
    assert out.returncode == 0, out.stdout[-2000:]
    assert re.search(r"19 scenarios, 18 run, \d+ checks: all passed", out.stdout), out.stdout[-1500:]
    assert len(re.findall(r"^\s+\d+\s+PASS\s", out.stdout, re.M)) == 18
    assert junit.exists() and "<testsuite" in junit.read_text()


def test_trace_follows_one_request_and_writes_its_diagram(lab, tmp_path):
    name, _ = lab
    diagram = tmp_path / "path.mmd"
    out = podpath("trace", "--lab", name, "-o", str(diagram))
    assert out.returncode == 0 and "complete" in out.stdout, out.stdout
    for step in ("1 ARP", "2 DNAT", "3 controller", "4 backend", "5 source"):
        assert step in out.stdout
    assert diagram.read_text().startswith("flowchart LR")


def test_a_drill_breaks_one_hop_check_says_so_and_up_fixes_it(lab):
    name, _ = lab
    seed = 3
    start = podpath("drill", "start", "--lab", name, "--seed", str(seed))
    assert start.returncode == 0, start.stderr
    fault = faults.pick(seed)
    assert fault.title not in start.stdout, "drill start must not say which hop it broke"
    assert podpath("verify", "--lab", name).returncode == 1, "the verifier passed on a broken lab"
    not_yet = podpath("drill", "check", "--lab", name)
    assert not_yet.returncode == 1 and "not fixed yet" in not_yet.stdout
    assert podpath("up", "--lab", name, "-q").returncode == 0
    fixed = podpath("drill", "check", "--lab", name)
    assert fixed.returncode == 0 and "fixed" in fixed.stdout, fixed.stdout
    reveal = podpath("drill", "reveal", "--lab", name)
    assert reveal.returncode == 0 and fault.title in reveal.stdout and name in reveal.stdout


def test_a_failed_scenario_says_its_hop_evidence_and_next_command_without_a_traceback(lab):
    name, _ = lab
    assert podpath("drill", "start", "--lab", name, "--seed", "42").returncode == 0
    try:
        plain = podpath("verify", "--lab", name)
        verbose = podpath("verify", "--lab", name, "--verbose")
    finally:
        assert podpath("up", "--lab", name, "-q").returncode == 0
        podpath("drill", "reveal", "--lab", name)
    assert plain.returncode == 1, plain.stdout
    failed = [line for line in plain.stdout.splitlines() if re.match(r"^\s*\d+\s+FAIL\s", line)]
    assert failed, plain.stdout
    for field in ("hop:", "check:", "evidence:", "next:"):
        assert re.search(rf"^\s+{field}\s+\S", plain.stdout, re.M), f"no {field} line in\n{plain.stdout}"
    assert re.search(rf"^\s+next:\s+.*{name}-", plain.stdout, re.M), "the next command does not name the lab's namespaces"
    assert "def test_" not in plain.stdout and "Traceback" not in plain.stdout, "pytest's traceback without --verbose"
    assert "def test_" in verbose.stdout, "--verbose should show pytest's traceback of the failed check"


def test_every_next_command_of_a_healthy_lab_runs_as_written(lab):
    """The command each scenario suggests, filled for this lab, runs and succeeds (those that
    still need a value only the student can pick, like <node>, are not run)."""
    from podpath.evidence.report import ScenarioReport
    from podpath.evidence.scenarios import LOOK
    from podpath.model.plan import build
    from podpath.model.topology import load

    name, _ = lab
    plan = build(load(), name)
    report = ScenarioReport("netns", {"{lab}": name, "{nodes}": " ".join(n.name for n in plan.nodes),
                                      "<MetalLB address>": plan.ingress_service.load_balancer_ip,
                                      "<ingress host>": plan.ingress_host})
    env = dict(os.environ, PATH=str(Path(__file__).resolve().parents[2] / ".venv" / "bin") + os.pathsep
               + os.environ["PATH"])
    ran = 0
    for number in LOOK:
        command = report.next_command(number)
        if "<" in command:
            continue
        done = subprocess.run(["bash", "-c", "set -o pipefail; " + command], capture_output=True, text=True,
                              timeout=60, env=env)
        assert done.returncode == 0, f"scenario {number}'s next command failed: {command}\n{done.stderr}"
        ran += 1
    assert ran >= 8, f"only {ran} commands could be run as written"


def test_the_same_seed_gives_the_same_fault():
    assert faults.pick(42) == faults.pick(42)
    assert len({faults.pick(seed).name for seed in range(200)}) == len(faults.CATALOGUE)


def test_a_failing_play_names_the_task_and_the_log():
    name = new_lab_name("c")
    squatter = f"{name}-lan"
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        out = podpath("up", "--lab", name)
        assert out.returncode == 1, out.stderr
        match = re.search(r"FAILED: task '(.+)' on localhost: (.+)", out.stderr)
        assert match and squatter in match.group(2), out.stderr
        log = re.search(r"full log: (\S+)", out.stderr)
        assert log and Path(log.group(1)).exists()
    finally:
        subprocess.run(["ip", "netns", "delete", squatter])
        podpath("down", "--lab", name, "-q")
        force_remove(name)


@pytest.mark.parametrize("verb", ["verify", "status", "trace", "drill"])
def test_a_lab_that_does_not_exist_is_named(verb):
    args = [verb, "--lab", "nolab9"] + (["check"] if verb == "drill" else [])
    out = podpath(*args)
    assert out.returncode == 2 and "lab nolab9 does not exist" in out.stderr and "podpath up" in out.stderr
