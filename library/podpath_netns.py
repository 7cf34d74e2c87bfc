#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: podpath_netns
short_description: Network namespaces wired as a pod network, in one declarative call
description:
  - Creates named network namespaces under C(/run/netns) (what C(ip netns add) makes and
    what containerd names C(cni-<uuid>)), brings their C(lo) up, and wires them with
    bridges, veth pairs whose ends are created directly in their two namespaces, bridge
    ports with hairpin mode, IPv4 addresses, gateway routes and per-namespace C(net.*)
    sysctls, the way the CNI bridge plugin wires a pod.
  - Makes VXLAN links with their permanent neighbour and forwarding (FDB) entries and the
    routes through them, the way flannel's vxlan backend wires a node (C(flannel.1)).
  - Starts a holder process per namespace where asked, in the role of the pause
    container, and finds it again by its pidfile or, without a good one, by its mark.
  - One call takes the whole desired state (for example a node's bridge and all its
    pods) and applies only the difference, with batched rtnetlink requests (packed with
    struct, with pyroute2's constants; no C(ip) subprocesses).
  - Touches only what carries its lab's mark, where the kernel keeps it - the alias of a
    namespace's C(lo), C(podpath-lab=<lab>), set before the namespace is bound under
    C(/run/netns); the alias of a root link; the environment variables E(PODPATH_OWNER) and
    E(PODPATH_ROLE) of a holder - never what a name suggests. A namespace or link that
    exists without the lab's mark is refused, never taken over or deleted.
  - C(/run/podpath/<lab>/netns.json) and the holders' pidfiles are a cache of those marks.
    A namespace that carries the mark and is missing from the file is adopted, a file that
    is not whole is rebuilt, and a pidfile is believed only when the process it names
    carries the holder's mark and started when the file says.
version_added: "0.1.0"
author: podpath contributors (!UNKNOWN)
requirements:
  - Linux, root (CAP_SYS_ADMIN and CAP_NET_ADMIN)
  - pyroute2 >= 0.5.14 on the managed host; only its netlink constants are used, so Debian's
    own C(python3-pyroute2) is enough (0.7.7 on Debian 13, 0.7.2 on Debian 12)
options:
  lab:
    description:
      - Name of the lab that owns what this call creates. 1 to 10 lower-case letters and
        digits, starting with a letter.
    type: str
    required: true
  state:
    description:
      - C(present) makes the namespaces and their wiring match O(namespaces).
      - C(absent) stops every process and removes every namespace and root link that carries the
        lab's mark, with or without the lab's folder.
    type: str
    choices: [present, absent]
    default: present
  namespaces:
    description: The namespaces the lab wants, each with its links, routes and sysctls.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Namespace name (a file under C(/run/netns)), 1 to 64 letters, digits, C(.), C(-) or C(_).
        type: str
        required: true
      holder:
        description: Keep a holder process (the pause role) in the namespace.
        type: bool
        default: false
      hostname:
        description: Host name the holder sets in the pod's UTS namespace.
        type: str
      share_pid:
        description:
          - Start the holder as pid 1 of a new PID namespace, as containerd starts a pod's
            pause; the pod's containers that M(podpath.lab.podpath_containers) starts join it and
            see each other's processes (a pod with C(shareProcessNamespace)). The holder reaps
            the orphans it is given.
          - Without it the holder stays in the PID namespace of the module, and each container
            gets a PID namespace of its own.
          - A holder that runs the other way is replaced, and the lab's containers in the namespace
            are stopped (they joined the old holder's namespaces); their module starts them again.
          - Needs O(namespaces[].holder).
        type: bool
        default: false
      sysctls:
        description:
          - Per-namespace C(net.*) sysctls, such as C(net.ipv4.ip_forward), to their values.
          - A value is written as given; C(true) and C(false) are written as C(1) and C(0).
        type: dict
        default: {}
      links:
        description:
          - Links of the namespace. A veth pair is declared once, on one of its ends, with
            O(namespaces[].links[].peer) describing the other end.
        type: list
        elements: dict
        default: []
        suboptions: &link_options
          name:
            description: Interface name, 1 to 15 bytes (letters, digits, C(.), C(-), C(_)).
            type: str
            required: true
          kind:
            description:
              - The kind of link.
              - When omitted, a link with a O(namespaces[].links[].peer) is a veth.
              - A C(vxlan) needs O(namespaces[].links[].vxlan).
            type: str
            choices: [bridge, veth, vxlan]
          addresses:
            description: IPv4 addresses with their prefix length, such as C(10.244.1.2/24).
            type: list
            elements: str
            default: []
          master:
            description: The bridge, listed in the same namespace, this link is a port of.
            type: str
          hairpin:
            description:
              - Hairpin mode of the bridge port (needs O(namespaces[].links[].master)).
              - Left as it is when omitted.
            type: bool
          mtu:
            description:
              - MTU of a vxlan link, 68 to 65535 (flannel gives C(flannel.1) the node link's MTU - 50,
                the room VXLAN's headers take). The kernel's choice when omitted.
              - A vxlan link whose MTU differs is made again.
            type: int
          mac:
            description:
              - MAC address of the link, such as C(0a:58:0a:f4:01:01) (unicast). The kernel picks one
                when omitted, and a bridge then takes the lowest of its ports' MACs.
              - A vxlan link whose MAC differs is made again; a bridge or a veth gets the MAC in place.
            type: str
          vxlan:
            description:
              - The settings of a vxlan link (O(namespaces[].links[].kind=vxlan)). A vxlan link whose
                settings differ from these is made again, as flannel makes its device again.
            type: dict
            suboptions:
              id:
                description: The VXLAN network identifier (VNI), 0 to 16777215; flannel uses 1.
                type: int
                required: true
              local:
                description: The IPv4 source address of the encapsulated packets (the node's own address).
                type: str
              dev:
                description:
                  - The link, listed in the same namespace, the encapsulated packets leave by (the node's
                    LAN link). The kernel removes the vxlan link with it; the module makes it again.
                type: str
              port:
                description: The UDP destination port; 8472 is the Linux default, and flannel's.
                type: int
                default: 8472
              learning:
                description:
                  - Learn remote MACs from the packets received. flannel turns it off and writes the
                    forwarding entries itself (O(namespaces[].links[].fdb)).
                type: bool
                default: false
          neighbours:
            description:
              - Permanent neighbour (ARP) entries of the link, as C(ip neigh replace DST lladdr LLADDR nud
                permanent) writes them; flannel writes one per other node on C(flannel.1).
              - Where a link has this option (an empty list too), or is a vxlan link, its other permanent
                entries are removed; where it has not, the link's permanent entries are left as they are.
            type: list
            elements: dict
            suboptions:
              dst:
                description: The IPv4 address.
                type: str
                required: true
              lladdr:
                description: Its MAC address.
                type: str
                required: true
          fdb:
            description:
              - Permanent forwarding entries of a vxlan link, as C(bridge fdb replace LLADDR dev LINK dst DST self
                permanent) writes them, so that frames for LLADDR go inside UDP to DST. flannel writes one per other
                node.
              - The link's other permanent entries are removed.
            type: list
            elements: dict
            default: []
            suboptions:
              lladdr:
                description: The MAC address of the remote end (the other node's C(flannel.1)).
                type: str
                required: true
              dst:
                description: The IPv4 address the encapsulated frames are sent to (the other node's address).
                type: str
                required: true
          peer:
            description: The other end of a veth pair, created with it.
            type: dict
            suboptions:
              name:
                description: Interface name of the other end, 1 to 15 bytes.
                type: str
                required: true
              namespace:
                description:
                  - The namespace of the other end, listed in O(namespaces).
                  - When omitted, the namespace the module runs in (needs O(allow_root_namespace)).
                type: str
              master:
                description: The bridge, in the peer's namespace, the other end is a port of.
                type: str
              hairpin:
                description: Hairpin mode of the other end's bridge port (needs a master).
                type: bool
              addresses:
                description: IPv4 addresses of the other end, with their prefix length.
                type: list
                elements: str
                default: []
      routes:
        description:
          - Gateway routes of the namespace's main IPv4 table. Every other gateway route of that table is
            removed.
        type: list
        elements: dict
        default: []
        suboptions:
          dst:
            description: The destination, a network such as C(10.244.2.0/24), or C(default).
            type: str
            default: default
          gateway:
            description:
              - The gateway, an IPv4 address inside a subnet of the namespace's links, or any address with
                O(namespaces[].routes[].onlink).
            type: str
            required: true
          dev:
            description:
              - The link, listed in the same namespace, the route leaves by. A route that leaves by another
                link is made again. The kernel's choice (by the gateway) when omitted.
            type: str
          onlink:
            description:
              - Take the gateway as reachable on O(namespaces[].routes[].dev) whatever the link's addresses,
                as flannel's routes through C(flannel.1) do (needs dev).
            type: bool
            default: false
          protocol:
            description:
              - Who the route says made it. C(boot) is what a route made with none gets (flannel's and the
                CNI plugins' routes), which C(ip route) does not print; C(static) shows as C(proto static).
              - Set when the route is made; a route made again by hand with another protocol is left as it is.
            type: str
            choices: [static, boot]
            default: static
  root_links:
    description:
      - Links to create in the namespace the module runs in (for example a bridge on a
        cluster node for a hand-made pod). Needs O(allow_root_namespace).
      - Each has the suboptions of O(namespaces[].links).
    type: list
    elements: dict
    default: []
    suboptions: *link_options
  allow_root_namespace:
    description:
      - Allow O(root_links) and veth peers without a namespace. Leave it off on a shared
        host. The netns lab never changes the host's own namespace.
    type: bool
    default: false
  prune:
    description: Remove namespaces the lab owns that O(namespaces) no longer lists.
    type: bool
    default: true
  purge:
    description:
      - With O(state=absent), also remove the lab's folder C(/run/podpath/<lab>) and all
        it holds (the logs, leases and state that the other podpath modules and the lab's
        daemons kept there).
      - Refused while the folder still lists running containers; stop them first with
        M(podpath.lab.podpath_containers) (O(podpath.lab.podpath_containers#module:group=all),
        O(podpath.lab.podpath_containers#module:state=absent)).
    type: bool
    default: false
  pause:
    description:
      - Program that holds a namespace, called as C(PAUSE NETNS_PATH [HOSTNAME]) (podpath-pause).
        Without it, a small Python holder with the same behaviour is used.
      - With O(namespaces[].share_pid) it is started as pid 1 of a new PID namespace.
    type: path
attributes:
  check_mode:
    support: full
    description: Reports what would change, and what would be removed, and changes nothing.
  diff_mode:
    support: full
    description: Shows each namespace that changes, or is removed, before and after.
  platform:
    support: full
    platforms: linux
    description: Linux network namespaces and rtnetlink.
notes:
  - Runs only IPv4. IPv6 link-local addresses that the kernel adds are left alone.
seealso:
  - name: CNI bridge plugin
    description: The reference for how a pod's veth, bridge port and routes are set up.
    link: https://www.cni.dev/plugins/current/main/bridge/
"""

EXAMPLES = r"""
- name: Wire a node with its bridge and two pods
  podpath.lab.podpath_netns:
    lab: podpath
    pause: /opt/podpath/.venv/bin/podpath-pause
    namespaces:
      - name: podpath-worker1
        sysctls: {net.ipv4.ip_forward: 1}
        links:
          - {name: cni0, kind: bridge, addresses: [10.244.1.1/24]}
      - name: cni-0b7c3f3e-5b1a-5a4e-9d0e-3f2a1c9e8d7b
        holder: true
        hostname: echo-2
        share_pid: false
        links:
          - name: eth0
            kind: veth
            addresses: [10.244.1.3/24]
            peer: {name: veth3f2a1c9e, namespace: podpath-worker1, master: cni0, hairpin: true}
        routes:
          - {dst: default, gateway: 10.244.1.1}

- name: Wire a node's flannel.1 as flannel's vxlan backend does, toward one other node
  podpath.lab.podpath_netns:
    lab: podpath
    namespaces:
      - name: podpath-lan
        links:
          - {name: lan0, kind: bridge}
      - name: podpath-worker1
        links:
          - name: eth1
            kind: veth
            addresses: [192.168.56.11/24]
            peer: {name: worker1, namespace: podpath-lan, master: lan0}
          - name: flannel.1
            kind: vxlan
            mtu: 1450
            mac: 0e:41:7c:29:6b:1d
            vxlan: {id: 1, local: 192.168.56.11, dev: eth1, port: 8472, learning: false}
            addresses: [10.244.1.0/32]
            neighbours:
              - {dst: 10.244.2.0, lladdr: 5a:0c:e1:93:24:b7}
            fdb:
              - {lladdr: 5a:0c:e1:93:24:b7, dst: 192.168.56.12}
        routes:
          - {dst: 10.244.2.0/24, gateway: 10.244.2.0, dev: flannel.1, onlink: true, protocol: boot}

- name: Remove everything the lab owns, and its folder
  podpath.lab.podpath_netns:
    lab: podpath
    state: absent
    purge: true
"""

RETURN = r"""
changes:
  description: One line per change made (or, in check mode, that would be made).
  returned: always
  type: list
  elements: str
  sample: ["cni-0b7c...: create namespace", "podpath-worker1: attach veth3f2a1c9e to cni0"]
namespaces:
  description: For each namespace of O(namespaces), the pid of its holder (null without one).
  returned: when state is present and not in check mode
  type: dict
  sample: {"podpath-worker1": {"holder_pid": null}, "cni-0b7c3f3e-5b1a-5a4e-9d0e-3f2a1c9e8d7b": {"holder_pid": 4242}}
removed:
  description:
    - Namespaces (and, with O(state=absent), root links) removed, or in check mode that
      would be removed; those pruned, or all of the lab's with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: ["cni-0b7c3f3e-5b1a-5a4e-9d0e-3f2a1c9e8d7b"]
adopted:
  description:
    - Namespaces of O(namespaces) that carry the lab's mark and that C(/run/podpath/<lab>/netns.json)
      did not list (the folder was lost or rebuilt), taken back into it; or, in check mode,
      that would be.
  returned: when state is present
  type: list
  elements: str
  sample: ["podpath-worker1"]
"""

import ctypes
import errno
import json
import os
import shutil
import sys
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.podpath_lab import KernelView, Registry, alive, check_lab_name, container_groups, \
    describe_owner, holder_pidfile, holder_role, lab_dir, lab_process, link_alias, mark_netns, \
    net_inode, netns_mark, netns_owner, netns_path, pid_namespace_init, process_marks, read_pidfile, set_link_alias, \
    spawn, stop_many, unmarked_process, write_pidfile
from ansible.module_utils.podpath_netlink import HAS_PYROUTE2, NUD_PERMANENT, PYROUTE2_IMPORT_ERROR, RTPROT_BOOT, \
    RTPROT_STATIC, NamespaceSet, NetlinkError, netns_exists, netns_inode
from ansible.module_utils.podpath_netns_spec import ROOT, SpecError, compare, describe, link_view, manages_entries, \
    normalize, route_changes

# The holder used when no pause program is given: the same contract as podpath-pause (started
# as pid 1 of a PID namespace of its own, it reaps the orphans it is given, as pause does).
PY_HOLDER = r"""
import ctypes, os, signal, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
if libc.setns(fd, 0x40000000) or libc.unshare(0x08000000 | 0x04000000):
    raise SystemExit("podpath holder: cannot join %s" % sys.argv[1])
if len(sys.argv) > 2:
    socket.sethostname(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
while True:
    signal.pause()
"""


CLONE_NEWPID = 0x20000000
# Seconds the lab's containers in a namespace get to stop when its holder is replaced (as
# podpath_containers stops them)
CONTAINER_GRACE = 1.0
# Seconds a started holder gets to join its namespace and make its IPC and UTS namespaces
# (podpath-pause takes a millisecond, the Python holder its interpreter's start-up)
HOLDER_READY = 10.0
_LIBC = []


def _libc_call(name, *args):
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if getattr(_LIBC[0], name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s(CLONE_NEWPID): %s" % (name, os.strerror(code)))


def holder_fits(pid, spec):
    """PID, a holder, runs as SPEC asks: pid 1 of a PID namespace of its own exactly when SPEC
    has share_pid (a pod whose containers share one PID namespace)."""
    return pid_namespace_init(pid) == bool(spec.get("share_pid"))


def current_holder(lab, ns, spec, view=None):
    """NS's holder (holder_pid) if it runs as SPEC asks, else None: it is to be (re)started."""
    pid = holder_pid(lab, ns, view)
    return pid if pid and holder_fits(pid, spec) else None


def holder_action(lab, ns, spec, view=None):
    """What starting NS's holder does, as the changes list says it."""
    how = " as pid 1 of a PID namespace of its own (share_pid)" if spec.get("share_pid") else ""
    if holder_pid(lab, ns, view):
        return ("restart holder%s, and stop the lab's containers in it" %
                (how or " in the module's PID namespace (share_pid off)"))
    return "start holder" + how


def spawn_holder(argv, log_path, env, share_pid):
    """Start a holder (spawn); with SHARE_PID as pid 1 of a new PID namespace, as containerd
    starts a pod's pause: after unshare(CLONE_NEWPID) this process's next child is born in a new
    PID namespace, and setns back to its own makes the children after it be born here again."""
    if not share_pid:
        return spawn(argv, log_path, env)
    home = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _libc_call("unshare", CLONE_NEWPID)
        try:
            return spawn(argv, log_path, env)
        finally:
            _libc_call("setns", home, CLONE_NEWPID)
    finally:
        os.close(home)


def holder_pid(lab, ns, view=None):
    """The pid of NS's holder: a process that carries LAB's mark as NS's holder and is in the
    namespace bound at /run/netns/NS now; else None.

    Its pidfile is read first, and believed only if that process passes the check (a pid
    another program has now fails it). Without a good pidfile, VIEW (a KernelView) finds the
    holder by its marks."""
    inode = netns_inode(ns)
    if inode is None:
        return None
    pid, start = read_pidfile(holder_pidfile(lab, ns))
    if pid and net_inode(pid) == inode and lab_process(pid, lab, holder_role(ns), start):
        return pid
    if view is not None:
        for proc in view.units(lab):
            if proc.role == holder_role(ns) and proc.net == inode:
                return proc.pid
    return None


def observe(nsset, names, wanted_sysctls, entries_of=None):
    """What NAMES hold; ENTRIES_OF ({ns: [link]}) names the links whose permanent neighbour
    and FDB entries are read too (a node's flannel.1: one small dump each, not per pod)."""
    observed = {}
    for ns in names:
        rtnl = nsset.rtnl(ns)
        links = rtnl.links()
        observed[ns] = {
            "links": link_view(links, rtnl.addresses()),
            "raw": links,
            "routes": rtnl.routes(),
            "sysctls": nsset.read_sysctls(ns, wanted_sysctls.get(ns, [])),
            "neighbours": {},
            "fdb": {},
        }
        for name in (entries_of or {}).get(ns, []):
            if name not in links:
                continue
            index = links[name]["index"]
            observed[ns]["neighbours"][name] = sorted(
                [n["dst"], n["lladdr"]] for n in rtnl.neighbours(index)
                if n["state"] & NUD_PERMANENT and n["dst"] and n["lladdr"])
            if links[name]["kind"] == "vxlan":
                observed[ns]["fdb"][name] = sorted(
                    [f["lladdr"], f["dst"]] for f in rtnl.fdb(index)
                    if f["state"] & NUD_PERMANENT and f["dst"] and f["lladdr"])
    return observed


def entries_to_read(desired):
    """{ns: [link]}: the links whose neighbour and FDB entries the module manages."""
    return {ns: [name for name, link in spec["links"].items() if manages_entries(link)]
            for ns, spec in desired.items() if any(manages_entries(link) for link in spec["links"].values())}


def check_kernel(module, desired):
    for ns, spec in desired.items():
        for key in spec["sysctls"]:
            if key.startswith(("net.ipv4.conf.", "net.ipv6.conf.")):
                continue
            if not os.path.exists("/proc/sys/" + key.replace(".", "/")):
                hint = " (load it with: modprobe br_netfilter)" if key.startswith("net.bridge.") else ""
                module.fail_json(msg="the kernel has no sysctl %s, asked for namespace %s: a kernel feature is "
                                     "missing%s" % (key, ns, hint))


def is_placeholder(ns):
    """/run/netns/NS is an empty file with no namespace bound on it: what a run killed between
    making the file and binding the namespace leaves."""
    try:
        info = os.stat(netns_path(ns))
        return info.st_size == 0 and info.st_dev != os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def check_ownership(module, lab, registry, desired, nsset):
    """Refuse any namespace or root link of DESIRED that exists and is not LAB's, before any
    change. Returns (adopt, unmarked, placeholders): namespaces that carry LAB's mark and the
    folder does not list (it was lost or rebuilt), unmarked namespaces a folder written before
    the marks lists (to be marked), and empty files the lab's registry lists in place of a
    namespace (to be made again)."""
    adopt, unmarked, placeholders = [], [], []
    for ns in desired:
        if ns is ROOT or not netns_exists(ns):
            continue
        owner, alias = netns_owner(ns)
        if owner == lab:
            if not registry.owns("namespaces", ns):
                adopt.append(ns)
            continue
        if registry.owns("namespaces", ns):
            if alias == "" and registry.legacy:
                unmarked.append(ns)
                continue
            if alias is None and is_placeholder(ns):
                placeholders.append(ns)
                continue
        module.fail_json(msg="network namespace %s already exists and belongs to %s; podpath will not take it "
                             "over. Remove it (ip netns delete %s) if it is a leftover, or use another name or lab"
                             % (ns, describe_owner(owner, alias), ns))
    if ROOT in desired:
        root_links = nsset.rtnl(ROOT).links()
        for name in desired[ROOT]["links"]:
            if name in root_links and link_alias(root_links[name]["index"]) != netns_mark(lab) and not (
                    registry.owns("root_links", name) and not link_alias(root_links[name]["index"])):
                module.fail_json(msg="link %s already exists in the root namespace and was not made by lab %s (its "
                                     "alias is not %s); podpath will not take it over: rename the link in root_links"
                                     % (name, lab, netns_mark(lab)))
    return adopt, unmarked, placeholders


def mark_root_links(lab, nsset, desired):
    """Give the lab's links in the module's own namespace the lab's mark as their alias; the
    names of those that had none."""
    if ROOT not in desired:
        return []
    marked = []
    links = nsset.rtnl(ROOT).links()
    for name in desired[ROOT]["links"]:
        if name in links and link_alias(links[name]["index"]) != netns_mark(lab):
            set_link_alias(netns_mark(lab), links[name]["index"])
            marked.append(name)
    return marked


def lab_orphans(lab, view, desired):
    """Namespaces bound under /run/netns that carry LAB's mark and DESIRED does not list."""
    return sorted(ns for ns in view.bound_of(lab) if ns not in desired)


def stop_lab_processes(lab, view, inodes=None, legacy_holders=()):
    """Stop LAB's processes (all, or those in the namespaces INODES), each checked again for
    LAB's mark and start time right before its signal; LEGACY_HOLDERS: (pid, start, inode) of
    unmarked holders a folder written before the marks names. Returns how many were stopped."""
    targets = {p.pid: (p.role, p.start) for p in view.units(lab) if inodes is None or p.net in inodes}
    legacy = {pid: (start, inode) for pid, start, inode in legacy_holders if pid not in targets}

    def still_the_labs(pid):
        if pid in targets:
            return lab_process(pid, lab, *targets[pid])
        return unmarked_process(pid, legacy[pid][0]) and net_inode(pid) == legacy[pid][1]
    return stop_many(list(targets) + list(legacy), term_children=True, verify=still_the_labs)


def legacy_holders(lab, names):
    """(pid, start, inode) of the holders the pidfiles of NAMES name (folders written before the marks)."""
    found = []
    for ns in names:
        pid, start = read_pidfile(holder_pidfile(lab, ns))
        inode = netns_inode(ns)
        if pid and inode:
            found.append((pid, start, inode))
    return found


def remove_namespaces(lab, registry, nsset, names, view, legacy=False):
    """Stop LAB's processes in NAMES and remove those of NAMES that carry LAB's mark (or, with
    LEGACY, a folder written before the marks, that the folder lists and carry none)."""
    inodes = {ns: netns_inode(ns) for ns in names}
    mine = [ns for ns in names if inodes[ns] and (view.mark(inodes[ns]) == lab or legacy and registry.owns(
        "namespaces", ns) and view.owner(inodes[ns]) == (None, ""))]
    stop_lab_processes(lab, view, {inodes[ns] for ns in mine}, legacy_holders(lab, mine) if legacy else ())
    removed = []
    for ns in mine:
        nsset.remove(ns)
        removed.append(ns)
    for ns in names:
        try:
            os.unlink(holder_pidfile(lab, ns))
        except FileNotFoundError:
            pass
    registry.discard("namespaces", names)
    return removed


def create_namespaces(lab, registry, nsset, desired, changes, observed):
    new = [ns for ns, c in changes.items() if c["create"]]
    registry.add("namespaces", new)
    if ROOT in desired:
        registry.add("root_links", list(desired[ROOT]["links"]))
    for ns in new:
        # LAB's mark on its lo before it is bound at /run/netns/NS, so that no run, however it
        # ends, leaves a namespace of the lab there without its mark; lo is set up with it
        nsset.create_marked(ns, lab)
        observed[ns] = {"links": {}, "raw": {}, "routes": [], "sysctls": {}}
    return new


def names_index(links, name):
    """The ifindex of link NAME in LINKS (name -> {index}); 0 for no name."""
    return links[name]["index"] if name else 0


def create_vxlans(nsset, desired, changes, links, created):
    """Create the VXLAN links of CHANGES, once the links they send by exist (LINKS holds the
    indices of every changed namespace, and gets the new links' ones).

    Each is asked for the index after the namespace's highest, which spares a dump to learn it."""
    for ns, c in changes.items():
        if not c["vxlans"]:
            continue
        rtnl = nsset.rtnl(ns)
        for name in c["vxlans"]:
            link = desired[ns]["links"][name]
            vxlan = dict(link["vxlan"], link=names_index(links[ns], link["vxlan"]["dev"]))
            index = max(v["index"] for v in links[ns].values()) + 1
            rtnl.add_vxlan(name, vxlan, link["mac"], link["mtu"], index)
            links[ns][name] = {"index": index}
            created.add((ns, name))
        rtnl.commit()


def apply(nsset, desired, changes, observed, new):
    """Make CHANGES (compare's) in the namespaces, NEW being those created by this run."""
    touched = set(changes)

    for ns, c in changes.items():
        nsset.write_sysctls(ns, c["sysctls"])
        rtnl = nsset.rtnl(ns)
        for name in c["delete_links"]:
            raw = observed[ns]["raw"].get(name)
            if raw:
                rtnl.delete_link(raw["index"], name)
        rtnl.commit()
    # a deleted veth takes its peer with it: read again before creating
    for ns, c in changes.items():
        if c["delete_links"]:
            for other in [ns] + [peer_ns for _name, peer_ns, _peer in c["veths"]]:
                observed[other]["raw"] = nsset.rtnl(other).links()
    # In a namespace made by this run only lo exists (index 1), so the links created in it
    # can be given their indices (2, 3, ...) and need no dump afterwards.
    fresh = {ns: {"lo": {"index": 1}} for ns in new}
    received = set()  # namespaces where a peer appeared unnumbered: their indices are read back
    # (ns, link) up already: created up by this run (lo with its namespace's mark; a veth's
    # peer is created down) or set up with its master
    created = {(ns, "lo") for ns in new}
    for ns, c in changes.items():
        rtnl = nsset.rtnl(ns)

        def index_for(name):
            if ns not in fresh or ns in received:
                return 0
            fresh[ns][name] = {"index": len(fresh[ns]) + 1}
            return fresh[ns][name]["index"]

        for name in c["bridges"]:
            rtnl.add_bridge(name, index_for(name))
            created.add((ns, name))
        for name, peer_ns, peer_name in c["veths"]:
            stale = observed.get(peer_ns, {}).get("raw", {}).get(peer_name)
            if stale:
                nsset.rtnl(peer_ns).delete_link(stale["index"], peer_name)
                nsset.rtnl(peer_ns).commit()
                touched.add(peer_ns)
            index = index_for(name)
            peer_index = 0
            if index and peer_ns in fresh and peer_ns not in received:
                # the kernel gives the peer the index asked for when NAME's is asked for too
                peer_index = fresh[peer_ns][peer_name] = {"index": len(fresh[peer_ns]) + 1}
                peer_index = peer_index["index"]
            else:
                received.add(peer_ns)
            rtnl.add_veth(name, peer_name, nsset.fd(peer_ns), index, peer_index)
            created.add((ns, name))
            touched.add(peer_ns)
        rtnl.commit()
    links = {ns: (fresh[ns] if ns in fresh and ns not in received else nsset.rtnl(ns).links()) for ns in touched}
    create_vxlans(nsset, desired, changes, links, created)
    # two passes: a port needs its master before its hairpin mode can be set
    for step in ("ports", "config"):
        for ns, c in changes.items():
            rtnl = nsset.rtnl(ns)
            index = {name: v["index"] for name, v in links[ns].items()}
            if step == "ports":
                for name, master in c["masters"]:
                    # a port that is to be set up is set up in the same request
                    up = name in c["ups"] and (ns, name) not in created
                    rtnl.set_master(index[name], index[master] if master else 0, name, up)
                    if up:
                        created.add((ns, name))
            else:
                for name, on in c["hairpins"]:
                    rtnl.set_hairpin(index[name], on, name)
                for name, mac in c["macs"]:
                    rtnl.set_mac(index[name], mac, name)
                for name, cidr in c["del_addrs"]:
                    rtnl.delete_address(index[name], cidr, name)
                for name, cidr in c["add_addrs"]:
                    rtnl.add_address(index[name], cidr, name)
                for name in c["ups"]:
                    if (ns, name) not in created:
                        rtnl.set_up(index[name], name)
                # flannel's order: the neighbour and FDB entries before the route that uses them
                for name, dst in c["del_neighbours"]:
                    rtnl.forget_neighbour(index[name], dst, name)
                for name, dst, mac in c["add_neighbours"]:
                    rtnl.add_neighbour(index[name], dst, mac, name)
                for name, mac, dst in c["del_fdb"]:
                    rtnl.delete_fdb(index[name], mac, dst, name)
                for name, mac, dst in c["add_fdb"]:
                    rtnl.add_fdb(index[name], mac, dst, name)
                if not (c["del_addrs"] or c["delete_links"]):
                    # the routes in the same batch, after the addresses and links they need
                    queue_routes(rtnl, desired[ns]["routes"], c, links[ns])
            rtnl.commit()
    for ns, c in changes.items():
        if not (c["del_addrs"] or c["delete_links"]):
            continue
        # the kernel drops routes whose gateway left with an address or a link: compare again
        rtnl = nsset.rtnl(ns)
        names = {v["index"]: name for name, v in links[ns].items()}
        remove, c["add_routes"] = route_changes(desired[ns]["routes"], rtnl.routes(), names)
        c["del_routes"] = remove if ns is not ROOT else []
        queue_routes(rtnl, desired[ns]["routes"], c, links[ns])
        rtnl.commit()
    # A pod address that comes back on a new veth (a pod made again) has a new MAC: the node
    # forgets the old one, where the CNI bridge plugin would send a gratuitous ARP.
    forget = {}
    permanent = {}  # (namespace, bridge) -> the addresses the bridge is given permanent entries for
    for ns, c in changes.items():
        for name, cidr in c["add_addrs"]:
            link = desired[ns]["links"][name]
            if link["kind"] != "veth" or not link["creates_pair"]:
                continue
            peer_ns, peer_name = link["peer"]
            bridge = desired[peer_ns]["links"][peer_name]["master"]
            if not bridge or peer_ns not in links:
                continue
            if (peer_ns, bridge) not in permanent:
                permanent[peer_ns, bridge] = {dst for dst, _mac in desired[peer_ns]["links"][bridge]["neighbours"]}
            ip = cidr.split("/")[0]
            if ip not in permanent[peer_ns, bridge]:  # a permanent entry is written above, with the pod's MAC
                forget.setdefault(peer_ns, []).append((links[peer_ns][bridge]["index"], ip, bridge))
    for peer_ns, entries in forget.items():
        if peer_ns in new:
            continue  # a namespace made by this run knows no neighbour yet
        rtnl = nsset.rtnl(peer_ns)
        known = {}  # bridge index -> the addresses it has an entry for (one dump per bridge)
        for index, ip, bridge in entries:
            if index not in known:
                known[index] = {n["dst"] for n in rtnl.neighbours(index)}
            if ip in known[index]:
                rtnl.forget_neighbour(index, ip, bridge)
        rtnl.commit()


def queue_routes(rtnl, wanted_routes, c, links):
    """Queue the route removals and additions of C (compare's changes of one namespace) on
    RTNL; WANTED_ROUTES are the namespace's desired routes, LINKS its links' indices."""
    for dst, gateway in c["del_routes"]:
        rtnl.delete_route(dst, gateway)
    wanted = {(r["dst"], r["gateway"]): r for r in wanted_routes}
    for entry in c["add_routes"]:
        route = wanted[entry[0], entry[1]]
        rtnl.add_route(route["dst"], route["gateway"], oif=names_index(links, route.get("dev")),
                       onlink=bool(route.get("onlink")),
                       protocol=RTPROT_BOOT if route.get("protocol") == "boot" else RTPROT_STATIC)


class HolderStarter:
    """Starts the holders in a forked process while this one wires the links.

    The holders need only their namespace, and starting them (process creation, and each
    holder's own IPC and UTS namespaces) is kernel work that does not wait for the
    rtnetlink lock the wiring holds: on two cores the two overlap. The child drops its
    copies of the namespaces' sockets first, so that each start does not copy them."""

    def __init__(self, lab, desired, pause, nsset, view=None, legacy=False):
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: start the holders, say what went wrong, exit
            os.close(read)
            code = 0
            try:
                nsset.release()
                start_holders(lab, desired, pause, view, legacy)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                os.write(write, str(exc).encode(errors="replace")[:4000])
                code = 1
            os._exit(code)
        os.close(write)
        self.pipe = read

    def wait(self):
        chunks = []
        while True:
            chunk = os.read(self.pipe, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self.pipe)
        status = os.waitpid(self.pid, 0)[1]
        if status != 0:
            raise OSError(errno.EIO, "starting the holders failed: %s"
                          % (b"".join(chunks).decode(errors="replace") or "status %d" % status))


def start_holders(lab, desired, pause, view=None, legacy=False):
    """Start the holders DESIRED lacks, each with LAB's mark as the holder of its namespace, and
    record them in their pidfiles; a holder with share_pid is pid 1 of a new PID namespace.

    Another holder of the namespace is stopped first: one of LAB's marked holders (VIEW) that
    is not in the namespace now bound at /run/netns/NS holds an old copy (its file was removed
    by hand), one that runs the other way (share_pid changed) is replaced, and with LEGACY (a
    folder written before the marks) the unmarked holder its pidfile names is replaced by a
    marked one. LAB's containers in a namespace whose holder is replaced are stopped before it,
    as a runtime stops a sandbox's containers: they joined the old holder's IPC and UTS (and
    PID) namespaces, and podpath_containers starts them again in the new one's."""
    started = []
    units = view.units(lab) if view is not None else []
    for ns, spec in desired.items():
        if ns is ROOT or not spec["holder"] or current_holder(lab, ns, spec, view):
            continue
        inode = netns_inode(ns)
        stale = {p.pid: (p.role, p.start) for p in units
                 if (p.role or "").startswith("container:") and inode is not None and p.net == inode}
        stop_many(list(stale), CONTAINER_GRACE, term_children=True,
                  verify=lambda pid: lab_process(pid, lab, *stale[pid]))
        old = {p.pid: p.start for p in units
               if p.role == holder_role(ns) and (p.net != inode or not holder_fits(p.pid, spec))}
        stop_many(list(old), verify=lambda pid: lab_process(pid, lab, holder_role(ns), old[pid]))
        pid, start = read_pidfile(holder_pidfile(lab, ns))
        if legacy and pid and net_inode(pid) == inode:
            stop_many([pid], verify=lambda pid: unmarked_process(pid, start) and net_inode(pid) == inode)
        argv = [pause] if pause else [sys.executable, "-c", PY_HOLDER]
        argv.append(netns_path(ns))
        if spec["hostname"]:
            argv.append(spec["hostname"])
        pid = spawn_holder(argv, os.path.join(lab_dir(lab), "logs", "holders.log"),
                           process_marks(lab, holder_role(ns)), spec.get("share_pid"))
        write_pidfile(holder_pidfile(lab, ns), pid)
        started.append((ns, pid, inode))
    wait_for_holders(lab, started)
    return [ns for ns, _pid, _inode in started]


def wait_for_holders(lab, started, timeout=HOLDER_READY):
    """Wait until every holder of STARTED ((ns, pid, inode) each) is in its namespace with IPC
    and UTS namespaces of its own: a container started before that would join this process's
    own, which are the host's. Fails naming the namespace when a holder exits instead."""
    own = {kind: os.stat("/proc/self/ns/%s" % kind).st_ino for kind in ("ipc", "uts")}
    waiting = {pid: (ns, inode) for ns, pid, inode in started}
    deadline = time.monotonic() + timeout
    while waiting:
        for pid, (ns, inode) in list(waiting.items()):
            try:
                ready = net_inode(pid) == inode and all(
                    os.stat("/proc/%d/ns/%s" % (pid, kind)).st_ino != home for kind, home in own.items())
            except OSError:
                ready = False
            if ready:
                del waiting[pid]
            elif not alive(pid):
                raise OSError(errno.ESRCH, "the holder of %s (pid %d) exited as it started; see %s"
                              % (ns, pid, os.path.join(lab_dir(lab), "logs", "holders.log")))
        if waiting and time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "holders not in their namespaces within %g s: %s"
                          % (timeout, ", ".join(ns for ns, _inode in waiting.values())))
        if waiting:
            time.sleep(0.005)


def link_for_diff(state, name, link, macs=()):
    """Link NAME of STATE (desired, or read) as the diff shows it: a VXLAN with its settings,
    the MAC of a link named in MACS (those given one), and a link's permanent neighbour and
    FDB entries where it has any."""
    view = {k: v for k, v in link.items() if k in ("kind", "addresses", "master", "hairpin", "up")}
    if link.get("kind") == "vxlan":
        view.update({k: link[k] for k in ("mtu", "mac", "vxlan") if link.get(k) is not None})
    elif name in macs and link.get("mac") is not None:
        view["mac"] = link["mac"]
    for key in ("neighbours", "fdb"):
        entries = link[key] if key in link else state.get(key, {}).get(name)
        if entries:
            view[key] = [list(e) for e in entries]
    return view


def view_for_diff(state, links_of=None, macs=()):
    """The parts of a namespace the module manages, in one shape for before and after.

    LINKS_OF limits the view to those links and leaves out routes and sysctls: in the
    namespace the module runs in, only the lab's own links are the module's business. MACS
    names the links whose MAC is shown (those the desired state gives one)."""
    if state is None:
        return "absent\n"
    links = {name: link_for_diff(state, name, link, macs) for name, link in sorted(state["links"].items())
             if name != "lo" and (links_of is None or name in links_of)}
    routes = sorted([r["dst"], r["gateway"]] for r in state.get("routes", [])) if links_of is None else []
    sysctls = state.get("sysctls", {}) if links_of is None else {}
    return json.dumps({"links": links, "routes": routes, "sysctls": sysctls}, indent=2, sort_keys=True) + "\n"


def diff_of(before, after):
    """Ansible's diff from [(title, text)] lists, one block per namespace or folder."""
    return {"before": "".join("# %s\n%s" % item for item in before),
            "after": "".join("# %s\n%s" % item for item in after)}


def removal_diff(nsset, namespaces, root_links=(), folder=None):
    """The diff of removing NAMESPACES, the ROOT_LINKS of the module's own namespace and FOLDER."""
    before, after = [], []
    if root_links:
        here = observe(nsset, [ROOT], {})[ROOT]
        before.append(("root", view_for_diff(here, root_links)))
        after.append(("root", view_for_diff({"links": {}}, root_links)))
    seen = observe(nsset, namespaces, {})
    for ns in sorted(namespaces):
        before.append((ns, view_for_diff(seen[ns])))
        after.append((ns, view_for_diff(None)))
    if folder:
        before.append((folder, "present\n"))
        after.append((folder, "absent\n"))
    return diff_of(before, after)


def remove_lab(module, lab, registry, nsset):
    """state=absent: stop every process and remove every namespace and root link that carries
    the lab's mark, whatever the folder says or whether it is there (and, with purge, the
    folder); in check mode, report what that would remove.

    A folder written before the marks (legacy) also has the unmarked namespaces and root
    links it lists removed, and the unmarked holders its pidfiles name in them stopped."""
    view = KernelView()
    bound, unbound = view.namespaces(lab)
    owned = registry.items("namespaces")
    legacy = [ns for ns in owned if registry.legacy and ns in view.bound and ns not in bound
              and view.owner(view.bound[ns]) == (None, "")]
    existing = sorted(set(bound) | set(legacy))
    processes = view.units(lab)
    root_owned = registry.items("root_links")
    present_root = nsset.rtnl(ROOT).links()
    aliases = {name: link_alias(link["index"]) for name, link in present_root.items()}
    root_existing = sorted(name for name in present_root if aliases[name] == netns_mark(lab)
                           or name in root_owned and not aliases[name])
    lab_folder = lab_dir(lab)
    purge = module.params["purge"] and os.path.isdir(lab_folder)
    if purge:
        running = container_groups(lab)
        if running:
            module.fail_json(msg="lab %s still has containers (%s in %s): stop them first with "
                                 "podpath_containers (group: all, state: absent), then purge"
                                 % (lab, ", ".join("containers-%s.json" % g for g in running), lab_folder))
    would = existing + root_existing
    stopping = ["stop %d processes of lab %s (holders, containers) that carry its mark" % (len(processes), lab)
                ] if processes else []
    extra = {"diff": removal_diff(nsset, existing, root_existing, lab_folder if purge else None)} if module._diff else {}
    if module.check_mode or not would and not processes and not owned and not root_owned and not purge:
        module.exit_json(changed=bool(would or processes) or purge, removed=would,
                         changes=stopping + ["remove %s" % n for n in would]
                         + (["remove %s" % lab_folder] if purge else []), **extra)
    stop_lab_processes(lab, view, None, legacy_holders(lab, legacy))
    removed = []
    for ns in existing:
        nsset.remove(ns)
        removed.append(ns)
    for ns in set(owned) | set(existing):
        try:
            os.unlink(holder_pidfile(lab, ns))
        except FileNotFoundError:
            pass
    registry.discard("namespaces", owned)
    rtnl = nsset.rtnl(ROOT)
    for name in root_existing:
        rtnl.delete_link(present_root[name]["index"], name)
        removed.append(name)
    rtnl.commit()
    registry.discard("root_links", root_owned)
    if registry.empty():
        for path in (registry.path, os.path.join(lab_folder, "logs", "holders.log")):
            if os.path.exists(path):
                os.unlink(path)
        for folder in ("holders", "logs", ""):
            try:
                os.rmdir(os.path.join(lab_folder, folder))
            except OSError:
                pass  # not empty: other modules' files are still there
    changes = stopping + ["remove %s" % n for n in removed]
    if purge:
        if os.path.isdir(lab_folder):  # the lines above remove it when it held only the registry
            shutil.rmtree(lab_folder)
        changes.append("remove %s" % lab_folder)
    module.exit_json(changed=bool(changes), changes=changes, removed=removed, **extra)


# The suboptions of a link, in `namespaces[].links` and in `root_links`.
LINK_OPTIONS = dict(
    name=dict(type="str", required=True),
    kind=dict(type="str", choices=["bridge", "veth", "vxlan"]),
    addresses=dict(type="list", elements="str", default=[]),
    master=dict(type="str"),
    hairpin=dict(type="bool"),
    mtu=dict(type="int"),
    mac=dict(type="str"),
    vxlan=dict(type="dict", options=dict(
        id=dict(type="int", required=True),
        local=dict(type="str"),
        dev=dict(type="str"),
        port=dict(type="int", default=8472),
        learning=dict(type="bool", default=False),
    )),
    neighbours=dict(type="list", elements="dict", options=dict(
        dst=dict(type="str", required=True),
        lladdr=dict(type="str", required=True),
    )),
    fdb=dict(type="list", elements="dict", default=[], options=dict(
        lladdr=dict(type="str", required=True),
        dst=dict(type="str", required=True),
    )),
    peer=dict(type="dict", options=dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str"),
        master=dict(type="str"),
        hairpin=dict(type="bool"),
        addresses=dict(type="list", elements="str", default=[]),
    )),
)

ARGUMENT_SPEC = dict(
    lab=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    namespaces=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        holder=dict(type="bool", default=False),
        hostname=dict(type="str"),
        share_pid=dict(type="bool", default=False),
        sysctls=dict(type="dict", default={}),
        links=dict(type="list", elements="dict", default=[], options=LINK_OPTIONS),
        routes=dict(type="list", elements="dict", default=[], options=dict(
            dst=dict(type="str", default="default"),
            gateway=dict(type="str", required=True),
            dev=dict(type="str"),
            onlink=dict(type="bool", default=False),
            protocol=dict(type="str", choices=["static", "boot"], default="static"),
        )),
    )),
    root_links=dict(type="list", elements="dict", default=[], options=LINK_OPTIONS),
    allow_root_namespace=dict(type="bool", default=False),
    prune=dict(type="bool", default=True),
    pause=dict(type="path"),
    purge=dict(type="bool", default=False),
)


def run_module(module):
    """The module's work; MODULE is an AnsibleModule, or the controller's stand-in for one
    when the task runs in-process (plugins/action/podpath_netns.py)."""
    p = module.params
    lab = p["lab"]
    error = check_lab_name(lab)
    if error:
        module.fail_json(msg=error)
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_required_lib("pyroute2", url="https://pypi.org/project/pyroute2/"),
                         exception=PYROUTE2_IMPORT_ERROR)
    if os.geteuid() != 0:
        module.fail_json(msg="podpath_netns must run as root to create namespaces: use become: true or sudo")
    if p["pause"] and not os.access(p["pause"], os.X_OK):
        module.fail_json(msg="pause program %s is not an executable file: build it with make pause, or leave "
                             "pause unset to use the built-in holder" % p["pause"])
    try:
        desired = normalize([] if p["state"] == "absent" else p["namespaces"],
                            [] if p["state"] == "absent" else p["root_links"], p["allow_root_namespace"])
    except SpecError as exc:
        module.fail_json(msg=str(exc))
    for raw in [] if p["state"] == "absent" else p["namespaces"]:
        if raw.get("share_pid") and not raw.get("holder"):
            module.fail_json(msg="namespace %s has share_pid: true without holder: true: the shared PID namespace "
                                 "is the holder's (its pid 1); set holder: true, or drop share_pid" % raw["name"])
        desired[raw["name"]]["share_pid"] = bool(raw.get("share_pid"))

    registry = Registry(lab, "netns.json")
    with NamespaceSet() as nsset:
        if p["state"] == "absent":
            remove_lab(module, lab, registry, nsset)

        check_kernel(module, desired)
        view = KernelView()
        legacy = registry.legacy
        adopt, unmarked, placeholders = check_ownership(module, lab, registry, desired, nsset)
        prune = sorted(set(ns for ns in registry.items("namespaces") if ns not in desired)
                       | set(lab_orphans(lab, view, desired))) if p["prune"] else []
        gone = [ns for ns in prune if ns in view.bound and (view.mark(view.bound[ns]) == lab or legacy and registry.owns(
            "namespaces", ns) and view.owner(view.bound[ns]) == (None, ""))]
        existing = [ns for ns in desired if ns is ROOT or netns_exists(ns) and ns not in placeholders]
        wanted_sysctls = {ns: list(spec["sysctls"]) for ns, spec in desired.items()}
        observed = observe(nsset, existing, wanted_sysctls, entries_to_read(desired))
        changes = compare(desired, observed)
        holders_needed = [ns for ns, spec in desired.items() if ns is not ROOT and spec["holder"]
                          and (ns in changes and changes[ns]["create"] or not current_holder(lab, ns, spec, view))]
        found = {ns: holder_pid(lab, ns, view) for ns, spec in desired.items()
                 if ns is not ROOT and spec["holder"] and ns not in holders_needed}
        found = {ns: pid for ns, pid in found.items() if read_pidfile(holder_pidfile(lab, ns))[0] != pid}
        lines = ["%s %s: rebuilt from the marks" % (registry.path, registry.corrupt)] if registry.corrupt else []
        lines += ["%s: adopt (it carries the mark of lab %s)" % (ns, lab) for ns in adopt]
        lines += ["%s: mark as lab %s's (made before the marks)" % (ns, lab) for ns in unmarked]
        lines += ["%s: make again (an empty file, not a namespace)" % ns for ns in placeholders]
        lines += ["%s: holder %d found by its marks; pidfile written again" % (ns, pid) for ns, pid in found.items()]
        lines += describe(changes)
        lines += ["%s: %s" % (ns, holder_action(lab, ns, desired[ns], view)) for ns in holders_needed]
        lines += ["%s: remove namespace (no longer wanted)" % ns for ns in gone]
        changed = bool(lines)
        extra = {}
        if module._diff:
            names = sorted(changes, key=str)
            root_links = list(desired[ROOT]["links"]) if ROOT in desired else None
            macs = {ns: [name for name, link in desired[ns]["links"].items() if link["mac"]] for ns in names}
            diff = diff_of([(ns or "root", view_for_diff(observed.get(ns), root_links if ns is ROOT else None,
                                                         macs[ns])) for ns in names],
                           [(ns or "root", view_for_diff(desired[ns], root_links if ns is ROOT else None, macs[ns]))
                            for ns in names])
            if gone:
                pruned = removal_diff(nsset, gone)
                diff = {key: diff[key] + pruned[key] for key in diff}
            extra["diff"] = diff
        if module.check_mode:
            module.exit_json(changed=changed, changes=lines, removed=gone, adopted=adopt, **extra)
        root_before = set(observed[ROOT]["raw"]) if ROOT in observed else set()  # links made before this run
        try:
            for ns in unmarked:
                fd = os.open(netns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    mark_netns(fd, lab)
                finally:
                    os.close(fd)
            for ns in placeholders:
                nsset.remove(ns)
            registry.add("namespaces", adopt + unmarked)
            for ns, pid in found.items():
                write_pidfile(holder_pidfile(lab, ns), pid)
            removed = remove_namespaces(lab, registry, nsset, prune, view, legacy) if prune else []
            new = create_namespaces(lab, registry, nsset, desired, changes, observed)
            holders = HolderStarter(lab, desired, p["pause"], nsset, view, legacy) if holders_needed else None
            try:
                apply(nsset, desired, changes, observed, new)
            finally:
                if holders:
                    holders.wait()
            marked = mark_root_links(lab, nsset, desired)
        except (NetlinkError, OSError) as exc:
            module.fail_json(msg="could not apply the wiring: %s. Run again to finish, or state: absent to "
                                 "remove what lab %s made" % (exc, lab), changes=lines, changed=True)
        lines += ["root: mark link %s as lab %s's" % (name, lab) for name in marked if name in root_before]
        result = {ns: {"holder_pid": holder_pid(lab, ns)} for ns in desired if ns is not ROOT}
        module.exit_json(changed=changed or bool(marked), changes=lines, removed=removed, adopted=adopt,
                         namespaces=result, **extra)


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
