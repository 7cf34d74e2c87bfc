"""podpath trace's between-nodes hop: the kernel's route is compared with the hop flannel's backend wires."""
from __future__ import annotations

from podpath.evidence.lab import Result
from podpath.evidence.trace import between_nodes
from podpath.model import plan as plan_mod
from podpath.model import topology


class FakeLab:
    """A lab whose node answers `ip route get` with ROUTE."""

    def __init__(self, route: str, rc: int = 0):
        self.plan = plan_mod.build(topology.read(), "unit")
        self.route, self.rc, self.asked = route, rc, []

    def exec_in(self, netns, argv):
        self.asked.append((netns, argv))
        return Result(self.rc, self.route if self.rc == 0 else "", "" if self.rc == 0 else self.route)


def pods(plan):
    a = plan.echo_pods[0]
    return a, next(p for p in plan.pods if p.node != a.node)


def test_the_route_flannel_wires_is_the_hop_and_names_the_tunnel():
    lab = FakeLab("")
    a, b = pods(lab.plan)
    hop = lab.plan.node_hop(b.node, a.node)
    lab.route = f"{a.ip} via {hop.gateway} dev flannel.1 src 10.244.9.0 uid 0 \\    cache"
    text, ok = between_nodes(lab, b.node, a.node, a.ip)
    assert ok and "UDP 8472" in text and "cache" not in text, text
    assert lab.asked == [(lab.plan.node(b.node).netns, ["ip", "-o", "route", "get", a.ip])]


def test_a_route_by_another_device_is_a_bad_hop_that_names_what_was_expected():
    lab = FakeLab("")
    a, b = pods(lab.plan)
    lab.route = f"{a.ip} via 192.168.56.1 dev eth1 src 192.168.56.11"
    text, ok = between_nodes(lab, b.node, a.node, a.ip)
    assert not ok and "expected via" in text and "flannel.1" in text, text


def test_no_route_is_a_bad_hop():
    lab = FakeLab("RTNETLINK answers: Network is unreachable", rc=2)
    a, b = pods(lab.plan)
    text, ok = between_nodes(lab, b.node, a.node, a.ip)
    assert not ok and "no route" in text


def test_pods_on_one_node_have_no_hop_between_nodes():
    lab = FakeLab("unused")
    a, _ = pods(lab.plan)
    assert between_nodes(lab, a.node, a.node, a.ip) == (None, True) and lab.asked == []
