"""A catalogue of faults: one broken hop each, in a running netns lab.

The verifier's own tests break the lab with each fault and check that the scenario
for that hop fails; `podpath drill` picks one for a classroom. Every fault changes only
the lab's namespaces and processes (nsenter into them, signals to the lab's own pids),
and `podpath up` repairs every one of them.

A drill tells the students what fails and which hop broke (a node or a namespace, and a
table, a chain or a link there), never what is wrong at that hop: that is theirs to find,
and `podpath drill reveal` says it. Each fault lists the words of that answer (`answer`),
which its hint never uses; tests/unit/test_drill_messages.py holds every hint to it.

kube-proxy's faults (sep-rule, reject-rule, masquerade) break the rules of the lab's own
mode (the topology's kube_proxy.mode): KUBE-* chains in iptables mode, the table ip
kube-proxy in nftables mode; their hints follow the plan's mode, and `Fault.in_mode`
gives the title and the commands that find them in that mode.
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Callable

from podpath.model import kubeproxy, labdir
from podpath.model.plan import GATEWAY_CONTAINER, Plan
from podpath.model.workloads import lease_path, pod_dir
from podpath.evidence.probe import NetnsLab


@dataclass(frozen=True)
class Hint:
    """What a drill tells the students: what fails, and the hop where it breaks."""
    fails: str
    hop: str


@dataclass(frozen=True)
class Fault:
    name: str
    title: str  # what is broken, for `drill reveal`: the answer
    scenario: int  # the verifier scenario that must fail
    apply: Callable[[NetnsLab], str]  # breaks the lab; returns what it did, in words
    finds_it: tuple[str, ...]  # commands that would have shown the fault
    # The hint of `drill start` and `drill check`, from the lab's plan and the node that
    # announces the MetalLB address (the one fault that depends on it reads it).
    hint: Callable[[Plan, str | None], Hint]
    # Words of the answer (each the start of a word of TITLE or FINDS_IT) the hint never uses.
    answer: tuple[str, ...]
    # A kube-proxy fault in nftables mode: its (title, finds_it, answer) there.
    nftables: tuple[str, tuple[str, ...], tuple[str, ...]] | None = None

    def in_mode(self, mode: str) -> Fault:
        """This fault as `drill reveal` tells it on a lab whose kube-proxy runs in MODE."""
        if mode == "nftables" and self.nftables:
            title, finds_it, answer = self.nftables
            return dataclasses.replace(self, title=title, finds_it=finds_it, answer=answer, nftables=None)
        return self


@dataclass(frozen=True)
class Broken:
    what: str  # what apply did: the answer, kept for `drill reveal`
    hint: Hint


def _must(result, what: str) -> None:
    if not result.ok:
        raise RuntimeError(f"could not {what}: {result.stderr.strip()}")


def _echo_pods(lab: NetnsLab | Plan):
    plan = lab if isinstance(lab, Plan) else lab.plan
    return plan.echo_pods


def _cross_node_pair(lab: NetnsLab | Plan):
    """The first client pod and echo pod on different nodes, as the verifier picks them."""
    plan = lab if isinstance(lab, Plan) else lab.plan
    return next((a, b) for a in plan.pods for b in plan.echo_pods if a.node != b.node)


def _on(plan: Plan, node: str) -> str:
    return f"node {node} (netns {plan.node(node).netns})"


def _every_node(plan: Plan) -> str:
    return "every node (" + ", ".join(n.netns for n in plan.nodes) + ")"


def announcer(lab: NetnsLab) -> str | None:
    """The node whose speaker announces the MetalLB address, as its status file says."""
    address = lab.plan.ingress_service.load_balancer_ip
    return next((n for n, s in lab.speakers().items() if s and address in s.get("announcing", [])), None)


def break_lab(lab: NetnsLab, fault: Fault) -> Broken:
    """Break LAB with FAULT; the hint is worked out first, from the lab as it was."""
    hint = fault.hint(lab.plan, announcer(lab))
    return Broken(fault.apply(lab), hint)


def missing_route(lab: NetnsLab) -> str:
    a, b = _cross_node_pair(lab)
    node, target = lab.plan.node(a.node), lab.plan.node(b.node)
    _must(lab.exec_in(node.netns, ["ip", "route", "del", target.pod_cidr]), "delete the route")
    return f"deleted the route to {target.pod_cidr} on {node.name}"


def ip_forward_off(lab: NetnsLab) -> str:
    a, _ = _cross_node_pair(lab)
    node = lab.plan.node(a.node)
    _must(lab.exec_in(node.netns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]), "turn ip_forward off")
    return f"turned net.ipv4.ip_forward off on {node.name}"


def _nftables(plan: Plan) -> bool:
    return plan.kube_proxy_mode == "nftables"


def _nft(*words: str) -> list[str]:
    return ["nft", words[0], words[1], kubeproxy.NFT_FAMILY, kubeproxy.NFT_TABLE, *words[2:]]


def _sep_chain(plan: Plan) -> tuple[str, object]:
    """The chain of echo's first endpoint, in the plan's mode, and that pod."""
    svc = plan.echo_service
    pod, port = svc.pods[0], svc.ports[0]
    endpoint = f"{pod.ip}:{port.target_port}"
    if _nftables(plan):
        return kubeproxy.nft_endpoint_chain(svc, port, endpoint), pod
    return kubeproxy.sep_chain(svc, port, endpoint), pod


def deleted_sep_rule(lab: NetnsLab) -> str:
    sep, pod = _sep_chain(lab.plan)
    for node in lab.plan.nodes:
        argv = _nft("flush", "chain", sep) if _nftables(lab.plan) else ["iptables", "-w", "-t", "nat", "-F", sep]
        _must(lab.exec_in(node.netns, argv), f"flush {sep}")
    return f"flushed {sep} (the DNAT to {pod.name}) on every node"


def missing_reject_rule(lab: NetnsLab) -> str:
    empty = lab.plan.empty_service
    if _nftables(lab.plan):
        # kube-proxy rejects it twice over in nftables mode: through no-endpoint-services, and
        # as an address of cluster-ips on a port it does not serve; forgotten by both, the
        # address is an unallocated one of the Service network, which is dropped
        key = f"{empty.cluster_ip} . tcp . {empty.ports[0].port}"
        for node in lab.plan.nodes:
            _must(lab.exec_in(node.netns, _nft("delete", "element", "no-endpoint-services", "{", key, "}")),
                  "delete the element of no-endpoint-services")
            _must(lab.exec_in(node.netns, _nft("delete", "element", "cluster-ips", "{", empty.cluster_ip, "}")),
                  "delete the element of cluster-ips")
        return (f"deleted {key} from the map no-endpoint-services and {empty.cluster_ip} from the set cluster-ips "
                f"(Service {empty.name}) on every node")
    for node in lab.plan.nodes:
        save = lab.iptables_save(node.netns, "filter")
        for line in save.splitlines():
            if line.startswith("-A KUBE-SERVICES") and empty.cluster_ip in line and "REJECT" in line:
                import shlex

                _must(lab.exec_in(node.netns, ["iptables", "-w", "-t", "filter", "-D"] + shlex.split(line)[1:]),
                      "delete the REJECT rule")
    return f"deleted the REJECT rule of Service {empty.name} on every node"


def no_masquerade(lab: NetnsLab) -> str:
    if _nftables(lab.plan):
        for node in lab.plan.nodes:
            _must(lab.exec_in(node.netns, _nft("flush", "chain", "masquerading")), "flush masquerading")
        return "flushed the chain masquerading (no more SNAT) on every node"
    for node in lab.plan.nodes:
        _must(lab.exec_in(node.netns, ["iptables", "-w", "-t", "nat", "-F", "KUBE-POSTROUTING"]),
              "flush KUBE-POSTROUTING")
    return "flushed KUBE-POSTROUTING (no more SNAT) on every node"


# How long a crash-looping container takes to show it: its shim restarts it at once after the
# first exit, the container exits again within a second, and the shim waits out its back-off.
CRASH_LOOP_WAIT_S = 10.0


def crashing_controller(lab: NetnsLab) -> str:
    """Break the nginx configuration of one controller (two default servers for port 80,
    which nginx refuses) and kill the controller's process. A killed container comes back at
    once (its shim restarts it), so killing alone breaks nothing for long; with the broken
    file, nginx exits on start, the controller with it, and the container crash-loops: it waits
    out a back-off that doubles with every restart (CrashLoopBackOff), until `podpath up`
    writes the configuration again and restarts it."""
    pod = lab.plan.ingress_pods[-1]
    name = f"{pod.name}/controller"
    conf = os.path.join(pod_dir(lab.name, pod), "controller.conf")
    with open(conf) as handle:
        text = handle.read()
    broken = text.replace("listen 80;", "listen 80 default_server;", 1)
    if broken == text:
        raise RuntimeError(f"{conf} has no server listening on port 80 that is not the default one")
    pid = lab.container_pid(pod.name, "controller")
    if not pid:
        raise RuntimeError(f"the controller container of {pod.name} is not running")
    tmp = f"{conf}.drill"
    with open(tmp, "w") as handle:
        handle.write(broken)
    os.replace(tmp, conf)
    os.kill(pid, signal.SIGKILL)
    status_path = labdir.lab.container_status_path(lab.name, "ingress", name)
    deadline = time.monotonic() + CRASH_LOOP_WAIT_S
    while True:
        status = labdir.lab.read_container_status(status_path)[0]
        if status and status["state"] == "waiting" and status["restarts"] >= 1:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the controller container of {pod.name} did not crash-loop within "
                               f"{CRASH_LOOP_WAIT_S:g} s (its status: {status})")
        time.sleep(0.05)
    return (f"gave the nginx of {pod.name}'s controller two default servers for port 80 ({conf}) and killed the "
            "controller's process: its shim started it again at once, nginx exits on start, the controller with it, "
            f"and the container waits out a back-off that doubles with each restart (CrashLoopBackOff, "
            f"{status['restarts']} restart so far)")


def stopped_election(lab: NetnsLab) -> str:
    """SIGSTOP the controller process of every controller pod: the election lives in that
    process (as in ingress-nginx), nginx is its child and serves on. Nobody renews the lease,
    and a frozen holder cannot release it: it runs out after its duration."""
    frozen = []
    for pod in lab.plan.ingress_pods:
        pid = lab.container_pid(pod.name, "controller")
        if pid:
            os.kill(pid, signal.SIGSTOP)
            frozen.append(f"{pod.name} (pid {pid})")
    if not frozen:
        raise RuntimeError("no ingress controller is running: the lab is not up")
    lease = lab.lease() or {}
    try:
        left = float(lease.get("renewTime", 0)) + float(lease.get("leaseDurationSeconds", 0)) - time.time()
    except (TypeError, ValueError):
        left = 0.0
    time.sleep(max(0.0, left) + 0.2)
    return (f"froze (SIGSTOP) the controller process of {', '.join(frozen)}: their nginx serves on, but the "
            "process that renews the lease is stopped")


def arp_replies_dropped(lab: NetnsLab) -> str:
    address = lab.plan.ingress_service.load_balancer_ip
    node = announcer(lab)
    if node is None:
        raise RuntimeError(f"no speaker announces {address}: the lab is not settled")
    netns = lab.plan.node(node).netns
    # The speaker answers through a packet socket, which the arp family's hooks do not
    # see; the netdev egress hook of eth1 does.
    for argv in (["nft", "add", "table", "netdev", "podpath_drill"],
                 ["nft", "add", "chain", "netdev", "podpath_drill", "egress",
                  '{ type filter hook egress device "eth1" priority 0 ; }'],
                 ["nft", "add", "rule", "netdev", "podpath_drill", "egress", "ether", "type", "arp", "drop"]):
        _must(lab.exec_in(netns, argv), "drop ARP replies")
    return f"dropped every ARP packet {node} sends: its speaker's answers for {address} never leave"


def detached_port(lab: NetnsLab) -> str:
    pod = _echo_pods(lab)[0]
    _must(lab.exec_in(lab.node_netns(pod.node), ["ip", "link", "set", pod.host_veth, "nomaster"]), "detach the port")
    return f"detached {pod.host_veth} ({pod.name}) from cni0 on {pod.node}"


def hairpin_off(lab: NetnsLab) -> str:
    pod = _echo_pods(lab)[-1]
    _must(lab.exec_in(lab.node_netns(pod.node), ["ip", "link", "set", pod.host_veth, "type", "bridge_slave",
                                                 "hairpin", "off"]), "turn hairpin off")
    return f"turned hairpin off on {pod.host_veth} ({pod.name}) on {pod.node}"


def wrong_pod_address(lab: NetnsLab) -> str:
    pod = _echo_pods(lab)[0]
    wrong = pod.ip.rsplit(".", 1)[0] + ".250"
    _must(lab.exec_in(pod.netns, ["ip", "addr", "del", f"{pod.ip}/{pod.prefixlen}", "dev", "eth0"]), "remove the IP")
    _must(lab.exec_in(pod.netns, ["ip", "addr", "add", f"{wrong}/{pod.prefixlen}", "dev", "eth0"]), "add a wrong IP")
    _must(lab.exec_in(pod.netns, ["ip", "route", "replace", "default", "via", pod.gateway]), "restore the route")
    return f"gave {pod.name} the address {wrong} instead of {pod.ip}"


def removed_pod_namespace(lab: NetnsLab) -> str:
    pod = _echo_pods(lab)[1 % len(_echo_pods(lab))]
    path = labdir.lab.netns_path(pod.netns)
    _must(lab.run(["umount", path]), "unmount the namespace file")
    os.unlink(path)
    return f"removed {path} ({pod.name}); its processes still hold the namespace"


def link_down(lab: NetnsLab) -> str:
    pod = _echo_pods(lab)[0]
    _must(lab.exec_in(pod.netns, ["ip", "link", "set", "eth0", "down"]), "set eth0 down")
    return f"set eth0 of {pod.name} down"


# --- the hints: what fails and where, never what is wrong there --------------------------

def _tunnel(plan: Plan, node: str) -> bool:
    """Whether NODE reaches other nodes' pods through flannel.1 (the vxlan backend)."""
    return getattr(plan.node(node), "vtep", None) is not None


