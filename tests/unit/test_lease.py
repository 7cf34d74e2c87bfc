"""The lease the ingress controllers elect their leader with, between its writer, the
controller program (podpath-ingress, podpath/runtime/ingress.c, built from its source), and
its reader, podpath.runtime.lease.read (`podpath status`, the verifier): what the program
writes reads back with every field, as Python's json.dumps would write it; a read while a
leader renews finds a whole lease every time; a lease torn or written by hand is taken over
as expired, never a reason to stop; and a reader waits out a frozen holder's lock. How the
program runs nginx and stops is tested in test_ingress_controller.py."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from waiting import WAIT, until

from podpath.runtime import lease as lease_mod

FIELDS = {"acquireTime": float, "holderIdentity": str, "leaseDurationSeconds": float, "leaseTransitions": int,
          "renewTime": float}


@pytest.fixture
def controller(ingress_program, tmp_path):
    """start(lease, identity, retry=...): a controller over a child that sleeps; each is
    stopped (SIGTERM, then SIGKILL) at the end with its child."""
    started: list[subprocess.Popen] = []

    def start(lease: Path, identity: str, retry: float = 0.05, duration: float = 3.0) -> subprocess.Popen:
        started.append(subprocess.Popen([str(ingress_program), "--lease", str(lease), "--identity", identity,
                                         "--duration", str(duration), "--retry", str(retry), "--", "sleep", "600"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return started[-1]
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()



def holder(path: Path) -> str | None:
    return (lease_mod.read(str(path)) or {}).get("holderIdentity")


def held_still(proc: subprocess.Popen, path: Path) -> tuple[bytes, dict | None]:
    """The lease file's bytes and lease.read's lease, with the controller PROC stopped between
    two of its writes (SIGSTOP), so that both come from one write."""
    def between_writes():
        proc.send_signal(signal.SIGSTOP)
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # stopped in the middle of a write: let it finish
                proc.send_signal(signal.SIGCONT)
                return None
            return handle.read(), lease_mod.read(str(path))
    try:
        return until(between_writes, "the controller was never found between two writes")
    finally:
        proc.send_signal(signal.SIGCONT)


def test_the_lease_it_writes_reads_back_with_every_field_as_json_dumps_writes_it(tmp_path, controller):
    path = tmp_path / "leases" / "ingress-nginx" / "leader.json"  # folders the first try makes
    before = time.time()
    proc = controller(path, "ingress-nginx-controller-1", duration=2.5)
    until(lambda: holder(path) == "ingress-nginx-controller-1", "the controller did not take the free lease")
    first = lease_mod.read(str(path))
    until(lambda: (lease_mod.read(str(path)) or {}).get("renewTime", 0) > first["renewTime"],
          "the controller did not renew the lease")
    raw, lease = held_still(proc, path)
    assert {key: type(value) for key, value in lease.items()} == FIELDS, lease
    assert raw == json.dumps(lease, sort_keys=True).encode(), f"not json.dumps(sort_keys=True)'s bytes: {raw!r}"
    assert lease["holderIdentity"] == "ingress-nginx-controller-1" and lease["leaseDurationSeconds"] == 2.5
    assert lease["leaseTransitions"] == 0 and lease["acquireTime"] == first["acquireTime"], (first, lease)
    assert before <= lease["acquireTime"] < lease["renewTime"] <= time.time(), lease


def test_a_read_during_renewals_always_finds_the_whole_lease(tmp_path, controller):
    path = tmp_path / "ingress.json"
    controller(path, "pod-a", retry=0.001)  # a rewrite every millisecond
    until(lambda: holder(path) == "pod-a", "the controller did not take the free lease")
    reads = [lease_mod.read(str(path)) for _ in range(3000)]
    torn = sum(1 for got in reads if not got or got.get("holderIdentity") != "pod-a")
    assert torn == 0, f"{torn} of {len(reads)} reads found no whole lease while the leader renewed it"


# what a lease file may hold that no controller wrote: each is taken over as expired
HAND_WRITTEN = {
    "torn": '{"holderIdentity": "pod-b", "renewTime": 17962',
    "not JSON": "pod-b holds it",
    "a list": '["pod-b", 1796192456.5, 3.0]',
    "not numbers": '{"holderIdentity": "pod-b", "renewTime": "yesterday", "leaseDurationSeconds": null, '
                   '"leaseTransitions": "many"}',
    "a holder that is not a name": '{"holderIdentity": {"name": "pod-b"}, "renewTime": 4e9, '
                                   '"leaseDurationSeconds": 3.0}',
    "nested, then torn": '{"holderIdentity": "pod-b", "renewTime": 4e9, "x": [[{"y": ',
    "a control character in a name": '{"holderIdentity": "pod\tb", "renewTime": 4e9, "leaseDurationSeconds": 3.0}',
    "not UTF-8": b'{"holderIdentity": "pod-\xff", "renewTime": 4e9, "leaseDurationSeconds": 3.0}',
    "nothing": "",
}


@pytest.mark.parametrize("content", HAND_WRITTEN.values(), ids=HAND_WRITTEN.keys())
def test_a_torn_or_hand_written_lease_is_taken_over_as_expired(tmp_path, controller, content):
    path = tmp_path / "ingress.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    proc = controller(path, "pod-a")
    until(lambda: holder(path) == "pod-a", "the controller did not take the lease over")
    lease = lease_mod.read(str(path))
    assert lease["leaseTransitions"] == 0 and lease["acquireTime"] <= lease["renewTime"], lease
    time.sleep(0.2)  # a few retry periods: it renews on, never stopping on what it found
    assert proc.poll() is None, f"the controller stopped (code {proc.returncode})"


def test_a_hand_written_lease_with_fields_of_its_own_is_counted_on(tmp_path, controller):
    """What a lease written by hand holds that the controllers would have written is kept: an
    expired holder's leaseTransitions is counted on, whitespace and other keys do not matter."""
    path = tmp_path / "ingress.json"
    path.write_text('{\n  "note": ["written", "by hand"],\n  "holderIdentity": "pod-b",\n  "renewTime": 100,\n'
                    '  "leaseDurationSeconds": 3,\n  "leaseTransitions": 6\n}\n')
    controller(path, "pod-a")
    until(lambda: holder(path) == "pod-a", "the controller did not take the expired lease over")
    assert lease_mod.read(str(path))["leaseTransitions"] == 7


def test_a_folder_in_place_of_the_lease_reads_as_no_lease(tmp_path):
    path = tmp_path / "ingress.json"
    path.mkdir()
    assert lease_mod.read(str(path)) is None


def test_a_reader_waits_out_a_frozen_holders_lock_and_reads_the_file_as_it_is(tmp_path):
    """A drill freezes (SIGSTOP) the controllers; one frozen inside its renewal keeps the
    lease's lock. Readers (status, the verifier) give up the lock after LOCK_WAIT_S and read
    the lease as the file holds it."""
    path = tmp_path / "lease.json"
    written = {"holderIdentity": "pod-a", "leaseDurationSeconds": 3.0, "leaseTransitions": 0, "renewTime": 100.0}
    path.write_text(json.dumps(written))
    frozen = os.open(path, os.O_RDWR)  # another open file: its lock stands against the reader's
    try:
        fcntl.flock(frozen, fcntl.LOCK_EX)
        got = []
        reader = threading.Thread(target=lambda: got.append(lease_mod.read(str(path))), daemon=True)
        reader.start()
        reader.join(timeout=WAIT)
        assert not reader.is_alive(), "the reader hung on the frozen holder's lock"
        assert got == [written]
    finally:
        os.close(frozen)
