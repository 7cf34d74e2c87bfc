"""Scenarios 13, 15-17 and 19 on the cluster lab: from the client, through MetalLB and ingress-nginx.

The client is this machine, on the node network: it sends real ARP requests (arping, which
needs root or `sudo -n`) and HTTP requests (curl) to the MetalLB address. The MAC that
answers names the node; the X-Ingress-Controller header names the controller; the echo
backend names itself and the source it saw.
"""
import pytest

from podpath.evidence.cluster_probe import CONTROLLER_HEADER, EXCLUDE_LB_LABEL, elected
from podpath.evidence.scenarios import MAX_TRIES

pytestmark = pytest.mark.cluster_lab


def _owners(lab, macs):
    by_mac = {mac: node for node, (_, mac) in lab.node_macs().items()}
    return sorted({by_mac.get(m, f"unknown MAC {m}") for m in macs})


@pytest.mark.scenario(13)
def test_exactly_one_node_answers_arp_for_the_metallb_ip(lab):
    address = lab.load_balancer_ip()
    macs = lab.client_arping(address, count=3)
    assert macs, f"nobody answered ARP for {address} (3 requests from this machine): no speaker announces it"
    assert len(set(macs)) == 1, f"{len(set(macs))} MACs answered ARP for {address}: nodes {_owners(lab, macs)}"
    owners = _owners(lab, macs)
    assert owners[0] in lab.node_names(), (f"the MAC {macs[0]} that answered for {address} is no node's "
                                           f"node-network interface ({lab.node_macs()})")


@pytest.mark.scenario(13)
def test_the_control_plane_is_left_out_of_the_election(lab):
    nodes = lab.k8s_nodes()
    planes = [n["name"] for n in lab.topology["nodes"] if n["role"] == "control-plane"]
    unlabelled = [n for n in planes if EXCLUDE_LB_LABEL not in nodes[n].labels]
    assert not unlabelled, (f"control-plane nodes {unlabelled} lack kubeadm's label {EXCLUDE_LB_LABEL}: "
                            "MetalLB could announce from them")
    assert not set(planes) & set(lab.election_set()), f"the election set {lab.election_set()} has a control plane"


@pytest.mark.scenario(13)
def test_the_node_answering_arp_is_the_elected_one(lab):
    address = lab.load_balancer_ip()
    candidates = lab.election_set()
    assert candidates, "no node can announce: no Ready node with a ready MetalLB speaker and without the exclude label"
    expected = elected(candidates, address)
    # MetalLB's own word: its ServiceL2Status, else its nodeAssigned event (events expire after
    # an hour, so with neither only the ARP owner is compared with the election)
    announcer = lab.announcer()
    assert announcer in (None, expected), (f"MetalLB reports {announcer} announcing {address}; the election "
                                           f"among {candidates} (sha256 of node#ip) gives {expected}")
    owners = _owners(lab, lab.client_arping(address, count=2))
    assert owners == [expected], f"ARP for {address} is answered by {owners or 'nobody'}, not the elected {expected}"


@pytest.mark.scenario(13)
def test_no_node_puts_the_metallb_ip_on_an_interface(lab, k8s_node):
    address = lab.load_balancer_ip()
    configured = [link.get("ifname") for link in lab.ip_json(k8s_node, "addr", "show")
                  for a in link.get("addr_info", []) if a.get("local") == address]
    # kube-proxy in IPVS mode would put it on kube-ipvs0; iptables mode (the lab's) puts it nowhere
    configured = [c for c in configured if c != "kube-ipvs0"]
    assert not configured, f"node {k8s_node} has {address} on {configured}; MetalLB L2 answers ARP without it"


def _controllers(lab):
    return {p.name for p in lab.pods_of("ingress-nginx")}


