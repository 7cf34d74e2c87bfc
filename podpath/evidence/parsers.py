"""Pure parsers of what the lab's real tools print: kubectl, crictl, lsns, ip, iptables-save,
nft -j, conntrack, arping, arp, curl and /proc.

Every function here is a function of a tool's output only (no command is run), so
tests/unit/test_parsers.py checks each one on samples of that output. A parser that
cannot read its input raises ProbeError naming the node or pod the output came from
(the caller passes that as `what`).
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from podpath.evidence.lab import Http, Lease, ProbeError, Result

# -- parsed objects -------------------------------------------------------------------------

@dataclass
class K8sPod:
    name: str
    namespace: str
    node: str
    ip: str
    uid: str
    phase: str
    containers: list[str]
    ready: bool
    restarts: dict[str, int] = field(default_factory=dict)
    container_ids: dict[str, str] = field(default_factory=dict)  # name -> runtime id, no "containerd://"
    share_process_namespace: bool = False

    def __str__(self) -> str:
        return f"{self.name} on {self.node}"


@dataclass
class K8sNode:
    name: str
    internal_ip: str
    pod_cidr: str
    ready: bool
    labels: dict[str, str]
    network_unavailable: bool = False  # the NetworkUnavailable condition is True


@dataclass
class Endpoint:
    ip: str
    ready: bool
    pod: str | None
    node: str | None
    ports: dict[str, int]  # port name -> port


@dataclass
class Sandbox:
    id: str
    netns_path: str
    pid: int
    state: str


@dataclass
class NetNamespace:
    inode: int
    nprocs: int
    pid: int | None
    command: str
    nsfs: list[str]


@dataclass
class Rule:
    chain: str
    words: list[str]
    packets: int | None = None
    bytes: int | None = None

    def option(self, name: str) -> str | None:
        return self.words[self.words.index(name) + 1] if name in self.words[:-1] else None

    @property
    def target(self) -> str:
        return self.option("-j") or ""


@dataclass
class SepEntry:
    """One endpoint's chain on a Service's path (KUBE-SEP-*, or endpoint-* in nftables mode)."""
    chain: str
    probability: float | None  # iptables: the rule's --probability; None: taken unconditionally (the last)
    destinations: list[str]  # the DNAT rules' destinations, ip:port (one, when healthy)
    dnat_packets: int | None = None
    share: float | None = None  # the chance that a new connection is sent here, of all of them


@dataclass
class ServicePath:
    entry_chain: str  # KUBE-SVC-*/service-* (ClusterIP) or KUBE-EXT-*/external-* (load balancer IP, NodePort)
    svc_chain: str
    seps: list[SepEntry]
    numgen: dict[str, Any] | None = None  # nftables: {"mod": n, "offset": o, "indexes": {i: chain}}


# -- parsers (pure) ---------------------------------------------------------------------------

def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        shown = (text or "").strip()[:200]
        raise ProbeError(f"{what}: expected JSON, got {shown!r} ({exc})") from None


def _items(data: Any, what: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("items", []), list):
        raise ProbeError(f"{what}: expected a JSON object with a list of items")
    return [i for i in data.get("items") or [] if isinstance(i, dict)]


def parse_pods(text: str, what: str = "kubectl get pods") -> list[K8sPod]:
    pods = []
    for item in _items(parse_json(text, what), what):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        name = meta.get("name")
        if not name:
            raise ProbeError(f"{what}: a pod without metadata.name")
        statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        pods.append(K8sPod(
            name=name, namespace=meta.get("namespace", ""), node=spec.get("nodeName") or "",
            ip=status.get("podIP") or "", uid=meta.get("uid", ""), phase=status.get("phase", "Unknown"),
            containers=[c.get("name", "") for c in spec.get("containers") or []],
            ready=conditions.get("Ready") == "True",
            restarts={n: int(s.get("restartCount", 0)) for n, s in statuses.items()},
            container_ids={n: (s.get("containerID") or "").split("://", 1)[-1] for n, s in statuses.items()
                           if s.get("containerID")},
            share_process_namespace=spec.get("shareProcessNamespace") is True))
    return pods


def parse_nodes(text: str, what: str = "kubectl get nodes") -> dict[str, K8sNode]:
    nodes = {}
    for item in _items(parse_json(text, what), what):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        nodes[meta.get("name", "")] = K8sNode(
            name=meta.get("name", ""), internal_ip=addresses.get("InternalIP", ""), pod_cidr=spec.get("podCIDR", ""),
            ready=conditions.get("Ready") == "True", labels=dict(meta.get("labels") or {}),
            network_unavailable=conditions.get("NetworkUnavailable") == "True")
    return nodes


def parse_endpoint_slices(text: str, what: str = "kubectl get endpointslices") -> list[Endpoint]:
    endpoints = []
    for item in _items(parse_json(text, what), what):
        ports = {p.get("name") or "": int(p["port"]) for p in item.get("ports") or [] if p.get("port") is not None}
        for ep in item.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            # ready is "unknown" when absent, which consumers read as ready
            ready = (ep.get("conditions") or {}).get("ready") is not False
            for address in ep.get("addresses") or []:
                endpoints.append(Endpoint(ip=address, ready=ready, pod=ref.get("name"), node=ep.get("nodeName"),
                                          ports=ports))
    return endpoints


def parse_time(stamp: str | None) -> float | None:
    """An RFC 3339 time of the API (2026-05-20T10:00:00.123456Z) as seconds since the epoch."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ProbeError(f"cannot read the time {stamp!r}") from None


