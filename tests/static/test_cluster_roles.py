"""The shape of the cluster roles: one role per component, every variable prefixed, commented
and described, thin task entry points, safe commands, secrets out of the logs."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from podpath.model.topology import IFNAME_MAX
import yaml

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
ROLES_DIR = ROOT / "roles"
ROLES = sorted(path.name for path in ROLES_DIR.glob("cluster_*") if path.is_dir())
EXPECTED_ROLES = {
    "cluster_prerequisites", "cluster_containerd", "cluster_kubernetes", "cluster_control_plane",
    "cluster_join", "cluster_cni", "cluster_metallb", "cluster_ingress_nginx", "cluster_gateway",
    "cluster_workloads", "cluster_handmade_pod",
}
# Variables a role may use without its prefix: the lab's two shared files.
SHARED_VARS = {"podpath_topology", "podpath_versions"}
INCLUDES = {"ansible.builtin.include_tasks", "ansible.builtin.import_tasks"}
COMMANDS = {"ansible.builtin.command", "command"}
# Downloads without a sha256, each with the reason it has none.
UNCHECKSUMMED_DOWNLOADS = {
    # The key's file changes whenever its expiry is extended; it is pinned by fingerprint.
    "cluster_kubernetes_apt_key_url",
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def task_files(role: str) -> list[Path]:
    role_dir = ROLES_DIR / role
    return sorted([*role_dir.glob("tasks/*.yml"), *role_dir.glob("handlers/*.yml")])


def walk(tasks: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from walk(task.get(key))


def all_tasks(role: str) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.parent.name}/{path.name}", task) for path in task_files(role) for task in walk(load(path))]


def test_one_role_per_component() -> None:
    assert set(ROLES) == EXPECTED_ROLES


@pytest.mark.parametrize("role", ROLES)
def test_role_has_its_files(role: str) -> None:
    for relative in ("defaults/main.yml", "meta/main.yml", "meta/argument_specs.yml", "tasks/main.yml"):
        assert (ROLES_DIR / role / relative).is_file(), f"{role} lacks {relative}"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_prefixed_and_commented(role: str) -> None:
    lines = (ROLES_DIR / role / "defaults" / "main.yml").read_text().splitlines()
    seen_comment = False
    for line in lines:
        if not line.strip():
            seen_comment = False  # a blank line ends a group: the next one needs its own comment
        elif line.startswith("#"):
            seen_comment = True
        elif not line.startswith((" ", "-")) and ":" in line:
            name = line.split(":", 1)[0]
            assert name.startswith(role + "_"), f"{name} is not prefixed with {role}_"
            assert seen_comment, f"{name} has no comment in its group"


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_describe_every_default(role: str) -> None:
    defaults = load(ROLES_DIR / role / "defaults" / "main.yml")
    options = load(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), f"undocumented: {sorted(set(defaults) - set(options))}"
    for name, spec in options.items():
        assert name.startswith(role + "_") or name in SHARED_VARS, name
        assert spec.get("description"), f"{name} has no description"
        assert "default" not in spec, f"{name}: defaults live in defaults/main.yml only"


@pytest.mark.parametrize("role", ROLES)
def test_main_tasks_only_include_files_named_for_what_they_do(role: str) -> None:
    for task in load(ROLES_DIR / role / "tasks" / "main.yml"):
        module = INCLUDES & set(task)
        if not module:  # a quick look-up before the includes is allowed; nothing that changes state
            assert set(task) & {"ansible.builtin.stat"}, f"tasks/main.yml does work itself: {task['name']}"
            continue
        target = task[module.pop()]
        assert (ROLES_DIR / role / "tasks" / target).is_file()
        assert target != "main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_tasks_are_named_as_sentences(role: str) -> None:
    for where, task in all_tasks(role):
        name = task.get("name", "")
        assert name and name[0].isupper(), f"{where}: every task has a name that starts a sentence"


@pytest.mark.parametrize("role", ROLES)
def test_commands_are_argv_lists_with_changed_when(role: str) -> None:
    for where, task in all_tasks(role):
        assert not {"ansible.builtin.shell", "shell", "ansible.builtin.raw"} & set(task), \
            f"{where}: {task['name']} uses a shell"
        for module in COMMANDS & set(task):
            args = task[module]
            assert isinstance(args, dict) and "argv" in args, f"{where}: {task['name']} needs argv"
            assert "changed_when" in task, f"{where}: {task['name']} needs changed_when"


@pytest.mark.parametrize("role", [role for role in ROLES if (ROLES_DIR / role / "handlers").is_dir()])
def test_handlers_do_nothing_in_check_mode(role: str) -> None:
    for handler in load(ROLES_DIR / role / "handlers" / "main.yml"):
        assert "not ansible_check_mode" in str(handler.get("when", "")), handler["name"]


@pytest.mark.parametrize("role", ROLES)
def test_downloads_are_checked_against_a_pinned_sha256(role: str) -> None:
    """Every get_url checks the file against the checksum pinned beside its URL in versions.yml:
    X_url goes with X_sha256, and a download mapping's D.url with D.sha256 (or, where the pin is
    the publisher's checksum file, D.sha256_url)."""
    for where, task in all_tasks(role):
        args = task.get("ansible.builtin.get_url")
        if args is None:
            continue
        if any(name in args["url"] for name in UNCHECKSUMMED_DOWNLOADS):
            continue
        checksum = str(args.get("checksum", ""))
        assert checksum.startswith("sha256:{{"), f"{where}: {task['name']} has no sha256 checksum"
        url = re.fullmatch(r"\{\{\s*(\S+?)(_url|\.url)\s*\}\}", args["url"])
        assert url, f"{where}: {task['name']}: the URL must come from versions.yml, got {args['url']}"
        source, kind = url.groups()
        if kind == "_url":
            assert checksum == f"sha256:{{{{ {source}_sha256 }}}}", f"{where}: {task['name']}"
        else:
            assert checksum == f"sha256:{{{{ {source}.sha256 | default({source}.sha256_url) }}}}", \
                f"{where}: {task['name']}: {checksum}"


