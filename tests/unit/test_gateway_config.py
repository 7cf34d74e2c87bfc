"""The gateway-api edge in the plan and in the data plane's nginx configuration, rendered as
NGINX Gateway Fabric's control plane renders a Gateway and its HTTPRoute; and the gateway
edge's faults' hints, which name the hop and never the fix."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from podpath.evidence import faults
from podpath.model import gateway, plan as plan_mod, topology as topology_mod, workloads

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_TOPOLOGY = topology_mod.load(ROOT / "inventory" / "gateway-api.yml")
INGRESS_TOPOLOGY = topology_mod.load()


def build(topo=GATEWAY_TOPOLOGY, lab="gwu"):
    return plan_mod.build(topo, lab)


def with_route(**route):
    topo = copy.deepcopy(GATEWAY_TOPOLOGY)
    topo["gateway"]["route"].update(route)
    topology_mod.validate(topo)
    return topo


def configs(plan):
    files = workloads.render(plan, "/usr/bin/python3")["ingress"]["files"]
    return {Path(f["path"]).parent.name: f["content"] for f in files}


def test_gateway_edge_plans_one_data_plane_pod_per_node_and_no_controller():
    plan = build()
    pods = plan.gateway_pods
    assert [p.name for p in pods] == ["demo-gateway-nginx-1", "demo-gateway-nginx-2", "demo-gateway-nginx-3"]
    assert sorted(p.node for p in pods) == sorted(n.name for n in plan.nodes)
    assert not plan.ingress_pods
    assert plan.edge_pods == pods


def test_gateway_service_takes_the_first_metallb_address_and_the_gateways_ports():
    plan = build()
    svc = plan.edge_service
    gw = GATEWAY_TOPOLOGY["gateway"]
    assert (svc.name, svc.namespace, svc.cluster_ip, svc.type) == (gw["service"], gw["namespace"], gw["cluster_ip"],
                                                                   "LoadBalancer")
    assert svc.load_balancer_ip == GATEWAY_TOPOLOGY["metallb"]["pool"].split("-")[0]
    assert svc.ports[0].node_port == gw["http_node_port"]
    assert svc.pods == plan.gateway_pods
    assert plan.ingress_service is svc  # what MetalLB and kube-proxy serve, whichever the edge


def test_ingress_edge_is_unchanged_by_the_gateway_section():
    plan = build(INGRESS_TOPOLOGY)
    assert plan.edge == "ingress-nginx" and plan.gateway is None
    assert not plan.gateway_pods and len(plan.ingress_pods) == INGRESS_TOPOLOGY["ingress"]["replicas"]
    assert plan.edge_service.name == INGRESS_TOPOLOGY["ingress"]["service"]
    echo = [f["content"] for f in workloads.render(plan, "/usr/bin/python3")["workloads"]["files"]
            if "/echo-1/" in f["path"]][0]
    assert "x-podpath-route" not in echo


def test_data_plane_config_serves_the_listener_host_through_the_route():
    plan = build()
    conf = configs(plan)["demo-gateway-nginx-2"]
    gw = GATEWAY_TOPOLOGY["gateway"]
    assert re.search(rf"server_name {re.escape(gw['listener']['hostname'])};", conf)
    assert re.search(r"location / \{[^}]*proxy_pass http://default_echo_80;", conf, re.S)
    header = gw["route"]["add_header"]
    assert f'proxy_set_header {header["name"]} "{header["value"]}";' in conf
    upstream = re.search(r"upstream default_echo_80 \{([^}]*)\}", conf).group(1)
    assert sorted(re.findall(r"server (\S+) ", upstream)) == sorted(f"{p.ip}:{p.port}" for p in plan.echo_pods)
    assert "add_header X-Gateway-Pod demo-gateway-nginx-2 always;" in conf


def test_a_host_no_route_names_gets_the_default_servers_404():
    conf = configs(build())["demo-gateway-nginx-1"]
    default = re.search(r"server \{\s*listen 80 default_server;(.*?)\n    \}", conf, re.S).group(1)
    assert "return 404;" in default and "proxy_pass" not in default


def test_path_prefix_renders_ngfs_two_locations_and_a_404_for_the_rest():
    conf = configs(build(with_route(path_prefix="/echo")))["demo-gateway-nginx-1"]
    assert "location /echo/ {" in conf and "location = /echo {" in conf
    assert re.search(r"location / \{\s*default_type text/html;\s*return 404;", conf)
    assert gateway.locations("/") == ["/"]


def test_route_without_header_filter_adds_no_header():
    topo = copy.deepcopy(GATEWAY_TOPOLOGY)
    del topo["gateway"]["route"]["add_header"]
    plan = build(topo)
    assert "X-Podpath-Route" not in configs(plan)["demo-gateway-nginx-1"]
    assert gateway.request_headers(plan.gateway) == []


def test_missing_backend_renders_ngfs_invalid_backend_ref_answering_500():
    plan = build()
    pod = plan.gateway_pods[0]
    conf = workloads.gateway_config(plan, pod, backend_missing=True)["content"]
    assert "proxy_pass http://invalid-backend-ref;" in conf
    assert re.search(r"listen unix:\S+;\s*access_log off;\s*return 500;", conf)
    assert not any(p.ip in conf for p in plan.echo_pods)


def test_hostname_override_changes_only_the_server_name():
    plan = build()
    pod = plan.gateway_pods[0]
    good = workloads.gateway_config(plan, pod)["content"]
    bad = workloads.gateway_config(plan, pod, hostname="demo-lab.local")["content"]
    assert bad == good.replace("demo.lab.local", "demo-lab.local")


def test_echo_backend_prints_the_routes_added_header():
    plan = build()
    echo = [f["content"] for f in workloads.render(plan, "/usr/bin/python3")["workloads"]["files"]
            if "/echo-1/" in f["path"]][0]
    assert "x-podpath-route=$http_x_podpath_route" in echo


def test_gateway_render_refuses_a_plan_without_gateway():
    plan = build(INGRESS_TOPOLOGY)
    with pytest.raises(ValueError, match="ingress-nginx"):
        gateway.render_context(plan, plan.pods[0], [])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed: it checks the rendered files")
@pytest.mark.parametrize("overrides", [{}, {"backend_missing": True}], ids=["route", "missing-backend"])
def test_rendered_config_is_valid_nginx(tmp_path, overrides):
    plan = build(with_route(path_prefix="/echo"))
    pod = plan.gateway_pods[0]
    conf = workloads.gateway_config(plan, pod, **overrides)
    text = conf["content"].replace(str(Path(conf["path"]).parent), str(tmp_path))
    path = tmp_path / "nginx.conf"
    path.write_text(text)
    done = subprocess.run(["nginx", "-t", "-q", "-e", str(tmp_path / "error.log"), "-c", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gateway_lab_has_its_edges_faults_and_not_the_controllers():
    names = set(faults.catalogue(build()))
    assert set(faults.GATEWAY_CATALOGUE) <= names
    assert not {"controller", "election"} & names
    assert faults.catalogue(build(INGRESS_TOPOLOGY)) is faults.CATALOGUE
    assert faults.pick(7, build(INGRESS_TOPOLOGY)) == faults.pick(7)


@pytest.mark.parametrize("name", sorted(faults.GATEWAY_CATALOGUE))
def test_gateway_fault_hints_name_the_hop_not_the_fix(name):
    fault = faults.GATEWAY_CATALOGUE[name]
    hint = fault.hint(build(), None)
    text = f"{hint.fails} {hint.hop}".lower()
    words = set(re.findall(r"[a-z0-9_-]+", text))
    used = [w for w in fault.answer if any(word.startswith(w) for word in words)]
    assert not used, f"the hint of {name} gives away {used}: {text}"
    title = set(re.findall(r"[a-z0-9_-]+", (fault.title + " " + " ".join(fault.finds_it)).lower()))
    assert all(any(t.startswith(w) for t in title) for w in fault.answer), f"{name}'s answer is not its title's"
    assert any(p.name in hint.hop for p in build().gateway_pods), f"the hint of {name} names no data-plane pod"
