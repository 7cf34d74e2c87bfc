"""kube-proxy's nftables mode as podpath renders it, and the verifier's reader of either mode.

The renderer (podpath/model/kubeproxy.py) is held to kube-proxy's own layout: the chain names
of kube-proxy's unit tests (its hash of namespace/name/protocol/port), the base chains with
their hooks and priorities, the table replaced whole in one transaction, one number of
`numgen random mod n` per endpoint, the reject of a Service without endpoints, and
externalTrafficPolicy Local. nft's own parser then checks every payload, in a network
namespace made for the test (root only): `nft -c -f`, then applied twice, listed as JSON
and read back by the verifier's reader, which must find each Service's endpoints, each with
the same chance. The reader (podpath/evidence/parsers.py) is also checked on recorded
output of both modes (tests/unit/recorded/kube_proxy/) and on the iptables renderer's own
payload.

The golden file is the whole nftables payload for worker1 of the default topology with
kube_proxy.mode nftables; after a deliberate change, regenerate it with
PODPATH_UPDATE_GOLDEN=1 and review the diff.
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from podpath.evidence.lab import ProbeError
from podpath.evidence.parsers import IptablesRules, NftablesRules, kube_proxy_rules, parse_conntrack
from podpath.model import kubeproxy
from podpath.model import plan as plan_mod
from podpath.model import topology as topology_mod

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "kube-proxy-worker1.nft"
RECORDED = HERE / "recorded" / "kube_proxy"
NODES = ["cp1", "worker1", "worker2"]
ADD = re.compile(r"^add (table|chain|set|map|rule|element) ip kube-proxy(?: (\S+))?(.*)$")


def topology(mode: str = "nftables", **changes: Any) -> dict[str, Any]:
    topo = copy.deepcopy(topology_mod.load())
    topo["kube_proxy"] = {"mode": mode}
    for path, value in changes.items():
        target = topo
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    topology_mod.validate(topo)
    return topo


def plan(mode: str = "nftables", **changes: Any) -> plan_mod.Plan:
    return plan_mod.build(topology(mode, **changes), "stu1")


def commands(payload: str) -> list[tuple[str, str, str]]:
    """(kind, name, rest) of each `add` command of an nft payload; every other line is a
    comment or the table's delete."""
    found = []
    for line in payload.splitlines():
        if not line or line.startswith("#") or line == "delete table ip kube-proxy":
            continue
        match = ADD.match(line)
        assert match, f"a command outside the table ip kube-proxy: {line!r}"
        found.append((match.group(1), match.group(2) or "", match.group(3).strip()))
    return found


def rules_of(payload: str, chain: str) -> list[str]:
    return [rest for kind, name, rest in commands(payload) if kind == "rule" and name == chain]


def elements(payload: str, container: str) -> list[str]:
    return [rest.strip("{} ") for kind, name, rest in commands(payload) if kind == "element" and name == container]


# -- names ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("port_name, endpoint, want", [
    # the names in kube-proxy's own unit tests (pkg/proxy/nftables/proxier_test.go)
    ("ns1/svc1:p80", "", "ULMVA6XW-ns1/svc1/tcp/p80"),
    ("ns1/svc1:p80", "10.180.0.1:80", "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
    ("ns2/svc2:p80", "", "42NFTM6N-ns2/svc2/tcp/p80"),
    ("ns2/svc2:p80", "10.180.0.2:80", "SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80"),
    ("ns3/svc3:p80", "", "4AT6LBPK-ns3/svc3/tcp/p80"),
    ("ns3/svc3:p80", "10.180.0.3:80", "UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80"),
])
def test_chain_names_are_the_ones_kube_proxy_gives(port_name, endpoint, want):
    assert kubeproxy._nft_name(port_name, endpoint) == want


def test_each_service_port_gets_its_chains_under_kube_proxys_prefixes():
    lab = plan()
    svc, port = lab.echo_service, lab.echo_service.ports[0]
    base = kubeproxy._nft_name(kubeproxy.port_name(svc, port))
    assert kubeproxy.nft_service_chain(svc, port) == "service-" + base
    assert kubeproxy.nft_external_chain(svc, port) == "external-" + base
    assert kubeproxy.nft_local_chain(svc, port) == "local-" + base
    pod = svc.pods[0]
    assert kubeproxy.nft_endpoint_chain(svc, port, f"{pod.ip}:8080") == (
        "endpoint-" + kubeproxy._nft_name(kubeproxy.port_name(svc, port), f"{pod.ip}:8080"))
    assert base.endswith(f"-{svc.namespace}/{svc.name}/tcp/{port.name}")


