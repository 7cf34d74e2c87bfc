"""Scenarios 5-11 and 18 on the cluster lab: reachability, hop by hop, with real traffic.

Requests leave from pods (kubectl exec ... curl, in the containers of the nginx image: the
echo pods and the multi-container pod's nginx), from nodes (a small python3 HTTP client, since
the nodes need not have curl) and from the client (this machine, curl). The echo pods answer
"pod=NAME ip=IP node=NODE client=SOURCE forwarded_for=..."; where kube-proxy picks an endpoint
at random, a check repeats, ten requests per exec, until every endpoint has answered or
MAX_TRIES requests were sent.
"""
import ipaddress

import pytest

from podpath.evidence.cluster_probe import CONTROLLER_HEADER, node_side_addresses, parse_json
from podpath.evidence.scenarios import MAX_TRIES

pytestmark = pytest.mark.cluster_lab


def _url(ip, port):
    return f"http://{ip}:{port}/"


def _echo_service(lab):
    echo = lab.topology["workloads"]["echo"]
    return echo, {e.pod for e in lab.endpoints(echo["namespace"], echo["name"]) if e.ready}


def _multi(lab):
    pods = lab.pods_of("multi-container")
    assert pods, "the multi-container pod is not running: it is the client of this check"
    return pods[0]


def _route_evidence(lab, src, dst):
    """Assert SRC's node routes DST's pod subnet to DST's node; the message names the hop."""
    nodes = lab.k8s_nodes()
    target = nodes[dst.node]
    routes = lab.ip_json(src.node, "route", "get", dst.ip)
    route = routes[0] if routes else {}
    network = ipaddress.ip_network(target.pod_cidr)
    # flannel VXLAN: via the other node's flannel.1 (the subnet's network address); host-gw: via the node
    gateways = {str(network.network_address), target.internal_ip}
    assert route.get("gateway") in gateways, (
        f"{src.node} has no route to {target.pod_cidr} via {dst.node} (pod {dst.name} on {dst.node} unreachable "
        f"from pod {src.name} on {src.node}); ip route get {dst.ip} says {route or 'unreachable'}")
    if route.get("dev") == "flannel.1":
        neigh = {n.get("dst"): (n.get("lladdr") or "").lower() for n in lab.ip_json(src.node, "neigh", "show",
                                                                                      "dev", "flannel.1")}
        mac = neigh.get(route["gateway"])
        fdb = {(f.get("mac") or "").lower(): f.get("dst") for f in _bridge_fdb(lab, src.node)}
        assert mac and fdb.get(mac) == target.internal_ip, (
            f"{src.node}: flannel.1 does not send {target.pod_cidr} to {dst.node} ({target.internal_ip}): "
            f"neighbour {route['gateway']} is {mac or 'unknown'}, its VXLAN destination {fdb.get(mac) or 'unknown'}")


def _bridge_fdb(lab, node):
    out = lab.run(node, ["bridge", "-j", "fdb", "show", "dev", "flannel.1"])
    return parse_json(out.stdout or "[]", f"{node}: bridge -j fdb show dev flannel.1") if out.ok else []


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_the_same_node(lab):
    pairs = [(a, b) for b in lab.pods_of("echo") for a in lab.clients() if a.name != b.name and a.node == b.node]
    if not pairs:
        pytest.skip("no client pod shares a node with an echo pod in this placement")
    a, b = pairs[0]
    answer = lab.pod_curl(a, _url(b.ip, b.port))
    assert answer.status == 200, (f"pod {b.name} ({b.ip}) unreachable from pod {a.name}, both on {a.node}: "
                                  f"{answer.error}")
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(5)
def test_pod_reaches_pod_on_another_node(lab, k8s_echo):
    b = lab.pod(k8s_echo)
    others = [a for a in lab.clients() if a.node != b.node]
    if not others:
        pytest.skip(f"no client pod runs on a node other than {b.node}")
    a = others[0]
    _route_evidence(lab, a, b)
    answer = lab.pod_curl(a, _url(b.ip, b.port))
    assert answer.status == 200, f"pod {b.name} on {b.node} unreachable from pod {a.name} on {a.node}: {answer.error}"
    assert answer.field("pod") == b.name, f"{b.ip} was answered by {answer.field('pod')}, not {b.name}"
    assert answer.field("client") == a.ip, f"{b.name} saw client {answer.field('client')}, not {a.ip} (no NAT)"


@pytest.mark.scenario(6)
def test_node_reaches_its_pods(lab, k8s_pod):
    pod = lab.pod(k8s_pod)
    answer = lab.node_http(pod.node, pod.ip, pod.port)
    assert answer.status is not None, f"node {pod.node} cannot reach its pod {pod.name} ({pod.ip}:{pod.port}): " \
                                      f"{answer.error}"


@pytest.mark.scenario(6)
def test_pod_reaches_every_node(lab, k8s_echo, k8s_node):
    pod = lab.pod(k8s_echo)
    ip = lab.node_ip(k8s_node)
    # kubelet listens on every node address; any HTTP answer (401 without a token) proves the path
    answer = lab.pod_curl(pod, f"https://{ip}:10250/healthz", insecure=True)
    assert answer.status is not None, (f"pod {pod} gets no answer from node {k8s_node} ({ip}:10250, kubelet): "
                                       f"{answer.error}")


