"""podpath cluster report: redaction and the failed-task search on recorded Ansible output,
and one real run on this host (where vagrant has no machines)."""
from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from podpath.cluster import report

RECORDED = Path(__file__).parent / "recorded" / "cluster_doctor"
COLOR = RECORDED / "ansible-playbook_core-2.19.14_failed-run_color-stdout.txt"
LOGFILE = RECORDED / "ansible-playbook_core-2.19.14_failed-run_log-path.log"
# The made-up secrets the recorded failing run printed (see the folder's README).
SECRETS = [
    "abcdef.0123456789abcdef",
    "8f4a1c2b3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
    "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAFAKEFAKEFAKEFAKE",
    "THISISNOTAREALKEY",
    "eyJhbGciOiJSUzI1NiJ9",
    "ZmFrZXNpZ25hdHVyZQ",
    "hunter2-not-real",
]


@pytest.mark.parametrize("path", [COLOR, LOGFILE], ids=["terminal", "log_path"])
def test_redaction_removes_every_secret_of_a_recorded_run(path):
    text = path.read_text()
    assert all(secret in text for secret in SECRETS), "the recording must hold the secrets the test looks for"
    clean = report.redact(text)
    assert [s for s in SECRETS if s in clean] == []
    # What an instructor needs stays.
    for kept in ("Join the node to the cluster", "192.168.56.10:6443", "no route to host", "kubeadm join",
                 "--discovery-token-ca-cert-hash sha256:[redacted]", "[redacted PRIVATE KEY]"):
        assert kept in clean


@pytest.mark.parametrize("text, secret, kept", [
    ("    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=\n", "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=",
     "client-key-data: [redacted]"),
    ("discovery:\n  bootstrapToken:\n    caCertHashes:\n    - sha256:" + "ab" * 32 + "\n", "ab" * 32, "caCertHashes"),
    ("ansible_become_password=s3cr3t host=cp1", "s3cr3t", "host=cp1"),
    ('{"token": "q1w2e3r4t5y6"}', "q1w2e3r4t5y6", '"token": "[redacted]"'),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n\nnext line", "MIIEowIBAAKCAQEA", "next line"),
    ("kubeadm token create --print-join-command\nkubeadm join x --token z9y8x7.a1b2c3d4e5f6g7h8 ...",
     "z9y8x7.a1b2c3d4e5f6g7h8", "kubeadm token create"),
])
def test_redaction_forms(text, secret, kept):
    clean = report.redact(text)
    assert secret not in clean and kept in clean


def test_redaction_keeps_image_digests_and_plain_words():
    line = "nginx@sha256:" + "cd" * 32 + "  Running pre-flight checks; 3 tokens left"
    assert report.redact(line) == line


@pytest.mark.parametrize("path", [COLOR, LOGFILE], ids=["terminal", "log_path"])
def test_last_failed_task_skips_ignored_failures(path):
    failure = report.last_failed_task(path.read_text())
    assert failure.task == "Join the node to the cluster"
    assert failure.hosts == ["cp1"]
    assert failure.text.startswith("TASK [Join the node to the cluster]")
    assert "\x1b[" not in failure.text and " p=" not in failure.text     # colours and log prefixes gone
    assert failure.recap.startswith("PLAY RECAP") and "worker1" in failure.recap


@pytest.mark.parametrize("path", [COLOR, LOGFILE], ids=["terminal", "log_path"])
def test_last_failed_task_of_a_shorter_run(path):
    text = path.read_text()
    up_to_ignored = text[:text.index("TASK [Join the node")]
    failure = report.last_failed_task(up_to_ignored)   # the unreachable worker; the ignored failure does not count
    assert failure.task == "Check that the node answers" and failure.hosts == ["worker1"]
    assert report.last_failed_task(text[:text.index("TASK [Check that")]) is None


def test_vagrant_status():
    assert report.parse_status((RECORDED / "vagrant-status-machine-readable_2.3.4_debian12-not-created.txt").read_text()) \
        == {"cp1": "not_created", "worker1": "not_created", "worker2": "not_created"}
    states = report.parse_status((RECORDED / "vagrant-status-machine-readable_running_upstream.txt").read_text())
    assert states == {"cp1": "running", "worker1": "running", "worker2": "poweroff"}


def test_ansible_log_path(tmp_path, monkeypatch):
    monkeypatch.delenv("ANSIBLE_LOG_PATH", raising=False)
    (tmp_path / "ansible.cfg").write_text("[defaults]\ninventory = x\n")
    assert report.ansible_log_path(tmp_path) is None
    (tmp_path / "ansible.cfg").write_text("[defaults]\nlog_path = build/ansible.log\n")
    assert report.ansible_log_path(tmp_path) == tmp_path / "build" / "ansible.log"
    monkeypatch.setenv("ANSIBLE_LOG_PATH", str(tmp_path / "elsewhere.log"))
    assert report.ansible_log_path(tmp_path) == tmp_path / "elsewhere.log"


def test_report_runs_here(tmp_path):
    """A real run on this host: vagrant answers but has no machines, so the cluster is not
    asked; the saved log (with made-up secrets) gives the failed task."""
    log = tmp_path / "provision.log"
    shutil.copy(COLOR, log)
    out = tmp_path / "report.md"
    done = subprocess.run([sys.executable, "-m", "podpath.cluster", "report", "-o", str(out), "--log", str(log),
                           "--timeout", "120"], capture_output=True, text=True, cwd=report.ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    sections = ["## Host", "## Versions", "## Doctor", "## vagrant status", "## Provisioning: the last failed task",
                "## Cluster"]
    assert [text.index(s) for s in sections] == sorted(text.index(s) for s in sections)
    assert "task **Join the node to the cluster** failed on cp1" in text
    assert [s for s in SECRETS if s in text] == []
    cluster = text[text.index("## Cluster"):]
    if "| cp1 | running |" not in text:
        assert "not asked: cp1 is" in cluster
