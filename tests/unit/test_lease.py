"""The leader-election sidecar (podpath.lease) as a process: it takes the lease, and on
SIGTERM gives it up and exits without waiting out its retry period."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time


def lease_holder(path) -> str | None:
    try:
        return json.loads(path.read_text() or "{}").get("holderIdentity")
    except (OSError, ValueError):
        return None


def test_sigterm_releases_the_lease_and_ends_the_wait_at_once(tmp_path):
    lease = tmp_path / "leases" / "ingress.json"
    retry = 60.0  # a wait that the SIGTERM must cut short
    sidecar = subprocess.Popen([sys.executable, "-m", "podpath.lease", "--lease", str(lease), "--identity", "pod-a",
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