def parse_lease(text: str, what: str = "kubectl get lease") -> Lease:
    data = parse_json(text, what)
    spec = data.get("spec") or {} if isinstance(data, dict) else {}
    duration = spec.get("leaseDurationSeconds")
    return Lease(holder=spec.get("holderIdentity"), renew_time=parse_time(spec.get("renewTime")),
                 duration=float(duration) if duration is not None else None)


def parse_service(text: str, what: str = "kubectl get service") -> dict:
    """The fields of a Service the checks use: cluster_ip, ports {name: {...}}, lb_ips, policy."""
    data = parse_json(text, what)
    if not isinstance(data, dict):
        raise ProbeError(f"{what}: expected a JSON object")
    spec, status = data.get("spec") or {}, data.get("status") or {}
    return {"cluster_ip": spec.get("clusterIP"), "type": spec.get("type"),
            "policy": spec.get("externalTrafficPolicy"),
            "ports": {p.get("name") or "": p for p in spec.get("ports") or []},
            "lb_ips": [i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]}


def parse_crictl_pods(text: str, name: str, namespace: str, uid: str, what: str) -> list[str]:
    """Ids of the ready sandboxes of one pod in `crictl pods -o json` (its --name is a regexp)."""
    data = parse_json(text, what)
    ids = []
    for item in (data.get("items") or []) if isinstance(data, dict) else []:
        meta = item.get("metadata") or {}
        if meta.get("name") == name and meta.get("namespace") == namespace and (not uid or meta.get("uid") == uid):
            if item.get("state") == "SANDBOX_READY":
                ids.append(item["id"])
    return ids


def parse_crictl_inspectp(text: str, what: str) -> Sandbox:
    """The network namespace path and the pause pid of a sandbox (`crictl inspectp ID`)."""
    data = parse_json(text, what)
    if not isinstance(data, dict):
        raise ProbeError(f"{what}: expected a JSON object")
    status, info = data.get("status") or {}, data.get("info") or {}
    spaces = (((info.get("runtimeSpec") or {}).get("linux") or {}).get("namespaces")) or []
    paths = [n.get("path") for n in spaces if n.get("type") == "network" and n.get("path")]
    if not paths:
        raise ProbeError(f"{what}: the sandbox's runtime spec names no network namespace path "
                         "(hostNetwork pod, or a runtime that does not report info.runtimeSpec)")
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise ProbeError(f"{what}: the sandbox reports no pause pid (info.pid is {pid!r})")
    return Sandbox(id=status.get("id", ""), netns_path=paths[0], pid=pid, state=status.get("state", ""))


