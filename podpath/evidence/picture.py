"""Pictures for a slide: one request's path (`podpath trace -o`) and the whole lab
(`podpath status --picture`).

Both are built as one small model (boxes, boxes grouped by node, arrows between boxes)
and written by one DOT generator; Graphviz's `dot` (Debian's graphviz package) turns the
DOT into SVG or PNG. The same model is also written as Mermaid, for pages that draw it
themselves (GitHub, documentation sites).

Every identifier in the DOT is quoted, so a name that is a DOT keyword (`node`, `edge`,
`graph`, `subgraph`) is just a name; every label is escaped for its place (HTML-like labels
for boxes, quoted strings for arrows).
"""
from __future__ import annotations

import html
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podpath.model import kubeproxy
from podpath.model.plan import LAN_BRIDGE, Node, Plan, Pod
from podpath.evidence.trace import Trace

# Box styles: fill colour, border colour.
STYLES = {
    "outside": ("#eeeeee", "#777777"),  # the client: the student's laptop
    "bridge": ("#e3f2fd", "#1e88e5"),  # a bridge: the LAN, cni0
    "link": ("#ffffff", "#546e7a"),  # a node's own interface
    "nat": ("#fff3e0", "#ef6c00"),  # kube-proxy's rules
    "pod": ("#e8f5e9", "#2e7d32"),
    "address": ("#f3e5f5", "#8e24aa"),  # the MetalLB address
    "note": ("#fafafa", "#9e9e9e"),
}
BAD = "#c62828"
FONT = "Helvetica,Arial,sans-serif"


@dataclass
class Box:
    id: str
    lines: list[str]  # the first is the box's title
    style: str = "link"
    bad: bool = False


@dataclass
class Group:
    """Boxes that live in one place: a node's namespace."""
    id: str
    title: list[str]
    boxes: list[Box] = field(default_factory=list)


@dataclass
class Arrow:
    src: str
    dst: str
    lines: list[str]  # what crosses the arrow and the evidence for it
    bad: bool = False
    dashed: bool = False  # not a packet of the request: an announcement, a link of the wiring
    leftward: bool = False  # in a row, drawn right to left (so that a path can snake down a slide)


@dataclass
class Picture:
    title: list[str]
    boxes: list[Box] = field(default_factory=list)  # outside every group
    groups: list[Group] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    direction: str = "LR"  # Graphviz's rankdir: the way the arrows mostly go
    rows: list[list[str]] = field(default_factory=list)  # boxes drawn side by side (one rank)

    def all_boxes(self) -> list[Box]:
        return self.boxes + [b for g in self.groups for b in g.boxes]


class PictureError(Exception):
    """A picture that cannot be written; `missing` names a tool the user can install."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


# --- DOT ---------------------------------------------------------------------------------

def _q(text: str) -> str:
    """A DOT quoted string: an identifier that is never a keyword, or a plain label."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _text(lines: list[str], end: str = "") -> str:
    """A quoted label of LINES, each followed by END when given (else centred, one per line).
    Graphviz reads &name; in any label as a character, so & itself is written as &amp;."""
    escaped = [_q(line.replace("&", "&amp;"))[1:-1] for line in lines]
    return '"' + ("".join(e + end for e in escaped) if end else "\\n".join(escaped)) + '"'


def _title(lines: list[str]) -> str:
    """The picture's title, each line left-justified (DOT's \\l ends such a line)."""
    return _text(lines, "\\l")


def _html_label(lines: list[str]) -> str:
    """An HTML-like label: the title in bold, each line left-aligned."""
    title, *rest = [html.escape(line, quote=True) for line in lines]
    body = f"<B>{title}</B>" + "".join(f'<BR ALIGN="LEFT"/>{line}' for line in rest)
    return f'<{body}<BR ALIGN="LEFT"/>>'


def _box_dot(box: Box, indent: str) -> str:
    fill, border = STYLES[box.style]
    extra = f', color="{BAD}", penwidth=2.5' if box.bad else f', color="{border}"'
    return f"{indent}{_q(box.id)} [label={_html_label(box.lines)}, fillcolor=\"{fill}\"{extra}];"


