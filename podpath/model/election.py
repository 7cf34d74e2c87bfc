"""MetalLB's layer 2 election: which node announces an address.

One home for the rule in Python, used by both of the verifier's lab adapters
(podpath.evidence.probe, podpath.evidence.cluster). The netns lab's speaker, a C program
(podpath/runtime/speaker.c), computes the same order; `podpath-speaker --announcer ADDRESS
NODE...` prints its choice, which tests/unit/test_election.py compares with this one.

The rule is MetalLB's own (speaker/layer2_controller.go, ShouldAnnounce, in its default
mode without the optional lease-based leader election): the candidate nodes are sorted by
the SHA-256 digest of "<node>#<address>", compared byte by byte, and the first one
announces. Every speaker computes the same order, so exactly one of them announces, with
no message exchanged about the address itself; when a candidate leaves (its speaker
stops, its node fails), the next one in that address's order takes over.

Which nodes are candidates is not decided here: MetalLB takes the speakers its member list
(memberlist) sees alive, minus nodes with the NetworkUnavailable condition or the label
node.kubernetes.io/exclude-from-external-load-balancers, minus nodes no L2Advertisement
selects, and, for externalTrafficPolicy Local, only nodes with a ready endpoint. Each
caller says which nodes those are in its lab.
"""
from __future__ import annotations

from collections.abc import Iterable

from podpath.model.digest import sha256


def order(candidates: Iterable[str], address: str) -> list[str]:
    """CANDIDATES in the order MetalLB ranks them for ADDRESS (the first one announces)."""
    return sorted(set(candidates), key=lambda node: sha256(f"{node}#{address}".encode()))


def announcer(candidates: Iterable[str], address: str) -> str | None:
    """The node that announces ADDRESS among CANDIDATES, or None when there is no candidate."""
    ranked = order(candidates, address)
    return ranked[0] if ranked else None
