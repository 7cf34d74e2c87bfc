"""Unit tests of podpath/model/election.py, MetalLB's layer 2 election, which both of the
verifier's adapters use, and of the netns lab's speaker (podpath-speaker, in C), which must
elect as it does."""
from __future__ import annotations

import hashlib
import random
import subprocess

import pytest

from podpath.model import election

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


def _speaker(program, mode: str, address: str, nodes: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(program), mode, address, *nodes], capture_output=True, text=True, timeout=30)


def _random_case(rng: random.Random) -> tuple[str, list[str]]:
    """An address and 0 to 9 node names of 1 to 80 characters (with the address, keys of every
    length around SHA-256's 55- and 64-byte block edges), repeated names among them."""
    address = ".".join(str(rng.randrange(256)) for _ in range(4))
    names = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-.") for _ in range(rng.randint(1, 80)))
             for _ in range(rng.randint(0, 6))]
    return address, names + rng.sample(names, min(len(names), rng.randint(0, 3)))


@pytest.mark.parametrize("seed", range(20))
def test_the_netns_lab_speaker_elects_as_the_verifier_does(speaker_program, seed):
    rng = random.Random(seed)
    for _ in range(25):
        address, nodes = _random_case(rng)
        done = _speaker(speaker_program, "--announcer", address, nodes)
        expected = election.announcer(nodes, address)
        if expected is None:
            assert (done.returncode, done.stdout) == (1, ""), done
            assert f"no candidate node: nobody announces {address}" in done.stderr
        else:
            assert (done.returncode, done.stdout) == (0, expected + "\n"), (address, nodes, done)


@pytest.mark.parametrize("seed", range(5))
def test_the_speaker_s_order_and_digests_are_metallb_s(speaker_program, seed):
    rng = random.Random(1000 + seed)
    for _ in range(20):
        address, nodes = _random_case(rng)
        if not nodes:
            continue
        done = _speaker(speaker_program, "--order", address, nodes)
        assert done.returncode == 0, done
        expected = [f"{hashlib.sha256(f'{n}#{address}'.encode()).hexdigest()} {n}"
                    for n in election.order(nodes, address)]
        assert done.stdout.splitlines() == expected, (address, nodes)
