"""Every template of the cluster roles, rendered by Ansible itself with the default topology
and versions for each node of inventory/hosts.example.yml (the `rendered` fixture of
conftest.py), then parsed and checked: kinds, namespaces, replicas, addresses inside the
right networks, ports, the runtime's and kubelet's units."""
from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from render_roles import ROOT, STAND_IN_INTERFACE, STAND_INS, TEMPLATES, Rendered, template_id
from test_cluster_gateway import check_gateway

pytestmark = pytest.mark.static

Check = Callable[[Rendered, dict[str, Any], dict[str, Any]], None]


def defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """A systemd unit or drop-in as (section, key, value) in file order; keys may repeat
    (ExecStart= then ExecStart=... in a drop-in), which configparser would refuse."""
    section, entries = "", []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        entries.append((section, key, value))
    return entries


def unit_values(text: str, section: str, key: str) -> list[str]:
    return [value for sect, name, value in unit_entries(text) if (sect, name) == (section, key)]


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [doc["kind"] for doc in docs]
    assert len(kinds) == len(set(kinds)), f"one object per kind expected, got {kinds}"
    return {doc["kind"]: doc for doc in docs}


def node(topology: dict[str, Any], name: str) -> dict[str, Any]:
    return next(spec for spec in topology["nodes"] if spec["name"] == name)


