#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE)
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
  - Starts a holder process per namespace where asked, in the role of the pause
    container, and finds it again by its pidfile.
  - One call takes the whole desired state (for example a node's bridge and all its
    pods) and applies only the difference, with batched rtnetlink requests (packed with
    struct, with pyroute2's constants; no C(ip) subprocesses).
  - Touches only what belongs to its lab, recorded in C(/run/podpath/<lab>/netns.json)
    before anything is created; a namespace or link that exists but belongs to
    something else is refused, never taken over or deleted.
version_added: "0.1.0"
author: podpath contributors
requirements:
  - Linux, root (CAP_SYS_ADMIN and CAP_NET_ADMIN)
  - pyroute2 >= 0.9.7 on the managed host
options:
  lab:
    description:
      - Name of the lab that owns what this call creates. 1 to 10 lower-case letters and
        digits, starting with a letter.
    type: str
    required: true
  state:
    description:
      - C(present) makes the namespaces and their wiring match I(namespaces).
      - C(absent) removes every namespace and root link the lab owns, and stops their holders.
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
        description: Namespace name (a file under C(/run/netns)).
        type: str
        required: true
      holder:
        description: Keep a holder process (the pause role) in the namespace.
        type: bool
        default: false
      hostname:
        description: Host name the holder sets in the pod's UTS namespace.
        type: str
      sysctls:
        description: Per-namespace C(net.*) sysctls, such as C(net.ipv4.ip_forward).
        type: dict
        default: {}
      links:
        description:
          - Links of the namespace. C(kind) is C(bridge) or C(veth); a veth is declared once,
            with its C(peer) (C(name), C(namespace), C(master), C(hairpin), C(addresses)).
          - C(addresses) are IPv4 CIDRs, C(master) names a bridge in the same namespace,
            C(hairpin) sets the bridge port's hairpin mode.
        type: list
        elements: dict
        default: []
      routes:
        description: Gateway routes, C(dst) (a CIDR or C(default)) and C(gateway).
        type: list
        elements: dict
        default: []
  root_links:
    description:
      - Links to create in the namespace the module runs in (for example a bridge on a
        cluster node for a hand-made pod). Needs I(allow_root_namespace).
    type: list
    elements: dict
    default: []
  allow_root_namespace:
    description:
      - Allow I(root_links) and veth peers without a namespace. Leave it off on a shared
        host. The netns lab never changes the host's own namespace.
    type: bool
    default: false
  prune:
    description: Remove namespaces the lab owns that I(namespaces) no longer lists.
    type: bool
    default: true
  purge:
    description:
      - With I(state=absent), also remove the lab's folder C(/run/podpath/<lab>) and all
        it holds (the logs, leases and state that the other podpath modules and the lab's
        daemons kept there).
      - Refused while the folder still lists running containers; stop them first with
        podpath_containers (I(group=all), I(state=absent)).
    type: bool
    default: false
  pause:
    description:
      - Program that holds a namespace, called as C(PAUSE NETNS_PATH [HOSTNAME]) (podpath-pause).
        Without it, a small Python holder with the same behaviour is used.
    type: path
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: Shows each changed namespace before and after.
  platform:
    platforms: linux
notes:
  - Runs only IPv4. IPv6 link-local addresses that the kernel adds are left alone.
seealso:
  - name: CNI bridge plugin
    description: The reference for how a pod's veth, bridge port and routes are set up.
    link: https://www.cni.dev/plugins/current/main/bridge/
"""

EXAMPLES = r"""
- name: Wire a node with its bridge and two pods
  podpath_netns:
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
        links:
          - name: eth0
            kind: veth
            addresses: [10.244.1.3/24]
            peer: {name: veth3f2a1c9e, namespace: podpath-worker1, master: cni0, hairpin: true}
        routes:
          - {dst: default, gateway: 10.244.1.1}

- name: Remove everything the lab owns, and its folder
  podpath_netns:
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
  description: For each namespace of I(namespaces), the pid of its holder (null without one).
  returned: when state is present and not in check mode
  type: dict
  sample: {"podpath-worker1": {"holder_pid": null}, "cni-0b7c3f3e-5b1a-5a4e-9d0e-3f2a1c9e8d7b": {"holder_pid": 4242}}
removed:
  description: Namespaces removed (pruned, or all of the lab's with state absent).
  returned: always
  type: list
  elements: str
  sample: ["cni-0b7c3f3e-5b1a-5a4e-9d0e-3f2a1c9e8d7b"]
"""

import errno
import json
import os
import shutil
import sys

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.podpath_netlink import NamespaceSet, NetlinkError, netns_exists, \
        netns_inode, netns_path
    HAS_PYROUTE2 = True
    PYROUTE2_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the managed host
    HAS_PYROUTE2 = False
    PYROUTE2_ERROR = exc
from ansible.module_utils.podpath_lab import Registry, alive, check_lab_name, container_groups, holder_pidfile, \
    lab_dir, net_inode, other_owner, read_pid, spawn, stop_many, write_file
from ansible.module_utils.podpath_netns_spec import ROOT, SpecError, compare, describe, link_view, normalize

# The holder used when no pause program is given: the same contract as podpath-pause.
PY_HOLDER = r"""
import ctypes, os, signal, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
if libc.setns(fd, 0x40000000) or libc.unshare(0x08000000 | 0x04000000):
    sys.exit("podpath holder: cannot join %s" % sys.argv[1])
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


def holder_pid(lab, ns):
    """The pid of NS's holder if it runs and is in that namespace, else None."""
    pid = read_pid(holder_pidfile(lab, ns))
    if pid and alive(pid) and net_inode(pid) == netns_inode(ns):
        return pid
    return None


def observe(nsset, names, wanted_sysctls):
    observed = {}
    for ns in names:
        rtnl = nsset.rtnl(ns)
        links = rtnl.links()
        observed[ns] = {
            "links": link_view(links, rtnl.addresses()),
            "raw": links,
            "routes": rtnl.routes(),
            "sysctls": nsset.read_sysctls(ns, wanted_sysctls.get(ns, [])),
        }
    return observed


def check_kernel(module, desired):
    for ns, spec in desired.items():
        for key in spec["sysctls"]:
            if key.startswith(("net.ipv4.conf.", "net.ipv6.conf.")):
                continue
            if not os.path.exists("/proc/sys/" + key.replace(".", "/")):
                hint = " (load it with: modprobe br_netfilter)" if key.startswith("net.bridge.") else ""
                module.fail_json(msg="the kernel has no sysctl %s, asked for namespace %s: a kernel feature is "
                                     "missing%s" % (key, ns, hint))


def check_ownership(module, lab, registry, desired, nsset):
    for ns in desired:
        if ns is ROOT:
            continue
        if netns_exists(ns) and not registry.owns("namespaces", ns):
            other = other_owner("namespaces", ns, lab)
            owner = "lab %s" % other if other else "something outside lab %s" % lab
            module.fail_json(msg="network namespace %s already exists and belongs to %s; podpath will not take it "
                                 "over. Remove it (ip netns delete %s) if it is a leftover, or use another name or lab"
                                 % (ns, owner, ns))
    if ROOT in desired:
        root_links = nsset.rtnl(ROOT).links()
        for name in desired[ROOT]["links"]:
            if name in root_links and not registry.owns("root_links", name):
                module.fail_json(msg="link %s already exists in the root namespace and was not made by lab %s; "
                                     "podpath will not take it over: rename the link in root_links" % (name, lab))


def remove_namespaces(lab, registry, nsset, names):
    stop_many([holder_pid(lab, ns) for ns in names])
    removed = []
    for ns in names:
        if netns_exists(ns):
            nsset.remove(ns)
            removed.append(ns)
        try:
            os.unlink(holder_pidfile(lab, ns))
        except FileNotFoundError:
            pass
    registry.discard("namespaces", names)
    return removed


def create_namespaces(registry, nsset, desired, changes, observed):
    new = [ns for ns, c in changes.items() if c["create"]]
    registry.add("namespaces", new)
    if ROOT in desired:
        registry.add("root_links", list(desired[ROOT]["links"]))
    for ns in new:
        nsset.create(ns)
        observed[ns] = {"links": {}, "raw": {}, "routes": [], "sysctls": {}}
    return new


def apply(module, lab, registry, nsset, desired, changes, observed, new):
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
            for other in [ns] + [p for _, p, _ in c["veths"]]:
                observed[other]["raw"] = nsset.rtnl(other).links()
    # In a namespace made by this run only lo exists (index 1), so the links created in it
    # can be given their indices (2, 3, ...) and need no dump afterwards.
    fresh = {ns: {"lo": {"index": 1}} for ns in new}
    received = set()  # namespaces where a peer appeared: their indices are read back
    created = set()  # (ns, link) created up by this run (a veth's peer is set up later)
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
            rtnl.add_veth(name, peer_name, nsset.fd(peer_ns), index_for(name))
            created.add((ns, name))
            touched.add(peer_ns)
            received.add(peer_ns)
        rtnl.commit()
    links = {ns: (fresh[ns] if ns in fresh and ns not in received else nsset.rtnl(ns).links()) for ns in touched}
    # two passes: a port needs its master before its hairpin mode can be set
    for step in ("ports", "config"):
        for ns, c in changes.items():
            rtnl = nsset.rtnl(ns)
            index = {name: v["index"] for name, v in links[ns].items()}
            if step == "ports":
                for name, master in c["masters"]:
                    rtnl.set_master(index[name], index[master] if master else 0, name)
            else:
                for name, on in c["hairpins"]:
                    rtnl.set_hairpin(index[name], on, name)
                for name, cidr in c["del_addrs"]:
                    rtnl.delete_address(index[name], cidr, name)
                for name, cidr in c["add_addrs"]:
                    rtnl.add_address(index[name], cidr, name)
                for name in c["ups"]:
                    if (ns, name) not in created:
                        rtnl.set_up(index[name], name)
            rtnl.commit()
    for ns, c in changes.items():
        rtnl = nsset.rtnl(ns)
        if c["del_addrs"] or c["delete_links"]:
            # the kernel drops routes whose gateway left with an address or a link: compare again
            current = {(r["dst"], r["gateway"]) for r in rtnl.routes()}
            wanted = {(r["dst"], r["gateway"]) for r in desired[ns]["routes"]}
            c["del_routes"] = sorted(current - wanted) if ns is not ROOT else []
            c["add_routes"] = sorted(wanted - current)
        for dst, gateway in c["del_routes"]:
            rtnl.delete_route(dst, gateway)
        for dst, gateway in c["add_routes"]:
            rtnl.add_route(dst, gateway)
        rtnl.commit()
    # A pod address that comes back on a new veth (a pod made again) has a new MAC: the node
    # forgets the old one, where the CNI bridge plugin would send a gratuitous ARP.
    forget = {}
    for ns, c in changes.items():
        for name, cidr in c["add_addrs"]:
            link = desired[ns]["links"][name]
            if link["kind"] != "veth" or not link["creates_pair"]:
                continue
            peer_ns, peer_name = link["peer"]
            bridge = desired[peer_ns]["links"][peer_name]["master"]
            if bridge and peer_ns in links:
                forget.setdefault(peer_ns, []).append((links[peer_ns][bridge]["index"], cidr.split("/")[0], bridge))
    for peer_ns, entries in forget.items():
        rtnl = nsset.rtnl(peer_ns)
        for index, ip, bridge in entries:
            rtnl.forget_neighbour(index, ip, bridge)
        rtnl.commit()


class HolderStarter:
    """Starts the holders in a forked process while this one wires the links.

    The holders need only their namespace, and starting them (process creation, and each
    holder's own IPC and UTS namespaces) is kernel work that does not wait for the
    rtnetlink lock the wiring holds: on two cores the two overlap. The child drops its
    copies of the namespaces' sockets first, so that each start does not copy them."""

    def __init__(self, lab, desired, pause, nsset):
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: start the holders, say what went wrong, exit
            os.close(read)
            code = 0
            try:
                nsset.release()
                start_holders(lab, desired, pause)
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
        _, status = os.waitpid(self.pid, 0)
        if status != 0:
            raise OSError(errno.EIO, "starting the holders failed: %s"
                          % (b"".join(chunks).decode(errors="replace") or "status %d" % status))


def start_holders(lab, desired, pause):
    started = []
    for ns, spec in desired.items():
        if ns is ROOT or not spec["holder"] or holder_pid(lab, ns):
            continue
        # a holder that runs but is not in the namespace now bound at /run/netns/NS holds
        # an old copy (its file was removed by hand): stop it, with the copy
        stale = read_pid(holder_pidfile(lab, ns))
        if stale and alive(stale) and net_inode(stale) != netns_inode(ns):
            stop_many([stale])
        argv = [pause] if pause else [sys.executable, "-c", PY_HOLDER]
        argv.append(netns_path(ns))
        if spec["hostname"]:
            argv.append(spec["hostname"])
        pid = spawn(argv, os.path.join(lab_dir(lab), "logs", "holders.log"))
        write_file(holder_pidfile(lab, ns), "%d\n" % pid)
        started.append(ns)
    return started


def view_for_diff(state):
    """The parts of a namespace the module manages, in one shape for before and after."""
    if state is None:
        return "absent\n"
    links = {name: {k: v for k, v in link.items() if k in ("kind", "addresses", "master", "hairpin", "up")}
             for name, link in sorted(state["links"].items()) if name != "lo"}
    routes = sorted([r["dst"], r["gateway"]] for r in state.get("routes", []))
    return json.dumps({"links": links, "routes": routes, "sysctls": state.get("sysctls", {})},
                      indent=2, sort_keys=True) + "\n"


ARGUMENT_SPEC = dict(
    lab=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    namespaces=dict(type="list", elements="dict", default=[]),
    root_links=dict(type="list", elements="dict", default=[]),
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
        module.fail_json(msg="pyroute2 is missing on this host (%s): install it with pip install pyroute2 or "
                             "apt-get install python3-pyroute2" % PYROUTE2_ERROR)
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

    registry = Registry(lab, "netns.json")
    with NamespaceSet() as nsset:
        if p["state"] == "absent":
            owned = [ns for ns in registry.items("namespaces")]
            root_owned = registry.items("root_links")
            present_root = nsset.rtnl(ROOT).links() if root_owned else {}
            would = [ns for ns in owned if netns_exists(ns)] + [n for n in root_owned if n in present_root]
            lab_folder = lab_dir(lab)
            purge = p["purge"] and os.path.isdir(lab_folder)
            if purge:
                running = container_groups(lab)
                if running:
                    module.fail_json(msg="lab %s still has containers (%s in %s): stop them first with "
                                         "podpath_containers (group: all, state: absent), then purge"
                                         % (lab, ", ".join("containers-%s.json" % g for g in running), lab_folder))
            if module.check_mode or not would and not owned and not root_owned and not purge:
                module.exit_json(changed=bool(would) or purge, removed=[],
                                 changes=["remove %s" % n for n in would] + (["remove %s" % lab_folder] if purge else []))
            removed = remove_namespaces(lab, registry, nsset, owned)
            rtnl = nsset.rtnl(ROOT)
            for name in root_owned:
                if name in present_root:
                    rtnl.delete_link(present_root[name]["index"], name)
                    removed.append(name)
            rtnl.commit()
            registry.discard("root_links", root_owned)
            if registry.empty():
                for path in (registry.path, os.path.join(lab_dir(lab), "logs", "holders.log")):
                    if os.path.exists(path):
                        os.unlink(path)
                for folder in ("holders", "logs", ""):
                    try:
                        os.rmdir(os.path.join(lab_dir(lab), folder))
                    except OSError:
                        pass  # not empty: other modules' files are still there
            changes = ["remove %s" % n for n in removed]
            if purge:
                if os.path.isdir(lab_folder):  # the lines above remove it when it held only the registry
                    shutil.rmtree(lab_folder)
                changes.append("remove %s" % lab_folder)
            module.exit_json(changed=bool(changes), changes=changes, removed=removed)

        check_kernel(module, desired)
        check_ownership(module, lab, registry, desired, nsset)
        prune = [ns for ns in registry.items("namespaces") if ns not in desired] if p["prune"] else []
        existing = [ns for ns in desired if ns is ROOT or netns_exists(ns)]
        wanted_sysctls = {ns: list(spec["sysctls"]) for ns, spec in desired.items()}
        observed = observe(nsset, existing, wanted_sysctls)
        changes = compare(desired, observed)
        holders_needed = [ns for ns, spec in desired.items()
                          if ns is not ROOT and spec["holder"] and (ns in changes and changes[ns]["create"]
                                                                     or not holder_pid(lab, ns))]
        lines = describe(changes)
        lines += ["%s: start holder" % ns for ns in holders_needed]
        lines += ["%s: remove namespace (no longer wanted)" % ns for ns in prune if netns_exists(ns)]
        changed = bool(lines)
        diff = None
        if module._diff:
            diff = {"before": "".join("# %s\n%s" % (ns or "root", view_for_diff(observed.get(ns)))
                                      for ns in sorted(changes, key=str)),
                    "after": "".join("# %s\n%s" % (ns or "root", view_for_diff(desired[ns]))
                                     for ns in sorted(changes, key=str))}
        if module.check_mode:
            module.exit_json(changed=changed, changes=lines, removed=[], **({"diff": diff} if diff else {}))
        try:
            removed = remove_namespaces(lab, registry, nsset, prune) if prune else []
            new = create_namespaces(registry, nsset, desired, changes, observed)
            holders = HolderStarter(lab, desired, p["pause"], nsset) if holders_needed else None
            try:
                apply(module, lab, registry, nsset, desired, changes, observed, new)
            finally:
                if holders:
                    holders.wait()
        except (NetlinkError, OSError) as exc:
            module.fail_json(msg="could not apply the wiring: %s. Run again to finish, or state: absent to "
                                 "remove what lab %s made" % (exc, lab), changes=lines, changed=True)
        result = {ns: {"holder_pid": holder_pid(lab, ns)} for ns in desired if ns is not ROOT}
        module.exit_json(changed=changed, changes=lines, removed=removed, namespaces=result,
                         **({"diff": diff} if diff else {}))


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
