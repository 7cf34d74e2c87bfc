"""The cluster lab's kube-proxy runs in the topology's kube_proxy.mode, as the netns lab does.

cluster_control_plane's kubeadm configuration is rendered by Ansible itself, with the role's
defaults, for a topology that says iptables, one that says nftables, and one that says
nothing (kube-proxy's own default, iptables, as the netns lab's plan takes it); the
KubeProxyConfiguration must carry that mode and nothing that contradicts it.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from podpath.model import plan as plan_mod
from podpath.model import topology
from render_roles import ROOT, render_one

pytestmark = pytest.mark.static

ROLE = ROOT / "roles" / "cluster_control_plane"
VERSIONS = ROOT / "inventory" / "group_vars" / "all" / "versions.yml"


def rendered_kubeadm_config(ansible_playbook: str, topo: dict, out: Path) -> dict[str, dict]:
    """Kind -> document of the kubeadm configuration cp1 would get."""
    text = render_one(ansible_playbook, "cp1", [VERSIONS, ROLE / "defaults" / "main.yml"],
                      ROLE / "templates" / "kubeadm-config.yaml.j2", topo, out)
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text) if doc}


@pytest.mark.parametrize("mode", ["iptables", "nftables", None])
def test_kube_proxys_mode_is_the_topologys(tool, tmp_path, mode):
    topo = topology.read()
    if mode is None:
        topo.pop("kube_proxy", None)
    else:
        topo["kube_proxy"] = {"mode": mode}
    topology.validate(topo)
    docs = rendered_kubeadm_config(tool("ansible-playbook"), topo, tmp_path)
    proxy = docs["KubeProxyConfiguration"]
    assert proxy["apiVersion"] == "kubeproxy.config.k8s.io/v1alpha1"
    assert proxy["mode"] == (mode or "iptables")
    assert proxy["mode"] == plan_mod.build(topo, "podpath").kube_proxy_mode, "the two labs would run different modes"
    assert proxy["ipvs"]["strictARP"] is False, "strictARP is for IPVS mode only"
    # kubeadm gives kube-proxy the pod network as clusterCIDR (which tells pod traffic from the
    # rest, for masquerading) from networking.podSubnet: it must be the topology's
    assert docs["ClusterConfiguration"]["networking"]["podSubnet"] == topo["pod_network"]
    assert "clusterCIDR" not in proxy or proxy["clusterCIDR"] == topo["pod_network"]
    # NodePorts in nftables mode are on the node's primary address only: the kubelet's node-ip
    assert {"name": "node-ip", "value": next(n["ip"] for n in topo["nodes"] if n["name"] == "cp1")} in \
        docs["InitConfiguration"]["nodeRegistration"]["kubeletExtraArgs"]


def test_the_nodes_get_nft_for_the_verifier():
    defaults = yaml.safe_load((ROOT / "roles" / "cluster_prerequisites" / "defaults" / "main.yml").read_text())
    assert "nftables" in defaults["cluster_prerequisites_packages"], (
        "in nftables mode the verifier reads kube-proxy's rules with nft on each node")
