"""Scenarios 5-11 and 18: reachability, hop by hop, with real traffic.

Every check sends real requests from a pod, a node or the client and looks at who
answered: the echo pods answer "pod=NAME ip=IP node=NODE client=SOURCE forwarded_for=...".
Where kube-proxy picks an endpoint at random, a check repeats until every endpoint has
answered, up to MAX_TRIES requests.
"""
import ipaddress

import pytest

from podpath.evidence.lab import CONTROLLER_HEADER
from podpath.model.gateway import GATEWAY_HEADER
from podpath.evidence.scenarios import MAX_TRIES


@pytest.fixture
def neighbours_forgotten(lab, pod, node):
    """After the last node's check of POD, let the lab forget what the checks left behind
    where it is shared and could fill up: on a netns lab, the neighbour entries between the
    pod and its node (see NetnsLab.forget_traffic)."""
    yield
    if node == lab.node_names()[-1]:
        lab.forget_traffic(pod)


def _url(ip, port, path="/"):
    return f"http://{ip}:{port}{path}"


def _edge_path(lab):
    """The path the edge routes to the backend: /, or the HTTPRoute's prefix with the gateway edge."""
    return lab.plan.gateway.path_prefix if lab.plan.gateway else "/"


def _multi(lab):
    pods = lab.pods_of("multi-container")
    assert pods, "the multi-container pod is not running: it is the client of this check"
    return pods[0]


def _route_evidence(lab, a, b):
    """Assert A's node routes B's pod subnet to B's node; the message names the hop."""
    route = lab.route_get(a.node, b.ip)
    hops = lab.pod_subnet_next_hops(b.node)
    shown = lab.node_command(a.node, ["ip", "route", "get", b.ip])
    assert route.get("gateway") in hops, (
        f"{a.node} has no route to pod {b.name}'s subnet via {b.node} ({sorted(hops)}): pod {b.name} on {b.node} "
        f"unreachable from pod {a.name} on {a.node}; {shown} says {route or 'unreachable'}")
    if route.get("dev") == "flannel.1":
        mac, destination = lab.vxlan_destination(a.node, route["gateway"])
        target = lab.node_ip(b.node)
        assert mac and destination == target, (
            f"{a.node}: flannel.1 does not send pod {b.name}'s subnet to {b.node} ({target}): neighbour "
            f"{route['gateway']} is {mac or 'unknown'}, its VXLAN destination {destination or 'unknown'} "
            f"({lab.node_command(a.node, ['bridge', 'fdb', 'show', 'dev', 'flannel.1'])})")


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_the_same_node(lab):
    pairs = [(a, b) for a in lab.clients() for b in lab.pods_of("echo") if a.name != b.name and a.node == b.node]
    if not pairs:
        pytest.skip("no client pod shares a node with an echo pod in this placement")
    a, b = pairs[0]
    answer = lab.pod_get(a, _url(b.ip, b.port))
    assert answer.status == 200, (f"pod {b.name} ({b.ip}) unreachable from pod {a.name}, both on {a.node}: "
                                  f"{answer.error}")
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_another_node(lab, echo_pod):
    b = echo_pod
    others = [a for a in lab.clients() if a.node != b.node]
    if not others:
        pytest.skip(f"no client pod runs on a node other than {b.node}")
    a = others[0]
    _route_evidence(lab, a, b)
    answer = lab.pod_get(a, _url(b.ip, b.port))
    assert answer.status == 200, f"pod {b.name} on {b.node} unreachable from pod {a.name} on {a.node}: {answer.error}"
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(6)
def test_node_reaches_its_pods(lab, served_pod):
    pod = served_pod
    if not pod.port:
        pytest.skip(f"pod {pod.name} has no port to ask")
    answer = lab.node_get(pod.node, pod.ip, pod.port)
    assert answer.status is not None, (f"node {pod.node} cannot reach its pod {pod.name} ({pod.ip}:{pod.port}): "
                                       f"{answer.error}")


@pytest.mark.scenario(6)
def test_node_reaches_a_pod_on_another_node_through_the_tunnel(lab, echo_pod):
    """A node's own packet to another node's pod takes the hop between nodes (flannel.1 with
    vxlan, the other node with host-gw) and keeps the source that hop gives it: flannel.1's
    address (the node's pod subnet's network address) or the node's own."""
    b = echo_pod
    node = next((n for n in lab.node_names() if n != b.node), None)
    if node is None:
        pytest.skip(f"no node other than {b.node}")
    route = lab.route_get(node, b.ip)
    hops = lab.pod_subnet_next_hops(b.node)
    shown = lab.node_command(node, ["ip", "route", "get", b.ip])
    assert route.get("gateway") in hops, (f"{node} does not route pod {b.name}'s subnet via {b.node} "
                                          f"({sorted(hops)}): {shown} says {route or 'unreachable'}")
    answer = lab.node_get(node, b.ip, b.port)
    assert answer.status == 200, f"node {node} -> pod {b.name} ({b.ip}) on {b.node}: {answer.error}"
    assert answer.field("client") == route.get("prefsrc"), (
        f"pod {b.name} saw node {node} as {answer.field('client')}, not {route.get('prefsrc')}, the source of "
        f"{node}'s route via {route.get('dev')} ({shown})")


@pytest.mark.scenario(6)
def test_pod_reaches_every_node(lab, pod, node, neighbours_forgotten):
    ok, evidence = lab.pod_reaches_node(pod, node)
    assert ok, f"pod {pod} gets no answer from node {node} ({lab.node_ip(node)}): {evidence}"