@pytest.mark.scenario(15)
def test_client_reaches_every_controller_through_the_metallb_ip(lab):
    address = lab.load_balancer_ip()
    expected = _controllers(lab)
    assert len(expected) == lab.topology["ingress"]["replicas"], (
        f"{len(expected)} controllers run ({sorted(expected)}), the topology asks for "
        f"{lab.topology['ingress']['replicas']}")
    served, failures = {}, []
    for _ in range(MAX_TRIES):
        answer = lab.client_curl(f"http://{address}/", host=lab.topology["ingress"]["host"])
        if answer.status != 200:
            failures.append(answer.error or f"HTTP {answer.status}")
            continue
        name = answer.headers.get(CONTROLLER_HEADER)
        served[name] = served.get(name, 0) + 1
        if expected <= set(served):
            break
    assert not failures, f"client -> {address}: {len(failures)} failed requests: {failures[:3]}"
    missing = sorted(expected - set(served))
    assert not missing, f"controllers {missing} never served in {MAX_TRIES} requests to {address}; served: {served}"


@pytest.mark.scenario(16)
def test_exactly_one_controller_holds_a_fresh_lease(lab):
    lease = lab.lease()
    election = lab.topology["ingress"]["election_id"]
    assert lease and lease.holder, f"Lease {election} has no holder: no controller has won the election"
    controllers = _controllers(lab)
    assert lease.holder in controllers, (f"Lease {election} is held by {lease.holder!r}, not one of the running "
                                         f"controllers {sorted(controllers)}")
    assert lease.renew_time and lease.duration, f"Lease {election} has no renewTime or leaseDurationSeconds"
    age = lab.control_plane_time() - lease.renew_time
    assert age < lease.duration, (f"the lease of {lease.holder} was last renewed {age:.1f} s ago, longer than its "
                                  f"{lease.duration:.0f} s: the leader has stopped")


@pytest.mark.scenario(16)
def test_every_controller_serves(lab, k8s_controller):
    pod = lab.pod(k8s_controller)
    answer = lab.node_http(pod.node, pod.ip, pod.port, host=lab.topology["ingress"]["host"])
    assert answer.status == 200, (f"controller {pod} ({pod.ip}:{pod.port}) does not serve "
                                  f"{lab.topology['ingress']['host']}: {answer.error or answer.status}")
    assert answer.headers.get(CONTROLLER_HEADER) == pod.name, (
        f"{pod.ip} answered as {answer.headers.get(CONTROLLER_HEADER)!r}, not controller {pod.name}")


@pytest.mark.scenario(17)
def test_ingress_routes_the_demo_host_to_the_backend_service(lab):
    address, host = lab.load_balancer_ip(), lab.topology["ingress"]["host"]
    echo = lab.topology["workloads"]["echo"]
    endpoints = {e.pod for e in lab.endpoints(echo["namespace"], echo["name"]) if e.ready}
    answer = lab.client_curl(f"http://{address}/", host=host)
    assert answer.status == 200, f"Host {host} at {address}: {answer.error or answer.status}"
    assert answer.field("pod") in endpoints, (f"Host {host} was answered by {answer.field('pod')!r}, not a pod of "
                                              f"Service {echo['name']} {sorted(endpoints)}")


@pytest.mark.scenario(17)
def test_unknown_host_gets_404(lab):
    address = lab.load_balancer_ip()
    answer = lab.client_curl(f"http://{address}/", host="unknown.lab.local")
    assert answer.status == 404, f"an unknown host got {answer.status or answer.error}, not the default backend's 404"
    assert answer.headers.get(CONTROLLER_HEADER) in _controllers(lab), (
        "the 404 did not come from an ingress controller (no X-Ingress-Controller header naming one)")


@pytest.mark.scenario(19)
def test_traced_path_is_complete_and_consistent(lab):
    result = lab.trace()
    text = result.text()
    assert result.complete, f"the traced path is broken:\n{text}"
    expected = lab.announcer() or elected(lab.election_set(), lab.load_balancer_ip())
    assert result.node == expected, f"ARP was answered by {result.node}, not the announcing {expected}:\n{text}"
