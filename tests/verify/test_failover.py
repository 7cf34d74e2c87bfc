"""Scenario 14 (disruptive): the MetalLB address moves when its node fails.

The node MetalLB's election picks is made to fail as MetalLB sees it: the netns lab takes
its eth1 down; the cluster lab stops its kubelet (so nothing restarts the speaker) and its
speaker container, which leaves MetalLB's member list at once. The next node in the
election's order must answer ARP for the address within FAILOVER_SECONDS. The fixture then
repairs the node (`podpath up`; the cluster: kubelet started, speaker ready) and waits for
the address to come back to it: the lab is as it was before the test.
Run only with --disruptive; the default run deselects it (tests/verify/conftest.py).
"""
import time

import pytest

from podpath.evidence.lab import owners
from podpath.model.election import announcer

pytestmark = pytest.mark.disruptive

# MetalLB's speakers re-elect as soon as a member leaves; the new owner sends gratuitous ARP
# (docs/lab.md, scenario 14).
FAILOVER_SECONDS = 5.0
# After the repair the address goes back to the first node of the election; it may take
# the member list a few rounds to see the returned speaker.
RESTORE_SECONDS = 120.0


def _arp_owner(lab, address, macs):
    return owners(lab.arp_probe(address, 1).result().macs, macs)


@pytest.fixture
def failed_announcer(lab):
    """Fail the announcing node; always repair it, even when the test fails."""
    address = lab.service("ingress").load_balancer_ip
    candidates = lab.election_candidates()
    if len(candidates) < 2:
        pytest.skip(f"failover needs two nodes that can announce, there is {candidates}")
    node = announcer(candidates, address)
    macs = lab.node_macs()
    try:
        what = lab.fail_announcer(node)
    except Exception:
        lab.repair(node)
        raise
    try:
        yield node, address, [n for n in candidates if n != node], macs, what
    finally:
        lab.repair(node)
        deadline = time.monotonic() + RESTORE_SECONDS
        owner = []
        while time.monotonic() < deadline:
            owner = _arp_owner(lab, address, macs)
            if owner == [node]:
                break
            time.sleep(1)
        assert owner == [node], (f"repair: {node} is back but ARP for {address} is answered by {owner or 'nobody'} "
                                 f"after {RESTORE_SECONDS:.0f} s, not by {node}")


@pytest.mark.scenario(14)
def test_metallb_ip_moves_to_another_node_when_the_announcing_node_fails(lab, failed_announcer):
    node, address, remaining, macs, what = failed_announcer
    expected = announcer(remaining, address)
    started = time.monotonic()
    owner: list[str] = []
    while time.monotonic() - started < FAILOVER_SECONDS + 3:
        owner = _arp_owner(lab, address, macs)
        if owner and owner != [node]:
            break
    took = time.monotonic() - started
    assert owner and owner != [node], (f"no node took {address} over within {took:.1f} s after {what}; ARP is "
                                       f"answered by {owner or 'nobody'}")
    assert took <= FAILOVER_SECONDS, (f"{owner} took {address} over after {took:.1f} s, later than "
                                      f"{FAILOVER_SECONDS:.0f} s")
    assert owner == [expected], (f"after {what}, ARP for {address} is answered by {owner}; {expected} is next in the "
                                 f"election among {remaining}")
