"""Scenario 12: kube-proxy's chains, read from each node's iptables-save.

KUBE-SERVICES sends a Service's ClusterIP to its KUBE-SVC-* chain; that chain picks
endpoint i of n with `statistic --mode random --probability 1/(n-i)` and jumps to the
endpoint's KUBE-SEP-* chain, which DNATs to the pod. The endpoints expected are the
Service's ready endpoints (the plan's, or the cluster's EndpointSlices).
"""
import re

import pytest

from podpath.evidence.parsers import parse_iptables_save, service_path

SERVICES_WITH_ENDPOINTS = ("echo", "ingress")


def _services(lab):
    """(Service, {ip:targetPort of every ready endpoint}) of the Services with endpoints."""
    found = []
    for role in SERVICES_WITH_ENDPOINTS:
        svc = lab.service(role)
        found.append((svc, set(svc.endpoints.values())))
    return found


def _chains(lab, node):
    tool, text = lab.nat_rules(node)
    return lab.node_command(node, [tool, "-t", "nat"], root=True), parse_iptables_save(text)


def _paths(lab, node, chains, shown):
    """(Service, its ready endpoints, kube-proxy's path for its ClusterIP) of each Service with
    endpoints; a Service kube-proxy has no rules for fails the check, naming the node."""
    for svc, targets in _services(lab):
        path = service_path(chains, svc.cluster_ip, svc.port)
        assert path, f"node {node}: no kube-proxy rules for {svc.name} ({svc.cluster_ip}:{svc.port}) ({shown})"
        yield svc, targets, path


@pytest.mark.scenario(12)
def test_kube_services_jumps_to_a_svc_chain_per_cluster_ip(lab, node):
    shown, chains = _chains(lab, node)
    assert "KUBE-SERVICES" in chains, f"node {node} has no KUBE-SERVICES chain in its nat table ({shown})"
    for svc, _ in _services(lab):
        path = service_path(chains, svc.cluster_ip, svc.port)
        assert path and path.entry_chain.startswith("KUBE-SVC-"), (
            f"node {node}: KUBE-SERVICES has no jump to a KUBE-SVC chain for {svc.name} "
            f"({svc.cluster_ip}:{svc.port}) ({shown})")


@pytest.mark.scenario(12)
def test_svc_chains_pick_each_endpoint_with_probability_one_in_n(lab, node):
    shown, chains = _chains(lab, node)
    for svc, targets, path in _paths(lab, node, chains, shown):
        n = len(targets)
        assert len(path.seps) == n, (f"node {node}: {path.svc_chain} ({svc.name}) jumps to {len(path.seps)} "
                                     f"KUBE-SEP chains; the Service has {n} ready endpoints ({shown})")
        for i, sep in enumerate(path.seps):
            if i == n - 1:
                assert sep.probability is None, (
                    f"node {node}: the last endpoint of {svc.name} ({sep.chain}) must be taken unconditionally, "
                    f"has probability {sep.probability}")
            else:
                assert sep.probability is not None and abs(sep.probability - 1 / (n - i)) < 1e-6, (
                    f"node {node}: endpoint {i + 1} of {n} of {svc.name} ({sep.chain}) has probability "
                    f"{sep.probability}, not 1/{n - i}")


@pytest.mark.scenario(12)
def test_sep_chains_dnat_to_the_ready_endpoints(lab, node):
    shown, chains = _chains(lab, node)
    for svc, targets, path in _paths(lab, node, chains, shown):
        for sep in path.seps:
            assert len(sep.destinations) == 1, (
                f"node {node}: {sep.chain} of {svc.name} has {len(sep.destinations)} DNAT rules, not 1 ({shown})")
        dnat = {sep.destinations[0] for sep in path.seps}
        assert dnat == targets, (f"node {node}: {svc.name}'s KUBE-SEP chains DNAT to {sorted(dnat)}; its ready "
                                 f"endpoints are {sorted(targets)}")


@pytest.mark.scenario(12)
def test_chain_names_are_kube_proxy_hashes(lab, node):
    shown, chains = _chains(lab, node)
    for name in chains:
        if name.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-")):
            assert re.fullmatch(r"KUBE-(SVC|SEP|EXT|SVL|FW)-[A-Z2-7]{16}", name), (
                f"node {node}: chain {name} is not named as kube-proxy names it (16 base32 characters) ({shown})")


@pytest.mark.scenario(12)
def test_load_balancer_ip_and_node_port_enter_through_kube_ext(lab, node):
    shown, chains = _chains(lab, node)
    svc = lab.service("ingress")
    lb = service_path(chains, svc.load_balancer_ip, svc.port) if svc.load_balancer_ip else None
    assert lb and lb.entry_chain.startswith("KUBE-EXT-"), (
        f"node {node}: no KUBE-SERVICES rule sends {svc.load_balancer_ip}:{svc.port} to a KUBE-EXT chain ({shown})")
    node_port = str(svc.node_port)
    entry = [r for r in chains.get("KUBE-NODEPORTS", []) if r.option("--dport") == node_port]
    assert entry and entry[0].target == lb.entry_chain, (
        f"node {node}: NodePort {node_port} enters {entry[0].target if entry else 'no chain'}, "
        f"not {lb.entry_chain} as the load balancer IP does ({shown})")
