"""netns labs on every host of an inventory, for real, over SSH (docs/classroom.md).

The test's own sshd (sshd.py) listens on 127.0.0.1; the inventory reaches it under two host
names with different labs, and has two hosts that cannot take theirs: one unreachable (a
port nothing listens on) and one that asks for a Debian package that does not exist
(netns_target_extra_packages: [podpath-no-such-package], so apt-get really fails on it), and
one host with no lab, which is left alone.
Each reachable host gets podpath's runtime in a folder of the test's own
(podpath_runtime_dir), as two machines would have two /opt/podpath. The modules run the usual
way over SSH (AnsiballZ), the labs' processes with the runtime's Python. One lab is broken by
a drill and repaired by the playbook; netns-lab-down.yml removes every lab and the runtime.
The host's own namespace and /etc/ssh are the same at the end as at the start.

The test logs in as root (a user of its own with sudo rights would change the host's user
database), so the play's become, which it asks for every host but the control node, finds
root already and Ansible runs the tasks without sudo.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from labtools import (ROOT, force_remove, host_snapshot, marked_namespaces, marked_processes, new_lab_name, podpath,
                      snapshot_diff)
from sshd import free_port, sshd_server  # noqa: F401 - the fixture

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
MISSING_PACKAGE = "podpath-no-such-package"


def etc_ssh() -> str:
    """A fingerprint of the host's /etc/ssh: every file's path, mode and content."""
    digest = hashlib.sha256()
    for path in sorted(Path("/etc/ssh").rglob("*")):
        if path.is_file():
            digest.update(f"{path}\0{path.stat().st_mode:o}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def play(inventory: Path, playbook: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1", PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), f"playbooks/{playbook}", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def recap(out: str) -> dict[str, dict[str, int]]:
    return {host: {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}
            for host, ok, changed, unreachable, failed in RECAP.findall(out)}


def changed_lab_tasks(out: str) -> dict[str, list[str]]:
    """{host: [task]} of the lab roles' tasks (netns_plan ... netns_metallb) that reported changed."""
    found: dict[str, list[str]] = {}
    task = ""
    for line in out.splitlines():
        header = re.match(r"^TASK \[(.+)\] \**$", line)
        if header:
            task = header.group(1)
            continue
        status = re.match(r"^changed: \[([^\]]+)\]", line)
        if status and task.startswith("netns_") and not task.startswith("netns_target"):
            found.setdefault(status.group(1), []).append(task)
    return found


def lab_argvs(lab: str) -> dict[int, list[str]]:
    """{pid: argv} of the lab's processes, found by their mark."""
    found = {}
    for pid in marked_processes(lab):
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
        except OSError:
            continue
    return found


class Fleet:
    def __init__(self, server, folder: Path):
        self.folder = folder
        self.labs = {"fltpc1": [new_lab_name("fa")], "fltpc2": [new_lab_name("fb"), new_lab_name("fc")],
                     "fltgone": [new_lab_name("fd")], "fltnopkg": [new_lab_name("fe")], "fltidle": []}
        self.runtime = {host: folder / f"runtime-{host}" for host in self.labs}
        reach = server.inventory_vars()
        hosts = {}
        for host, labs in self.labs.items():
            hosts[host] = dict(reach, podpath_labs=labs, podpath_runtime_dir=str(self.runtime[host]))
        hosts["fltgone"]["ansible_port"] = free_port()  # nothing listens there
        hosts["fltnopkg"]["netns_target_extra_packages"] = [MISSING_PACKAGE]
        self.inventory = folder / "classroom.yml"
        self.inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        self.built: subprocess.CompletedProcess | None = None

    @property
    def every_lab(self) -> list[str]:
        return [lab for labs in self.labs.values() for lab in labs]

    @property
    def reachable_labs(self) -> list[str]:
        return self.labs["fltpc1"] + self.labs["fltpc2"]


@pytest.fixture(scope="module")
def fleet(sshd_server, tmp_path_factory):  # noqa: F811 - the fixture imported from sshd
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    before, ssh_before = host_snapshot(), etc_ssh()
    fleet = Fleet(sshd_server, tmp_path_factory.mktemp("fleet"))
    try:
        fleet.built = play(fleet.inventory, "netns-lab.yml", "-vvv")
        (fleet.folder / "build.log").write_text(fleet.built.stdout + fleet.built.stderr)
        yield fleet
    finally:
        play(fleet.inventory, "netns-lab-down.yml", "-e", "podpath_remove_runtime=true")
        for lab in fleet.every_lab:
            if marked_namespaces(lab) or marked_processes(lab):
                force_remove(lab)
        for folder in fleet.runtime.values():
            shutil.rmtree(folder, ignore_errors=True)
    after = host_snapshot()
    assert snapshot_diff(before, after) == [], "the fleet's labs changed the host's own namespace"
    assert etc_ssh() == ssh_before, "/etc/ssh changed"


