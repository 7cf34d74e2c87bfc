"""Scenario 12: kube-proxy's rules on each node, read the way its mode writes them.

iptables mode (each node's iptables-save): KUBE-SERVICES sends a Service's ClusterIP to its
KUBE-SVC-* chain; that chain picks endpoint i of n with `statistic --mode random
--probability 1/(n-i)` and jumps to the endpoint's KUBE-SEP-* chain, which DNATs to the pod.

nftables mode (each node's `nft -j list table ip kube-proxy`): the verdict map service-ips
sends a Service's address to its service-* chain (external-* first for a load balancer IP or
a NodePort, which service-nodeports sends there too); that chain picks an endpoint with
`numgen random mod n vmap`, one number per endpoint, and the endpoint's endpoint-* chain
DNATs to the pod.

Either way the same properties are checked: every Service's addresses lead to its ready
endpoints, each with the same chance; the chains are named as kube-proxy names them; the
Service without endpoints is rejected; marked packets are masqueraded. The endpoints
expected are the Service's ready endpoints (the plan's, or the cluster's EndpointSlices).
"""
import base64
import hashlib
import re

import pytest

SERVICES_WITH_ENDPOINTS = ("echo", "ingress")


def _services(lab):
    """(Service, {ip:targetPort of every ready endpoint}) of the Services with endpoints."""
    found = []
    for role in SERVICES_WITH_ENDPOINTS:
        svc = lab.service(role)
        found.append((svc, set(svc.endpoints.values())))
    return found


def _paths(lab, node, rules, shown):
    """(Service, its ready endpoints, kube-proxy's path for its ClusterIP) of each Service with
    endpoints; a Service kube-proxy has no rules for fails the check, naming the node."""
    for svc, targets in _services(lab):
        path = rules.service_path(svc.cluster_ip, svc.port)
        assert path, f"node {node}: no kube-proxy rules for {svc.name} ({svc.cluster_ip}:{svc.port}) ({shown})"
        yield svc, targets, path