def _cross_node_hint(plan: Plan, _announcer: str | None) -> Hint:
    a, b = _cross_node_pair(plan)
    target = plan.node(b.node)
    way = "through flannel.1" if _tunnel(plan, a.node) else "over the LAN"
    return Hint(f"pod {a.name} ({a.ip}) on {a.node} gets no answer from pod {b.name} ({b.ip}) on {b.node}",
                f"{_on(plan, a.node)}: a packet for {b.ip} comes in on its cni0 and never reaches "
                f"{target.name} ({target.ip}) {way}")


def _forwarding_hint(plan: Plan, _announcer: str | None) -> Hint:
    a, b = _cross_node_pair(plan)
    links = "eth1 and flannel.1" if _tunnel(plan, a.node) else "eth1"
    return Hint(f"pod {a.name} ({a.ip}) on {a.node} gets no answer from pod {b.name} ({b.ip}) on {b.node}, and "
                f"nothing from the LAN reaches the pods of {a.node}",
                f"{_on(plan, a.node)}: between its cni0 and its {links}, both ways")


def _table(plan: Plan, iptables_table: str) -> str:
    """Where kube-proxy's rules are, in the plan's mode."""
    table = f"table {kubeproxy.NFT_FAMILY} {kubeproxy.NFT_TABLE}" if _nftables(plan) else f"{iptables_table} table"
    return f"the {table} of {_every_node(plan)}"


