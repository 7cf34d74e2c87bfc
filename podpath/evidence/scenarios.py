"""The verifier's scenarios: number and title, the list of docs/lab.md in one place."""
from __future__ import annotations

# A check that samples random choices (kube-proxy's endpoint pick) repeats up to this
# many times and stops as soon as it has seen everything: with 3 endpoints, the chance
# of missing one in 60 tries is below 1e-10.
MAX_TRIES = 60
# ...but a loop that has already seen this many failed requests stops: the check fails
# either way, and a broken hop should not cost MAX_TRIES timeouts.
FAILURES_ENOUGH = 3


def spread(ask, name_of, expected: set[str]) -> tuple[dict[str, int], list[str]]:
    """Send requests with ASK (a function that sends one or more and returns their answers,
    each with status, error and headers) until every name of EXPECTED has answered (NAME_OF
    an answer is who served it), MAX_TRIES were sent, or FAILURES_ENOUGH failed:
    ({name: answers}, [what each failed request got])."""
    served: dict[str, int] = {}
    failures: list[str] = []
    sent = 0
    while sent < MAX_TRIES:
        answers = ask()
        if not answers:
            break
        for answer in answers:
            sent += 1
            if answer.status != 200:
                failures.append(answer.error or f"HTTP {answer.status}")
                if len(failures) >= FAILURES_ENOUGH:
                    return served, failures
                continue
            name = name_of(answer) or "?"
            served[name] = served.get(name, 0) + 1
            if expected <= set(served):
                return served, failures
    return served, failures

SCENARIOS: dict[int, str] = {
    1: "pod namespaces are under /var/run/netns (cni-*), have eth0 with the pod IP, and outlive their containers",
    2: "a pause process holds each pod's network namespace",
    3: "the containers of a pod share one IP and reach each other on localhost",
    4: "each pod's host-side veth is a port of its node's cni0",
    5: "pod -> pod on the same node, and across nodes through flannel.1 (vxlan) or via the other node (host-gw)",
    6: "node -> pod (its own, and across nodes through the same hop) and pod -> node",
    7: "pod -> Service ClusterIP reaches every endpoint",
    8: "node -> Service ClusterIP",
    9: "a pod reaches itself through its own Service (hairpin)",
    10: "NodePort on the local node and on a remote node",
    11: "a Service with no endpoints rejects the connection",
    12: "kube-proxy sends each Service address to its endpoints, each with the same chance (iptables: "
        "KUBE-SVC -> KUBE-SEP with probabilities 1/n, 1/(n-1), ...; nftables: numgen random mod n)",
    13: "exactly one node answers ARP for the MetalLB IP, and it is the elected one",
    14: "the MetalLB IP moves to another node when the announcing node fails",
    15: "client -> MetalLB IP -> ingress: all controllers serve over repeated requests",
    16: "exactly one controller holds the leader lease, and every controller serves",
    17: "the ingress routes the demo host to the backend Service; an unknown host gets 404",
    18: "source IP: kept pod -> ClusterIP; SNATed for externalTrafficPolicy Cluster",
    19: "the traced path of one request: ARP, DNAT rule, controller, backend",
}