def in_network(address: str, network: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def pool_range(topology: dict[str, Any]) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    first, last = (ipaddress.IPv4Address(part) for part in topology["metallb"]["pool"].split("-"))
    return first, last


def node_ports(topology: dict[str, Any]) -> range:
    low, high = (int(part) for part in topology["node_port_range"].split("-"))
    return range(low, high + 1)


def same_everywhere(texts: Rendered) -> str:
    """Cluster-wide objects render the same whichever node renders them."""
    assert len(set(texts.values())) == 1, "a cluster-wide object must not depend on the node"
    return texts["cp1"]


# --- cluster_containerd ---------------------------------------------------------------------

def check_containerd_config(texts: Rendered, topology: dict, versions: dict) -> None:
    config = tomllib.loads(same_everywhere(texts))
    role = defaults("cluster_containerd")
    assert config["version"] == 3, "containerd 2.x reads format version 3"
    plugins = config["plugins"]
    assert "io.containerd.grpc.v1.cri" not in plugins, "the 1.x CRI section has no place in a version 3 file"
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == versions["containerd"]["pause_image"]
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["default_runtime_name"] == "runc"
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is True, "kubelet uses the systemd cgroup driver"
    assert runc["options"]["BinaryName"] == role["cluster_containerd_runc_path"], "the runc the role installs"
    # bin_dir (one directory) is deprecated since containerd 2.1 in favour of bin_dirs.
    assert runtime["cni"] == {"bin_dirs": ["/opt/cni/bin"], "conf_dir": "/etc/cni/net.d"}


def check_containerd_unit(texts: Rendered, topology: dict, versions: dict) -> None:
    text = same_everywhere(texts)
    role = defaults("cluster_containerd")
    [exec_start] = unit_values(text, "Service", "ExecStart")
    assert exec_start.split() == [f"{role['cluster_containerd_prefix']}/bin/containerd",
                                  "--config", role["cluster_containerd_config_path"]]
    assert unit_values(text, "Service", "Type") == ["notify"]
    assert unit_values(text, "Service", "Delegate") == ["yes"], "containerd creates the pods' cgroups under its own"
    assert unit_values(text, "Service", "KillMode") == ["process"], "a restart must leave the running pods alone"
    assert unit_values(text, "Service", "Restart") == ["always"]
    assert unit_values(text, "Install", "WantedBy") == ["multi-user.target"]
    assert versions["containerd"]["version"] in unit_values(text, "Unit", "Description")[0]


def check_crictl(texts: Rendered, topology: dict, versions: dict) -> None:
    config = yaml.safe_load(same_everywhere(texts))
    assert config["runtime-endpoint"] == "unix:///run/containerd/containerd.sock"


# --- cluster_kubernetes ---------------------------------------------------------------------

def check_kubelet_defaults(texts: Rendered, topology: dict, versions: dict) -> None:
    for host, text in texts.items():
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert lines == [f'KUBELET_EXTRA_ARGS="--node-ip={node(topology, host)["ip"]}"'], host
        assert "10.0.2.15" not in text


def check_kubelet_unit(texts: Rendered, topology: dict, versions: dict) -> None:
    text = same_everywhere(texts)
    role = defaults("cluster_kubernetes")
    assert unit_values(text, "Service", "ExecStart") == [f"{role['cluster_kubernetes_binaries_dir']}/kubelet"]
    assert unit_values(text, "Service", "Restart") == ["always"], "kubelet restarts until kubeadm configures it"
    assert "containerd.service" in unit_values(text, "Unit", "After")[0]
    assert unit_values(text, "Install", "WantedBy") == ["multi-user.target"]
    assert role["cluster_kubernetes_kubeadm_dropin_path"] == \
        f"{role['cluster_kubernetes_kubelet_unit_path']}.d/10-kubeadm.conf", "systemd reads drop-ins from <unit>.d/"


def check_kubeadm_dropin(texts: Rendered, topology: dict, versions: dict) -> None:
    text = same_everywhere(texts)
    role = defaults("cluster_kubernetes")
    exec_starts = unit_values(text, "Service", "ExecStart")
    assert exec_starts[0] == "", "an empty ExecStart= first, or systemd refuses a second command line"
    assert len(exec_starts) == 2
    words = exec_starts[1].split()
    assert words[0] == f"{role['cluster_kubernetes_binaries_dir']}/kubelet"
    assert words[1:] == ["$KUBELET_KUBECONFIG_ARGS", "$KUBELET_CONFIG_ARGS", "$KUBELET_KUBEADM_ARGS",
                         "$KUBELET_EXTRA_ARGS"]
    environment = dict(value.strip('"').split("=", 1) for value in unit_values(text, "Service", "Environment"))
    assert environment["KUBELET_CONFIG_ARGS"] == "--config=/var/lib/kubelet/config.yaml"
    assert environment["KUBELET_KUBECONFIG_ARGS"].split() == [
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf", "--kubeconfig=/etc/kubernetes/kubelet.conf"]
    # kubeadm's flags, then the lab's --node-ip (the same file the package's drop-in reads).
    assert unit_values(text, "Service", "EnvironmentFile") == [
        "-/var/lib/kubelet/kubeadm-flags.env", f"-{role['cluster_kubernetes_kubelet_defaults_path']}"]


# --- cluster_control_plane ------------------------------------------------------------------

def check_kubeadm_config(texts: Rendered, topology: dict, versions: dict) -> None:
    cp1 = node(topology, "cp1")
    docs = by_kind(objects(texts["cp1"]))
    assert set(docs) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration",
                         "KubeProxyConfiguration"}
    init, cluster = docs["InitConfiguration"], docs["ClusterConfiguration"]
    assert init["apiVersion"] == cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["localAPIEndpoint"]["advertiseAddress"] == cp1["ip"]
    assert init["nodeRegistration"]["name"] == "cp1"
    assert {"name": "node-ip", "value": cp1["ip"]} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert cluster["kubernetesVersion"] == "v" + versions["kubernetes"]["version"]
    assert cluster["controlPlaneEndpoint"] == f"{cp1['ip']}:6443"
    assert cluster["networking"]["podSubnet"] == topology["pod_network"]
    assert cluster["networking"]["serviceSubnet"] == topology["service_network"]
    for spec in topology["nodes"]:
        assert ipaddress.ip_network(spec["pod_cidr"]).subnet_of(ipaddress.ip_network(topology["pod_network"]))
        assert ipaddress.ip_network(spec["pod_cidr"]).prefixlen == 24
    assert {"name": "service-node-port-range", "value": topology["node_port_range"]} \
        in cluster["apiServer"]["extraArgs"]
    kubelet = docs["KubeletConfiguration"]
    assert kubelet["cgroupDriver"] == "systemd"
    assert kubelet["clusterDNS"] == [topology["cluster_dns"]]
    assert in_network(topology["cluster_dns"], topology["service_network"])
    proxy = docs["KubeProxyConfiguration"]
    assert proxy["mode"] == "iptables"
    assert proxy["ipvs"]["strictARP"] is False, "strictARP only with IPVS"


# --- cluster_join ---------------------------------------------------------------------------

def check_kubeadm_join(texts: Rendered, topology: dict, versions: dict) -> None:
    cp1 = node(topology, "cp1")
    for host in ("worker1", "worker2"):
        join = by_kind(objects(texts[host]))["JoinConfiguration"]
        assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        token = join["discovery"]["bootstrapToken"]
        assert token["apiServerEndpoint"] == f"{cp1['ip']}:6443"
        assert token["token"] == STAND_INS["cluster_join_token"]
        assert token["caCertHashes"] == [STAND_INS["cluster_join_ca_cert_hash"]]
        assert join["nodeRegistration"]["name"] == host
        assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": node(topology, host)["ip"]}]
        assert "controlPlane" not in join, "workers join as workers"


# --- cluster_cni ----------------------------------------------------------------------------

def check_flannel_kustomization(texts: Rendered, topology: dict, versions: dict) -> None:
    kustomization = yaml.safe_load(same_everywhere(texts))
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [f"kube-flannel-{versions['flannel']['version']}.yml"]
    paths = [patch["path"] for patch in kustomization["patches"]]
    assert paths == ["net-conf-patch.yaml", "iface-patch.yaml"]
    assert all((ROOT / "roles" / "cluster_cni" / "templates" / f"{path}.j2").is_file() for path in paths)


def check_flannel_net_conf(texts: Rendered, topology: dict, versions: dict) -> None:
    configmap = by_kind(objects(same_everywhere(texts)))["ConfigMap"]
    assert configmap["metadata"] == {"name": "kube-flannel-cfg", "namespace": "kube-flannel"}
    net_conf = json.loads(configmap["data"]["net-conf.json"])
    assert net_conf["Network"] == topology["pod_network"]
    assert net_conf["Backend"] == {"Type": "vxlan"}


def check_flannel_iface(texts: Rendered, topology: dict, versions: dict) -> None:
    patch = yaml.safe_load(same_everywhere(texts))
    assert patch == [{"op": "add", "path": "/spec/template/spec/containers/0/args/-",
                      "value": f"--iface={STAND_IN_INTERFACE}"}]


# --- cluster_metallb ------------------------------------------------------------------------

def check_metallb_pool(texts: Rendered, topology: dict, versions: dict) -> None:
    docs = by_kind(objects(same_everywhere(texts)))
    assert set(docs) == {"IPAddressPool", "L2Advertisement"}
    for doc in docs.values():
        assert doc["apiVersion"] == "metallb.io/v1beta1"
        assert doc["metadata"]["namespace"] == "metallb-system"
    pool = docs["IPAddressPool"]
    assert pool["spec"]["addresses"] == [topology["metallb"]["pool"]]
    first, last = pool_range(topology)
    assert first <= last
    network = ipaddress.ip_network(topology["node_network"])
    assert first in network and last in network, "the pool must be inside the node network"
    assert network.network_address < first and last < network.broadcast_address
    taken = [spec["ip"] for spec in topology["nodes"]] + [topology["client"]["ip"]]
    assert not [ip for ip in taken if first <= ipaddress.IPv4Address(ip) <= last], "the pool holds a node's address"
    assert docs["L2Advertisement"]["spec"]["ipAddressPools"] == [pool["metadata"]["name"]]


# --- cluster_ingress_nginx ------------------------------------------------------------------

def check_ingress_kustomization(texts: Rendered, topology: dict, versions: dict) -> None:
    kustomization = yaml.safe_load(same_everywhere(texts))
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == [f"deploy-{versions['ingress_nginx']['version']}.yaml",
                                          "response-headers.yaml"]
    paths = [patch["path"] for patch in kustomization["patches"]]
    assert paths == ["controller-deployment-patch.yaml", "controller-service-patch.yaml",
                     "controller-configmap-patch.yaml"]
    for path in [*paths, "response-headers.yaml"]:
        assert (ROOT / "roles" / "cluster_ingress_nginx" / "templates" / f"{path}.j2").is_file()


def check_ingress_deployment(texts: Rendered, topology: dict, versions: dict) -> None:
    ingress = topology["ingress"]
    deployment = by_kind(objects(same_everywhere(texts)))["Deployment"]
    assert deployment["metadata"] == {"name": ingress["service"], "namespace": ingress["namespace"]}
    assert deployment["spec"]["replicas"] == ingress["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    pod = deployment["spec"]["template"]["spec"]
    labels = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": "ingress-nginx",
              "app.kubernetes.io/component": "controller"}
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti == [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}]
    assert pod["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": labels}}]
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"} \
        in pod["tolerations"], "one controller per node includes the control-plane node"
    assert len(topology["nodes"]) >= ingress["replicas"], "one per node needs as many nodes as replicas"