# -- the mode --------------------------------------------------------------------------------------

def test_the_command_and_the_payload_follow_the_mode():
    assert kubeproxy.restore_argv("iptables") == ["iptables-restore", "-w"]
    assert kubeproxy.restore_argv("nftables") == ["nft", "-f", "-"]
    assert kubeproxy.render(plan("iptables"), "worker1").splitlines()[1] == "*filter"
    assert kubeproxy.render(plan("nftables"), "worker1").splitlines()[1].startswith("add table ip kube-proxy")
    inputs = kubeproxy.inputs(plan("nftables"), "worker1")
    assert inputs.mode == "nftables" and inputs.node_ip == "192.168.56.11"


@pytest.mark.parametrize("mode", ["ipvs", "", "NFTABLES"])
def test_an_unknown_mode_is_refused_naming_it_and_the_choices(mode):
    inputs = kubeproxy.inputs(plan("nftables"), "worker1")
    inputs.mode = mode
    for call in (lambda: kubeproxy.rules(inputs), lambda: kubeproxy.restore_argv(mode)):
        with pytest.raises(ValueError) as err:
            call()
        assert repr(mode) in str(err.value) and "iptables" in str(err.value) and "nftables" in str(err.value)


# -- the payload's layout -------------------------------------------------------------------------

def test_the_table_is_replaced_whole_in_one_transaction():
    lines = [line for line in kubeproxy.render(plan(), "worker1").splitlines() if not line.startswith("#")]
    assert lines[:3] == ['add table ip kube-proxy { comment "rules for kube-proxy" ; }', "delete table ip kube-proxy",
                         'add table ip kube-proxy { comment "rules for kube-proxy" ; }'], (
        "added first (so the delete cannot fail on a node without it), deleted, then made again")
    assert sum(line.startswith("delete ") for line in lines) == 1
    assert not any("flush ruleset" in line for line in lines), "the table is kube-proxy's: nothing else is touched"


def test_base_chains_hook_where_kube_proxys_do():
    payload = kubeproxy.render(plan(), "cp1")
    base = {name: rest for kind, name, rest in commands(payload) if kind == "chain" and "hook" in rest}
    assert base == {
        "filter-prerouting-pre-dnat": "{ type filter hook prerouting priority -110 ; }",
        "filter-output-pre-dnat": "{ type filter hook output priority -110 ; }",
        "filter-input": "{ type filter hook input priority 0 ; }",
        "filter-forward": "{ type filter hook forward priority 0 ; }",
        "filter-output": "{ type filter hook output priority 0 ; }",
        "nat-prerouting": "{ type nat hook prerouting priority -100 ; }",
        "nat-output": "{ type nat hook output priority -100 ; }",
        "nat-postrouting": "{ type nat hook postrouting priority 100 ; }",
    }
    assert rules_of(payload, "nat-prerouting") == rules_of(payload, "nat-output") == ["jump services"]
    assert rules_of(payload, "nat-postrouting") == ["jump masquerading"]
    assert rules_of(payload, "filter-forward") == ["ct state new jump service-endpoints-check",
                                                   "ct state new jump cluster-ips-check"]
    assert rules_of(payload, "masquerading") == ["mark and 0x004000 == 0 return", "mark set mark xor 0x004000",
                                                 "masquerade fully-random"]
    assert rules_of(payload, "mark-for-masquerade") == ["mark set mark or 0x004000"]
    assert rules_of(payload, "services") == ["ip daddr . meta l4proto . th dport vmap @service-ips",
                                             "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"]


def test_node_ports_are_open_on_the_nodes_own_address_only():
    lab = plan()
    for node in lab.nodes:
        assert elements(kubeproxy.render(lab, node.name), "nodeport-ips") == [node.ip]


def test_each_service_port_picks_its_endpoints_one_number_each():
    lab = plan()
    for node in NODES:
        payload = kubeproxy.render(lab, node)
        for svc in (lab.echo_service, lab.ingress_service):
            port = svc.ports[0]
            chain = kubeproxy.nft_service_chain(svc, port)
            pick = [r for r in rules_of(payload, chain) if r.startswith("numgen")]
            want = " , ".join(f"{i} : goto {kubeproxy.nft_endpoint_chain(svc, port, f'{p.ip}:{port.target_port}')}"
                              for i, p in enumerate(svc.pods))
            assert pick == [f"numgen random mod {len(svc.pods)} vmap {{ {want} }}"]
            for pod in svc.pods:
                endpoint = kubeproxy.nft_endpoint_chain(svc, port, f"{pod.ip}:{port.target_port}")
                assert rules_of(payload, endpoint) == [f"ip saddr {pod.ip} jump mark-for-masquerade",
                                                       f"meta l4proto tcp dnat to {pod.ip}:{port.target_port}"]
            assert f"{svc.cluster_ip} . tcp . {port.port} : goto {chain}" in elements(payload, "service-ips")


