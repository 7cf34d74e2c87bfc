"""A whole class through `podpath ... --inventory`, for real, over SSH (docs/classroom.md).

The test's own sshd (sshd.py) listens on 127.0.0.1; the inventory reaches it under two host
names, each with a lab of its own and podpath's runtime in a folder of the test's own. The
flow is the instructor's: `podpath up --inventory` builds every lab, `podpath verify
--inventory` finds them all green, `podpath drill start --inventory --limit HOST` breaks one
student's lab, the class report (text, JUnit XML, HTML) names that host, lab and the failing
hop, `podpath up --inventory` repairs it, and `podpath down --inventory --remove-runtime`
removes everything. A third host name that nothing answers is named in the report while the
others go on. The host's own namespace, /etc/ssh and the sshd's configuration are the same at
the end as at the start.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from labtools import force_remove, host_snapshot, marked_namespaces, marked_processes, new_lab_name, podpath, \
    snapshot_diff
from sshd import free_port, sshd_server  # noqa: F401 - the fixture

from podpath.evidence import faults
from podpath.evidence.classreport import hop

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HOSTS = ("cipc1", "cipc2")
SEED = 2  # the drill's fault: the speakers stop answering ARP for the MetalLB address


def digest(paths) -> str:
    """Every file's path, mode and content under PATHS (but the sshd's log, which grows)."""
    h = hashlib.sha256()
    for root in paths:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and path.name != "sshd.log":
                h.update(f"{path}\0{path.stat().st_mode:o}\0".encode() + path.read_bytes())
    return h.hexdigest()


class Classroom:
    def __init__(self, server, folder: Path):
        self.folder = folder
        self.labs = {host: new_lab_name("ci") for host in HOSTS}
        self.runtime = {host: folder / f"runtime-{host}" for host in HOSTS}
        reach = server.inventory_vars()
        hosts = {host: dict(reach, podpath_labs=[self.labs[host]], podpath_runtime_dir=str(self.runtime[host]))
                 for host in HOSTS}
        self.inventory = folder / "classroom.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        # the same class and one machine that nothing answers (a port nothing listens on)
        gone = dict(reach, ansible_port=free_port(), podpath_labs=[new_lab_name("ci")],
                    podpath_runtime_dir=str(folder / "runtime-cigone"))
        self.with_gone = folder / "with-gone.yml"
        self.with_gone.write_text(yaml.safe_dump({"all": {"hosts": dict(hosts, cigone=gone)}}, sort_keys=False))
        self.reports = folder / "reports"
        self.reports.mkdir()
        self.drill: dict = {}

    def run(self, *args: str):
        return podpath(*args, "--inventory", str(self.inventory), timeout=900)

    def verify(self, name: str, inventory: Path | None = None, *args: str):
        out = self.reports / name
        done = podpath("verify", "--inventory", str(inventory or self.inventory), "--report-dir", str(out), *args,
                       timeout=900)
        return done, out


@pytest.fixture(scope="module")
def classroom(sshd_server, tmp_path_factory):  # noqa: F811 - the fixture imported from sshd
    import os

    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    before, ssh_before, sshd_before = host_snapshot(), digest(["/etc/ssh"]), digest([sshd_server.folder])
    room = Classroom(sshd_server, tmp_path_factory.mktemp("classroom"))
    try:
        up = room.run("up")
        assert up.returncode == 0, up.stdout + up.stderr[-3000:]
        room.built = up
        yield room
    finally:
        room.run("down", "--remove-runtime")
        for lab in room.labs.values():
            if marked_namespaces(lab) or marked_processes(lab):
                force_remove(lab)
        for folder in room.runtime.values():
            shutil.rmtree(folder, ignore_errors=True)
    assert snapshot_diff(before, host_snapshot()) == [], "the class's labs changed the host's own namespace"
    assert digest(["/etc/ssh"]) == ssh_before, "/etc/ssh changed"
    assert digest([sshd_server.folder]) == sshd_before, "the sshd's configuration or keys changed"


def rows(text: str) -> dict[tuple[str, str], str]:
    """(host, lab) -> the rest of its row of the class report's table."""
    found = {}
    for line in text.splitlines():
        cells = line.split(None, 2)
        if len(cells) == 3 and cells[0] in (*HOSTS, "cigone"):
            found[(cells[0], cells[1])] = cells[2]
    return found


def test_up_builds_every_lab_of_every_host(classroom):
    out = classroom.built.stdout
    for host, lab in classroom.labs.items():
        assert f"{host} runs {lab}" in out, out
        assert marked_namespaces(lab), f"lab {lab} of {host} has no namespace with its mark"
        python = classroom.runtime[host] / "venv" / "bin" / "python"
        assert python.exists(), f"{host} got no runtime"