def test_containerd_comes_from_its_release_not_from_debian() -> None:
    """Debian 13 packages containerd 1.7 and Kubernetes 1.35 is the last minor to support 1.x:
    no role installs a containerd or runc package, and the containerd role removes Debian's."""
    for role in ROLES:
        for where, task in all_tasks(role):
            apt = task.get("ansible.builtin.apt") or {}
            names = apt.get("name", [])
            names = [names] if isinstance(names, str) else names
            if apt.get("state", "present") != "absent":
                assert not [name for name in names if re.match(r"(containerd|runc)\b", str(name))], \
                    f"{role} {where}: {task['name']} installs containerd or runc from apt"
    role_defaults = load(ROLES_DIR / "cluster_containerd" / "defaults" / "main.yml")
    assert {"containerd", "runc"} <= set(role_defaults["cluster_containerd_replaced_packages"])


def test_kubernetes_falls_back_to_binaries_only_through_its_refusal_check() -> None:
    """The binaries are installed when the method says so, and the method becomes 'binaries'
    only through the install method itself, an earlier binary install, or apt's refusal."""
    main = load(ROLES_DIR / "cluster_kubernetes" / "tasks" / "main.yml")
    whens = {task["ansible.builtin.include_tasks"]: task.get("when") for task in main}
    assert whens["repository.yml"] == whens["packages.yml"] == "cluster_kubernetes_method == 'packages'"
    assert whens["binaries.yml"] == "cluster_kubernetes_method == 'binaries'"
    setters = [(where, task) for where, task in all_tasks("cluster_kubernetes")
               if "cluster_kubernetes_method" in (task.get("ansible.builtin.set_fact") or {})]
    assert {where for where, _ in setters} == {"tasks/method.yml", "tasks/repository.yml"}
    switch = next(task for where, task in setters if where == "tasks/repository.yml")
    assert "cluster_kubernetes_apt_refusals | length > 0 or not cluster_kubernetes_apt_offers_version" in switch["when"]
    # The source is removed before anything else updates apt's lists, or every later apt task fails on it.
    repository = [task["name"] for task in load(ROLES_DIR / "cluster_kubernetes" / "tasks" / "repository.yml")]
    removal = next(i for i, name in enumerate(repository) if name.startswith("Remove the source again"))
    assert removal < repository.index(switch["name"])