def check_ingress_service(texts: Rendered, topology: dict, versions: dict) -> None:
    ingress = topology["ingress"]
    service = by_kind(objects(same_everywhere(texts)))["Service"]
    assert service["metadata"]["name"] == ingress["service"]
    assert service["metadata"]["namespace"] == ingress["namespace"]
    first, _ = pool_range(topology)
    assert service["metadata"]["annotations"] == {"metallb.io/loadBalancerIPs": str(first)}
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["externalTrafficPolicy"] == ingress["external_traffic_policy"] == "Cluster"
    assert spec["clusterIP"] == ingress["cluster_ip"]
    assert in_network(spec["clusterIP"], topology["service_network"])
    ports = {port["name"]: port for port in spec["ports"]}
    assert (ports["http"]["port"], ports["http"]["nodePort"]) == (80, ingress["http_node_port"])
    assert (ports["https"]["port"], ports["https"]["nodePort"]) == (443, ingress["https_node_port"])
    assert all(port["nodePort"] in node_ports(topology) for port in spec["ports"])


def check_ingress_configmap(texts: Rendered, topology: dict, versions: dict) -> None:
    ingress = topology["ingress"]
    configmap = by_kind(objects(same_everywhere(texts)))["ConfigMap"]
    assert configmap["metadata"] == {"name": ingress["service"], "namespace": ingress["namespace"]}
    assert configmap["data"] == {"add-headers": f"{ingress['namespace']}/podpath-response-headers"}


