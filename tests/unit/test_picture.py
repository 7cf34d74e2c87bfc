"""The pictures of podpath trace and podpath status --picture, from a scripted lab: the DOT is
drawn by the real Graphviz, the SVG parsed as XML, the PNG's header read, the Mermaid checked
line by line, and every picture must hold every hop's addresses as the plan and the trace
found them."""
from __future__ import annotations

import copy
import json
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest

from podpath.evidence import picture, trace
from podpath.evidence.lab import Result
from podpath.evidence.probe import NetnsLab
from podpath.model import kubeproxy
from podpath.model import plan as plan_mod
from podpath.model import topology as topology_mod

TOPOLOGY = topology_mod.load()
HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed (apt-get install graphviz)")
SVG = "{http://www.w3.org/2000/svg}"
CLIENT_PORT = 43117


def keyword_topology() -> dict:
    """The reference topology with nodes named after DOT's keywords and Mermaid's `end`: a
    picture must quote every name it writes."""
    topo = copy.deepcopy(TOPOLOGY)
    names = {"cp1": "node", "worker1": "edge", "worker2": "end"}
    for node in topo["nodes"]:
        node["name"] = names.get(node["name"], node["name"])
    mcp = topo["workloads"]["multi_container_pod"]
    mcp["node"] = names.get(mcp["node"], mcp["node"])
    return topo


class ScriptedLab:
    """A runner that answers the commands trace() runs as a lab would, from the plan: the
    first node answers ARP, the DNAT goes to a controller on another node, the backend is on a
    third node; SNAT to the ARP node's address unless told otherwise."""

    def __init__(self, plan: plan_mod.Plan, curl_rc: int = 0, arp: bool = True):
        self.plan = plan
        self.arp_node = plan.nodes[0]
        self.controller = next(p for p in plan.ingress_pods if p.node != self.arp_node.name)
        self.backend = next(p for p in plan.echo_pods if p.node not in (self.arp_node.name, self.controller.node))
        self.macs = {n.name: f"02:00:00:00:00:{i + 10:02x}" for i, n in enumerate(plan.nodes)}
        self.curl_rc = curl_rc
        self.arp = arp

    def __call__(self, argv: list[str]) -> Result:
        netns = argv[1].removeprefix("--net=/run/netns/") if argv[0] == "nsenter" else None
        cmd = argv[3:] if netns else argv
        lb = self.plan.ingress_service.load_balancer_ip
        if cmd[:1] == ["curl"]:
            if self.curl_rc:
                return Result(self.curl_rc, "", "curl: (28) Operation timed out")
            body = (f"pod={self.backend.name} ip={self.backend.ip} node={self.backend.node} "
                    f"client={self.controller.ip} forwarded_for={self.arp_node.ip}")
            return Result(0, f"HTTP/1.1 200 OK\r\nX-Ingress-Controller: {self.controller.name}\r\n\r\n{body}\n"
                             f"\nlocal_port={CLIENT_PORT}\n", "")
        if cmd[:3] == ["ip", "-j", "neigh"]:
            entries = [{"dst": lb, "lladdr": self.macs[self.arp_node.name]}] if self.arp else []
            return Result(0, json.dumps(entries), "")
        if cmd[:4] == ["ip", "-j", "-d", "link"]:
            node = next(n for n in self.plan.nodes if n.netns == netns)
            return Result(0, json.dumps([{"ifname": "eth1", "address": self.macs[node.name]}]), "")
        if cmd[:4] == ["ip", "-o", "route", "get"]:  # the node's route to a pod of another node, as flannel wires it
            src = next(n for n in self.plan.nodes if n.netns == netns)
            dst = next(p for p in self.plan.pods if p.ip == cmd[4])
            hop = self.plan.node_hop(src.name, dst.node)
            return Result(0, f"{cmd[4]} via {hop.gateway} dev {hop.dev} src {src.gateway} uid 0 \\    cache\n", "")
        if cmd[:1] == ["conntrack"]:
            port = self.plan.ingress_service.ports[0]
            return Result(0, f"tcp 6 119 TIME_WAIT src={self.plan.client_ip} dst={lb} sport={CLIENT_PORT} "
                             f"dport={port.port} src={self.controller.ip} dst={self.arp_node.ip} "
                             f"sport={port.target_port} dport=61000 [ASSURED] mark=0 use=1\n", "")
        return Result(0, "", "")


def traced(topo: dict = TOPOLOGY, lab: str = "pic0", **script) -> tuple[trace.Trace, ScriptedLab]:
    plan = plan_mod.build(topo, lab)
    runner = ScriptedLab(plan, **script)
    return trace.trace(lab, topo, lab=NetnsLab(lab, topo, run=runner)), runner