def _sep_hint(plan: Plan, _announcer: str | None) -> Hint:
    svc = plan.echo_service
    port = svc.ports[0]
    sep, pod = _sep_chain(plan)
    return Hint(f"Service {svc.name} ({svc.cluster_ip}:{port.port}) never sends a request to its endpoint "
                f"{pod.name} ({pod.ip}:{port.target_port}); its other endpoints answer",
                f"{_table(plan, 'nat')}: chain {sep}, kube-proxy's chain for {pod.name}")


def _empty_service_hint(plan: Plan, _announcer: str | None) -> Hint:
    empty = plan.empty_service
    where = ("its filter chains (hooks input, forward and output), where kube-proxy answers for a Service "
             "without endpoints" if _nftables(plan)
             else "chain KUBE-SERVICES, where kube-proxy answers for a Service without endpoints")
    return Hint(f"a connection to Service {empty.name} ({empty.cluster_ip}:{empty.ports[0].port}), which has no "
                "endpoints, waits until curl gives up instead of failing at once (curl exit 7)",
                f"{_table(plan, 'filter')}: {where}")


def _masquerade_hint(plan: Plan, _announcer: str | None) -> Hint:
    svc = plan.ingress_service
    chain = ("chain masquerading, which chain nat-postrouting (hook postrouting) runs" if _nftables(plan)
             else "chain KUBE-POSTROUTING")
    return Hint(f"through the MetalLB address {svc.load_balancer_ip}, a controller sees the client's own address "
                f"{plan.client_ip}, and a request a node passes on to a controller on another node gets no answer",
                f"{_table(plan, 'nat')}: {chain}, the last hop before a packet leaves a node")


