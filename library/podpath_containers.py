#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podpath contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: podpath_containers
short_description: Run a lab's containers as real processes in their pods' namespaces
description:
  - Starts each container as a process that joins its pod's network namespace and, with
    O(containers[].isolate), the IPC and UTS namespaces held by the pod's holder, as containerd
    starts a pod's containers. Without O(containers[].isolate) the process only joins the
    network namespace, like a C(hostNetwork) pod such as MetalLB's speaker.
  - Runs each container under its own shim (C(podpath-shim), as containerd runs each under
    its shim). The shim joins the pod's network namespace, starts the container, notices at
    once when it exits, restarts it as the kubelet does with the restart policy C(Always) (at
    once the first time, then after a back-off of 10 s, doubling up to 300 s, which starts
    again once the container has run for 10 minutes) and writes the container's status to
    C(/run/podpath/<lab>/status/<group>/<pod>_<container>.json) when it starts and when it
    exits.
  - Marks each shim with its lab, group and name (the environment variables
    E(PODPATH_OWNER) and E(PODPATH_ROLE), which the container's processes inherit) and records
    it by pid and start time under C(/run/podpath/<lab>/). A container runs when its shim runs
    with that mark and its status says running, naming a process below the shim. One that does
    not (stopped, or waiting out its back-off), whose first process is stopped (SIGSTOP), or
    whose command or one of whose files changed (or was found changed on disk and written
    again), is started again at once under a new shim; then the module waits until the ports
    it should listen on are listening.
  - The record is a cache of the marks. A process is taken as the container only while it
    carries that container's mark and started when the record says, and is signalled only
    after that check. A missing or broken record is rebuilt from the marks; a container
    found running by its mark and no record is adopted, then restarted (its files and logs
    may be gone with the folder), and a second copy of one is stopped.
  - Writes the containers' files (configuration) first, only where the content changed.
  - One call takes every container of the lab; those it no longer lists are stopped.
version_added: "0.1.0"
author: podpath contributors (!UNKNOWN)
requirements:
  - Linux, root; nsenter and unshare from util-linux; podpath-shim
options:
  lab:
    description: The lab that owns the containers and whose namespaces they join.
    type: str
    required: true
  group:
    description:
      - Containers are pruned within their group only, so that each role (workloads,
        ingress, MetalLB) manages its own containers in its own call.
      - 1 to 32 lower-case letters, digits and C(-).
      - With O(state=absent), C(all) stops the containers of every group of the lab in one call.
    type: str
    default: default
  state:
    description: C(present) runs the listed containers; C(absent) stops every container of the group and removes its files.
    type: str
    choices: [present, absent]
    default: present
  files:
    description: Files to write before the containers start, each only where its content differs.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Where the file goes, under C(/run/podpath/<lab>/) (the module writes nowhere else).
        type: str
        required: true
      content:
        description: The file's whole content.
        type: str
        required: true
      mode:
        description:
          - Permission bits, as a string of octal digits, as Ansible's M(ansible.builtin.file) takes
            them (C('0644'), C('0755')). The lab never writes a file that group or others may
            write, nor special bits, so the most it takes is C('0755').
          - Quote it. An unquoted YAML C(0644) reaches the module as the number 420, which is
            taken as the mode it stands for (octal 644), as M(ansible.builtin.file) does; a number
            that is not such a mode, such as C(644) written without its leading zero, is refused.
        type: raw
        default: '0644'
  containers:
    description: The containers of the group.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Unique name in the lab, such as C(echo-1/echo).
        type: str
        required: true
      netns:
        description:
          - The network namespace it joins, one that carries O(lab)'s mark (made by M(podpath.lab.podpath_netns)).
        type: str
        required: true
      argv:
        description:
          - The command, as a list of words; no shell reads it.
          - A string is refused when it has spaces (Ansible would make it a one-word command).
        type: list
        elements: str
        required: true
      isolate:
        description:
          - Run as containerd runs a pod's container, in the namespaces of the pod's holder (the
            pause process) - its network, IPC and UTS namespaces, so that the host name is the
            pod's - with a mount namespace of its own and C(/proc) mounted for its PID namespace.
          - The PID namespace is the holder's when the holder is pid 1 of one of its own (a pod
            with C(shareProcessNamespace), made by M(podpath.lab.podpath_netns) with
            O(podpath.lab.podpath_netns#module:namespaces[].share_pid)), so that the pod's
            containers see each other's processes; otherwise the container gets one of its own.
          - Without a running holder of the lab in the namespace, the container gets IPC and UTS
            namespaces of its own, never the host's.
          - Without it the process joins only the network namespace, as a C(hostNetwork) pod.
        type: bool
        default: false
      files:
        description: Paths among O(files[].path) whose change restarts the container.
        type: list
        elements: str
        default: []
      listen:
        description: TCP ports the container must listen on before the module returns.
        type: list
        elements: int
        default: []
  timeout:
    description: Seconds to wait for the containers' ports.
    type: float
    default: 10
  shim:
    description:
      - The shim program (C(podpath-shim), built by C(make pause)).
      - By default the one beside the Python that runs the module, else the one on E(PATH).
    type: path
attributes:
  check_mode:
    support: full
    description: Reports the containers that would start or stop and the files that would be written.
  diff_mode:
    support: none
    description: No diff is shown.
  platform:
    support: full
    platforms: linux
    description: Linux namespaces, C(nsenter) and C(unshare).
"""

EXAMPLES = r"""
- name: Run the echo backend's nginx in its pod
  podpath.lab.podpath_containers:
    lab: podpath
    group: workloads
    files:
      - {path: /run/podpath/podpath/pods/echo-1/nginx.conf, content: "...", mode: "0644"}
    containers:
      - name: echo-1/echo
        netns: cni-e5218641-4689-58c3-ab00-94c2db782394
        isolate: true
        argv: [nginx, -c, /run/podpath/podpath/pods/echo-1/nginx.conf, -g, "daemon off;"]
        files: [/run/podpath/podpath/pods/echo-1/nginx.conf]
        listen: [8080]

- name: Stop every container of the lab
  podpath.lab.podpath_containers:
    lab: podpath
    group: all
    state: absent
"""

RETURN = r"""
started:
  description: Containers started (or restarted) by this call.
  returned: always
  type: list
  elements: str
  sample: ["echo-1/echo"]
stopped:
  description: Containers stopped because they are no longer listed (or all, with state absent).
  returned: always
  type: list
  elements: str
  sample: []
adopted:
  description:
    - Containers found running by their mark that the lab's folder did not record (a folder lost,
      or a record file that was half-written); each is restarted, and listed in RV(started) too.
  returned: when state is present
  type: list
  elements: str
  sample: ["echo-1/echo"]
containers:
  description:
    - Container name to the pid of its shim and of the container's first process (both in the
      host's PID namespace), its namespace and its status file.
  returned: when state is present and not in check mode
  type: dict
  sample: {"echo-1/echo": {"pid": 4242, "init": 4250, "netns": "cni-e5218641-4689-58c3-ab00-94c2db782394",
           "status": "/run/podpath/podpath/status/workloads/echo-1_echo.json"}}
files_changed:
  description: Files written (in check mode, that would be written) because their content differed.
  returned: always
  type: list
  elements: str
  sample: ["/run/podpath/podpath/pods/echo-1/nginx.conf"]
"""

import hashlib
import json
import os
import re
import shutil
import sys
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.podpath_lab import SHIM, KernelView, Registry, alive, bells_dir, container_groups, \
    container_role, container_status_dir, container_status_path, holder_pidfile, holder_role, lab_dir, lab_process, \
    net_inode, netns_owner, netns_path, pid_namespace_init, process_marks, process_netns_lab, read_container_status, \
    read_pidfile, require_lab_and_root, reap_children, spawn, start_time, status_pid, stop_many, unmarked_process, \
    write_file


# Seconds a container gets to exit after SIGTERM before it is killed (a cluster's
# grace period is 30 s). A first process with no SIGTERM handler (sleep, as PID 1 of its
# PID namespace) cannot get SIGTERM at all: it is killed at once (stop_many).
STOP_GRACE = 1.0
# The shim's own grace period: it kills what is left of its container a little before the
# module would kill the shim, so that it still writes the container's last status.
SHIM_GRACE = 0.8
# The most a file of the lab may allow: never writable by group or others, no special bits.
MODE_MAX = 0o755
OCTAL_MODE = re.compile(r"^[0-7]{3,4}$")


def state_path(lab, group):
    return os.path.join(lab_dir(lab), "containers-%s.json" % group)


def status_groups(lab):
    """The groups that have a folder of their containers' status files."""
    try:
        return sorted(os.listdir(os.path.join(lab_dir(lab), "status")))
    except OSError:
        return []


def load_state(lab, group):
    """The group's records, and what was wrong with its file ('' if nothing). A file that is
    not whole (not JSON, a record without its pid, start time or namespace) is not trusted:
    what it lacks is rebuilt from the processes' marks."""
    try:
        with open(state_path(lab, group), "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}, ""
    except OSError as exc:
        return {}, "cannot be read (%s)" % exc.strerror
    try:
        data = json.loads(raw)
    except ValueError:
        return {}, "is not valid JSON (%d bytes: half-written?)" % len(raw)
    if not isinstance(data, dict):
        return {}, "does not hold container records"
    good = {name: record for name, record in data.items() if isinstance(record, dict)
            and isinstance(record.get("pid"), int) and record["pid"] > 0 and isinstance(record.get("start"), int)
            and isinstance(record.get("netns"), str)}
    bad = sorted(set(data) - set(good))
    return good, ("has records without a pid, start time or namespace (%s)" % ", ".join(bad) if bad else "")


def started(record, lab, group, name, legacy=frozenset()):
    """The record names a process of the container that still runs: the same pid and start
    time, and LAB's mark for this container in its environment; or, started before the marks
    existed, no mark at all and a namespace with LAB's mark or among LEGACY (it may be
    stopped, not kept)."""
    pid, start = record.get("pid"), record.get("start")
    if not pid or start is None:
        return False
    return lab_process(pid, lab, container_role(group, name), start) or (
        unmarked_process(pid, start) and (process_netns_lab(pid) == lab or net_inode(pid) in legacy))


def legacy_inodes(registry):
    """The namespaces (inodes) without a mark that a registry written before the marks lists:
    in them, an unmarked process that a record names with its start time is the lab's."""
    found = set()
    for ns in registry.items("namespaces") if registry.legacy else []:
        if netns_owner(ns)[1] == "":
            try:
                found.add(os.stat(netns_path(ns)).st_ino)
            except OSError:
                pass
    return frozenset(found)


def running(record, lab, group, name):
    """The container runs: its shim runs with its mark, in the namespace bound at /run/netns now
    (not an old copy), its status says running, naming a process below the shim, and that
    process is not stopped. A container waiting out its back-off does not run: `up` starts it
    again at once."""
    pid = record.get("pid")
    if not lab_process(pid, lab, container_role(group, name), record.get("start")):
        return False
    try:
        if os.stat("/proc/%d/ns/net" % pid).st_ino != os.stat(netns_path(record["netns"])).st_ino:
            return False
    except OSError:
        return False
    if frozen(pid):
        return False
    return status_pid(read_container_status(container_status_path(lab, group, name))[0], name, pid) is not None


def find_shim(module, given):
    """The shim program: GIVEN, or the one beside the Python that runs the module (the
    environment make pause builds it in), or the one on PATH; fails naming the fix."""
    candidates = [given] if given else [os.path.join(os.path.dirname(sys.executable), SHIM),
                                        os.path.join(sys.prefix, "bin", SHIM), shutil.which(SHIM)]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if given:
        module.fail_json(msg="shim program %s is not an executable file: build it with make pause, or give the "
                             "path of podpath-shim" % given)
    module.fail_json(msg="podpath-shim, which runs each container, is not beside %s nor on PATH: build it with "
                         "make pause (python -m podpath.runtime.pause_build)" % sys.executable)


def shim_options(lab, group, container):
    """What the shim of CONTAINER is told: its namespace, status file, name, the lab's bells
    and its grace period."""
    return ["--netns", netns_path(container["netns"]), "--status", container_status_path(lab, group, container["name"]),
            "--name", container["name"], "--bells", bells_dir(lab), "--grace", str(SHIM_GRACE)]


def shim_argv(lab, group, container, shim):
    """The shim's command line for CONTAINER: the shim, its options, then the runtime's (launch_argv)."""
    return [shim] + shim_options(lab, group, container) + ["--"] + launch_argv(lab, container)


def exit_words(status):
    """A status's last exit, in words: 'signal 9', 'exit code 1', or 'no exit'."""
    last = (status or {}).get("last") or {}
    if last.get("signal"):
        return "signal %d" % last["signal"]
    if last.get("exitCode") is not None:
        return "exit code %d" % last["exitCode"]
    return "no exit"


def remove_status(lab, group, names):
    """Remove the status files of containers NAMES of GROUP (and the group's folder once empty)."""
    for name in names:
        try:
            os.unlink(container_status_path(lab, group, name))
        except OSError:
            pass
    try:
        os.rmdir(container_status_dir(lab, group))
    except OSError:
        pass


# The runtime's own programs, between a container's record and the container's first process.
LAUNCHERS = ("nsenter", "unshare", "podpath-shim")


def frozen(pid):
    """The container's first process (below the runtime's nsenter and unshare, which may be
    stopped while they wait) is stopped by SIGSTOP: it does its work no more and never exits,
    so only a restart brings the container back. A process stopped by a debugger (state t)
    is left alone."""
    for _depth in range(8):
        try:
            with open("/proc/%d/comm" % pid) as handle:
                launcher = handle.read().strip() in LAUNCHERS
            with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
                kids = handle.read().split()
            with open("/proc/%d/stat" % pid) as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if not launcher:
            return state == "T"
        if len(kids) != 1:
            return False
        pid = int(kids[0])
    return False


def listening_ports(pid):
    """TCP ports in LISTEN state in the network namespace of PID (from its /proc/PID/net/tcp)."""
    ports = set()
    try:
        with open("/proc/%d/net/tcp" % pid) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[3] == "0A":
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return ports


def spec_hash(lab, group, container, contents):
    """What a running container was started from: its own spec, its files' contents and what
    its shim was told (a container whose shim would be told otherwise, by a newer podpath,
    is started again)."""
    data = {k: container.get(k) for k in ("argv", "netns", "isolate")}
    data["shim"] = shim_options(lab, group, container)
    data["files"] = {path: hashlib.sha256(contents.get(path, b"")).hexdigest() for path in container["files"]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def adopt(lab, group, state, view):
    """Containers of GROUP that run with LAB's marks and STATE does not record: records for
    them ({name: record}, no spec: each is restarted) and the pids of second copies."""
    prefix = container_role(group, "")
    adopted, extra = {}, []
    for proc in sorted(view.units(lab), key=lambda p: p.start):
        if not (proc.role or "").startswith(prefix):
            continue
        name = proc.role[len(prefix):]
        if name in state and state[name]["pid"] == proc.pid:
            continue
        if name in state or name in adopted:
            extra.append((proc.pid, proc.role, proc.start))
            continue
        adopted[name] = {"pid": proc.pid, "start": proc.start, "spec": None, "written": [],
                         "netns": (view.names.get(proc.net) or ["?"])[0]}
    return adopted, extra


def launch_argv(lab, container):
    """The command that starts CONTAINER: nsenter into its pod's namespaces, then, with
    isolate, unshare for the namespaces it has for itself, then its argv.

    As containerd's CRI plugin: the network, IPC and UTS namespaces are the holder's; the
    mount namespace is the container's own; the PID namespace is the holder's when the holder
    is pid 1 of one of its own (shareProcessNamespace), else the container's own. nsenter
    does not fork into a shared PID namespace (--no-fork): unshare's child, the container's
    first process, is born in it, and the wrapper stays in the host's, as with --pid."""
    argv = ["nsenter", "--net=%s" % netns_path(container["netns"])]
    if not container.get("isolate"):
        return argv + ["--"] + list(container["argv"])
    unshare = ["unshare", "--mount"]
    # the holder's namespaces, once its pidfile is shown to name the lab's holder
    holder, start = read_pidfile(holder_pidfile(lab, container["netns"]))
    if lab_process(holder, lab, holder_role(container["netns"]), start):
        argv += ["--ipc=/proc/%d/ns/ipc" % holder, "--uts=/proc/%d/ns/uts" % holder]
        if pid_namespace_init(holder):
            argv += ["--pid=/proc/%d/ns/pid" % holder, "--no-fork"]
        else:
            unshare.append("--pid")
    else:
        unshare += ["--ipc", "--uts", "--pid"]  # never the host's IPC and UTS namespaces
    return argv + ["--"] + unshare + ["--fork", "--kill-child=SIGKILL", "--mount-proc", "--"] + list(container["argv"])


def file_mode(value, path):
    """The permission bits of MODE (a file entry's), or an error message naming the fix.

    As Ansible's file module: a string is octal digits; a number is the mode itself,
    which is what YAML makes of an unquoted 0644 (420). A number written without its
    leading zero (644) is a different mode (0o1204): the bound refuses it."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, "mode %r of file %s is not a mode: write it as a quoted string of octal digits, such as '0644'" \
            % (value, path)
    if isinstance(value, str):
        if not OCTAL_MODE.match(value):
            return None, "mode %r of file %s is not a string of octal digits: write it as '0644'" % (value, path)
        bits = int(value, 8)
        shown = repr(value)
    else:
        bits = value
        shown = "%d (a number: octal %s)" % (value, format(value, "o"))
    if bits < 0 or bits & ~MODE_MAX:
        return None, ("mode %s of file %s allows more than %s (writable by group or others, or special bits), or "
                      "is a number that is not a mode: quote the mode as a string of octal digits, at most '0755', "
                      "such as '0644'" % (shown, path, format(MODE_MAX, "#o")))
    return bits, ""


def container_error(container):
    """What is wrong with a container entry that its argument spec cannot say, or ''."""
    for key in ("name", "netns", "argv"):
        if not container[key]:
            return "container %r has an empty %s: every container needs name, netns and argv" % (container["name"], key)
    argv = container["argv"]
    if len(argv) == 1 and any(char.isspace() for char in argv[0]):
        # a string argument reaches the module as a list of one word (split only on commas)
        return ("argv of container %s is the string %r: give it as a list of words, such as [nginx, -g, 'daemon off;'], "
                "not a shell command line" % (container["name"], argv[0]))
    return ""


ARGUMENT_SPEC = dict(
    lab=dict(type="str", required=True),
    group=dict(type="str", default="default"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    files=dict(type="list", elements="dict", default=[], options=dict(
        path=dict(type="str", required=True),
        content=dict(type="str", required=True),
        mode=dict(type="raw", default="0644"),
    )),
    containers=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        netns=dict(type="str", required=True),
        argv=dict(type="list", elements="str", required=True),
        isolate=dict(type="bool", default=False),
        files=dict(type="list", elements="str", default=[]),
        listen=dict(type="list", elements="int", default=[]),
    )),
    timeout=dict(type="float", default=10),
    shim=dict(type="path"),
)


def run_module(module):
    """The module's work; MODULE is an AnsibleModule, or the controller's stand-in for one
    when the task runs in-process (plugins/action/podpath_containers.py)."""
    p = module.params
    lab = require_lab_and_root(module, "podpath_containers")
    root = lab_dir(lab) + "/"
    group = p["group"]
    if not re.match(r"^[a-z0-9-]{1,32}$", group):
        module.fail_json(msg="group %r is not valid: use 1 to 32 lower-case letters, digits and '-'" % (group,))
    registry = Registry(lab, "netns.json")
    legacy = legacy_inodes(registry)
    if p["state"] == "absent":
        groups = [group]
        if group == "all":
            groups = container_groups(lab)
        states = {g: load_state(lab, g)[0] for g in groups}
        # with or without records: every process that carries the mark of a container of the group
        prefix = "container:" if group == "all" else container_role(group, "")
        marked = {proc.pid: proc for proc in KernelView().units(lab) if (proc.role or "").startswith(prefix)}
        recorded = {s[n]["pid"]: (g, n, s[n]) for g, s in states.items() for n in s
                    if started(s[n], lab, g, n, legacy)}
        names = sorted({n for g in groups for n in states[g]} | {proc.role.split(":", 2)[2] for proc in marked.values()})
        if not module.check_mode:

            def still_the_labs(pid):
                if pid in marked:
                    return lab_process(pid, lab, marked[pid].role, marked[pid].start)
                g, n, record = recorded[pid]
                return started(record, lab, g, n, legacy)
            # every group's containers at once: they stop in parallel, within one grace period
            stop_many(list(marked) + [pid for pid in recorded if pid not in marked], STOP_GRACE, term_children=True,
                      verify=still_the_labs)
            for g, state in states.items():
                for path in {f for n in state for f in state[n].get("written", [])}:
                    if path.startswith(root) and os.path.exists(path):
                        os.unlink(path)
                if os.path.exists(state_path(lab, g)):
                    os.unlink(state_path(lab, g))
            # the shims' status files, once the shims are gone
            for g in sorted(set(groups) | (set(status_groups(lab)) if group == "all" else set())):
                shutil.rmtree(container_status_dir(lab, g), ignore_errors=True)
            try:
                os.rmdir(os.path.join(lab_dir(lab), "status"))
            except OSError:
                pass
        module.exit_json(changed=bool(names), stopped=names, started=[], files_changed=[])

    if group == "all":
        module.fail_json(msg="group all is only for state: absent; give each group its own name")
    state, broken = load_state(lab, group)

    owners = {}
    seen = set()
    for c in p["containers"]:
        error = container_error(c)
        if error:
            module.fail_json(msg=error)
        if c["name"] in seen:
            module.fail_json(msg="container name %s is used twice: names must be unique in a lab" % c["name"])
        seen.add(c["name"])
        if c["netns"] not in owners:
            owners[c["netns"]] = netns_owner(c["netns"])
        owner, alias = owners[c["netns"]]
        # the namespace's mark says whose it is; a folder written before the marks, its registry
        if owner != lab and not (alias == "" and registry.legacy and registry.owns("namespaces", c["netns"])):
            module.fail_json(msg="container %s asks for namespace %s, which does not carry the mark of lab %s (%s): "
                                 "build it first with podpath_netns" % (c["name"], c["netns"], lab,
                                                                        "no such namespace" if alias is None
                                                                        else "its lo's alias is %r" % alias))
    modes = {}
    for f in p["files"]:
        path = os.path.normpath(f["path"])
        if not path.startswith(root):
            module.fail_json(msg="file %r is outside %s: the lab writes only below its own folder" % (f["path"], root))
        modes[f["path"]], error = file_mode(f["mode"], f["path"])
        if error:
            module.fail_json(msg=error)

    files_changed = []
    contents = {}
    for f in p["files"]:
        data = f["content"].encode()
        contents[f["path"]] = data
        if read_bytes(f["path"]) != data:
            files_changed.append(f["path"])
            if not module.check_mode:
                write_file(f["path"], data, modes[f["path"]])

    wanted = {c["name"]: c for c in p["containers"]}
    # a record that names no process of the lab any more (gone, or its pid now another program's) is dropped
    state = {n: r for n, r in state.items() if started(r, lab, group, n, legacy)}
    adopted, extra = {}, []
    if broken or any(not running(state.get(n, {}), lab, group, n) for n in wanted):
        # the records may have lost a container that runs: the marks say what runs
        adopted, extra = adopt(lab, group, state, KernelView())
        state.update(adopted)
    stale = [n for n in state if n not in wanted]
    to_start = []
    for name, c in wanted.items():
        record = state.get(name, {})
        # a file rewritten here may have been read as it was by a container that started since
        if not running(record, lab, group, name) or record.get("spec") != spec_hash(lab, group, c, contents) or \
                set(c["files"]) & set(files_changed):
            to_start.append(name)
    changed = bool(to_start or stale or files_changed or extra or broken)
    if module.check_mode:
        module.exit_json(changed=changed, started=to_start, stopped=stale, files_changed=files_changed,
                         adopted=sorted(adopted))
    shim = find_shim(module, p["shim"]) if to_start else None

    copies = {pid: (role, start) for pid, role, start in extra}

    def still_the_labs(pid):
        if pid in copies:
            return lab_process(pid, lab, *copies[pid])
        name = next(n for n in stale + to_start if n in state and state[n]["pid"] == pid)
        return started(state[name], lab, group, name, legacy)
    stop_many([state[n]["pid"] for n in stale + to_start if n in state] + list(copies), STOP_GRACE,
              term_children=True, verify=still_the_labs)
    for name in stale:
        state.pop(name, None)
    # their shims are gone, with the last word they wrote: any status read from now on is a new shim's
    remove_status(lab, group, stale + to_start)
    logs = os.path.join(lab_dir(lab), "logs")
    for name in to_start:
        c = wanted[name]
        pid = spawn(shim_argv(lab, group, c, shim), os.path.join(logs, name.replace("/", "_") + ".log"),
                    process_marks(lab, container_role(group, name)))
        state[name] = {"pid": pid, "start": start_time(pid), "spec": spec_hash(lab, group, c, contents), "netns": c["netns"],
                       "written": sorted(f["path"] for f in p["files"])}
    write_file(state_path(lab, group), json.dumps(state, indent=1, sort_keys=True) + "\n")

    # each started container runs (its status says so, naming a process below its shim) and listens
    deadline = time.monotonic() + p["timeout"]
    waiting = {n: set(wanted[n]["listen"]) for n in to_start}
    while True:
        reap_children()
        for name in list(waiting):
            pid = state[name]["pid"]
            log = os.path.join(logs, name.replace("/", "_") + ".log")
            if not alive(pid):
                module.fail_json(msg="the shim of container %s exited right after it started; see %s" % (name, log),
                                 started=to_start)
            status = read_container_status(container_status_path(lab, group, name))[0]
            if status and status["name"] == name and (status["restarts"] or status["state"] != "running"):
                module.fail_json(msg="container %s exited right after it started (%s); its shim starts it again "
                                     "after a back-off; see %s" % (name, exit_words(status), log), started=to_start)
            if status_pid(status, name, pid) and waiting[name] <= listening_ports(pid):
                del waiting[name]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if waiting:
        module.fail_json(msg="containers did not run and listen within %ss: %s" % (p["timeout"], ", ".join(
            "%s (ports %s)" % (n, sorted(ports)) for n, ports in sorted(waiting.items()))), started=to_start)
    result = {}
    for n in wanted:
        status = container_status_path(lab, group, n)
        result[n] = {"pid": state[n]["pid"], "netns": state[n]["netns"], "status": status,
                     "init": status_pid(read_container_status(status)[0], n, state[n]["pid"])}
    module.exit_json(changed=changed, started=to_start, stopped=stale, files_changed=files_changed,
                     adopted=sorted(adopted), containers=result)


def main():
    run_module(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
