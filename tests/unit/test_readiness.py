"""Readiness in the netns lab's node process: the kubelet's part (probes, status files,
what it publishes) and kube-proxy's part (rules that follow what is published), and the
doorbell that tells both of a change.

Nothing here opens a socket: probes' results are fed to the state machine, and the node
loop runs on containers without probes, whose status files alone decide. The probes'
sockets run for real in tests/integration/test_probes_on_node.py.
"""
from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from podpath.model import kubeproxy, plan as plan_mod, topology, workloads
from podpath.runtime import daemon, kubelet, proxier

NOW = 1000.0  # monotonic time in the state machine's tests
WALL = 1_700_000_000.0


# -- the doorbell ---------------------------------------------------------------------------------
@pytest.fixture
def bell(tmp_path):
    made = daemon.Bell(str(tmp_path / "bells"), "worker1")
    yield made
    made.close()


def readable(fd, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_a_bell_says_nothing_until_it_is_rung_and_nothing_again_once_drained(bell, tmp_path):
    assert not readable(bell), "a bell nobody rang wakes its reader"
    assert bell.drain() == 0
    assert ring(tmp_path / "bells") == 1
    assert ring(tmp_path / "bells") == 1
    assert readable(bell, 5), "a rung bell does not wake its reader"
    assert bell.drain() == 2
    assert not readable(bell), "a drained bell still wakes its reader"


def test_ringing_passes_by_a_bell_nobody_listens_to_and_leaves_what_is_not_a_bell_alone(tmp_path):
    folder = tmp_path / "bells"
    folder.mkdir()
    os.mkfifo(folder / "cp1")  # its node process is not running: nobody holds it open
    (folder / "notes").write_text("keep\n")
    (folder / ".hidden").write_text("")
    assert ring(folder) == 0
    assert (folder / "notes").read_text() == "keep\n"
    assert ring(tmp_path / "none") == 0, "a lab with no bells folder yet"


def test_a_full_bell_does_not_hold_up_whoever_rings_it(bell, tmp_path):
    rings = 70_000  # more than a pipe holds (64 KiB)
    for _ in range(rings // 1000):
        for _ in range(1000):
            ring(tmp_path / "bells")
    assert 0 < bell.drain() < rings
    assert not readable(bell)


def test_a_bell_takes_the_place_of_a_file_that_is_not_one(tmp_path):
    folder = tmp_path / "bells"
    folder.mkdir()
    (folder / "worker1").write_text("not a fifo")
    made = daemon.Bell(str(folder), "worker1")
    try:
        assert stat.S_ISFIFO(os.lstat(folder / "worker1").st_mode)
        assert ring(folder) == 1 and made.drain() == 1
    finally:
        made.close()


def test_write_json_leaves_a_whole_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "cp1.json"
    daemon.write_json(str(path), {"node": "cp1", "pods": {"a": 1}})
    daemon.write_json(str(path), {"node": "cp1", "pods": {"b": 2}})
    assert json.loads(path.read_text()) == {"node": "cp1", "pods": {"b": 2}}
    assert sorted(os.listdir(tmp_path)) == ["cp1.json"]


# -- probes: Kubernetes' defaults and bad input -------------------------------------------------
def test_a_probe_takes_kubernetes_defaults_for_what_it_leaves_out():
    probe = kubelet.Probe.from_spec({"tcpSocket": {"port": 8080}}, "echo-1/echo")
    assert (probe.initial_delay, probe.period, probe.timeout, probe.success_threshold, probe.failure_threshold) == \
        (0, 10, 1, 1, 3)
    assert probe.describe() == "tcp-socket :8080 delay=0s timeout=1s period=10s #success=1 #failure=3"


def test_an_http_probe_keeps_its_path_and_settings():
    probe = kubelet.Probe.from_spec({"httpGet": {"path": "/healthz", "port": 10254}, "initialDelaySeconds": 10,
                                     "periodSeconds": 5, "failureThreshold": 2}, "c/controller")
    assert (probe.action, probe.port, probe.path, probe.initial_delay, probe.period, probe.failure_threshold) == \
        ("httpGet", 10254, "/healthz", 10, 5, 2)
    assert probe.describe().startswith("http-get http://:10254/healthz delay=10s")


@pytest.mark.parametrize("spec, words", [
    ({"tcpSocket": {"port": 0}}, ["tcpSocket.port", "0", "1 to 65535"]),
    ({"tcpSocket": {"port": "http"}}, ["'http'", "port number"]),
    ({}, ["exactly one of tcpSocket and httpGet", "neither"]),
    ({"tcpSocket": {"port": 80}, "httpGet": {"port": 80}}, ["exactly one", "tcpSocket, httpGet"]),
    ({"tcpSocket": {"port": 80}, "periodSeconds": 0}, ["periodSeconds", "0", "at least 1"]),
    ({"tcpSocket": {"port": 80}, "periodSecond": 2}, ["periodSecond", "periodSeconds"]),
    ({"httpGet": {"port": 80, "path": "healthz"}}, ["'healthz'", "starts with /"]),
    ("tcp 80", ["'tcp 80'", "not a mapping"]),
])
def test_a_bad_probe_is_refused_naming_the_value_and_the_fix(spec, words):
    with pytest.raises(ValueError) as err:
        kubelet.Probe.from_spec(spec, "echo-1/echo")
    message = str(err.value)
    assert "echo-1/echo" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize("answer, passed", [
    (b"HTTP/1.1 200 OK\r\n\r\nok\n", True), (b"HTTP/1.1 302 Found\r\n", True), (b"HTTP/1.0 399 X\r\n", True),
    (b"HTTP/1.1 400 Bad Request\r\n", False), (b"HTTP/1.1 503 Service Unavailable\r\n", False),
    (b"HTTP/1.1 199 X\r\n", False), (b"", False), (b"SSH-2.0-OpenSSH\r\n", False)])
def test_an_http_probe_passes_on_200_to_399_as_the_kubelets(answer, passed):
    assert kubelet.http_passed(answer) is passed


# -- the kubelet's state machine ----------------------------------------------------------------
def ring(folder: Path) -> int:
    return daemon.ring_bells(str(folder))


def status(tmp: Path, name: str, state: str, started: float | None = WALL - 100, restarts: int = 0) -> None:
    """Write a container's status file as the process that started it writes it (whole, by
    rename), and ring the lab's bells as it does."""
    daemon.write_json(str(tmp / "status" / name), {
        "name": name, "state": state, "restarts": restarts, "pid": 42 if state == "running" else None,
        "started": started if state == "running" else None,
        "last": None if state == "running" else {"exitCode": 137, "signal": 9, "finished": WALL},
        "backoffUntil": None})
    ring(tmp / "bells")


def config(tmp: Path, pods: dict[str, dict[str, dict | None]], node: str = "worker1") -> dict:
    """A kubelet's inputs: POD -> {container: readinessProbe or None}; pods at 10.244.1.2, .3, ..."""
    (tmp / "status").mkdir(exist_ok=True)
    return {"lab": "t", "node": node, "endpoints": str(tmp / "endpoints" / f"{node}.json"),
            "pods": [{"name": pod, "namespace": "default", "ip": f"10.244.1.{i + 2}",
                      "containers": [{"name": c, "group": "workloads", "status": str(tmp / "status" / f"{pod}_{c}"),
                                      "readinessProbe": probe} for c, probe in containers.items()]}
                     for i, (pod, containers) in enumerate(pods.items())]}


ECHO = {"tcpSocket": {"port": 8080}, "periodSeconds": 2}


class Published:
    def __init__(self):
        self.writes: list[dict] = []

    def __call__(self, path, doc):
        self.writes.append(json.loads(json.dumps(doc)))

    @property
    def last(self) -> dict:
        return self.writes[-1]

    def ready(self, pod: str) -> bool:
        return self.last["pods"][pod]["conditions"]["ready"]


def started_kubelet(tmp: Path, pods, node: str = "worker1") -> tuple[kubelet.Kubelet, Published]:
    k = kubelet.Kubelet(config(tmp, pods, node))
    k.begin(NOW, WALL)
    return k, Published()


def answer_due(k: kubelet.Kubelet, now: float, ok: bool = True) -> list[str]:
    """Answer every probe due at NOW with OK; the containers probed."""
    due = k.due(now)
    for c in due:
        k.result(c, c.generation, ok, now)
    return [c.key for c in due]


def test_at_start_what_runs_is_probed_at_once_and_published_after_the_first_answers(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}})
    assert not k.publish(published), "published before the first probe answered"
    assert answer_due(k, NOW) == ["echo-1/echo"]
    assert k.publish(published)
    assert published.ready("echo-1") is True
    assert published.last["pods"]["echo-1"]["conditions"] == {"ready": True, "serving": True, "terminating": False}