def test_verify_finds_every_lab_green(classroom):
    done, folder = classroom.verify("green")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    table = rows(done.stdout)
    assert set(table) == {(h, lab) for h, lab in classroom.labs.items()}, done.stdout
    for row in table.values():
        assert row.split()[-1] == "-", f"a lab fails a hop: {row}"
    results = json.loads((folder / "class-results.json").read_text())["results"]
    assert {(r["host"], r["lab"]) for r in results} == set(table)
    for r in results:
        outcomes = [s["outcome"] for s in r["scenarios"].values()]
        assert "FAIL" not in outcomes and outcomes.count("PASS") >= 18, r
    junit = ET.parse(folder / "class-report.xml").getroot()
    assert junit.get("failures") == "0" and junit.get("errors") == "0"


def test_a_drill_on_one_host_is_named_in_the_class_report(classroom):
    host, other = HOSTS
    lab = classroom.labs[host]
    start = classroom.run("drill", "start", "--seed", str(SEED), "--limit", host)
    assert start.returncode == 0, start.stdout + start.stderr[-3000:]
    assert f"== {host} / {lab}" in start.stdout and other not in start.stdout, start.stdout
    drilled = faults.pick(SEED).scenario  # the scenario that shows the fault, as the catalogue says
    done, folder = classroom.verify("drilled")
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    results = {(r["host"], r["lab"]): r for r in json.loads((folder / "class-results.json").read_text())["results"]}
    failing = sorted(int(n) for n, s in results[(host, lab)]["scenarios"].items() if s["outcome"] == "FAIL")
    assert drilled in failing, failing
    first = failing[0]
    assert not [s for s in results[(other, classroom.labs[other])]["scenarios"].values() if s["outcome"] == "FAIL"]
    # text: the row of that host and lab gives its first failing hop; the other host's passes
    table = rows(done.stdout)
    assert table[(host, lab)].endswith(f"scenario {first}: {hop(first)}"), done.stdout
    assert table[(other, classroom.labs[other])].split()[-1] == "-", done.stdout
    assert (folder / "class-report.txt").read_text() == done.stdout.split("class report written to")[0]
    # JUnit: the host's suite fails that scenario at that hop
    junit = ET.parse(folder / "class-report.xml").getroot()
    suite = junit.find(f"testsuite[@name='{host}/{lab}']")
    assert suite is not None and suite.get("hostname") == host
    failure = suite.find(f"testcase[@name]/failure[@type='scenario {first}']")
    assert failure is not None and failure.get("message") == f"hop: {hop(first)}"
    assert junit.find(f"testsuite[@name='{other}/{classroom.labs[other]}']").get("failures") == "0"
    # HTML: the failing row names host and lab and the hop; the picture marks it
    page = (folder / "class-report.html").read_text()
    row = re.search(rf'<tr class="fail" data-student="{host}/{lab}">.*?</tr>', page)
    assert row and f'<td class="host">{host}</td>' in row.group(0) and f"scenario {first}: " in row.group(0)
    assert '<g class="badge"' in page
    classroom.drill = {"host": host, "lab": lab}


def test_an_unreachable_host_is_named_and_the_others_go_on(classroom):
    other = HOSTS[1]
    done, folder = classroom.verify("gone", classroom.with_gone, "--limit", f"cigone:{other}")
    assert done.returncode == 1
    table = rows(done.stdout)
    gone = [row for (host, _), row in table.items() if host == "cigone"]
    assert gone and "unreachable" in gone[0], done.stdout
    assert table[(other, classroom.labs[other])].split()[-1] == "-", done.stdout
    assert "cipc1" not in {h for h, _ in table}, "--limit ran on another host"


def test_up_repairs_the_drilled_lab(classroom):
    if not classroom.drill:
        pytest.skip("no drill was started (the test of the drill failed)")
    up = classroom.run("up")
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    done, _ = classroom.verify("repaired")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


def test_down_removes_every_lab_and_the_runtime(classroom):
    down = classroom.run("down", "--remove-runtime")
    assert down.returncode == 0, down.stdout + down.stderr[-3000:]
    for host, lab in classroom.labs.items():
        assert f"{host} no longer runs {lab}" in down.stdout, down.stdout
        assert not marked_namespaces(lab) and not marked_processes(lab), f"lab {lab} is still there"
        assert not classroom.runtime[host].exists(), f"the runtime of {host} is still there"