def parse_lsns(text: str, what: str = "lsns -t net -J") -> dict[int, NetNamespace]:
    """Network namespaces by inode. util-linux before 2.37 prints numbers as strings; both are read."""
    data = parse_json(text, what)
    if not isinstance(data, dict) or not isinstance(data.get("namespaces"), list):
        raise ProbeError(f"{what}: expected {{\"namespaces\": [...]}}")
    spaces = {}
    for entry in data["namespaces"]:
        try:
            inode = int(entry["ns"])
        except (KeyError, TypeError, ValueError):
            raise ProbeError(f"{what}: an entry without a namespace inode: {entry!r}") from None
        pid = entry.get("pid")
        nsfs = entry.get("nsfs") or ""
        spaces[inode] = NetNamespace(inode=inode, nprocs=int(entry.get("nprocs") or 0),
                                     pid=int(pid) if pid not in (None, "") else None,
                                     command=entry.get("command") or "",
                                     nsfs=[p for p in str(nsfs).split("\n") if p])
    return spaces


def parse_ns_link(text: str, what: str, kind: str = "net") -> int:
    """The inode of `readlink /proc/PID/ns/KIND` (net:[4026532301])."""
    match = re.fullmatch(rf"{re.escape(kind)}:\[(\d+)\]", text.strip())
    if not match:
        raise ProbeError(f"{what}: expected {kind}:[INODE], got {text.strip()!r}")
    return int(match.group(1))


# Run by `sh -c` in a container (kubectl exec, nsenter -a): its own pid, then every process it
# sees, one "PID COMM" a line. The glob is expanded before the loop's $(cat) subshells start,
# so the only process of its own it lists is the shell, which parse_processes leaves out.
PROCESSES_SCRIPT = ('echo "self $$"; for d in /proc/[0-9]*; do '
                    'echo "${d#/proc/} $(cat "$d/comm" 2>/dev/null)"; done')


def parse_processes(text: str, what: str) -> dict[int, str]:
    """PID -> comm of every process PROCESSES_SCRIPT's output lists, but the shell that listed
    them; a process that exited while it was listed (no comm) is left out."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("self "):
        raise ProbeError(f"{what}: expected the listing's own pid first, got {text[:200]!r}")
    me = lines[0].split()[1]
    found = {}
    for line in lines[1:]:
        pid, _, comm = line.strip().partition(" ")
        if not pid.isdigit():
            raise ProbeError(f"{what}: {line!r} is not 'PID COMM'")
        if pid != me and comm:
            found[int(pid)] = comm
    return found


def processes_seen(out: Result, what: str) -> dict[int, str]:
    """PID -> comm from a run OUT of PROCESSES_SCRIPT in a container (WHAT says where and how:
    the command a student would type); a run that failed is a ProbeError naming WHAT."""
    if not out.ok:
        raise ProbeError(f"{what} failed (exit {out.rc}): {out.stderr.strip()[:200]}")
    return parse_processes(out.stdout, what)


_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]\s+")


def parse_iptables_save(text: str) -> dict[str, list[Rule]]:
    """Chain -> its rules, from `iptables-save [-c] -t TABLE` (quoting undone, counters kept)."""
    chains: dict[str, list[Rule]] = {}
    for line in text.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
            continue
        packets = size = None
        match = _COUNTERS.match(line)
        if match:
            packets, size = int(match.group(1)), int(match.group(2))
            line = line[match.end():]
        if line.startswith("-A "):
            words = shlex.split(line)
            chains.setdefault(words[1], []).append(Rule(words[1], words[2:], packets, size))
    return chains


def service_path(chains: dict[str, list[Rule]], ip: str, port: int) -> ServicePath | None:
    """Follow kube-proxy's chains for IP:PORT: KUBE-SERVICES -> KUBE-SVC (or KUBE-EXT -> KUBE-SVC) ->
    KUBE-SEP with their probabilities and DNAT destinations. None if KUBE-SERVICES has no rule for it."""
    entry = next((r for r in chains.get("KUBE-SERVICES", []) if r.option("-d") == f"{ip}/32"
                  and r.option("--dport") == str(port)), None)
    return _iptables_path(chains, entry.target) if entry else None


def _iptables_path(chains: dict[str, list[Rule]], entry: str) -> ServicePath:
    svc = entry
    if svc.startswith("KUBE-EXT-"):
        # the external chain marks for masquerade (policy Cluster), then jumps to the service chain
        jumps = [r.target for r in chains.get(svc, []) if r.target.startswith(("KUBE-SVC-", "KUBE-SVL-"))]
        svc = jumps[-1] if jumps else svc
    seps = []
    left = 1.0  # the chance that a connection gets as far as the next rule
    for rule in chains.get(svc, []):
        if not rule.target.startswith("KUBE-SEP-"):
            continue
        probability = rule.option("--probability")
        taken = float(probability) if probability else 1.0
        dnat = [r for r in chains.get(rule.target, []) if r.target == "DNAT"]
        seps.append(SepEntry(chain=rule.target, probability=float(probability) if probability else None,
                             destinations=[r.option("--to-destination") or "" for r in dnat],
                             dnat_packets=sum(r.packets or 0 for r in dnat) if any(
                                 r.packets is not None for r in dnat) else None, share=left * taken))
        left *= 1.0 - taken
    return ServicePath(entry_chain=entry, svc_chain=svc, seps=seps)


def parse_iptables_tables(text: str) -> dict[str, dict[str, list[Rule]]]:
    """Table -> chain -> its rules, from a whole `iptables-save` (each *TABLE section apart:
    KUBE-SERVICES is a chain of both the nat and the filter table)."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        elif current is not None and line != "COMMIT":
            current.append(line)
    return {name: parse_iptables_save("\n".join(lines)) for name, lines in tables.items()}


