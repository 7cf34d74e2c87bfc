"""The netns lab's MetalLB speaker (podpath/runtime/speaker.py) at work, on the loopback
of a network namespace of its own (`unshare --net`, which ends with the test): it learns a
peer from its heartbeats, forgets it when they stop, rewrites its status only when what it
says changes, and renews the status file's modification time while it runs, which is what
`podpath status` judges a running speaker by (podpath/evidence/status.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podpath.evidence import status

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20.0  # the longest a step may take on a busy host; no timing is asserted


def speaker_setup(interval: float, dead_after: float) -> str:
    """The start of a script run inside the test's namespace (argv: FOLDER WAIT): lo up, and the
    configuration of speaker cp1 (on 127.0.0.1, its peer worker1 on 127.0.0.2) written to
    FOLDER/conf.json, whose path is `handle.name`; the speaker's status goes to `status`."""
    return r'''
import json, os, socket, subprocess, sys, time
folder, wait = sys.argv[1], float(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
status = os.path.join(folder, "cp1.json")
conf = {"node": "cp1", "ip": "127.0.0.1", "interface": "lo", "addresses": ["192.168.56.200"],
        "members": [{"node": "cp1", "ip": "127.0.0.1"}, {"node": "worker1", "ip": "127.0.0.2"}],
        "broadcast": "127.255.255.255", "port": 17946, "status": status}
''' + f"conf.update(interval={interval!r}, dead_after={dead_after!r})\n" + r'''
with open(os.path.join(folder, "conf.json"), "w") as handle:
    json.dump(conf, handle)
'''


# Runs inside the namespace: starts the speaker on lo, plays a peer (worker1) for a while,
# and prints what the status file said at each step, as JSON lines.
HARNESS = speaker_setup(0.2, 1.0) + r'''
speaker = subprocess.Popen([sys.executable, "-m", "podpath.runtime.speaker", handle.name], stdout=subprocess.DEVNULL)
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)

def read():
    try:
        with open(status) as handle:
            return os.stat(status).st_mtime, json.load(handle)
    except (OSError, ValueError):
        return None, None

def until(label, test, beat=False):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if beat:
            peer.sendto(json.dumps({"node": "worker1", "ip": "127.0.0.2"}).encode(), ("127.255.255.255", 17946))
        mtime, data = read()
        if data is not None and test(mtime, data):
            break
        time.sleep(0.1)
    print(json.dumps({"step": label, "mtime": mtime, "status": data}), flush=True)
    return mtime, data

try:
    _, first = until("alone", lambda m, d: True)
    until("peer", lambda m, d: "worker1" in d["alive"], beat=True)
    _, gone = until("peer silent", lambda m, d: "worker1" not in d["alive"])
    mtime, _ = read()
    until("at rest", lambda m, d: m is not None and mtime is not None and m > mtime + 0.3)
finally:
    speaker.terminate()
    speaker.wait()
print(json.dumps({"step": "stopped", "exists": os.path.exists(status)}), flush=True)
'''


# A speaker whose next periodic heartbeat is far away (1000 s): what it sends after its first
# heartbeat can only be an answer. A peer starts after it, listening on the speakers' port.
JOIN = speaker_setup(1000, 2000) + r'''
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
peer.bind(("0.0.0.0", 17946))
peer.settimeout(wait)
speaker = subprocess.Popen([sys.executable, "-m", "podpath.runtime.speaker", handle.name], stdout=subprocess.PIPE, text=True)
heard = []
try:
    heard.append(json.loads(peer.recvfrom(2048)[0]))  # its first heartbeat, when it starts
    before = os.path.exists(status)
    peer.sendto(json.dumps({"node": "worker1", "ip": "127.0.0.2"}).encode(), ("127.255.255.255", 17946))
    while True:  # skip our own broadcast, looped back to us
        message = json.loads(peer.recvfrom(2048)[0])
        if message["node"] == "cp1":
            heard.append(message)
            break
    deadline = time.monotonic() + wait
    while not os.path.exists(status) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(status) as handle:
        first = json.load(handle)
finally:
    speaker.terminate()
    log = speaker.communicate()[0]
print(json.dumps({"heard": heard, "status before the peer": before, "first status": first, "log": log}))
'''


