"""Scenario 14 on the cluster lab (disruptive): the MetalLB address moves when its node fails.

The announcing node is made to fail as MetalLB sees it: its kubelet is stopped (so nothing
restarts the speaker) and its speaker container is stopped, which leaves MetalLB's member
list at once. Another node of the election set must answer ARP for the address within
FAILOVER_SECONDS. The fixture then starts kubelet again, waits for the speaker to be ready and
for the address to come back to the elected node: the lab is as it was before the test.
Run only with --disruptive; the default run deselects it (tests/verify/conftest.py).
"""
import time

import pytest

from podpath.evidence.cluster_probe import elected

pytestmark = pytest.mark.cluster_lab

# MetalLB's speakers re-elect as soon as a member leaves; the new owner sends gratuitous ARP.
FAILOVER_SECONDS = 5.0
# After the restore, the address goes back to the first node of the election; it may take
# memberlist a few rounds to see the returned speaker.
RESTORE_SECONDS = 120.0


def _arp_owner(lab, address, macs_by_node):
    by_mac = {mac: node for node, (_, mac) in macs_by_node.items()}
    macs = lab.client_arping(address, count=1)
    return sorted({by_mac.get(m, m) for m in macs})


@pytest.fixture
def failed_announcer(lab):
    """Stop the announcing node's speaker; always restore it, even when the test fails."""
    address = lab.load_balancer_ip()
    candidates = lab.election_set()
    if len(candidates) < 2:
        pytest.skip(f"failover needs two nodes in the election set, there is {candidates}")
    node = elected(candidates, address)
    macs = lab.node_macs()
    try:
        what = lab.stop_node_speaker(node)
    except Exception:
        lab.start_node_speaker(node)
        raise
    try:
        yield node, address, [n for n in candidates if n != node], macs, what
    finally:
        lab.start_node_speaker(node)
        deadline = time.monotonic() + RESTORE_SECONDS
        owner = []
        while time.monotonic() < deadline:
            owner = _arp_owner(lab, address, macs)
            if owner == [node]:
                break
            time.sleep(2)
        assert owner == [node], (f"restore: {node}'s speaker is back but ARP for {address} is answered by "
                                 f"{owner or 'nobody'} after {RESTORE_SECONDS:.0f} s, not by {node}")


@pytest.mark.scenario(14)
@pytest.mark.disruptive
def test_metallb_ip_moves_to_another_node_when_the_announcing_node_fails(lab, failed_announcer):
    node, address, remaining, macs, what = failed_announcer
    expected = elected(remaining, address)
    started = time.monotonic()
    owner = []
    while time.monotonic() - started < FAILOVER_SECONDS:
        owner = _arp_owner(lab, address, macs)
        if owner and node not in owner:
            break
    took = time.monotonic() - started
    assert owner == [expected], (f"after {what}, ARP for {address} was answered by {owner or 'nobody'} for "
                                 f"{took:.1f} s; {expected} (next in the election among {remaining}) should answer "
                                 f"within {FAILOVER_SECONDS:.0f} s")
