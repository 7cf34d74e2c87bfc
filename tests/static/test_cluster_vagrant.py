"""The Vagrantfile, rendered per provider, architecture and provisioner, and checked by the real
`vagrant validate` where this machine lets it.

Rendering: tests/static/vagrant_render.rb evaluates the Vagrantfile with Ruby and a stand-in for
the few parts of Vagrant it uses, and prints every setting, provisioner and trigger as JSON, so
the tests read what Vagrant would be given for each case (VirtualBox or libvirt, amd64 or arm64,
Ansible on the host or in the VM, old or new Vagrant, VirtualBox 7.0 to 7.3) without Vagrant,
VirtualBox or KVM. The trigger helpers that decide at `vagrant up` time (the provisioning order
guard) are run with stand-in machines.
"""
from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from boxes import build

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
VAGRANTFILE = ROOT / "Vagrantfile"
RENDER = Path(__file__).with_name("vagrant_render.rb")
PROVIDERS = ["virtualbox", "libvirt"]
ARCHES = ["amd64", "arm64"]
# kubeadm's preflight refuses a control-plane node with fewer CPUs or less memory than this.
KUBEADM_MIN_CPUS = 2
KUBEADM_MIN_MEMORY_MB = 1700

# VirtualBox is not installed here. To decide whether the provider is usable, Vagrant (and the
# Vagrantfile) only runs `VBoxManage --version`; this stand-in answers that with $FAKE_VBOX and
# logs every call, so the tests can check that nothing else was asked of it.
VBOXMANAGE_STAND_IN = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls.log"
[ "$1" = --version ] && echo "${FAKE_VBOX:-7.0.20r163906}"
exit 0
"""


# ----- rendering ---------------------------------------------------------------------------

def vboxmanage_dir(tmp_path: Path) -> Path:
    stand_in = tmp_path / "vbox-bin"
    stand_in.mkdir(exist_ok=True)
    (stand_in / "VBoxManage").write_text(VBOXMANAGE_STAND_IN)
    (stand_in / "VBoxManage").chmod(0o755)
    return stand_in


def render(tool: Callable[[str], str], tmp_path: Path, *argv: str, vagrantfile: Path = VAGRANTFILE,
           evaluate: str | None = None, **env: str) -> dict[str, Any]:
    """The Vagrantfile's configuration for `vagrant ARGV` under ENV (or the value of EVALUATE,
    Ruby run after loading it). {"error": message} when the Vagrantfile refuses to load."""
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("PODPATH_", "VAGRANT_"))}
    # Vagrant 2.4.9 and VirtualBox 7.2, the current releases, unless the case says otherwise.
    base.update(VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"), PODPATH_TEST_VAGRANT_VERSION="2.4.9",
                FAKE_VBOX="7.2.4r170995",
                PATH=str(vboxmanage_dir(tmp_path)) + os.pathsep + os.environ["PATH"])
    base.update(env)
    if evaluate is not None:
        base["PODPATH_TEST_EVAL"] = evaluate
    result = subprocess.run([tool("ruby"), str(RENDER), str(vagrantfile), *(argv or ("up",))], env=base,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode in (0, 3), result.stdout + result.stderr
    data = json.loads(result.stdout)
    data["stderr"] = result.stderr
    return data


def calls(recorded: dict[str, Any], method: str) -> list[dict[str, Any]]:
    return [call for call in recorded["calls"] if call["method"] == method]


def vm(recorded: dict[str, Any]) -> dict[str, Any]:
    return recorded["settings"].get("vm", {"settings": {}, "calls": []})


def machines(rendered: dict[str, Any]) -> list[dict[str, Any]]:
    """Each machine in definition (= boot) order: name, its config, provider blocks, provisioners
    and triggers, from the recorded calls."""
    assert "error" not in rendered, rendered.get("error")
    (configure,) = rendered["configs"]
    found = []
    for define in calls(vm(configure["config"]), "define"):
        node = define["blocks"][0]
        providers = {call["args"][0]: {"settings": call["blocks"][0]["settings"], "calls": call["blocks"][0]["calls"],
                                       "override": vm(call["blocks"][1])["settings"]}
                     for call in calls(vm(node), "provider")}
        provisions = [{"name": call["args"][0], **call["kwargs"],
                       "settings": call["blocks"][0]["settings"] if call["blocks"] else {}}
                      for call in calls(vm(node), "provision")]
        triggers = [{"when": call["method"], "on": call["args"][0], **call["blocks"][0]["settings"]}
                    for call in node["settings"].get("trigger", {"calls": []})["calls"]]
        found.append({"name": define["args"][0], "vm": vm(node)["settings"], "providers": providers,
                      "provisions": provisions, "triggers": triggers})
    return found


def root_vm(rendered: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in rendered, rendered.get("error")
    return vm(rendered["configs"][0]["config"])["settings"]


def playbook_runs(rendered: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(machine["name"], provision) for machine in machines(rendered) for provision in machine["provisions"]
            if provision.get("type") in ("ansible", "ansible_local")]


@pytest.fixture(scope="session")
def ruby(tool: Callable[[str], str]) -> Callable[[str], str]:
    tool("ruby")  # skips every test that renders, naming the missing tool
    return tool


def lone_copy(tmp_path: Path, topology_edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The Vagrantfile and the files it reads in a checkout of their own: no .venv, so no
    ansible-playbook beside it; TOPOLOGY_EDIT changes its topology."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "inventory" / "group_vars", copy / "inventory" / "group_vars")
    shutil.copy(VAGRANTFILE, copy / "Vagrantfile")
    if topology_edit:
        path = copy / "inventory" / "group_vars" / "all" / "topology.yml"
        data = yaml.safe_load(path.read_text())
        topology_edit(data["podpath_topology"])
        path.write_text(yaml.safe_dump(data))
    return copy / "Vagrantfile"


def path_without_ansible() -> str:
    return os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "ansible-playbook").exists())


# ----- boxes per provider and architecture -------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("arch", ARCHES)
def test_every_machine_boots_the_pinned_box_of_its_provider_and_architecture(
        ruby: Callable[[str], str], tmp_path: Path, versions: dict[str, Any], provider: str, arch: str) -> None:
    rendered = render(ruby, tmp_path, "up", f"--provider={provider}", PODPATH_ARCH=arch,
                      FAKE_VBOX="7.2.4r170995")
    pin = versions["boxes"][provider][arch]
    expected_url = (ROOT / "build" / "boxes" / build.catalog_name(pin["name"])).as_uri()
    for machine in machines(rendered):
        box = machine["providers"][provider]["override"]
        assert box["box"] == pin["name"] and arch in pin["name"], machine["name"]
        assert box["box_version"] == versions["boxes"]["version"]
        assert box["box_url"] == expected_url, "the catalog boxes/build.py writes for this box"
        assert box["box_architecture"] == arch
    assert root_vm(rendered)["box_check_update"] is False


def test_box_catalog_can_come_from_an_instructors_server(ruby: Callable[[str], str], tmp_path: Path,
                                                         versions: dict[str, Any]) -> None:
    rendered = render(ruby, tmp_path, PODPATH_BOX_URL="https://lab.example.org/boxes/", PODPATH_ARCH="arm64")
    name = versions["boxes"]["virtualbox"]["arm64"]["name"]
    assert root_vm(rendered)["box_url"] == f"https://lab.example.org/boxes/{build.catalog_name(name)}"


def test_box_architecture_is_set_only_for_vagrant_that_knows_it(ruby: Callable[[str], str], tmp_path: Path) -> None:
    # config.vm.box_architecture exists from Vagrant 2.4.0; older Vagrant rejects unknown settings.
    old = render(ruby, tmp_path, "up", "--provider=libvirt", PODPATH_TEST_VAGRANT_VERSION="2.3.4",
                 PODPATH_ALLOW_OLD_VAGRANT="1")
    assert "box_architecture" not in root_vm(old)
    assert root_vm(render(ruby, tmp_path))["box_architecture"] in ARCHES


def test_an_unknown_architecture_is_refused_with_the_fix(ruby: Callable[[str], str], tmp_path: Path) -> None:
    error = render(ruby, tmp_path, PODPATH_ARCH="ppc64le")["error"]
    assert '"ppc64le"' in error and "PODPATH_ARCH=amd64 or arm64" in error


@pytest.mark.parametrize("arch", ARCHES)
def test_arm64_machines_get_what_arm64_guests_need(ruby: Callable[[str], str], tmp_path: Path, arch: str) -> None:
    for machine in machines(render(ruby, tmp_path, PODPATH_ARCH=arch)):
        libvirt = machine["providers"]["libvirt"]["settings"]
        virtualbox = machine["providers"]["virtualbox"]["settings"]
        if arch == "arm64":
            assert libvirt["machine_type"] == "virt" and libvirt["machine_arch"] == "aarch64"
            assert libvirt["loader"].endswith(".fd") and machine["name"] in libvirt["nvram"]
            assert virtualbox["default_nic_type"] == "virtio"
        else:
            assert not {"machine_type", "machine_arch", "loader", "nvram"} & set(libvirt)
            assert "default_nic_type" not in virtualbox


# ----- Vagrant and VirtualBox versions -----------------------------------------------------

def test_vagrant_older_than_the_minimum_is_refused_with_where_to_get_it(
        ruby: Callable[[str], str], tmp_path: Path, versions: dict[str, Any]) -> None:
    minimum = versions["vagrant"]["minimum"]
    error = render(ruby, tmp_path, PODPATH_TEST_VAGRANT_VERSION="2.3.7")["error"]
    assert f"Vagrant 2.3.7 is too old" in error and f"{minimum} or later" in error
    assert versions["vagrant"]["install_url"] in error and "Debian and Ubuntu are 2.3.x" in error
    assert render(ruby, tmp_path, PODPATH_TEST_VAGRANT_VERSION=minimum)["requirements"] == [f">= {minimum}"]


@pytest.mark.parametrize(("virtualbox", "vagrant", "arch", "refused"), [
    ("7.2.4r170995", "2.4.9", "amd64", None),
    ("7.2.4r170995", "2.4.8", "amd64", "VirtualBox 7.2.4 needs Vagrant 2.4.9"),
    ("7.1.12r169651", "2.4.1", "amd64", "VirtualBox 7.1.12 needs Vagrant 2.4.2"),
    ("7.0.20r163906", "2.4.9", "arm64", "VirtualBox 7.0.20 cannot run the arm64 VMs"),
    ("7.1.12r169651", "2.4.9", "arm64", None),
])
def test_virtualbox_version_is_checked_before_vagrant_up(ruby: Callable[[str], str], tmp_path: Path, virtualbox: str,
                                                        vagrant: str, arch: str, refused: str | None) -> None:
    # The Vagrant minimum is waived here so that the VirtualBox check itself is what refuses.
    rendered = render(ruby, tmp_path, "up", "--provider=virtualbox", FAKE_VBOX=virtualbox, PODPATH_ARCH=arch,
                      PODPATH_TEST_VAGRANT_VERSION=vagrant, PODPATH_ALLOW_OLD_VAGRANT="1")
    if refused:
        assert refused in rendered["error"]
        assert "developer.hashicorp.com" in rendered["error"] or "virtualbox.org" in rendered["error"]
    else:
        assert "error" not in rendered, rendered.get("error")
    assert (tmp_path / "vbox-bin" / "calls.log").read_text().split("\n")[:-1] == ["--version"]


def test_a_virtualbox_newer_than_known_gets_a_warning(ruby: Callable[[str], str], tmp_path: Path) -> None:
    rendered = render(ruby, tmp_path, "up", "--provider=virtualbox", FAKE_VBOX="7.3.0r171000")
    assert "error" not in rendered
    assert "VirtualBox 7.3.0 is newer than" in rendered["stderr"] and "install the newest Vagrant" in rendered["stderr"]


def test_virtualbox_is_not_asked_when_libvirt_is_used(ruby: Callable[[str], str], tmp_path: Path) -> None:
    render(ruby, tmp_path, "up", "--provider", "libvirt", FAKE_VBOX="7.2.4r170995", PODPATH_TEST_VAGRANT_VERSION="2.4.9")
    render(ruby, tmp_path, "status", VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert not (tmp_path / "vbox-bin" / "calls.log").exists()


# ----- provisioning order ------------------------------------------------------------------

@pytest.mark.parametrize("provisioner", ["ansible", "ansible_local"])
def test_one_playbook_run_on_the_last_machine_after_sequential_boot(
        ruby: Callable[[str], str], tmp_path: Path, topology: dict[str, Any], provisioner: str) -> None:
    rendered = render(ruby, tmp_path, PODPATH_PROVISIONER=provisioner)
    # Vagrant reads VAGRANT_NO_PARALLEL when it starts the batch of machines, after this file.
    assert rendered["env"]["VAGRANT_NO_PARALLEL"] == "1"
    order = [machine["name"] for machine in machines(rendered)]
    control_plane = next(node["name"] for node in topology["nodes"] if node["role"] == "control-plane")
    assert sorted(order) == sorted(node["name"] for node in topology["nodes"])
    assert order[-1] == control_plane, "the provisioning node boots last"
    runs = playbook_runs(rendered)
    assert len(runs) == 1 and runs[0][0] == control_plane and runs[0][1]["type"] == provisioner
    assert runs[0][1]["settings"]["limit"] == "all"
    last = machines(rendered)[-1]
    guard = [t for t in last["triggers"] if t["name"] == "podpath provisioning order"]
    assert guard and guard[0]["when"] == "before" and guard[0]["on"] == [":up", ":provision", ":reload"]
    assert not any(t["name"] == "podpath provisioning order" for m in machines(rendered)[:-1] for t in m["triggers"])


GUARD = """
State = Struct.new(:id)
Box = Struct.new(:name, :provider_name, :id, :state_id) do
  def state = State.new(state_id)
