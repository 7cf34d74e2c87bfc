"""The netns lab's MetalLB speaker (podpath-speaker, podpath/runtime/speaker.c), built from its
source (tests/unit/conftest.py) and run for real in network namespaces of its own (`unshare
--net`, which end with each script): it learns a peer from its heartbeats, forgets it
when they stop, rewrites its status only when what it says changes, renews the status file's
modification time while it runs (what `podpath status` judges a running speaker by,
podpath/evidence/status.py), answers ARP for the address it announces, repeats its gratuitous
ARP after a takeover, survives frames the kernel refuses, stops announcing while its link is
down, and refuses a bad configuration naming the file, the setting and the fix."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podpath.evidence import status
from podpath.model import election

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 20.0  # the longest a step may take on a busy host; no timing is asserted


# The start of every script run inside a test's namespace (argv: FOLDER WAIT PROGRAM): `conf`
# writes a speaker's configuration, one setting a line, as podpath.model.workloads renders it.
PRELUDE = r'''
import json, os, signal, socket, struct, subprocess, sys, time
folder, wait, program = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def sh(*argv):
    subprocess.run(argv, check=True)
def conf(members, addresses, **settings):
    lines = [f"{k} {v}" for k, v in settings.items()]
    lines += [f"member {n} {ip}" for n, ip in members] + [f"address {a}" for a in addresses]
    path = os.path.join(folder, "speaker.conf")
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
def read(status):
    try:
        with open(status) as handle:
            return os.stat(status).st_mtime, json.load(handle)
    except (OSError, ValueError):
        return None, None
def until(status, test):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        mtime, data = read(status)
        if data is not None and test(data):
            return data
        time.sleep(0.05)
    return data
'''


def speaker_on_lo(interval: float, dead_after: float) -> str:
    """Lo up, and speaker cp1 (on 127.0.0.1, its peer worker1 on 127.0.0.2) configured in
    `config`; its status goes to `status`."""
    return PRELUDE + r'''
sh("ip", "link", "set", "lo", "up")
status = os.path.join(folder, "cp1.json")
config = conf([("cp1", "127.0.0.1"), ("worker1", "127.0.0.2")], ["192.168.56.200"], node="cp1", ip="127.0.0.1",
              interface="lo", broadcast="127.255.255.255", port=17946, status=status,
''' + f"interval={interval!r}, dead_after={dead_after!r})\n"


# Starts the speaker on lo, plays a peer (worker1) for a while, and prints what the status
# file said at each step, as JSON lines.
HARNESS = speaker_on_lo(0.2, 1.0) + r'''
speaker = subprocess.Popen([program, config], stdout=subprocess.DEVNULL)
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)

def step(label, test, beat=False):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if beat:
            peer.sendto(json.dumps({"node": "worker1", "ip": "127.0.0.2"}).encode(), ("127.255.255.255", 17946))
        mtime, data = read(status)
        if data is not None and test(mtime, data):
            break
        time.sleep(0.1)
    print(json.dumps({"step": label, "mtime": mtime, "status": data, "pid": speaker.pid}), flush=True)
    return mtime, data

try:
    step("alone", lambda m, d: True)
    step("peer", lambda m, d: "worker1" in d["alive"], beat=True)
    step("peer silent", lambda m, d: "worker1" not in d["alive"])
    mtime, _ = read(status)
    step("at rest", lambda m, d: m is not None and mtime is not None and m > mtime + 0.3)
finally:
    speaker.terminate()
    code = speaker.wait()
print(json.dumps({"step": "stopped", "exists": os.path.exists(status), "code": code}), flush=True)
'''


# A speaker whose next periodic heartbeat is far away (1000 s): what it sends after its first
# heartbeat can only be an answer. A peer starts after it, listening on the speakers' port.
JOIN = speaker_on_lo(1000, 2000) + r'''
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
peer.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
peer.bind(("0.0.0.0", 17946))
peer.settimeout(wait)
speaker = subprocess.Popen([program, config], stdout=subprocess.PIPE, text=True)
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
    first = until(status, lambda d: True)
finally:
    speaker.send_signal(signal.SIGINT)
    log = speaker.communicate()[0]
print(json.dumps({"heard": heard, "status before the peer": before, "first status": first, "log": log,
                  "code": speaker.returncode, "left": os.path.exists(status)}))
'''


# A speaker alone on one end of a veth pair (its own member list has only cp1, so it takes the
# address at once); the other end listens with a packet socket. First it counts the gratuitous
# ARP replies for the address over a window much longer than garp_for, then asks who has the
# address and who has another one; then an nftables rule drops every ARP frame leaving the
# speaker's end, and ARP requests for the address are sent: the kernel refuses the answers
# (ENOBUFS), and the speaker must go on running. Last, its link goes down and up again.
GARP = PRELUDE + r"""
sh("ip", "link", "add", "spk", "type", "veth", "peer", "name", "cli")
sh("ip", "addr", "add", "192.168.56.10/24", "dev", "spk")
sh("ip", "link", "set", "spk", "up")
sh("ip", "link", "set", "cli", "up")
listener = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
listener.bind(("cli", 0x0806))
status = os.path.join(folder, "cp1.json")
config = conf([("cp1", "192.168.56.10")], ["192.168.56.200"], node="cp1", ip="192.168.56.10", interface="spk",
              broadcast="192.168.56.255", port=17946, interval=0.5, dead_after=1.5, garp_every=0.25, garp_for=2.0,
              status=status)
