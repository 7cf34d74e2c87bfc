"""The topology's edge switch and gateway section: the default edge is ingress-nginx, the
reference gateway topology builds and differs from the default only by its edge, and every
broken gateway section is refused with a TopologyError naming the offending value."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from podpath.model import topology as topology_mod
from podpath.model.topology import TopologyError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "inventory" / "group_vars" / "all" / "topology.yml"
GATEWAY = ROOT / "inventory" / "gateway-api.yml"


@pytest.fixture()
def gateway_topology() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(GATEWAY.read_text())["podpath_topology"])


def test_default_edge_is_ingress_nginx():
    topo = topology_mod.load(DEFAULT)
    assert topology_mod.edge(topo) == "ingress-nginx"
    assert topology_mod.edge_replicas(topo) == topo["ingress"]["replicas"]


def test_edge_omitted_means_ingress_nginx():
    topo = topology_mod.load(DEFAULT)
    del topo["edge"]
    topology_mod.validate(topo)
    assert topology_mod.edge(topo) == "ingress-nginx"


def test_gateway_reference_topology_builds_and_differs_only_by_edge():
    default = topology_mod.load(DEFAULT)
    gateway = topology_mod.load(GATEWAY)
    assert topology_mod.edge(gateway) == "gateway-api"
    assert topology_mod.edge_replicas(gateway) == gateway["gateway"]["replicas"]
    assert {k: v for k, v in gateway.items() if k != "edge"} == {k: v for k, v in default.items() if k != "edge"}


def _set(topo: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        topo = topo[key]
    if value is KeyError:
        del topo[keys[-1]]
    else:
        topo[keys[-1]] = value


BAD = [
    ("edge-unknown", "edge", "envoy", "'envoy'"),
    ("no-gateway-section", "gateway", KeyError, "no gateway section"),
    ("replicas-0", "gateway.replicas", 0, "gateway replicas is 0"),
    ("replicas-over-nodes-with-spread", "gateway.replicas", 4, "gateway replicas is 4 with spread: true"),
    ("service-not-ngf-name", "gateway.service", "gw-svc", "'demo-gateway-nginx'"),
    ("cluster-ip-taken-by-ingress", "gateway.cluster_ip", "10.96.0.100", "10.96.0.100"),
    ("cluster-ip-dynamic-band", "gateway.cluster_ip", "10.100.0.5", "10.100.0.5"),
    ("cluster-ip-outside-service-network", "gateway.cluster_ip", "10.244.0.5", "10.244.0.5"),
    ("node-port-outside-range", "gateway.http_node_port", 8080, "8080"),
    ("node-port-taken-by-ingress", "gateway.http_node_port", 30080, "30080"),
    ("path-prefix-relative", "gateway.route.path_prefix", "echo", "'echo'"),
    ("path-prefix-trailing-slash", "gateway.route.path_prefix", "/echo/", "'/echo/'"),
    ("hostname-upper-case", "gateway.listener.hostname", "Demo.Lab", "'Demo.Lab'"),
    ("header-name-space", "gateway.route.add_header.name", "X Route", "'X Route'"),
    ("policy-unknown", "gateway.external_traffic_policy", "Balanced", "'Balanced'"),
]


@pytest.mark.parametrize("path,value,expect", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_gateway_section_is_refused_naming_the_value(gateway_topology, path, value, expect):
    _set(gateway_topology, path, value)
    with pytest.raises(TopologyError) as err:
        topology_mod.validate(gateway_topology)
    assert expect in str(err.value)


def test_gateway_section_checked_even_with_the_ingress_edge(gateway_topology):
    """The cluster lab reads the section whichever edge is chosen: a bad one is refused anyway."""
    gateway_topology["edge"] = "ingress-nginx"
    gateway_topology["gateway"]["http_node_port"] = 30080
    with pytest.raises(TopologyError, match="30080"):
        topology_mod.validate(gateway_topology)


def test_pod_subnet_fit_counts_the_active_edges_pods(gateway_topology):
    """The pods per node are counted with the edge that runs: gateway replicas, not ingress's."""
    for node in gateway_topology["nodes"]:
        node["pod_cidr"] = node["pod_cidr"].rsplit("/", 1)[0] + "/28"
    gateway_topology["workloads"]["echo"]["replicas"] = 16
    gateway_topology["gateway"]["spread"] = False
    gateway_topology["gateway"]["replicas"] = 1
    topology_mod.validate(gateway_topology)
    gateway_topology["gateway"]["replicas"] = 9
    with pytest.raises(TopologyError, match="do not fit"):
        topology_mod.validate(gateway_topology)
