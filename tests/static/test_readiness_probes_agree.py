"""The two labs probe the echo backends' readiness alike: the readinessProbe the cluster lab's
echo Deployment declares (rendered by Ansible) is the one the netns lab's node processes run
(podpath.model.workloads.readiness_probe), once the named port is resolved."""
from __future__ import annotations

import yaml

from podpath.model import plan as plan_mod, topology as topology_mod, workloads


def test_the_echo_backends_readiness_probe_is_the_same_in_both_labs(rendered, topology):
    texts = rendered["cluster_workloads/echo.yaml"]
    [deployment] = [d for text in list(texts.values())[:1] for d in yaml.safe_load_all(text)
                    if d and d.get("kind") == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    probe = dict(container["readinessProbe"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for action in ("tcpSocket", "httpGet"):
        if action in probe and isinstance(probe[action].get("port"), str):
            probe[action] = {**probe[action], "port": ports[probe[action]["port"]]}
    plan = plan_mod.build(topology_mod.load(), "t")
    for pod in plan.echo_pods:
        assert workloads.readiness_probe(pod, "echo") == probe, (
            f"the netns lab probes {pod.name} with {workloads.readiness_probe(pod, 'echo')}, the cluster lab with "
            f"{probe}")
