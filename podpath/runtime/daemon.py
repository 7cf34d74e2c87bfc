"""What the lab's small daemons (MetalLB speaker, kube-proxy's loop) share: their log line
and how they read their configuration file."""
from __future__ import annotations

import json
import signal
import sys
import time


def log(message: str) -> None:
    """One line to the daemon's log (its stdout, which the lab sends to a file)."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


def start(argv: list[str], program: str) -> dict:
    """Read the JSON configuration named on the command line; exit on SIGTERM."""
    if len(argv) != 2:
        print(f"usage: python -m podpath.runtime.{program} CONFIG.json", file=sys.stderr)
        raise SystemExit(2)
    with open(argv[1]) as handle:
        config = json.load(handle)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return config