# -- kube-proxy's rules in either mode -------------------------------------------------------------

class KubeProxyRules:
    """kube-proxy's rules on one node, as the verifier and `podpath trace` ask them, whichever
    mode wrote them: where a Service address leads (its chains, each endpoint's share and DNAT),
    where a NodePort enters, whether a new connection to an address is rejected, and which
    mark is masqueraded."""

    mode = ""
    mark_chain = ""  # the chain that marks a packet for masquerade

    def service_path(self, ip: str, port: int) -> ServicePath | None:
        raise NotImplementedError

    def node_port_path(self, port: int) -> ServicePath | None:
        raise NotImplementedError

    def chain_names(self) -> list[str]:
        raise NotImplementedError

    def rejects(self, ip: str, port: int) -> str | None:
        """How a new TCP connection to IP:PORT is rejected (its way through the rules), or None."""
        raise NotImplementedError

    def masquerade(self) -> tuple[int | None, int | None, str]:
        """(the mark mark_chain sets, the mark postrouting masquerades, how), None where missing."""
        raise NotImplementedError

    def marks(self, chain: str) -> bool:
        """Whether every packet through CHAIN is marked for masquerade (an unconditional jump)."""
        raise NotImplementedError


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 0) if text else None
    except ValueError:
        return None


class IptablesRules(KubeProxyRules):
    """From a whole `iptables-save` (nat and filter tables)."""

    mode = "iptables"
    mark_chain = "KUBE-MARK-MASQ"

    def __init__(self, text: str):
        self.tables = parse_iptables_tables(text)
        self.nat = self.tables.get("nat", {})
        self.filter = self.tables.get("filter", {})

    def service_path(self, ip: str, port: int) -> ServicePath | None:
        return service_path(self.nat, ip, port)

    def node_port_path(self, port: int) -> ServicePath | None:
        entry = next((r for r in self.nat.get("KUBE-NODEPORTS", []) if r.option("--dport") == str(port)), None)
        return _iptables_path(self.nat, entry.target) if entry else None

    def chain_names(self) -> list[str]:
        return sorted(set(self.nat) | set(self.filter))

    def rejects(self, ip: str, port: int) -> str | None:
        rule = next((r for r in self.filter.get("KUBE-SERVICES", []) if r.target == "REJECT"
                     and r.option("-d") == f"{ip}/32" and r.option("--dport") == str(port)), None)
        hooks = [hook for hook in ("FORWARD", "OUTPUT")
                 if any(r.target == "KUBE-SERVICES" for r in self.filter.get(hook, []))]
        if rule is None or len(hooks) < 2:
            return None
        return (f"filter {'/'.join(hooks)} -> KUBE-SERVICES -> REJECT "
                f"{rule.option('--reject-with') or ''}".rstrip())

    def masquerade(self) -> tuple[int | None, int | None, str]:
        sets = [r.option("--set-xmark") for r in self.nat.get(self.mark_chain, []) if r.target == "MARK"]
        set_mark = _hex(sets[0].split("/")[0]) if sets else None
        post = self.nat.get("KUBE-POSTROUTING", [])
        hooked = any(r.target == "KUBE-POSTROUTING" for r in self.nat.get("POSTROUTING", []))
        skip = next((r for r in post if r.target == "RETURN" and "!" in r.words and "--mark" in r.words), None)
        masq = any(r.target == "MASQUERADE" for r in post)
        masq_mark = _hex(skip.option("--mark").split("/")[0]) if hooked and skip and masq else None
        return set_mark, masq_mark, "nat POSTROUTING -> KUBE-POSTROUTING -> MASQUERADE"

    def marks(self, chain: str) -> bool:
        for rule in self.nat.get(chain, []):
            words = [w for i, w in enumerate(rule.words) if w not in ("-m", "comment", "--comment")
                     and not (i and rule.words[i - 1] == "--comment")]
            if words == ["-j", self.mark_chain]:
                return True
        return False


