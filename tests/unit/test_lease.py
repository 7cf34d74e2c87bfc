"""The lease the ingress controllers elect their leader with (podpath.runtime.lease): whoever
reads it while a leader renews it finds a whole lease every time, and a lease written by
hand with fields that are not numbers is taken over as expired. The controller program
that calls it is tested in test_ingress_controller.py."""
from __future__ import annotations

import multiprocessing
import time

from podpath.runtime import lease as lease_mod


def lease_holder(path) -> str | None:
    return (lease_mod.read(str(path)) or {}).get("holderIdentity")


def _renew_until(path: str, stop) -> None:
    while not stop.is_set():
        lease_mod.step(path, "pod-a", 3.0, time.time())


def test_a_read_during_renewals_always_finds_the_whole_lease(tmp_path):
    path = str(tmp_path / "ingress.json")
    lease_mod.step(path, "pod-a", 3.0, time.time())
    stop = multiprocessing.Event()
    leader = multiprocessing.Process(target=_renew_until, args=(path, stop))
    leader.start()
    try:
        reads = [lease_mod.read(path) for _ in range(3000)]
    finally:
        stop.set()
        leader.join(timeout=10)
    torn = sum(1 for got in reads if not got or got.get("holderIdentity") != "pod-a")
    assert torn == 0, f"{torn} of {len(reads)} reads found no whole lease while the leader renewed it"


def test_a_lease_with_fields_that_are_not_numbers_is_taken_over(tmp_path):
    path = tmp_path / "ingress.json"
    path.write_text('{"holderIdentity": "someone", "renewTime": "yesterday", "leaseDurationSeconds": null, '
                    '"leaseTransitions": "many"}')
    lease = lease_mod.step(str(path), "pod-a", 3.0, time.time())
    assert lease["holderIdentity"] == "pod-a" and lease["leaseTransitions"] == 0, lease
    assert lease_holder(path) == "pod-a"


def test_a_folder_in_place_of_the_lease_reads_as_no_lease(tmp_path):
    path = tmp_path / "ingress.json"
    path.mkdir()
    assert lease_mod.read(str(path)) is None


def test_a_controller_frozen_while_it_holds_the_lock_hangs_nobody(tmp_path):
    """A drill freezes (SIGSTOP) the controllers; one frozen inside its renewal keeps the
    lease's lock. Readers (status, the verifier) and the other controllers wait at most
    LOCK_WAIT_S, then go on: the reader with the lease as the file holds it, the controller
    without writing."""
    import fcntl
    import os

    path = str(tmp_path / "lease.json")
    lease_mod.step(path, "pod-a", 3.0, 100.0)
    frozen = os.open(path, os.O_RDWR)  # another open file: its lock stands against ours
    fcntl.flock(frozen, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        assert lease_holder(path) == "pod-a"
        after = lease_mod.step(path, "pod-b", 3.0, 200.0)  # expired, but the lock is held
        lease_mod.release(path, "pod-a")
        waited = time.monotonic() - started
        assert after["holderIdentity"] == "pod-a"
        assert waited < 3 * lease_mod.LOCK_WAIT_S + 1.0, f"waited {waited:.1f} s"
    finally:
        os.close(frozen)
    assert lease_mod.step(path, "pod-b", 3.0, 200.0)["holderIdentity"] == "pod-b"  # the lock free again