def _controller_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.ingress_pods[-1]
    port = plan.ingress_service.ports[0]
    return Hint(f"controller pod {pod.name} ({pod.ip}:{port.target_port}) on {pod.node} answers no request, neither "
                "the ones the DNAT sends it nor any sent to it directly; the other controllers answer",
                f"pod {pod.name} itself, in its network namespace {pod.netns} on {pod.node}, after the nat "
                "table's DNAT")


def _election_hint(plan: Plan, _announcer: str | None) -> Hint:
    pods = ", ".join(f"{p.name} on {p.node} (netns {p.netns})" for p in plan.ingress_pods)
    return Hint(f"scenario 16: no controller holds the leader lease {plan.election_id} any more, though all of them "
                "still answer requests",
                f"the leader lease ({lease_path(plan)}) and, in each controller pod, the controller's own process "
                f"(the first of its container, nginx's parent), which takes part in the election: {pods}")


def _arp_hint(plan: Plan, node: str | None) -> Hint:
    address = plan.ingress_service.load_balancer_ip
    where = _on(plan, node) if node else "the node that MetalLB elected"
    return Hint(f"the client's ARP requests for the MetalLB address {address} go unanswered, so no request to "
                "it gets anywhere",
                f"{where}, elected to announce {address}: its eth1, on the way out to the LAN (lan0)")