def hop_addresses(result: trace.Trace, runner: ScriptedLab) -> list[str]:
    """Every address a hop showed, read from the plan and the trace's result."""
    plan = result.plan
    svc = plan.ingress_service
    controller = plan.pod(result.controller)
    backend = plan.pod(result.backend)
    return [plan.client_ip, svc.load_balancer_ip, result.mac, plan.node(result.node).ip,
            f"{result.controller_ip}:{svc.ports[0].target_port}", controller.ip, result.controller_saw,
            f"{backend.ip}:{plan.echo_service.ports[0].target_port}", result.backend_saw,
            f"{plan.client_ip}:{result.client_port}", result.sep_chain]


def contains(text: str, token: str) -> bool:
    """TOKEN in TEXT as a whole address (192.168.56.1 is not found in 192.168.56.10)."""
    return re.search(rf"(?<![\w.:]){re.escape(token)}(?![\w]|\.\d)", text) is not None


def svg_text(data: bytes) -> str:
    root = ET.fromstring(data)
    assert root.tag == f"{SVG}svg"
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def dot_render(dot: str, fmt: str = "svg") -> subprocess.CompletedProcess:
    return subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True)


def mermaid_text(text: str) -> str:
    """The labels of a Mermaid flowchart, with its #NNN; character codes read back."""
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text).replace("<br/>", "\n")


