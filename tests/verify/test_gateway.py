"""Scenarios 15-17 and 19 of a lab whose edge is gateway-api (NGINX Gateway Fabric).

The same path as the ingress edge's up to kube-proxy's DNAT (MetalLB's address, the edge
Service's rules); then one of the Gateway's data-plane pods (nginx, configured from the
Gateway's listener and the HTTPRoute), which names itself in its X-Gateway-Pod header, and
the echo backend, whose answer shows the header the HTTPRoute adds to the request. NGF's
data plane elects no leader: scenario 16 asks every data-plane pod directly.
"""
import pytest

from podpath.evidence.scenarios import MAX_TRIES, spread
from podpath.evidence.trace import render_text
from podpath.model.election import announcer
from podpath.model.gateway import GATEWAY_HEADER
from podpath.model.plan import GATEWAY_APP

pytestmark = pytest.mark.edge("gateway-api")


def _address(lab):
    address = lab.service("ingress").load_balancer_ip
    assert address, "the Gateway's Service has no load balancer address: MetalLB has not assigned one"
    return address


def _data_plane(lab):
    return {p.name for p in lab.pods_of(GATEWAY_APP)}


def _route(lab):
    return lab.plan.gateway


@pytest.mark.scenario(15)
def test_client_reaches_every_data_plane_pod_through_the_metallb_ip(lab):
    address, route = _address(lab), _route(lab)
    expected = _data_plane(lab)
    planned = len(lab.plan.gateway_pods)
    assert expected and len(expected) == planned, (
        f"{len(expected)} data-plane pods of Gateway {route.name} run ({sorted(expected)}), the topology asks for "
        f"{planned}")
    served, failures = spread(lambda: [lab.client_get(f"http://{address}{route.path_prefix}", host=route.hostname)],
                              lambda a: a.headers.get(GATEWAY_HEADER), expected)
    assert not failures, f"client -> {address} (Host {route.hostname}): {len(failures)} failed requests: {failures[:3]}"
    missing = sorted(expected - set(served))
    assert not missing, (f"data-plane pods {missing} never served in {MAX_TRIES} requests to {address}; "
                         f"served: {served}")


@pytest.mark.scenario(16)
def test_every_data_plane_pod_serves_the_listener(lab):
    """No leader: each data-plane pod answers the listener's host itself, naming itself."""
    route = _route(lab)
    pods = lab.pods_of(GATEWAY_APP)
    assert pods, f"Gateway {route.name} has no data-plane pod"
    # asked for / of the listener's host: the route's when its prefix is /, else no rule's (404)
    expect = 200 if route.path_prefix == "/" else 404
    wrong = []
    for pod in pods:
        answer = lab.node_get(pod.node, pod.ip, route.listener_port, host=route.hostname)
        if answer.status != expect or answer.headers.get(GATEWAY_HEADER) != pod.name:
            wrong.append(f"{pod.name} ({pod.ip}:{route.listener_port}): "
                         f"{answer.error or answer.status}, X-Gateway-Pod {answer.headers.get(GATEWAY_HEADER)!r}")
    assert not wrong, f"data-plane pods that do not serve listener {route.listener_name} ({route.hostname}): {wrong}"


@pytest.mark.scenario(17)
def test_route_sends_the_listener_host_to_the_backend_with_its_header(lab):
    address, route = _address(lab), _route(lab)
    echo = lab.service("echo")
    path = route.path_prefix.rstrip("/") + "/podpath"
    answer = lab.client_get(f"http://{address}{path}", host=route.hostname)
    assert answer.status == 200, (f"Host {route.hostname} path {path} at {address}: {answer.error or answer.status} "
                                  f"(HTTPRoute {route.route}, PathPrefix {route.path_prefix})")
    assert answer.field("pod") in echo.endpoints, (
        f"Host {route.hostname} was answered by {answer.field('pod')!r}, not a pod of Service {echo.name} "
        f"{sorted(echo.endpoints)}")
    if route.add_header:
        name, value = route.add_header
        assert answer.field(name.lower()) == value, (
            f"the backend {answer.field('pod')} saw {name}: {answer.field(name.lower())!r}, not {value!r}, which "
            f"HTTPRoute {route.route}'s RequestHeaderModifier adds to the request")


@pytest.mark.scenario(17)
def test_unknown_host_gets_404_from_the_gateway(lab):
    address = _address(lab)
    answer = lab.client_get(f"http://{address}/", host="unknown.lab.local")
    assert answer.status == 404, f"an unknown host got {answer.status or answer.error}, not the listener's 404"
    assert answer.headers.get(GATEWAY_HEADER) in _data_plane(lab), (
        "the 404 did not come from a data-plane pod of the Gateway (no X-Gateway-Pod header naming one)")


@pytest.mark.scenario(17)
def test_path_outside_the_route_gets_404(lab):
    address, route = _address(lab), _route(lab)
    if route.path_prefix == "/":
        pytest.skip(f"HTTPRoute {route.route} matches PathPrefix /: every path of {route.hostname} is the route's")
    outside = route.path_prefix + "x"  # PathPrefix matches whole path elements: /echox is not under /echo
    answer = lab.client_get(f"http://{address}{outside}", host=route.hostname)
    assert answer.status == 404, (f"{route.hostname}{outside} got {answer.status or answer.error}, not 404: no rule of "
                                  f"HTTPRoute {route.route} (PathPrefix {route.path_prefix}) matches it")


@pytest.mark.scenario(19)
def test_traced_path_names_the_gateway_route_and_data_plane_pod(lab):
    result = lab.trace()
    text = render_text(result)
    assert result.complete, f"the traced path is broken:\n{text}"
    expected = announcer(lab.election_candidates(), _address(lab))
    assert result.node == expected, f"ARP was answered by {result.node}, not the elected {expected}:\n{text}"
    route = _route(lab)
    named = " ".join(h.what for h in result.hops)
    for what in (f"Gateway {route.namespace}/{route.name}", f"HTTPRoute {route.namespace}/{route.route}"):
        assert what in named, f"the traced path does not name {what}:\n{text}"
    assert result.controller in _data_plane(lab), (
        f"the traced request was served by {result.controller!r}, not a data-plane pod of the Gateway:\n{text}")
