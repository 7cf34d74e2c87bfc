"""A netns lab's pods are made as containerd makes them, checked on a real lab from /proc.

containerd's CRI plugin puts every container of a pod in its sandbox's (the pause
process's) network, IPC and UTS namespaces, so `hostname` in any container prints the
pod's name; each container has a mount namespace of its own, and a PID namespace of its
own unless the pod sets shareProcessNamespace, when all its containers share the pause's,
whose pid 1 the pause is.

One lab (named 'ctd' + random) is built with the multi-container pod sharing its PID
namespace and the echo pods not; then `up` flips the multi-container pod's option off and
on again. Everything is read from /proc and with nsenter, ps and hostname, not with
podpath's own code: a pod's processes are those in its network namespace, its holder the
one whose environment says PODPATH_ROLE=holder:<namespace>, its containers' processes the
others that are not in the host's PID namespace (the runtime's wrappers are). The lab is
removed at the end, also when a test fails.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labtools import force_remove, lab_namespaces, new_lab_name, podpath
from podpath.model import labdir, plan as plan_mod, topology as topology_mod
from podpath.play import inprocess

pytestmark = [pytest.mark.netns, pytest.mark.slow]

KINDS = ("net", "ipc", "uts", "mnt", "pid")
HOST_PID_NS = os.readlink("/proc/self/ns/pid")
NETNS = inprocess.load_library("podpath_netns")


@pytest.fixture(scope="module", autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")


def topology_file(folder: Path, share: bool) -> Path:
    """The reference topology with the multi-container pod's share_process_namespace set to SHARE."""
    data = yaml.safe_load(topology_mod.TOPOLOGY_FILE.read_text())
    data["podpath_topology"]["workloads"]["multi_container_pod"]["share_process_namespace"] = share
    path = folder / f"topology-share-{str(share).lower()}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The lab's name and plan, and a way to `up` it with the multi-container pod sharing or not."""
    folder = tmp_path_factory.mktemp("containerd-pods")
    name = new_lab_name("ctd")

    def up(share: bool) -> plan_mod.Plan:
        path = topology_file(folder, share)
        done = podpath("up", "--lab", name, "-q", "--topology", str(path))
        assert done.returncode == 0, f"podpath up --lab {name} failed:\n{done.stdout}\n{done.stderr}"
        return plan_mod.build(topology_mod.load(path), name)

    try:
        yield name, up
    finally:
        done = podpath("down", "--lab", name, "-q")
        if done.returncode != 0 or lab_namespaces(name):
            force_remove(name)


@pytest.fixture(scope="module", params=[True, False, True], ids=["shared", "flipped-off", "flipped-on"])
def built(lab, request):
    """The lab built (first) or changed by `up` so that the multi-container pod shares its PID
    namespace (shared, flipped-on) or not (flipped-off); the echo pods never share."""
    name, up = lab
    return up(request.param), request.param


# -- reading the kernel --------------------------------------------------------------------------
def namespaces(pid: int) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in KINDS}


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def nspid(pid: int) -> list[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("NSpid:")).split()[1:]


def pod_processes(pod: plan_mod.Pod) -> tuple[int, dict[int, dict[str, str]]]:
    """(the holder's pid, {pid: namespaces} of the pod's containers' processes)."""
    inode = os.stat(labdir.lab.netns_path(pod.netns)).st_ino
    holder, members = None, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino != inode or Path(f"/proc/{pid}/stat").read_text().split(
                    ") ", 1)[1].startswith("Z"):
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            spaces = namespaces(pid)
        except (OSError, IndexError):
            continue  # gone meanwhile
        if f"PODPATH_ROLE=holder:{pod.netns}".encode() in environ.split(b"\0"):
            holder = pid
        elif spaces["pid"] != HOST_PID_NS:
            members[pid] = spaces
    assert holder, f"pod {pod.name}: no holder in its network namespace {pod.netns}"
    # the holder's own PID namespace counts too: with shareProcessNamespace it is the pod's
    members.pop(holder, None)
    assert members, f"pod {pod.name}: no container process in its network namespace"
    return holder, members


