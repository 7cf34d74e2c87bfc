"""Scenarios 13, 15-17 and 19: from the client, through MetalLB and the ingress controllers.

Scenarios 15-17 and 19 here are the ingress-nginx edge's; a lab with the gateway-api edge
has them in test_gateway.py (the edge marker picks one file's).

ARP requests for the MetalLB address (arping) say which node answers; HTTP requests from
the client (curl) say which controller (its X-Ingress-Controller header) and which backend
(the echo pod's answer) took part. Which node should answer is MetalLB's election
(podpath/model/election.py) among the nodes the lab says can announce.
"""
import pytest

from podpath.evidence.lab import CONTROLLER_HEADER, owners
from podpath.evidence.scenarios import MAX_TRIES, spread
from podpath.evidence.trace import render_text
from podpath.model.election import announcer


def _address(lab):
    address = lab.service("ingress").load_balancer_ip
    assert address, "the ingress Service has no load balancer address: MetalLB has not assigned one"
    return address


@pytest.fixture(scope="module", autouse=True)
def arp_probe(lab):
    """Three ARP requests for the MetalLB IP, sent from the module's first test on: the netns
    lab sends them in the background, so the probe (0.6 s, most of it waiting between
    requests) overlaps the HTTP checks of scenarios 15-17, and the two ARP checks of
    scenario 13, after them, take its answers. The trace (19) waits for the probe to be
    over: it reads its own ARP exchange."""
    return lab.arp_probe(lab.service("ingress").load_balancer_ip or "", 3)


@pytest.fixture
def arp_answers(arp_probe):
    """The answer of the probe's three requests (the MACs, and the command that sent them)."""
    return arp_probe.result()


@pytest.mark.scenario(13)
def test_no_node_puts_the_metallb_ip_on_an_interface(lab, node):
    address = _address(lab)
    # kube-proxy in IPVS mode would put it on kube-ipvs0; iptables mode (the lab's) puts it nowhere
    configured = [ifname for ifname, local in lab.node_addresses(node) if local == address and ifname != "kube-ipvs0"]
    assert not configured, (f"node {node} has {address} on {configured}; MetalLB L2 answers ARP without it "
                            f"({lab.node_command(node, ['ip', 'addr', 'show'])})")


def _controllers(lab):
    return {p.name for p in lab.pods_of("ingress-nginx")}


@pytest.mark.scenario(15)
@pytest.mark.edge("ingress-nginx")
def test_client_reaches_every_controller_through_the_metallb_ip(lab):
    address = _address(lab)
    expected = _controllers(lab)
    assert len(expected) == lab.ingress_replicas(), (
        f"{len(expected)} controllers run ({sorted(expected)}), the topology asks for {lab.ingress_replicas()}")
    served, failures = spread(lambda: [lab.client_get(f"http://{address}/", host=lab.ingress_host())],
                              lambda a: a.headers.get(CONTROLLER_HEADER), expected)
    assert not failures, f"client -> {address}: {len(failures)} failed requests: {failures[:3]}"
    missing = sorted(expected - set(served))
    assert not missing, f"controllers {missing} never served in {MAX_TRIES} requests to {address}; served: {served}"


@pytest.mark.scenario(16)
@pytest.mark.edge("ingress-nginx")
def test_exactly_one_controller_holds_a_fresh_lease(lab):
    lease = lab.leader_lease()
    assert lease and lease.holder, "the leader lease has no holder: no ingress controller has won the election"
    controllers = _controllers(lab)
    assert lease.holder in controllers, (f"the leader lease is held by {lease.holder!r}, not one of the running "
                                         f"controllers {sorted(controllers)}")
    assert lease.renew_time and lease.duration, "the leader lease has no renewTime or leaseDurationSeconds"
    age = lab.clock() - lease.renew_time
    assert age < lease.duration, (f"the lease of {lease.holder} was last renewed {age:.1f} s ago, longer than its "
                                  f"{lease.duration:.0f} s: the leader has stopped")


@pytest.mark.scenario(16)
@pytest.mark.edge("ingress-nginx")
def test_every_controller_serves(lab, ingress_pod):
    pod = ingress_pod
    answer = lab.node_get(pod.node, pod.ip, pod.port, host=lab.ingress_host())
    assert answer.status == 200, (f"controller {pod} ({pod.ip}:{pod.port}) does not serve {lab.ingress_host()}: "
                                  f"{answer.error or answer.status}")
    assert answer.headers.get(CONTROLLER_HEADER) == pod.name, (
        f"{pod.ip} answered as {answer.headers.get(CONTROLLER_HEADER)!r}, not controller {pod.name}")


