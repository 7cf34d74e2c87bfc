"""kube-proxy's rules as podpath renders them: kube-proxy's chain names, the random
balancing that gives each of n endpoints 1 chance in n, DNAT only to the plan's pods,
REJECT for a Service without endpoints, and externalTrafficPolicy: Local.

The golden file is the whole payload for worker1 of the default topology; after a
deliberate change, regenerate it with PODPATH_UPDATE_GOLDEN=1 and review the diff.
"""
from __future__ import annotations

import copy
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from podpath.model import kubeproxy, plan as plan_mod, topology as topology_mod, workloads

GOLDEN = Path(__file__).resolve().parent / "golden" / "kube-proxy-worker1.rules"
CHAIN_NAME = re.compile(r"^KUBE-(SVC|SEP|EXT|SVL)-[A-Z2-7]{16}$")
JUMP = re.compile(r"-j (\S+)")
PROBABILITY = re.compile(r"--probability (\S+)")
DNAT = re.compile(r"-j DNAT --to-destination (\S+)")
NODES = ["cp1", "worker1", "worker2"]


def parse(payload: str) -> dict[str, dict[str, Any]]:
    """iptables-restore text -> {table: {"chains": [declared], "rules": {chain: [rule text]}}}."""
    tables: dict[str, dict[str, Any]] = {}
    current = None
    for line in payload.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {"chains": [], "rules": {}})
        elif line == "COMMIT":
            current = None
        elif line.startswith(":"):
            current["chains"].append(line[1:].split()[0])
        elif line.startswith("-A "):
            chain, rule = line[3:].split(" ", 1)
            current["rules"].setdefault(chain, []).append(rule)
        else:
            raise AssertionError(f"unexpected line in the payload: {line!r}")
    return tables


@pytest.fixture(scope="module")
def topology() -> dict[str, Any]:
    return topology_mod.load()


def build(topology: dict[str, Any], **changes: Any) -> plan_mod.Plan:
    topo = copy.deepcopy(topology)
    for path, value in changes.items():
        target = topo
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    topology_mod.validate(topo)
    return plan_mod.build(topo, "podpath")


@pytest.fixture(scope="module")
def default_plan(topology) -> plan_mod.Plan:
    return plan_mod.build(topology, "podpath")


