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
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
KINDS = ("bridge", "veth", "vxlan")
PROTOCOLS = ("static", "boot")
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


def _mac(value, what: str) -> str:
    text = str(value or "").lower()
    if not MAC.match(text):
        raise SpecError("MAC address %r of %s is not one: write it as six hex pairs, such as 0a:58:0a:f4:01:01"
                        % (value, what))
    if int(text[:2], 16) & 1:
        raise SpecError("MAC address %s of %s is a multicast one (the first byte is odd): a link's address must be "
                        "unicast, such as 0a:58:0a:f4:01:01" % (value, what))
    return text


def _ipv4(value, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise SpecError("%s %r is not an IPv4 address: write it as 192.168.56.10" % (what, value))


def _vxlan(raw, name, ns) -> dict:
    """The VXLAN options of link NAME, checked; the keys the module compares with what it reads."""
    where = "vxlan %s in %s" % (name, _where(ns))
    if not raw:
        raise SpecError("%s has no vxlan options: give at least vxlan.id (flannel uses 1)" % where)
    vni = raw.get("id")
    if not isinstance(vni, int) or isinstance(vni, bool) or not 0 <= vni < 1 << 24:
        raise SpecError("%s has VNI %r: a VXLAN id is 0 to 16777215 (flannel uses 1)" % (where, vni))
    port = raw.get("port", 8472)
    if port is None:
        port = 8472
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise SpecError("%s has UDP port %r: use 1 to 65535 (8472, Linux's default, is flannel's)" % (where, port))
    local = raw.get("local")
    return {"id": vni, "local": _ipv4(local, "local address of %s" % where) if local is not None else None,
            "dev": _ifname(raw["dev"], ns) if raw.get("dev") else None, "port": port,
            "learning": bool(raw.get("learning"))}


def _link(raw, ns, creator=True) -> tuple:
    name = _ifname(raw.get("name"), ns)
    kind = raw.get("kind") or ("veth" if raw.get("peer") else None)
    if kind not in KINDS:
        raise SpecError("link %s in %s has kind %r: use one of %s (a link with a peer is a veth)"
                        % (name, _where(ns), kind, ", ".join(KINDS)))
    if kind != "vxlan":
        given = [key for key in ("vxlan", "mtu", "fdb") if raw.get(key)]
        if given:
            raise SpecError("link %s in %s is a %s and sets %s, which the module sets only on a vxlan link: "
                            "drop %s, or make the link kind: vxlan"
                            % (name, _where(ns), kind, ", ".join(given), " and ".join(given)))
    mtu = raw.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535):
        raise SpecError("link %s in %s has MTU %r: use 68 to 65535 (flannel's VXLAN: the node link's MTU - 50)"
                        % (name, _where(ns), mtu))
    neighbours = {}
    for entry in raw.get("neighbours") or []:
        dst = _ipv4(entry.get("dst"), "neighbour address on %s in %s" % (name, _where(ns)))
        if dst in neighbours:
            raise SpecError("link %s in %s lists neighbour %s twice: keep one" % (name, _where(ns), dst))
        neighbours[dst] = _mac(entry.get("lladdr"), "neighbour %s on %s in %s" % (dst, name, _where(ns)))
    fdb = set()
    for entry in raw.get("fdb") or []:
        mac = _mac(entry.get("lladdr"), "an fdb entry of %s in %s" % (name, _where(ns)))
        fdb.add((mac, _ipv4(entry.get("dst"), "destination of fdb entry %s on %s in %s" % (mac, name, _where(ns)))))
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
        "mtu": mtu,
        "mac": _mac(raw["mac"], "link %s in %s" % (name, _where(ns))) if raw.get("mac") else None,
        "vxlan": _vxlan(raw.get("vxlan"), name, ns) if kind == "vxlan" else None,
        "neighbours": sorted([dst, mac] for dst, mac in neighbours.items()),
        "fdb": sorted([mac, dst] for mac, dst in fdb),
        # given, even empty: the module owns the link's permanent entries (manages_entries)
        "entries_given": raw.get("neighbours") is not None or bool(raw.get("fdb")),
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
            dev = (link["vxlan"] or {}).get("dev")
            if dev is not None and (dev == name or spec["links"].get(dev, {}).get("kind") in (None, "vxlan")):
                raise SpecError("vxlan %s in %s sends its packets by %r, which is not a bridge or veth listed in the "
                                "same namespace: list that link (the node's LAN link) or fix vxlan.dev"
                                % (name, _where(ns), dev))
        # no two links with overlapping subnets; a /32 is an address alone, such as the one
        # flannel gives flannel.1 inside the node's pod subnet, and makes no subnet
        seen = []
        for name, link in sorted(spec["links"].items()):
            for cidr in link["addresses"]:
                net = ipaddress.ip_interface(cidr).network
                if net.prefixlen == 32:
                    continue
                for other_name, other in seen:
                    if net.overlaps(other.network) and other_name != name:
                        raise SpecError("subnets overlap in %s: %s on %s and %s on %s; give each link its own "
                                        "subnet" % (_where(ns), cidr, name, other, other_name))
                seen.append((name, ipaddress.ip_interface(cidr)))
        spec["routes"] = _routes(spec.pop("_raw_routes"), ns, [iface for _name, iface in seen], spec["links"])
    return state


