"""The cluster lab's flannel backend is the topology's flannel.backend, as in the netns lab.

cluster_cni's net-conf patch is rendered by Ansible itself, with the role's defaults, for a
topology that says vxlan, one that says host-gw, and one that says nothing (flannel's own
default, vxlan, as the netns lab's plan takes it).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from podpath.model import plan as plan_mod
from podpath.model import topology
from render_roles import ROOT, render_one

pytestmark = pytest.mark.static

ROLE = ROOT / "roles" / "cluster_cni"


def rendered_net_conf(ansible_playbook: str, topo: dict, out: Path) -> dict:
    text = render_one(ansible_playbook, "localhost", [ROLE / "defaults" / "main.yml"],
                      ROLE / "templates" / "net-conf-patch.yaml.j2", topo, out)
    return json.loads(yaml.safe_load(text)["data"]["net-conf.json"])


@pytest.mark.parametrize("backend", ["vxlan", "host-gw", None])
def test_flannels_backend_is_the_topologys(tool, tmp_path, backend):
    topo = topology.read()
    if backend is None:
        topo.pop("flannel", None)
    else:
        topo["flannel"] = {"backend": backend}
    net_conf = rendered_net_conf(tool("ansible-playbook"), topo, tmp_path)
    netns_lab = plan_mod.build(topo, "podpath").flannel_backend
    assert net_conf["Backend"] == {"Type": backend or "vxlan"}
    assert net_conf["Backend"]["Type"] == netns_lab, "the two labs would build different backends"
    assert net_conf["Network"] == topo["pod_network"]