end
class Env
  def initialize(states) = @states = states
  def machine(name, provider) = Box.new(name, provider, "x", @states.fetch(name.to_s))
end
ARGV.replace(%w[{argv}])
podpath_check_others_running(Env.new({states}), Box.new(:cp1, :libvirt, {id}, :not_created))
"""


@pytest.mark.parametrize(("argv", "states", "created", "refused"), [
    ("up", {"worker1": "running", "worker2": "running"}, False, False),
    ("up", {"worker1": "running", "worker2": "poweroff"}, False, True),
    ("up", {"worker1": "not_created", "worker2": "not_created"}, False, True),
    ("up --no-provision", {"worker1": "poweroff", "worker2": "poweroff"}, False, False),
    ("up", {"worker1": "poweroff", "worker2": "poweroff"}, True, False),   # no provisioning on a later up
    ("provision", {"worker1": "running", "worker2": "shutoff"}, True, True),
    ("reload --provision", {"worker1": "shutoff", "worker2": "running"}, True, True),
])
def test_provisioning_waits_for_every_machine(ruby: Callable[[str], str], tmp_path: Path, topology: dict[str, Any],
                                              argv: str, states: dict[str, str], created: bool, refused: bool) -> None:
    if [n["name"] for n in topology["nodes"]] != ["cp1", "worker1", "worker2"]:
        pytest.skip("the stand-in machines are named after the default topology")
    ruby_states = "{" + ", ".join(f'"{name}" => :{state}' for name, state in states.items()) + "}"
    rendered = render(ruby, tmp_path, evaluate=GUARD.format(argv=argv, states=ruby_states,
                                                            id='"id"' if created else "nil"))
    if refused:
        down = [name for name, state in states.items() if state != "running"]
        assert all(name in rendered["error"] for name in down) and "vagrant up" in rendered["error"]
    else:
        assert rendered == {"value": None, "stderr": rendered["stderr"]}


# ----- the two provisioners ----------------------------------------------------------------

def test_without_ansible_on_the_host_cp1_runs_the_playbook(ruby: Callable[[str], str], tmp_path: Path) -> None:
    rendered = render(ruby, tmp_path, vagrantfile=lone_copy(tmp_path), PATH=path_without_ansible())
    ((_, run),) = playbook_runs(rendered)
    assert run["type"] == "ansible_local"


def test_with_the_projects_ansible_the_host_runs_the_playbook(ruby: Callable[[str], str], tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "ansible-playbook").exists():
        pytest.skip("no .venv/bin/ansible-playbook in this checkout (make venv)")
    ((_, run),) = playbook_runs(render(ruby, tmp_path, PATH=path_without_ansible()))
    assert run["type"] == "ansible"
    assert run["settings"]["playbook_command"] == str(ROOT / ".venv" / "bin" / "ansible-playbook")


def test_an_unknown_provisioner_is_refused_with_the_choices(ruby: Callable[[str], str], tmp_path: Path) -> None:
    error = render(ruby, tmp_path, PODPATH_PROVISIONER="ansible-local")["error"]
    assert '"ansible-local"' in error and "ansible_local" in error and "leave it unset" in error


def test_both_provisioners_run_the_same_playbook_with_the_same_groups(
        ruby: Callable[[str], str], tmp_path: Path, topology: dict[str, Any]) -> None:
    ((_, host),) = playbook_runs(render(ruby, tmp_path, PODPATH_PROVISIONER="ansible"))
    ((_, guest),) = playbook_runs(render(ruby, tmp_path, PODPATH_PROVISIONER="ansible_local"))
    for key in ("playbook", "config_file", "limit", "groups", "compatibility_mode"):
        assert host["settings"][key] == guest["settings"][key], key
    assert (ROOT / host["settings"]["playbook"]).is_file()
    roles = {"control-plane": "control_plane", "worker": "workers"}
    for role, group in roles.items():
        assert host["settings"]["groups"][group] == [n["name"] for n in topology["nodes"] if n["role"] == role]
    assert host["settings"]["groups"]["cluster:children"] == list(roles.values())


def test_ansible_local_installs_the_pinned_ansible_and_reaches_the_other_machines(
        ruby: Callable[[str], str], tmp_path: Path, topology: dict[str, Any], versions: dict[str, Any]) -> None:
    rendered = render(ruby, tmp_path, PODPATH_PROVISIONER="ansible_local")
    *others, last = machines(rendered)
    pinned = versions["vagrant"]["ansible_local"]
    names = [p["name"] for p in last["provisions"]]
    assert names[0] == "podpath-clear" and names[-2:] == ["podpath-ansible", "podpath"], names
    prepare = next(p for p in last["provisions"] if p["name"] == "podpath-ansible")
    assert prepare["type"] == "shell" and prepare["privileged"] is True
    assert prepare["args"][0] == pinned["venv"] and prepare["args"][4:] == pinned["requirements"]
    assert "python3 -m venv" in prepare["inline"] and "pip\" install" in prepare["inline"]
    run = last["provisions"][-1]["settings"]
    assert run["install"] is False, "Vagrant's pip install mode runs a system-wide pip, which Debian 13 refuses"
    assert run["playbook_command"] == f"{pinned['venv']}/bin/ansible-playbook"
    key_in_vm = prepare["args"][1]
    ips = {node["name"]: node["ip"] for node in topology["nodes"]}
    assert set(run["host_vars"]) == {m["name"] for m in others}
    for name, host_vars in run["host_vars"].items():
        assert host_vars == {"ansible_host": ips[name], "ansible_user": "vagrant",
                             "ansible_ssh_private_key_file": key_in_vm}
    # The lab's key: private on this machine (0600), public on every other machine.
    key = tmp_path / "dotvagrant" / "podpath" / "ansible_local_key"
    assert key.stat().st_mode & 0o777 == 0o600
    public = (tmp_path / "dotvagrant" / "podpath" / "ansible_local_key.pub").read_text().strip()
    upload = next(p for p in last["provisions"] if p["name"] == "podpath-key")
    assert upload["source"] == str(key) and upload["destination"] == key_in_vm
    for machine in others:
        (authorize,) = [p for p in machine["provisions"] if p["name"] == "podpath-authorize"]
        assert authorize["args"] == [public] and authorize["privileged"] is False
    keygen = shutil.which("ssh-keygen")
    if keygen:
        derived = subprocess.run([keygen, "-y", "-f", str(key)], capture_output=True, text=True, check=True).stdout
        assert derived.split()[:2] == public.split()[:2], "the .pub must be the private key's public half"


def test_ansible_local_copies_everything_ansible_cfg_points_at(ruby: Callable[[str], str], tmp_path: Path) -> None:
    last = machines(render(ruby, tmp_path, PODPATH_PROVISIONER="ansible_local"))[-1]
    copied = {Path(p["source"]).relative_to(ROOT).as_posix() for p in last["provisions"]
              if p.get("type") == "file" and p["name"].startswith("podpath-copy-")}
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    needed = {"ansible.cfg", "playbooks", "inventory"}
    for key, value in cfg["defaults"].items():
        if key in ("library", "module_utils", "roles_path") or key.endswith("_plugins"):
            needed |= {part.split("/")[0] for part in value.split(":")}
    assert needed <= copied, f"copy these into the VM too: {sorted(needed - copied)}"
    assert all((ROOT / path).exists() for path in copied)


def test_the_in_vm_ansible_is_inside_pyprojects_range(versions: dict[str, Any]) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    allowed = SpecifierSet(re.search(r'"ansible(>=[^"]+)"', pyproject).group(1))
    (requirement,) = [r for r in versions["vagrant"]["ansible_local"]["requirements"] if r.startswith("ansible==")]
    assert requirement.split("==")[1] in allowed, f"{requirement} is outside pyproject.toml's ansible{allowed}"


# ----- machines ----------------------------------------------------------------------------

def test_cpus_and_memory_come_from_the_topology(ruby: Callable[[str], str], tmp_path: Path,
                                               topology: dict[str, Any]) -> None:
    sizes = {node["name"]: (node["cpus"], node["memory_mb"]) for node in topology["nodes"]}
    for machine in machines(render(ruby, tmp_path)):
        for provider in PROVIDERS:
            settings = machine["providers"][provider]["settings"]
            assert (settings["cpus"], settings["memory"]) == sizes[machine["name"]], (machine["name"], provider)
    for node in topology["nodes"]:
        if node["role"] == "control-plane":
            assert node["cpus"] >= KUBEADM_MIN_CPUS and node["memory_mb"] >= KUBEADM_MIN_MEMORY_MB, node["name"]


def test_a_node_without_a_size_is_refused(ruby: Callable[[str], str], tmp_path: Path) -> None:
    vagrantfile = lone_copy(tmp_path, lambda topo: topo["nodes"][1].pop("memory_mb"))
    error = render(ruby, tmp_path, vagrantfile=vagrantfile)["error"]
    assert "has no memory_mb in topology.yml" in error


def test_host_only_nic_is_promiscuous_for_metallb(ruby: Callable[[str], str], tmp_path: Path) -> None:
    for machine in machines(render(ruby, tmp_path)):
        customize = [c["args"][0] for c in machine["providers"]["virtualbox"]["calls"] if c["method"] == "customize"]
        assert ["modifyvm", ":id", "--nicpromisc2", "allow-all"] in customize


def test_vagrantfile_repeats_no_address_size_or_version(topology: dict[str, Any], versions: dict[str, Any]) -> None:
    text = VAGRANTFILE.read_text()
    boxes = versions["boxes"]
    repeated = [node["ip"] for node in topology["nodes"] if node["ip"] in text]
    repeated += [value for value in (boxes["version"], boxes["debian_build"], versions["vagrant"]["minimum"],
                                     *versions["vagrant"]["virtualbox_needs"].values(),
                                     *versions["vagrant"]["ansible_local"]["requirements"]) if value in text]
    # a memory size written where a provider's memory is set (an RSA key's 3072 bits is not one)
    repeated += [str(size) for node in topology["nodes"] for size in (node["memory_mb"],)
                 if re.search(rf"memory\w*\s*=\s*{size}\b", text)]
    assert not repeated, f"read these from the topology and versions files instead: {repeated}"


# ----- the real Vagrant ----------------------------------------------------------------------

def vagrant_validate(vagrant: str, tmp_path: Path, provider: str | None, *args: str, path_prefix: str = "",
                     **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, VAGRANT_DOTFILE_PATH=str(tmp_path / "dotvagrant"), VAGRANT_NO_COLOR="1",
                VAGRANT_CHECKPOINT_DISABLE="1", **env)
    if path_prefix:
        full["PATH"] = path_prefix + os.pathsep + full["PATH"]
    if provider:
        full["VAGRANT_DEFAULT_PROVIDER"] = provider
    return subprocess.run([vagrant, "validate", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=120, check=False)


def installed_vagrant(vagrant: str) -> str:
    out = subprocess.run([vagrant, "--version"], capture_output=True, text=True, timeout=60, check=True).stdout
    return re.search(r"(\d+\.\d+\.\d+)", out).group(1)


def older(version: str, than: str) -> bool:
    return tuple(map(int, version.split("."))) < tuple(map(int, than.split(".")))


def test_real_vagrant_enforces_the_minimum(tool: Callable[[str], str], tmp_path: Path,
                                           versions: dict[str, Any]) -> None:
    vagrant = tool("vagrant")
    result = vagrant_validate(vagrant, tmp_path, None, "--ignore-provider")
    if older(installed_vagrant(vagrant), versions["vagrant"]["minimum"]):
        assert result.returncode != 0
        assert "is too old" in result.stderr + result.stdout and versions["vagrant"]["install_url"] in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr


# Below, PODPATH_ALLOW_OLD_VAGRANT=1 lets an older Vagrant (Debian 12's 2.3.4 here) check the
# rest of the file: unknown settings, provider options, provisioner options.
OLD_OK = {"PODPATH_ALLOW_OLD_VAGRANT": "1"}


@pytest.mark.parametrize("provisioner", ["ansible", "ansible_local"])
def test_real_vagrant_validates_without_provider_settings(tool: Callable[[str], str], tmp_path: Path,
                                                         provisioner: str) -> None:
    result = vagrant_validate(tool("vagrant"), tmp_path, None, "--ignore-provider", PODPATH_PROVISIONER=provisioner,
                              **OLD_OK)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("arch", ARCHES)
def test_real_vagrant_validates_libvirt_settings(tool: Callable[[str], str], tmp_path: Path, arch: str) -> None:
    vagrant = tool("vagrant")
    plugins = subprocess.run([vagrant, "plugin", "list"], capture_output=True, text=True, timeout=60, check=False)
    if "vagrant-libvirt" not in plugins.stdout:
        pytest.skip("vagrant-libvirt is not installed here (Debian package vagrant-libvirt)")
    result = vagrant_validate(vagrant, tmp_path, "libvirt", PODPATH_ARCH=arch, **OLD_OK)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("arch", ARCHES)
def test_real_vagrant_validates_virtualbox_settings(tool: Callable[[str], str], tmp_path: Path, arch: str) -> None:
    vagrant = tool("vagrant")
    if shutil.which("VBoxManage"):
        result = vagrant_validate(vagrant, tmp_path, "virtualbox", PODPATH_ARCH=arch, **OLD_OK)
        assert result.returncode == 0, result.stdout + result.stderr
        return
    stand_in = vboxmanage_dir(tmp_path)
    # 7.1: the oldest VirtualBox that runs arm64 VMs; 7.0 is the newest Debian 12's Vagrant knows.
    version = "7.1.12r169651" if arch == "arm64" and not older(installed_vagrant(vagrant), "2.4.2") else "7.0.20r163906"
    result = vagrant_validate(vagrant, tmp_path, "virtualbox", path_prefix=str(stand_in), FAKE_VBOX=version,
                              PODPATH_ARCH=arch, **OLD_OK)
    if arch == "arm64" and version.startswith("7.0"):
        assert result.returncode != 0 and "cannot run the arm64 VMs" in result.stderr
    else:
        assert result.returncode == 0, result.stdout + result.stderr
    calls_made = set((stand_in / "calls.log").read_text().split("\n")) - {""}
    assert calls_made == {"--version"}, f"VirtualBox was asked for more than its version: {calls_made}"


def test_real_vagrant_refuses_virtualbox_it_does_not_know(tool: Callable[[str], str], tmp_path: Path,
                                                         versions: dict[str, Any]) -> None:
    vagrant = tool("vagrant")
    newest = max(versions["vagrant"]["virtualbox_needs"].items(), key=lambda item: tuple(map(int, item[0].split("."))))
    if not older(installed_vagrant(vagrant), newest[1]):
        pytest.skip(f"this Vagrant supports VirtualBox {newest[0]}")
    result = vagrant_validate(vagrant, tmp_path, "virtualbox", path_prefix=str(vboxmanage_dir(tmp_path)),
                              FAKE_VBOX=f"{newest[0]}.4r170995", **OLD_OK)
    assert result.returncode != 0
    assert f"VirtualBox {newest[0]}.4 needs Vagrant {newest[1]}" in result.stderr


def test_every_docs_entry_the_vagrantfile_names_exists() -> None:
    headings = {line.lstrip("#").strip() for line in (ROOT / "docs" / "cluster.md").read_text().splitlines()
                if line.startswith("#")}
    named = set(re.findall(r'docs/cluster\.md, \\?"([^"\\]+)\\?"', VAGRANTFILE.read_text()))
    assert named, "the Vagrantfile's messages point at docs/cluster.md"
    assert named <= headings, f"no such heading in docs/cluster.md: {sorted(named - headings)}"


def test_the_provisioning_scripts_are_valid_and_authorizing_twice_adds_the_key_once(
        ruby: Callable[[str], str], tmp_path: Path) -> None:
    rendered = render(ruby, tmp_path, PODPATH_PROVISIONER="ansible_local")
    scripts = {p["name"]: p for m in machines(rendered) for p in m["provisions"] if p.get("type") == "shell"}
    assert {"podpath-clear", "podpath-ansible", "podpath-authorize"} <= set(scripts)
    bash = shutil.which("bash") or pytest.skip("bash is not installed here")
    for name, script in scripts.items():
        checked = subprocess.run([bash, "-n"], input=script["inline"], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{name}: {checked.stderr}"
    # Vagrant runs an inline script as `bash -l <script> ARGS...` over SSH as the vagrant user.
    authorize = scripts["podpath-authorize"]
    home = tmp_path / "home"
    home.mkdir()
    for _ in range(2):
        subprocess.run([bash, "-c", authorize["inline"], "podpath-authorize", *authorize["args"]],
                       env={"HOME": str(home), "PATH": os.environ["PATH"]}, check=True)
    keys = (home / ".ssh" / "authorized_keys").read_text().splitlines()
    assert keys == authorize["args"]
    assert (home / ".ssh").stat().st_mode & 0o777 == 0o700
    assert (home / ".ssh" / "authorized_keys").stat().st_mode & 0o777 == 0o600


def test_a_provider_without_boxes_is_refused(ruby: Callable[[str], str], tmp_path: Path) -> None:
    error = render(ruby, tmp_path, "up", "--provider=vmware_desktop")["error"]
    assert '"vmware_desktop"' in error and "virtualbox and libvirt only" in error


BOX_SOURCE = """
Boxes = Struct.new(:installed) do
  def find(name, provider, version) = installed ? [name, provider, version] : nil