# A speaker alone on one end of a veth pair (its own member list has only cp1, so it takes the
# address at once); the other end listens with a packet socket. First it counts the gratuitous
# ARP replies for the address over a window much longer than garp_for; then an nftables rule
# drops every ARP frame leaving the speaker's end, and ARP requests for the address are sent:
# the kernel refuses the answers (ENOBUFS), and the speaker must go on running.
GARP = r"""
import json, os, socket, struct, subprocess, sys, time
folder, wait = sys.argv[1], float(sys.argv[2])
def sh(*argv):
    subprocess.run(argv, check=True)
sh("ip", "link", "add", "spk", "type", "veth", "peer", "name", "cli")
sh("ip", "addr", "add", "192.168.56.10/24", "dev", "spk")
sh("ip", "link", "set", "spk", "up")
sh("ip", "link", "set", "cli", "up")
listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
listener.bind(("cli", 0x0806))
conf = {"node": "cp1", "ip": "192.168.56.10", "interface": "spk", "addresses": ["192.168.56.200"],
        "members": [{"node": "cp1", "ip": "192.168.56.10"}], "broadcast": "192.168.56.255", "port": 17946,
        "interval": 0.5, "dead_after": 1.5, "garp_every": 0.25, "garp_for": 2.0,
        "status": os.path.join(folder, "cp1.json")}
with open(os.path.join(folder, "conf.json"), "w") as handle:
    json.dump(conf, handle)
log = open(os.path.join(folder, "speaker.log"), "w")
speaker = subprocess.Popen([sys.executable, "-m", "podpath.runtime.speaker", handle.name], stdout=log, stderr=log)
target = socket.inet_aton("192.168.56.200")
replies = 0
listener.settimeout(0.2)
deadline = time.monotonic() + conf["garp_for"] + 4.0
while time.monotonic() < deadline:
    try:
        frame = listener.recv(2048)
    except socket.timeout:
        continue
    op, spa, tha, tpa = struct.unpack("!H6x4s6s4s", frame[20:42])
    if op == 2 and spa == target and tpa == target and tha == b"\xff" * 6:
        replies += 1
sh("nft", "add", "table", "netdev", "t")
sh("nft", "add", "chain", "netdev", "t", "out", '{ type filter hook egress device "spk" priority 0 ; }')
sh("nft", "add", "rule", "netdev", "t", "out", "ether", "type", "arp", "drop")
mac = listener.getsockname()[4]
ask = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac,
       socket.inet_aton("192.168.56.100"), b"\0" * 6, target))
for _ in range(3):
    listener.send(ask)
    time.sleep(0.3)
time.sleep(1.0)
running = speaker.poll() is None
speaker.terminate()
speaker.wait(timeout=wait)
log.close()
print(json.dumps({"gratuitous replies": replies, "running after refused answers": running,
                  "log": open(os.path.join(folder, "speaker.log")).read()}))
"""

def _in_netns(folder, script: str) -> str:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("the speaker's raw ARP socket and its own network namespace need root, unshare and ip")
    done = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", script, str(folder), str(WAIT_S)],
                          cwd=ROOT, capture_output=True, text=True, timeout=5 * WAIT_S + 30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def steps(tmp_path):
    return {s["step"]: s for s in map(json.loads, _in_netns(tmp_path, HARNESS).splitlines())}


def test_the_speaker_learns_a_peer_from_its_heartbeats_and_forgets_it_when_they_stop(steps):
    assert steps["alone"]["status"]["alive"] == ["cp1"]
    assert steps["peer"]["status"]["alive"] == ["cp1", "worker1"]
    assert steps["peer silent"]["status"]["alive"] == ["cp1"]
    # alone or not, cp1 is a candidate and the one address goes to whichever the election gives
    assert steps["alone"]["status"]["announcing"] == ["192.168.56.200"]


def test_at_rest_the_status_is_not_rewritten_but_its_modification_time_is_renewed(steps):
    silent, rest = steps["peer silent"], steps["at rest"]
    assert rest["mtime"] > silent["mtime"], "the speaker stopped renewing its status file's modification time"
    assert rest["status"] == silent["status"], "the speaker rewrote a status whose content did not change"


def test_a_stopped_speaker_removes_its_status(steps):
    assert steps["stopped"]["exists"] is False


def test_a_starting_speaker_is_answered_at_once_and_elects_only_once_it_has_heard_every_member(tmp_path):
    seen = json.loads(_in_netns(tmp_path, JOIN).splitlines()[-1])
    # its start heartbeat, then the answer to the peer's first one (its next periodic one is 1000 s away)
    assert [m["node"] for m in seen["heard"]] == ["cp1", "cp1"]
    assert not seen["status before the peer"], "the speaker elected alone before it had heard the other member"
    assert seen["first status"]["alive"] == ["cp1", "worker1"], seen["first status"]
    assert "(alive: cp1)" not in seen["log"], f"it announced as if alone:\n{seen['log']}"


def test_status_believes_a_speaker_by_the_files_modification_time():
    now = time.time()
    said = {"node": "cp1", "pid": os.getpid(), "updated": now, "announcing": []}  # an unmarked process: believed
    assert status._live_speaker("lab", said, now, touched=now - 1)
    assert not status._live_speaker("lab", said, now, touched=now - status.SPEAKER_FRESH_S - 1), (
        "a status file nobody touched lately was believed because of the time written in it")


@pytest.fixture(scope="module")
def takeover(tmp_path_factory):
    return json.loads(_in_netns(tmp_path_factory.mktemp("garp"), GARP).splitlines()[-1])


def test_the_speaker_repeats_its_gratuitous_arp_after_a_takeover_and_then_stops(takeover):
    seen = takeover
    # garp_for 2 s, every 0.25 s: the first one and at most 8 repeats; 6 s of listening would
    # hear about 24 if it never stopped, and 1 if it never repeated
    assert 2 <= seen["gratuitous replies"] <= 9, seen


def test_a_speaker_whose_answers_the_kernel_refuses_goes_on_running(takeover):
    seen = takeover
    assert seen["running after refused answers"], f"the speaker exited when its ARP answer was dropped:\n{seen['log']}"
    assert "could not send the ARP answer for 192.168.56.200" in seen["log"], seen["log"]
