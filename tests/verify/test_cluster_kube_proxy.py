"""Scenario 12 on the cluster lab: kube-proxy's chains, read from each node's iptables-save.

The same story as the netns lab: KUBE-SERVICES sends a ClusterIP to its KUBE-SVC-* chain,
which picks endpoint i of n with probability 1/(n-i) and jumps to a KUBE-SEP-* chain that
DNATs to the pod. The endpoints expected are the Service's ready EndpointSlice addresses.
"""
import re

import pytest

from podpath.evidence.cluster_probe import parse_iptables_save, service_path

pytestmark = pytest.mark.cluster_lab


def _services(lab):
    """(name, cluster IP, port, {ip:targetPort of every ready endpoint}) of the Services with endpoints."""
    echo = lab.topology["workloads"]["echo"]
    ingress = lab.topology["ingress"]
    found = []
    for namespace, name, port_name in ((echo["namespace"], echo["name"], "http"),
                                       (ingress["namespace"], ingress["service"], "http")):
        svc = lab.service(namespace, name)
        port = svc["ports"][port_name]
        targets = {f"{e.ip}:{e.ports[port_name]}" for e in lab.endpoints(namespace, name)
                   if e.ready and port_name in e.ports}
        found.append((f"{namespace}/{name}", svc["cluster_ip"], int(port["port"]), targets))
    return found


def _chains(lab, node):
    tool, text = lab.iptables_save(node)
    return tool, parse_iptables_save(text)


@pytest.mark.scenario(12)
def test_kube_services_jumps_to_a_svc_chain_per_cluster_ip(lab, k8s_node):
    tool, chains = _chains(lab, k8s_node)
    for name, ip, port, _ in _services(lab):
        path = service_path(chains, ip, port)
        assert path and path.entry_chain.startswith("KUBE-SVC-"), (
            f"node {k8s_node} ({tool}): KUBE-SERVICES has no jump to a KUBE-SVC chain for {name} ({ip}:{port})")


@pytest.mark.scenario(12)
def test_svc_chains_pick_each_endpoint_with_probability_one_in_n(lab, k8s_node):
    tool, chains = _chains(lab, k8s_node)
    for name, ip, port, targets in _services(lab):
        path = service_path(chains, ip, port)
        assert path, f"node {k8s_node} ({tool}): no kube-proxy rules for {name} ({ip}:{port})"
        n = len(targets)
        assert len(path.seps) == n, (f"node {k8s_node}: {path.svc_chain} ({name}) jumps to {len(path.seps)} "
                                     f"KUBE-SEP chains; the Service has {n} ready endpoints")
        for i, sep in enumerate(path.seps):
            if i == n - 1:
                assert sep.probability is None, (
                    f"node {k8s_node}: the last endpoint of {name} ({sep.chain}) must be taken unconditionally, "
                    f"has probability {sep.probability}")
            else:
                assert sep.probability is not None and abs(sep.probability - 1 / (n - i)) < 1e-6, (
                    f"node {k8s_node}: endpoint {i + 1} of {n} of {name} ({sep.chain}) has probability "
                    f"{sep.probability}, not 1/{n - i}")


@pytest.mark.scenario(12)
def test_sep_chains_dnat_to_the_ready_endpoints(lab, k8s_node):
    tool, chains = _chains(lab, k8s_node)
    for name, ip, port, targets in _services(lab):
        path = service_path(chains, ip, port)
        assert path, f"node {k8s_node} ({tool}): no kube-proxy rules for {name} ({ip}:{port})"
        for sep in path.seps:
            assert len(sep.destinations) == 1, (
                f"node {k8s_node}: {sep.chain} of {name} has {len(sep.destinations)} DNAT rules, not 1")
        dnat = {sep.destinations[0] for sep in path.seps}
        assert dnat == targets, (f"node {k8s_node}: {name}'s KUBE-SEP chains DNAT to {sorted(dnat)}; its ready "
                                 f"endpoints are {sorted(targets)}")


@pytest.mark.scenario(12)
def test_chain_names_are_kube_proxy_hashes(lab, k8s_node):
    _, chains = _chains(lab, k8s_node)
    for name in chains:
        if name.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-", "KUBE-FW-")):
            assert re.fullmatch(r"KUBE-(SVC|SEP|EXT|SVL|FW)-[A-Z2-7]{16}", name), (
                f"node {k8s_node}: chain {name} is not named as kube-proxy names it (16 base32 characters)")


@pytest.mark.scenario(12)
def test_load_balancer_ip_and_node_port_enter_through_kube_ext(lab, k8s_node):
    tool, chains = _chains(lab, k8s_node)
    address = lab.load_balancer_ip()
    lb = service_path(chains, address, 80)
    assert lb and lb.entry_chain.startswith("KUBE-EXT-"), (
        f"node {k8s_node} ({tool}): no KUBE-SERVICES rule sends {address}:80 to a KUBE-EXT chain")
    node_port = str(lab.topology["ingress"]["http_node_port"])
    entry = [r for r in chains.get("KUBE-NODEPORTS", []) if r.option("--dport") == node_port]
    assert entry and entry[0].target == lb.entry_chain, (
        f"node {k8s_node}: NodePort {node_port} enters {entry[0].target if entry else 'no chain'}, "
        f"not {lb.entry_chain} as the load balancer IP does")