def _routes(raw_routes, ns, ifaces, links) -> list:
    """The routes of namespace NS, checked against its subnets IFACES and its LINKS.

    A route is {dst, gateway}, with dev, onlink (True) and protocol (boot) only where given."""
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
        dev = raw.get("dev")
        if dev is not None and dev not in links:
            raise SpecError("route %s via %s in %s leaves by %r, which is not a link of that namespace: list the "
                            "link or fix dev" % (dst, gateway, _where(ns), dev))
        if raw.get("onlink") and dev is None:
            raise SpecError("route %s via %s in %s is onlink but names no link: give dev (flannel's routes leave by "
                            "flannel.1)" % (dst, gateway, _where(ns)))
        if not raw.get("onlink") and not any(gateway in iface.network for iface in ifaces):
            raise SpecError("gateway %s of route %s in %s is not in any subnet of that namespace: add an "
                            "address in the gateway's subnet, fix the gateway, or make the route onlink with "
                            "its dev" % (gateway, dst, _where(ns)))
        protocol = raw.get("protocol") or "static"
        if protocol not in PROTOCOLS:
            raise SpecError("route %s in %s has protocol %r: use one of %s"
                            % (dst, _where(ns), protocol, ", ".join(PROTOCOLS)))
        if dst in routes:
            raise SpecError("route to %s is listed twice in %s: keep one" % (dst, _where(ns)))
        route = {"dst": dst, "gateway": str(gateway)}
        if dev is not None:
            route["dev"] = dev
        if raw.get("onlink"):
            route["onlink"] = True
        if protocol != "static":
            route["protocol"] = protocol
        routes[dst] = route
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
            "mac": link.get("mac"),
        }
        vxlan = link.get("vxlan")
        if vxlan is not None:
            view[name].update(mtu=vxlan["mtu"], vxlan={
                "id": vxlan["id"], "local": vxlan["local"], "dev": by_index.get(vxlan["link"]),
                "port": vxlan["port"], "learning": vxlan["learning"]})
    return view


def manages_entries(link) -> bool:
    """Whether the module owns the permanent neighbour and FDB entries of LINK (a desired
    link): those of a VXLAN it makes, and of any link given entries (an empty list too)."""
    return bool(link["kind"] == "vxlan" or link["entries_given"])


def vxlan_differs(want, have) -> bool:
    """Whether an existing VXLAN link HAVE (link_view's) is not the one WANT asks for: what
    cannot be changed on it without making it again (flannel makes it again too)."""
    if have.get("vxlan") is None:
        return True
    if want["mtu"] is not None and have.get("mtu") != want["mtu"]:
        return True
    if want["mac"] is not None and have.get("mac") != want["mac"]:
        return True
    return any(have["vxlan"].get(key) != value for key, value in want["vxlan"].items())


def route_changes(wanted, current, names=None) -> tuple:
    """([dst, gateway] to remove, routes to add) that turn CURRENT (read: {dst, gateway, oif})
    into WANTED (normalize's). NAMES maps link indices to names: where given, a route that
    names its dev and leaves by another link is made again."""
    have = {(r["dst"], r["gateway"]): r.get("oif") for r in current}
    want = {(r["dst"], r["gateway"]): r for r in wanted}
    remove = [key for key in have if key not in want]
    add = []
    for key, route in sorted(want.items()):
        if key not in have:
            add.append(route_entry(route))
        elif names is not None and route.get("dev") and names.get(have[key]) != route["dev"]:
            remove.append(key)
            add.append(route_entry(route))
    return [list(key) for key in sorted(remove)], add


def route_entry(route) -> list:
    """A route as the changes list it: [dst, gateway], and its dev and onlink when it names a dev."""
    entry = [route["dst"], route["gateway"]]
    if route.get("dev"):
        entry += [route["dev"], bool(route.get("onlink"))]
    return entry


def paired(desired_ns, name, link, observed) -> bool:
    """Both ends of a veth exist, are veths, and point at each other."""
    here = observed.get(desired_ns, {}).get("links", {}).get(name)
    peer_ns, peer_name = link["peer"]
    there = observed.get(peer_ns, {}).get("links", {}).get(peer_name)
    return bool(here and there and here["kind"] == "veth" and there["kind"] == "veth"
                and here["link"] == there["index"] and there["link"] == here["index"])