def _bridge_port_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.echo_pods[0]
    return Hint(f"pod {pod.name} ({pod.ip}) on {pod.node} is cut off: its node, the other pods and the Services "
                "get no answer from it",
                f"{_on(plan, pod.node)}: between cni0 and {pod.host_veth}, the host end of the pod's eth0")


def _hairpin_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.echo_pods[-1]
    svc = plan.echo_service
    return Hint(f"pod {pod.name} ({pod.ip}) on {pod.node} never gets an answer through Service {svc.name} "
                f"({svc.cluster_ip}:{svc.ports[0].port}) when kube-proxy picks the pod itself as the endpoint; "
                "every other path works",
                f"{_on(plan, pod.node)}: cni0, on the way back into pod {pod.name} through the port it came "
                f"from, {pod.host_veth}")


def _pod_address_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.echo_pods[0]
    return Hint(f"nothing reaches pod {pod.name} ({pod.ip}) on {pod.node}: neither its node nor Service "
                f"{plan.echo_service.name}",
                f"the pod's own network namespace {pod.netns} on {pod.node}: its eth0")


def _pod_netns_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.echo_pods[1 % len(plan.echo_pods)]
    return Hint(f"scenario 1: pod {pod.name} on {pod.node} still answers, but its network namespace "
                f"{pod.netns} is not where the CNI plugin names pod namespaces",
                f"/var/run/netns (ip netns), for pod {pod.name} on {pod.node}")


