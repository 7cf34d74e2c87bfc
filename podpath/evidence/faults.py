"""A catalogue of faults: one broken hop each, in a running netns lab.

The verifier's own tests break the lab with each fault and check that the scenario
for that hop fails; `podpath drill` picks one for a classroom. Every fault changes only
the lab's namespaces and processes (nsenter into them, signals to the lab's own pids),
and `podpath up` repairs every one of them.
"""
from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from typing import Callable

from podpath.model import kubeproxy, labdir
from podpath.evidence.probe import NetnsLab


@dataclass(frozen=True)
class Fault:
    name: str
    title: str  # what is broken, for `drill reveal`
    scenario: int  # the verifier scenario that must fail
    apply: Callable[[NetnsLab], str]  # breaks the lab; returns what it did, in words
    finds_it: tuple[str, ...]  # commands that would have shown the fault


def _must(result, what: str) -> None:
    if not result.ok:
        raise RuntimeError(f"could not {what}: {result.stderr.strip()}")


def _echo_pods(lab: NetnsLab):
    return [p for p in lab.pods() if p.app == "echo"]


def _cross_node_pair(lab: NetnsLab):
    """The first client pod and echo pod on different nodes, as the verifier picks them."""
    return next((a, b) for a in lab.pods() for b in _echo_pods(lab) if a.node != b.node)


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


def deleted_sep_rule(lab: NetnsLab) -> str:
    svc = lab.plan.echo_service
    pod = svc.pods[0]
    sep = kubeproxy.sep_chain(svc, svc.ports[0], f"{pod.ip}:{svc.ports[0].target_port}")
    for node in lab.plan.nodes:
        _must(lab.exec_in(node.netns, ["iptables", "-w", "-t", "nat", "-F", sep]), f"flush {sep}")
    return f"flushed {sep} (the DNAT to {pod.name}) on every node"


def missing_reject_rule(lab: NetnsLab) -> str:
    empty = lab.plan.empty_service
    for node in lab.plan.nodes:
        save = lab.iptables_save(node.netns, "filter")
        for line in save.splitlines():
            if line.startswith("-A KUBE-SERVICES") and empty.cluster_ip in line and "REJECT" in line:
                import shlex

                _must(lab.exec_in(node.netns, ["iptables", "-w", "-t", "filter", "-D"] + shlex.split(line)[1:]),
                      "delete the REJECT rule")
    return f"deleted the REJECT rule of Service {empty.name} on every node"


def no_masquerade(lab: NetnsLab) -> str:
    for node in lab.plan.nodes:
        _must(lab.exec_in(node.netns, ["iptables", "-w", "-t", "nat", "-F", "KUBE-POSTROUTING"]),
              "flush KUBE-POSTROUTING")
    return "flushed KUBE-POSTROUTING (no more SNAT) on every node"


def stopped_controller(lab: NetnsLab) -> str:
    pod = [p for p in lab.pods() if p.app == "ingress-nginx"][-1]
    pid = lab.container_pid(pod.name, "controller")
    if not pid:
        raise RuntimeError(f"controller of {pod.name} is not running")
    os.kill(pid, signal.SIGKILL)
    return f"killed the controller container of {pod.name}"


def stopped_election(lab: NetnsLab) -> str:
    for pod in [p for p in lab.pods() if p.app == "ingress-nginx"]:
        pid = lab.container_pid(pod.name, "leader-election")
        if pid:
            os.kill(pid, signal.SIGKILL)
    # killed, they cannot release the lease: it expires after its duration
    lease = lab.lease() or {}
    time.sleep(max(0.0, float(lease.get("renewTime", 0)) + float(lease.get("leaseDurationSeconds", 0)) - time.time())
               + 0.2)
    return "killed the leader-election container of every controller"


def arp_replies_dropped(lab: NetnsLab) -> str:
    address = lab.plan.ingress_service.load_balancer_ip
    node = next(n for n, s in lab.speakers().items() if s and address in s.get("announcing", []))
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


CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    Fault("route", "a node lost its route to another node's pod subnet", 5, missing_route,
          ("ip -n <lab>-<node> route", "ip -n <lab>-<node> route get <pod ip>")),
    Fault("forwarding", "a node stopped forwarding packets (ip_forward off)", 5, ip_forward_off,
          ("ip netns exec <lab>-<node> sysctl net.ipv4.ip_forward",)),
    Fault("sep-rule", "a KUBE-SEP chain lost its DNAT rule", 12, deleted_sep_rule,
          ("ip netns exec <lab>-<node> iptables-save -t nat | grep KUBE-SEP",)),
    Fault("reject-rule", "the REJECT rule of the Service without endpoints is gone", 11, missing_reject_rule,
          ("ip netns exec <lab>-<node> iptables-save -t filter",)),
    Fault("masquerade", "kube-proxy's KUBE-POSTROUTING no longer masquerades", 18, no_masquerade,
          ("ip netns exec <lab>-<node> iptables-save -t nat | grep -A3 KUBE-POSTROUTING",)),
    Fault("controller", "an ingress controller stopped", 16, stopped_controller,
          ("podpath status", "curl -H 'Host: demo.lab.local' http://<controller pod ip>/ from a node")),
    Fault("election", "no controller renews the leader lease", 16, stopped_election,
          ("podpath status", "cat /run/podpath/<lab>/leases/ingress-nginx/ingress-nginx-leader.json")),
    Fault("arp", "the announcing node's ARP answers never leave it", 13, arp_replies_dropped,
          ("ip netns exec <lab>-client arping -c 3 -i eth0 <MetalLB IP>",
           "ip netns exec <lab>-<node> nft list ruleset")),
    Fault("bridge-port", "a pod's veth is no longer a port of cni0", 4, detached_port,
          ("ip -n <lab>-<node> -d link show master cni0", "bridge -n <lab>-<node> link")),
    Fault("hairpin", "hairpin mode is off on a pod's bridge port", 9, hairpin_off,
          ("ip -n <lab>-<node> -d link show <veth> | grep hairpin",)),
    Fault("pod-address", "a pod has the wrong IP address", 1, wrong_pod_address,
          ("ip -n cni-<uuid> addr show eth0",)),
    Fault("pod-netns", "a pod's namespace file is gone from /var/run/netns", 1, removed_pod_namespace,
          ("ip netns list", "lsns -t net")),
    Fault("pod-link", "a pod's eth0 is down", 5, link_down,
          ("ip -n cni-<uuid> link show eth0",)),
]}


def pick(seed: int) -> Fault:
    """The fault a drill with SEED uses: the same seed, the same fault, for the whole class."""
    names = sorted(CATALOGUE)
    return CATALOGUE[names[random.Random(seed).randrange(len(names))]]