def check_response_headers(texts: Rendered, topology: dict, versions: dict) -> None:
    configmap = by_kind(objects(same_everywhere(texts)))["ConfigMap"]
    assert configmap["metadata"]["name"] == "podpath-response-headers"
    assert configmap["metadata"]["namespace"] == topology["ingress"]["namespace"]
    # The header the verifier reads to know which controller served (nginx's $hostname is the pod's name).
    assert configmap["data"] == {"X-Ingress-Controller": "$hostname"}


# --- cluster_workloads ----------------------------------------------------------------------

def check_multi_container_pod(texts: Rendered, topology: dict, versions: dict) -> None:
    want = topology["workloads"]["multi_container_pod"]
    pod = by_kind(objects(same_everywhere(texts)))["Pod"]
    assert pod["apiVersion"] == "v1"
    assert (pod["metadata"]["name"], pod["metadata"]["namespace"]) == (want["name"], want["namespace"])
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": want["node"]}
    assert want["node"] in [spec["name"] for spec in topology["nodes"]]
    containers = {container["name"]: container for container in pod["spec"]["containers"]}
    assert set(containers) == {"busybox", "nginx"}
    assert containers["busybox"]["image"] == versions["images"]["busybox"]
    assert containers["busybox"]["command"] == ["sleep", "1d"]
    assert containers["nginx"]["image"] == versions["images"]["nginx"]
    assert containers["nginx"]["ports"][0]["containerPort"] == 80
    # the topology's share_process_namespace (off unless it says so), as the netns lab's pod has it
    assert pod["spec"].get("shareProcessNamespace", False) is want.get("share_process_namespace", False)