def _pod_link_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.echo_pods[0]
    return Hint(f"pod {pod.name} ({pod.ip}) on {pod.node} gets no traffic and sends none",
                f"the pod's own network namespace {pod.netns} on {pod.node}: its eth0")


CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    Fault("route", "a node lost its route to another node's pod subnet", 5, missing_route,
          ("ip -n <lab>-<node> route", "ip -n <lab>-<node> route get <pod ip>"),
          _cross_node_hint, ("lost", "route", "subnet")),
    Fault("forwarding", "a node stopped forwarding packets (ip_forward off)", 5, ip_forward_off,
          ("ip netns exec <lab>-<node> sysctl net.ipv4.ip_forward",),
          _forwarding_hint, ("stopped", "forward", "ip_forward", "off", "sysctl")),
    Fault("sep-rule", "a KUBE-SEP chain lost its DNAT rule", 12, deleted_sep_rule,
          ("ip netns exec <lab>-<node> iptables-save -t nat | grep KUBE-SEP",),
          _sep_hint, ("lost", "dnat", "rule"),
          nftables=("an endpoint-* chain of kube-proxy lost its DNAT rule",
                    ("ip netns exec <lab>-<node> nft list table ip kube-proxy | grep -A3 'chain endpoint-'",),
                    ("lost", "dnat", "rule"))),
    Fault("reject-rule", "the REJECT rule of the Service without endpoints is gone", 11, missing_reject_rule,
          ("ip netns exec <lab>-<node> iptables-save -t filter",),
          _empty_service_hint, ("reject", "rule", "gone"),
          nftables=("the Service without endpoints is gone from kube-proxy's map no-endpoint-services and its set "
                    "cluster-ips",
                    ("ip netns exec <lab>-<node> nft list map ip kube-proxy no-endpoint-services",
                     "ip netns exec <lab>-<node> nft list set ip kube-proxy cluster-ips"),
                    ("gone", "map", "no-endpoint-services", "set", "cluster-ips"))),
    Fault("masquerade", "kube-proxy's KUBE-POSTROUTING chain is empty: no more masquerade (SNAT)", 18, no_masquerade,
          ("ip netns exec <lab>-<node> iptables-save -t nat | grep -A3 KUBE-POSTROUTING",),
          _masquerade_hint, ("empty", "masquerade", "snat"),
          nftables=("kube-proxy's masquerading chain is empty: no more masquerade (SNAT)",
                    ("ip netns exec <lab>-<node> nft list chain ip kube-proxy masquerading",),
                    ("empty", "masquerade", "snat"))),
    Fault("controller", "the nginx configuration of an ingress controller is broken: nginx exits on start "
          "(CrashLoopBackOff)", 16, crashing_controller,
          ("podpath status", "tail /run/podpath/<lab>/logs/<pod>_controller.log",
           "nginx -t -c /run/podpath/<lab>/pods/<pod>/controller.conf"),
          _controller_hint, ("nginx", "configuration", "broken", "exit", "start", "crashloopbackoff")),
    Fault("election", "every controller is frozen (SIGSTOP): nobody renews the leader lease", 16, stopped_election,
          ("podpath status", "cat /run/podpath/<lab>/leases/ingress-nginx/ingress-nginx-leader.json",
           "ps -o pid,stat,args -p <controller pid>"),
          _election_hint, ("every", "frozen", "sigstop", "nobody", "renew")),
    Fault("arp", "the announcing node drops its own ARP answers (an nftables rule on eth1)", 13, arp_replies_dropped,
          ("ip netns exec <lab>-client arping -c 3 -i eth0 <MetalLB IP>",
           "ip netns exec <lab>-<node> nft list ruleset"),
          _arp_hint, ("drop", "answers", "nft", "rule")),
    Fault("bridge-port", "a pod's veth was detached from cni0 (no longer a port of the bridge)", 4, detached_port,
          ("ip -n <lab>-<node> -d link show master cni0", "bridge -n <lab>-<node> link"),
          _bridge_port_hint, ("detach", "longer", "master")),
    Fault("hairpin", "hairpin mode is off on a pod's bridge port", 9, hairpin_off,
          ("ip -n <lab>-<node> -d link show <veth> | grep hairpin",),
          _hairpin_hint, ("hairpin", "mode", "off")),
    Fault("pod-address", "a pod has the wrong IP address", 1, wrong_pod_address,
          ("ip -n cni-<uuid> addr show eth0",),
          _pod_address_hint, ("wrong", "address", "addr")),
    Fault("pod-netns", "a pod's namespace file was removed from /var/run/netns", 1, removed_pod_namespace,
          ("ip netns list", "lsns -t net"),
          _pod_netns_hint, ("file", "removed", "lsns")),
    Fault("pod-link", "a pod's eth0 is down", 5, link_down,
          ("ip -n cni-<uuid> link show eth0",),
          _pod_link_hint, ("down",)),
]}


