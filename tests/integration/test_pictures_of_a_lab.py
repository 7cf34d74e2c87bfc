"""podpath trace -o and podpath status --picture on a real lab: every format is written by the
command, drawn or parsed here, and holds the addresses of every hop the command printed."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest
from labtools import force_remove, lab_namespaces, new_lab_name, podpath

from podpath.model import plan as plan_mod
from podpath.model import topology as topology_mod

pytestmark = [pytest.mark.netns, pytest.mark.slow]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    name = new_lab_name("p")
    up = podpath("up", "--lab", name)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield name, plan_mod.build(topology_mod.load(), name)
    finally:
        down = podpath("down", "--lab", name)
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        assert down.returncode == 0, down.stderr


def traced_addresses(out: str, plan: plan_mod.Plan) -> list[str]:
    """The addresses of every hop, as this run of podpath trace printed them."""
    arp = re.search(r"(\S+) is-at (\S+): node (\S+) answered", out)
    dnat = re.search(r"conntrack: (\S+):(\d+) -> (\S+):(\d+) \((KUBE-SEP-\w+)[,)]", out)
    backend = re.search(r"4 backend\s+(\S+) \((\S+)\) on (\S+)", out)
    seen = re.search(r"the controller saw (\S+) .*the backend saw (\S+)", out)
    assert arp and dnat and backend and seen, f"a hop is missing from the trace:\n{out}"
    target_port = plan.echo_service.ports[0].target_port
    return [plan.client_ip, arp.group(1), arp.group(2), plan.node(arp.group(3)).ip,
            f"{dnat.group(3)}:{dnat.group(4)}", dnat.group(5), f"{backend.group(2)}:{target_port}",
            seen.group(1), seen.group(2)]


def contains(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w.:]){re.escape(token)}(?![\w]|\.\d)", text) is not None


def svg_text(data: bytes) -> str:
    root = ET.fromstring(data)
    assert root.tag == f"{SVG}svg", root.tag
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def trace_to(name: str, path) -> str:
    out = podpath("trace", "--lab", name, "-o", str(path))
    assert out.returncode == 0 and f"diagram written to {path}" in out.stdout, out.stdout + out.stderr
    return out.stdout


def test_trace_svg_holds_every_hop(lab, tmp_path):
    name, plan = lab
    path = tmp_path / "path.svg"
    out = trace_to(name, path)
    text = svg_text(path.read_bytes())
    missing = [a for a in traced_addresses(out, plan) if not contains(text, a)]
    assert not missing, f"the SVG lacks {missing}"


def test_trace_dot_is_drawn_by_graphviz_and_holds_every_hop(lab, tmp_path):
    name, plan = lab
    path = tmp_path / "path.dot"
    out = trace_to(name, path)
    done = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    text = svg_text(done.stdout)
    missing = [a for a in traced_addresses(out, plan) if not contains(text, a)]
    assert not missing, f"the drawn DOT lacks {missing}"


def test_trace_png_is_a_png_for_a_slide(lab, tmp_path):
    name, _ = lab
    path = tmp_path / "path.png"
    trace_to(name, path)
    width, height = png_size(path.read_bytes())
    assert width >= 600 and height >= 300 and width / height <= 3, f"{width}x{height}"


def test_trace_mermaid_holds_every_hop(lab, tmp_path):
    name, plan = lab
    path = tmp_path / "path.mmd"
    out = trace_to(name, path)
    text = path.read_text()
    assert text.startswith("flowchart LR\n")
    labels = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text).replace("<br/>", "\n")
    missing = [a for a in traced_addresses(out, plan) if not contains(labels, a)]
    assert not missing, f"the Mermaid lacks {missing}"


def test_status_picture_draws_the_whole_lab_as_it_runs(lab, tmp_path):
    name, plan = lab
    path = tmp_path / "lab.svg"
    out = podpath("status", "--lab", name, "--json", "--picture", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)  # the picture's line goes to stderr, the JSON stays whole
    text = svg_text(path.read_bytes())
    wanted = [plan.client_ip, report["load_balancer_ip"]]
    wanted += [n.ip for n in plan.nodes] + [n.gateway for n in plan.nodes]
    wanted += [p.ip for p in plan.pods] + [p.host_veth for p in plan.pods] + [p.netns for p in plan.pods]
    missing = [w for w in wanted if not contains(text, w)]
    assert not missing, f"the lab picture lacks {missing}"
    announcers = [n for n, a in report["announcing"].items() if a]
    assert f"announced by {', '.join(announcers)}" in text
    assert report["leader"] and "holds the leader lease" in text


@pytest.mark.parametrize("suffix", [".png", ".dot"])
def test_status_picture_writes_png_and_dot(lab, tmp_path, suffix):
    name, _ = lab
    path = tmp_path / f"lab{suffix}"
    out = podpath("status", "--lab", name, "--picture", str(path))
    assert out.returncode == 0 and f"picture written to {path}" in out.stdout, out.stdout + out.stderr
    if suffix == ".png":
        width, height = png_size(path.read_bytes())
        assert width >= 600 and height >= 300
    else:
        assert subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True).returncode == 0


def test_an_unknown_picture_format_is_refused_before_any_work(lab, tmp_path):
    name, _ = lab
    path = tmp_path / "path.jpeg"
    out = podpath("trace", "--lab", name, "-o", str(path))
    assert out.returncode == 2 and ".jpeg" in out.stderr and ".svg" in out.stderr, out.stderr
    assert "trace:" not in out.stdout, "the trace ran although its output could not be written"
    assert not path.exists()