def check_echo(texts: Rendered, topology: dict, versions: dict) -> None:
    want = topology["workloads"]["echo"]
    docs = by_kind(objects(same_everywhere(texts)))
    assert set(docs) == {"ConfigMap", "Deployment", "Service"}
    configmap, deployment, service = docs["ConfigMap"], docs["Deployment"], docs["Service"]
    for doc in docs.values():
        assert doc["metadata"]["namespace"] == want["namespace"]
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == want["name"]
    assert deployment["spec"]["replicas"] == want["replicas"] == 3
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    [container] = template["spec"]["containers"]
    assert container["image"] == versions["images"]["nginx"]
    assert template["spec"].get("shareProcessNamespace", False) is want.get("share_process_namespace", False)
    env = {var["name"]: var for var in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["ECHO_PORT"]["value"] == str(want["target_port"])
    assert container["ports"] == [{"name": "http", "containerPort": want["target_port"], "protocol": "TCP"}]
    [volume] = template["spec"]["volumes"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert container["volumeMounts"][0]["mountPath"] == "/etc/nginx/templates"
    # The answer the verifier parses: the same fields as the netns lab's echo backends.
    conf = configmap["data"]["default.conf.template"]
    assert "listen ${ECHO_PORT} default_server;" in conf
    assert "pod=${POD_NAME} ip=$server_addr node=${NODE_NAME} client=$remote_addr" in conf
    netns_echo = (ROOT / "podpath" / "templates" / "nginx-echo.conf.j2")
    if netns_echo.exists():
        def fields(text: str) -> list[str]:
            return re.findall(r"(\w+)=", text.split('return 200 "')[1].split('"')[0])
        assert fields(conf) == fields(netns_echo.read_text()), "the two labs' echo backends answer differently"
    assert service["spec"]["clusterIP"] == want["cluster_ip"]
    assert in_network(want["cluster_ip"], topology["service_network"])
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "http", "port": want["port"], "targetPort": "http", "protocol": "TCP"}]


def check_no_endpoints(texts: Rendered, topology: dict, versions: dict) -> None:
    want = topology["workloads"]["empty_service"]
    service = by_kind(objects(same_everywhere(texts)))["Service"]
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == (want["name"], want["namespace"])
    assert service["spec"]["clusterIP"] == want["cluster_ip"]
    assert in_network(want["cluster_ip"], topology["service_network"])
    assert service["spec"]["ports"][0]["port"] == want["port"]
    selector = service["spec"]["selector"]
    assert selector, "without a selector it would be a Service with manual endpoints"
    for name in ("echo.yaml.j2", "multi-container-pod.yaml.j2"):
        text = (ROOT / "roles" / "cluster_workloads" / "templates" / name).read_text()
        assert "-has-no-pods" not in text, "no pod may carry the empty Service's labels"