def _nft_value(value: Any) -> str:
    if isinstance(value, dict) and "prefix" in value:
        return f"{value['prefix']['addr']}/{value['prefix']['len']}"
    return str(value)


def _nft_key(key: Any) -> tuple[str, ...]:
    if isinstance(key, dict) and "elem" in key:  # an element with a comment
        key = key["elem"].get("val")
    if isinstance(key, dict) and "concat" in key:
        return tuple(_nft_value(v) for v in key["concat"])
    return (_nft_value(key),)


def _nft_verdict(data: Any) -> tuple[str, str | None]:
    """("goto", chain), ("jump", chain), ("drop", None), ..."""
    if isinstance(data, dict) and data:
        kind, arg = next(iter(data.items()))
        return kind, (arg or {}).get("target") if isinstance(arg, dict) else None
    return str(data), None


class NftablesRules(KubeProxyRules):
    """From `nft -j list table ip kube-proxy`: its chains (with their hooks), maps and sets."""

    mode = "nftables"
    mark_chain = "mark-for-masquerade"

    def __init__(self, text: str, what: str = "nft -j list table ip kube-proxy"):
        data = parse_json(text, what)
        if not isinstance(data, dict) or not isinstance(data.get("nftables"), list):
            raise ProbeError(f"{what}: expected nft's JSON ({{\"nftables\": [...]}})")
        self.chains: dict[str, list[list[dict]]] = {}  # chain -> its rules' expressions, in order
        self.comments: dict[str, list[str | None]] = {}
        self.hooks: dict[str, tuple[str, str, int]] = {}  # base chain -> (type, hook, priority)
        self.maps: dict[str, dict[tuple[str, ...], tuple[str, str | None]]] = {}
        self.sets: dict[str, list[str]] = {}
        for obj in data["nftables"]:
            if not isinstance(obj, dict):
                continue
            if "chain" in obj:
                chain = obj["chain"]
                self.chains.setdefault(chain["name"], [])
                self.comments.setdefault(chain["name"], [])
                if chain.get("hook"):
                    self.hooks[chain["name"]] = (chain.get("type", ""), chain["hook"], int(chain.get("prio", 0)))
            elif "rule" in obj:
                rule = obj["rule"]
                self.chains.setdefault(rule["chain"], []).append(rule.get("expr") or [])
                self.comments.setdefault(rule["chain"], []).append(rule.get("comment"))
            elif "map" in obj:
                found = self.maps.setdefault(obj["map"]["name"], {})
                for key, verdict in obj["map"].get("elem") or []:
                    found[_nft_key(key)] = _nft_verdict(verdict)
            elif "set" in obj:
                self.sets[obj["set"]["name"]] = [_nft_key(e)[0] for e in obj["set"].get("elem") or []]

    def _resolve(self, verdict: tuple[str, str | None] | None) -> ServicePath | None:
        if not verdict or verdict[0] not in ("goto", "jump") or not verdict[1]:
            return None
        entry = svc = verdict[1]
        if entry.startswith("external-"):
            # marks (policy Cluster) or short-circuits some sources (Local), then goes to the policy chain
            last = [self._verdict_of(expr) for expr in self.chains.get(entry, []) if len(expr) == 1]
            policy = [target for kind, target in last if kind in ("goto", "jump") and target != self.mark_chain]
            svc = policy[-1] if policy else entry
        path = ServicePath(entry_chain=entry, svc_chain=svc, seps=[])
        for expr in self.chains.get(svc, []):
            pick = next((e["vmap"] for e in expr if isinstance(e, dict) and "vmap" in e
                         and isinstance(e["vmap"].get("key"), dict) and "numgen" in e["vmap"]["key"]), None)
            if pick is None:
                continue
            numgen = pick["key"]["numgen"]
            indexes = {int(i): _nft_verdict(v)[1] for i, v in (pick.get("data") or {}).get("set", [])}
            mod = int(numgen.get("mod", 0)) or 1
            path.numgen = {"mode": numgen.get("mode"), "mod": mod, "offset": int(numgen.get("offset", 0)),
                           "indexes": indexes}
            for chain in dict.fromkeys(indexes.values()):
                share = sum(1 for i, c in indexes.items() if c == chain and 0 <= i - path.numgen["offset"] < mod)
                path.seps.append(SepEntry(chain=chain, probability=None, destinations=self._dnat(chain),
                                          share=share / mod))
            break
        return path

    @staticmethod
    def _verdict_of(expr: list[dict]) -> tuple[str, str | None]:
        return _nft_verdict(expr[0]) if expr else ("", None)

    def _dnat(self, chain: str) -> list[str]:
        found = []
        for expr in self.chains.get(chain, []):
            for e in expr:
                if isinstance(e, dict) and "dnat" in e:
                    found.append(f"{e['dnat'].get('addr')}:{e['dnat'].get('port')}")
        return found

    def service_path(self, ip: str, port: int) -> ServicePath | None:
        return self._resolve(self.maps.get("service-ips", {}).get((ip, "tcp", str(port))))

    def node_port_path(self, port: int) -> ServicePath | None:
        return self._resolve(self.maps.get("service-nodeports", {}).get(("tcp", str(port))))

    def chain_names(self) -> list[str]:
        return sorted(self.chains)

    def _jumps_to(self, chain: str, target: str) -> bool:
        return any(self._verdict_of(expr[-1:]) in (("jump", target), ("goto", target))
                   for expr in self.chains.get(chain, []))

    def _base_chains(self, type_: str, hook: str) -> list[str]:
        return [name for name, (t, h, _) in self.hooks.items() if t == type_ and h == hook]

    def rejects(self, ip: str, port: int) -> str | None:
        kind, chain = self.maps.get("no-endpoint-services", {}).get((ip, "tcp", str(port)), ("", None))
        if kind not in ("goto", "jump") or not any("reject" in e for expr in self.chains.get(chain, [])
                                                   for e in expr if isinstance(e, dict)):
            return None
        looks = [name for name, exprs in self.chains.items() for expr in exprs if any(
            isinstance(e, dict) and e.get("vmap", {}).get("data") == "@no-endpoint-services" for e in expr)]
        hooked = [hook for hook in ("forward", "output")
                  if any(self._jumps_to(base, check) for base in self._base_chains("filter", hook) for check in looks)]
        if len(hooked) < 2:
            return None
        return f"filter {'/'.join(hooked)} -> {'/'.join(looks)} -> @no-endpoint-services -> {chain}: reject"

    def masquerade(self) -> tuple[int | None, int | None, str]:
        set_mark = None
        for expr in self.chains.get(self.mark_chain, []):
            for e in expr:
                value = e.get("mangle", {}).get("value") if isinstance(e, dict) else None
                if isinstance(value, dict) and "|" in value:
                    set_mark = next((v for v in value["|"] if isinstance(v, int)), None)
        masq_mark, how = None, "no postrouting chain masquerades"
        for base in self._base_chains("nat", "postrouting"):
            for expr in self.chains.get(base, []):
                kind, target = self._verdict_of(expr[-1:])
                rules = self.chains.get(target or "", [])
                skip = next((e["match"]["left"]["&"] for r in rules for e in r if isinstance(e, dict)
                             and isinstance(e.get("match", {}).get("left"), dict) and "&" in e["match"]["left"]
                             and e["match"].get("right") == 0 and any("return" in x for x in r if isinstance(x, dict))),
                            None)
                masq = any("masquerade" in e for r in rules for e in r if isinstance(e, dict))
                if kind in ("jump", "goto") and skip and masq:
                    masq_mark = next((v for v in skip if isinstance(v, int)), None)
                    how = f"{base} (postrouting) -> {target} -> masquerade"
        return set_mark, masq_mark, how

    def marks(self, chain: str) -> bool:
        return any(expr == [{"jump": {"target": self.mark_chain}}] for expr in self.chains.get(chain, []))


