"""MetalLB's speaker in layer 2 mode, for one node of the netns lab.

Run in the node's network namespace (as the real speaker runs with hostNetwork):

    python -m podpath.runtime.speaker CONFIG.json

Each speaker tells the others it is alive with a small UDP message on the node network
every `interval` seconds (1 s, memberlist's probe interval in MetalLB's default LAN
configuration; MetalLB uses memberlist for this) and forgets a node it has not heard from
for `dead_after` seconds (3 s: memberlist suspects a silent member for at least four probe
intervals before it declares it dead; the lab's window is shorter so that a failover is
seen within the verifier's 5 s). For every address of the pool in use, the alive nodes are
ordered as MetalLB orders them (podpath.model.election) and the first one announces it:
it answers ARP requests for the address with its own MAC, without putting the address on
any interface, and sends gratuitous ARP when it takes the address over, again every 1.1 s
for 5 s as MetalLB's announcer does (a neighbour table that ignored the first one, because
its entry changed less than a second before, takes a later one). A frame the kernel refuses
to send (a full queue, or a filter on the way out) is logged and the speaker goes on, as
MetalLB's does: it never exits over a lost answer.

Nothing runs on a timer but the heartbeat (and the gratuitous ARP in the 5 s after a
takeover): the speaker sleeps until its next heartbeat, a message, an ARP request, or the
moment a silent node's time runs out, and elects again only when the set of alive nodes (or
its own link) changed. A speaker answers the first heartbeat of a node it did not count
alive with one of its own at once, so that a speaker that starts (or gets its link back)
learns the others within moments, as memberlist's join exchanges the member list; until it
has heard every member, one interval at most, it does not elect, so that it never announces
an address that another node holds.
Its status (who is alive, what it announces) is written to a JSON file for the verifier
and for `podpath status` when it changes; with every heartbeat the speaker renews the
file's modification time (one utime call), which is how a reader tells a running speaker's
status from one left by a speaker that stopped or froze.
"""
from __future__ import annotations

import json
import os
import select
import socket
import struct
import sys
import time

from podpath.model.election import announcer
from podpath.runtime.daemon import log, start

# memberlist's DefaultLANConfig, which MetalLB uses: a probe every second (ProbeInterval);
# a member that does not answer is suspected for SuspicionMult (4) x ProbeInterval at least
# before it is declared dead. The lab's speakers send a heartbeat every INTERVAL and forget a
# node after DEAD_AFTER of silence.
INTERVAL = 1.0
DEAD_AFTER = 3.0
# MetalLB's layer 2 announcer repeats its gratuitous ARP every 1.1 s for 5 s after it takes an
# address over.
GARP_EVERY = 1.1
GARP_FOR = 5.0
ETH_P_ARP = 0x0806
BROADCAST_MAC = b"\xff" * 6


def arp_frame(op: int, src_mac: bytes, src_ip: str, dst_mac: bytes, dst_ip: str, eth_dst: bytes) -> bytes:
    eth = eth_dst + src_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, src_mac, socket.inet_aton(src_ip),
                      dst_mac, socket.inet_aton(dst_ip))
    return eth + arp