log = open(os.path.join(folder, "speaker.log"), "w")
speaker = subprocess.Popen([program, config], stdout=log, stderr=log)
target = socket.inet_aton("192.168.56.200")
replies = 0
listener.settimeout(0.2)
deadline = time.monotonic() + 2.0 + 4.0  # garp_for, and 4 s more
while time.monotonic() < deadline:
    try:
        frame = listener.recv(2048)
    except socket.timeout:
        continue
    op, spa, tha, tpa = struct.unpack("!H6x4s6s4s", frame[20:42])
    if op == 2 and spa == target and tpa == target and tha == b"\xff" * 6:
        replies += 1
mac = listener.getsockname()[4]
def ask(address):
    return (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac,
            socket.inet_aton("192.168.56.100"), b"\0" * 6, socket.inet_aton(address)))
def answers(address):
    '''The ARP replies to cli for ADDRESS within 1 s of asking: (sender MAC, sender IP, target MAC, target IP).'''
    listener.send(ask(address))
    got, deadline = [], time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            frame = listener.recv(2048)
        except socket.timeout:
            continue
        op, sha, spa, tha, tpa = struct.unpack("!H6s4s6s4s", frame[20:42])
        if op == 2 and frame[:6] == mac and spa == socket.inet_aton(address):
            got.append([sha.hex(":"), socket.inet_ntoa(spa), tha.hex(":"), socket.inet_ntoa(tpa)])
    return got
answered = answers("192.168.56.200")
answered_other = answers("192.168.56.201")
spk_mac = json.loads(subprocess.run(["ip", "-j", "link", "show", "spk"], capture_output=True, check=True,
                                    text=True).stdout)[0]["address"]
sh("nft", "add", "table", "netdev", "t")
sh("nft", "add", "chain", "netdev", "t", "out", '{ type filter hook egress device "spk" priority 0 ; }')
sh("nft", "add", "rule", "netdev", "t", "out", "ether", "type", "arp", "drop")
for _ in range(3):
    listener.send(ask("192.168.56.200"))
    time.sleep(0.3)
time.sleep(1.0)
running = speaker.poll() is None
sh("nft", "delete", "table", "netdev", "t")
sh("ip", "link", "set", "spk", "down")
down = until(status, lambda d: not d["link_ok"])
sh("ip", "link", "set", "spk", "up")
up = until(status, lambda d: d["link_ok"] and d["announcing"])
speaker.terminate()
speaker.wait(timeout=wait)
log.close()
print(json.dumps({"gratuitous replies": replies, "running after refused answers": running, "answered": answered,
                  "answered other": answered_other, "speaker mac": spk_mac, "asker mac": mac.hex(":"),
                  "link down": down, "link up": up, "log": open(os.path.join(folder, "speaker.log")).read()}))