def compare(desired: dict, observed: dict) -> dict:
    """Changes that turn OBSERVED into DESIRED, per namespace.

    OBSERVED maps each existing namespace to {links (link_view), routes, sysctls, and
    neighbours and fdb: {link: [[dst, lladdr]] and [[lladdr, dst]], the permanent entries of
    the links whose entries the module manages}}; a namespace that does not exist yet is
    absent. Returns {ns: {create, sysctls, delete_links, bridges, veths, vxlans, masters,
    hairpins, macs, del_addrs, add_addrs, ups, del_neighbours, add_neighbours, del_fdb, add_fdb,
    del_routes, add_routes}} for namespaces with changes.
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
             "veths": [], "vxlans": [], "masters": [], "hairpins": [], "del_addrs": [], "add_addrs": [], "ups": [],
             "macs": [], "del_neighbours": [], "add_neighbours": [], "del_fdb": [], "add_fdb": [],
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
            elif wanted["kind"] == "vxlan":
                # the kernel removes a VXLAN with the link it sends by: one made again takes it along
                dev = wanted["vxlan"]["dev"]
                if vxlan_differs(wanted, current) or dev is not None and (
                        (ns, dev) in broken_pairs or dev not in have
                        or spec["links"][dev]["kind"] != have[dev]["kind"]):
                    c["delete_links"].append(name)
        for name, link in sorted(spec["links"].items()):
            current = have.get(name)
            fresh = current is None or name in c["delete_links"]
            if link["kind"] == "bridge" and fresh:
                c["bridges"].append(name)
            if link["kind"] == "vxlan" and fresh:
                c["vxlans"].append(name)
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
            if link["mac"] is not None and link["kind"] != "vxlan" and cur.get("mac") != link["mac"]:
                c["macs"].append([name, link["mac"]])  # in place (a vxlan's is made again: vxlan_differs)
            if manages_entries(link):
                neighbours = {} if fresh else dict((seen or {}).get("neighbours", {}).get(name, []))
                wanted_neighbours = dict(link["neighbours"])
                c["del_neighbours"] += [[name, dst] for dst in sorted(neighbours) if dst not in wanted_neighbours]
                c["add_neighbours"] += [[name, dst, mac] for dst, mac in sorted(wanted_neighbours.items())
                                        if neighbours.get(dst) != mac]
                fdb = set() if fresh else {tuple(e) for e in (seen or {}).get("fdb", {}).get(name, [])}
                wanted_fdb = {tuple(e) for e in link["fdb"]}
                c["del_fdb"] += [[name, mac, dst] for mac, dst in sorted(fdb - wanted_fdb)]
                c["add_fdb"] += [[name, mac, dst] for mac, dst in sorted(wanted_fdb - fdb)]
        if ns is not ROOT and not (have.get("lo") or {}).get("up"):
            c["ups"].insert(0, "lo")
        names = {v["index"]: k for k, v in have.items() if k not in c["delete_links"]}
        remove, c["add_routes"] = route_changes(spec["routes"], (seen or {}).get("routes", []), names)
        if ns is not ROOT:
            c["del_routes"] = remove
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
        for name in c.get("vxlans", []):
            lines.append("%s: create vxlan %s" % (where, name))
        for name, peer_ns, peer in c["veths"]:
            lines.append("%s: create veth %s <-> %s/%s" % (where, name, peer_ns or "root", peer))
        for name, master in c["masters"]:
            lines.append("%s: %s" % (where, "attach %s to %s" % (name, master) if master else "detach %s" % name))
        for name, on in c["hairpins"]:
            lines.append("%s: set hairpin %s on %s" % (where, "on" if on else "off", name))
        for name, mac in c.get("macs", []):
            lines.append("%s: set the MAC of %s to %s" % (where, name, mac))
        for name, cidr in c["del_addrs"]:
            lines.append("%s: remove %s from %s" % (where, cidr, name))
        for name, cidr in c["add_addrs"]:
            lines.append("%s: add %s to %s" % (where, cidr, name))
        for name in c["ups"]:
            lines.append("%s: set %s up" % (where, name))
        for name, dst in c.get("del_neighbours", []):
            lines.append("%s: remove neighbour %s from %s" % (where, dst, name))
        for name, dst, mac in c.get("add_neighbours", []):
            lines.append("%s: add neighbour %s lladdr %s to %s" % (where, dst, mac, name))
        for name, mac, dst in c.get("del_fdb", []):
            lines.append("%s: remove fdb entry %s dst %s from %s" % (where, mac, dst, name))
        for name, mac, dst in c.get("add_fdb", []):
            lines.append("%s: add fdb entry %s dst %s to %s" % (where, mac, dst, name))
        for dst, gw in c["del_routes"]:
            lines.append("%s: remove route %s via %s" % (where, dst, gw))
        for entry in c["add_routes"]:
            extra = " dev %s%s" % (entry[2], " onlink" if entry[3] else "") if len(entry) > 2 else ""
            lines.append("%s: add route %s via %s%s" % (where, entry[0], entry[1], extra))
    return lines
