"""The cluster lab's Gateway API edge (topology edge: gateway-api, roles/cluster_gateway), with
no cluster and no network: the pins of the Gateway API CRDs and of NGINX Gateway Fabric (NGF),
the role's refusal to download a manifest whose sha256 is not pinned (run for real by
ansible-playbook), the lab's NginxProxy, Gateway, SnippetsFilter and HTTPRoute as Ansible renders
them (kinds, fields the APIs define, the topology's values, the core Kubernetes parts against the
pinned minor's schemas), the playbook's choice of one edge, and the linters on the new role.

What NGF does with these objects (the data plane it provisions, the labels of its pods, the
Service's ports named port-<listener port>) is read from its provisioner's source; that the
pinned release behaves so is for a real cluster to show."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from render_roles import ROOT, Rendered

pytestmark = pytest.mark.static

ROLE = ROOT / "roles" / "cluster_gateway"
TEMPLATE = "cluster_gateway/gateway.yaml"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The label NGF's provisioner puts on the data-plane pods (value: <gateway>-<class>) and selects
# them by in the Service it builds; the verifier's cluster adapter selects them by it too.
NGF_POD_LABEL = "app.kubernetes.io/name"

# The fields of the APIs the lab's objects use, in the project's words: NGF's NginxProxy
# (gateway.nginx.org/v1alpha2, its apis/v1alpha2 types), NGF's SnippetsFilter
# (gateway.nginx.org/v1alpha1: snippets of a context and a value, one per context) and Gateway
# API v1's Gateway and HTTPRoute. A mapping lists the keys allowed there and what each holds (None: any value);
# a one-element list describes every item of a list; a set is the values an enum allows.
PATCH = [{"type": {"StrategicMerge", "Merge", "JSONPatch"}, "value": None}]
NGINX_PROXY_SPEC: dict[str, Any] = {
    "ipFamily": None, "telemetry": None, "metrics": None, "rewriteClientIP": None, "logging": None,
    "nginxPlus": None, "disableHTTP2": None, "workerConnections": None, "dnsResolver": None,
    "kubernetes": {
        "deployment": {
            "replicas": None, "autoscaling": None, "container": None, "patches": PATCH,
            "pod": {"terminationGracePeriodSeconds": None, "affinity": None, "nodeSelector": None,
                    "tolerations": None, "volumes": None, "topologySpreadConstraints": None},
        },
        "daemonSet": None,
        "service": {
            "type": {"ClusterIP", "LoadBalancer", "NodePort"},
            "externalTrafficPolicy": {"Cluster", "Local"},
            "loadBalancerIP": None, "loadBalancerClass": None, "loadBalancerSourceRanges": None,
            "nodePorts": [{"port": None, "listenerPort": None}],
            "patches": PATCH,
        },
    },
}
GATEWAY_SPEC: dict[str, Any] = {
    "gatewayClassName": None, "addresses": None, "backendTLS": None, "allowedListeners": None,
    "infrastructure": {"labels": None, "annotations": None,
                       "parametersRef": {"group": None, "kind": None, "name": None}},
    "listeners": [{
        "name": None, "hostname": None, "port": None, "tls": None,
        "protocol": {"HTTP", "HTTPS", "TLS", "TCP", "UDP"},
        "allowedRoutes": {"kinds": None, "namespaces": {"from": {"All", "Same", "Selector"}, "selector": None}},
    }],
}
HTTP_ROUTE_SPEC: dict[str, Any] = {
    "parentRefs": [{"group": None, "kind": None, "namespace": None, "name": None, "sectionName": None,
                    "port": None}],
    "hostnames": None,
    "rules": [{
        "name": None, "timeouts": None, "retry": None, "sessionPersistence": None,
        "matches": [{"path": {"type": {"Exact", "PathPrefix", "RegularExpression"}, "value": None},
                     "headers": None, "queryParams": None, "method": None}],
        "filters": [{
            "type": {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect",
                     "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"},
            "requestHeaderModifier": {"set": [{"name": None, "value": None}], "add": [{"name": None, "value": None}],
                                      "remove": None},
            "responseHeaderModifier": None, "requestMirror": None, "requestRedirect": None, "urlRewrite": None,
            "extensionRef": None, "cors": None, "externalAuth": None,
        }],
        "backendRefs": [{"group": None, "kind": None, "name": None, "namespace": None, "port": None,
                         "weight": None, "filters": None}],
    }],
}
# The NGINX contexts a SnippetsFilter's snippet may target.
SNIPPET_CONTEXTS = {"main", "http", "http.server", "http.server.location"}
SNIPPETS_FILTER_SPEC: dict[str, Any] = {"snippets": [{"context": SNIPPET_CONTEXTS, "value": None}]}
# The response header the netns lab's gateway sends, naming the data-plane pod that answered.
POD_HEADER = "X-Gateway-Pod"
SPECS = {
    ("gateway.nginx.org/v1alpha2", "NginxProxy"): NGINX_PROXY_SPEC,
    ("gateway.nginx.org/v1alpha1", "SnippetsFilter"): SNIPPETS_FILTER_SPEC,
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY_SPEC,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE_SPEC,
}


def unknown_fields(value: Any, schema: Any, where: str) -> list[str]:
    """What VALUE holds that SCHEMA does not allow: unknown keys and values outside an enum."""
    if schema is None:
        return []
    if isinstance(schema, set):
        return [] if value in schema else [f"{where}: {value!r} is not one of {sorted(schema)}"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: a list expected, got {type(value).__name__}"]
        return [bad for i, item in enumerate(value) for bad in unknown_fields(item, schema[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: a mapping expected, got {type(value).__name__}"]
    found = [f"{where}.{key}: not a field of the API" for key in value if key not in schema]
    return found + [bad for key, item in value.items() if key in schema
                    for bad in unknown_fields(item, schema[key], f"{where}.{key}")]


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def gateway_objects(texts: Rendered) -> dict[str, dict[str, Any]]:
    """The rendered template's objects by kind: the same on every node (cluster-wide objects)."""
    assert len(set(texts.values())) == 1, "a cluster-wide object must not depend on the node"
    docs = objects(texts["cp1"])
    kinds = [doc["kind"] for doc in docs]
    assert kinds == ["NginxProxy", "Gateway", "SnippetsFilter", "HTTPRoute"], (
        "the NginxProxy first (the Gateway's parametersRef resolves from the start), the SnippetsFilter "
        f"before the HTTPRoute that references it, got {kinds}")
    return {doc["kind"]: doc for doc in docs}