# --- the gateway-api edge's faults (NGINX Gateway Fabric's data plane) -------------------
# A lab with the gateway edge has no ingress controllers and no leader lease: these stand
# for the controller and election faults there (`catalogue` gives a lab's faults).

# How long a fault waits for every data-plane pod's nginx to answer with its new configuration.
RELOAD_WAIT_S = 10.0


def _reconfigure_data_plane(lab: NetnsLab, expect: int, host: str, **overrides) -> list[str]:
    """Write every data-plane pod's nginx configuration as NGF renders it with OVERRIDES,
    and have nginx reload it (SIGHUP to the master, as NGF's agent does after writing it);
    wait until each pod answers HOST with EXPECT. Returns the files written."""
    from podpath.model.workloads import gateway_config

    written = []
    for pod in lab.plan.gateway_pods:
        conf = gateway_config(lab.plan, pod, **overrides)
        tmp = conf["path"] + ".drill"
        with open(tmp, "w") as handle:
            handle.write(conf["content"])
        os.replace(tmp, conf["path"])
        pid = lab.container_pid(pod.name, GATEWAY_CONTAINER)
        if not pid:
            raise RuntimeError(f"the nginx container of data-plane pod {pod.name} is not running")
        os.kill(pid, signal.SIGHUP)
        written.append(conf["path"])
    port = lab.plan.gateway.listener_port
    deadline = time.monotonic() + RELOAD_WAIT_S
    for pod in lab.plan.gateway_pods:
        while True:
            answer = lab.node_get(pod.node, pod.ip, port, host=host)
            if answer.status == expect:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"data-plane pod {pod.name} still answers {host} with "
                                   f"{answer.status or answer.error}, not {expect}, "
                                   f"{RELOAD_WAIT_S:g} s after its reload")
            time.sleep(0.1)
    return written


def missing_route_backend(lab: NetnsLab) -> str:
    route = lab.plan.gateway
    files = _reconfigure_data_plane(lab, 500, route.hostname, backend_missing=True)
    return (f"rendered HTTPRoute {route.route}'s rule as NGF does when its backendRef names no Service: it goes to "
            f"the upstream invalid-backend-ref, which answers 500 ({', '.join(files)}), and reloaded nginx")


def wrong_listener_hostname(lab: NetnsLab) -> str:
    route = lab.plan.gateway
    wrong = route.hostname.replace(".", "-", 1)
    files = _reconfigure_data_plane(lab, 404, route.hostname, hostname=wrong)
    return (f"gave listener {route.listener_name} of Gateway {route.name} the hostname {wrong} instead of "
            f"{route.hostname} ({', '.join(files)}) and reloaded nginx: {route.hostname} gets the default server's 404")