def test_the_load_balancer_ip_and_the_node_port_enter_the_external_chain_which_marks_for_masquerade():
    lab = plan()
    svc, port = lab.ingress_service, lab.ingress_service.ports[0]
    payload = kubeproxy.render(lab, "worker2")
    external = kubeproxy.nft_external_chain(svc, port)
    assert f"{svc.load_balancer_ip} . tcp . {port.port} : goto {external}" in elements(payload, "service-ips")
    assert f"tcp . {port.node_port} : goto {external}" in elements(payload, "service-nodeports")
    assert rules_of(payload, external) == ["jump mark-for-masquerade",
                                           f"goto {kubeproxy.nft_service_chain(svc, port)}"]


def test_the_service_without_endpoints_is_rejected_and_has_no_chain():
    lab = plan()
    empty = lab.empty_service
    payload = kubeproxy.render(lab, "cp1")
    assert elements(payload, "no-endpoint-services") == [
        f'{empty.cluster_ip} . tcp . 80 comment "{empty.namespace}/{empty.name}:http" : goto reject-chain']
    assert empty.cluster_ip in elements(payload, "cluster-ips")
    assert rules_of(payload, "reject-chain") == ["reject"]
    assert not any(empty.name in name for kind, name, _ in commands(payload) if kind == "chain")


def test_a_service_whose_endpoints_are_all_unready_is_rejected_at_every_address():
    lab = plan()
    inputs = kubeproxy.inputs(lab, "worker1").with_ready(set())
    payload = kubeproxy.rules(inputs)
    svc, port = lab.ingress_service, lab.ingress_service.ports[0]
    rejected = elements(payload, "no-endpoint-services")
    for address in (svc.cluster_ip, svc.load_balancer_ip):
        assert f'{address} . tcp . 80 comment "{kubeproxy.port_name(svc, port)}" : goto reject-chain' in rejected
    assert elements(payload, "no-endpoint-nodeports") == [
        f'tcp . {port.node_port} comment "{kubeproxy.port_name(svc, port)}" : goto reject-chain']
    assert elements(payload, "service-ips") == [] and elements(payload, "service-nodeports") == []
    assert not [name for kind, name, _ in commands(payload) if kind == "chain" and "/" in name]


def test_external_traffic_policy_local_short_circuits_and_uses_the_nodes_own_controllers():
    lab = plan(ingress__external_traffic_policy="Local", ingress__replicas=2)
    svc, port = lab.ingress_service, lab.ingress_service.ports[0]
    external, local = kubeproxy.nft_external_chain(svc, port), kubeproxy.nft_local_chain(svc, port)
    service = kubeproxy.nft_service_chain(svc, port)
    with_controller = {p.node for p in svc.pods}
    for node in lab.nodes:
        payload = kubeproxy.render(lab, node.name)
        head = [f'ip saddr {lab.pod_network} goto {service} comment "short-circuit pod traffic"',
                'fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"',
                f'fib saddr type local goto {service} comment "short-circuit local traffic"']
        if node.name in with_controller:
            mine = [p for p in svc.pods if p.node == node.name]
            assert rules_of(payload, external) == head + [f"goto {local}"]
            assert rules_of(payload, local) == [
                f"numgen random mod {len(mine)} vmap {{ " + " , ".join(
                    f"{i} : goto {kubeproxy.nft_endpoint_chain(svc, port, f'{p.ip}:{port.target_port}')}"
                    for i, p in enumerate(mine)) + " }"]
            assert not elements(payload, "no-endpoint-nodeports")
        else:  # no controller here: what is not short-circuited is dropped
            assert rules_of(payload, external) == head
            assert local not in [name for kind, name, _ in commands(payload) if kind == "chain"]
            name = kubeproxy.port_name(svc, port)
            assert f'{svc.load_balancer_ip} . tcp . {port.port} comment "{name}" : drop' in elements(
                payload, "no-endpoint-services")
            assert elements(payload, "no-endpoint-nodeports") == [f'tcp . {port.node_port} comment "{name}" : drop']
    assert len(with_controller) < len(lab.nodes), "the topology must leave a node without a controller"


