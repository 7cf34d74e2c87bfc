"""The leader-election sidecar (podpath.runtime.lease): as a process it takes the lease, and on
SIGTERM gives it up and exits without waiting out its retry period; and whoever reads
the lease while a leader renews it finds a whole lease every time."""
from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
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


def test_sigterm_releases_the_lease_and_ends_the_wait_at_once(tmp_path):
    lease = tmp_path / "leases" / "ingress.json"
    retry = 60.0  # a wait that the SIGTERM must cut short
    sidecar = subprocess.Popen([sys.executable, "-m", "podpath.runtime.lease", "--lease", str(lease), "--identity", "pod-a",
                                "--retry", str(retry)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while lease_holder(lease) != "pod-a" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease_holder(lease) == "pod-a", "the sidecar did not take the free lease"
        sidecar.send_signal(signal.SIGTERM)
        assert sidecar.wait(timeout=retry / 2) == 0, "the sidecar waited out its retry period"
        assert lease_holder(lease) == "", "the lease was not released on a clean stop"
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()
