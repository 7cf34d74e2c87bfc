"""A pod's containers as containerd makes them, without running them: the command that
starts a container (podpath_containers' launch_argv), the topology's per-workload
shareProcessNamespace and where it goes (the plan, each pod's holder, the cluster lab's
manifests), and what podpath_netns refuses or says it will do with it.

containerd's CRI plugin joins every container to its sandbox's network, IPC and UTS
namespaces and, only with shareProcessNamespace (NamespaceMode POD), its PID namespace;
each container has a mount namespace of its own. tests/integration/test_containerd_pods.py
checks the same on real processes.
"""
from __future__ import annotations

import copy
import os
import secrets
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

from podpath.model import plan as plan_mod, topology as topology_mod
from podpath.play import inprocess

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = inprocess.load_library("podpath_containers")
NETNS = inprocess.load_library("podpath_netns")
TOPOLOGY = topology_mod.load()
HOLDER = 4242


def with_sharing(**workloads: bool) -> dict:
    """The reference topology with share_process_namespace set on WORKLOADS."""
    topo = copy.deepcopy(TOPOLOGY)
    for name, value in workloads.items():
        topo["workloads"][name]["share_process_namespace"] = value
    return topo


# -- the command that starts a container ----------------------------------------------------
@pytest.fixture
def holder(monkeypatch):
    """Stands for the pod's holder as the pidfile and /proc would show it: SET(running, pid 1 of
    a PID namespace of its own)."""
    state = {"running": True, "pid_namespace_init": False}
    monkeypatch.setattr(CONTAINERS, "read_pidfile", lambda path: (HOLDER, 123))
    monkeypatch.setattr(CONTAINERS, "lab_process", lambda pid, lab, role=None, start=None: (
        state["running"] and pid == HOLDER and role == f"holder:{CONTAINER['netns']}" and start == 123))
    monkeypatch.setattr(CONTAINERS, "pid_namespace_init", lambda pid: state["pid_namespace_init"] and pid == HOLDER)

    def set_state(running: bool, pid_namespace_init: bool = False) -> None:
        state.update(running=running, pid_namespace_init=pid_namespace_init)
    return set_state


CONTAINER = {"name": "multi-container-pod/container-1", "netns": "cni-1234", "isolate": True, "argv": ["sleep", "1d"]}