end
Env = Struct.new(:boxes)
Box = Struct.new(:name, :provider_name, :id)
podpath_check_box_source(Env.new(Boxes.new({installed})), Box.new(:worker1, :{provider}, {id}))
"""


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_missing_box_says_how_to_get_it(ruby: Callable[[str], str], tmp_path: Path, versions: dict[str, Any],
                                          provider: str) -> None:
    vagrantfile = lone_copy(tmp_path)   # a checkout without build/boxes/

    def check(installed: bool, created: bool) -> dict[str, Any]:
        return render(ruby, tmp_path, vagrantfile=vagrantfile, PODPATH_ARCH="amd64", evaluate=BOX_SOURCE.format(
            installed=str(installed).lower(), provider=provider, id='"id"' if created else "nil"))

    error = check(installed=False, created=False)["error"]
    assert versions["boxes"][provider]["amd64"]["name"] in error and "make boxes" in error
    assert "PODPATH_BOX_URL" in error
    assert check(installed=True, created=False)["value"] is None, "an installed box needs no catalog"
    assert check(installed=False, created=True)["value"] is None, "a created machine needs no box"
    catalog = vagrantfile.parent / "build" / "boxes" / build.catalog_name(versions["boxes"][provider]["amd64"]["name"])
    catalog.parent.mkdir(parents=True)
    catalog.write_text("{}")
    assert check(installed=False, created=False)["value"] is None, "Vagrant adds the box from the catalog"