def kube_proxy_rules(mode: str, text: str, what: str = "kube-proxy's rules") -> KubeProxyRules:
    """kube-proxy's rules of MODE from TEXT: a whole iptables-save, or nft -j list table ip kube-proxy."""
    if mode == "nftables":
        return NftablesRules(text, what)
    if mode == "iptables":
        return IptablesRules(text)
    raise ProbeError(f"{what}: kube-proxy mode {mode!r} is not one the verifier reads (iptables, nftables)")


def parse_conntrack(text: str) -> list[dict[str, str]]:
    """Each TCP entry of `conntrack -L`: its original and reply src, dst, sport, dport."""
    entries = []
    for line in text.splitlines():
        if not line.startswith("tcp"):
            continue
        pairs = re.findall(r"\b(src|dst|sport|dport)=(\S+)", line)
        half = len(pairs) // 2
        entry = {f"orig_{k}": v for k, v in pairs[:half]}
        entry.update({f"reply_{k}": v for k, v in pairs[half:]})
        entries.append(entry)
    return entries


_MAC = re.compile(r"((?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2})")


def parse_arping(text: str) -> list[str]:
    """MACs of the replies, in order, from either arping (Habets' or iputils')."""
    macs = []
    for line in text.splitlines():
        if re.search(r"bytes from|reply from", line, re.IGNORECASE):
            match = _MAC.search(line)
            if match:
                macs.append(match.group(1).lower())
    return macs