def check_mermaid(text: str) -> None:
    """What Mermaid's flowchart grammar needs of podpath's output: one statement per line,
    ids declared before use and never a Mermaid word, labels quoted with no raw quote inside,
    every subgraph closed."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    label = r'"[^"]*"'
    declared, depth = set(), 0
    for line in lines[1:]:
        line = line.strip()
        if m := re.fullmatch(rf"(\w+)\[({label})\]", line):
            assert m.group(1) not in declared and m.group(1) not in ("end", "graph", "subgraph")
            declared.add(m.group(1))
        elif m := re.fullmatch(rf"subgraph (\w+) \[({label})\]", line):
            depth += 1
        elif line == "end":
            depth -= 1
            assert depth >= 0, "an `end` without its subgraph"
        elif m := re.fullmatch(rf"(\w+) (-->|-\.->)\|({label})\| (\w+)", line):
            assert {m.group(1), m.group(4)} <= declared, f"an arrow between undeclared boxes: {line}"
        elif not re.fullmatch(r"%%.*|classDef \w+ .+|class [\w,]+ \w+|linkStyle \d+ .+", line):
            pytest.fail(f"a line Mermaid's flowchart grammar does not have: {line!r}")
    assert depth == 0, "a subgraph is not closed"


# --- the trace ---------------------------------------------------------------------------

def test_the_scripted_trace_is_complete():
    result, runner = traced()
    assert result.complete, trace.render_text(result)
    assert (result.node, result.controller, result.backend) == (runner.arp_node.name, runner.controller.name,
                                                                runner.backend.name)


@needs_dot
def test_boxes_named_after_dot_keywords_are_drawn():
    words = ["node", "edge", "graph", "digraph", "subgraph", "strict"]
    pic = picture.Picture(title=["keywords"], boxes=[picture.Box(w, [w]) for w in words],
                          groups=[picture.Group("node", ["node"], [picture.Box("in/node", ["x"])])],
                          arrows=[picture.Arrow(a, b, [a]) for a, b in zip(words, words[1:])])
    done = dot_render(picture.to_dot(pic))
    assert done.returncode == 0, done.stderr.decode()
    assert set(words) <= set(svg_text(done.stdout).split())


@needs_dot
def test_graphviz_draws_the_trace_dot_even_when_names_are_dot_keywords():
    result, _ = traced(keyword_topology(), lab="node")
    assert {n.name for n in result.plan.nodes} >= {"node", "edge", "end"}
    done = dot_render(picture.to_dot(picture.trace_picture(result)))
    assert done.returncode == 0, done.stderr.decode()


@needs_dot
def test_the_svg_is_xml_and_holds_every_hops_addresses(tmp_path):
    result, runner = traced()
    path = tmp_path / "path.svg"
    assert picture.write(picture.trace_picture(result), path) == "svg"
    text = svg_text(path.read_bytes())
    missing = [a for a in hop_addresses(result, runner) if not contains(text, a)]
    assert not missing, f"the SVG lacks {missing}"
    for name in (result.node, result.controller, result.backend):
        assert name in text


def test_the_picture_shows_where_the_source_nat_happens():
    result, runner = traced()
    dot = picture.to_dot(picture.trace_picture(result))
    nat_box = next(line for line in dot.splitlines() if line.strip().startswith('"nat"'))
    assert "MASQUERADE" in nat_box and contains(nat_box, result.controller_saw), nat_box
    assert f"iptables nat table of {runner.arp_node.name}" in nat_box
    # each chain of the DNAT, in the box of the node that answered ARP
    svc = result.plan.ingress_service
    for chain in (kubeproxy.ext_chain(svc, svc.ports[0]), kubeproxy.svc_chain(svc, svc.ports[0]), result.sep_chain):
        assert chain in nat_box


def test_without_source_nat_the_picture_says_so():
    result, _ = traced()
    result.controller_saw = result.plan.client_ip  # as with externalTrafficPolicy Local
    dot = picture.to_dot(picture.trace_picture(result))
    assert "MASQUERADE" not in dot and "no source NAT" in dot


@needs_dot
def test_the_png_is_a_png_of_slide_proportions(tmp_path):
    result, _ = traced()
    path = tmp_path / "path.png"
    assert picture.write(picture.trace_picture(result), path) == "png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 600 and height >= 300, f"{width}x{height} is too small to read"
    assert width / height <= 3, f"{width}x{height} does not fit a slide"
    assert len(data) > 10_000


def test_the_mermaid_is_well_formed_and_holds_every_hops_addresses(tmp_path):
    result, runner = traced(keyword_topology(), lab="end")
    path = tmp_path / "path.mmd"
    assert picture.write(picture.trace_picture(result), path) == "mermaid"
    text = path.read_text()
    check_mermaid(text)
    labels = mermaid_text(text)
    missing = [a for a in hop_addresses(result, runner) if not contains(labels, a)]
    assert not missing, f"the Mermaid lacks {missing}"


def test_markdown_gets_a_mermaid_block(tmp_path):
    result, _ = traced()
    path = tmp_path / "path.md"
    assert picture.write(picture.trace_picture(result), path) == "markdown"
    text = path.read_text()
    assert text.startswith("```mermaid\nflowchart LR\n") and text.endswith("```\n")


def test_quotes_and_backslashes_in_labels_survive_every_format(tmp_path):
    odd = 'say "hi" \\ <b>&amp; #35; |x| [y] {z}'
    pic = picture.Picture(title=[odd], boxes=[picture.Box("a", [odd, odd]), picture.Box("b", ["b"])],
                          arrows=[picture.Arrow("a", "b", [odd])])
    check_mermaid(picture.to_mermaid(pic))
    assert mermaid_text(picture.to_mermaid(pic)).count(odd) == 3  # the box's two lines and the arrow
    if HAS_DOT:
        done = dot_render(picture.to_dot(pic))
        assert done.returncode == 0, done.stderr.decode()
        assert svg_text(done.stdout).count(odd) >= 4  # title, the box's two lines, the arrow


@needs_dot
def test_a_request_that_failed_is_drawn_red_where_it_stopped(tmp_path):
    result, _ = traced(curl_rc=28)
    assert not result.complete
    pic = picture.trace_picture(result)
    bad = [a for a in pic.arrows if a.bad]
    assert bad and bad[0].src == "arp", [(a.src, a.dst) for a in pic.arrows]
    svg = picture.render(picture.to_dot(pic), "svg")
    assert picture.BAD in svg.decode() and "timed out" in svg_text(svg)


@needs_dot
def test_no_arp_answer_is_drawn_red_after_the_lan():
    result, _ = traced(arp=False)
    pic = picture.trace_picture(result)
    assert [(a.src, a.bad) for a in pic.arrows if a.bad] == [("lan", True)]
    assert dot_render(picture.to_dot(pic)).returncode == 0


# --- the whole lab -----------------------------------------------------------------------

def report_for(plan: plan_mod.Plan, announcers: list[str], down: dict[str, str] | None = None) -> dict:
    """A report shaped as `podpath status --json` prints it."""
    down = down or {}
    lb = plan.ingress_service.load_balancer_ip
    return {"lab": plan.lab, "healthy": not down and len(announcers) == 1, "problems": [],
            "announcing": {n.name: [lb] if n.name in announcers else [] for n in plan.nodes},
            "leader": plan.ingress_pods[0].name, "load_balancer_ip": lb,
            "pods": [{"name": p.name, "node": p.node, "ip": p.ip, "pause_pid": 100 + i,
                      "containers": {c.name: down.get(p.name) != c.name for c in p.containers}}
                     for i, p in enumerate(plan.pods)]}


@needs_dot
def test_the_lab_picture_holds_every_namespace_address_and_veth(tmp_path):
    plan = plan_mod.build(keyword_topology(), "graph")
    announcer = plan.nodes[1].name
    path = tmp_path / "lab.svg"
    assert picture.write(picture.lab_picture(plan, report_for(plan, [announcer])), path) == "svg"
    text = svg_text(path.read_bytes())
    wanted = [plan.client_ip, plan.node_network, plan.lan_netns, plan.ingress_service.load_balancer_ip]
    for node in plan.nodes:
        vtep = getattr(node, "vtep", None)  # flannel's vxlan backend routes via flannel.1's address
        wanted += [node.ip, node.gateway, node.netns, f"route {node.pod_cidr} via {vtep.address if vtep else node.ip}"]
    for pod in plan.pods:
        wanted += [pod.ip, pod.host_veth, pod.netns]
    for svc in plan.services:
        wanted.append(f"{svc.cluster_ip}:{svc.ports[0].port}")
    missing = [w for w in wanted if not contains(text, w)]
    assert not missing, f"the lab picture lacks {missing}"
    assert f"announced by {announcer}" in text
    assert "holds the leader lease" in text


def test_the_lab_picture_marks_two_announcers_and_a_stopped_container():
    plan = plan_mod.build(TOPOLOGY, "pic0")
    pod = plan.ingress_pods[1]
    pic = picture.lab_picture(plan, report_for(plan, [plan.nodes[0].name, plan.nodes[1].name],
                                               down={pod.name: "controller"}))
    boxes = {b.id: b for b in pic.all_boxes()}
    assert boxes["metallb"].bad, "two nodes announce the address: the picture must show it"
    assert boxes[f"pod/{pod.name}"].bad and "controller (DOWN)" in "\n".join(boxes[f"pod/{pod.name}"].lines)
    assert sum(1 for a in pic.arrows if a.dst.endswith("/eth1") and a.src == "metallb") == 2


@needs_dot
def test_the_lab_picture_renders_as_png_and_dot(tmp_path):
    plan = plan_mod.build(TOPOLOGY, "pic0")
    report = report_for(plan, [plan.nodes[0].name])
    png = tmp_path / "lab.png"
    picture.write(picture.lab_picture(plan, report), png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    dot = tmp_path / "lab.dot"
    picture.write(picture.lab_picture(plan, report), dot)
    assert dot_render(dot.read_text()).returncode == 0


def test_the_lab_picture_says_the_reports_state_and_why():
    plan = plan_mod.build(TOPOLOGY, "pic0")
    report = report_for(plan, [plan.nodes[0].name, plan.nodes[1].name])
    report.update(state="settling", settling=["MetalLB's election has not converged"])
    assert picture.lab_picture(plan, report).title == [
        "podpath lab pic0: settling: MetalLB's election has not converged"]
    assert "as planned" in picture.lab_picture(plan).title[0]


def test_idle_pods_are_one_box_per_node():
    topo = copy.deepcopy(TOPOLOGY)
    topo["workloads"]["idle_pods_per_node"] = 50
    plan = plan_mod.build(topo, "pic0")
    pic = picture.lab_picture(plan)
    idle = [b for b in pic.all_boxes() if b.id.endswith("/idle")]
    assert len(idle) == len(plan.nodes) and all(b.lines[0].startswith("50 idle pods") for b in idle)
    # the client, the LAN, the MetalLB address, the Services; eth1, cni0, flannel.1 (vxlan) and
    # the idle box per node
    per_node = 3 + (getattr(plan.nodes[0], "vtep", None) is not None)
    assert len(pic.all_boxes()) == 4 + per_node * len(plan.nodes) + len([p for p in plan.pods if p.app != "idle"])


# --- file names --------------------------------------------------------------------------

def test_an_unknown_suffix_is_refused_with_the_ones_podpath_writes():
    with pytest.raises(picture.PictureError) as err:
        picture.output_format("path.jpeg")
    assert "path.jpeg" in str(err.value) and ".svg" in str(err.value) and ".mmd" in str(err.value)


def test_svg_without_graphviz_names_the_package(monkeypatch):
    monkeypatch.setattr(picture.shutil, "which", lambda name: None)
    with pytest.raises(picture.PictureError) as err:
        picture.output_format("lab.svg")
    assert err.value.missing and "apt-get install graphviz" in str(err.value)
    assert picture.output_format("lab.dot") == "dot"  # DOT and Mermaid need nothing