@pytest.mark.scenario(17)
@pytest.mark.edge("ingress-nginx")
def test_ingress_routes_the_demo_host_to_the_backend_service(lab):
    address, host = _address(lab), lab.ingress_host()
    echo = lab.service("echo")
    answer = lab.client_get(f"http://{address}/", host=host)
    assert answer.status == 200, f"Host {host} at {address}: {answer.error or answer.status}"
    assert answer.field("pod") in echo.endpoints, (f"Host {host} was answered by {answer.field('pod')!r}, not a pod "
                                                   f"of Service {echo.name} {sorted(echo.endpoints)}")


@pytest.mark.scenario(17)
@pytest.mark.edge("ingress-nginx")
def test_unknown_host_gets_404(lab):
    address = _address(lab)
    answer = lab.client_get(f"http://{address}/", host="unknown.lab.local")
    assert answer.status == 404, f"an unknown host got {answer.status or answer.error}, not the default backend's 404"
    assert answer.headers.get(CONTROLLER_HEADER) in _controllers(lab), (
        "the 404 did not come from an ingress controller (no X-Ingress-Controller header naming one)")


@pytest.mark.scenario(13)
def test_exactly_one_node_answers_arp_for_the_metallb_ip(lab, arp_answers):
    address = _address(lab)
    macs = set(arp_answers.macs)
    node_macs = lab.node_macs()
    assert macs, f"nobody answered ARP for {address} ({arp_answers.asked_from}): no speaker announces it"
    answering = owners(macs, node_macs)
    assert len(macs) == 1, (f"{len(macs)} MAC addresses answered ARP for {address}: {sorted(macs)} (nodes "
                            f"{answering}) ({arp_answers.asked_from})")
    assert answering[0] in node_macs, (f"the MAC {sorted(macs)[0]} that answered for {address} is no node's "
                                       f"node-network interface ({node_macs})")


@pytest.mark.scenario(13)
def test_the_node_answering_arp_is_the_elected_one(lab, arp_answers):
    address = _address(lab)
    down = lab.speakers_not_running()
    assert not down, f"MetalLB speaker not running on {down}"
    candidates = lab.election_candidates()
    assert candidates, "no node can announce: no node with a running speaker (and its link up) may announce"
    expected = announcer(candidates, address)
    owner = owners(arp_answers.macs, lab.node_macs())
    assert owner == [expected], (f"ARP for {address} is answered by {owner or 'nobody'} ({arp_answers.asked_from}); "
                                 f"MetalLB's election among {candidates} gives {expected}")
    reported = lab.reported_announcers()
    assert reported is None or reported == [expected], (
        f"the speakers report {reported} announcing {address}; the election among {candidates} gives only {expected}")


@pytest.mark.scenario(13)
def test_the_client_resolves_the_metallb_ip_to_the_announcing_node(lab):
    """The client's own neighbour table after a request: the MAC its packets go to."""
    address = _address(lab)
    answer = lab.client_get(f"http://{address}/", host=lab.ingress_host())
    assert answer.status is not None, f"client -> {address}: {answer.error}"
    mac = lab.client_neighbour(address)
    expected = announcer(lab.election_candidates(), address)
    assert owners([mac] if mac else [], lab.node_macs()) == [expected], (
        f"after a request to {address}, the client's neighbour entry for it is {mac or 'missing'}, not the MAC of "
        f"{expected}, the elected node (the client's neighbour table: ip neigh show {address}, or arp -an)")


@pytest.mark.scenario(13)
@pytest.mark.cluster_lab
def test_the_control_plane_is_left_out_of_the_election(lab):
    """kubeadm labels the control plane node.kubernetes.io/exclude-from-external-load-balancers
    and MetalLB's speakers leave such a node out. (The netns lab's speakers run on every node,
    the control plane included: it does not model the label.)"""
    planes = lab.control_planes()
    excluded = lab.excluded_from_load_balancers()
    unlabelled = [n for n in planes if n not in excluded]
    assert not unlabelled, (f"control-plane nodes {unlabelled} lack kubeadm's label "
                            "node.kubernetes.io/exclude-from-external-load-balancers: MetalLB could announce from them")
    candidates = lab.election_candidates()
    assert not set(planes) & set(candidates), f"the election set {candidates} has a control plane"


@pytest.mark.scenario(19)
@pytest.mark.edge("ingress-nginx")
def test_traced_path_is_complete_and_consistent(lab, arp_probe):
    arp_probe.exception()  # wait for the probe (over already, unless its checks were deselected)
    result = lab.trace()
    text = render_text(result)
    assert result.complete, f"the traced path is broken:\n{text}"
    expected = announcer(lab.election_candidates(), _address(lab))
    assert result.node == expected, f"ARP was answered by {result.node}, not the elected {expected}:\n{text}"
