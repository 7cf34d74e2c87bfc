"""Unit tests of podpath/model/election.py: MetalLB's layer 2 election, in one place for the
netns lab's speaker and both of the verifier's adapters."""
from __future__ import annotations

import hashlib

from podpath.model import election
from podpath.runtime import speaker

ADDRESS = "192.168.56.200"


def test_candidates_are_ranked_by_the_sha256_of_node_and_address_byte_by_byte():
    # MetalLB (speaker/layer2_controller.go) sorts by sha256.Sum256(node + "#" + ip), bytes.Compare
    nodes = ["cp1", "worker1", "worker2", "worker3"]
    digests = {n: hashlib.sha256(f"{n}#{ADDRESS}".encode()).digest() for n in nodes}
    assert election.order(nodes, ADDRESS) == sorted(nodes, key=digests.get)
    assert election.announcer(nodes, ADDRESS) == min(nodes, key=digests.get)


def test_the_result_does_not_depend_on_the_order_or_repetition_of_the_candidates():
    nodes = ["worker1", "worker2", "cp1"]
    assert election.announcer(nodes, ADDRESS) == election.announcer(list(reversed(nodes)) + nodes, ADDRESS)


def test_each_address_has_its_own_order():
    nodes = [f"node{i}" for i in range(8)]
    winners = {election.announcer(nodes, f"192.168.56.{200 + i}") for i in range(20)}
    assert len(winners) > 1, "every address went to the same node: the address is not part of the hash"


def test_when_the_announcer_leaves_the_next_in_its_order_takes_over():
    nodes = ["cp1", "worker1", "worker2"]
    first, second, _ = election.order(nodes, ADDRESS)
    assert election.announcer([n for n in nodes if n != first], ADDRESS) == second


def test_no_candidate_no_announcer():
    assert election.announcer([], ADDRESS) is None
    assert election.order([], ADDRESS) == []


def test_the_netns_lab_speaker_elects_with_the_same_oracle():
    assert speaker.announcer is election.announcer
    assert not hasattr(speaker, "elect"), "the speaker keeps an election of its own"