def test_nothing_is_written_again_while_nothing_changes(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}})
    answer_due(k, NOW)
    k.publish(published)
    for step in range(1, 6):  # five more periods, every probe passing
        assert answer_due(k, NOW + 2 * step) == ["echo-1/echo"]
        assert not k.publish(published)
    assert len(published.writes) == 1


def test_a_container_that_is_not_running_is_not_ready_at_once_and_not_probed(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}})
    answer_due(k, NOW)
    k.publish(published)
    status(tmp_path, "echo-1_echo", "terminated")
    assert k.status_changed(str(tmp_path / "status" / "echo-1_echo"), NOW + 0.1, WALL)
    assert k.publish(published)
    assert published.ready("echo-1") is False
    assert published.last["pods"]["echo-1"]["containers"]["echo"]["state"] == "terminated"
    assert k.next_due() is None, "a container that does not run is still probed"


def test_a_restarted_container_waits_for_its_probe_after_its_initial_delay(tmp_path):
    probe = {"httpGet": {"path": "/healthz", "port": 10254}, "initialDelaySeconds": 10, "periodSeconds": 10}
    k, published = started_kubelet(tmp_path, {"ctrl": {"controller": probe}})
    answer_due(k, NOW)
    k.publish(published)
    status(tmp_path, "ctrl_controller", "terminated")
    k.status_changed(str(tmp_path / "status" / "ctrl_controller"), NOW + 1, WALL + 1)
    status(tmp_path, "ctrl_controller", "running", started=WALL + 2, restarts=1)
    k.status_changed(str(tmp_path / "status" / "ctrl_controller"), NOW + 2, WALL + 2)
    k.publish(published)
    assert published.ready("ctrl") is False
    assert published.last["pods"]["ctrl"]["containers"]["controller"]["restarts"] == 1
    assert k.next_due() == pytest.approx(NOW + 12), "the first probe is not initialDelaySeconds after the start"
    assert answer_due(k, NOW + 11.9) == []
    assert answer_due(k, NOW + 12) == ["ctrl/controller"]
    k.publish(published)
    assert published.ready("ctrl") is True