def split(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(nsenter's words, unshare's words, the container's own argv)."""
    first = argv.index("--")
    second = argv.index("--", first + 1)
    return argv[:first], argv[first + 1:second], argv[second + 1:]


def test_a_container_joins_the_holders_network_ipc_and_uts_namespaces(holder):
    holder(running=True)
    nsenter, _, command = split(CONTAINERS.launch_argv("lab", CONTAINER))
    assert nsenter == ["nsenter", "--net=/run/netns/cni-1234", f"--ipc=/proc/{HOLDER}/ns/ipc",
                       f"--uts=/proc/{HOLDER}/ns/uts"]
    assert command == ["sleep", "1d"]


def test_a_container_has_its_own_mount_and_pid_namespaces_and_not_its_own_uts(holder):
    holder(running=True)
    _, unshare, _ = split(CONTAINERS.launch_argv("lab", CONTAINER))
    assert unshare[0] == "unshare"
    assert {"--mount", "--pid", "--fork", "--mount-proc"} <= set(unshare)
    assert "--uts" not in unshare and "--ipc" not in unshare, "the UTS and IPC namespaces are the holder's"


def test_with_a_holder_that_is_pid_1_the_container_joins_its_pid_namespace(holder):
    holder(running=True, pid_namespace_init=True)
    nsenter, unshare, command = split(CONTAINERS.launch_argv("lab", CONTAINER))
    assert f"--pid=/proc/{HOLDER}/ns/pid" in nsenter
    # without a fork of nsenter's own, unshare's child is born in the pod's PID namespace
    assert "--no-fork" in nsenter
    assert "--pid" not in unshare and {"--mount", "--fork", "--mount-proc"} <= set(unshare)
    assert command == ["sleep", "1d"]


def test_without_the_labs_holder_a_container_never_gets_the_hosts_ipc_or_uts_namespace(holder):
    holder(running=False)
    nsenter, unshare, _ = split(CONTAINERS.launch_argv("lab", CONTAINER))
    assert nsenter == ["nsenter", "--net=/run/netns/cni-1234"]
    assert {"--ipc", "--uts", "--pid", "--mount"} <= set(unshare)


def test_a_host_network_container_only_joins_the_network_namespace(holder):
    argv = CONTAINERS.launch_argv("lab", dict(CONTAINER, isolate=False))
    assert argv == ["nsenter", "--net=/run/netns/cni-1234", "--", "sleep", "1d"]


def test_the_shim_rings_the_lab_s_bells_and_a_container_started_by_a_shim_told_otherwise_starts_again(monkeypatch):
    container = dict(CONTAINER, files=[])
    options = CONTAINERS.shim_options("lab", "workloads", container)
    assert options[options.index("--bells") + 1] == "/run/podpath/lab/bells"
    assert CONTAINERS.shim_argv("lab", "workloads", container, "/x/podpath-shim")[:len(options) + 1] == \
        ["/x/podpath-shim"] + options
    before = CONTAINERS.spec_hash("lab", "workloads", container, {})
    assert CONTAINERS.spec_hash("lab", "workloads", container, {}) == before, "the same container, another hash"
    monkeypatch.setattr(CONTAINERS, "SHIM_GRACE", 2.0)  # what a newer podpath might tell its shims
    assert CONTAINERS.spec_hash("lab", "workloads", container, {}) != before


# -- the topology's option ------------------------------------------------------------------
def test_no_pod_shares_its_pid_namespace_unless_the_topology_says_so():
    plan = plan_mod.build(TOPOLOGY, "podpath")
    assert not any(pod.share_process_namespace for pod in plan.pods)
    assert not any(ns.get("share_pid") for ns in plan_mod.netns_spec(plan))


@pytest.mark.parametrize("workload, app", [("multi_container_pod", "multi-container"), ("echo", "echo")])
def test_a_workload_that_shares_gives_its_pods_and_only_them_one_pid_namespace(workload, app):
    topo = with_sharing(**{workload: True})
    topology_mod.validate(topo)
    plan = plan_mod.build(topo, "podpath")
    assert {pod.name for pod in plan.pods if pod.share_process_namespace} == \
        {pod.name for pod in plan.pods if pod.app == app}
    holders = {ns["name"]: ns for ns in plan_mod.netns_spec(plan) if ns.get("holder")}
    for pod in plan.pods:
        assert holders[pod.netns]["share_pid"] is (pod.app == app), pod.name
        assert holders[pod.netns]["hostname"] == pod.name, "the holder sets the pod's name as its host name"


def test_false_is_the_same_as_leaving_it_out():
    topo = with_sharing(multi_container_pod=False, echo=False)
    topology_mod.validate(topo)
    assert plan_mod.netns_spec(plan_mod.build(topo, "podpath")) == plan_mod.netns_spec(plan_mod.build(TOPOLOGY,
                                                                                                      "podpath"))


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, [], {"enabled": True}])
@pytest.mark.parametrize("workload", ["multi_container_pod", "echo"])
def test_a_value_that_is_not_true_or_false_is_refused_naming_its_place_and_the_fix(workload, value):
    topo = with_sharing(**{workload: value})
    with pytest.raises(topology_mod.TopologyError) as err:
        topology_mod.validate(topo)
    message = str(err.value)
    assert f"workloads.{workload}.share_process_namespace {value!r}" in message
    assert "true" in message and "false" in message and "shareProcessNamespace" in message


def test_the_schema_declares_the_option_where_the_check_reads_it():
    schema = yaml.safe_load((ROOT / "inventory" / "topology.schema.json").read_text())
    workloads = schema["properties"]["workloads"]["properties"]
    declared = {name for name, spec in workloads.items()
                if "share_process_namespace" in spec.get("properties", {})}
    assert declared == set(topology_mod.SHARE_PROCESS_NAMESPACE_WORKLOADS)


def test_a_workload_without_the_option_does_not_take_it():
    topo = copy.deepcopy(TOPOLOGY)
    topo["workloads"]["empty_service"]["share_process_namespace"] = True  # a Service has no pods
    with pytest.raises(topology_mod.TopologyError, match="share_process_namespace"):
        topology_mod.validate(topo)