# apt-get update's lines when it refused pkgs.k8s.io's signature: the first two as users
# reported them (kubernetes/release issue 3869), the third apt 3's wording of the same refusal
# (as reported for another repository in Uninett/nav issue 3756) with the lab's repository in
# it. Then lines of runs where apt accepted the repository, a warning and a mirror failure.
APT_REFUSED = [
    "Warning: GPG error: https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v1.32/deb  "
    "InRelease: Sub-process /usr/bin/sqv returned an error code (1), error message is: Error: Policy rejected "
    "packet type  Caused by:     Signature Packet v3 is not considered secure since 2021-02-01T00:00:00Z",
    "Error: The repository 'https://pkgs.k8s.io/core:/stable:/v1.32/deb  InRelease' is not signed.",
    "W: OpenPGP signature verification failed: https://pkgs.k8s.io/core:/stable:/v1.35/deb  InRelease: "
    "Sub-process /usr/bin/sqv returned an error code (1)",
]
APT_ACCEPTED = [
    "Get:4 https://prod-cdn.packages.k8s.io/repositories/isv:/kubernetes:/core:/stable:/v1.35/deb  InRelease [1,186 B]",
    "Hit:1 http://deb.debian.org/debian trixie InRelease",
    "Warning: https://pkgs.k8s.io/core:/stable:/v1.33/deb/InRelease: Policy will reject signature within a year, "
    "see --audit for details",
    "Err:2 http://deb.debian.org/debian trixie-updates InRelease  Could not resolve 'deb.debian.org'",
]


def test_apt_refusal_patterns_tell_a_refused_signature_from_a_warning() -> None:
    role_defaults = load(ROLES_DIR / "cluster_kubernetes" / "defaults" / "main.yml")
    hosts = role_defaults["cluster_kubernetes_apt_repository_hosts_pattern"]
    errors = role_defaults["cluster_kubernetes_apt_signature_error_pattern"]

    def refused(line: str) -> bool:  # what the role's two `select('search', ...)` keep
        return bool(re.search(hosts, line) and re.search(errors, line))

    assert [line for line in APT_REFUSED if not refused(line)] == []
    assert [line for line in APT_ACCEPTED if refused(line)] == []


@pytest.mark.parametrize("role", ROLES)
def test_secrets_stay_out_of_the_logs(role: str) -> None:
    for where, task in all_tasks(role):
        argv = " ".join(str(word) for word in (task.get("ansible.builtin.command") or {}).get("argv", []))
        template = (task.get("ansible.builtin.template") or {}).get("src", "")
        if any(secret in argv for secret in ("token", "upload-certs", "kubeadm init", "kubeadm join")) \
                or "join" in template:
            assert task.get("no_log") is True, f"{where}: {task['name']} handles a secret without no_log"


@pytest.mark.parametrize("role", ROLES)
def test_kubeconfig_files_are_private(role: str) -> None:
    for where, task in all_tasks(role):
        for module in ("ansible.builtin.copy", "ansible.builtin.file", "ansible.builtin.template"):
            args = task.get(module) or {}
            if "conf" in str(args.get("dest", args.get("path", ""))) and "admin.conf" in str(args):
                assert args.get("mode") == "0600", f"{where}: {task['name']}"
            if str(args.get("dest", "")).endswith(("/.kube/config", "kubeadm.yaml", "join.yaml")):
                assert args.get("mode") == "0600", f"{where}: {task['name']}"


def test_handmade_pod_network_stays_off_the_topology(topology: dict[str, Any]) -> None:
    defaults = load(ROLES_DIR / "cluster_handmade_pod" / "defaults" / "main.yml")
    network = ipaddress.ip_network(defaults["cluster_handmade_pod_network"])
    for key in ("node_network", "pod_network", "service_network"):
        assert not network.overlaps(ipaddress.ip_network(topology[key])), f"overlaps {key}"
    for key in ("cluster_handmade_pod_gateway", "cluster_handmade_pod_address"):
        address = ipaddress.ip_address(defaults[key])
        assert address in network and address not in (network.network_address, network.broadcast_address)
    assert defaults["cluster_handmade_pod_gateway"] != defaults["cluster_handmade_pod_address"]
    for key in ("cluster_handmade_pod_bridge", "cluster_handmade_pod_host_veth"):
        assert len(defaults[key]) <= IFNAME_MAX, f"{key}: Linux interface names have at most {IFNAME_MAX} characters"
