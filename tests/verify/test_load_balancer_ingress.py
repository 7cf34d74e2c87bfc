"""Scenarios 13 and 15-17, 19: from the client, through MetalLB and the ingress controllers.

The client sends real ARP requests (arping) and HTTP requests (curl) to the MetalLB
address; the answers say which node, which controller and which backend took part.
"""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from election import elected

from podpath.evidence import trace as trace_mod
from podpath.evidence.scenarios import FAILURES_ENOUGH, MAX_TRIES

pytestmark = pytest.mark.netns_lab


@pytest.fixture(scope="module", autouse=True)
def arp_probe(lab):
    """Three ARP requests from the client for the MetalLB IP, sent from the module's first
    test on, in the background: the probe (0.6 s, most of it waiting between requests)
    overlaps the HTTP checks of scenarios 15-17, and the two ARP checks of scenario 13,
    after them, take its answers. Both assert on all three requests' answers (the election
    check used to send two requests of its own). The trace (19) waits for the probe to be
    over: it flushes the client's neighbour entry and reads its own ARP exchange."""
    address = lab.plan.ingress_service.load_balancer_ip
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(lab.arping, lab.plan.client_netns, "eth0", address, 3)


@pytest.fixture
def arp_answers(arp_probe):
    """The MACs that answered the probe's three requests."""
    return arp_probe.result()


@pytest.mark.scenario(13)
def test_no_node_puts_the_metallb_ip_on_an_interface(lab, node):
    address = lab.plan.ingress_service.load_balancer_ip
    configured = [a for link in lab.ip_json(node.netns, "addr") for a in link.get("addr_info", [])
                  if a.get("local") == address]
    assert not configured, f"node {node.name} has {address} on an interface; MetalLB L2 answers ARP without it"


def _controllers(lab):
    return [p.name for p in lab.pods() if p.app == "ingress-nginx"]


@pytest.mark.scenario(15)
def test_client_reaches_every_controller_through_the_metallb_ip(lab):
    svc = lab.plan.ingress_service
    host = lab.topology["ingress"]["host"]
    served, failures = {}, []
    for _ in range(MAX_TRIES):
        answer = lab.curl(lab.plan.client_netns, f"http://{svc.load_balancer_ip}/", host=host)
        if answer.status != 200:
            failures.append(answer.error or f"HTTP {answer.status}")
            if len(failures) >= FAILURES_ENOUGH:
                break
            continue
        name = answer.headers.get("x-ingress-controller")
        served[name] = served.get(name, 0) + 1
        if set(_controllers(lab)) <= set(served):
            break
    assert not failures, f"client -> {svc.load_balancer_ip}: {len(failures)} failed requests: {failures[:3]}"
    missing = sorted(set(_controllers(lab)) - set(served))
    assert not missing, f"controllers {missing} never served in {MAX_TRIES} requests; served: {served}"


@pytest.mark.scenario(16)
def test_exactly_one_controller_holds_a_fresh_lease(lab):
    lease = lab.lease()
    assert lease, "there is no leader lease: no ingress controller has run its election"
    holder = lease.get("holderIdentity")
    assert holder in _controllers(lab), f"the lease is held by {holder!r}, which is not an ingress controller"
    age = time.time() - float(lease["renewTime"])
    assert age < float(lease["leaseDurationSeconds"]), (
        f"the lease of {holder} was last renewed {age:.1f} s ago, longer than its {lease['leaseDurationSeconds']} s: "
        "the leader has stopped")


@pytest.mark.scenario(16)
def test_every_controller_serves(lab, ingress_pod):
    node_ns = lab.node_netns(ingress_pod.node)
    answer = lab.curl(node_ns, f"http://{ingress_pod.ip}:{ingress_pod.port}/", host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"controller {ingress_pod.name} ({ingress_pod.ip}) does not serve: {answer.error}"
    assert answer.headers.get("x-ingress-controller") == ingress_pod.name


@pytest.mark.scenario(17)
def test_ingress_routes_the_demo_host_to_the_backend_service(lab):
    svc = lab.plan.ingress_service
    echo = lab.plan.service(lab.topology["workloads"]["echo"]["name"])
    answer = lab.curl(lab.plan.client_netns, f"http://{svc.load_balancer_ip}/", host=lab.topology["ingress"]["host"])
    assert answer.status == 200, f"Host {lab.topology['ingress']['host']}: {answer.error or answer.status}"
    assert answer.field("pod") in echo.endpoints, (
        f"Host {lab.topology['ingress']['host']} was answered by {answer.field('pod')!r}, not a pod of "
        f"Service {echo.name} {echo.endpoints}")


@pytest.mark.scenario(17)
def test_unknown_host_gets_404(lab):
    svc = lab.plan.ingress_service
    answer = lab.curl(lab.plan.client_netns, f"http://{svc.load_balancer_ip}/", host="unknown.lab.local")
    assert answer.status == 404, f"an unknown host got {answer.status or answer.error}, not the default backend's 404"


@pytest.mark.scenario(13)
def test_exactly_one_node_answers_arp_for_the_metallb_ip(lab, arp_answers):
    address = lab.plan.ingress_service.load_balancer_ip
    macs = arp_answers
    node_macs = lab.node_macs()
    answering = sorted(n for n, m in node_macs.items() if m in macs)
    assert len(macs) == 1, f"{len(macs)} MAC addresses answered ARP for {address}: {sorted(macs)} (nodes {answering})"
    assert len(answering) == 1, f"the MAC {macs} that answered for {address} is no node's eth1 ({node_macs})"


@pytest.mark.scenario(13)
def test_the_node_answering_arp_is_the_elected_one(lab, arp_answers):
    address = lab.plan.ingress_service.load_balancer_ip
    speakers = lab.speakers()
    down = [n for n, s in speakers.items() if not s]
    assert not down, f"MetalLB speaker not running on {down}"
    alive = [n for n, s in speakers.items() if s.get("link_ok")]
    expected = elected(alive, address)
    owner = [n for n, m in lab.node_macs().items() if m in arp_answers]
    assert owner == [expected], (f"ARP for {address} is answered by {owner or 'nobody'}; the election among "
                                 f"{alive} gives {expected}")
    announcing = [n for n, s in speakers.items() if address in s.get("announcing", [])]
    assert announcing == [expected], f"speakers announcing {address}: {announcing}; expected only {expected}"


@pytest.mark.scenario(19)
def test_traced_path_is_complete_and_consistent(lab, arp_probe):
    arp_probe.exception()  # wait for the probe (over already, unless its checks were deselected)
    result = trace_mod.trace(lab.name, lab.topology, lab=lab)
    text = trace_mod.render_text(result)
    assert result.complete, text
    assert result.node == elected([n for n, s in lab.speakers().items() if s], lab.plan.ingress_service.load_balancer_ip)
