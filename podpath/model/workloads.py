"""The processes of the netns lab: what each container runs and the files it reads.

Returns, per group (workloads, ingress: the edge's pods, ingress-nginx's controllers or NGINX
Gateway Fabric's data plane, kube-proxy, metallb), the `files` and `containers`
arguments of the podpath_containers module. The kube-proxy group runs one process per node
that plays the kubelet's part (its pods' readiness) and kube-proxy's part (its rules).
Configuration is rendered from the templates beside this file.
"""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

from podpath.model import gateway, kubeproxy, labdir
from podpath.model.plan import GATEWAY_APP, GATEWAY_CONTAINER, NODE_LINK, Plan, Pod

# The podpath_containers groups, in the order `up` starts them (`down` stops them in reverse).
GROUPS = ("workloads", "ingress", "kube-proxy", "metallb")
# How the node processes start: python -c, not -m, whose runpy loads importlib.util, contextlib,
# collections and functools into the process (about 0.3 MiB of each node process's memory)
NODE_PROCESS_CODE = "import sys; from podpath.runtime.proxier import main; sys.exit(main(sys.argv))"
# MetalLB's speaker: the program podpath's builder builds from podpath/runtime/speaker.c, and
# the UDP port of its heartbeats (memberlist's, which MetalLB's speakers use)
SPEAKER_PROGRAM = "podpath-speaker"
SPEAKER_PORT = 7946
_ENV = None  # the templates' Jinja2 environment, made when a file is first rendered (the verifier renders none)


def _templates():
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
                                  undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                                  lstrip_blocks=True)
    return _ENV


def pod_dir(lab: str, pod: Pod) -> str:
    return f"{labdir.lab_dir(lab)}/pods/{pod.name}"


def lease_path(plan: Plan) -> str:
    """Where the lease the ingress controllers elect their leader with stands (the API server's
    Lease object in a cluster)."""
    return f"{labdir.lab_dir(plan.lab)}/leases/{plan.ingress_service.namespace}/{plan.election_id}.json"


def ingress_program(python: str) -> str:
    """The ingress controller program (podpath-ingress, podpath/runtime/ingress.c): podpath's
    builder (podpath.runtime.pause_build) puts its programs beside the lab's Python, in the
    project's .venv here and in the runtime's venv on a fleet's hosts."""
    return str(Path(python).with_name("podpath-ingress"))


def speaker_status_path(lab: str, node: str) -> str:
    return f"{labdir.lab_dir(lab)}/metallb/{node}.json"


def endpoints_dir(lab: str) -> str:
    """Where each node publishes its pods' readiness (the kubelet's part of its node process),
    one file per node, and every node's kube-proxy part reads it: the EndpointSlices' place."""
    return f"{labdir.lab_dir(lab)}/endpoints"


def endpoints_path(lab: str, node: str) -> str:
    return f"{endpoints_dir(lab)}/{node}.json"


def bells_dir(lab: str) -> str:
    """The node processes' doorbells (podpath.runtime.daemon.Bell), rung by whoever writes a
    container's status or a node's published readiness."""
    return labdir.lab.bells_dir(lab)


def container_status_path(lab: str, group: str, name: str) -> str:
    """The file where the shim of container NAME (of GROUP), the process that started it, writes
    its state when it starts and when it exits."""
    return labdir.lab.container_status_path(lab, group, name)