def to_dot(picture: Picture) -> str:
    lines = [
        f"digraph {_q('podpath')} {{",
        # newrank: a row may hold boxes of different groups
        f'  graph [rankdir={picture.direction}, newrank=true, fontname="{FONT}", fontsize=13, labelloc=t, '
        # pad: Graphviz leaves the label of an arrow inside a row partly outside its own bounding box
        f'labeljust=l, nodesep=0.35, ranksep=0.5, pad=0.3, label={_title(picture.title)}];',
        f'  node [shape=box, style="rounded,filled", fontname="{FONT}", fontsize=10, margin="0.12,0.06"];',
        f'  edge [fontname="{FONT}", fontsize=9, color="#37474f"];',
    ]
    lines += [_box_dot(box, "  ") for box in picture.boxes]
    for group in picture.groups:
        lines.append(f"  subgraph {_q('cluster_' + group.id)} {{")
        lines.append(f'    graph [label={_html_label(group.title)}, style="rounded,filled", fillcolor="#f5f7fa", '
                     'color="#90a4ae", fontsize=11];')
        lines += [_box_dot(box, "    ") for box in group.boxes]
        lines.append("  }")
    drawn = {box.id for box in picture.all_boxes()}
    for row in picture.rows:
        row = [box for box in row if box in drawn]  # a row may name boxes a broken path never reached
        if len(row) > 1:
            lines.append("  { rank=same; " + " ".join(_q(box) + ";" for box in row) + " }")
    for arrow in picture.arrows:
        attrs = [f"label={_text(arrow.lines)}"]
        if arrow.bad:
            attrs += [f'color="{BAD}"', f'fontcolor="{BAD}"', "penwidth=2"]
        if arrow.dashed:
            attrs.append("style=dashed")
        src, dst = arrow.src, arrow.dst
        if arrow.leftward:  # Graphviz puts a row's tail left of its head: swap them, point back
            src, dst = dst, src
            attrs.append("dir=back")
        lines.append(f"  {_q(src)} -> {_q(dst)} [{', '.join(attrs)}];")
    return "\n".join(lines + ["}"]) + "\n"


# --- Mermaid -----------------------------------------------------------------------------

# Mermaid reads #NNN; as a character; these would end a label or start markup.
_MERMAID_CODES = {c: f"#{ord(c)};" for c in '"#&<>|[]{}'}


def _m(text: str) -> str:
    return "".join(_MERMAID_CODES.get(c, c) for c in text)


def _m_label(lines: list[str]) -> str:
    return '"' + "<br/>".join(_m(line) for line in lines) + '"'


def to_mermaid(picture: Picture) -> str:
    """The picture as a Mermaid flowchart (identifiers n0, n1, ... so that no name of the lab
    can be taken for Mermaid's own words, such as `end`)."""
    ids = {box.id: f"n{i}" for i, box in enumerate(picture.all_boxes())}
    lines = ["flowchart LR", f"  %% {' / '.join(picture.title)}"]
    lines += [f"  {ids[b.id]}[{_m_label(b.lines)}]" for b in picture.boxes]
    for i, group in enumerate(picture.groups):
        lines.append(f"  subgraph g{i} [{_m_label(group.title)}]")
        lines += [f"    {ids[b.id]}[{_m_label(b.lines)}]" for b in group.boxes]
        lines.append("  end")
    for arrow in picture.arrows:
        link = "-.->" if arrow.dashed else "-->"
        lines.append(f"  {ids[arrow.src]} {link}|{_m_label(arrow.lines)}| {ids[arrow.dst]}")
    lines.append(f"  classDef bad stroke:{BAD},stroke-width:3px")
    bad = [ids[b.id] for b in picture.all_boxes() if b.bad]
    if bad:
        lines.append(f"  class {','.join(bad)} bad")
    for i, arrow in enumerate(picture.arrows):
        if arrow.bad:
            lines.append(f"  linkStyle {i} stroke:{BAD},stroke-width:2px")
    return "\n".join(lines) + "\n"


