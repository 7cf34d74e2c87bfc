"""Scenario 12: kube-proxy's chains, read from each node's iptables-save.

KUBE-SERVICES sends a Service's ClusterIP to its KUBE-SVC-* chain; that chain picks
endpoint i of n with `statistic --mode random --probability 1/(n-i)` and jumps to
the endpoint's KUBE-SEP-* chain, which DNATs to the pod.
"""
import re
import shlex

import pytest

pytestmark = pytest.mark.netns_lab


def parse(save: str) -> dict[str, list[list[str]]]:
    """Chain -> its rules, each a list of words (iptables-save quoting undone)."""
    chains: dict[str, list[list[str]]] = {}
    for line in save.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            words = shlex.split(line)
            chains.setdefault(words[1], []).append(words[2:])
    return chains


def option(rule: list[str], name: str) -> str | None:
    return rule[rule.index(name) + 1] if name in rule else None


def services_with_endpoints(lab):
    return [svc for svc in lab.plan.services if svc.endpoints]


def svc_chain_of(chains, svc) -> str:
    """The KUBE-SVC chain that KUBE-SERVICES sends SVC's ClusterIP to."""
    jump = next(r for r in chains.get("KUBE-SERVICES", []) if option(r, "-d") == f"{svc.cluster_ip}/32")
    return option(jump, "-j")


@pytest.mark.scenario(12)
def test_kube_services_jumps_to_a_svc_chain_per_cluster_ip(lab, node):
    chains = parse(lab.iptables_save(node.netns))
    assert "KUBE-SERVICES" in chains, f"node {node.name} has no KUBE-SERVICES chain in its nat table"
    for svc in services_with_endpoints(lab):
        jumps = [r for r in chains["KUBE-SERVICES"] if option(r, "-d") == f"{svc.cluster_ip}/32"]
        assert jumps and option(jumps[0], "-j").startswith("KUBE-SVC-"), (
            f"node {node.name}: KUBE-SERVICES has no jump to a KUBE-SVC chain for {svc.name} ({svc.cluster_ip})")


@pytest.mark.scenario(12)
def test_svc_chains_pick_each_endpoint_with_probability_one_in_n(lab, node):
    chains = parse(lab.iptables_save(node.netns))
    for svc in services_with_endpoints(lab):
        svc_chain = svc_chain_of(chains, svc)
        to_seps = [r for r in chains.get(svc_chain, []) if (option(r, "-j") or "").startswith("KUBE-SEP-")]
        n = len(svc.endpoints)
        assert len(to_seps) == n, f"node {node.name}: {svc_chain} ({svc.name}) has {len(to_seps)} endpoints, not {n}"
        for i, rule in enumerate(to_seps):
            p = option(rule, "--probability")
            if i == n - 1:
                assert p is None, f"node {node.name}: the last endpoint of {svc.name} must be taken unconditionally"
            else:
                assert p is not None and abs(float(p) - 1 / (n - i)) < 1e-6, (
                    f"node {node.name}: endpoint {i + 1} of {n} of {svc.name} has probability {p}, "
                    f"not 1/{n - i}")


@pytest.mark.scenario(12)
def test_sep_chains_dnat_to_the_endpoints(lab, node):
    chains = parse(lab.iptables_save(node.netns))
    for svc in services_with_endpoints(lab):
        seps = [option(r, "-j") for r in chains.get(svc_chain_of(chains, svc), [])
                if (option(r, "-j") or "").startswith("KUBE-SEP-")]
        targets = set()
        for sep in seps:
            dnat = [option(r, "--to-destination") for r in chains.get(sep, []) if option(r, "-j") == "DNAT"]
            assert len(dnat) == 1, f"node {node.name}: {sep} of {svc.name} has {len(dnat)} DNAT rules, not 1"
            targets.add(dnat[0])
        port = svc.ports[0].target_port
        expected = {f"{lab.plan.pod(p).ip}:{port}" for p in svc.endpoints}
        assert targets == expected, (f"node {node.name}: {svc.name}'s KUBE-SEP chains DNAT to {sorted(targets)}, "
                                     f"its endpoints are {sorted(expected)}")


@pytest.mark.scenario(12)
def test_chain_names_are_kube_proxy_hashes(lab, node):
    chains = parse(lab.iptables_save(node.netns))
    for name in chains:
        if name.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-")):
            assert re.fullmatch(r"KUBE-(SVC|SEP|EXT|SVL)-[A-Z2-7]{16}", name), (
                f"node {node.name}: chain {name} is not named as kube-proxy names it (16 base32 characters)")


@pytest.mark.scenario(12)
def test_load_balancer_ip_and_node_port_enter_through_kube_ext(lab, node):
    svc = lab.plan.ingress_service
    chains = parse(lab.iptables_save(node.netns))
    lb = [r for r in chains.get("KUBE-SERVICES", []) if option(r, "-d") == f"{svc.load_balancer_ip}/32"]
    assert lb and option(lb[0], "-j").startswith("KUBE-EXT-"), (
        f"node {node.name}: no KUBE-SERVICES rule sends {svc.load_balancer_ip} to a KUBE-EXT chain")
    node_port = str(svc.ports[0].node_port)
    np = [r for r in chains.get("KUBE-NODEPORTS", []) if option(r, "--dport") == node_port]
    assert np and option(np[0], "-j") == option(lb[0], "-j"), (
        f"node {node.name}: NodePort {node_port} does not enter the same KUBE-EXT chain as the load balancer IP")