"""


def _in_netns(folder, script: str, program: Path) -> str:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("the speaker's raw ARP socket and its own network namespace need root, unshare and ip")
    done = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", script, str(folder), str(WAIT_S),
                           str(program)], cwd=ROOT, capture_output=True, text=True, timeout=5 * WAIT_S + 30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def steps(tmp_path, speaker_program):
    return {s["step"]: s for s in map(json.loads, _in_netns(tmp_path, HARNESS, speaker_program).splitlines())}


def test_the_speaker_learns_a_peer_from_its_heartbeats_and_forgets_it_when_they_stop(steps):
    assert steps["alone"]["status"]["alive"] == ["cp1"]
    assert steps["peer"]["status"]["alive"] == ["cp1", "worker1"]
    assert steps["peer silent"]["status"]["alive"] == ["cp1"]
    # alone, cp1 is the only candidate: the address is its own
    assert steps["alone"]["status"]["announcing"] == ["192.168.56.200"]


def test_the_status_has_the_fields_its_readers_use(steps):
    said = steps["alone"]["status"]
    assert set(said) == {"node", "ip", "mac", "alive", "announcing", "link_ok", "updated", "pid"}
    assert (said["node"], said["ip"], said["link_ok"], said["pid"]) == ("cp1", "127.0.0.1", True, steps["alone"]["pid"])
    assert said["mac"] == "00:00:00:00:00:00", "lo's MAC is all zeros"
    assert isinstance(said["updated"], float) and abs(said["updated"] - steps["alone"]["mtime"]) < 60


def test_at_rest_the_status_is_not_rewritten_but_its_modification_time_is_renewed(steps):
    silent, rest = steps["peer silent"], steps["at rest"]
    assert rest["mtime"] > silent["mtime"], "the speaker stopped renewing its status file's modification time"
    assert rest["status"] == silent["status"], "the speaker rewrote a status whose content did not change"


def test_a_stopped_speaker_removes_its_status_and_exits_cleanly(steps):
    assert steps["stopped"]["exists"] is False
    assert steps["stopped"]["code"] == 0


@pytest.fixture
def join(tmp_path, speaker_program):
    return json.loads(_in_netns(tmp_path, JOIN, speaker_program).splitlines()[-1])


def test_a_starting_speaker_is_answered_at_once_and_elects_only_once_it_has_heard_every_member(join):
    # its start heartbeat, then the answer to the peer's first one (its next periodic one is 1000 s away)
    assert [m["node"] for m in join["heard"]] == ["cp1", "cp1"]
    assert join["heard"][0] == {"node": "cp1", "ip": "127.0.0.1"}
    assert not join["status before the peer"], "the speaker elected alone before it had heard the other member"
    assert join["first status"]["alive"] == ["cp1", "worker1"], join["first status"]
    assert "(alive: cp1)" not in join["log"], f"it announced as if alone:\n{join['log']}"


def test_the_speaker_logs_as_the_lab_s_daemons_do(join):
    lines = join["log"].splitlines()
    assert lines[0][8:] == " cp1: speaker up on lo (127.0.0.1)", lines
    time.strptime(lines[0][:8], "%H:%M:%S")
    assert election.announcer(["cp1", "worker1"], "192.168.56.200") == "cp1"
    announced = [line[9:] for line in lines if "announcing" in line]
    assert announced == ["cp1: announcing 192.168.56.200 (alive: cp1, worker1); gratuitous ARP sent, "
                         "again every 1.1 s for 5 s"], lines


def test_sigint_stops_the_speaker_cleanly_too(join):
    assert join["code"] == 0 and not join["left"], join


def test_status_believes_a_speaker_by_the_files_modification_time():
    now = time.time()
    said = {"node": "cp1", "pid": os.getpid(), "updated": now, "announcing": []}  # an unmarked process: believed
    assert status._live_speaker("lab", said, now, touched=now - 1)
    assert not status._live_speaker("lab", said, now, touched=now - status.SPEAKER_FRESH_S - 1), (
        "a status file nobody touched lately was believed because of the time written in it")


@pytest.fixture(scope="module")
def takeover(tmp_path_factory, speaker_program):
    return json.loads(_in_netns(tmp_path_factory.mktemp("garp"), GARP, speaker_program).splitlines()[-1])


def test_the_speaker_repeats_its_gratuitous_arp_after_a_takeover_and_then_stops(takeover):
    # garp_for 2 s, every 0.25 s: the first one and at most 8 repeats; 6 s of listening would
    # hear about 24 if it never stopped, and 1 if it never repeated
    assert 2 <= takeover["gratuitous replies"] <= 9, takeover


def test_the_speaker_answers_arp_for_the_address_it_announces_with_its_own_mac(takeover):
    assert takeover["answered"] == [[takeover["speaker mac"], "192.168.56.200", takeover["asker mac"],
                                     "192.168.56.100"]], takeover


def test_the_speaker_does_not_answer_for_an_address_it_does_not_announce(takeover):
    assert takeover["answered other"] == [], takeover


def test_a_speaker_whose_answers_the_kernel_refuses_goes_on_running(takeover):
    assert takeover["running after refused answers"], f"the speaker exited when its ARP answer was dropped:\n" \
                                                      f"{takeover['log']}"
    assert "could not send the ARP answer for 192.168.56.200 to 192.168.56.100" in takeover["log"], takeover["log"]


def test_a_speaker_whose_link_is_down_does_not_announce_and_announces_again_when_it_is_back(takeover):
    down, up = takeover["link down"], takeover["link up"]
    assert down["link_ok"] is False and down["announcing"] == [] and down["alive"] == [], down
    assert up["link_ok"] is True and up["announcing"] == ["192.168.56.200"], up
    assert "cp1: no longer announcing 192.168.56.200 (alive: )" in takeover["log"], takeover["log"]


# -- its configuration ---------------------------------------------------------------------------
GOOD = {"node": "cp1", "ip": "192.168.56.10", "interface": "eth1", "broadcast": "192.168.56.255",
        "status": "/nonexistent/cp1.json"}
MEMBERS = ["member cp1 192.168.56.10", "member worker1 192.168.56.11"]


def _config(tmp_path, settings: dict, extra: list[str]) -> Path:
    path = tmp_path / "speaker.conf"
    path.write_text("\n".join([f"{k} {v}" for k, v in settings.items()] + extra) + "\n")
    return path


@pytest.mark.parametrize("settings, extra, words", [
    ({k: v for k, v in GOOD.items() if k != "node"}, MEMBERS, ["no node line", "node worker1"]),
    ({k: v for k, v in GOOD.items() if k != "status"}, MEMBERS, ["no status line"]),
    (GOOD, [], ["no member line"]),
    ({**GOOD, "ip": "192.168.56.300"}, MEMBERS, ["line 2", "ip: '192.168.56.300' is not an IPv4 address"]),
    (GOOD, MEMBERS + ["address 10.0.0"], ["line 8", "address: '10.0.0' is not an IPv4 address"]),
    ({**GOOD, "interval": "soon"}, MEMBERS, ["interval: 'soon' is not a number of seconds"]),
    ({**GOOD, "interval": "0"}, MEMBERS, ["interval: '0' is not a number of seconds above 0"]),
    ({**GOOD, "port": "79460"}, MEMBERS, ["port: '79460' is not a UDP port"]),
    ({**GOOD, "dead_after": "0.5"}, MEMBERS, ["dead_after (0.5 s) is not longer than interval (1 s)"]),
    ({**GOOD, "colour": "blue"}, MEMBERS, ["unknown setting 'colour'", "the settings are: node, ip"]),
    ({**GOOD, "node": "cp 1"}, MEMBERS, ["node takes one value"]),
    ({**GOOD, "node": "cp\"1"}, MEMBERS, ["node: 'cp\"1' is not a node name"]),
    (GOOD, MEMBERS + ["node cp2"], ["node is given a second time"]),
    (GOOD, ["member worker1 192.168.56.11"], ["node cp1 is not among the members", "member cp1 192.168.56.10"]),
    (GOOD, MEMBERS + ["member cp1 192.168.56.10"], ["member cp1 is given a second time"]),
    (GOOD, MEMBERS + ["member worker2"], ["member takes a node name and its address"]),
], ids=["no-node", "no-status", "no-member", "bad-ip", "bad-address", "interval-word", "interval-zero", "port",
        "dead-after", "unknown", "two-words", "bad-name", "twice", "not-a-member", "member-twice", "member-no-ip"])
def test_a_bad_configuration_is_refused_naming_the_file_the_setting_and_the_fix(tmp_path, speaker_program, settings,
                                                                                  extra, words):
    path = _config(tmp_path, settings, extra)
    done = subprocess.run([str(speaker_program), str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"podpath-speaker: {path}"), done.stderr
    for word in words + ["podpath up writes this file from the topology: run it again"]:
        assert word in done.stderr, done.stderr


def test_a_missing_configuration_is_refused(tmp_path, speaker_program):
    done = subprocess.run([str(speaker_program), str(tmp_path / "none.conf")], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert f"cannot read its configuration {tmp_path / 'none.conf'}: No such file or directory" in done.stderr


def test_the_usage_is_shown_without_a_configuration(speaker_program):
    done = subprocess.run([str(speaker_program)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stderr.startswith("usage: podpath-speaker CONFIG"), done


def test_the_lab_s_rendered_configuration_is_accepted(tmp_path, speaker_program):
    """What `podpath up` writes for a speaker passes its checks: in a network namespace of its
    own, without the node's eth1, it goes as far as looking for that link."""
    from podpath.model import plan, topology, workloads

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a network namespace of the test's own (no eth1 in it) needs root and unshare")
    lab = plan.build(topology.load(), "podpath")
    path = tmp_path / "speaker.conf"
    path.write_text(workloads.speaker_config(lab, lab.nodes[0].name))
    done = subprocess.run(["unshare", "--net", "--", str(speaker_program), str(path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 1, done
    assert done.stderr == f"podpath-speaker: {lab.nodes[0].name}: no interface eth1 in this network namespace: " \
                          "No such device\n", done.stderr