def _nft_name(text):
    """kube-proxy's nftables name base: 8 characters of the base32 of the sha256 of TEXT, then TEXT."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8] + "-" + text


@pytest.mark.scenario(12)
def test_each_service_ip_is_sent_to_the_services_own_chain(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    for svc, _ in _services(lab):
        path = rules.service_path(svc.cluster_ip, svc.port)
        if rules.mode == "iptables":
            assert path and path.entry_chain.startswith("KUBE-SVC-"), (
                f"node {node}: KUBE-SERVICES has no jump to a KUBE-SVC chain for {svc.name} "
                f"({svc.cluster_ip}:{svc.port}) ({shown})")
        else:
            assert path and path.entry_chain.startswith("service-"), (
                f"node {node}: the map service-ips sends {svc.name}'s {svc.cluster_ip} . tcp . {svc.port} to "
                f"{path.entry_chain if path else 'nothing'}, not to a service-* chain ({shown})")


@pytest.mark.scenario(12)
def test_each_ready_endpoint_is_picked_with_the_same_chance(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    for svc, targets, path in _paths(lab, node, rules, shown):
        n = len(targets)
        assert len(path.seps) == n, (f"node {node}: {path.svc_chain} ({svc.name}) sends to {len(path.seps)} "
                                     f"endpoint chains; the Service has {n} ready endpoints ({shown})")
        if rules.mode == "iptables":
            for i, sep in enumerate(path.seps):
                if i == n - 1:
                    assert sep.probability is None, (
                        f"node {node}: the last endpoint of {svc.name} ({sep.chain}) must be taken unconditionally, "
                        f"has probability {sep.probability}")
                else:
                    assert sep.probability is not None and abs(sep.probability - 1 / (n - i)) < 1e-6, (
                        f"node {node}: endpoint {i + 1} of {n} of {svc.name} ({sep.chain}) has probability "
                        f"{sep.probability}, not 1/{n - i}")
        else:
            numgen = path.numgen or {}
            assert numgen.get("mode") == "random" and numgen.get("mod") == n and numgen.get("offset") == 0, (
                f"node {node}: {path.svc_chain} ({svc.name}) picks with {numgen or 'no numgen'}, not "
                f"numgen random mod {n} ({shown})")
            assert sorted(numgen["indexes"]) == list(range(n)), (
                f"node {node}: {svc.name}'s vmap numbers {sorted(numgen['indexes'])}, not 0..{n - 1}")
        for sep in path.seps:
            assert sep.share is not None and abs(sep.share - 1 / n) < 1e-6, (
                f"node {node}: {svc.name}'s endpoint chain {sep.chain} is picked with chance {sep.share}, "
                f"not 1/{n} ({shown})")


@pytest.mark.scenario(12)
def test_endpoint_chains_dnat_to_the_ready_endpoints(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    for svc, targets, path in _paths(lab, node, rules, shown):
        for sep in path.seps:
            assert len(sep.destinations) == 1, (
                f"node {node}: {sep.chain} of {svc.name} has {len(sep.destinations)} DNAT rules, not 1 ({shown})")
        dnat = {sep.destinations[0] for sep in path.seps}
        assert dnat == targets, (f"node {node}: {svc.name}'s endpoint chains DNAT to {sorted(dnat)}; its ready "
                                 f"endpoints are {sorted(targets)}")


@pytest.mark.scenario(12)
def test_chain_names_are_kube_proxy_hashes(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    if rules.mode == "iptables":
        for name in rules.chain_names():
            if name.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-")):
                assert re.fullmatch(r"KUBE-(SVC|SEP|EXT|SVL|FW)-[A-Z2-7]{16}", name), (
                    f"node {node}: chain {name} is not named as kube-proxy names it (16 base32 characters) ({shown})")
        return
    named = [n for n in rules.chain_names() if n.startswith(("service-", "external-", "local-", "endpoint-"))
             and "/" in n]
    assert named, f"node {node}: no service-, external-, local- or endpoint- chains ({shown})"
    for name in named:
        prefix, _, base = name.partition("-")
        assert base == _nft_name(base[9:]), (
            f"node {node}: chain {name} is not named as kube-proxy names it ({prefix}-HASH-namespace/name/"
            f"protocol/port, HASH 8 base32 characters of the sha256 of the rest) ({shown})")
    for role in SERVICES_WITH_ENDPOINTS:
        svc, port = lab.service(role), lab.planned_service(role).ports[0].name
        path = rules.service_path(svc.cluster_ip, svc.port)
        want = "service-" + _nft_name(f"{svc.namespace}/{svc.name}/tcp/{port}")
        assert path and path.svc_chain == want, (
            f"node {node}: {svc.name}'s chain is {path.svc_chain if path else 'missing'}, not {want}, the one "
            f"kube-proxy names for {svc.namespace}/{svc.name}/tcp/{port} ({shown})")


@pytest.mark.scenario(12)
def test_load_balancer_ip_and_node_port_enter_through_the_external_chain(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    svc = lab.service("ingress")
    external = "KUBE-EXT-" if rules.mode == "iptables" else "external-"
    lb = rules.service_path(svc.load_balancer_ip, svc.port) if svc.load_balancer_ip else None
    assert lb and lb.entry_chain.startswith(external), (
        f"node {node}: {svc.load_balancer_ip}:{svc.port} is not sent to a {external}* chain ({shown})")
    node_port = rules.node_port_path(svc.node_port)
    assert node_port and node_port.entry_chain == lb.entry_chain, (
        f"node {node}: NodePort {svc.node_port} enters {node_port.entry_chain if node_port else 'no chain'}, "
        f"not {lb.entry_chain} as the load balancer IP does ({shown})")


@pytest.mark.scenario(12)
def test_the_service_without_endpoints_is_rejected(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    svc = lab.service("empty")
    how = rules.rejects(svc.cluster_ip, svc.port)
    assert how, (f"node {node}: nothing rejects a new connection to {svc.name} ({svc.cluster_ip}:{svc.port}), "
                 f"which has no endpoints, on its way out of a pod or the node ({shown})")
    assert rules.service_path(svc.cluster_ip, svc.port) is None, (
        f"node {node}: {svc.name} has no endpoints, yet its address is sent to a service chain ({shown})")


@pytest.mark.scenario(12)
def test_marked_packets_are_masqueraded_and_external_traffic_is_marked_as_its_policy_says(lab, node):
    shown, rules = lab.kube_proxy_rules(node)
    set_mark, masqueraded, how = rules.masquerade()
    assert set_mark and set_mark == masqueraded, (
        f"node {node}: {rules.mark_chain} sets the mark {set_mark}, postrouting masquerades the mark "
        f"{masqueraded} ({how}) ({shown})")
    svc = lab.service("ingress")
    lb = rules.service_path(svc.load_balancer_ip, svc.port)
    assert lb, f"node {node}: no path for {svc.load_balancer_ip}:{svc.port} ({shown})"
    if svc.policy == "Local":
        assert not rules.marks(lb.entry_chain), (
            f"node {node}: {lb.entry_chain} marks every packet for masquerade; with externalTrafficPolicy Local "
            f"the client's address is kept ({shown})")
    else:
        assert rules.marks(lb.entry_chain), (
            f"node {node}: {lb.entry_chain} does not mark every packet for masquerade, which "
            f"externalTrafficPolicy {svc.policy or 'Cluster'} needs ({shown})")