@pytest.mark.scenario(7)
def test_pod_to_cluster_ip_reaches_every_endpoint(lab):
    echo, endpoints = _echo_service(lab)
    pods = {p.name for p in lab.pods_of("echo")}
    assert endpoints == pods, (f"Service {echo['name']}'s ready endpoints {sorted(endpoints)} are not its running "
                               f"pods {sorted(pods)}")
    client = _multi(lab)
    seen, errors = lab.answered_by(client, _url(echo["cluster_ip"], echo["port"]), endpoints)
    assert not errors, f"pod {client} -> {echo['name']} {echo['cluster_ip']}: {len(errors)} failed: {errors[:3]}"
    missing = sorted(endpoints - set(seen))
    assert not missing, (f"Service {echo['name']} ({echo['cluster_ip']}) never sent pod {client.name} to {missing} "
                         f"in {MAX_TRIES} requests; answered: {seen}")


@pytest.mark.scenario(8)
def test_node_to_cluster_ip(lab, k8s_node):
    echo, endpoints = _echo_service(lab)
    answer = lab.node_http(k8s_node, echo["cluster_ip"], echo["port"])
    assert answer.status == 200, f"node {k8s_node} -> Service {echo['name']} {echo['cluster_ip']}: {answer.error}"
    assert answer.field("pod") in endpoints, (f"node {k8s_node}: {echo['cluster_ip']} was answered by "
                                              f"{answer.field('pod')}, not an endpoint of {echo['name']}")


@pytest.mark.scenario(9)
def test_pod_reaches_itself_through_its_service(lab, k8s_echo):
    pod = lab.pod(k8s_echo)
    echo, _ = _echo_service(lab)
    seen, errors = lab.answered_by(pod, _url(echo["cluster_ip"], echo["port"]), {pod.name})
    assert pod.name in seen, (f"pod {pod} never reached itself through Service {echo['name']} in {MAX_TRIES} "
                              f"requests (hairpin on its cni0 port); answered: {seen}; errors: {errors[:3]}")


def _node_port(lab):
    return lab.topology["ingress"]["http_node_port"]


@pytest.mark.scenario(10)
def test_node_port_answers_on_every_node(lab, k8s_node):
    ip, port = lab.node_ip(k8s_node), _node_port(lab)
    answer = lab.client_curl(_url(ip, port), host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"client -> NodePort {ip}:{port} on {k8s_node}: {answer.error or answer.status}"


@pytest.mark.scenario(10)
def test_node_port_forwards_to_controllers_on_other_nodes(lab, k8s_node):
    svc = lab.service(lab.ingress_namespace, lab.ingress_service)
    if svc["policy"] != "Cluster":
        pytest.skip("externalTrafficPolicy Local: a node forwards only to its own controllers")
    remote = {p.name for p in lab.pods_of("ingress-nginx") if p.node != k8s_node}
    if not remote:
        pytest.skip(f"no controller runs on a node other than {k8s_node}")
    served = set()
    for _ in range(MAX_TRIES):
        answer = lab.client_curl(_url(lab.node_ip(k8s_node), _node_port(lab)), host=lab.topology["ingress"]["host"])
        served.add(answer.headers.get(CONTROLLER_HEADER))
        if remote & served:
            break
    assert remote & served, (f"NodePort on {k8s_node} was only served by {sorted(filter(None, served))}; "
                             f"a controller on another node ({sorted(remote)}) never answered in {MAX_TRIES} requests")


@pytest.mark.scenario(11)
def test_service_without_endpoints_rejects(lab):
    empty = lab.topology["workloads"]["empty_service"]
    client = _multi(lab)
    answer = lab.pod_curl(client, _url(empty["cluster_ip"], empty["port"]), timeout=3)
    assert answer.rc == 7, (f"Service {empty['name']} ({empty['cluster_ip']}) has no endpoints and should be refused "
                            f"at once (curl exit 7, kube-proxy's REJECT); pod {client.name} got exit {answer.rc} "
                            f"{answer.error or answer.status}")


@pytest.mark.scenario(18)
def test_source_ip_is_kept_from_pod_to_cluster_ip(lab):
    echo, _ = _echo_service(lab)
    client = _multi(lab)
    answer = lab.pod_curl(client, _url(echo["cluster_ip"], echo["port"]))
    assert answer.status == 200, f"pod {client} -> {echo['cluster_ip']}: {answer.error}"
    assert answer.field("client") == client.ip, (
        f"{answer.field('pod')} saw source {answer.field('client')}, not pod {client.name}'s own {client.ip}: "
        "pod -> ClusterIP traffic must not be SNATed")


@pytest.mark.scenario(18)
def test_source_ip_through_the_load_balancer_follows_the_traffic_policy(lab):
    svc = lab.service(lab.ingress_namespace, lab.ingress_service)
    address = lab.load_balancer_ip()
    answer = lab.client_curl(_url(address, 80), host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"client -> {address}: {answer.error or answer.status}"
    seen = answer.field("forwarded_for")
    client_ip = lab.client_route(address).get("prefsrc") or lab.topology["client"]["ip"]
    if svc["policy"] == "Cluster":
        node_side = node_side_addresses(lab.k8s_nodes())
        assert seen != client_ip and seen in node_side, (
            f"the controller saw source {seen}; with externalTrafficPolicy Cluster it should be SNATed to a node "
            f"address ({sorted(node_side)}), not the client's {client_ip}")
    else:
        assert seen == client_ip, f"the controller saw {seen}; with policy Local it should see the client {client_ip}"
    backend_saw = answer.field("client") or ""
    in_pods = backend_saw.count(".") == 3 and ipaddress.ip_address(backend_saw) in ipaddress.ip_network(
        lab.topology["pod_network"])
    assert in_pods, f"the backend should see the controller's pod IP, saw {backend_saw or 'nothing'}"
