"""Scenarios 5-11 and 18: reachability, hop by hop, with real traffic.

Every check sends real requests (curl, ping) from inside the lab's namespaces and
looks at who answered. Where kube-proxy picks an endpoint at random, the check
repeats until every endpoint has answered, up to MAX_TRIES times.
"""
import ipaddress

import pytest

from podpath.evidence.scenarios import FAILURES_ENOUGH, MAX_TRIES

pytestmark = pytest.mark.netns_lab


@pytest.fixture
def neighbours_forgotten(lab, pod):
    """After a check of POD, on a lab big enough to fill the host's neighbour table, delete
    the two entries the check made. That table and its limit (gc_thresh3) are shared by every
    namespace on the host, and an entry stays REACHABLE, which the kernel cannot reclaim, for
    15 to 45 s: a verifier that checks about 40 pods a second would fill it near 1,000 pods,
    and its pings would fail for want of room, not for a fault of the lab."""
    yield
    if lab.fills_neighbour_table():
        lab.forget_neighbours(pod)


def _url(ip, port):
    return f"http://{ip}:{port}/"


def _pairs(lab, same_node):
    """(client pod, echo pod) pairs: the echo backends say who they are."""
    targets = [p for p in lab.pods() if p.app == "echo"]
    return [(a, b) for a in lab.pods() for b in targets if a is not b and (a.node == b.node) == same_node]


def _first_pair(lab, same_node):
    pairs = _pairs(lab, same_node)
    if not pairs:
        pytest.skip("the topology has no two pods " + ("on one node" if same_node else "on different nodes"))
    return pairs[0]


def _answered(lab, netns, url, expect_pods, host=None):
    """Ask URL until every pod of EXPECT_PODS has answered (or MAX_TRIES); returns {pod: count}, errors."""
    seen, errors = {}, []
    for _ in range(MAX_TRIES):
        answer = lab.curl(netns, url, host=host)
        if answer.status != 200:
            errors.append(answer.error or f"HTTP {answer.status}")
            if len(errors) >= FAILURES_ENOUGH:
                break
            continue
        name = answer.field("pod")
        seen[name] = seen.get(name, 0) + 1
        if set(expect_pods) <= set(seen):
            break
    return seen, errors


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_the_same_node(lab):
    a, b = _first_pair(lab, same_node=True)
    answer = lab.curl(a.netns, _url(b.ip, b.port))
    assert answer.status == 200, (f"pod {b.name} ({b.ip}) unreachable from pod {a.name}, both on {a.node}: "
                                  f"{answer.error}")
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_another_node(lab):
    a, b = _first_pair(lab, same_node=False)
    answer = lab.curl(a.netns, _url(b.ip, b.port))
    route = lab.route_get(lab.node_netns(a.node), b.ip) or {}
    b_node = lab.plan.node(b.node)
    assert route.get("gateway") == b_node.ip, (
        f"{a.node} has no route to {b_node.pod_cidr} via {b_node.ip} (pod {b.name} on {b.node}); "
        f"route get {b.ip} says {route or 'unreachable'}")
    assert answer.status == 200, (f"pod {b.name} on {b.node} unreachable from pod {a.name} on {a.node}: "
                                  f"{answer.error}")
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(6)
def test_node_reaches_its_pods(lab, pod):
    if not pod.port:
        pytest.skip(f"pod {pod.name} has no port to ask")
    answer = lab.curl(lab.node_netns(pod.node), _url(pod.ip, pod.port))
    assert answer.status is not None, f"node {pod.node} cannot reach its pod {pod.name} ({pod.ip}): {answer.error}"


@pytest.mark.scenario(6)
def test_pod_reaches_its_node_and_the_other_nodes(lab, pod, neighbours_forgotten):
    for node in lab.plan.nodes:
        out = lab.ping(pod.netns, node.ip)
        assert out.ok, f"pod {pod.name} on {pod.node} gets no ping answer from node {node.name} ({node.ip})"


def _echo(lab):
    return lab.plan.service(lab.topology["workloads"]["echo"]["name"])


@pytest.mark.scenario(7)
def test_pod_to_cluster_ip_reaches_every_endpoint(lab):
    svc = _echo(lab)
    client = next(p for p in lab.pods() if p.app == "multi-container")
    seen, errors = _answered(lab, client.netns, _url(svc.cluster_ip, svc.ports[0].port), svc.endpoints)
    assert not errors, f"pod {client.name} -> {svc.name} {svc.cluster_ip}: {len(errors)} failed requests: {errors[:3]}"
    missing = sorted(set(svc.endpoints) - set(seen))
    assert not missing, (f"Service {svc.name} ({svc.cluster_ip}) never sent pod {client.name} to {missing} in "
                         f"{MAX_TRIES} requests; answered: {seen}")