def parse_arp(frame: bytes):
    """(op, sender mac, sender ip, target ip) of an ARP frame, or None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    _, _, _, _, op, sha, spa, _, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    return op, sha, socket.inet_ntoa(spa), socket.inet_ntoa(tpa)


class Speaker:
    def __init__(self, config: dict):
        self.node = config["node"]
        self.ip = config["ip"]
        self.members = {m["node"]: m["ip"] for m in config["members"]}
        self.addresses = list(config["addresses"])
        self.broadcast = config["broadcast"]
        self.port = int(config.get("port", 7946))
        self.interval = float(config.get("interval", INTERVAL))
        self.dead_after = float(config.get("dead_after", DEAD_AFTER))
        self.status_path = config["status"]
        self.last_seen: dict[str, float] = {}
        self.announcing: set[str] = set()
        self.link_ok = True
        self.arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.arp.bind((config["interface"], ETH_P_ARP))
        self.mac = self.arp.getsockname()[4]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, config["interface"].encode())
        self.udp.bind(("0.0.0.0", self.port))
        self.answered = 0
        self.message = json.dumps({"node": self.node, "ip": self.ip}).encode()
        self.join_until = 0.0
        self.garp_every = float(config.get("garp_every", GARP_EVERY))
        self.garp_for = float(config.get("garp_for", GARP_FOR))
        self.garp_until: dict[str, float] = {}  # address -> when its gratuitous ARP stops
        self.next_garp = float("inf")
        self.send_failures = 0

    def alive(self, now: float) -> list[str]:
        nodes = [n for n, t in self.last_seen.items() if now - t < self.dead_after]
        if self.link_ok:
            nodes.append(self.node)
        return sorted(set(nodes))

    def next_expiry(self, now: float) -> float:
        """When the first node still alive at NOW goes silent for dead_after (inf: none)."""
        return min((t + self.dead_after for t in self.last_seen.values() if now - t < self.dead_after),
                   default=float("inf"))

    def heartbeat(self) -> None:
        try:
            self.udp.sendto(self.message, (self.broadcast, self.port))
            self.link_ok = True
        except OSError:
            # The node's link is down: it cannot be reached, so it must not announce.
            self.link_ok = False

    def receive_heartbeat(self, now: float) -> bool:
        """Note a peer's heartbeat; True if that peer was not alive before (it just started, or
        its link came back), which the speaker answers at once with a heartbeat of its own."""
        data, _ = self.udp.recvfrom(2048)
        if data == self.message:
            return False  # its own broadcast, looped back
        try:
            peer = json.loads(data)
        except ValueError:
            return False
        if not isinstance(peer, dict) or peer.get("node") not in self.members or peer["node"] == self.node:
            return False
        node = peer["node"]
        new = now - self.last_seen.get(node, -self.dead_after) >= self.dead_after
        self.last_seen[node] = now
        return new

    def joining(self, now: float) -> bool:
        """True while the speaker has just started or got its link back and has not heard every
        member yet, for one heartbeat interval at most: it does not elect meanwhile, so that it
        does not announce an address (with gratuitous ARP) that another node holds."""
        return now < self.join_until and not set(self.members) <= set(self.alive(now))

    def send(self, frame: bytes, what: str) -> None:
        try:
            self.arp.send(frame)
        except OSError as err:
            self.send_failures += 1
            log(f"{self.node}: could not send {what}: {err.strerror} (failure {self.send_failures}); going on")

    def gratuitous(self, address: str) -> None:
        for op in (1, 2):
            frame = arp_frame(op, self.mac, address, BROADCAST_MAC if op == 2 else b"\0" * 6, address, BROADCAST_MAC)
            self.send(frame, f"gratuitous ARP for {address}")

    def repeat_gratuitous(self, now: float) -> None:
        """The gratuitous ARP due at NOW for the addresses taken over in the last garp_for seconds."""
        if now < self.next_garp:
            return
        self.garp_until = {a: t for a, t in self.garp_until.items() if a in self.announcing and now < t}
        for address in sorted(self.garp_until):
            self.gratuitous(address)
        self.next_garp = now + self.garp_every if self.garp_until else float("inf")

    def receive_arp(self) -> None:
        frame = self.arp.recv(2048)
        parsed = parse_arp(frame)
        if not parsed:
            return
        op, sha, spa, tpa = parsed
        if op == 1 and tpa in self.announcing and sha != self.mac:
            self.send(arp_frame(2, self.mac, tpa, sha, spa, sha), f"the ARP answer for {tpa} to {spa}")
            self.answered += 1

    def elect_all(self, alive: list[str], now: float) -> bool:
        """Elect among ALIVE (the nodes heard from lately, and this one while its link is up);
        True if what this node announces changed."""
        mine = {a for a in self.addresses if announcer(alive, a) == self.node}
        changed = mine != self.announcing
        for address in sorted(mine - self.announcing):
            self.gratuitous(address)
            self.garp_until[address] = now + self.garp_for
            self.next_garp = min(self.next_garp, now + self.garp_every)
            log(f"{self.node}: announcing {address} (alive: {', '.join(alive)}); gratuitous ARP sent, "
                f"again every {self.garp_every:g} s for {self.garp_for:g} s")
        for address in sorted(self.announcing - mine):
            self.garp_until.pop(address, None)
            log(f"{self.node}: no longer announcing {address} (alive: {', '.join(alive)})")
        self.announcing = mine
        return changed

    def write_status(self, alive: list[str]) -> None:
        status = {"node": self.node, "ip": self.ip, "mac": ":".join("%02x" % b for b in self.mac),
                  "alive": alive, "announcing": sorted(self.announcing),
                  "link_ok": self.link_ok, "updated": time.time(), "pid": os.getpid()}
        tmp = self.status_path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(status, handle)
        os.replace(tmp, self.status_path)

    def touch_status(self) -> bool:
        """Renew the status file's modification time: the speaker runs. False if it is gone."""
        try:
            os.utime(self.status_path)
            return True
        except OSError:
            return False

    def run(self) -> None:
        next_beat = 0.0
        self.join_until = time.monotonic() + self.interval
        state = None  # (alive nodes, link up) when the status was last written
        while True:
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                was_up = self.link_ok
                self.heartbeat()
                next_beat = now + self.interval
                if self.link_ok and not was_up:
                    self.join_until = now + self.interval  # back on the LAN: hear the others first
            alive = self.alive(now)
            joining = self.joining(now)
            if not joining and ((alive, self.link_ok) != state or (beat and not self.touch_status())):
                self.elect_all(alive, now)
                self.write_status(alive)
                state = (alive, self.link_ok)
            self.repeat_gratuitous(now)
            # sleep until the next heartbeat, a message, an ARP request, a node's time running
            # out, the next gratuitous ARP, or the end of the join
            wake = min(next_beat, self.next_expiry(now), self.next_garp,
                       self.join_until if joining else next_beat)
            readable, _, _ = select.select([self.udp, self.arp], [], [], max(0.0, wake - now))
            now = time.monotonic()
            if self.udp in readable and self.receive_heartbeat(now) and self.link_ok:
                # a node that just started (or came back) learns the others at once, as
                # memberlist's join exchanges the member list
                self.heartbeat()
            if self.arp in readable:
                self.receive_arp()


def main(argv: list[str]) -> int:
    config = start(argv, "speaker")
    speaker = Speaker(config)
    log(f"{speaker.node}: speaker up on {config['interface']} ({speaker.ip})")
    try:
        speaker.run()
    finally:
        try:
            os.unlink(speaker.status_path)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