@pytest.mark.scenario(7)
def test_pod_to_cluster_ip_reaches_every_endpoint(lab):
    svc = lab.service("echo")
    endpoints = set(svc.endpoints)
    running = {p.name for p in lab.pods_of("echo")}
    assert endpoints == running, (f"Service {svc.name}'s ready endpoints {sorted(endpoints)} are not its running "
                                  f"pods {sorted(running)}")
    client = _multi(lab)
    seen, errors = lab.answered_by(client, _url(svc.cluster_ip, svc.port), endpoints)
    assert not errors, f"pod {client} -> {svc.name} {svc.cluster_ip}: {len(errors)} failed requests: {errors[:3]}"
    missing = sorted(endpoints - set(seen))
    assert not missing, (f"Service {svc.name} ({svc.cluster_ip}) never sent pod {client.name} to {missing} in "
                         f"{MAX_TRIES} requests; answered: {seen}")


@pytest.mark.scenario(8)
def test_node_to_cluster_ip(lab, node):
    svc = lab.service("echo")
    answer = lab.node_get(node, svc.cluster_ip, svc.port)
    assert answer.status == 200, f"node {node} -> Service {svc.name} {svc.cluster_ip}: {answer.error}"
    assert answer.field("pod") in svc.endpoints, (f"node {node}: {svc.cluster_ip} was answered by "
                                                  f"{answer.field('pod')}, not an endpoint of {svc.name}")


@pytest.mark.scenario(9)
def test_pod_reaches_itself_through_its_service(lab, echo_pod):
    svc = lab.service("echo")
    seen, errors = lab.answered_by(echo_pod, _url(svc.cluster_ip, svc.port), {echo_pod.name})
    assert echo_pod.name in seen, (
        f"pod {echo_pod} never reached itself through Service {svc.name} in {MAX_TRIES} requests (hairpin on its "
        f"cni0 port); answered: {seen}; errors: {errors[:3]}")


@pytest.mark.scenario(10)
def test_node_port_answers_on_every_node(lab, node):
    svc = lab.service("ingress")
    ip = lab.node_ip(node)
    answer = lab.client_get(_url(ip, svc.node_port, _edge_path(lab)), host=lab.ingress_host())
    assert answer.status == 200, (f"client -> NodePort {ip}:{svc.node_port} on {node}: "
                                  f"{answer.error or answer.status}")


@pytest.mark.scenario(10)
def test_node_port_forwards_to_controllers_on_other_nodes(lab, node):
    svc = lab.service("ingress")
    if svc.policy != "Cluster":
        pytest.skip("externalTrafficPolicy Local: a node forwards only to its own controllers")
    # the edge's pods: the ingress controllers, or the Gateway's data plane (which names itself in its own header)
    header = GATEWAY_HEADER if lab.plan.gateway else CONTROLLER_HEADER
    remote = {p.name for p in lab.pods_of(lab.plan.edge_app) if p.node != node}
    if not remote:
        pytest.skip(f"no controller runs on a node other than {node}")
    served = set()
    for _ in range(MAX_TRIES):
        answer = lab.client_get(_url(lab.node_ip(node), svc.node_port, _edge_path(lab)), host=lab.ingress_host())
        served.add(answer.headers.get(header))
        if remote & served or answer.status is None:
            break
    assert remote & served, (f"NodePort on {node} was only served by {sorted(filter(None, served))}; "
                             f"a controller on another node ({sorted(remote)}) never answered in {MAX_TRIES} requests")


@pytest.mark.scenario(11)
def test_service_without_endpoints_rejects(lab):
    empty = lab.service("empty")
    client = _multi(lab)
    answer = lab.pod_get(client, _url(empty.cluster_ip, empty.port), timeout=3)
    assert answer.rc == 7, (f"Service {empty.name} ({empty.cluster_ip}) has no endpoints and should be refused at once "
                            f"(curl exit 7, kube-proxy's REJECT); pod {client.name} got exit {answer.rc} "
                            f"{answer.error or answer.status}")


@pytest.mark.scenario(18)
def test_source_ip_is_kept_from_pod_to_cluster_ip(lab):
    svc = lab.service("echo")
    client = _multi(lab)
    answer = lab.pod_get(client, _url(svc.cluster_ip, svc.port))
    assert answer.status == 200, f"pod {client} -> {svc.cluster_ip}: {answer.error}"
    if answer.field("pod") == client.name:
        pytest.skip("the request went to the client pod itself (hairpin is masqueraded)")
    assert answer.field("client") == client.ip, (
        f"{answer.field('pod')} saw source {answer.field('client')}, not pod {client.name}'s own {client.ip}: "
        "pod -> ClusterIP traffic must not be SNATed")


@pytest.mark.scenario(18)
def test_source_ip_through_the_load_balancer_follows_the_traffic_policy(lab):
    svc = lab.service("ingress")
    address = svc.load_balancer_ip
    assert address, f"Service {svc.name} has no load balancer address: MetalLB has not assigned one"
    answer = lab.client_get(_url(address, svc.port, _edge_path(lab)), host=lab.ingress_host())
    assert answer.status == 200, f"client -> {address}: {answer.error or answer.status}"
    seen = answer.field("forwarded_for")
    client_ip = lab.client_address(address)
    if svc.policy == "Cluster":
        node_side = lab.node_side_addresses()
        assert seen != client_ip and seen in node_side, (
            f"the controller saw source {seen}; with externalTrafficPolicy Cluster it should be SNATed to a node "
            f"address ({sorted(node_side)}), not the client's {client_ip}")
    else:
        assert seen == client_ip, f"the controller saw {seen}; with policy Local it should see the client {client_ip}"
    backend_saw = answer.field("client") or ""
    in_pods = backend_saw.count(".") == 3 and ipaddress.ip_address(backend_saw) in ipaddress.ip_network(
        lab.pod_network())
    assert in_pods, f"the backend should see the controller's pod IP, saw {backend_saw or 'nothing'}"
