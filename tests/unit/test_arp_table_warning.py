"""`podpath verify` says so when the host's ARP table was full while it ran (the table and its
limit are shared by every namespace of the host, so many labs at once can fill it and make
checks fail that have nothing wrong in their lab); the counter is read from the kernel's
/proc/net/stat/arp_cache, here from a recorded copy."""
from __future__ import annotations

import argparse
import json

import pytest

from podpath import cli
from podpath.evidence import probe

# /proc/net/stat/arp_cache of a 2-CPU host, one line per CPU, hexadecimal
RECORDED = """\
entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls
00000033 00029f35 0002a5ab 00000004   00608b2d 0001ae53 00000087   00000000         00000000         00000000         0000417e       000000cf            00002465
00000033 00010000 00010000 00000000   00100000 00010000 00000001   00000000         00000000         00000000         00000010       00000001            0000000a
"""


def test_the_table_fulls_of_every_cpu_are_summed():
    assert probe.arp_table_fulls(RECORDED) == 0x2465 + 0xA


def test_a_file_without_that_column_reads_as_unknown():
    assert probe.arp_table_fulls("entries allocs\n00000001 00000002\n") is None


@pytest.fixture
def verify_run(monkeypatch):
    """cmd_verify with the verifier replaced (exit CODE) and the counter read as READINGS."""
    def run(code: int, readings: list[int | None], capsys):
        left = list(readings)
        monkeypatch.setattr(cli, "require_root", lambda: None)
        monkeypatch.setattr(cli, "require_lab", lambda lab: None)
        monkeypatch.setattr(cli.subprocess, "call", lambda *a, **k: code)
        monkeypatch.setattr(probe, "arp_table_fulls", lambda text=None: left.pop(0))
        monkeypatch.setattr(probe, "neighbour_table_limit", lambda: 1024)
        got = cli.cmd_verify(argparse.Namespace(lab="stu1", junitxml=None, disruptive=False))
        return got, capsys.readouterr().err
    return run


def test_a_failed_verify_during_which_the_table_was_full_says_so_with_the_fix(verify_run, capsys):
    code, said = verify_run(1, [100, 137], capsys)
    assert code == 1
    assert "full 37 times while the verifier ran" in said and "gc_thresh3 is 1024" in said
    assert "sysctl -w net.ipv4.neigh.default.gc_thresh2=4096 net.ipv4.neigh.default.gc_thresh3=8192" in said


@pytest.mark.parametrize("code, readings", [(1, [100, 100]), (0, [100, 137]), (1, [None, None])])
def test_no_word_of_it_when_the_table_was_not_full_or_nothing_failed_or_it_cannot_be_read(verify_run, capsys,
                                                                                          code, readings):
    assert verify_run(code, readings, capsys) == (code, "")


def failed_results(labs: list[str], host: str, args):
    from podpath.evidence import classreport

    return [classreport.LabResult(host, lab, error="pytest stopped") for lab in labs]


def test_podpath_report_that_verified_labs_on_a_full_table_says_so(monkeypatch, capsys, tmp_path):
    left = [500, 512]
    monkeypatch.setattr(cli, "require_root", lambda: None)
    monkeypatch.setattr(cli, "report_results", failed_results)
    monkeypatch.setattr(probe, "arp_table_fulls", lambda text=None: left.pop(0))
    monkeypatch.setattr(probe, "neighbour_table_limit", lambda: 1024)
    assert cli.main(["report", "--labs", "stu1,stu2", "--json", "-"]) == cli.EXIT_FAILED
    said = capsys.readouterr().err
    assert f"{probe.ARP_TABLE_FULL}12 times while the verifier ran" in said
    assert left == []  # read once before the first lab and once after the last