def readiness_probe(pod: Pod, container: str) -> dict[str, Any] | None:
    """The readinessProbe of CONTAINER of POD, with Kubernetes' field names, as the cluster lab's
    manifests declare it (what they leave out takes Kubernetes' defaults); None: it has none."""
    if pod.app == "echo" and container == "echo":
        # roles/cluster_workloads/templates/echo.yaml.j2: the echo container's port, every 2 s
        return {"tcpSocket": {"port": pod.port}, "periodSeconds": 2}
    if pod.app == "ingress-nginx" and container == "controller":
        # ingress-nginx's own Deployment (its deploy.yaml, which the cluster lab applies)
        return {"httpGet": {"path": "/healthz", "port": 10254}, "initialDelaySeconds": 10, "periodSeconds": 10,
                "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}
    return None


def kubelet_inputs(plan: Plan, node: str, pods: dict[str, Pod], containers: list[tuple[str, dict]]) -> dict[str, Any]:
    """What the kubelet's part of NODE's process reads: the node's pods with their containers
    (CONTAINERS: (group, podpath_containers entry) of the lab), each container's status file
    and readinessProbe, the file it publishes the pods' readiness to (beside every node's), and
    the folder of the lab's doorbells."""
    mine: dict[str, dict[str, Any]] = {}
    for group, c in containers:
        pod_name, name = c["name"].split("/", 1)
        pod = pods[pod_name]
        if pod.node != node:
            continue
        entry = mine.setdefault(pod.name, {"name": pod.name, "namespace": pod.namespace, "ip": pod.ip,
                                           "containers": []})
        entry["containers"].append({"name": name, "group": group,
                                    "status": container_status_path(plan.lab, group, c["name"]),
                                    "readinessProbe": readiness_probe(pod, name)})
    return {"lab": plan.lab, "node": node, "netns": plan.node(node).netns, "endpoints": endpoints_path(plan.lab, node),
            "bells": bells_dir(plan.lab), "link": NODE_LINK, "pods": list(mine.values())}


def _nginx(plan: Plan, pod: Pod, container: str, template: str, listen: list[int], **extra) -> tuple[dict, dict]:
    directory = pod_dir(plan.lab, pod)
    conf = f"{directory}/{container}.conf"
    content = _templates().get_template(template).render(lab=plan.lab, pod=pod, container=container, dir=directory, **extra)
    argv = ["nginx", "-e", f"{directory}/{container}-error.log", "-c", conf, "-g", "daemon off;"]
    return ({"path": conf, "content": content, "mode": "0644"},
            {"name": f"{pod.name}/{container}", "netns": pod.netns, "isolate": True, "argv": argv,
             "files": [conf], "listen": listen})


def gateway_config(plan: Plan, pod: Pod, **overrides) -> dict[str, Any]:
    """The nginx configuration file of data-plane pod POD, as `render` writes it; OVERRIDES
    (backend_missing, hostname) render it as NGF would for a broken HTTPRoute or listener."""
    echo_svc = plan.echo_service
    endpoints = kubeproxy.endpoints(echo_svc, echo_svc.ports[0])
    return _nginx(plan, pod, GATEWAY_CONTAINER, "nginx-gateway.conf.j2", [pod.port],
                  **gateway.render_context(plan, pod, endpoints, **overrides))[0]


def speaker_config(plan: Plan, node: str) -> str:
    """The configuration of NODE's MetalLB speaker (podpath-speaker, podpath/runtime/speaker.c,
    whose header describes it): one setting a line."""
    me = next(n for n in plan.nodes if n.name == node)
    lines = [f"# MetalLB's speaker of node {node} (podpath-speaker), rendered by podpath up",
             f"node {node}", f"ip {me.ip}", f"interface {NODE_LINK}",
             f"broadcast {ipaddress.IPv4Network(plan.node_network).broadcast_address}",
             f"status {speaker_status_path(plan.lab, node)}", f"port {SPEAKER_PORT}"]
    lines += [f"member {n.name} {n.ip}" for n in plan.nodes]
    lines.append(f"address {plan.ingress_service.load_balancer_ip}")
    return "\n".join(lines) + "\n"


def render(plan: Plan, python: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{group: {files: [...], containers: [...]}} for the podpath_containers module. PYTHON runs
    the lab's Python daemons; podpath's C programs are beside it (ingress_program)."""
    groups: dict[str, dict[str, list]] = {g: {"files": [], "containers": []} for g in GROUPS}
    echo_svc = plan.echo_service
    echo_port = echo_svc.ports[0]
    endpoints = kubeproxy.endpoints(echo_svc, echo_port)
    for pod in plan.pods:
        if pod.app == "echo":
            f, c = _nginx(plan, pod, "echo", "nginx-echo.conf.j2", [pod.port],
                          request_headers=gateway.request_headers(plan.gateway))
            groups["workloads"]["files"].append(f)
            groups["workloads"]["containers"].append(c)
        elif pod.app == "multi-container":
            groups["workloads"]["containers"].append(
                {"name": f"{pod.name}/container-1", "netns": pod.netns, "isolate": True, "argv": ["sleep", "1d"],
                 "files": [], "listen": []})
            f, c = _nginx(plan, pod, "container-2", "nginx-web.conf.j2", [pod.port])
            groups["workloads"]["files"].append(f)
            groups["workloads"]["containers"].append(c)
        elif pod.app == "ingress-nginx":
            f, c = _nginx(plan, pod, "controller", "nginx-ingress.conf.j2", [80, 10254], endpoints=endpoints,
                          host=plan.ingress_host, backend={"namespace": echo_svc.namespace, "name": echo_svc.name,
                                                         "port": echo_port.port})
            # ingress-nginx's controller process: nginx is its child, and it takes part in the
            # leader election itself, renewing the lease only while its nginx lives
            c["argv"] = [ingress_program(python), "--lease", lease_path(plan), "--identity", pod.name, "--",
                         *c["argv"]]
            groups["ingress"]["files"].append(f)
            groups["ingress"]["containers"].append(c)
        elif pod.app == GATEWAY_APP:
            # NGF's data plane runs in the edge's group too: switching a lab's edge stops the
            # ingress controllers the group no longer lists
            f, c = _nginx(plan, pod, GATEWAY_CONTAINER, "nginx-gateway.conf.j2", [pod.port],
                          **gateway.render_context(plan, pod, endpoints))
            groups["ingress"]["files"].append(f)
            groups["ingress"]["containers"].append(c)
    # the speaker program, which podpath's builder (podpath.runtime.pause_build) puts beside PYTHON
    speaker = str(Path(python).with_name(SPEAKER_PROGRAM))
    for node in plan.nodes:
        path = f"{labdir.lab_dir(plan.lab)}/metallb/speaker-{node.name}.conf"
        groups["metallb"]["files"].append({"path": path, "content": speaker_config(plan, node.name), "mode": "0644"})
        groups["metallb"]["containers"].append(
            {"name": f"metallb-speaker-{node.name}/speaker", "netns": node.netns, "isolate": False,
             "argv": [speaker, path], "files": [path], "listen": []})
    # one process per node plays the kubelet's part and kube-proxy's part (podpath.runtime.proxier)
    pods = {pod.name: pod for pod in plan.pods}
    containers = [(group, c) for group in ("workloads", "ingress") for c in groups[group]["containers"]]
    for node in plan.nodes:
        path = f"{labdir.lab_dir(plan.lab)}/kube-proxy/{node.name}.conf"
        # the node's own inputs (its Services' ports and endpoints), not the lab's topology
        config = kubeproxy.inputs(plan, node.name).to_json()
        kubelet_path = f"{labdir.lab_dir(plan.lab)}/kubelet/{node.name}.conf"
        kubelet = kubelet_inputs(plan, node.name, pods, containers)
        for file, content in ((path, config), (kubelet_path, kubelet)):
            groups["kube-proxy"]["files"].append({"path": file, "content": json.dumps(content, indent=1) + "\n",
                                                  "mode": "0644"})
        groups["kube-proxy"]["containers"].append(
            {"name": f"kube-proxy-{node.name}/kube-proxy", "netns": node.netns, "isolate": False,
             "argv": [python, "-c", NODE_PROCESS_CODE, path, kubelet_path], "files": [path, kubelet_path],
             "listen": []})
    return groups