def test_a_probe_that_answers_for_an_earlier_run_of_the_container_is_ignored(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}})
    [c] = k.due(NOW)
    old_run = c.generation
    status(tmp_path, "echo-1_echo", "running", started=WALL + 1, restarts=1)
    k.status_changed(c.status_path, NOW + 0.5, WALL + 1)
    k.result(c, old_run, True, NOW + 0.6)
    assert c.ready is False


def test_failure_threshold_failures_in_a_row_make_it_not_ready_and_a_success_resets_them(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}})
    answer_due(k, NOW)
    k.publish(published)
    t = NOW
    for ok in (False, False, True, False, False):  # never 3 failures in a row
        t += 2
        answer_due(k, t, ok)
        assert not k.publish(published)
    t += 2
    answer_due(k, t, False)  # the third in a row
    assert k.publish(published)
    assert published.ready("echo-1") is False
    t += 2
    answer_due(k, t, True)  # successThreshold 1: back at the first success
    k.publish(published)
    assert published.ready("echo-1") is True


def test_success_threshold_successes_in_a_row_make_it_ready_again(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": {**ECHO, "successThreshold": 2,
                                                                  "failureThreshold": 1}}})
    answer_due(k, NOW, False)
    k.publish(published)
    assert published.ready("echo-1") is False
    answer_due(k, NOW + 2, True)
    assert not k.publish(published), "ready after 1 success of the 2 it needs"
    answer_due(k, NOW + 4, True)
    k.publish(published)
    assert published.ready("echo-1") is True


