"""Sockets for the netlink codec's tests: one that records what passes through a real
socket, one that plays prepared answers back, and an Rtnl of module_utils/podpath_netlink.py
that uses either."""
from __future__ import annotations

from podpath.model.labdir import load_module_util

nl = load_module_util("podpath_netlink")


class Recorder:
    """Stands for an Rtnl's socket: passes everything on and keeps what went each way."""

    def __init__(self, sock):
        self.sock = sock
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    def send(self, data):
        self.sent.append(bytes(data))
        return self.sock.send(data)

    def recv(self, size):
        data = self.sock.recv(size)
        self.received.append(data)
        return data

    def close(self):
        self.sock.close()


class Playback:
    """A socket that answers with prepared buffers, one per recv(), and keeps what is sent."""

    def __init__(self, buffers=()):
        self.buffers = list(buffers)
        self.sent: list[bytes] = []
        self.reads = 0

    def send(self, data):
        self.sent.append(bytes(data))
        return len(data)

    def recv(self, size):
        self.reads += 1
        return self.buffers.pop(0)

    def close(self):
        pass


def offline_rtnl(sock) -> "nl.Rtnl":
    """An Rtnl whose socket is SOCK (its own netlink socket is closed unused)."""
    rtnl = nl.Rtnl("podpath-offline")
    rtnl.sock.close()
    rtnl.sock = sock
    return rtnl
