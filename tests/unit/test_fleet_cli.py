"""`podpath ... --inventory`: what it reads from Ansible's output, and the input it refuses
before any play runs (podpath/play/fleet.py, the fleet block of podpath/cli.py)."""
from __future__ import annotations

import pytest

from podpath import cli
from podpath.play import fleet

PLAY = """\
PLAY [Choose the labs of every host] *******************************************

TASK [Choose the labs of each host] ********************************************
ok: [pc01]
ok: [pc02]
ok: [pc03]

TASK [netns_target : Check the host] *******************************************
fatal: [pc03]: UNREACHABLE! =>
    changed: false
    msg: 'Failed to connect to the host via ssh: ssh: connect to host 10.0.5.13 port
        22: Connection refused'
    unreachable: true
fatal: [pc02]: FAILED! =>
    msg: 'pc02 cannot run podpath''s labs: cannot install the Debian packages nosuch'

PLAY [Say which labs each host runs] *******************************************

TASK [Say which labs each host runs] *******************************************
ok: [pc01] =>
    msg:
    - pc01 runs stu01, stu02
    - 'pc02: FAILED or UNREACHABLE, its error is above (its labs: stu03)'

PLAY RECAP *********************************************************************
pc01                       : ok=36   changed=15   unreachable=0    failed=0    skipped=1    rescued=0    ignored=0
pc02                       : ok=2    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
pc03                       : ok=1    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_each_host_that_failed_or_was_unreachable_gets_ansibles_message():
    messages = fleet._messages(PLAY)
    assert messages["pc03"] == ("Failed to connect to the host via ssh: ssh: connect to host 10.0.5.13 port 22: "
                                "Connection refused")
    assert messages["pc02"] == "pc02 cannot run podpath's labs: cannot install the Debian packages nosuch"
    assert "pc01" not in messages


def test_the_playbooks_summary_lines_are_read_from_its_last_play():
    assert fleet._summary(PLAY) == ["pc01 runs stu01, stu02", "pc02: FAILED or UNREACHABLE, its error is above "
                                                             "(its labs: stu03)"]


def test_the_recap_gives_each_host_its_state():
    hosts = {h: fleet.HostOutcome(*map(int, rest)) for h, *rest in fleet.RECAP.findall(PLAY)}
    assert {h: o.state for h, o in hosts.items()} == {"pc01": "ok", "pc02": "failed", "pc03": "unreachable"}


def test_an_inventory_that_does_not_exist_is_refused_with_its_name(tmp_path, capsys):
    missing = tmp_path / "nope.yml"
    assert cli.main(["status", "--inventory", str(missing)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--inventory {missing}: no such file" in err and "docs/classroom.md" in err


@pytest.mark.parametrize("argv, said", [
    (["status", "--limit", "pc01"], "--limit works with --inventory"),
    (["verify", "--inventory", "INV", "--topology", "t.yml"], "--topology does not go with --inventory"),
    (["drill", "start", "--inventory", "INV", "--user", "ada"], "--user does not go with --inventory"),
    (["verify", "--inventory", "INV", "-x"], "-x: pytest's options do not go with --inventory"),
    (["up", "--inventory", "INV", "--lab", "Bad_Name"], "Bad_Name"),
    (["verify", "--inventory", "INV", "--report-dir", "/nonexistent/x"],
     "--report-dir /nonexistent/x: cannot write the class report there"),
])
def test_input_that_cannot_work_with_an_inventory_stops_before_any_play(argv, said, tmp_path, capsys,
                                                                         monkeypatch):
    inventory = tmp_path / "classroom.yml"
    inventory.write_text("all:\n  hosts:\n    pc01:\n")
    monkeypatch.setattr(fleet, "run", lambda *a, **k: pytest.fail("a play ran"))
    code = cli.main([str(inventory) if word == "INV" else word for word in argv])
    assert code == cli.EXIT_USAGE
    assert said in capsys.readouterr().err
