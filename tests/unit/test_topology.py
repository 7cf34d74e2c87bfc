"""The topology file's checks: the default topology builds, and every broken copy of it is
refused with a TopologyError that names the offending value."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from podpath.model import topology as topology_mod
from podpath.model.topology import TopologyError

TOPOLOGY_FILE = Path(__file__).resolve().parents[2] / "inventory" / "group_vars" / "all" / "topology.yml"


@pytest.fixture(scope="module")
def default_topology() -> dict[str, Any]:
    return yaml.safe_load(TOPOLOGY_FILE.read_text())["podpath_topology"]


def _walk(topo: dict, path: str) -> tuple[Any, Any]:
    """The container of the last key of dotted PATH ('nodes.1.ip') and that key."""
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    target = topo
    for key in keys[:-1]:
        target = target[key]
    return target, keys[-1]


def set_(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(topo: dict) -> None:
        target, key = _walk(topo, path)
        target[key] = value
    return mutate


def del_(path: str) -> Callable[[dict], None]:
    def mutate(topo: dict) -> None:
        target, key = _walk(topo, path)
        del target[key]
    return mutate


def both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(topo: dict) -> None:
        for m in mutations:
            m(topo)
    return mutate


def _duplicate_node_name(topo: dict) -> None:
    topo["nodes"][2]["name"] = topo["nodes"][1]["name"]


# (id, mutation, text the message must contain: the offending value)
BAD = [
    # networks
    ("node-network-prefix-33", set_("node_network", "192.168.56.0/33"), "'192.168.56.0/33'"),
    ("node-network-host-bits", set_("node_network", "192.168.56.1/24"), "'192.168.56.1/24'"),
    ("node-network-not-a-cidr", set_("node_network", "192.168.56.0"), "192.168.56.0"),
    ("pod-network-octet-300", set_("pod_network", "10.300.0.0/16"), "'10.300.0.0/16'"),
    ("pod-network-overlaps-node-network", set_("pod_network", "192.168.0.0/16"), "192.168.0.0/16"),
    ("service-network-overlaps-pod-network", set_("service_network", "10.240.0.0/12"), "10.240.0.0/12"),
    ("service-network-overlaps-node-network", set_("service_network", "192.168.56.128/25"), "192.168.56.128/25"),
    # MetalLB pool
    ("pool-outside-node-network", set_("metallb.pool", "192.168.57.200-192.168.57.220"), "192.168.57.200"),
    ("pool-end-outside-node-network", set_("metallb.pool", "192.168.56.200-192.168.57.20"), "192.168.57.20"),
    ("pool-contains-node-ip", set_("metallb.pool", "192.168.56.5-192.168.56.20"), "192.168.56.10"),
    ("pool-contains-client-ip", set_("metallb.pool", "192.168.56.1-192.168.56.5"), "192.168.56.1,"),
    ("pool-reversed", set_("metallb.pool", "192.168.56.220-192.168.56.200"), "192.168.56.220-192.168.56.200"),
    ("pool-bad-address", set_("metallb.pool", "192.168.56.300-192.168.56.310"), "'192.168.56.300'"),
    ("pool-ends-at-broadcast", set_("metallb.pool", "192.168.56.200-192.168.56.255"), "192.168.56.255"),
    ("pool-not-a-range", set_("metallb.pool", "192.168.56.200"), "'192.168.56.200'"),
    # ingress
    ("ingress-replicas-0", set_("ingress.replicas", 0), "replicas is 0"),
    ("ingress-replicas-negative", set_("ingress.replicas", -1), "replicas is -1"),
    ("ingress-replicas-over-nodes-with-spread", set_("ingress.replicas", 4), "replicas is 4 with spread: true"),
    ("ingress-external-traffic-policy", set_("ingress.external_traffic_policy", "Balanced"), "'Balanced'"),
    ("ingress-cluster-ip-outside-service-network", set_("ingress.cluster_ip", "10.244.9.10"), "10.244.9.10"),
    ("ingress-cluster-ip-not-an-ip", set_("ingress.cluster_ip", "10.96.0.300"), "'10.96.0.300'"),
    ("ingress-cluster-ip-dynamic-band", set_("ingress.cluster_ip", "10.96.100.10"), "static band 10.96.0.1-10.96.1.0"),
    ("echo-cluster-ip-kubernetes-service", set_("workloads.echo.cluster_ip", "10.96.0.1"), "kubernetes Service"),
    ("http-node-port-outside-range", set_("ingress.http_node_port", 8080), "8080"),
    ("https-node-port-above-range", set_("ingress.https_node_port", 32768), "32768"),
    ("node-ports-duplicated", set_("ingress.https_node_port", 30080), "https_node_port 30080"),
    ("node-port-not-a-port", set_("ingress.http_node_port", 70000), "70000"),
    ("node-port-range-reversed", set_("node_port_range", "32767-30000"), "'32767-30000'"),
    ("node-port-range-above-65535", set_("node_port_range", "30000-99999"), "'30000-99999'"),
    # Service addresses
    ("echo-cluster-ip-equals-ingress", set_("workloads.echo.cluster_ip", "10.96.0.100"), "10.96.0.100"),
    ("empty-service-cluster-ip-equals-dns", set_("workloads.empty_service.cluster_ip", "10.96.0.10"), "10.96.0.10"),
    ("cluster-dns-outside-service-network", set_("cluster_dns", "10.244.0.10"), "10.244.0.10"),
    ("cluster-ip-is-network-address", set_("workloads.echo.cluster_ip", "10.96.0.0"), "10.96.0.0"),
    # nodes
    ("duplicate-node-names", _duplicate_node_name, "'worker1'"),
    ("node-name-16-bytes", set_("nodes.1.name", "worker-number-16"), "'worker-number-16'"),
    ("node-name-uppercase", set_("nodes.1.name", "Worker1"), "'Worker1'"),
    ("node-ip-outside-node-network", set_("nodes.1.ip", "192.168.57.11"), "192.168.57.11"),
    ("node-ip-network-address", set_("nodes.1.ip", "192.168.56.0"), "192.168.56.0"),
    ("node-ip-duplicated", set_("nodes.2.ip", "192.168.56.11"), "192.168.56.11"),
    ("node-ip-equals-client", set_("nodes.0.ip", "192.168.56.1"), "192.168.56.1"),
    ("node-role-unknown", set_("nodes.0.role", "master"), "'master'"),
    ("pod-cidr-outside-pod-network", set_("nodes.1.pod_cidr", "10.245.1.0/24"), "10.245.1.0/24"),
    ("pod-cidrs-overlap", set_("nodes.2.pod_cidr", "10.244.1.128/25"), "10.244.1.128/25"),
    ("pod-cidr-too-small", set_("nodes.2.pod_cidr", "10.244.2.0/29"), "10.244.2.0/29"),
    ("pod-cidr-host-bits", set_("nodes.2.pod_cidr", "10.244.2.1/24"), "'10.244.2.1/24'"),
    ("no-nodes", set_("nodes", []), "nodes"),
    ("client-ip-outside-node-network", set_("client.ip", "10.0.0.1"), "10.0.0.1"),
    # workloads
    ("multi-container-pod-unknown-node", set_("workloads.multi_container_pod.node", "worker9"), "'worker9'"),
    ("echo-replicas-do-not-fit", both(set_("nodes.1.pod_cidr", "10.244.1.0/28"), set_("workloads.echo.replicas", 30)),
     "echo replicas 30"),
    ("echo-replicas-0", set_("workloads.echo.replicas", 0), "0 is less than the minimum"),
    # keys
    ("missing-metallb", del_("metallb"), "'metallb'"),
    ("missing-node-ip", del_("nodes.1.ip"), "'ip'"),
    ("missing-ingress-cluster-ip", del_("ingress.cluster_ip"), "'cluster_ip'"),
    ("unknown-top-level-key", set_("calico", True), "'calico'"),
    ("pod-neighbours-unknown", set_("pod_neighbours", "arp"), "pod_neighbours 'arp' is not a choice: use learned"),
    ("unknown-node-key", set_("nodes.0.gpu", 1), "'gpu'"),
    ("unknown-ingress-key", set_("ingress.class", "nginx"), "'class'"),
]


@pytest.mark.parametrize("mutate, expected", [pytest.param(m, e, id=i) for i, m, e in BAD])
def test_bad_topology_is_refused_naming_the_value(default_topology, mutate, expected):
    topo = copy.deepcopy(default_topology)
    mutate(topo)
    with pytest.raises(TopologyError) as err:
        topology_mod.validate(topo)
    assert expected in str(err.value)


def test_default_topology_validates(default_topology):
    topology_mod.validate(copy.deepcopy(default_topology))


def test_load_reads_the_default_topology(default_topology):
    assert topology_mod.load() == default_topology


@pytest.mark.parametrize("mutate", [
    pytest.param(both(set_("ingress.replicas", 5), set_("ingress.spread", False)), id="more-replicas-without-spread"),
    pytest.param(set_("ingress.external_traffic_policy", "Local"), id="local-policy"),
    pytest.param(set_("metallb.pool", "192.168.56.200-192.168.56.200"), id="pool-of-one-address"),
    pytest.param(set_("nodes.2.pod_cidr", "10.244.2.0/28"), id="pod-cidr-slash-28"),
    pytest.param(set_("pod_neighbours", "static"), id="static-pod-neighbours"),
])
def test_good_variants_validate(default_topology, mutate):
    topo = copy.deepcopy(default_topology)
    mutate(topo)
    topology_mod.validate(topo)


@pytest.mark.parametrize("text, expected", [
    pytest.param("podpath_topology: [unclosed", "is not valid YAML", id="not-yaml"),
    pytest.param("other_key: {}\n", "no top-level key podpath_topology", id="wrong-top-level-key"),
])
def test_load_refuses_a_bad_file(tmp_path, text, expected):
    path = tmp_path / "topology.yml"
    path.write_text(text)
    with pytest.raises(TopologyError) as err:
        topology_mod.load(path)
    assert expected in str(err.value)


def test_load_names_a_missing_file(tmp_path):
    missing = tmp_path / "nope.yml"
    with pytest.raises(TopologyError) as err:
        topology_mod.load(missing)
    assert str(missing) in str(err.value)


def test_duplicate_node_ip_names_the_node_that_has_it(default_topology):
    topo = copy.deepcopy(default_topology)
    topo["nodes"][2]["ip"] = topo["nodes"][1]["ip"]
    with pytest.raises(TopologyError) as err:
        topology_mod.validate(topo)
    assert "already used by node worker1" in str(err.value)


def test_echo_that_does_not_fit_names_the_smallest_pod_cidr(default_topology):
    topo = copy.deepcopy(default_topology)
    topo["nodes"][1]["pod_cidr"] = "10.244.1.0/28"
    topo["workloads"]["echo"]["replicas"] = 30
    with pytest.raises(TopologyError) as err:
        topology_mod.validate(topo)
    assert "/28" in str(err.value)


# -- the schema check is remembered per topology ----------------------------------------
def test_a_topology_that_passed_the_schema_is_not_checked_again(default_topology, monkeypatch):
    topology_mod.validate(default_topology)
    assert list(topology_mod.SCHEMA_PASSED.iterdir()), "no mark was written after a pass"
    monkeypatch.setitem(__import__("sys").modules, "jsonschema", None)  # importing it now fails
    topology_mod.validate(default_topology)


def test_a_changed_topology_is_checked_again(default_topology, monkeypatch):
    topology_mod.validate(default_topology)
    changed = copy.deepcopy(default_topology)
    changed["colour"] = "red"  # only the schema refuses this: the checks of meaning ignore it
    with pytest.raises(TopologyError, match="'colour' was unexpected"):
        topology_mod.validate(changed)


def test_a_topology_that_failed_is_not_marked(default_topology):
    bad = copy.deepcopy(default_topology)
    bad["nodes"] = "three"
    for _ in range(2):
        with pytest.raises(TopologyError, match="nodes"):
            topology_mod.validate(bad)
    assert not topology_mod.SCHEMA_PASSED.exists() or not list(topology_mod.SCHEMA_PASSED.iterdir())


def test_the_mark_depends_on_the_schema(default_topology):
    schema = topology_mod.SCHEMA_FILE.read_text()
    assert topology_mod._schema_key(default_topology, schema) != topology_mod._schema_key(default_topology, schema + " ")


# -- the one check a play makes -----------------------------------------------------------
def test_read_hands_over_a_topology_without_checking_it(tmp_path, default_topology):
    bad = copy.deepcopy(default_topology)
    bad["ingress"]["replicas"] = 0
    path = tmp_path / "topology.yml"
    path.write_text(yaml.safe_dump({"podpath_topology": bad}))
    assert topology_mod.read(path) == bad
    with pytest.raises(TopologyError, match="replicas is 0"):
        topology_mod.load(path)


def test_the_plays_plan_step_refuses_a_bad_topology_naming_the_value(default_topology):
    from ansible.errors import AnsibleFilterError

    from podpath.model.labdir import load_file

    filters = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "podpath.py"
    plugin = load_file("podpath_filter_plugin", filters)
    bad = copy.deepcopy(default_topology)
    bad["metallb"]["pool"] = "10.0.0.200-10.0.0.220"
    with pytest.raises(AnsibleFilterError) as err:
        plugin.podpath_plan(bad, "podpath", "/usr/bin/python3")
    assert str(err.value).startswith(topology_mod.REFUSED)
    assert "10.0.0.200" in str(err.value)
    planned = plugin.podpath_plan(copy.deepcopy(default_topology), "podpath", "/usr/bin/python3")
    assert set(planned) == {"netns", "kube_proxy", "containers"}
    assert planned["kube_proxy"]["mode"] == "iptables", "the article's mode when the topology names none"


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_kube_proxy_mode_is_the_topologys(default_topology, mode):
    from podpath.model import plan as plan_mod

    topo = copy.deepcopy(default_topology)
    topo["kube_proxy"] = {"mode": mode}
    topology_mod.validate(topo)
    assert plan_mod.build(topo, "podpath").kube_proxy_mode == mode


def test_kube_proxy_mode_is_iptables_when_the_topology_names_none(default_topology):
    from podpath.model import plan as plan_mod

    topo = copy.deepcopy(default_topology)
    topo.pop("kube_proxy", None)
    topology_mod.validate(topo)
    assert plan_mod.build(topo, "podpath").kube_proxy_mode == "iptables"


@pytest.mark.parametrize("mode", ["ipvs", "nft", "IPTABLES", "", 3])
def test_a_kube_proxy_mode_the_lab_does_not_build_is_refused_naming_the_value_and_the_choices(default_topology, mode):
    topo = copy.deepcopy(default_topology)
    topo["kube_proxy"] = {"mode": mode}
    with pytest.raises(topology_mod.TopologyError) as err:
        topology_mod.validate(topo)
    message = str(err.value)
    assert "kube_proxy.mode" in message and repr(mode) in message
    assert "iptables" in message and "nftables" in message


def test_kube_proxy_takes_no_other_key(default_topology):
    topo = copy.deepcopy(default_topology)
    topo["kube_proxy"] = {"mode": "nftables", "masquerade_all": True}
    with pytest.raises(topology_mod.TopologyError, match="masquerade_all"):
        topology_mod.validate(topo)


@pytest.mark.parametrize("network, band", [
    ("10.96.0.0/12", ("10.96.0.1", "10.96.1.0")),  # 2^20 addresses: the band stops at 256
    ("10.96.0.0/20", ("10.96.0.1", "10.96.1.0")),  # 4096 / 16 = 256
    ("10.96.0.0/22", ("10.96.0.1", "10.96.0.64")),  # 1024 / 16 = 64
    ("10.96.0.0/24", ("10.96.0.1", "10.96.0.16")),  # never fewer than 16
    ("10.96.0.0/28", None),  # too small to have a static band
])
def test_the_static_band_of_a_service_network(network, band):
    import ipaddress

    got = topology_mod.static_band(ipaddress.ip_network(network))
    assert (tuple(map(str, got)) if got else None) == band