def test_a_pod_is_ready_when_all_its_containers_are_and_one_without_a_probe_is_while_it_runs(tmp_path):
    k, published = started_kubelet(tmp_path, {"multi": {"container-1": None, "container-2": None}})
    assert k.publish(published), "containers without probes held back the first publication"
    assert published.ready("multi") is True
    status(tmp_path, "multi_container-1", "waiting")
    k.status_changed(str(tmp_path / "status" / "multi_container-1"), NOW + 1, WALL + 1)
    k.publish(published)
    assert published.ready("multi") is False
    assert published.last["pods"]["multi"]["containers"]["container-2"]["ready"] is True


def test_a_status_file_of_another_nodes_container_changes_nothing(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": None}})
    k.publish(published)
    assert not k.status_changed(str(tmp_path / "status" / "echo-2_echo"), NOW, WALL)
    assert not k.publish(published)


def test_bad_readiness_probes_in_the_inputs_stop_the_kubelet_with_the_containers_name(tmp_path):
    with pytest.raises(ValueError, match="echo-1/echo"):
        kubelet.Kubelet(config(tmp_path, {"echo-1": {"echo": {"tcpSocket": {"port": 99999}}}}))


# -- kube-proxy's part ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plan():
    return plan_mod.build(topology.load(), "t")


def doc(node: str, pods: dict[str, tuple[str, bool | None]]) -> dict:
    return {"node": node, "pods": {p: {"ip": ip, "conditions": {"ready": ready, "serving": ready, "terminating": False}}
                                   for p, (ip, ready) in pods.items()}}


def test_kube_proxy_leaves_out_the_endpoints_whose_pod_is_not_ready(plan):
    inputs = kubeproxy.inputs(plan, "cp1")
    proxy = proxier.KubeProxy(inputs, apply_rules=lambda *a: None)
    echo = plan.echo_pods[0]
    everyone = set(proxy.endpoints)
    mine = f"{echo.ip}:{plan.echo_service.ports[0].target_port}"
    assert proxy.ready({echo.node: doc(echo.node, {echo.name: (echo.ip, False)})}) == everyone - {mine}
    # unknown (never published, no such pod, condition null) counts as ready, as for EndpointSlices
    assert proxy.ready({}) == everyone
    assert proxy.ready({echo.node: doc(echo.node, {echo.name: (echo.ip, None)})}) == everyone
    # a pod of that name at another address (an old file) is not this endpoint
    assert proxy.ready({echo.node: doc(echo.node, {echo.name: ("10.244.9.9", False)})}) == everyone
    # only the pod's own node speaks for it
    other = next(n.name for n in plan.nodes if n.name != echo.node)
    assert proxy.ready({other: doc(other, {echo.name: (echo.ip, False)})}) == everyone


def test_kube_proxy_applies_the_renderers_rules_once_per_change(plan):
    inputs = kubeproxy.inputs(plan, "worker2")
    applied = []
    proxy = proxier.KubeProxy(inputs, apply_rules=lambda rules, mode: applied.append((rules, mode)))
    echo = plan.echo_pods[1]
    not_ready = {echo.node: doc(echo.node, {echo.name: (echo.ip, False)})}
    assert not proxy.sync({}), "rules applied although every endpoint is as the playbook applied them"
    assert proxy.sync(not_ready)
    assert not proxy.sync(not_ready)
    assert proxy.sync({})
    ready = set(proxy.endpoints) - {f"{echo.ip}:{plan.echo_service.ports[0].target_port}"}
    assert applied == [(kubeproxy.rules(inputs.with_ready(ready)), inputs.mode),
                       (kubeproxy.rules(inputs), inputs.mode)]


def test_kube_proxy_writes_its_rules_again_when_what_is_published_changes_with_the_same_ready_set(plan):
    """`podpath up` applies the rules with every endpoint, behind the back of the node process:
    the next change of what the nodes publish renders the whole rules again, even when the
    node process believes the ready set unchanged (else a pod not ready stays in the rules)."""
    inputs = kubeproxy.inputs(plan, "worker2")
    applied = []
    proxy = proxier.KubeProxy(inputs, apply_rules=lambda rules, mode: applied.append((rules, mode)))
    echo = plan.echo_pods[1]
    not_ready = {echo.node: doc(echo.node, {echo.name: (echo.ip, False)})}
    assert proxy.sync(not_ready)
    other = plan.echo_pods[0]
    also_published = {echo.node: doc(echo.node, {echo.name: (echo.ip, False), other.name: (other.ip, True)})}
    assert proxy.sync(also_published), "a changed publication with the same ready set applied nothing"
    ready = set(proxy.endpoints) - {f"{echo.ip}:{plan.echo_service.ports[0].target_port}"}
    assert applied == [(kubeproxy.rules(inputs.with_ready(ready)), inputs.mode)] * 2
    assert not proxy.sync(also_published)


def test_apply_uses_the_modes_restore_command():
    calls = []

    def run(argv, stdin):
        calls.append((argv, stdin))
        return 0, ""
    assert proxier.apply("*nat\nCOMMIT\n", "iptables", run=run)
    assert calls == [(kubeproxy.restore_argv("iptables"), b"*nat\nCOMMIT\n")]


def test_apply_says_what_the_restore_command_said_when_it_fails(capsys):
    assert not proxier.apply("*nat\nCOMMIT\n", "nftables", run=lambda argv, stdin: (1, "line 1: syntax error\n"))
    assert "nft failed (exit code 1): line 1: syntax error" in capsys.readouterr().out


def test_read_documents_skips_temporary_and_broken_files(tmp_path):
    daemon.write_json(str(tmp_path / "cp1.json"), doc("cp1", {}))
    (tmp_path / ".worker1.json.tmp").write_text('{"pods": {}}')
    (tmp_path / "worker2.json").write_text('{"pods": {')
    assert list(proxier.read_documents(str(tmp_path))) == ["cp1"]
    assert proxier.read_documents(str(tmp_path / "none")) == {}


# -- the node process: status file -> publication -> rules, woken by its bell ---------------------
def node_inputs(tmp: Path) -> kubeproxy.NodeInputs:
    """A node whose Service has two endpoints: a (on this node) and b (on another)."""
    eps = [kubeproxy.Endpoint("a", "10.244.1.2", 8080, "worker1"), kubeproxy.Endpoint("b", "10.244.2.2", 8080, "worker2")]
    port = kubeproxy.ServicePortInfo(name="default/echo:http", cluster_ip="10.96.0.20", port=80, node_port=None,
                                     load_balancer_ip=None, external=False, local=False, endpoints=eps)
    return kubeproxy.NodeInputs(lab="t", node="worker1", pod_network="10.244.0.0/16", ports=[port])


def folders(tmp: Path) -> dict[str, str]:
    """Where a node of these tests publishes, and its bell."""
    return {"endpoints_dir": str(tmp / "endpoints"), "bells_dir": str(tmp / "bells")}


def run_step(node: proxier.Node) -> None:
    """One round of the loop, which must return because something happened (it waits forever
    otherwise: nothing in these nodes is ever due)."""
    thread = threading.Thread(target=node.step, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the node process did not wake up for the change"


def test_the_node_follows_a_status_file_to_its_published_readiness_and_its_rules(tmp_path):
    applied = []
    inputs = node_inputs(tmp_path)
    node = proxier.Node(inputs, config(tmp_path, {"a": {"echo": None}}),
                        apply_rules=lambda rules, mode: applied.append(rules),
                        **folders(tmp_path))
    try:
        node.step(limit=0)  # the first publication: a runs (no status file yet) and has no probe
        published = json.loads((tmp_path / "endpoints" / "worker1.json").read_text())
        assert published["pods"]["a"]["conditions"]["ready"] is True
        assert node.kubelet.next_due() is None, "a node without probes has something due"
        while node.bell_pending():
            node.step(limit=0)
        assert applied == []
        status(tmp_path, "a_echo", "terminated")
        while not applied:
            run_step(node)
        published = json.loads((tmp_path / "endpoints" / "worker1.json").read_text())
        assert published["pods"]["a"]["conditions"]["ready"] is False
        assert applied == [kubeproxy.rules(inputs.with_ready({"10.244.2.2:8080"}))]
        # another node's file: b not ready either
        daemon.write_json(str(tmp_path / "endpoints" / "worker2.json"), doc("worker2", {"b": ("10.244.2.2", False)}))
        ring(tmp_path / "bells")  # as worker2's node process does once it has published
        while len(applied) < 2:
            run_step(node)
        assert applied[-1] == kubeproxy.rules(inputs.with_ready(set()))
        status(tmp_path, "a_echo", "running", started=WALL, restarts=1)
        while len(applied) < 3:
            run_step(node)
        assert applied[-1] == kubeproxy.rules(inputs.with_ready({"10.244.1.2:8080"}))
    finally:
        node.close()


def test_the_node_watches_a_status_folder_made_again(tmp_path):
    applied = []
    node = proxier.Node(node_inputs(tmp_path), config(tmp_path, {"a": {"echo": None}}),
                        apply_rules=lambda rules, mode: applied.append(rules),
                        **folders(tmp_path))
    try:
        node.step(limit=0)
        os.rmdir(tmp_path / "status")
        (tmp_path / "status").mkdir()
        status(tmp_path, "a_echo", "terminated")
        while not applied:
            run_step(node)
        assert node.kubelet.pods[0].containers[0].state == "terminated"
    finally:
        node.close()


# -- what `up` renders for the node process ---------------------------------------------------------
def test_each_node_process_gets_its_own_pods_with_their_status_files_and_probes(plan):
    groups = workloads.render(plan, "/usr/bin/python3")
    files = {f["path"]: json.loads(f["content"]) for f in groups["kube-proxy"]["files"]}
    containers = {c["name"]: c for g in ("workloads", "ingress") for c in groups[g]["containers"]}
    for node in plan.nodes:
        mine = files[f"/run/podpath/t/kubelet/{node.name}.conf"]
        assert mine["endpoints"] == workloads.endpoints_path("t", node.name)
        assert {p["name"] for p in mine["pods"]} == {p.name for p in plan.pods_on(node.name) if p.containers}
        for pod in mine["pods"]:
            for c in pod["containers"]:
                assert f"{pod['name']}/{c['name']}" in containers
                assert c["status"] == workloads.container_status_path("t", c["group"], f"{pod['name']}/{c['name']}")
        [process] = [c for c in groups["kube-proxy"]["containers"] if c["netns"] == node.netns]
        assert process["argv"][-2:] == [f"/run/podpath/t/kube-proxy/{node.name}.conf",
                                        f"/run/podpath/t/kubelet/{node.name}.conf"]
        assert set(process["files"]) == set(process["argv"][-2:])
    probes = {(p["name"], c["name"]): c["readinessProbe"] for f in files.values() if "pods" in f
              for p in f["pods"] for c in p["containers"]}
    for pod in plan.echo_pods:
        assert kubelet.Probe.from_spec(probes[(pod.name, "echo")], pod.name).port == pod.port
    for pod in plan.ingress_pods:
        assert kubelet.Probe.from_spec(probes[(pod.name, "controller")], pod.name).path == "/healthz"


def test_the_node_processs_command_runs_the_node_process_without_runpy(plan):
    [process] = workloads.render(plan, sys.executable)["kube-proxy"]["containers"][:1]
    python, flag, code = process["argv"][:3]
    assert (python, flag) == (sys.executable, "-c")
    # without its two files the node process only shows its usage; -X importtime lists what it loaded
    done = subprocess.run([python, "-X", "importtime", flag, code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "usage: python -m podpath.runtime.proxier KUBE-PROXY.conf KUBELET.conf" in done.stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "podpath.runtime.proxier" in loaded
    assert "runpy" not in loaded



def test_the_status_file_path_follows_the_container_contract():
    assert workloads.container_status_path("lab1", "workloads", "echo-1/echo").endswith(
        "/lab1/status/workloads/echo-1_echo.json")


def test_a_node_cut_off_from_the_lan_publishes_all_its_pods_not_ready_and_back_when_its_link_returns(tmp_path):
    k, published = started_kubelet(tmp_path, {"echo-1": {"echo": ECHO}, "multi": {"container-1": None}})
    answer_due(k, NOW)
    k.publish(published)
    k.link_changed(False)
    assert k.publish(published)
    assert published.last["nodeReady"]["ready"] is False and "down" in published.last["nodeReady"]["reason"]
    assert published.ready("echo-1") is False and published.ready("multi") is False
    # the containers themselves stay ready: only the node's condition changed
    assert published.last["pods"]["echo-1"]["containers"]["echo"]["ready"] is True
    k.link_changed(True)
    assert k.publish(published)
    assert published.ready("echo-1") is True and published.last["nodeReady"]["ready"] is True


def test_the_node_link_reads_a_link_that_is_not_there_as_down():
    link = kubelet.NodeLink("podpath-none0")
    try:
        assert link.up() is False
        link.drain()  # nothing waits: returns at once
    finally:
        link.close()


def test_the_node_sleeps_until_an_event_when_no_probe_is_due_and_until_the_next_probe_otherwise(tmp_path):
    quiet = proxier.Node(node_inputs(tmp_path), config(tmp_path, {"a": {"echo": None}}),
                         apply_rules=lambda *a: None,
                        **folders(tmp_path))
    try:
        quiet.step(limit=0)
        assert quiet.wait_time(NOW) is None, "a node with nothing to probe wakes on a timer"
    finally:
        quiet.close()
    k = kubelet.Kubelet(config(tmp_path, {"a": {"echo": ECHO}}))
    k.begin(NOW, WALL)
    answer_due(k, NOW)
    assert k.next_due() == NOW + 2, "the next probe is not one period later"


def test_a_node_whose_folder_is_gone_does_not_make_it_again_and_publishes_at_the_next_change(tmp_path):
    node = proxier.Node(node_inputs(tmp_path), config(tmp_path, {"a": {"echo": None}}),
                        apply_rules=lambda *a: None,
                        **folders(tmp_path))
    try:
        node.step(limit=0)
        (tmp_path / "endpoints" / "worker1.json").unlink()
        (tmp_path / "endpoints").rmdir()
        status(tmp_path, "a_echo", "terminated")
        run_step(node)  # the status file's event: publishing fails, the process goes on
        assert not (tmp_path / "endpoints").exists(), "the node made the removed folder again"
        assert node.kubelet.changed, "the failed publication is forgotten"
    finally:
        node.close()