# -- the cluster lab's manifests --------------------------------------------------------------
def render(template: str, **variables) -> dict:
    """TEMPLATE of cluster_workloads rendered with Jinja2 and Ansible's own bool filter."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles" / "cluster_workloads" / "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    env.filters["bool"] = FilterModule().filters()["bool"]
    text = env.get_template(template).render(ansible_managed="podpath", cluster_workloads_tolerate_control_plane=False,
                                             **variables)
    return {doc["kind"]: doc for doc in yaml.safe_load_all(text) if doc}


@pytest.mark.parametrize("share", [True, False, None])
def test_the_multi_container_pods_manifest_follows_the_topology(share):
    topo = TOPOLOGY if share is None else with_sharing(multi_container_pod=share)
    pod = render("multi-container-pod.yaml.j2", cluster_workloads_multi_container_pod=topo["workloads"][
        "multi_container_pod"], cluster_workloads_busybox_image="busybox", cluster_workloads_nginx_image="nginx")["Pod"]
    assert pod["spec"].get("shareProcessNamespace", False) is bool(share)


@pytest.mark.parametrize("share", [True, False, None])
def test_the_echo_deployments_pods_follow_the_topology(share):
    topo = TOPOLOGY if share is None else with_sharing(echo=share)
    deployment = render("echo.yaml.j2", cluster_workloads_echo=topo["workloads"]["echo"],
                        cluster_workloads_echo_image="nginx")["Deployment"]
    assert deployment["spec"]["template"]["spec"].get("shareProcessNamespace", False) is bool(share)


# -- podpath_netns ---------------------------------------------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="podpath_netns refuses to run (even in check mode) "
                                                          "without root: run the unit tests as root")


def netns_args(lab: str, **holder) -> dict:
    """One pod namespace (with HOLDER's options) of a lab no one uses: check mode finds nothing."""
    return {"lab": lab, "namespaces": [dict({"name": f"{lab}-pod", "hostname": "pod-1"}, **holder)]}


@needs_root
def test_share_pid_without_a_holder_is_refused_with_the_fix():
    lab = "u" + secrets.token_hex(4)
    result = inprocess.run(NETNS, "podpath_netns", netns_args(lab, share_pid=True), check_mode=True)
    assert result.get("failed") is True
    assert f"namespace {lab}-pod has share_pid: true without holder: true" in result["msg"]
    assert "set holder: true" in result["msg"]


@needs_root
@pytest.mark.parametrize("share_pid, line", [
    (True, "start holder as pid 1 of a PID namespace of its own (share_pid)"),
    ("yes", "start holder as pid 1 of a PID namespace of its own (share_pid)"),
    (False, "start holder"),
])
def test_check_mode_says_how_the_holder_will_start(share_pid, line):
    lab = "u" + secrets.token_hex(4)
    result = inprocess.run(NETNS, "podpath_netns", netns_args(lab, holder=True, share_pid=share_pid),
                           check_mode=True)
    assert not result.get("failed"), result.get("msg")
    assert f"{lab}-pod: {line}" in result["changes"], result["changes"]


def test_a_holder_fits_its_spec_only_when_it_runs_the_way_share_pid_says(monkeypatch):
    monkeypatch.setattr(NETNS, "pid_namespace_init", lambda pid: pid == 1001)
    assert NETNS.holder_fits(1001, {"share_pid": True}) and NETNS.holder_fits(1002, {"share_pid": False})
    assert not NETNS.holder_fits(1001, {"share_pid": False}) and not NETNS.holder_fits(1002, {"share_pid": True})


# -- what a container sees, as the verifier lists it ------------------------------------------------
def test_the_process_listing_script_lists_this_process_and_leaves_out_its_own_shell():
    import subprocess

    from podpath.evidence.parsers import PROCESSES_SCRIPT, parse_processes

    out = subprocess.run(["sh", "-c", PROCESSES_SCRIPT], capture_output=True, text=True, check=True, timeout=30)
    seen = parse_processes(out.stdout, "sh on this host")
    me = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert seen.get(os.getpid()) == me
    shell = int(out.stdout.split()[1])
    assert shell not in seen, "the listing's own shell is left out"


@pytest.mark.parametrize("text, words", [
    ("1 pause\n", "expected the listing's own pid first"),
    ("self 9\nnot-a-pid sleep\n", "'not-a-pid sleep' is not 'PID COMM'"),
])
def test_a_listing_that_is_not_the_scripts_is_refused(text, words):
    from podpath.evidence.lab import ProbeError
    from podpath.evidence.parsers import parse_processes

    with pytest.raises(ProbeError, match=words):
        parse_processes(text, "pod p, container c")


def test_a_process_that_exited_while_listed_is_left_out():
    from podpath.evidence.parsers import parse_processes

    assert parse_processes("self 5\n1 podpath-pause\n3 \n5 sh\n7 nginx\n", "x") == {1: "podpath-pause", 7: "nginx"}


def test_a_listing_that_failed_to_run_names_where_and_why():
    from podpath.evidence.lab import ProbeError, Result
    from podpath.evidence.parsers import processes_seen

    failed = Result(rc=126, stdout="", stderr="nsenter: cannot open /proc/42/ns/mnt: No such file or directory\n")
    with pytest.raises(ProbeError, match=r"pod p, container c: ps -e failed \(exit 126\): nsenter: cannot open"):
        processes_seen(failed, "pod p, container c: ps -e")
    assert processes_seen(Result(rc=0, stdout="self 5\n1 podpath-pause\n5 sh\n", stderr=""), "x") == {1: "podpath-pause"}