@pytest.mark.scenario(8)
def test_node_to_cluster_ip(lab, node):
    svc = _echo(lab)
    answer = lab.curl(node.netns, _url(svc.cluster_ip, svc.ports[0].port))
    assert answer.status == 200, f"node {node.name} -> Service {svc.name} {svc.cluster_ip}: {answer.error}"
    assert answer.field("pod") in svc.endpoints, f"answered by {answer.field('pod')}, not an endpoint of {svc.name}"


@pytest.mark.scenario(9)
def test_pod_reaches_itself_through_its_service(lab, echo_pod):
    svc = _echo(lab)
    seen, errors = _answered(lab, echo_pod.netns, _url(svc.cluster_ip, svc.ports[0].port), [echo_pod.name])
    assert echo_pod.name in seen, (
        f"pod {echo_pod.name} never reached itself through Service {svc.name} in {MAX_TRIES} requests "
        f"(hairpin); answered: {seen}; errors: {errors[:3]}")


def _ingress(lab):
    return lab.plan.ingress_service


@pytest.mark.scenario(10)
def test_node_port_answers_on_every_node(lab, node):
    svc = _ingress(lab)
    port = svc.ports[0].node_port
    answer = lab.curl(lab.plan.client_netns, _url(node.ip, port), host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"client -> NodePort {node.ip}:{port} on {node.name}: {answer.error or answer.status}"


@pytest.mark.scenario(10)
def test_node_port_forwards_to_controllers_on_other_nodes(lab):
    svc = _ingress(lab)
    if svc.external_traffic_policy != "Cluster":
        pytest.skip("externalTrafficPolicy Local: a node forwards only to its own controllers")
    node = lab.plan.nodes[0]
    controllers = {p.name: p.node for p in lab.pods() if p.app == "ingress-nginx"}
    remote = {name for name, n in controllers.items() if n != node.name}
    if not remote:
        pytest.skip("no controller runs on another node")
    served = set()
    for _ in range(MAX_TRIES):
        answer = lab.curl(lab.plan.client_netns, _url(node.ip, svc.ports[0].node_port),
                          host=lab.topology["ingress"]["host"])
        served.add(answer.headers.get("x-ingress-controller"))
        if remote & served or answer.status is None:
            break
    assert remote & served, (f"NodePort on {node.name} was only served by {sorted(filter(None, served))}; "
                             f"a remote controller ({sorted(remote)}) never answered in {MAX_TRIES} requests")


@pytest.mark.scenario(11)
def test_service_without_endpoints_rejects(lab):
    empty = lab.topology["workloads"]["empty_service"]
    client = next(p for p in lab.pods() if p.app == "multi-container")
    answer = lab.curl(client.netns, _url(empty["cluster_ip"], empty["port"]), timeout=3)
    assert answer.rc == 7, (f"Service {empty['name']} ({empty['cluster_ip']}) has no endpoints and should refuse "
                            f"at once (curl exit 7); got exit {answer.rc} {answer.error or answer.status}")


@pytest.mark.scenario(18)
def test_source_ip_is_kept_from_pod_to_cluster_ip(lab):
    svc = _echo(lab)
    client = next(p for p in lab.pods() if p.app == "multi-container")
    answer = lab.curl(client.netns, _url(svc.cluster_ip, svc.ports[0].port))
    assert answer.status == 200, f"pod {client.name} -> {svc.cluster_ip}: {answer.error}"
    backend = lab.plan.pod(answer.field("pod"))
    if backend.netns == client.netns:
        pytest.skip("the request went to the client pod itself (hairpin is masqueraded)")
    assert answer.field("client") == client.ip, (
        f"{backend.name} saw source {answer.field('client')}, not the pod's own {client.ip}: pod -> ClusterIP "
        "traffic must not be SNATed")


@pytest.mark.scenario(18)
def test_source_ip_through_the_load_balancer_follows_the_traffic_policy(lab):
    svc = _ingress(lab)
    answer = lab.curl(lab.plan.client_netns, _url(svc.load_balancer_ip, svc.ports[0].port),
                      host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"client -> {svc.load_balancer_ip}: {answer.error}"
    seen = answer.field("forwarded_for")
    client_ip = lab.plan.client_ip
    if svc.external_traffic_policy == "Cluster":
        node_side = {n.ip for n in lab.plan.nodes} | {n.gateway for n in lab.plan.nodes}
        assert seen != client_ip and seen in node_side, (
            f"the controller saw source {seen}; with externalTrafficPolicy Cluster it should be SNATed to a node "
            f"address ({sorted(node_side)}), not the client's {client_ip}")
    else:
        assert seen == client_ip, f"the controller saw {seen}; with policy Local it should see the client {client_ip}"
    assert ipaddress.ip_address(answer.field("client")) in ipaddress.ip_network(lab.topology["pod_network"]), (
        f"the backend should see the controller's pod IP, saw {answer.field('client')}")