def frozen_data_plane_pod(lab: NetnsLab) -> str:
    """SIGSTOP the nginx master and workers of the last data-plane pod: its address still takes
    connections (the kernel answers the handshake) and kube-proxy still sends it its share, but
    nothing answers. `podpath up` finds the container's first process stopped and restarts it."""
    pod = lab.plan.gateway_pods[-1]
    pid = lab.container_pid(pod.name, GATEWAY_CONTAINER)
    if not pid:
        raise RuntimeError(f"the nginx container of data-plane pod {pod.name} is not running")
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            workers = [int(p) for p in handle.read().split()]
    except OSError:
        workers = []
    for each in workers + [pid]:
        os.kill(each, signal.SIGSTOP)
    return (f"froze (SIGSTOP) the nginx of data-plane pod {pod.name} (master pid {pid}, workers "
            f"{', '.join(map(str, workers)) or 'none'}): it takes connections and answers none")


def _data_plane_where(plan: Plan) -> str:
    pods = ", ".join(f"{p.name} on {p.node}" for p in plan.gateway_pods)
    return f"the Gateway's data-plane pods ({pods}): the nginx configuration NGF renders, in each pod's folder"


def _route_backend_hint(plan: Plan, _announcer: str | None) -> Hint:
    route = plan.gateway
    return Hint(f"every request for {route.hostname} through the MetalLB address {plan.edge_service.load_balancer_ip} "
                f"gets HTTP 500 from the Gateway; the echo pods answer when asked directly",
                f"{_data_plane_where(plan)}: what the HTTPRoute {route.route}'s rule proxies to")


def _listener_hint(plan: Plan, _announcer: str | None) -> Hint:
    route = plan.gateway
    return Hint(f"every request for {route.hostname} through the MetalLB address {plan.edge_service.load_balancer_ip} "
                "gets HTTP 404 from the Gateway, as if no HTTPRoute named it",
                f"{_data_plane_where(plan)}: the server of listener {route.listener_name}")


def _data_plane_pod_hint(plan: Plan, _announcer: str | None) -> Hint:
    pod = plan.gateway_pods[-1]
    return Hint(f"about one request in {len(plan.gateway_pods)} through the MetalLB address "
                f"{plan.edge_service.load_balancer_ip} gets no answer until curl gives up; the other data-plane pods "
                "answer",
                f"data-plane pod {pod.name} on {pod.node}, in its network namespace {pod.netns}, after the nat "
                "table's DNAT")


GATEWAY_CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    Fault("route-backend", "the HTTPRoute's backendRef names no Service: NGF sends its rule to invalid-backend-ref, "
          "which answers 500", 17, missing_route_backend,
          ("cat /run/podpath/<lab>/pods/<data-plane pod>/nginx.conf", "kubectl describe httproute <route>"),
          _route_backend_hint, ("backendref", "names", "invalid-backend-ref")),
    Fault("listener-hostname", "the Gateway's listener has the wrong hostname: its server_name no longer matches",
          17, wrong_listener_hostname,
          ("grep server_name /run/podpath/<lab>/pods/<data-plane pod>/nginx.conf", "kubectl get gateway -o yaml"),
          _listener_hint, ("wrong", "hostname", "server_name")),
    Fault("data-plane-pod", "a data-plane pod of the Gateway is down: its nginx is frozen (SIGSTOP)", 15,
          frozen_data_plane_pod,
          ("podpath status", "ps -o pid,stat,args -p <nginx pid>"),
          _data_plane_pod_hint, ("frozen", "sigstop", "stat")),
]}


def catalogue(plan: Plan) -> dict[str, Fault]:
    """The faults of PLAN's lab: its edge's (the ingress controllers' or the Gateway's) and the rest."""
    if plan.edge == "gateway-api":
        shared = {n: f for n, f in CATALOGUE.items() if n not in ("controller", "election")}
        return {**shared, **GATEWAY_CATALOGUE}
    return CATALOGUE


def pick(seed: int, plan: Plan | None = None) -> Fault:
    """The fault a drill with SEED uses: the same seed, the same fault, for the whole class
    (whose labs share an edge). PLAN's edge picks among its faults (the ingress edge's without one)."""
    faults = catalogue(plan) if plan is not None else CATALOGUE
    names = sorted(faults)
    return faults[names[random.Random(seed).randrange(len(names))]]
