"""The verifier's scenarios: number and title, the list of docs/lab.md in one place."""
from __future__ import annotations

# A check that samples random choices (kube-proxy's endpoint pick) repeats up to this
# many times and stops as soon as it has seen everything: with 3 endpoints, the chance
# of missing one in 60 tries is below 1e-10.
MAX_TRIES = 60
# ...but a loop that has already seen this many failed requests stops: the check fails
# either way, and a broken hop should not cost MAX_TRIES timeouts.
FAILURES_ENOUGH = 3

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
    12: "kube-proxy chains KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP with probabilities 1/n, 1/(n-1), ...",
    13: "exactly one node answers ARP for the MetalLB IP, and it is the elected one",
    14: "the MetalLB IP moves to another node when the announcing node fails",
    15: "client -> MetalLB IP -> ingress: all controllers serve over repeated requests",
    16: "exactly one controller holds the leader lease, and every controller serves",
    17: "the ingress routes the demo host to the backend Service; an unknown host gets 404",
    18: "source IP: kept pod -> ClusterIP; SNATed for externalTrafficPolicy Cluster",
    19: "the traced path of one request: ARP, DNAT rule, controller, backend",
}