def test_each_reachable_host_builds_its_own_labs_over_ssh(fleet):
    out = fleet.built.stdout
    hosts = recap(out)
    for host in ("fltpc1", "fltpc2"):
        assert hosts[host]["failed"] == 0 and hosts[host]["unreachable"] == 0, out[-3000:]
    for lab in fleet.reachable_labs:
        assert marked_namespaces(lab), f"lab {lab} has no namespace with its mark"
        status = podpath("status", "--lab", lab, "--json")
        assert json.loads(status.stdout)["healthy"], status.stdout[-2000:]
    assert "fltpc1 runs " + fleet.labs["fltpc1"][0] in out
    assert "fltpc2 runs " + ", ".join(fleet.labs["fltpc2"]) in out


def test_a_host_without_labs_is_left_alone(fleet):
    out = fleet.built.stdout
    assert {k: v for k, v in recap(out)["fltidle"].items() if k != "ok"} == \
        {"changed": 0, "unreachable": 0, "failed": 0}, out[-3000:]
    build = out.split("PLAY [Build")[1].split("PLAY [")[0]
    assert not re.search(r"^(ok|changed|fatal): \[fltidle\]|^included: .* for .*\bfltidle\b", build, re.M), \
        "the build play did something on a host without labs"
    assert "fltidle: no lab" in out
    assert not fleet.runtime["fltidle"].exists()


def test_an_unreachable_host_is_reported_and_the_others_go_on(fleet):
    out = fleet.built.stdout
    assert fleet.built.returncode != 0, "a play with an unreachable host must not exit 0"
    assert recap(out)["fltgone"]["unreachable"] == 1
    assert re.search(r"fltgone: FAILED or UNREACHABLE", out)
    assert not marked_namespaces(fleet.labs["fltgone"][0])


def test_a_host_that_cannot_install_a_package_is_named_with_the_package_and_the_fix(fleet):
    out = fleet.built.stdout
    assert recap(out)["fltnopkg"]["failed"] == 1
    message = re.search(r"fltnopkg cannot run podpath's labs: (.+)", out)
    assert message, out[-3000:]
    assert MISSING_PACKAGE in message.group(1) and "apt-get install" in message.group(1), message.group(1)
    assert not marked_namespaces(fleet.labs["fltnopkg"][0])
    assert not (fleet.runtime["fltnopkg"] / "venv").exists(), "a host that failed its check got the runtime"


def test_the_modules_ran_the_usual_way_over_ssh(fleet):
    out = fleet.built.stdout + fleet.built.stderr  # ansible-playbook -vvv logs the connections on either
    for module in ("podpath_netns", "podpath_containers", "podpath_iptables"):
        assert f"Using module file {ROOT}/library/{module}.py" in out, f"{module} did not run as a module over SSH"
    assert "SSH: EXEC ssh" in out and "ESTABLISH SSH CONNECTION FOR USER: root" in out


def test_the_labs_processes_run_the_runtime_installed_from_this_checkout(fleet):
    for host in ("fltpc1", "fltpc2"):
        python = fleet.runtime[host] / "venv" / "bin" / "python"
        for lab in fleet.labs[host]:
            argvs = lab_argvs(lab)
            daemons = [argv for argv in argvs.values() if any("podpath.runtime." in a for a in argv)]  # -c code too
            assert daemons, f"lab {lab} runs no podpath.runtime process"
            for argv in daemons:  # started by the runtime's python, maybe through wrappers (nsenter, shim)
                assert str(python) in argv, argv
            assert any(argv[0] == str(python.parent / "podpath-pause") for argv in argvs.values()), \
                f"no pod of lab {lab} is held by the runtime's podpath-pause"
            speakers = [argv for argv in argvs.values() if os.path.basename(argv[0]) == "podpath-speaker"]
            assert speakers and {argv[0] for argv in speakers} == {str(python.parent / "podpath-speaker")}, \
                f"lab {lab}'s MetalLB speakers are not the runtime's podpath-speaker: {speakers}"
            for argv in argvs.values():
                assert not any(str(ROOT) in a for a in argv), f"a process of lab {lab} runs from the checkout: {argv}"
        where = subprocess.run([str(python), "-I", "-c", "import podpath; print(podpath.__file__)"],
                               cwd=fleet.folder, capture_output=True, text=True, check=True).stdout.strip()
        assert where == str(fleet.runtime[host] / "lib" / "podpath" / "__init__.py")
        assert (ROOT / "podpath" / "runtime" / "lease.py").read_bytes() == \
            (fleet.runtime[host] / "lib" / "podpath" / "runtime" / "lease.py").read_bytes()
        assert os.access(fleet.runtime[host] / "venv" / "bin" / "podpath-pause", os.X_OK)