def by_container(pod: plan_mod.Pod, members: dict[int, dict[str, str]]) -> dict[str, list[int]]:
    """The multi-container pod's processes per container: `sleep` is container-1, nginx container-2."""
    names = {"sleep": "container-1", "nginx": "container-2"}
    grouped: dict[str, list[int]] = {}
    for pid in members:
        grouped.setdefault(names.get(comm(pid), comm(pid)), []).append(pid)
    assert set(grouped) == {"container-1", "container-2"}, f"pod {pod.name}: processes {grouped}"
    return grouped


def in_container(pid: int, *argv: str) -> str:
    """ARGV in every namespace of process PID, as kubectl exec runs a command in a container."""
    done = subprocess.run(["nsenter", "-t", str(pid), "-a", "--", *argv], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"nsenter -t {pid} -a {' '.join(argv)}: {done.stderr}"
    return done.stdout


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def killed_and_reaped(pid: int) -> bool:
    """SIGKILL to PID, then whether it is gone within 10 s: reaped by its parent, not left a zombie."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(f"/proc/{pid}")


# -- every pod -------------------------------------------------------------------------------
def test_hostname_in_every_container_of_every_pod_is_the_pod_name(built):
    plan, _ = built
    wrong = {}
    for pod in plan.pods:
        _, members = pod_processes(pod)
        for pid in members:
            seen = in_container(pid, "hostname").strip()
            if seen != pod.name:
                wrong[f"{pod.name} pid {pid} ({comm(pid)})"] = seen
    assert not wrong, f"hostname in a container is not its pod's name: {wrong}"


def test_every_container_joins_the_pause_network_ipc_and_uts_namespaces(built):
    plan, _ = built
    for pod in plan.pods:
        holder, members = pod_processes(pod)
        pause = namespaces(holder)
        assert pause["net"] == f"net:[{os.stat(labdir.lab.netns_path(pod.netns)).st_ino}]"
        for pid, spaces in members.items():
            for kind in ("net", "ipc", "uts"):
                assert spaces[kind] == pause[kind], (
                    f"pod {pod.name}: {comm(pid)} (pid {pid}) is in {spaces[kind]}, not the pause's {pause[kind]}")


def test_every_container_has_a_mount_namespace_of_its_own(built):
    plan, _ = built
    pod = next(p for p in plan.pods if p.app == "multi-container")
    holder, members = pod_processes(pod)
    mounts = {name: {members[pid]["mnt"] for pid in pids} for name, pids in by_container(pod, members).items()}
    assert all(len(m) == 1 for m in mounts.values()), f"a container's processes are in several mount namespaces: {mounts}"
    assert mounts["container-1"] != mounts["container-2"], f"the two containers share a mount namespace: {mounts}"
    assert namespaces(holder)["mnt"] not in mounts["container-1"] | mounts["container-2"]


def test_an_echo_pod_never_shares_its_pid_namespace_with_its_pause(built):
    plan, _ = built
    for pod in plan.echo_pods:
        holder, members = pod_processes(pod)
        assert not pod.share_process_namespace
        assert len(nspid(holder)) == 1, f"{pod.name}'s pause is pid 1 of a PID namespace: NSpid {nspid(holder)}"
        assert namespaces(holder)["pid"] not in {s["pid"] for s in members.values()}
        assert in_container(next(iter(members)), "cat", "/proc/1/comm").strip() == "nginx"


# -- the multi-container pod, with and without shareProcessNamespace -------------------------------
def test_the_pid_namespaces_follow_share_process_namespace(built):
    plan, share = built
    pod = next(p for p in plan.pods if p.app == "multi-container")
    assert pod.share_process_namespace is share
    holder, members = pod_processes(pod)
    grouped = by_container(pod, members)
    pids = {name: {members[pid]["pid"] for pid in found} for name, found in grouped.items()}
    pause = namespaces(holder)["pid"]
    if share:
        assert pids == {"container-1": {pause}, "container-2": {pause}}, (
            f"with shareProcessNamespace every container is in the pause's PID namespace {pause}: {pids}")
    else:
        assert pause == HOST_PID_NS, "without shareProcessNamespace the pause stays in the host's PID namespace"
        assert all(len(p) == 1 for p in pids.values()) and pids["container-1"] != pids["container-2"], pids
        assert pause not in pids["container-1"] | pids["container-2"]


def test_with_share_process_namespace_the_pause_is_pid_1_and_every_container_sees_the_others(built):
    plan, share = built
    pod = next(p for p in plan.pods if p.app == "multi-container")
    holder, members = pod_processes(pod)
    grouped = by_container(pod, members)
    if not share:
        assert len(nspid(holder)) == 1, "a pause of a pod that does not share is no namespace's pid 1"
        for name, found in grouped.items():
            seen = in_container(found[0], "ps", "-e", "-o", "comm=").split()
            assert "podpath-pause" not in seen, f"{name} sees the pause: {seen}"
            assert ("sleep" in seen) is (name == "container-1") and ("nginx" in seen) is (name == "container-2"), (
                f"{name} sees another container's processes: {seen}")
        return
    assert nspid(holder)[-1] == "1" and len(nspid(holder)) == 2, f"the pause's NSpid is {nspid(holder)}"
    for name, found in grouped.items():
        assert in_container(found[0], "cat", "/proc/1/comm").strip() == "podpath-pause", name
        seen = in_container(found[0], "ps", "-e", "-o", "pid=,comm=")
        rows = {int(p): c for p, c in (line.split(None, 1) for line in seen.splitlines() if line.strip())}
        assert rows.get(1) == "podpath-pause", f"ps in {name}: {rows}"
        assert {"sleep", "nginx"} <= set(rows.values()), f"ps in {name} does not show both containers: {rows}"


def test_orphans_go_to_the_pause_and_are_reaped_only_when_the_pod_shares_its_pid_namespace(built):
    """A shell in container-1 starts a child and exits at once: the child's new parent is pid 1
    of its PID namespace, the pause with shareProcessNamespace (which reaps it when it dies),
    else container-1's own first process."""
    plan, share = built
    pod = next(p for p in plan.pods if p.app == "multi-container")
    holder, members = pod_processes(pod)
    sleeper = by_container(pod, members)["container-1"][0]
    inner = in_container(sleeper, "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!").strip()
    orphan = next(pid for pid in pod_processes(pod)[1] if nspid(pid)[-1] == inner)
    try:
        parent = int(Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if not share:
            assert parent == sleeper and nspid(sleeper)[-1] == "1", (
                f"the orphan's parent is {parent}, not container-1's own pid 1 ({sleeper})")
            return
        assert parent == holder, f"the orphan's parent is {parent}, not the pause {holder}"
        assert killed_and_reaped(orphan), "the killed orphan stayed a zombie: the pause did not reap it"
    finally:
        kill(orphan)  # without sharing it stays a zombie of `sleep` until the container stops


def test_each_flip_replaced_the_pause_and_restarted_the_containers_in_its_namespaces(built):
    """After every `up` (first, off, on again), the containers are in the namespaces of the
    pause that runs now: a pause replaced by the flip took its containers with it."""
    plan, share = built
    pod = next(p for p in plan.pods if p.app == "multi-container")
    holder, members = pod_processes(pod)
    assert (len(nspid(holder)) == 2) is share
    for spaces in members.values():
        assert (spaces["ipc"], spaces["uts"]) == (namespaces(holder)["ipc"], namespaces(holder)["uts"])


# -- the holders themselves: podpath-pause and the Python holder, through podpath_netns ----------
PAUSE = Path(sys.executable).parent / "podpath-pause"
HOLDERS = [pytest.param(str(PAUSE), id="podpath-pause"), pytest.param(None, id="python-holder")]


@pytest.fixture
def holder_lab():
    """A podpath_netns lab of one pod namespace (named 'ctd' + random), run in this process,
    removed with state: absent and purge at the end."""
    name = new_lab_name("ctd")
    netns = f"{name}-pod"

    def apply(pause: str | None, share_pid: bool) -> dict:
        args = {"lab": name, "namespaces": [{"name": netns, "holder": True, "hostname": "pod-one",
                                              "share_pid": share_pid}]}
        if pause:
            args["pause"] = pause
        result = inprocess.run(NETNS, "podpath_netns", args)
        assert not result.get("failed"), result.get("msg")
        return result

    try:
        yield netns, apply
    finally:
        result = inprocess.run(NETNS, "podpath_netns", {"lab": name, "state": "absent", "purge": True})
        if result.get("failed") or lab_namespaces(name):
            force_remove(name)


def holder_of(result: dict, netns: str) -> int:
    pid = result["namespaces"][netns]["holder_pid"]
    assert pid, f"no holder in {netns}: {result}"
    return pid


@pytest.mark.parametrize("pause", HOLDERS)
def test_a_holder_with_share_pid_is_pid_1_of_its_own_pid_namespace_and_sets_the_host_name(holder_lab, pause):
    if pause and not Path(pause).exists():
        pytest.skip(f"{pause} is not built: make pause")
    netns, apply = holder_lab
    holder = holder_of(apply(pause, share_pid=True), netns)
    assert nspid(holder)[-1] == "1" and len(nspid(holder)) == 2, f"NSpid of the holder: {nspid(holder)}"
    assert namespaces(holder)["pid"] != HOST_PID_NS
    assert namespaces(holder)["net"] == f"net:[{os.stat(labdir.lab.netns_path(netns)).st_ino}]"
    hostname = subprocess.run(["nsenter", "-t", str(holder), "-u", "hostname"], capture_output=True, text=True)
    assert hostname.stdout.strip() == "pod-one"
    # the module itself goes back to its own PID namespace: what it starts next is born there
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert namespaces(sleeper.pid)["pid"] == HOST_PID_NS
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("pause", HOLDERS)
def test_a_holder_with_share_pid_reaps_the_orphans_of_its_pid_namespace(holder_lab, pause):
    if pause and not Path(pause).exists():
        pytest.skip(f"{pause} is not built: make pause")
    netns, apply = holder_lab
    holder = holder_of(apply(pause, share_pid=True), netns)
    inner = subprocess.run(["nsenter", "-t", str(holder), "-p", "--", "sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    orphan = next(int(e) for e in os.listdir("/proc") if e.isdigit() and os.path.exists(f"/proc/{e}/status")
                  and namespaces_or_none(int(e), "pid") == namespaces(holder)["pid"] and nspid(int(e))[-1] == inner)
    try:
        assert int(Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1].split()[1]) == holder
        assert killed_and_reaped(orphan), "the holder left its killed orphan a zombie"
    finally:
        kill(orphan)


@pytest.mark.parametrize("pause", HOLDERS)
def test_a_holder_is_replaced_when_share_pid_changes_and_kept_when_it_does_not(holder_lab, pause):
    if pause and not Path(pause).exists():
        pytest.skip(f"{pause} is not built: make pause")
    netns, apply = holder_lab
    first = holder_of(apply(pause, share_pid=False), netns)
    assert len(nspid(first)) == 1, "without share_pid the holder stays in the module's PID namespace"
    again = apply(pause, share_pid=False)
    assert holder_of(again, netns) == first and not again["changed"]
    flipped = apply(pause, share_pid=True)
    second = holder_of(flipped, netns)
    assert second != first and nspid(second)[-1] == "1"
    assert f"{netns}: restart holder as pid 1 of a PID namespace of its own (share_pid), and stop the lab's " \
           "containers in it" in flipped["changes"]
    assert not os.path.exists(f"/proc/{first}") or Path(f"/proc/{first}/stat").read_text().split(") ")[1][0] == "Z"
    back = apply(pause, share_pid=False)
    third = holder_of(back, netns)
    assert third not in (first, second) and len(nspid(third)) == 1


def namespaces_or_none(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