def arping_argv(help_text: str, iface: str, ip: str, count: int) -> list[str]:
    """arping's command line: Habets' arping names the interface with -i, iputils' with -I."""
    flag = "-i" if "habets" in help_text.lower() else "-I"
    return ["arping", "-c", str(count), "-w", str(count + 1), flag, iface, ip]


def parse_announcer(l2_statuses: str | None, events: str | None, namespace: str, service: str) -> str | None:
    """The node MetalLB says announces SERVICE: its ServiceL2Status, else the newest nodeAssigned event."""
    if l2_statuses:
        for item in _items(parse_json(l2_statuses, "kubectl get servicel2statuses"), "servicel2statuses"):
            status = item.get("status") or {}
            if status.get("serviceName") == service and status.get("serviceNamespace") == namespace:
                return status.get("node")
    if events:
        found = []
        for item in _items(parse_json(events, "kubectl get events"), "events"):
            match = re.search(r'announcing from node "([^"]+)"', item.get("message") or "")
            if match and item.get("reason") == "nodeAssigned":
                stamp = item.get("lastTimestamp") or item.get("eventTime") or ""
                found.append((stamp, match.group(1)))
        if found:
            return max(found)[1]
    return None


# Marks the start of each answer in a batch of curl runs inside a pod.
BATCH_MARK = "@@podpath-answer"
# Runs "$@" (a curl command) $1 times; each answer follows a line "@@podpath-answer rc=N".
BATCH_SCRIPT = ('n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do i=$((i+1)); out=$("$@" 2>&1); rc=$?; '
                'printf "%s rc=%s\\n" "' + BATCH_MARK + '" "$rc"; printf "%s\\n" "$out"; done')


