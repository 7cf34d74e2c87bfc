# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""The desired state of a set of network namespaces, checked and compared.

Pure functions, no system calls: `normalize` turns the module's arguments into one
shape and refuses bad input with a message that names the value and the fix;
`compare` takes that and what is on the system and returns the changes to make.
The module (library/podpath_netns.py) reads the system and applies the changes.

The module's ARGUMENT_SPEC has already checked the arguments' shape and types (lists,
mappings, booleans, required keys, unknown keys): `normalize` checks only what an
argument spec cannot say (names Linux accepts, addresses, how the pieces fit together).
"""
from __future__ import annotations

import ipaddress
import re

from ansible.module_utils.podpath_lab import IFNAME_MAX

NETNS_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SYSCTL_KEY = re.compile(r"^net(\.[A-Za-z0-9_-]+)+$")
HOSTNAME = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")
KINDS = ("bridge", "veth")
ROOT = None  # the namespace the module runs in


class SpecError(ValueError):
    """Bad input: the message names the value and how to fix it."""


def _where(ns) -> str:
    return "the root namespace" if ns is ROOT else "namespace %s" % ns


def _ifname(name, ns) -> str:
    if not name:
        raise SpecError("a link in %s has no name: give every link a name of 1 to %d bytes" % (_where(ns), IFNAME_MAX))
    if len(name.encode()) > IFNAME_MAX:
        raise SpecError("interface name %r in %s is %d bytes long; Linux allows at most %d: shorten it"
                        % (name, _where(ns), len(name.encode()), IFNAME_MAX))
    if not IFNAME.match(name):
        raise SpecError("interface name %r in %s has characters Linux refuses (/, spaces, ...): "
                        "use letters, digits, '.', '-' and '_'" % (name, _where(ns)))
    return name


def _netns_name(name) -> str:
    if not NETNS_NAME.match(name or "") or name in (".", ".."):
        raise SpecError("namespace name %r is not valid: use 1 to 64 letters, digits, '.', '-' or '_' "
                        "(no '/', no spaces)" % (name,))
    return name


def _interface(value, where: str):
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise SpecError("address %r on %s is not an IPv4 address with a prefix length: write it as "
                        "10.244.1.2/24" % (value, where))
    if iface.version != 4 or "/" not in str(value):
        raise SpecError("address %r on %s must be IPv4 with a prefix length, such as 10.244.1.2/24"
                        % (value, where))
    net = iface.network
    if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        raise SpecError("address %s on %s is the %s address of %s: pick a host address inside the subnet"
                        % (value, where, "network" if iface.ip == net.network_address else "broadcast", net))
    return iface


def _link(raw, ns, creator=True) -> tuple:
    name = _ifname(raw.get("name"), ns)
    kind = raw.get("kind") or ("veth" if raw.get("peer") else None)
    if kind not in KINDS:
        raise SpecError("link %s in %s has kind %r: use one of %s (a link with a peer is a veth)"
                        % (name, _where(ns), kind, ", ".join(KINDS)))
    addresses = raw.get("addresses") or []
    ifaces = [_interface(a, "%s in %s" % (name, _where(ns))) for a in addresses]
    if len(set(ifaces)) != len(ifaces):
        raise SpecError("link %s in %s lists an address twice: %s" % (name, _where(ns), addresses))
    link = {
        "kind": kind,
        "addresses": sorted(str(i) for i in ifaces),
        "master": raw.get("master"),
        "hairpin": raw.get("hairpin"),
        "up": True,  # every link the module makes is up
        "peer": None,
        "creates_pair": False,
    }
    if link["hairpin"] is not None and not link["master"]:
        raise SpecError("link %s in %s sets hairpin but has no master bridge: add master or drop hairpin"
                        % (name, _where(ns)))
    if kind == "bridge" and raw.get("peer"):
        raise SpecError("bridge %s in %s cannot have a peer: only veth links have one" % (name, _where(ns)))
    if kind == "veth" and creator and not raw.get("peer"):
        raise SpecError("veth %s in %s has no peer: give peer.name (and peer.namespace, or none for the "
                        "root namespace)" % (name, _where(ns)))
    return name, link


def normalize(namespaces, root_links=None, allow_root_namespace=False) -> dict:
    """Check the arguments and return {namespace: {links, routes, sysctls, holder, hostname}}.

    The root namespace is the key None. A veth is declared once, with its peer; the
    peer appears in its own namespace's links too, so both ends are compared.
    """
    state = {}
    if root_links:
        if not allow_root_namespace:
            raise SpecError("root_links would change the namespace the module runs in: set "
                            "allow_root_namespace: true (only on a machine meant for it, never on a shared host)")
        state[ROOT] = {"links": {}, "routes": [], "sysctls": {}, "holder": False, "hostname": None}
    for raw in namespaces or []:
        name = _netns_name(raw.get("name"))
        if name in state:
            raise SpecError("namespace %s is listed twice: merge the two entries" % name)
        sysctls = raw.get("sysctls") or {}
        for key in sysctls:
            if not SYSCTL_KEY.match(str(key)):
                raise SpecError("sysctl %r in namespace %s is not a per-namespace net.* key: only keys like "
                                "net.ipv4.ip_forward can be set per namespace" % (key, name))
        hostname = raw.get("hostname")
        if hostname is not None and not HOSTNAME.match(hostname):
            raise SpecError("hostname %r of namespace %s is not a valid host name: use 1 to 63 lower-case "
                            "letters, digits, '.' and '-'" % (hostname, name))
        # written as the kernel prints them back, so that what is read compares equal
        values = {str(k): str(int(v) if isinstance(v, bool) else v) for k, v in sysctls.items()}
        state[name] = {"links": {}, "routes": [], "sysctls": values,
                       "holder": bool(raw.get("holder")), "hostname": hostname,
                       "_raw_links": raw.get("links") or [], "_raw_routes": raw.get("routes") or []}
    if ROOT in state:
        state[ROOT]["_raw_links"] = root_links
        state[ROOT]["_raw_routes"] = []

    def add_link(ns, name, link):
        if name in state[ns]["links"]:
            raise SpecError("link %s is declared twice in %s (a veth's peer counts as a link of its "
                            "namespace): rename one" % (name, _where(ns)))
        if name == "lo":
            raise SpecError("link lo in %s is the loopback device: it is brought up by itself, do not list it"
                            % _where(ns))
        state[ns]["links"][name] = link

    for ns in list(state):
        for raw in state[ns].pop("_raw_links"):
            name, link = _link(raw, ns)
            if link["kind"] == "veth":
                peer = raw["peer"]
                peer_ns = peer.get("namespace")
                if peer_ns is not None:
                    peer_ns = _netns_name(peer_ns)
                    if peer_ns not in state:
                        raise SpecError("the peer of veth %s in %s is in namespace %s, which is not listed: "
                                        "add it to namespaces" % (name, _where(ns), peer_ns))
                elif not allow_root_namespace:
                    raise SpecError("the peer of veth %s in %s has no namespace, so it would be created in the "
                                    "root namespace: give peer.namespace, or set allow_root_namespace: true "
                                    "on a machine meant for it" % (name, _where(ns)))
                elif ROOT not in state:
                    state[ROOT] = {"links": {}, "routes": [], "sysctls": {}, "holder": False, "hostname": None,
                                   "_raw_routes": []}
                peer_name, peer_link = _link(dict(peer, kind="veth"), peer_ns, creator=False)
                link["peer"] = [peer_ns, peer_name]
                link["creates_pair"] = True
                peer_link["peer"] = [ns, name]
                add_link(ns, name, link)
                add_link(peer_ns, peer_name, peer_link)
            else:
                add_link(ns, name, link)

    for ns, spec in state.items():
        # masters must be bridges of the same namespace
        for name, link in spec["links"].items():
            master = link["master"]
            if master is not None and spec["links"].get(master, {}).get("kind") != "bridge":
                raise SpecError("link %s in %s has master %r, which is not a bridge listed in the same "
                                "namespace: add the bridge or fix master" % (name, _where(ns), master))
        # no two links with overlapping subnets
        seen = []
        for name, link in sorted(spec["links"].items()):
            for cidr in link["addresses"]:
                net = ipaddress.ip_interface(cidr).network
                for other_name, other in seen:
                    if net.overlaps(other.network) and other_name != name:
                        raise SpecError("subnets overlap in %s: %s on %s and %s on %s; give each link its own "
                                        "subnet" % (_where(ns), cidr, name, other, other_name))
                seen.append((name, ipaddress.ip_interface(cidr)))
        spec["routes"] = _routes(spec.pop("_raw_routes"), ns, [iface for _name, iface in seen])
    return state


def _routes(raw_routes, ns, ifaces) -> list:
    routes = {}
    for raw in raw_routes:
        dst = raw.get("dst") or "default"
        if dst not in ("default", "0.0.0.0/0"):
            try:
                dst = str(ipaddress.IPv4Network(dst))
            except ValueError as exc:
                raise SpecError("route destination %r in %s is not a network (%s): write it as "
                                "10.244.2.0/24 or default" % (dst, _where(ns), exc))
        else:
            dst = "default"
        try:
            gateway = ipaddress.IPv4Address(raw["gateway"])
        except ValueError:
            raise SpecError("gateway %r of route %s in %s is not an IPv4 address" % (raw["gateway"], dst, _where(ns)))
        if not any(gateway in iface.network for iface in ifaces):
            raise SpecError("gateway %s of route %s in %s is not in any subnet of that namespace: add an "
                            "address in the gateway's subnet or fix the gateway" % (gateway, dst, _where(ns)))
        if dst in routes:
            raise SpecError("route to %s is listed twice in %s: keep one" % (dst, _where(ns)))
        routes[dst] = {"dst": dst, "gateway": str(gateway)}
    return [routes[k] for k in sorted(routes)]


# -- comparing -----------------------------------------------------------------------
def link_view(observed_links: dict, addresses: dict) -> dict:
    """What is on the system, in the shape of the desired links (names for indices)."""
    by_index = {v["index"]: k for k, v in observed_links.items()}
    view = {}
    for name, link in observed_links.items():
        view[name] = {
            "kind": link["kind"],
            "addresses": addresses.get(link["index"], []),
            "master": by_index.get(link["master"]),
            "hairpin": link["hairpin"],
            "up": link["up"],
            "index": link["index"],
            "link": link["link"],
        }
    return view


def paired(desired_ns, name, link, observed) -> bool:
    """Both ends of a veth exist, are veths, and point at each other."""
    here = observed.get(desired_ns, {}).get("links", {}).get(name)
    peer_ns, peer_name = link["peer"]
    there = observed.get(peer_ns, {}).get("links", {}).get(peer_name)
    return bool(here and there and here["kind"] == "veth" and there["kind"] == "veth"
                and here["link"] == there["index"] and there["link"] == here["index"])


def compare(desired: dict, observed: dict) -> dict:
    """Changes that turn OBSERVED into DESIRED, per namespace.

    OBSERVED maps each existing namespace to {links (link_view), routes, sysctls};
    a namespace that does not exist yet is absent. Returns
    {ns: {create, sysctls, delete_links, bridges, veths, masters, hairpins,
          del_addrs, add_addrs, ups, del_routes, add_routes}} for namespaces with changes.
    """
    changes = {}
    broken_pairs = set()
    for ns, spec in desired.items():
        for name, link in spec["links"].items():
            if link["kind"] == "veth" and link["creates_pair"] and not paired(ns, name, link, observed):
                broken_pairs.add((ns, name))
                broken_pairs.add(tuple(link["peer"]))
    for ns, spec in desired.items():
        seen = observed.get(ns)
        have = seen["links"] if seen else {}
        c = {"create": seen is None and ns is not ROOT, "sysctls": {}, "delete_links": [], "bridges": [],
             "veths": [], "masters": [], "hairpins": [], "del_addrs": [], "add_addrs": [], "ups": [],
             "del_routes": [], "add_routes": []}
        current_sysctls = (seen or {}).get("sysctls", {})
        for key, value in sorted(spec["sysctls"].items()):
            if current_sysctls.get(key) != value:
                c["sysctls"][key] = value
        for name, current in sorted(have.items()):
            if name == "lo" or ns is ROOT and name not in spec["links"]:
                continue
            wanted = spec["links"].get(name)
            if wanted is None or wanted["kind"] != current["kind"] or (ns, name) in broken_pairs:
                c["delete_links"].append(name)
        for name, link in sorted(spec["links"].items()):
            current = have.get(name)
            fresh = current is None or name in c["delete_links"]
            if link["kind"] == "bridge" and fresh:
                c["bridges"].append(name)
            if link["kind"] == "veth" and link["creates_pair"] and (ns, name) in broken_pairs:
                c["veths"].append([name] + list(link["peer"]))
            cur = {} if fresh else current
            if link["master"] != cur.get("master"):
                c["masters"].append([name, link["master"]])
            if link["hairpin"] is not None and bool(link["hairpin"]) != bool(cur.get("hairpin")):
                c["hairpins"].append([name, bool(link["hairpin"])])
            cur_addrs = set(cur.get("addresses", []))
            for cidr in sorted(cur_addrs - set(link["addresses"])):
                c["del_addrs"].append([name, cidr])
            for cidr in sorted(set(link["addresses"]) - cur_addrs):
                c["add_addrs"].append([name, cidr])
            if link["up"] and not cur.get("up"):
                c["ups"].append(name)
        if ns is not ROOT and not (have.get("lo") or {}).get("up"):
            c["ups"].insert(0, "lo")
        current_routes = {(r["dst"], r["gateway"]) for r in (seen or {}).get("routes", [])}
        wanted_routes = {(r["dst"], r["gateway"]) for r in spec["routes"]}
        if ns is not ROOT:
            c["del_routes"] = [list(r) for r in sorted(current_routes - wanted_routes)]
        c["add_routes"] = [list(r) for r in sorted(wanted_routes - current_routes)]
        if c["create"] or any(v for k, v in c.items() if k != "create"):
            changes[ns] = c
    return changes


def describe(changes: dict) -> list:
    """One line per change, for the module's `changes` return value and for people."""
    lines = []
    for ns in sorted(changes, key=lambda n: (n is not None, n or "")):
        c = changes[ns]
        where = "root" if ns is ROOT else ns
        if c["create"]:
            lines.append("%s: create namespace" % where)
        for key, value in c["sysctls"].items():
            lines.append("%s: set %s=%s" % (where, key, value))
        for name in c["delete_links"]:
            lines.append("%s: delete link %s" % (where, name))
        for name in c["bridges"]:
            lines.append("%s: create bridge %s" % (where, name))
        for name, peer_ns, peer in c["veths"]:
            lines.append("%s: create veth %s <-> %s/%s" % (where, name, peer_ns or "root", peer))
        for name, master in c["masters"]:
            lines.append("%s: %s" % (where, "attach %s to %s" % (name, master) if master else "detach %s" % name))
        for name, on in c["hairpins"]:
            lines.append("%s: set hairpin %s on %s" % (where, "on" if on else "off", name))
        for name, cidr in c["del_addrs"]:
            lines.append("%s: remove %s from %s" % (where, cidr, name))
        for name, cidr in c["add_addrs"]:
            lines.append("%s: add %s to %s" % (where, cidr, name))
        for name in c["ups"]:
            lines.append("%s: set %s up" % (where, name))
        for dst, gw in c["del_routes"]:
            lines.append("%s: remove route %s via %s" % (where, dst, gw))
        for dst, gw in c["add_routes"]:
            lines.append("%s: add route %s via %s" % (where, dst, gw))
    return lines