def test_every_chain_is_made_before_a_rule_or_an_element_names_it():
    lab = plan(ingress__external_traffic_policy="Local")
    for node in NODES:
        made = set()
        for kind, name, rest in commands(kubeproxy.render(lab, node)):
            if kind == "chain":
                made.add(name)
                continue
            named = set(re.findall(r"(?:goto|jump) (\S+)", rest)) | ({name} if kind == "rule" else set())
            assert named <= made, f"{node}: {kind} {name} {rest} names {sorted(named - made)} before it is made"


def test_rules_for_worker1_match_the_golden_file():
    rendered = kubeproxy.render(plan_mod.build(topology("nftables"), "podpath"), "worker1")
    if os.environ.get("PODPATH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(rendered)
    assert GOLDEN.exists(), f"{GOLDEN} is missing: run with PODPATH_UPDATE_GOLDEN=1 to write it"
    assert rendered == GOLDEN.read_text(), (
        "kube-proxy's nftables rules changed; if that is intended, run with PODPATH_UPDATE_GOLDEN=1 and review the diff")


# -- the verifier's reader, on each mode's output ----------------------------------------------------

def check_reader(rules, lab: plan_mod.Plan, node: str) -> None:
    """What scenario 12 asks of a healthy node, asked of RULES."""
    for svc in (lab.echo_service, lab.ingress_service):
        port = svc.ports[0]
        path = rules.service_path(svc.cluster_ip, port.port)
        assert path, f"{rules.mode}: no path for {svc.name}"
        assert {s.destinations[0] for s in path.seps} == {f"{p.ip}:{port.target_port}" for p in svc.pods}
        assert all(len(s.destinations) == 1 for s in path.seps)
        assert [s.share for s in path.seps] == pytest.approx([1 / len(svc.pods)] * len(svc.pods))
    svc = lab.ingress_service
    lb = rules.service_path(svc.load_balancer_ip, 80)
    assert lb.entry_chain == rules.node_port_path(svc.ports[0].node_port).entry_chain
    assert rules.marks(lb.entry_chain), "policy Cluster marks every external packet"
    assert not rules.marks(rules.service_path(svc.cluster_ip, 80).entry_chain)
    set_mark, masqueraded, _ = rules.masquerade()
    assert set_mark == masqueraded == 0x4000
    empty = lab.empty_service
    assert rules.rejects(empty.cluster_ip, 80) and rules.service_path(empty.cluster_ip, 80) is None
    assert rules.rejects(lab.echo_service.cluster_ip, 80) is None


def recorded_plan() -> plan_mod.Plan:
    """The lab the recordings come from: the reference topology (the names of its pods and
    addresses do not depend on the lab's name)."""
    return plan_mod.build(topology_mod.load(), "rec")


def test_the_reader_follows_a_recorded_iptables_save():
    rules = kube_proxy_rules("iptables", (RECORDED / "iptables-save-worker1.txt").read_text())
    assert isinstance(rules, IptablesRules)
    check_reader(rules, recorded_plan(), "worker1")
    path = rules.service_path("10.96.0.20", 80)
    assert [s.probability for s in path.seps] == [pytest.approx(1 / 3), pytest.approx(1 / 2), None]


def test_the_reader_follows_a_recorded_nft_listing():
    rules = kube_proxy_rules("nftables", (RECORDED / "nft-worker1.json").read_text())
    assert isinstance(rules, NftablesRules)
    check_reader(rules, recorded_plan(), "worker1")
    path = rules.service_path("10.96.0.20", 80)
    assert path.numgen["mod"] == 3 and sorted(path.numgen["indexes"]) == [0, 1, 2]
    assert all(s.chain.startswith("endpoint-") for s in path.seps)


def test_the_reader_follows_the_iptables_renderers_own_payload():
    lab = plan("iptables")
    for node in NODES:
        check_reader(IptablesRules(kubeproxy.render(lab, node)), lab, node)


def _edited(mutate) -> NftablesRules:
    data = json.loads((RECORDED / "nft-worker1.json").read_text())
    data["nftables"] = [obj for obj in data["nftables"] if mutate(obj) is not False]
    return NftablesRules(json.dumps(data))


def test_the_nft_reader_sees_each_fault_the_drills_make():
    lab = recorded_plan()
    sep = kubeproxy.nft_endpoint_chain(lab.echo_service, lab.echo_service.ports[0],
                                       f"{lab.echo_service.pods[0].ip}:8080")
    flushed = _edited(lambda o: not ("rule" in o and o["rule"]["chain"] == sep) or False)
    assert [s.destinations for s in flushed.service_path("10.96.0.20", 80).seps if s.chain == sep] == [[]]

    def forget(obj):
        if obj.get("map", {}).get("name") == "no-endpoint-services":
            obj["map"].pop("elem", None)
    assert _edited(forget).rejects("10.96.0.30", 80) is None
    emptied = _edited(lambda o: not ("rule" in o and o["rule"]["chain"] == "masquerading") or False)
    assert emptied.masquerade()[1] is None and emptied.masquerade()[0] == 0x4000

    def shift(obj):  # numgen mod 4 for 3 endpoints: one packet in 4 goes nowhere
        for expr in obj.get("rule", {}).get("expr", []):
            if "vmap" in expr and "numgen" in expr["vmap"]["key"]:
                expr["vmap"]["key"]["numgen"]["mod"] += 1
    shares = [s.share for s in _edited(shift).service_path("10.96.0.20", 80).seps]
    assert shares == pytest.approx([1 / 4] * 3)


def test_the_reader_refuses_what_is_not_nfts_json():
    with pytest.raises(ProbeError, match="worker1"):
        NftablesRules("Error: No such file or directory", "worker1: nft -j list table ip kube-proxy")
    with pytest.raises(ProbeError, match="ipvs"):
        kube_proxy_rules("ipvs", "")


def test_conntrack_entries_are_read_both_ways():
    line = ("tcp      6 119 TIME_WAIT src=192.168.56.1 dst=192.168.56.200 sport=43117 dport=80 src=10.244.1.2 "
            "dst=10.244.0.0 sport=80 dport=61000 [ASSURED] mark=0 use=1")
    assert parse_conntrack("conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown.\n" + line) == [{
        "orig_src": "192.168.56.1", "orig_dst": "192.168.56.200", "orig_sport": "43117", "orig_dport": "80",
        "reply_src": "10.244.1.2", "reply_dst": "10.244.0.0", "reply_sport": "80", "reply_dport": "61000"}]


# -- nft's own parser, in a namespace of the test's own ------------------------------------------------

@pytest.fixture(scope="module")
def scratch_netns():
    """A network namespace of this test's own, for nft to check and hold the payloads; deleted after."""
    if os.geteuid() != 0:
        pytest.skip("nft needs root (CAP_NET_ADMIN) to check a payload against the kernel")
    if not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("nft or ip is not installed (apt-get install nftables iproute2)")
    name = "podpath-nftcheck-" + uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)
        assert not Path("/run/netns", name).exists()


