"""The cluster lab's flannel backend is the topology's flannel.backend, as in the netns lab.

cluster_cni's net-conf patch is rendered by Ansible itself, with the role's defaults, for a
topology that says vxlan, one that says host-gw, and one that says nothing (flannel's own
default, vxlan, as the netns lab's plan takes it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from podpath.model import plan as plan_mod
from podpath.model import topology

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "cluster_cni"


def rendered_net_conf(ansible_playbook: str, topo: dict, out: Path) -> dict:
    (out / "vars.json").write_text(json.dumps({"podpath_topology": topo}))
    template = ROLE / "templates" / "net-conf-patch.yaml.j2"
    play = [{"name": "Render cluster_cni's net-conf patch", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Load the role's defaults",
         "ansible.builtin.include_vars": {"file": str(ROLE / "defaults" / "main.yml")}},
        {"name": "Render the patch", "ansible.builtin.copy": {
            "content": "{{ lookup('ansible.builtin.template', '%s') }}" % template,
            "dest": str(out / "net-conf-patch.yaml"), "mode": "0644"}}]}]
    (out / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    argv = [ansible_playbook, "-i", "localhost,", "-c", "local", str(out / "play.yml"), "-e", f"@{out / 'vars.json'}",
            "-e", f"ansible_python_interpreter={sys.executable}"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    configmap = yaml.safe_load((out / "net-conf-patch.yaml").read_text())
    return json.loads(configmap["data"]["net-conf.json"])


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
