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