def test_verify_inventory_names_the_host_whose_table_was_full(monkeypatch, capsys, tmp_path):
    from podpath.evidence import classreport
    from podpath.play import fleet

    document = json.dumps(classreport.results_document([classreport.LabResult("pc1", "stu1", error="x")]))
    warning = probe.arp_table_warning(7, 1024)
    asked = fleet.Asked(fleet.FleetRun(rc=2), {"pc1": ["stu1"], "pc2": ["stu2"]},
                        [fleet.Answer("pc1", ["stu1"], 1, document, f"podpath: verifying lab stu1 (1/1)\n{warning}\n"),
                         fleet.Answer("pc2", ["stu2"], 1, document.replace("pc1", "pc2").replace("stu1", "stu2"),
                                      "podpath: verifying lab stu2 (1/1)\n")])
    monkeypatch.setattr(fleet, "ask", lambda *a, **k: asked)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    pc1:\n    pc2:\n")
    assert cli.main(["verify", "--inventory", str(inventory), "--report-dir", str(tmp_path / "report")]) \
        == cli.EXIT_FAILED
    said = [line for line in capsys.readouterr().err.splitlines() if "neighbour (ARP) table" in line]
    assert said == [f"podpath: on host pc1: {warning.removeprefix('podpath: ')}"]


# -- a class verified at once: each lab's entries go once its checks are done, when the table is crowded

@pytest.mark.parametrize("entries, limit, crowded", [(511, 1024, False), (512, 1024, True), (900, 8192, False),
                                                      (None, 1024, False)])
def test_the_table_is_crowded_from_half_its_limit(monkeypatch, entries, limit, crowded):
    from podpath.evidence import nodeprobe

    monkeypatch.setattr(nodeprobe, "neighbour_entries", lambda: entries)
    monkeypatch.setattr(nodeprobe, "neighbour_table_limit", lambda: limit)
    assert nodeprobe.neighbour_table_crowded() is crowded


def test_the_host_s_entries_are_read_from_the_kernel():
    from podpath.evidence import nodeprobe

    first = int(open("/proc/net/stat/arp_cache").read().splitlines()[1].split()[0], 16)
    assert abs(nodeprobe.neighbour_entries() - first) < 64  # the same counter (other namespaces may move it)


def release(monkeypatch, crowded: bool, remote: bool = False):
    """What NetnsLab.release_neighbours ran, on a table CROWDED or not; whether it said it deleted."""
    from podpath.evidence import nodeprobe
    from podpath.evidence.lab import Result
    from podpath.evidence.probe import NetnsLab
    from podpath.model import topology as topology_mod

    ran = []
    monkeypatch.setattr(nodeprobe, "neighbour_table_crowded", lambda: crowded)
    lab = NetnsLab("stu1", topology_mod.load(), run=lambda argv: ran.append(argv) or Result(0, "", ""), remote=remote)
    return lab, lab.release_neighbours(), ran


def test_on_a_crowded_table_every_namespace_of_the_lab_but_the_bridge_s_is_flushed(monkeypatch):
    lab, deleted, ran = release(monkeypatch, crowded=True)
    assert deleted and len(ran) == 1  # one process for the whole lab
    argv = ran[0]
    assert argv[:2] == ["sh", "-c"] and 'ip -n "$ns" neigh flush all' in argv[2]
    flushed = argv[4:]
    assert sorted(flushed) == sorted(n for n in lab.plan.netns_names if n != lab.plan.lan_netns)
    assert lab.plan.client_netns in flushed and all(p.netns in flushed for p in lab.plan.pods)


@pytest.mark.parametrize("crowded, remote", [(False, False), (True, True)])
def test_a_table_with_room_or_a_lab_on_another_host_is_left_as_it_is(monkeypatch, crowded, remote):
    _lab, deleted, ran = release(monkeypatch, crowded, remote)
    assert not deleted and ran == []


def test_an_up_whose_pods_never_became_ready_names_a_full_table_meanwhile(monkeypatch):
    from podpath.evidence import status
    from podpath.model import topology

    monkeypatch.setattr(status, "unready_pods", lambda lab, nodes: ["echo-1 on worker1"])
    monkeypatch.setattr(probe, "neighbour_table_limit", lambda: 1024)
    counts = iter([40, 45])
    monkeypatch.setattr(probe, "arp_table_fulls", lambda: next(counts))
    with pytest.raises(cli.CliError) as caught:
        cli.wait_until_ready("stu1", topology.load(), limit_s=0, quiet=True)
    said = str(caught.value)
    assert "echo-1 on worker1" in said
    assert "full 5 times meanwhile" in said and "gc_thresh3 is 1024" in said and "sysctl -w" in said
    for before, after in ((40, 40), (None, 45), (40, None)):
        counts = iter([before, after])
        with pytest.raises(cli.CliError) as caught:
            cli.wait_until_ready("stu1", topology.load(), limit_s=0, quiet=True)
        assert "neighbour" not in str(caught.value), (before, after)