def test_a_second_run_changes_no_lab(fleet):
    again = play(fleet.inventory, "netns-lab.yml", "--limit", "fltpc1,fltpc2")
    assert again.returncode == 0, again.stdout[-3000:]
    assert changed_lab_tasks(again.stdout) == {}, changed_lab_tasks(again.stdout)


def test_a_drill_is_repaired_by_the_playbook(fleet):
    lab = fleet.labs["fltpc1"][0]
    start = podpath("drill", "start", "--lab", lab, "--seed", "3")
    assert start.returncode == 0, start.stdout + start.stderr
    broken = podpath("drill", "check", "--lab", lab)
    assert broken.returncode == 1 and "not fixed yet" in broken.stdout, broken.stdout
    repair = play(fleet.inventory, "netns-lab.yml", "--limit", "fltpc1")
    assert repair.returncode == 0, repair.stdout[-3000:]
    assert changed_lab_tasks(repair.stdout).get("fltpc1"), "the repair changed nothing"
    assert "fltpc2" not in recap(repair.stdout), "--limit fltpc1 ran on another host"
    fixed = podpath("drill", "check", "--lab", lab)
    assert fixed.returncode == 0 and "fixed" in fixed.stdout, fixed.stdout


def test_on_the_control_node_itself_the_modules_still_run_in_process(fleet):
    lab = new_lab_name("ff")
    local = ROOT / "inventory" / "localhost.yml"
    try:
        built = play(local, "netns-lab.yml", "-e", f"podpath_lab={lab}", "-vvv")
        assert built.returncode == 0, built.stdout[-3000:]
        assert marked_namespaces(lab)
        assert "library/podpath_netns.py" not in built.stdout, "podpath_netns was shipped as a module on localhost"
    finally:
        down = play(local, "netns-lab-down.yml", "-e", f"podpath_lab={lab}")
        if down.returncode != 0 or marked_namespaces(lab):
            force_remove(lab)


def test_down_removes_every_lab_and_the_runtime_and_reports_the_unreachable_host(fleet):
    down = play(fleet.inventory, "netns-lab-down.yml", "-e", "podpath_remove_runtime=true")
    hosts = recap(down.stdout)
    assert hosts["fltgone"]["unreachable"] == 1, down.stdout[-3000:]
    for host in ("fltpc1", "fltpc2", "fltnopkg"):
        assert hosts[host]["failed"] == 0 and hosts[host]["unreachable"] == 0, down.stdout[-3000:]
    for lab in fleet.every_lab:
        assert not marked_namespaces(lab) and not marked_processes(lab), f"lab {lab} is still there"
    for host in ("fltpc1", "fltpc2"):
        assert not fleet.runtime[host].exists(), f"the runtime of {host} is still there"
    assert "fltgone: FAILED or UNREACHABLE" in down.stdout
    assert "fltnopkg has no podpath runtime" in down.stdout


def test_a_bad_roster_stops_every_host_before_any_change(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,lab\nAda Lovelace,fgood1\nAlan Turing,fgood1\n")
    closed = free_port()  # a host reached would be unreachable here: the play must stop before
    hosts = {f"fltr{i}": {"ansible_host": "127.0.0.1", "ansible_port": closed, "podpath_capacity": 2} for i in (1, 2)}
    inventory = tmp_path / "classroom.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    out = play(inventory, "netns-lab.yml", "-e", f"podpath_roster={roster}")
    assert out.returncode != 0
    assert f"podpath_roster {roster}, line 3: lab 'fgood1' is already given on line 2" in out.stdout, out.stdout[-2000:]
    assert recap(out.stdout) == {f"fltr{i}": {"ok": 0, "changed": 0, "unreachable": 0, "failed": 1} for i in (1, 2)}