def parse_http_batch(text: str) -> list[Http]:
    answers = []
    for chunk in text.split(BATCH_MARK + " rc=")[1:]:
        rc_text, _, out = chunk.partition("\n")
        rc = int(rc_text.strip() or 1)
        answers.append(parse_http(Result(rc, out if rc == 0 else "", out if rc else "")))
    return answers


def node_side_addresses(nodes: dict[str, K8sNode]) -> set[str]:
    """Addresses a node SNATs to: its node IP, its cni0 (first address of its pod CIDR) and its
    flannel.1 (the pod CIDR's network address, which flannel's VXLAN device carries)."""
    found = set()
    for node in nodes.values():
        if node.internal_ip:
            found.add(node.internal_ip)
        if node.pod_cidr:
            net = ipaddress.ip_network(node.pod_cidr, strict=False)
            found |= {str(net.network_address), str(net.network_address + 1)}
    return found


# -- curl ---------------------------------------------------------------------------------------

CURL_ERRORS = {6: "could not resolve host", 7: "connection refused or no route", 28: "timed out",
               52: "empty reply", 56: "connection reset"}


def parse_http(out: Result) -> Http:
    """What `curl -sS -D - -o - URL` printed: the status line, the headers, the body."""
    if out.rc != 0:
        return Http(rc=out.rc, status=None, error=out.stderr.strip() or CURL_ERRORS.get(out.rc, f"curl exit {out.rc}"))
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    match = re.match(r"HTTP/\S+ (\d+)", lines[0]) if lines else None
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Http(rc=0, status=int(match.group(1)) if match else None, headers=headers, body=body.strip())


# -- /proc, ip, arp ---------------------------------------------------------------------------------

def parse_mountinfo_nsfs(text: str) -> dict[str, str]:
    """Mount point -> namespace ("net:[4026532301]") of every namespace bind mount (fstype
    nsfs) in /proc/PID/mountinfo, whose fourth field is the namespace a mount holds."""
    mounts = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] == ["nsfs"] and len(fields) >= 5:
            mounts[fields[4]] = fields[3]
    return mounts


def normalize_mac(mac: str) -> str:
    """aa:bb:cc:dd:ee:ff, from any of 8:0:27:a:b:c (BSD's arp), 08-00-27-AA-BB-CC (Windows)."""
    octets = re.split(r"[:-]", mac.strip())
    if len(octets) != 6 or not all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", o) for o in octets):
        raise ProbeError(f"{mac!r} is not a MAC address")
    return ":".join(o.lower().zfill(2) for o in octets)


def parse_ip_neigh(text: str, what: str = "ip -j neigh show") -> dict[str, str]:
    """Address -> MAC of the entries that have one, from `ip -j neigh show`."""
    data = parse_json(text or "[]", what)
    return {n["dst"]: normalize_mac(n["lladdr"]) for n in data if isinstance(n, dict) and n.get("dst")
            and n.get("lladdr")}


_BSD_ARP = re.compile(r"\((\d+\.\d+\.\d+\.\d+)\) at ((?:[0-9A-Fa-f]{1,2}:){5}[0-9A-Fa-f]{1,2})")


def parse_arp_an(text: str) -> dict[str, str]:
    """Address -> MAC from macOS's (BSD's) `arp -an`: "? (192.168.56.200) at 8:0:27:aa:bb:cc on
    vboxnet0 ifscope [ethernet]". Incomplete entries ("at (incomplete)") are left out."""
    return {ip: normalize_mac(mac) for ip, mac in _BSD_ARP.findall(text)}


def classify_host(system: str, release: str) -> str:
    """linux, wsl, macos or windows, from platform.system() and platform.release() (uname -sr):
    WSL2's kernel names itself in its release (5.15.153.1-microsoft-standard-WSL2)."""
    if system == "Linux":
        return "wsl" if "microsoft" in release.lower() else "linux"
    return {"Darwin": "macos", "Windows": "windows"}.get(system, system.lower())
