"""status.unready_pods: what the nodes publish as not ready, which `podpath drill start` waits out."""
from __future__ import annotations

import json

from podpath.evidence import status


def publish(folder, node, pods):
    (folder / f"{node}.json").write_text(json.dumps({"node": node, "pods": {
        name: {"ip": "10.244.0.9", "conditions": {"ready": ready, "serving": ready, "terminating": False}}
        for name, ready in pods.items()}}))


def test_every_pod_ready_on_every_node_is_nothing_to_wait_for(tmp_path, monkeypatch):
    monkeypatch.setattr(status, "endpoints_dir", lambda lab: str(tmp_path))
    publish(tmp_path, "cp1", {"ingress-1": True})
    publish(tmp_path, "worker1", {"echo-1": True, "ingress-2": True})
    assert status.unready_pods("l", ["cp1", "worker1"]) == []


def test_a_pod_not_ready_and_a_node_that_published_nothing_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(status, "endpoints_dir", lambda lab: str(tmp_path))
    publish(tmp_path, "cp1", {"ingress-1": True, "ingress-9": False})
    (tmp_path / "worker1.json").write_text("{half")
    assert status.unready_pods("l", ["cp1", "worker1", "worker2"]) == [
        "ingress-9 on cp1", "node worker1 has not published its pods' readiness",
        "node worker2 has not published its pods' readiness"]