def pool_first(topology: dict[str, Any]) -> str:
    return topology["metallb"]["pool"].split("-")[0]


def check_gateway(texts: Rendered, topology: dict[str, Any], versions: dict[str, Any]) -> None:
    """The lab's NginxProxy, Gateway, SnippetsFilter and HTTPRoute carry the topology's gateway section (the
    check test_cluster_templates.py runs for this template)."""
    gw, echo = topology["gateway"], topology["workloads"]["echo"]
    found = gateway_objects(texts)
    proxy, gateway, route = found["NginxProxy"], found["Gateway"], found["HTTPRoute"]
    snippets = found["SnippetsFilter"]

    # The NginxProxy shapes the data plane NGF provisions in the Gateway's namespace.
    assert proxy["metadata"]["namespace"] == gw["namespace"]
    deployment = proxy["spec"]["kubernetes"]["deployment"]
    assert deployment["replicas"] == gw["replicas"] == 3
    pod = deployment["pod"]
    label = {NGF_POD_LABEL: gw["service"]}
    assert gw["service"] == f"{gw['name']}-{gw['class']}", "NGF names its data plane <gateway>-<class>"
    if gw.get("spread", True):
        terms = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert [(t["topologyKey"], t["labelSelector"]["matchLabels"]) for t in terms] == \
            [("kubernetes.io/hostname", label)], "at most one data-plane pod per node"
        spread = pod["topologySpreadConstraints"]
        assert [(c["topologyKey"], c["maxSkew"], c["whenUnsatisfiable"], c["labelSelector"]["matchLabels"])
                for c in spread] == [("kubernetes.io/hostname", 1, "DoNotSchedule", label)]
        strategy = deployment["patches"][0]["value"]["spec"]["strategy"]
        assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"], "a data-plane pod may run on the control-plane node"
    service = proxy["spec"]["kubernetes"]["service"]
    assert service["type"] == "LoadBalancer"
    assert service["externalTrafficPolicy"] == gw["external_traffic_policy"] == "Cluster"
    assert service["nodePorts"] == [{"port": gw["http_node_port"], "listenerPort": gw["listener"]["port"]}]
    patches = [p["value"]["spec"] for p in service["patches"] if p["type"] == "StrategicMerge"]
    assert {"clusterIP": gw["cluster_ip"]} in patches, "the Service's fixed ClusterIP"

    # The Gateway: the class NGF serves, the listener, the MetalLB address, the NginxProxy.
    assert (gateway["metadata"]["name"], gateway["metadata"]["namespace"]) == (gw["name"], gw["namespace"])
    spec = gateway["spec"]
    assert spec["gatewayClassName"] == gw["class"] == "nginx"
    listener = gw["listener"]
    assert listener["port"] == 80
    assert spec["listeners"] == [{
        "name": listener["name"], "protocol": "HTTP", "port": listener["port"], "hostname": listener["hostname"],
        "allowedRoutes": {"namespaces": {"from": "Same" if echo["namespace"] == gw["namespace"] else "All"}}}]
    infrastructure = spec["infrastructure"]
    assert infrastructure["annotations"] == {"metallb.io/loadBalancerIPs": pool_first(topology)}
    assert infrastructure["parametersRef"] == {"group": "gateway.nginx.org", "kind": "NginxProxy",
                                               "name": proxy["metadata"]["name"]}

    # The HTTPRoute: the listener's host and the path prefix to echo, with the added header.
    assert (route["metadata"]["name"], route["metadata"]["namespace"]) == (gw["route"]["name"], echo["namespace"])
    assert route["spec"]["parentRefs"] == [{"name": gw["name"], "namespace": gw["namespace"],
                                            "sectionName": listener["name"]}]
    assert route["spec"]["hostnames"] == [listener["hostname"]]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": gw["route"]["path_prefix"]}}]
    header = gw["route"]["add_header"]
    assert rule["filters"] == [
        {"type": "RequestHeaderModifier",
         "requestHeaderModifier": {"add": [{"name": header["name"], "value": header["value"]}]}},
        {"type": "ExtensionRef", "extensionRef": {"group": "gateway.nginx.org", "kind": "SnippetsFilter",
                                                  "name": snippets["metadata"]["name"]}}]
    # No ResponseHeaderModifier: it would put an add_header in the route's location, and nginx
    # then drops the http-level one there.
    assert all(f["type"] != "ResponseHeaderModifier" for f in rule["filters"])

    # The SnippetsFilter: in the route's namespace (NGF resolves it there), one http snippet that
    # names the answering pod in every response, the 404s included.
    assert snippets["metadata"]["namespace"] == route["metadata"]["namespace"]
    assert snippets["spec"]["snippets"] == [{"context": "http",
                                             "value": f"add_header {POD_HEADER} $hostname always;"}]
    assert rule["backendRefs"] == [{"name": echo["name"], "port": echo["port"]}]