# Where each scenario looks, and what a student types next to see that hop for themselves:
# (the hop, the command on a netns lab, the command on a cluster lab). In the commands,
# {lab} is the lab's name and {nodes} its node names; a cluster's commands run from the
# project folder, through Vagrant.
LOOK: dict[int, tuple[str, str, str]] = {
    1: ("the pod's network namespace",
        "podpath status --lab {lab} --json   # each pod's netns; then: ip netns exec <it> ip -4 addr show eth0",
        "vagrant ssh <node> -c 'ls /var/run/netns; sudo lsns -t net'"),
    2: ("the pause process that holds the pod's namespace",
        "lsns -t net | grep podpath-pause; podpath status --lab {lab}   # the PAUSE column",
        "vagrant ssh <node> -c 'sudo lsns -t net | grep pause'"),
    3: ("the namespaces the pod's containers share",
        "podpath status --lab {lab} --json   # then: lsns -p <container pid>",
        "vagrant ssh <node> -c 'sudo crictl ps; sudo lsns -p <container pid>'"),
    4: ("the pod's veth and the node's bridge cni0",
        "for n in {nodes}; do ip -n {lab}-$n link show master cni0; done",
        "vagrant ssh <node> -c 'ip link show master cni0'"),
    5: ("pod -> pod, on one node through cni0 and between nodes through the tunnel",
        "for n in {nodes}; do ip -n {lab}-$n route; done",
        "vagrant ssh <node> -c 'ip route; ip -d link show flannel.1'"),
    6: ("node -> pod and pod -> node",
        "for n in {nodes}; do ip -n {lab}-$n route; done",
        "vagrant ssh <node> -c 'ip route'"),
    7: ("pod -> ClusterIP: kube-proxy's DNAT in the nat table",
        "ip netns exec {lab}-<node> iptables-save -t nat | grep KUBE-SVC",
        "vagrant ssh <node> -c 'sudo iptables-save -t nat | grep KUBE-SVC'"),
    8: ("node -> ClusterIP: the nat table's OUTPUT chain",
        "ip netns exec {lab}-<node> iptables -t nat -L OUTPUT -n -v",
        "vagrant ssh <node> -c 'sudo iptables -t nat -L OUTPUT -n -v'"),
    9: ("a pod -> its own Service -> itself: hairpin on its bridge port",
        "for n in {nodes}; do ip -n {lab}-$n -d link show master cni0 | grep -o 'hairpin [a-z]*'; done",
        "vagrant ssh <node> -c 'ip -d link show master cni0 | grep -o \"hairpin [a-z]*\"'"),
    10: ("NodePort: KUBE-NODEPORTS in the nat table",
         "ip netns exec {lab}-<node> iptables-save -t nat | grep KUBE-NODEPORTS",
         "vagrant ssh <node> -c 'sudo iptables-save -t nat | grep KUBE-NODEPORTS'"),
    11: ("a Service without endpoints: the filter table's REJECT",
         "for n in {nodes}; do ip netns exec {lab}-$n iptables-save -t filter | grep 'has no endpoints'; done",
         "vagrant ssh <node> -c 'sudo iptables-save -t filter | grep \"has no endpoints\"'"),
    12: ("kube-proxy's chains and their probabilities",
         "ip netns exec {lab}-<node> iptables-save -t nat | grep -E 'KUBE-(SVC|SEP)'",
         "vagrant ssh <node> -c 'sudo iptables-save -t nat | grep -E \"KUBE-(SVC|SEP)\"'"),
    13: ("ARP for the MetalLB address on the LAN",
         "ip netns exec {lab}-client arping -c 2 -I eth0 <MetalLB address>",
         "ip neigh   # after a curl to the MetalLB address; or: vagrant ssh cp1 -c 'sudo arping -c 2 <address>'"),
    14: ("the MetalLB address after its node fails",
         "podpath status --lab {lab}",
         "kubectl -n metallb-system logs -l component=speaker --tail 20"),
    15: ("client -> MetalLB address -> the ingress controllers",
         "ip netns exec {lab}-client curl -sv -H 'Host: <ingress host>' http://<MetalLB address>/",
         "curl -sv -H 'Host: <ingress host>' http://<MetalLB address>/"),
    16: ("the leader lease of the ingress controllers",
         "podpath status --lab {lab}",
         "kubectl -n ingress-nginx get lease -o wide"),
    17: ("the ingress's host rule -> the backend Service",
         "ip netns exec {lab}-client curl -s -H 'Host: <ingress host>' http://<MetalLB address>/",
         "kubectl get ingress -A; curl -s -H 'Host: <ingress host>' http://<MetalLB address>/"),
    18: ("the source address each hop sees (SNAT)",
         "ip netns exec {lab}-<node> iptables-save -t nat | grep -E 'MASQUERADE|KUBE-MARK'",
         "vagrant ssh <node> -c 'sudo iptables-save -t nat | grep MASQUERADE'"),
    19: ("the whole path of one request",
         "podpath trace --lab {lab}",
         "pytest --hosts=ansible://all tests/verify -m 'scenario(19)'"),
}