@pytest.mark.parametrize("node", NODES)
def test_service_chains_are_named_as_kube_proxy_names_them(default_plan, node):
    nat = parse(kubeproxy.render(default_plan, node))["nat"]
    own = [c for c in nat["chains"] if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-"))]
    assert own
    for chain in own:
        assert CHAIN_NAME.match(chain), chain


@pytest.mark.parametrize("node", NODES)
def test_every_jump_target_is_declared(default_plan, node):
    for table, content in parse(kubeproxy.render(default_plan, node)).items():
        declared = set(content["chains"])
        for chain, rules in content["rules"].items():
            if chain.startswith("KUBE-"):
                assert chain in declared, f"{table}: rules for undeclared chain {chain}"
            for rule in rules:
                target = JUMP.search(rule).group(1)
                if target.startswith("KUBE-"):
                    assert target in declared, f"{table}: {chain} jumps to undeclared {target}"


@pytest.mark.parametrize("replicas", [1, 2, 3, 5, 8], ids=lambda n: f"{n}-endpoints")
def test_endpoint_i_of_n_is_taken_with_probability_one_in_n_minus_i(topology, replicas):
    plan = build(topology, workloads__echo__replicas=replicas)
    svc = plan.service("echo")
    chain = kubeproxy.svc_chain(svc, svc.ports[0])
    rules = parse(kubeproxy.render(plan, "worker1"))["nat"]["rules"][chain]
    to_endpoints = [r for r in rules if "-j KUBE-SEP-" in r]
    assert len(to_endpoints) == replicas
    found = [PROBABILITY.search(r) for r in to_endpoints]
    assert found[-1] is None, "the last endpoint takes what is left, without a statistic match"
    for i, match in enumerate(found[:-1]):
        assert Fraction(match.group(1)).limit_denominator(1000) == Fraction(1, replicas - i)


def test_probabilities_give_each_endpoint_the_same_chance():
    # the chance to reach endpoint i is p_i times the chance that no earlier rule matched
    n = 7
    left, chances = Fraction(1), []
    for i in range(n):
        p = Fraction(kubeproxy.probability(i, n)).limit_denominator(1000) if i < n - 1 else Fraction(1)
        chances.append(left * p)
        left *= 1 - p
    assert chances == [Fraction(1, n)] * n


@pytest.mark.parametrize("node", NODES)
def test_every_endpoint_chain_dnats_to_an_endpoint_of_the_plan(default_plan, node):
    nat = parse(kubeproxy.render(default_plan, node))["nat"]
    allowed = {}
    for svc in default_plan.services:
        for port in svc.ports:
            for ep in kubeproxy.endpoints(svc, port):
                allowed[kubeproxy.sep_chain(svc, port, ep.address)] = ep.address
    seps = [c for c in nat["chains"] if c.startswith("KUBE-SEP-")]
    assert sorted(seps) == sorted(allowed)
    for sep in seps:
        targets = [DNAT.search(r).group(1) for r in nat["rules"][sep] if DNAT.search(r)]
        assert targets == [allowed[sep]]


@pytest.mark.parametrize("node", NODES)
def test_a_service_without_endpoints_is_rejected_in_the_filter_table(default_plan, node):
    tables = parse(kubeproxy.render(default_plan, node))
    empty = default_plan.service("no-endpoints")
    assert not empty.pods
    rejects = [r for r in tables["filter"]["rules"]["KUBE-SERVICES"]
               if f"-d {empty.cluster_ip}/32" in r and "-j REJECT" in r]
    assert len(rejects) == 1
    assert kubeproxy.svc_chain(empty, empty.ports[0]) not in tables["nat"]["chains"]
    assert not any(empty.cluster_ip in r for r in tables["nat"]["rules"].get("KUBE-SERVICES", []))


@pytest.fixture(scope="module")
def local_plan(topology) -> plan_mod.Plan:
    # two controllers on three nodes: cp1 and worker1 have one, worker2 none
    return build(topology, ingress__external_traffic_policy="Local", ingress__replicas=2)


@pytest.mark.parametrize("node", NODES)
def test_local_policy_balances_only_over_the_nodes_own_endpoints(local_plan, node):
    svc = local_plan.ingress_service
    port = svc.ports[0]
    nat = parse(kubeproxy.render(local_plan, node))["nat"]
    svl = kubeproxy.svl_chain(svc, port)
    assert CHAIN_NAME.match(svl)
    assert svl in nat["chains"]
    local = {kubeproxy.sep_chain(svc, port, ep.address)
             for ep in kubeproxy.endpoints(svc, port) if ep.node == node}
    targets = {JUMP.search(r).group(1) for r in nat["rules"].get(svl, [])}
    assert targets == local
    assert f"-j {svl}" in nat["rules"][kubeproxy.ext_chain(svc, port)]


def test_local_policy_drops_external_traffic_on_a_node_without_endpoints(local_plan):
    svc = local_plan.ingress_service
    port = svc.ports[0]
    tables = parse(kubeproxy.render(local_plan, "worker2"))
    assert kubeproxy.svl_chain(svc, port) not in tables["nat"]["rules"]
    drops = [r for r in tables["filter"]["rules"]["KUBE-EXTERNAL-SERVICES"] if r.endswith("-j DROP")]
    assert any(f"-d {svc.load_balancer_ip}/32" in r for r in drops)
    assert any(f"--dport {port.node_port}" in r for r in drops)


def test_cluster_policy_has_no_local_chain(default_plan):
    svc = default_plan.ingress_service
    nat = parse(kubeproxy.render(default_plan, "worker1"))["nat"]
    assert kubeproxy.svl_chain(svc, svc.ports[0]) not in nat["chains"]


def test_rules_for_worker1_match_the_golden_file(default_plan):
    rendered = kubeproxy.render(default_plan, "worker1")
    if os.environ.get("PODPATH_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run with PODPATH_UPDATE_GOLDEN=1 to write it"
    assert rendered == GOLDEN.read_text(), (
        "kube-proxy rules changed; if that is intended, run with PODPATH_UPDATE_GOLDEN=1 and review the diff")


def test_a_nodes_inputs_give_the_same_rules_after_a_trip_through_their_file(default_plan):
    for node in NODES:
        inputs = kubeproxy.inputs(default_plan, node)
        again = kubeproxy.NodeInputs.from_json(json.loads(json.dumps(inputs.to_json())))
        assert kubeproxy.rules(again) == kubeproxy.render(default_plan, node)


def test_a_nodes_kube_proxy_file_holds_its_services_not_the_topology(topology):
    plan = build(topology, workloads__idle_pods_per_node=2)
    files = [f for f in workloads.render(plan, "/usr/bin/python3")["kube-proxy"]["files"] if "/kube-proxy/" in f["path"]]
    assert [f["path"].rsplit("/", 1)[1] for f in files] == [f"{n}.conf" for n in NODES]
    for node, file in zip(NODES, files):
        content = json.loads(file["content"])
        assert set(content) == {"lab", "node", "pod_network", "ports", "mode", "node_ip", "service_network"}
        assert content["node"] == node
        assert "idle-" not in file["content"], "pods that are no Service's endpoints have no place in it"
        assert kubeproxy.rules(kubeproxy.NodeInputs.from_json(content)) == kubeproxy.render(plan, node)


def test_only_ready_endpoints_get_rules(default_plan):
    svc = default_plan.echo_service
    port = svc.ports[0]
    eps = kubeproxy.endpoints(svc, port)
    inputs = kubeproxy.inputs(default_plan, "worker1")
    everyone_else = {ep.address for info in inputs.ports for ep in info.endpoints} - {eps[0].address}
    nat = parse(kubeproxy.rules(inputs.with_ready(everyone_else)))["nat"]
    assert kubeproxy.sep_chain(svc, port, eps[0].address) not in nat["chains"]
    assert {kubeproxy.sep_chain(svc, port, ep.address) for ep in eps[1:]} <= set(nat["chains"])
    no_echo = everyone_else - {ep.address for ep in eps}
    tables = parse(kubeproxy.rules(inputs.with_ready(no_echo)))
    assert any(f"-d {svc.cluster_ip}/32" in r and "-j REJECT" in r for r in tables["filter"]["rules"]["KUBE-SERVICES"])
    assert kubeproxy.svc_chain(svc, port) not in tables["nat"]["chains"]
