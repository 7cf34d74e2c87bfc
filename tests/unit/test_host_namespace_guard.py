"""A node process started outside its lab's node namespace (in the host's own, say) refuses
to run: it would apply kube-proxy's rules to that namespace's tables and send its probes out
of it. It says so and exits 2 before it applies a rule or sends a packet."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START = "import sys; from podpath.runtime.proxier import main; sys.exit(main(sys.argv))"


def run_node_process(tmp_path, netns: str) -> subprocess.CompletedProcess:
    proxy = tmp_path / "kube-proxy.conf"
    kubelet = tmp_path / "kubelet.conf"
    proxy.write_text("{}")  # were it used, the process would fail on it with a traceback
    kubelet.write_text(json.dumps({"netns": netns}))
    return subprocess.run([sys.executable, "-c", START, str(proxy), str(kubelet)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_a_node_process_outside_its_namespace_refuses_before_it_does_anything(tmp_path):
    netns = f"podpath-no-such-{os.getpid()}"
    done = run_node_process(tmp_path, netns)
    assert done.returncode == 2, done.stderr
    assert f"refused: it applies kube-proxy's rules and probes pods, so it runs only in its lab's node namespace " \
           f"{netns}" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_a_node_process_in_another_namespace_than_its_own_refuses(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("making a network namespace needs root")
    netns = f"podpath-guard-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=30)
    try:
        done = run_node_process(tmp_path, netns)  # started here, not in NETNS
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "it runs in another network namespace" in done.stderr, done.stderr