# The scenarios whose hop is kube-proxy's rules, in nftables mode (the topology's
# kube_proxy.mode): the same hops, in the table ip kube-proxy. The others are the same in both modes.
LOOK_NFTABLES: dict[int, tuple[str, str, str]] = {
    7: ("pod -> ClusterIP: kube-proxy's DNAT, through the map service-ips",
        "ip netns exec {lab}-<node> nft list map ip kube-proxy service-ips",
        "vagrant ssh <node> -c 'sudo nft list map ip kube-proxy service-ips'"),
    8: ("node -> ClusterIP: the chain nat-output (hook output)",
        "ip netns exec {lab}-<node> nft list chain ip kube-proxy nat-output",
        "vagrant ssh <node> -c 'sudo nft list chain ip kube-proxy nat-output'"),
    10: ("NodePort: the map service-nodeports",
         "ip netns exec {lab}-<node> nft list map ip kube-proxy service-nodeports",
         "vagrant ssh <node> -c 'sudo nft list map ip kube-proxy service-nodeports'"),
    11: ("a Service without endpoints: the map no-endpoint-services and reject-chain",
         "for n in {nodes}; do ip netns exec {lab}-$n nft list map ip kube-proxy no-endpoint-services; done",
         "vagrant ssh <node> -c 'sudo nft list map ip kube-proxy no-endpoint-services'"),
    12: ("kube-proxy's chains and each endpoint's chance",
         "ip netns exec {lab}-<node> nft list table ip kube-proxy | grep -E 'numgen|dnat to'",
         "vagrant ssh <node> -c 'sudo nft list table ip kube-proxy | grep -E \"numgen|dnat to\"'"),
    18: ("the source address each hop sees (SNAT)",
         "ip netns exec {lab}-<node> nft list chain ip kube-proxy masquerading",
         "vagrant ssh <node> -c 'sudo nft list chain ip kube-proxy masquerading'"),
}


def look(number: int, mode: str = "iptables") -> tuple[str, str, str]:
    """Where scenario NUMBER looks, and the commands that show it, for kube-proxy's MODE."""
    if mode == "nftables" and number in LOOK_NFTABLES:
        return LOOK_NFTABLES[number]
    return LOOK[number]


# The lab's edge (the topology's edge) changes what scenarios 15-17 and 19 look at: with
# gateway-api, NGINX Gateway Fabric's data-plane pods stand where the ingress controllers
# stand, configured from a Gateway and an HTTPRoute, and with no leader election.
GATEWAY_SCENARIOS: dict[int, str] = {
    15: "client -> MetalLB IP -> Gateway: all data-plane pods serve over repeated requests",
    16: "every data-plane pod serves the Gateway's listener itself (NGF's data plane elects no leader)",
    17: "the HTTPRoute sends the listener's host and path to the backend Service with its added header; "
        "an unknown host or path gets 404",
    19: "the traced path of one request: ARP, DNAT rule, Gateway and HTTPRoute, data-plane pod, backend",
}

GATEWAY_LOOK: dict[int, tuple[str, str, str]] = {
    15: ("client -> MetalLB address -> the Gateway's data-plane pods",
         "ip netns exec {lab}-client curl -sv -H 'Host: <ingress host>' http://<MetalLB address>/",
         "curl -sv -H 'Host: <ingress host>' http://<MetalLB address>/"),
    16: ("each data-plane pod of the Gateway, asked directly",
         "podpath status --lab {lab}",
         "kubectl get pods -A -l gateway.networking.k8s.io/gateway-name -o wide"),
    17: ("the Gateway's listener and the HTTPRoute's rule -> the backend Service",
         "cat /run/podpath/{lab}/pods/<data-plane pod>/nginx.conf",
         "kubectl get gateway,httproute -A; kubectl describe httproute -A"),
    19: ("the whole path of one request",
         "podpath trace --lab {lab}",
         "pytest --hosts=ansible://all tests/verify -m 'scenario(19)'"),
}


def titles(edge: str = "ingress-nginx") -> dict[int, str]:
    """Every scenario's title, as the lab's EDGE has it."""
    if edge == "gateway-api":
        return {**SCENARIOS, **GATEWAY_SCENARIOS}
    return dict(SCENARIOS)


def look_at(number: int, mode: str = "iptables", edge: str = "ingress-nginx") -> tuple[str, str, str]:
    """look(), for a lab whose edge is EDGE too."""
    if edge == "gateway-api" and number in GATEWAY_LOOK:
        return GATEWAY_LOOK[number]
    return look(number, mode)
