"""The verifier on a class's hosts: every netns lab of an inventory, through testinfra over SSH.

The test's own sshd (sshd.py) listens on 127.0.0.1; the inventory reaches it under two host
names, each with a lab of its own (podpath_labs) and its runtime in a folder of the test's
own (podpath_runtime_dir, as two machines would each have /opt/podpath). The fleet's
playbook builds both labs over SSH; then, on the control node,

    pytest --hosts=ansible://all --ansible-inventory=INVENTORY tests/verify

verifies both through testinfra's SSH backend: every check runs once per host and lab and is
named after them, and the labs' state is read there, by podpath.evidence.nodeprobe run with
each host's runtime Python. A drill (`podpath drill start`) breaks one lab: the run fails,
and every failed check names that host and lab, none the other. The playbook that removes
the labs and the runtimes runs at the end, also when a test fails.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from labtools import ROOT, force_remove, host_snapshot, marked_namespaces, marked_processes, new_lab_name, podpath, \
    snapshot_diff
from sshd import sshd_server  # noqa: F401 - the fixture

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
HOSTS = ("vbpc1", "vbpc2")


def _env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])


def play(inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), f"playbooks/{playbook}", *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=900)


class Fleet:
    def __init__(self, server, folder: Path):
        self.server = server
        self.folder = folder
        self.labs = {host: new_lab_name("vb") for host in HOSTS}  # vb + 6 hex characters
        self.runtime = {host: folder / f"runtime-{host}" for host in HOSTS}
        hosts = {host: dict(server.inventory_vars(), podpath_labs=[self.labs[host]],
                            podpath_runtime_dir=str(self.runtime[host])) for host in HOSTS}
        self.inventory = folder / "classroom.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))

    def verify(self, name: str) -> tuple[subprocess.CompletedProcess, list[tuple[str, str]], dict]:
        """The verifier on every lab of the inventory: its output, (test id, outcome) of every
        check from its JUnit XML, and the scenarios' outcomes (--scenario-json)."""
        junit, scenarios = self.folder / f"{name}.xml", self.folder / f"{name}.json"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--hosts=ansible://all", f"--ansible-inventory={self.inventory}",
             "-q", "--no-header", "-p", "no:cacheprovider", "-o", "addopts=", "--tb=short", "-rN",
             f"--junitxml={junit}", f"--scenario-json={scenarios}", str(ROOT / "tests" / "verify")],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
        cases = []
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else \
                    "skipped" if case.find("skipped") is not None else "passed"
                cases.append((case.get("name", ""), outcome))
        return done, cases, json.loads(scenarios.read_text()) if scenarios.exists() else {}

    def sessions(self) -> int:
        """How many SSH logins the test's sshd accepted so far."""
        return self.server.log.count("Accepted publickey for root")


@pytest.fixture(scope="module")
def fleet(sshd_server, tmp_path_factory):  # noqa: F811 - the fixture imported from sshd
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    before = host_snapshot()
    fleet = Fleet(sshd_server, tmp_path_factory.mktemp("verify-remote"))
    try:
        built = play(fleet.inventory, "netns-lab.yml")
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
        yield fleet
    finally:
        play(fleet.inventory, "netns-lab-down.yml", "-e", "podpath_remove_runtime=true")
        for lab in fleet.labs.values():
            if marked_namespaces(lab) or marked_processes(lab):
                force_remove(lab)
        for folder in fleet.runtime.values():
            shutil.rmtree(folder, ignore_errors=True)
    assert snapshot_diff(before, host_snapshot()) == [], "the labs changed the host's own namespace"


def _target(case_name: str) -> str | None:
    """The host/lab a check's id names: test_x[vbpc1/vb1a2b3c-echo-1] -> vbpc1/vb1a2b3c."""
    match = re.search(r"\[([^/\]]+/[a-z0-9]+)", case_name)
    return match.group(1) if match else None


def test_every_lab_of_every_host_is_verified_through_ssh_and_each_check_names_its_host_and_lab(fleet):
    logins = fleet.sessions()
    done, cases, scenarios = fleet.verify("healthy")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert cases, out[-3000:]
    targets = {f"{host}/{lab}" for host, lab in fleet.labs.items()}
    named = [_target(name) for name, _ in cases]
    assert all(t in targets for t in named), [n for (n, _), t in zip(cases, named) if t not in targets][:5]
    per_target = {t: sum(1 for n in named if n == t) for t in targets}
    assert len(set(per_target.values())) == 1 and min(per_target.values()) > 100, per_target
    assert all(outcome != "failed" for _, outcome in cases)
    assert all(scenarios[str(n)]["outcome"] == "PASS" for n in range(1, 20) if n != 14), scenarios
    assert fleet.sessions() > logins, "the verifier did not log in over SSH"


def test_a_drill_fails_the_run_and_every_failure_names_that_host_and_lab(fleet):
    host, lab = HOSTS[1], fleet.labs[HOSTS[1]]
    start = podpath("drill", "start", "--lab", lab, "--seed", "3")
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        done, cases, scenarios = fleet.verify("drill")
        out = done.stdout + done.stderr
        assert done.returncode == 1, out[-4000:]
        failed = [name for name, outcome in cases if outcome == "failed"]
        assert failed, out[-3000:]
        assert {_target(name) for name in failed} == {f"{host}/{lab}"}, failed[:10]
        assert any(s["outcome"] == "FAIL" for s in scenarios.values())
        assert f"{host}/{lab}" in done.stdout  # the report's failed checks name it
        other = f"{HOSTS[0]}/{fleet.labs[HOSTS[0]]}"
        assert any(_target(name) == other and outcome == "passed" for name, outcome in cases), \
            "the healthy lab was not verified beside the broken one"
    finally:
        repair = play(fleet.inventory, "netns-lab.yml", "--limit", host)
        assert repair.returncode == 0, repair.stdout[-3000:]