# -- the pins -----------------------------------------------------------------------------

def test_gateway_api_crds_are_pinned_by_release_and_sha256(versions: dict[str, Any]) -> None:
    pin = versions["gateway_api"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", pin["version"]), pin["version"]
    assert pin["manifest_url"] == (
        f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{pin['version']}/standard-install.yaml")
    assert SHA256.match(pin["manifest_sha256"]), "the standard channel's manifest is pinned by its digest"


def test_nginx_gateway_fabric_is_pinned_with_the_gateway_api_it_supports(versions: dict[str, Any]) -> None:
    ngf = versions["nginx_gateway_fabric"]
    assert re.fullmatch(r"v\d+\.\d+\.\d+", ngf["version"]), ngf["version"]
    assert ngf["gateway_api"] == versions["gateway_api"]["version"], \
        "the Gateway API CRDs must be the release NGF supports"
    base = f"https://raw.githubusercontent.com/nginx/nginx-gateway-fabric/{ngf['version']}/deploy/"
    assert ngf["crds"]["url"] == base + "crds.yaml"
    # The install with snippets enabled: NGF applies no SnippetsFilter without it.
    assert ngf["deploy"]["url"] == base + "snippets/deploy.yaml"
    for name in ("crds", "deploy"):
        assert set(ngf[name]) == {"url", "sha256"}, f"nginx_gateway_fabric.{name}: url and sha256"
        # Empty until a digest is confirmed: the role refuses to download it then (test below).
        assert ngf[name]["sha256"] == "" or SHA256.match(ngf[name]["sha256"]), name


def test_kubernetes_minor_is_one_nginx_gateway_fabric_supports(versions: dict[str, Any]) -> None:
    def minor(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))
    assert minor(versions["kubernetes"]["minor"]) >= minor(versions["nginx_gateway_fabric"]["kubernetes_minimum"])


# -- the role refuses a manifest without a digest (run by ansible-playbook) ----------------

def run_check_pins(ansible_playbook: str, tmp_path: Path, pins: dict[str, str]) -> subprocess.CompletedProcess:
    play = [{
        "name": "Run cluster_gateway's pin check alone",
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "cluster_gateway_api_manifest_url": "https://example.invalid/standard-install.yaml",
            "cluster_gateway_ngf_crds_url": "https://example.invalid/crds.yaml",
            "cluster_gateway_ngf_deploy_url": "https://example.invalid/deploy.yaml",
            **pins,
        },
        "tasks": [{"name": "Include the check", "ansible.builtin.include_tasks": str(ROLE / "tasks" / "check_pins.yml")}],
    }]
    playbook = tmp_path / "check.yml"
    playbook.write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([ansible_playbook, "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_role_refuses_a_manifest_whose_sha256_is_not_pinned(tool: Callable[[str], str], tmp_path: Path) -> None:
    digest = "0" * 64
    refused = run_check_pins(tool("ansible-playbook"), tmp_path, {
        "cluster_gateway_api_manifest_sha256": digest, "cluster_gateway_ngf_crds_sha256": "",
        "cluster_gateway_ngf_deploy_sha256": digest})
    assert refused.returncode != 0, refused.stdout
    assert "nginx_gateway_fabric.crds.sha256" in refused.stdout and "sha256sum" in refused.stdout, refused.stdout
    assert "https://example.invalid/crds.yaml" in refused.stdout, "the message names the file to hash"
    accepted = run_check_pins(tool("ansible-playbook"), tmp_path, {
        "cluster_gateway_api_manifest_sha256": digest, "cluster_gateway_ngf_crds_sha256": digest,
        "cluster_gateway_ngf_deploy_sha256": digest})
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


# -- the rendered objects --------------------------------------------------------------------

def test_gateway_objects_carry_the_topology(rendered: dict[str, Rendered], topology: dict[str, Any],
                                            versions: dict[str, Any]) -> None:
    check_gateway(rendered[TEMPLATE], topology, versions)


def test_gateway_objects_use_only_fields_their_apis_define(rendered: dict[str, Rendered]) -> None:
    for obj in gateway_objects(rendered[TEMPLATE]).values():
        schema = SPECS[(obj["apiVersion"], obj["kind"])]
        assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
        assert unknown_fields(obj["spec"], schema, f"{obj['kind']}.spec") == []


def test_the_field_check_can_fail() -> None:
    proxy = {"kubernetes": {"service": {"type": "LoadBalancer", "externalTrafficPolicy": "Global",
                                       "clusterIP": "10.96.0.110"}}}
    found = unknown_fields(proxy, NGINX_PROXY_SPEC, "spec")
    assert found == ["spec.kubernetes.service.clusterIP: not a field of the API",
                     "spec.kubernetes.service.externalTrafficPolicy: 'Global' is not one of ['Cluster', 'Local']"]
    route = {"rules": [{"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"append": []}}]}]}
    assert unknown_fields(route, HTTP_ROUTE_SPEC, "spec") == \
        ["spec.rules[0].filters[0].requestHeaderModifier.append: not a field of the API"]
    snippets = {"snippets": [{"context": "http.location", "value": "add_header A b;", "name": "x"}]}
    assert unknown_fields(snippets, SNIPPETS_FILTER_SPEC, "spec") == [
        "spec.snippets[0].name: not a field of the API",
        "spec.snippets[0].context: 'http.location' is not one of "
        "['http', 'http.server', 'http.server.location', 'main']"]


def test_pod_header_is_the_one_the_netns_lab_and_the_verifier_read() -> None:
    from podpath.model.gateway import GATEWAY_HEADER
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    # HTTP header names are case-insensitive; the netns lab keeps them lower-case.
    assert defaults["cluster_gateway_pod_header"].lower() == POD_HEADER.lower() == GATEWAY_HEADER.lower()


def test_data_plane_pod_and_service_match_the_pinned_kubernetes_schemas(
        rendered: dict[str, Rendered], topology: dict[str, Any], versions: dict[str, Any]) -> None:
    """The core Kubernetes parts of the NginxProxy (the pod's affinity, tolerations and spread,
    the Deployment patch, the Service as NGF builds it with the lab's patch) are valid objects
    of the pinned minor, strictly."""
    module = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (it is in the cluster extra: make venv)")
    gw = topology["gateway"]
    proxy = gateway_objects(rendered[TEMPLATE])["NginxProxy"]["spec"]["kubernetes"]
    labels = {NGF_POD_LABEL: gw["service"]}
    pod_spec = {"containers": [{"name": "nginx", "image": "nginx"}], **proxy["deployment"]["pod"]}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": gw["service"], "namespace": gw["namespace"]},
                  "spec": {"replicas": proxy["deployment"]["replicas"], "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": pod_spec}}}
    for patch in proxy["deployment"].get("patches", []):
        deployment["spec"].update(patch["value"]["spec"])
    service = proxy["service"]
    port = gw["listener"]["port"]
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": gw["service"], "namespace": gw["namespace"]},
           "spec": {"type": service["type"], "externalTrafficPolicy": service["externalTrafficPolicy"],
                    "selector": labels,
                    "ports": [{"name": f"port-{port}", "port": port, "targetPort": port,
                               "nodePort": next(n["port"] for n in service["nodePorts"] if n["listenerPort"] == port)}]}}
    for patch in service["patches"]:
        svc["spec"].update(patch["value"]["spec"])
    for obj in (deployment, svc):
        module.validate(obj, versions["kubernetes"]["minor"], strict=True)
    with pytest.raises(module.ValidationError):
        module.validate({**svc, "spec": {**svc["spec"], "externalTrafficPolicy": 1}},
                        versions["kubernetes"]["minor"], strict=True)


# -- the playbook runs one edge ------------------------------------------------------------

def test_site_runs_cluster_gateway_instead_of_ingress_nginx_for_the_gateway_edge() -> None:
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    [play] = [p for p in plays if any(r == "cluster_metallb" for r in p.get("roles", []))]
    roles = [r if isinstance(r, dict) else {"role": r} for r in play["roles"]]
    names = [r["role"] for r in roles]
    assert names == ["cluster_metallb", "cluster_ingress_nginx", "cluster_gateway", "cluster_workloads"]
    when = {r["role"]: r.get("when") for r in roles}
    assert when["cluster_ingress_nginx"] == "podpath_topology.edge | default('ingress-nginx') == 'ingress-nginx'"
    assert when["cluster_gateway"] == "podpath_topology.edge | default('ingress-nginx') == 'gateway-api'"
    assert when["cluster_metallb"] is None and when["cluster_workloads"] is None


def test_gateway_role_and_playbook_pass_the_linters(tool: Callable[[str], str]) -> None:
    files = ["roles/cluster_gateway", "playbooks/site.yml", "inventory/group_vars/all/versions.yml"]
    yamllint = subprocess.run([tool("yamllint"), "--strict", "--format", "parsable", *files],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert yamllint.returncode == 0, yamllint.stdout + yamllint.stderr
    lint = subprocess.run([tool("ansible-lint"), "--offline", "--profile", "production", "--format", "pep8", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# -- the verifier finds the edge's pods as the role deploys them ----------------------------

@pytest.mark.parametrize("topology_file, app, namespace, selector, port", [
    ("inventory/gateway-api.yml", "gateway", "default", f"{NGF_POD_LABEL}=demo-gateway-nginx", 80),
    (None, "ingress-nginx", "ingress-nginx",
     "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/instance=ingress-nginx,"
     "app.kubernetes.io/component=controller", 80),
])
def test_cluster_adapter_asks_for_the_edge_pods_the_role_labels(
        monkeypatch: pytest.MonkeyPatch, topology_file: str | None, app: str, namespace: str, selector: str,
        port: int) -> None:
    """The cluster adapter's edge pods: with gateway-api, NGF's data plane in the Gateway's
    namespace by the label the role's anti-affinity and NGF's Service use; with ingress-nginx,
    the controllers as before."""
    from podpath.evidence import cluster as adapter
    from podpath.model import topology as topology_model
    from podpath.model.plan import build

    topo = topology_model.load(ROOT / topology_file if topology_file else None)
    lab = adapter.ClusterLab(build(topo, "cluster"), "ansible://all", None)
    lab._selected = ["cp1", "worker1", "worker2"]
    asked: list[tuple[str, ...]] = []
    pods = {"apiVersion": "v1", "kind": "List", "items": [
        {"metadata": {"name": f"edge-{node}", "namespace": namespace, "uid": f"u-{node}"},
         "spec": {"nodeName": node, "containers": [{"name": "nginx"}]},
         "status": {"phase": "Running", "podIP": f"10.244.{i}.9", "conditions": [{"type": "Ready", "status": "True"}]}}
        for i, node in enumerate(["worker2", "cp1", "worker1"])]}

    def kubectl_json(*args: str, what: str = "") -> str:
        asked.append(args)
        return json.dumps(pods)

    monkeypatch.setattr(lab, "kubectl_json", kubectl_json)
    found = lab.edge_pods()
    assert asked == [("get", "pods", "-n", namespace, "-l", selector)]
    assert [(p.name, p.app, p.port) for p in found] == [
        ("edge-cp1", app, port), ("edge-worker1", app, port), ("edge-worker2", app, port)]
    if topology_file:
        role_labels = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["cluster_gateway_pod_labels"]
        assert list(role_labels) == [NGF_POD_LABEL], "the role spreads the pods by the label the adapter asks for"
        gw = topo["gateway"]
        assert selector == f"{NGF_POD_LABEL}={gw['service']}" and namespace == gw["namespace"]
        assert lab.ingress_service == gw["service"], "the Service behind the MetalLB address is the data plane's"