def nft(netns: str, *args: str, payload: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", *args], input=payload, capture_output=True,
                          text=True, timeout=60)


CASES = {
    "cluster": {},
    "local": {"ingress__external_traffic_policy": "Local", "ingress__replicas": 2},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("node", NODES)
def test_nft_accepts_each_payload_and_the_reader_finds_it_as_rendered(scratch_netns, case, node):
    lab = plan(**CASES[case])
    for ready in (None, set()):  # every endpoint ready; none
        inputs = kubeproxy.inputs(lab, node)
        payload = kubeproxy.rules(inputs if ready is None else inputs.with_ready(ready))
        checked = nft(scratch_netns, "-c", "-f", "-", payload=payload)
        assert checked.returncode == 0, f"nft -c refuses the payload of {node}: {checked.stderr}"
        for _ in range(2):  # applied on an empty namespace, then over itself: the table is replaced
            applied = nft(scratch_netns, "-f", "-", payload=payload)
            assert applied.returncode == 0, applied.stderr
        tables = nft(scratch_netns, "list", "tables").stdout.split()
        assert tables == ["table", "ip", "kube-proxy"], tables
        rules = NftablesRules(nft(scratch_netns, "-j", "list", "table", "ip", "kube-proxy").stdout)
        empty = lab.empty_service
        assert rules.rejects(empty.cluster_ip, 80)
        for svc in (lab.echo_service, lab.ingress_service):
            path = rules.service_path(svc.cluster_ip, 80)
            if ready is not None:
                assert path is None and rules.rejects(svc.cluster_ip, 80), f"{svc.name} has no ready endpoint"
                continue
            assert {s.destinations[0] for s in path.seps} == {f"{p.ip}:{svc.ports[0].target_port}"
                                                              for p in svc.pods}
            assert [s.share for s in path.seps] == pytest.approx([1 / len(svc.pods)] * len(svc.pods))
        svc = lab.ingress_service
        lb = rules.service_path(svc.load_balancer_ip, 80)
        mine = {f"{p.ip}:80" for p in svc.pods if p.node == node}
        if ready is not None:
            assert lb is None
        elif case == "local":
            assert {d for s in lb.seps for d in s.destinations} == mine and not rules.marks(lb.entry_chain)
        else:
            assert len(lb.seps) == len(svc.pods) and rules.marks(lb.entry_chain)
        assert rules.masquerade()[:2] == (0x4000, 0x4000)
