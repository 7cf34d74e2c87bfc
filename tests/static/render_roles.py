"""Render every template of the cluster roles the way Ansible renders them on the nodes:
one ansible-playbook run over inventory/hosts.example.yml with the roles' defaults, the
default topology and versions, and stand-ins for what the nodes would report at run time.
Shared by the template checks and the Kubernetes object checks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(str(path.relative_to(ROOT / "roles")) for path in (ROOT / "roles").glob("cluster_*/templates/*.j2"))
HOSTS = ["cp1", "worker1", "worker2"]
# What the nodes would report at run time, standing in for registered results and facts.
STAND_INS = {
    "cluster_join_token": "abcdef.0123456789abcdef",
    "cluster_join_ca_cert_hash": "sha256:" + "0" * 64,
    "cluster_join_certificate_key": "",
}
STAND_IN_INTERFACE = "eth1"

Rendered = dict[str, str]  # host -> text


def template_id(template: str) -> str:
    """cluster_cni/templates/iface-patch.yaml.j2 -> cluster_cni/iface-patch.yaml"""
    role, _, name = template.partition("/templates/")
    return f"{role}/{name.removesuffix('.j2')}"


def render_all(ansible_playbook: str, out: Path) -> dict[str, Rendered]:
    """Render every template for every host in one ansible-playbook run (the template lookup,
    one JSON list per host): template id -> host -> text."""
    roles = sorted({template.split("/")[0] for template in TEMPLATES})
    sources = ", ".join(repr(str(ROOT / "roles" / template)) for template in TEMPLATES)
    play = [{
        "name": "Render the cluster roles' templates with the default topology",
        "hosts": "cluster",
        "gather_facts": False,
        "vars": STAND_INS,
        "tasks": [
            {"name": "Load the defaults of the roles",
             "ansible.builtin.include_vars": {"file": "{{ item }}"},
             "loop": [str(ROOT / "roles" / role / "defaults" / "main.yml") for role in roles]},
            {"name": "Stand in for the interface found by address",
             "ansible.builtin.set_fact": {"cluster_cni_host_interface": STAND_IN_INTERFACE}},
            {"name": "Render the templates into one JSON list per host",
             "ansible.builtin.copy": {
                 "content": "{{ query('ansible.builtin.template', %s) | to_json }}" % sources,
                 "dest": f"{out}/{{{{ inventory_hostname }}}}.json", "mode": "0644"}},
        ],
    }]
    playbook = out / "render.yml"
    playbook.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [ansible_playbook, "-i", "inventory/hosts.example.yml", str(playbook),
         "-e", "ansible_connection=local", "-e", f"ansible_python_interpreter={sys.executable}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    texts: dict[str, Rendered] = {template_id(template): {} for template in TEMPLATES}
    for host in HOSTS:
        for template, text in zip(TEMPLATES, json.loads((out / f"{host}.json").read_text()), strict=True):
            texts[template_id(template)][host] = text
    return texts


def render_one(ansible_playbook: str, host: str, var_files: list[Path], template: Path, topology: dict,
               out: Path) -> str:
    """Render one TEMPLATE for HOST as Ansible does, with VAR_FILES loaded (the role's defaults,
    the versions) and TOPOLOGY as podpath_topology: the text."""
    (out / "vars.json").write_text(json.dumps({"podpath_topology": topology}))
    play = [{"name": f"Render {template.name}", "hosts": host, "gather_facts": False, "tasks": [
        {"name": "Load the variables", "ansible.builtin.include_vars": {"file": "{{ item }}"},
         "loop": [str(path) for path in var_files]},
        {"name": "Render the template", "ansible.builtin.copy": {
            "content": "{{ lookup('ansible.builtin.template', '%s') }}" % template,
            "dest": str(out / "rendered"), "mode": "0644"}}]}]
    (out / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    argv = [ansible_playbook, "-i", f"{host},", "-c", "local", str(out / "play.yml"), "-e", f"@{out / 'vars.json'}",
            "-e", f"ansible_python_interpreter={sys.executable}"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return (out / "rendered").read_text()
