"""podpath_netns works with the oldest pyroute2 its documentation names, and with Debian 13's.

The cluster lab's nodes install Debian's python3-pyroute2, 0.7.7 on Debian 13, and run the
module with it; the module's documentation asks for 0.5.14 or later (only netlink constants
are used: tests/static/test_module_sources.py keeps the list). Each version gets a virtual
environment of its own under build/ (made once, from the package index, as `make venv`
installs the project's own), and the module runs in it the usual way, as on a node: built,
built again unchanged, removed. Without pyroute2 the module says what is missing.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# the oldest version the module's documentation names, and Debian 13's
VERSIONS = ("0.5.14", "0.7.7")
SUBNET = "10.250.11"


def python_with(pyroute2: str | None) -> str:
    """A Python (build/pyroute2-VERSION) that has exactly that pyroute2, or none."""
    name = f"pyroute2-{pyroute2}" if pyroute2 else "pyroute2-none"
    where = ROOT / "build" / name
    python = where / "bin" / "python"
    if not (where / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(where)], check=True, capture_output=True)
        if pyroute2:
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   f"pyroute2=={pyroute2}"], capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                pytest.skip(f"pyroute2 {pyroute2} could not be installed from the package index here: "
                            f"{done.stderr.strip()[-300:]}")
        (where / ".ready").touch()
    return str(python)


def spec(lab):
    return [
        {"name": lab.ns("node"), "sysctls": {"net.ipv4.ip_forward": 1},
         "links": [{"name": "cni0", "kind": "bridge", "addresses": [f"{SUBNET}.1/24"]}]},
        {"name": lab.ns("pod"), "holder": True, "hostname": "pod",
         "links": [{"name": "eth0", "kind": "veth", "addresses": [f"{SUBNET}.2/24"],
                    "peer": {"name": f"{lab.name}h", "namespace": lab.ns("node"), "master": "cni0",
                             "hairpin": True}}],
         "routes": [{"dst": "default", "gateway": f"{SUBNET}.1"}]},
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_constants_are_the_ones_of_the_projects_pyroute2(version):
    names = {"pyroute2.netlink": ["NLM_F_ACK", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_EXCL", "NLM_F_REPLACE",
                                  "NLM_F_REQUEST", "NLMSG_DONE", "NLMSG_ERROR"],
             "pyroute2.netlink.rtnl": ["RTM_DELADDR", "RTM_DELLINK", "RTM_DELNEIGH", "RTM_DELROUTE", "RTM_GETADDR",
                                       "RTM_GETLINK", "RTM_GETNEIGH", "RTM_GETROUTE", "RTM_NEWADDR", "RTM_NEWLINK",
                                       "RTM_NEWNEIGH", "RTM_NEWROUTE"]}
    program = ("import importlib, json, sys; names = json.loads(sys.argv[1]); print(json.dumps({m: "
               "{n: getattr(importlib.import_module(m), n) for n in ns} for m, ns in names.items()}))")
    values = [json.loads(subprocess.run([python, "-c", program, json.dumps(names)], check=True, capture_output=True,
                                        text=True).stdout) for python in (python_with(version), sys.executable)]
    assert values[0] == values[1]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_module_wires_and_removes_a_pod_with_that_pyroute2(netns_lab, version):
    python = python_with(version)
    built = netns_lab.apply(spec(netns_lab), ansible_python_interpreter=python)
    assert built.changed
    assert sorted(netns_lab.namespaces()) == sorted(ns["name"] for ns in spec(netns_lab))
    again = netns_lab.apply(spec(netns_lab), ansible_python_interpreter=python)
    assert not again.changed, again.module.get("changes")
    gone = netns_lab.apply(state="absent", ansible_python_interpreter=python)
    assert gone.changed and netns_lab.namespaces() == []


def test_without_pyroute2_the_module_names_what_is_missing_and_changes_nothing(netns_lab):
    result = netns_lab.run(spec(netns_lab), ansible_python_interpreter=python_with(None))
    assert result.failed
    assert "Failed to import the required Python library (pyroute2)" in result.msg, result.msg
    assert netns_lab.namespaces() == []