# --- files -------------------------------------------------------------------------------

FORMATS = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png", ".mmd": "mermaid", ".md": "markdown"}


def output_format(path: str | Path) -> str:
    """The format PATH's suffix names, checked before any work is done: a suffix podpath does
    not write, or SVG/PNG without Graphviz, is an error that says what to do."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PictureError(f"{path}: podpath does not write {path.suffix or 'files without a suffix'}; name the "
                           f"picture with one of {', '.join(FORMATS)}")
    if fmt in ("svg", "png") and shutil.which("dot") is None:
        raise PictureError(f"{path}: drawing {fmt.upper()} needs Graphviz's dot: install it with apt-get install "
                           "graphviz (or write .dot or .mmd and draw it elsewhere)", missing=True)
    return fmt


def render(dot: str, fmt: str) -> bytes:
    """DOT text drawn by Graphviz as FMT (svg, png)."""
    done = subprocess.run(["dot", f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=60)
    if done.returncode != 0:  # podpath wrote DOT that Graphviz refuses: a bug of this module
        raise PictureError(f"Graphviz refused podpath's DOT: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def write(picture: Picture, path: str | Path) -> str:
    """Write PICTURE to PATH in the format its suffix names; returns that format."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "dot":
        data = to_dot(picture).encode()
    elif fmt == "mermaid":
        data = to_mermaid(picture).encode()
    elif fmt == "markdown":
        data = ("```mermaid\n" + to_mermaid(picture) + "```\n").encode()
    else:
        data = render(to_dot(picture), fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return fmt


# --- one request's path ------------------------------------------------------------------

def _pod_lines(pod: Pod, plan: Plan, port: int | None = None) -> list[str]:
    node = plan.node(pod.node)
    return [pod.name, f"eth0 {pod.ip}/{pod.prefixlen}" + (f", port {port}" if port else ""),
            f"netns {pod.netns}", f"{pod.host_veth} on cni0 {node.gateway}"]


def _vtep(node: Node):
    """NODE's end of flannel's VXLAN tunnel, or None (host-gw, or a plan without flannel)."""
    return getattr(node, "vtep", None)


def _route(target: Node) -> str:
    """The route another node has to TARGET's pod subnet."""
    vtep = _vtep(target)
    if vtep:
        return f"route {target.pod_cidr} via {vtep.address} (flannel.1)"
    return f"route {target.pod_cidr} via {target.ip}"


def _via(plan: Plan, src_node: str, dst: Pod) -> str:
    """How a packet gets from SRC_NODE to pod DST: its own bridge, a VXLAN tunnel, or a route
    over the LAN."""
    if src_node == dst.node:
        return f"through cni0 of {src_node}"
    target = plan.node(dst.node)
    if _vtep(target):
        return f"{_route(target)}, VXLAN over {LAN_BRIDGE} to {target.ip}"
    return f"over {LAN_BRIDGE}: {_route(target)}"


def trace_picture(result: Trace, plan: Plan | None = None) -> Picture:
    """The path of RESULT's request: client, LAN, the node that answered ARP, its DNAT to a
    controller pod (and the source NAT), the proxying to a backend pod; a hop that failed is
    drawn in red, and the drawing stops where the request stopped."""
    plan = plan or result.plan
    if plan is None:
        raise PictureError("this trace has no plan to draw it with")
    svc = plan.ingress_service
    port = svc.ports[0]
    lb = svc.load_balancer_ip
    hops = result.hops + [None] * (5 - len(result.hops))  # the hops the trace did not reach
    ok = [bool(h and h.ok) for h in hops]
    answered = f"HTTP {result.status}" if result.status else f"no answer ({result.error or 'stopped'})"
    pic = Picture(title=[f"podpath trace, lab {plan.lab}: curl -H 'Host: {result.host}' {result.url}",
                         f"{answered}; {'complete' if result.complete else 'incomplete: red marks the hop that broke'}"],
                  # three rows for a slide, read as a snake: the LAN left to right, the node that
                  # answered ARP right to left, the pods left to right
                  direction="TB", rows=[["client", "lan"], ["arp", "nat", "noarp"], ["controller", "backend", "stopped"]])
    pic.boxes.append(Box("client", ["client", f"netns {plan.client_netns}",
                                    f"eth0 {plan.client_ip}/{plan.node_prefixlen}"], "outside"))
    pic.boxes.append(Box("lan", ["LAN", f"bridge {LAN_BRIDGE} in netns {plan.lan_netns}", plan.node_network],
                         "bridge"))
    pic.arrows.append(Arrow("client", "lan", [f"TCP {plan.client_ip}:{result.client_port or '?'} → {lb}:{port.port}",
                                              f"Host: {result.host}"]))
    groups: dict[str, Group] = {}

    def group(node_name: str) -> Group:
        if node_name not in groups:
            node = plan.node(node_name)
            groups[node_name] = Group(node_name, [f"node {node.name} ({node.role})", f"netns {node.netns}"])
            pic.groups.append(groups[node_name])
        return groups[node_name]

    if result.node is None:
        pic.boxes.append(Box("noarp", ["no node answered ARP", f"for {lb}"], "note", bad=True))
        pic.arrows.append(Arrow("lan", "noarp", ["1 ARP: who-has " + lb, f"answer: {result.mac or 'none'}"], bad=True))
        return pic
    arp = plan.node(result.node)
    group(arp.name).boxes.append(Box("arp", [f"eth1 {arp.ip}/{arp.prefixlen}", f"MAC {result.mac}",
                                             f"answers ARP for {lb} (MetalLB)"], "link", bad=not ok[0]))
    pic.arrows.append(Arrow("lan", "arp", [f"1 ARP: {lb} is-at {result.mac}",
                                           "evidence: the client's neighbour table"], bad=not ok[0]))
    if result.status is None:
        pic.boxes.append(Box("stopped", ["the request stopped here", result.error or "no answer"], "note", bad=True))
        pic.arrows.append(Arrow("arp", "stopped", ["2 DNAT: no answer came back"], bad=True))
        return pic
    controller = next((p for p in plan.pods if result.controller_ip and p.ip == result.controller_ip), None)
    nft = result.mode == "nftables"
    sep = result.sep_chain or ("endpoint-?" if nft else "KUBE-SEP-?")
    chains = result.chains[:2] or [kubeproxy.ext_chain(svc, port), kubeproxy.svc_chain(svc, port)]
    snat = result.controller_saw not in (None, plan.client_ip)
    nat = ([f"nftables table ip kube-proxy of {arp.name}", "nat-prerouting → services → @service-ips"] if nft
           else [f"iptables nat table of {arp.name}", "PREROUTING → KUBE-SERVICES"])
    nat += [f"→ {chain}" for chain in chains] + [f"→ {sep}",
                                                 f"DNAT {lb}:{port.port} → {result.controller_ip or '?'}:{port.target_port}"]
    if snat:
        nat += ["nat-postrouting → masquerading" if nft else "POSTROUTING → KUBE-POSTROUTING",
                f"{'masquerade' if nft else 'MASQUERADE'} (source NAT) {plan.client_ip} → {result.controller_saw}"]
    group(arp.name).boxes.append(Box("nat", nat, "nat", bad=not ok[1]))
    pic.arrows.append(Arrow("arp", "nat", [f"2 DNAT {lb}:{port.port} → {result.controller_ip or '?'}:{port.target_port}",
                                           f"evidence: conntrack on {arp.name}, sport {result.client_port or '?'}"],
                            bad=not ok[1], leftward=True))
    if controller is None:
        pic.boxes.append(Box("stopped", ["no controller pod has", result.controller_ip or "the DNAT's address"],
                             "note", bad=True))
        pic.arrows.append(Arrow("nat", "stopped", [f"no {'endpoint' if nft else 'KUBE-SEP'} chain matched"], bad=True))
        return pic
    # the edge's pod: an ingress controller, or a data-plane pod of the Gateway (gateway-api)
    gw = plan.gateway
    header, role = ("X-Gateway-Pod", "data-plane pod") if gw else ("X-Ingress-Controller", "controller")
    group(controller.node).boxes.append(Box("controller", _pod_lines(controller, plan, port.target_port) +
                                            [f"served: {header} {result.controller}"], "pod",
                                            bad=not ok[2]))
    source = "5 source NAT: " if snat else "5 no source NAT: "
    step = f"3 Gateway {gw.name}, HTTPRoute {gw.route}" if gw else "3 controller"
    pic.arrows.append(Arrow("nat", "controller", [
        f"{step}: {result.controller_saw or '?'} → {controller.ip}:{port.target_port}",
        _via(plan, arp.name, controller),
        source + f"the {role} saw {result.controller_saw or '?'}", "evidence: X-Forwarded-For"],
        bad=not (ok[2] and ok[4])))
    backend = next((p for p in plan.pods if p.name == result.backend), None)
    if backend is None:
        pic.boxes.append(Box("stopped", ["no backend answered", answered], "note", bad=True))
        pic.arrows.append(Arrow("controller", "stopped", ["4 backend: proxy_pass"], bad=True))
        return pic
    echo = plan.echo_service
    group(backend.node).boxes.append(Box("backend", _pod_lines(backend, plan, echo.ports[0].target_port) +
                                         [f"answered {answered}"], "pod", bad=not ok[3]))
    pic.arrows.append(Arrow("controller", "backend", [
        f"4 backend: proxy_pass to {result.backend_ip or '?'}:{echo.ports[0].target_port}",
        f"(upstream {echo.namespace}{'_' if gw else '-'}{echo.name}{'_' if gw else '-'}{echo.ports[0].port})",
        _via(plan, controller.node, backend),
        f"5 a new connection: the backend saw {result.backend_saw or '?'}", "evidence: the echo's answer"],
        bad=not (ok[3] and ok[4])))
    return pic


# --- the whole lab -----------------------------------------------------------------------

def lab_picture(plan: Plan, report: dict[str, Any] | None = None) -> Picture:
    """Every namespace of PLAN's lab and how it is wired: the client, the LAN, each node with
    its eth1, its routes, cni0 and its pods (their veths), the Services kube-proxy serves and
    the MetalLB address with the node that announces it. REPORT (`podpath status --json`'s
    report) adds what runs: who announces, the leader, what is down; without it, the plan."""
    report = report or {}
    announcing = {n: a for n, a in (report.get("announcing") or {}).items() if a}
    leader = report.get("leader")
    running = {p["name"]: p for p in report.get("pods", [])}
    svc = plan.ingress_service
    lb = svc.load_balancer_ip
    # the report's state (healthy, settling, NOT healthy) and its first reasons
    state = report.get("state") or ("healthy" if report.get("healthy") else "NOT healthy")
    reasons = (report.get("problems") or []) + (report.get("settling") or [])
    state = "as planned (no report of what runs)" if not report else state + (
        ": " + "; ".join(reasons[:2]) if reasons else "")
    # left to right: the outside, the LAN and its MetalLB address, then a node per band
    pic = Picture(title=[f"podpath lab {plan.lab}: {state}"], rows=[["client", "services"], ["lan", "metallb"]])
    pic.boxes.append(Box("client", ["client", f"netns {plan.client_netns}",
                                    f"eth0 {plan.client_ip}/{plan.node_prefixlen}"], "outside"))
    pic.boxes.append(Box("lan", ["LAN", f"bridge {LAN_BRIDGE} in netns {plan.lan_netns}", plan.node_network],
                         "bridge"))
    pic.arrows.append(Arrow("client", "lan", [f"veth: eth0 ↔ port {plan.client_name}"], dashed=True))
    announcers = [n for n in announcing if lb in announcing[n]]
    pic.boxes.append(Box("metallb", [f"MetalLB address {lb}", f"Service {svc.namespace}/{svc.name} (LoadBalancer)",
                                     f"announced by {', '.join(announcers) or 'nobody'}"], "address",
                         bad=bool(report) and len(announcers) != 1))
    services = ["Services (kube-proxy's rules on every node)"]
    for s in plan.services:
        where = f"{s.cluster_ip}:{s.ports[0].port}"
        extra = f", NodePort {s.ports[0].node_port}" if s.ports[0].node_port else ""
        targets = f"{len(s.pods)} endpoints, port {s.ports[0].target_port}" if s.pods else "no endpoints"
        services.append(f"{s.namespace}/{s.name} {where}{extra} → {targets}")
    pic.boxes.append(Box("services", services, "note"))
    for node in plan.nodes:
        group = Group(node.name, [f"node {node.name} ({node.role})", f"netns {node.netns}"])
        pic.groups.append(group)
        eth1, cni0 = f"{node.name}/eth1", f"{node.name}/cni0"
        routes = [_route(o) for o in plan.nodes if o is not node]
        vtep = _vtep(node)
        group.boxes.append(Box(eth1, [f"eth1 {node.ip}/{node.prefixlen}"] + ([] if vtep else routes), "link"))
        prefix = ipaddress.IPv4Network(node.pod_cidr).prefixlen
        group.boxes.append(Box(cni0, [f"cni0 {node.gateway}/{prefix}", "bridge of the node's pods"], "bridge"))
        pic.arrows.append(Arrow("lan", eth1, [f"veth: port {node.name} ↔ eth1"], dashed=True))
        if vtep:  # flannel's vxlan backend: other nodes' pods are behind flannel.1
            tunnel = f"{node.name}/flannel.1"
            group.boxes.append(Box(tunnel, [f"flannel.1 {vtep.address}/32 (VXLAN)", f"MAC {vtep.mac}"] + routes,
                                   "link"))
            pic.arrows.append(Arrow(eth1, tunnel, ["VXLAN in UDP"], dashed=True))
            pic.arrows.append(Arrow(tunnel, cni0, ["routed (ip_forward)"], dashed=True))
        else:
            pic.arrows.append(Arrow(eth1, cni0, ["routed (ip_forward)"], dashed=True))
        if node.name in announcers:  # drawn from the address, so that it stays by the LAN
            pic.arrows.append(Arrow("metallb", eth1, [f"announced by {node.name}:", f"its eth1 answers ARP for {lb}"],
                                    bad=len(announcers) != 1))
        pods = plan.pods_on(node.name)
        idle = [p for p in pods if p.app == "idle"]
        for pod in (p for p in pods if p.app != "idle"):
            lines = [pod.name, f"eth0 {pod.ip}/{pod.prefixlen}", f"netns {pod.netns}"]
            seen = running.get(pod.name)
            down = []
            if seen is not None:
                down = [c for c, up in (seen.get("containers") or {}).items() if not up]
                if not seen.get("pause_pid"):
                    down.insert(0, "pause")
            lines.append("containers: " + ", ".join(c.name + (" (DOWN)" if c.name in down else "")
                                                    for c in pod.containers))
            if "pause" in down:
                lines.append("pause process: DOWN")
            if pod.name == leader:
                lines.append("holds the leader lease")
            group.boxes.append(Box(f"pod/{pod.name}", lines, "pod", bad=bool(down)))
            pic.arrows.append(Arrow(f"{node.name}/cni0", f"pod/{pod.name}", [f"veth {pod.host_veth}"], dashed=True))
        if idle:  # scale runs: hundreds of sandboxes, drawn as one box per node
            group.boxes.append(Box(f"{node.name}/idle", [f"{len(idle)} idle pods (a sandbox each)",
                                                         f"{idle[0].ip} … {idle[-1].ip}"], "pod"))
            pic.arrows.append(Arrow(f"{node.name}/cni0", f"{node.name}/idle", ["a veth each"], dashed=True))
    return pic
