"""A netns lab with kube-proxy in nftables mode (the topology's kube_proxy.mode), for real.

One lab of this module's own is built from the reference topology with `kube_proxy: {mode:
nftables}`. On it: each node holds kube-proxy's table ip kube-proxy and no kube-proxy rule
of iptables; traffic reaches the pods through a ClusterIP, each node's NodePort and the
MetalLB address, and a Service without endpoints refuses at once; new connections to a
ClusterIP spread over its endpoints; the verifier passes every scenario; the report's
commands for kube-proxy's hops run as written; `podpath trace` names the nft chains; each of
kube-proxy's faults fails its scenario and `podpath up` repairs it; podpath_iptables refuses
a payload of the other mode; and switching the mode with `up`, both ways, leaves only the
new mode's rules. The host's own namespace is compared before and after.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from labtools import DEFAULT_TOPOLOGY, ROOT, failed, lab_from_topology, podpath, verify

from podpath.evidence import faults
from podpath.evidence.probe import NetnsLab
from podpath.evidence.report import ScenarioReport
from podpath.evidence.scenarios import LOOK_NFTABLES
from podpath.model import topology

pytestmark = [pytest.mark.netns, pytest.mark.slow]

REQUESTS = 300  # to the echo Service's ClusterIP, for the spread over its 3 endpoints


@dataclass
class Lab:
    name: str
    nft_topology: Path
    probe: NetnsLab


def in_netns(netns: str, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
                          timeout=120)


def tables(netns: str) -> list[str]:
    return [" ".join(line.split()[1:3]) for line in in_netns(netns, "nft", "list", "tables").stdout.splitlines()]


def kube_proxy_iptables_rules(netns: str) -> list[str]:
    return [line for line in in_netns(netns, "iptables-save").stdout.splitlines() if line.startswith("-A KUBE-")]




@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    with lab_from_topology("nft", tmp_path_factory.mktemp("nftables"),
                           lambda topo: topo.update(kube_proxy={"mode": "nftables"})) as (name, nft_topology):
        yield Lab(name, nft_topology, NetnsLab(name, topology.load(nft_topology)))


def test_each_node_holds_kube_proxys_table_and_no_kube_proxy_rule_of_iptables(lab):
    for node in lab.probe.plan.nodes:
        assert tables(node.netns) == ["ip kube-proxy"], f"{node.name}: {tables(node.netns)}"
        assert kube_proxy_iptables_rules(node.netns) == [], node.name


def test_traffic_reaches_the_pods_through_cluster_ip_node_ports_and_the_load_balancer(lab):
    plan = lab.probe.plan
    pod = plan.pod("multi-container-pod")
    echo, ingress, empty = plan.echo_service, plan.ingress_service, plan.empty_service
    answer = lab.probe.curl(pod.netns, f"http://{echo.cluster_ip}:{echo.ports[0].port}/")
    assert answer.status == 200 and answer.field("pod") in {p.name for p in echo.pods}, answer
    for node in plan.nodes:  # NodePorts open on each node's own address
        answer = lab.probe.curl(plan.client_netns, f"http://{node.ip}:{ingress.ports[0].node_port}/",
                                host=plan.ingress_host)
        assert answer.status == 200 and answer.field("pod") in {p.name for p in echo.pods}, (node.name, answer)
    answer = lab.probe.curl(plan.client_netns, f"http://{ingress.load_balancer_ip}/", host=plan.ingress_host)
    assert answer.status == 200 and answer.headers.get("x-ingress-controller") in {p.name for p in ingress.pods}
    refused = lab.probe.curl(pod.netns, f"http://{empty.cluster_ip}:{empty.ports[0].port}/", timeout=3)
    assert refused.rc == 7, f"the Service without endpoints should refuse at once (curl exit 7): {refused}"


def test_new_connections_to_a_cluster_ip_spread_over_every_endpoint(lab):
    """REQUESTS connections from one pod; each of the 3 endpoints gets between 60 and 140 of
    300 (a fair pick falls outside with a chance below 1 in 10^5 per endpoint)."""
    plan = lab.probe.plan
    echo = plan.echo_service
    script = (f'for i in $(seq {REQUESTS}); do curl -s -m 2 http://{echo.cluster_ip}:{echo.ports[0].port}/; '
              'echo; done')
    out = in_netns(plan.pod("multi-container-pod").netns, "sh", "-c", script)
    counts = Counter(re.findall(r"^pod=(\S+)", out.stdout, re.M))
    assert sum(counts.values()) == REQUESTS, f"{REQUESTS - sum(counts.values())} requests got no answer: {counts}"
    assert set(counts) == {p.name for p in echo.pods}, counts
    assert all(60 <= n <= 140 for n in counts.values()), f"not an even spread over the endpoints: {counts}"


def test_the_verifier_passes_every_scenario(lab, tmp_path):
    result = verify(lab.name, tmp_path)
    assert not failed(result), f"scenarios {failed(result)} fail in nftables mode\n{result['_output'][-3000:]}"
    assert result["12"]["outcome"] == "PASS"


def test_the_reports_commands_for_kube_proxys_hops_run_as_written(lab):
    plan = lab.probe.plan
    report = ScenarioReport("netns", {"{lab}": lab.name, "{nodes}": " ".join(n.name for n in plan.nodes)},
                            "nftables")
    for number in LOOK_NFTABLES:
        command = report.next_command(number).replace("<node>", "worker1")
        done = subprocess.run(["bash", "-c", "set -o pipefail; " + command], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0 and done.stdout.strip(), (
            f"scenario {number}'s command failed: {command}\n{done.stdout[-1000:]}{done.stderr}")


def test_trace_names_the_nft_chains_of_the_request(lab):
    done = podpath("trace", "--lab", lab.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"2 DNAT\s+node \w+: services: @service-ips -> external-\w{8}-ingress-nginx/"
                     r"ingress-nginx-controller/tcp/http -> service-\w{8}-", done.stdout), done.stdout
    assert re.search(r"\(endpoint-\w{8}-ingress-nginx/ingress-nginx-controller/tcp/http__10\.244\.\d+\.\d+/80, "
                     r"as the rules of \w+ name it\)", done.stdout), done.stdout
    assert done.stdout.rstrip().endswith("complete"), done.stdout


@pytest.mark.parametrize("fault", ["sep-rule", "reject-rule", "masquerade"])
def test_kube_proxys_fault_fails_its_scenario_and_up_repairs_it(lab, fault, tmp_path):
    spec = faults.CATALOGUE[fault]
    what = spec.apply(lab.probe)
    broken = verify(lab.name, tmp_path)
    assert spec.scenario in failed(broken), (
        f"after '{what}', scenario {spec.scenario} should fail; failed: {failed(broken)}\n{broken['_output'][-2500:]}")
    up = podpath("up", "--lab", lab.name, "--quiet")
    assert up.returncode == 0, f"podpath up could not repair '{what}':\n{up.stdout}\n{up.stderr}"
    repaired = verify(lab.name, tmp_path)
    assert not failed(repaired), (f"after '{what}' and podpath up, scenarios {failed(repaired)} still fail\n"
                                  f"{repaired['_output'][-2500:]}")


def test_the_module_refuses_a_payload_of_the_other_mode_and_changes_nothing(lab):
    node = lab.probe.plan.nodes[0]
    before = in_netns(node.netns, "nft", "list", "ruleset").stdout
    args = json.dumps({"lab": lab.name, "mode": "nftables",
                       "rules": {node.netns: "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n"}})
    done = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "podpath_iptables",
                           "-a", args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    assert done.returncode != 0, done.stdout
    assert f"the rules for namespace {node.netns} are not an nft -f payload" in done.stdout, done.stdout
    assert in_netns(node.netns, "nft", "list", "ruleset").stdout == before


def test_switching_the_mode_with_up_leaves_only_the_new_modes_rules(lab, tmp_path):
    nodes = lab.probe.plan.nodes
    up = podpath("up", "--lab", lab.name, "--topology", str(DEFAULT_TOPOLOGY), "--quiet")
    assert up.returncode == 0, up.stdout + up.stderr
    for node in nodes:
        assert sorted(tables(node.netns)) == ["ip filter", "ip nat"], f"{node.name}: {tables(node.netns)}"
        assert any(r.startswith("-A KUBE-SVC-") for r in kube_proxy_iptables_rules(node.netns)), node.name
    result = verify(lab.name, tmp_path)
    assert not failed(result), f"in iptables mode after the switch: {failed(result)}\n{result['_output'][-2500:]}"
    up = podpath("up", "--lab", lab.name, "--topology", str(lab.nft_topology), "--quiet")
    assert up.returncode == 0, up.stdout + up.stderr
    for node in nodes:
        assert tables(node.netns) == ["ip kube-proxy"], f"{node.name}: {tables(node.netns)}"
        assert kube_proxy_iptables_rules(node.netns) == [], node.name
    result = verify(lab.name, tmp_path)
    assert not failed(result), f"in nftables mode after switching back: {failed(result)}\n{result['_output'][-2500:]}"