def check_ingress(texts: Rendered, topology: dict, versions: dict) -> None:
    echo = topology["workloads"]["echo"]
    ingress = by_kind(objects(same_everywhere(texts)))["Ingress"]
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["namespace"] == echo["namespace"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == topology["ingress"]["host"]
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": echo["name"], "port": {"number": echo["port"]}}


def test_service_cluster_ips_are_distinct(topology: dict) -> None:
    ips = [topology["ingress"]["cluster_ip"], topology["workloads"]["echo"]["cluster_ip"],
           topology["workloads"]["empty_service"]["cluster_ip"], topology["cluster_dns"]]
    assert len(set(ips)) == len(ips)
    assert all(in_network(ip, topology["service_network"]) for ip in ips)


def static_band(network: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The lowest addresses of a Service network, which kube-apiserver hands out dynamically
    only once the rest is taken (KEP-3070): min(max(16, size / 16), 256) of them from the
    first host address; none at all for a network of 16 addresses or fewer."""
    net = ipaddress.ip_network(network)
    size = net.num_addresses
    offset = 0 if size <= 16 else min(max(16, size // 16), 256)
    if not offset:
        raise ValueError(f"{net} is too small to have a static band")
    first = net.network_address + 1
    return first, first + offset - 1


@pytest.mark.parametrize("network, first, last", [
    ("10.96.0.0/12", "10.96.0.1", "10.96.1.0"),     # capped at 256
    ("10.96.0.0/16", "10.96.0.1", "10.96.1.0"),
    ("10.96.0.0/20", "10.96.0.1", "10.96.1.0"),     # 4096 / 16 = 256
    ("10.96.0.0/22", "10.96.0.1", "10.96.0.64"),    # 1024 / 16 = 64
    ("10.96.0.0/24", "10.96.0.1", "10.96.0.16"),    # never fewer than 16
])
def test_static_band_follows_kube_apiserver(network: str, first: str, last: str) -> None:
    assert static_band(network) == (ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))


def test_fixed_cluster_ips_are_in_the_static_band(topology: dict) -> None:
    """A fixed ClusterIP in the dynamic band can be taken by any Service created first
    (ingress-nginx's admission Service, MetalLB's webhook Service, ...), and then the lab's
    Service is refused: every address the topology fixes sits in the static band."""
    first, last = static_band(topology["service_network"])
    fixed = {"ingress": topology["ingress"]["cluster_ip"], "echo": topology["workloads"]["echo"]["cluster_ip"],
             "empty_service": topology["workloads"]["empty_service"]["cluster_ip"], "cluster_dns": topology["cluster_dns"]}
    for what, address in fixed.items():
        assert first <= ipaddress.IPv4Address(address) <= last, \
            f"{what} {address} is outside the static band {first}-{last} of {topology['service_network']}"
    # The first address is the kubernetes Service's, which kube-apiserver creates itself.
    assert str(first) not in fixed.values()


CHECKS: dict[str, Check] = {
    "cluster_containerd/config.toml": check_containerd_config,
    "cluster_containerd/containerd.service": check_containerd_unit,
    "cluster_containerd/crictl.yaml": check_crictl,
    "cluster_kubernetes/kubelet.default": check_kubelet_defaults,
    "cluster_kubernetes/kubelet.service": check_kubelet_unit,
    "cluster_kubernetes/10-kubeadm.conf": check_kubeadm_dropin,
    "cluster_control_plane/kubeadm-config.yaml": check_kubeadm_config,
    "cluster_join/kubeadm-join.yaml": check_kubeadm_join,
    "cluster_cni/kustomization.yaml": check_flannel_kustomization,
    "cluster_cni/net-conf-patch.yaml": check_flannel_net_conf,
    "cluster_cni/iface-patch.yaml": check_flannel_iface,
    "cluster_metallb/metallb-pool.yaml": check_metallb_pool,
    "cluster_ingress_nginx/kustomization.yaml": check_ingress_kustomization,
    "cluster_ingress_nginx/controller-deployment-patch.yaml": check_ingress_deployment,
    "cluster_ingress_nginx/controller-service-patch.yaml": check_ingress_service,
    "cluster_ingress_nginx/controller-configmap-patch.yaml": check_ingress_configmap,
    "cluster_ingress_nginx/response-headers.yaml": check_response_headers,
    "cluster_gateway/gateway.yaml": check_gateway,
    "cluster_workloads/multi-container-pod.yaml": check_multi_container_pod,
    "cluster_workloads/echo.yaml": check_echo,
    "cluster_workloads/no-endpoints.yaml": check_no_endpoints,
    "cluster_workloads/ingress.yaml": check_ingress,
}


@pytest.mark.parametrize("template", TEMPLATES, ids=template_id)
def test_template(rendered: dict[str, Rendered], topology: dict, versions: dict, template: str) -> None:
    check = CHECKS.get(template_id(template))
    assert check, f"{template} has no check in {Path(__file__).name}: add one to CHECKS"
    check(rendered[template_id(template)], topology, versions)


def test_every_check_has_its_template() -> None:
    assert set(CHECKS) == {template_id(template) for template in TEMPLATES}
