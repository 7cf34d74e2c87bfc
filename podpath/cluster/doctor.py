"""podpath cluster doctor: is this laptop ready for `vagrant up`?

Two halves. gather() runs the host's own tools (each with a timeout; a missing tool is a
fact, not an error) and keeps their raw output in a Facts record; it changes nothing on the
host. evaluate() turns Facts into one Finding per check with pure functions, which the unit
tests drive with recorded outputs of the real tools (tests/unit/recorded/cluster_doctor/).
Every finding says what to do and points at its entry in docs/cluster.md.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The checkout: the Vagrantfile and the files it reads live here.
ROOT = Path(__file__).resolve().parents[2]
VARS = ROOT / "inventory" / "group_vars" / "all"
DOCS = "docs/cluster.md"

PASS, INFO, WARN, FAIL = "PASS", "INFO", "WARN", "FAIL"
PROVIDERS = ("virtualbox", "libvirt")
TIMEOUT_S = 20

# VirtualBox 6.1.28 and later give host-only adapters only addresses in these ranges unless
# /etc/vbox/networks.conf lists others. Vagrant checks the same before VirtualBox does, on
# Linux, and on macOS only before VirtualBox 7.0; never on Windows.
NETWORKS_CONF = "/etc/vbox/networks.conf"
VIRTUALBOX_HOSTONLY_DEFAULT = (ipaddress.ip_network("192.168.56.0/21"),)
VIRTUALBOX_HOSTONLY_CHECKED_FROM = (6, 1, 28)
# Interfaces that a provider makes for its host-only networks (Linux names).
HOSTONLY_IFNAME = re.compile(r"^(vboxnet\d+|virbr\d+)$")
# What the laptop keeps for itself while the VMs run (its OS, a browser, an editor).
HOST_RESERVE_MB = 2048
# Disk: an estimate, not a measurement (the cluster has not been booted by the project yet):
# per VM its copy of the box's disk, Kubernetes' packages and the images it pulls; plus the
# box itself, once.
DISK_PER_NODE_GIB = 4
DISK_BOX_GIB = 2
# kubeadm's preflight refuses a control-plane node with less memory than this.
KUBEADM_CONTROL_PLANE_MIN_MB = 1700
INSTALL_VAGRANT = "https://developer.hashicorp.com/vagrant/install"
INSTALL_VIRTUALBOX = "https://www.virtualbox.org/wiki/Downloads"
INSTALL_ANSIBLE = "python3 -m venv .venv && .venv/bin/pip install -e '.[cluster]'"


@dataclass
class Finding:
    check: str
    status: str
    detail: str
    fix: str
    see: str = ""

    def __post_init__(self) -> None:
        self.see = self.see or f"{DOCS}#doctor-{self.check}"


@dataclass
class Needs:
    """What the lab asks of the laptop, read from the files the Vagrantfile reads."""

    node_network: ipaddress.IPv4Network
    client_ip: ipaddress.IPv4Address
    nodes: list[dict[str, Any]]
    vagrant_minimum: tuple[int, ...]
    # Vagrant refuses a VirtualBox minor it does not know: the first Vagrant that knows each
    # minor, and the first VirtualBox that runs on arm64 hosts (versions.yml, `vagrant:`)
    vagrant_for_virtualbox: dict[tuple[int, ...], tuple[int, ...]]
    virtualbox_arm64_minimum: tuple[int, ...]
    ansible_core_minimum: tuple[int, ...] | None
    vagrantfile_has_ansible_local: bool

    @property
    def memory_mb(self) -> int:
        return sum(node["memory_mb"] for node in self.nodes)

    @property
    def disk_gib(self) -> int:
        return DISK_PER_NODE_GIB * len(self.nodes) + DISK_BOX_GIB


@dataclass
class Facts:
    """Raw outputs of the host's tools; None where a tool or file is absent."""

    system: str                          # platform.system(): Linux, Darwin, Windows
    machine: str                         # platform.machine(): x86_64, arm64, aarch64, AMD64
    os_name: str = ""
    wsl: bool = False
    env: dict[str, str] = field(default_factory=dict)
    provider: str = "virtualbox"
    provider_reason: str = ""
    vagrant: str | None = None           # vagrant --version
    vagrant_plugins: str | None = None   # vagrant plugin list
    vboxmanage: str | None = None        # VBoxManage --version
    hostonlyifs: str | None = None       # VBoxManage list hostonlyifs
    virsh: str | None = None             # virsh --version
    virsh_uri: tuple[int | None, str] | None = None  # virsh -c qemu:///system uri: (rc, output)
    cpuinfo: str | None = None           # /proc/cpuinfo
    dev_kvm: bool = False
    kvm_modules: list[str] = field(default_factory=list)  # kvm* entries of /sys/module
    meminfo: str | None = None           # /proc/meminfo
    memsize: str | None = None           # macOS: sysctl -n hw.memsize
    hv_support: str | None = None        # macOS: sysctl -n kern.hv_support
    windows_info: str | None = None      # Windows: Get-ComputerInfo ... | ConvertTo-Json
    networks_conf: str | None = None     # /etc/vbox/networks.conf
    ip_addr: str | None = None           # Linux: ip -j addr
    ip_route: str | None = None          # Linux: ip -j route
    ifconfig: str | None = None          # macOS: ifconfig
    windows_addresses: str | None = None  # Windows: Get-NetIPAddress ... | ConvertTo-Json
    disks: list[dict[str, Any]] = field(default_factory=list)  # {label, path, free, device}
    ansible: tuple[str, str] | None = None  # (path of ansible-playbook, its --version output)


# ----- parsing: pure functions of the tools' outputs ---------------------------------------

def version_tuple(text: str) -> tuple[int, ...] | None:
    """The first dotted version in TEXT ("2.4.9", "7.1.4r165100") as numbers."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def dotted(version: tuple[int, ...] | None) -> str:
    return ".".join(map(str, version)) if version else "?"


def parse_vagrant_version(output: str) -> tuple[int, ...] | None:
    """`vagrant --version` prints "Vagrant 2.4.9" (a notice of a newer release may follow)."""
    match = re.search(r"^Vagrant (\d+\.\d+\.\d+)", output or "", re.MULTILINE)
    return version_tuple(match.group(1)) if match else None


def parse_vboxmanage_version(output: str) -> tuple[tuple[int, ...] | None, str]:
    """`VBoxManage --version` prints e.g. "7.1.4r165100" or a distribution build's "4.1.2_Ubuntur38459";
    a broken installation prints warnings first. Returns (version, the first warning or "")."""
    version = None
    for line in (output or "").splitlines():
        match = re.match(r"^(\d+\.\d+\.\d+)(?:_\w+?)?r\d+", line.strip())
        if match:
            version = version_tuple(match.group(1))
    warning = next((line.strip() for line in (output or "").splitlines() if line.strip().startswith("WARNING")), "")
    return version, warning


def parse_virsh_version(output: str) -> tuple[int, ...] | None:
    """`virsh --version` prints the libvirt version alone: "9.0.0"."""
    line = (output or "").strip().splitlines()[:1]
    return version_tuple(line[0]) if line and re.fullmatch(r"\d+\.\d+\.\d+", line[0].strip()) else None


def parse_vagrant_plugins(output: str) -> dict[str, str]:
    """`vagrant plugin list`: "vagrant-libvirt (0.11.2, global)" per plugin, detail lines
    ("  - Version Constraint: ...") below it, or "No plugins installed."."""
    plugins = {}
    for line in (output or "").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+) \(([^,)]+)(?:, \w+)?\)\s*$", line)
        if match:
            plugins[match.group(1)] = match.group(2)
    return plugins


def parse_cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU feature flags of /proc/cpuinfo ("flags" on x86, "Features" on arm64)."""
    flags: set[str] = set()
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def parse_meminfo(meminfo: str) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) of /proc/meminfo in MiB."""
    values = {}
    for line in (meminfo or "").splitlines():
        match = re.match(r"^(MemTotal|MemAvailable):\s+(\d+) kB", line)
        if match:
            values[match.group(1)] = int(match.group(2)) // 1024
    return values.get("MemTotal"), values.get("MemAvailable")


def parse_int(output: str | None) -> int | None:
    """A number printed alone, as `sysctl -n hw.memsize` (bytes) or `sysctl -n kern.hv_support` do."""
    text = (output or "").strip()
    return int(text) if text.isdigit() else None


def parse_windows_info(output: str | None) -> dict[str, Any]:
    """Get-ComputerInfo -Property CsTotalPhysicalMemory,HyperVisorPresent,
    HyperVRequirementVirtualizationFirmwareEnabled | ConvertTo-Json"""
    try:
        data = json.loads(output or "")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def parse_networks_conf(text: str | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The ranges VirtualBox allows for host-only adapters. Without the file, the default;
    with it, only what its lines starting with "*" list ("* 10.0.0.0/8 192.168.0.0/16")."""
    if text is None:
        return list(VIRTUALBOX_HOSTONLY_DEFAULT)
    ranges = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            ranges += [ipaddress.ip_network(entry, strict=False) for entry in line[1:].split()]
    return ranges


Address = tuple[str, ipaddress.IPv4Interface]
Route = tuple[str, ipaddress.IPv4Network]


def parse_ip_addr(output: str | None) -> list[Address]:
    """IPv4 addresses of `ip -j addr` as (interface, address/prefix)."""
    result = []
    for link in json.loads(output or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                result.append((link["ifname"], ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}")))
    return result


def parse_ip_route(output: str | None) -> list[Route]:
    """IPv4 routes of `ip -j route` as (device, destination), without the default route."""
    result = []
    for route in json.loads(output or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            network = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
            result.append((route.get("dev", ""), network))
    return result


def parse_ifconfig(output: str | None) -> list[Address]:
    """IPv4 addresses of macOS's `ifconfig`: "en0: flags=..." then "\tinet 192.168.1.5 netmask 0xffffff00 ..."
    (a point-to-point link: "inet 10.8.0.6 --> 10.8.0.5 netmask 0xffffffff")."""
    result, ifname = [], ""
    for line in (output or "").splitlines():
        header = re.match(r"^([\w.]+): flags=", line)
        if header:
            ifname = header.group(1)
            continue
        match = re.match(r"^\s+inet (\d+\.\d+\.\d+\.\d+)(?: --> \S+)? netmask 0x([0-9a-fA-F]{8})", line)
        if match and ifname:
            prefix = bin(int(match.group(2), 16)).count("1")
            result.append((ifname, ipaddress.ip_interface(f"{match.group(1)}/{prefix}")))
    return result


def parse_windows_addresses(output: str | None) -> list[Address]:
    """Get-NetIPAddress -AddressFamily IPv4 | Select-Object InterfaceAlias,IPAddress,PrefixLength
    | ConvertTo-Json: one object, or a list of them."""
    try:
        data = json.loads(output or "[]")
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    return [(item["InterfaceAlias"], ipaddress.ip_interface(f"{item['IPAddress']}/{item['PrefixLength']}"))
            for item in items if isinstance(item, dict) and item.get("IPAddress")]


def parse_hostonlyifs(output: str | None) -> list[Address]:
    """`VBoxManage list hostonlyifs`: blocks of "Name:", "IPAddress:", "NetworkMask:" lines."""
    result, name, ip = [], "", ""
    for line in (output or "").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Name":
            name, ip = value, ""
        elif key == "IPAddress":
            ip = value
        elif key == "NetworkMask" and name and ip:
            result.append((name, ipaddress.ip_interface(f"{ip}/{value}")))
    return result


def parse_ansible_version(output: str) -> tuple[int, ...] | None:
    """`ansible-playbook --version`: "ansible-playbook [core 2.19.14]" (or "ansible-playbook 2.9.27")."""
    match = re.search(r"^ansible-playbook (?:\[core )?(\d+\.\d+(?:\.\d+)?)", output or "", re.MULTILINE)
    return version_tuple(match.group(1)) if match else None


def is_wsl(proc_version: str | None) -> bool:
    """WSL's kernel names itself: "Linux version 5.15.153.1-microsoft-standard-WSL2 ..."."""
    return "microsoft" in (proc_version or "").lower()


# ----- what the lab needs ------------------------------------------------------------------

def load_needs(root: Path = ROOT) -> Needs:
    """The node network, the nodes' memory and the pinned minimum versions, from the files
    the Vagrantfile reads. Raises ValueError naming the file and key that is missing."""
    where = root / "inventory" / "group_vars" / "all"
    topology = yaml.safe_load((where / "topology.yml").read_text())["podpath_topology"]
    versions = yaml.safe_load((where / "versions.yml").read_text())["podpath_versions"]
    minimum = (versions.get("vagrant") or {}).get("minimum")
    if not minimum:
        raise ValueError(f"{where / 'versions.yml'} has no podpath_versions.vagrant.minimum: "
                         "add the oldest Vagrant the lab supports there")
    pyproject = (root / "pyproject.toml").read_text()
    core = re.search(r'"ansible-core>=([\d.]+)', pyproject)
    vagrantfile = root / "Vagrantfile"
    vagrant = versions["vagrant"]
    return Needs(
        node_network=ipaddress.ip_network(topology["node_network"]),
        client_ip=ipaddress.ip_address(topology["client"]["ip"]),
        nodes=topology["nodes"],  # the Vagrantfile refuses a node without cpus and memory_mb
        vagrant_minimum=version_tuple(str(minimum)) or (0,),
        vagrant_for_virtualbox={version_tuple(str(vbox)): version_tuple(str(need))
                                for vbox, need in vagrant["virtualbox_needs"].items()},
        virtualbox_arm64_minimum=version_tuple(str(vagrant["virtualbox_arm64_minimum"])),
        ansible_core_minimum=version_tuple(core.group(1)) if core else None,
        vagrantfile_has_ansible_local="ansible_local" in vagrantfile.read_text() if vagrantfile.exists() else False,
    )


# ----- the checks: Facts -> Finding --------------------------------------------------------

def check_host(facts: Facts) -> Finding:
    where = f"{facts.os_name or facts.system} on {facts.machine}, provider {facts.provider} ({facts.provider_reason})"
    if facts.wsl and facts.env.get("VAGRANT_WSL_ENABLE_WINDOWS_ACCESS") != "1":
        return Finding("host", WARN, f"{where}; WSL without VAGRANT_WSL_ENABLE_WINDOWS_ACCESS=1",
                       "in WSL, Vagrant drives Windows' VirtualBox only with: export VAGRANT_WSL_ENABLE_WINDOWS_ACCESS=1; "
                       'export PATH="$PATH:/mnt/c/Program Files/Oracle/VirtualBox"')
    return Finding("host", INFO, where, "to use the other provider: podpath cluster doctor --provider "
                   + ("libvirt" if facts.provider == "virtualbox" else "virtualbox"))


def check_vagrant(facts: Facts, needs: Needs) -> Finding:
    want = dotted(needs.vagrant_minimum)
    get = f"install Vagrant {want} or later from {INSTALL_VAGRANT} (Debian's and Ubuntu's own packages are older)"
    if facts.vagrant is None:
        return Finding("vagrant", FAIL, "vagrant is not installed (not on PATH)", get)
    have = parse_vagrant_version(facts.vagrant)
    if have is None:
        return Finding("vagrant", WARN, f"cannot read the version from `vagrant --version`: "
                       f"{facts.vagrant.strip()[:80]!r}", get)
    if have < needs.vagrant_minimum:
        return Finding("vagrant", FAIL, f"Vagrant {dotted(have)} is older than {want}, the oldest the lab supports",
                       get)
    return Finding("vagrant", PASS, f"Vagrant {dotted(have)} (the lab needs {want} or later)", "nothing to do")


def check_provider(facts: Facts, needs: Needs) -> Finding:
    if facts.provider == "libvirt":
        if facts.system != "Linux" or facts.wsl:
            return Finding("provider", FAIL, "the libvirt provider runs on Linux hosts only",
                           "use VirtualBox: podpath cluster doctor --provider virtualbox, then vagrant up")
        join = "sudo usermod -aG libvirt $USER, then log in again"
        if facts.virsh is None:
            return Finding("provider", FAIL, "virsh is not installed (libvirt's client)",
                           f"sudo apt install libvirt-daemon-system libvirt-clients qemu-kvm; {join}")
        version = dotted(parse_virsh_version(facts.virsh))
        rc, output = facts.virsh_uri or (None, "not asked")
        if rc != 0:
            said = "; ".join(line.strip() for line in output.splitlines() if line.strip()) or output
            return Finding("provider", FAIL, f"libvirt {version}: qemu:///system does not answer ({said})",
                           f"sudo systemctl enable --now libvirtd; {join}")
        return Finding("provider", PASS, f"libvirt {version}, qemu:///system answers", "nothing to do")
    if facts.vboxmanage is None:
        return Finding("provider", FAIL, "VBoxManage is not found: VirtualBox is not installed (or not on PATH)",
                       f"install VirtualBox 7.x from {INSTALL_VIRTUALBOX}"
                       + ("; or use libvirt: podpath cluster doctor --provider libvirt" if facts.system == "Linux" else ""))
    version, warning = parse_vboxmanage_version(facts.vboxmanage)
    if version is None or warning:
        return Finding("provider", FAIL, f"VirtualBox does not work: {warning or facts.vboxmanage.strip()[:120]}",
                       "reinstall VirtualBox; on Linux rebuild its kernel modules with sudo /sbin/vboxconfig "
                       "(with Secure Boot, the modules must be signed)")
    if facts.machine.lower() in ("arm64", "aarch64") and version[:2] < needs.virtualbox_arm64_minimum:
        return Finding("provider", FAIL, f"VirtualBox {dotted(version)} cannot run VMs on an arm64 host",
                       f"install VirtualBox {dotted(needs.virtualbox_arm64_minimum)} or later from {INSTALL_VIRTUALBOX}")
    return Finding("provider", PASS, f"VirtualBox {dotted(version)}", "nothing to do")


def check_provider_vagrant(facts: Facts, needs: Needs) -> Finding:
    check = "provider-vagrant"
    vagrant = parse_vagrant_version(facts.vagrant or "")
    if facts.provider == "libvirt":
        if facts.vagrant_plugins is None or vagrant is None:
            return Finding(check, INFO, "not checked: needs a working Vagrant (see the vagrant line)",
                           "fix the vagrant line, then run the doctor again")
        plugin = parse_vagrant_plugins(facts.vagrant_plugins).get("vagrant-libvirt")
        if plugin is None:
            return Finding(check, FAIL, "the vagrant-libvirt plugin is not installed",
                           "vagrant plugin install vagrant-libvirt (it builds against libvirt: see its install guide "
                           "for the -dev packages it needs)")
        return Finding(check, PASS, f"vagrant-libvirt {plugin} in Vagrant {dotted(vagrant)}", "nothing to do")
    vbox, _ = parse_vboxmanage_version(facts.vboxmanage or "")
    if vagrant is None or vbox is None:
        return Finding(check, INFO, "not checked: needs a working Vagrant and VirtualBox (see the lines above)",
                       "fix the vagrant and provider lines, then run the doctor again")
    minor = vbox[:2]
    need = needs.vagrant_for_virtualbox.get(minor)
    if need is None and minor > max(needs.vagrant_for_virtualbox):
        return Finding(check, WARN, f"VirtualBox {dotted(minor)} is newer than any VirtualBox podpath knows; "
                       f"Vagrant {dotted(vagrant)} may refuse it", "check Vagrant's CHANGELOG for a release that supports "
                       f"VirtualBox {dotted(minor)} and install it from {INSTALL_VAGRANT}, or install VirtualBox "
                       f"{dotted(max(needs.vagrant_for_virtualbox))}")
    if need is None:
        return Finding(check, WARN, f"VirtualBox {dotted(vbox)} is older than 7.0, which the lab is written for",
                       f"install VirtualBox 7.x from {INSTALL_VIRTUALBOX}")
    if vagrant < need:
        return Finding(check, FAIL, f"Vagrant {dotted(vagrant)} refuses VirtualBox {dotted(minor)} "
                       f"(Vagrant knows it from {dotted(need)} on)", f"install Vagrant {dotted(need)} or later from "
                       f"{INSTALL_VAGRANT}")
    return Finding(check, PASS, f"Vagrant {dotted(vagrant)} supports VirtualBox {dotted(minor)}", "nothing to do")


def check_virtualization(facts: Facts) -> Finding:
    check = "virtualization"
    firmware = "turn on VT-x / AMD-V (SVM) in the firmware (BIOS/UEFI) settings; in a VM, turn on nested virtualization"
    if facts.system == "Darwin":
        hv = parse_int(facts.hv_support)
        if hv == 1:
            return Finding(check, PASS, "kern.hv_support = 1 (Hypervisor.framework is available)", "nothing to do")
        if hv == 0:
            return Finding(check, FAIL, "kern.hv_support = 0: this Mac offers no hardware virtualization", firmware)
        return Finding(check, WARN, "could not read kern.hv_support", "check by hand: sysctl kern.hv_support")
    if facts.system == "Windows" or facts.wsl:   # from WSL, the VMs run on Windows' side
        info = parse_windows_info(facts.windows_info)
        if info.get("HyperVisorPresent"):
            return Finding(check, WARN, "a hypervisor (Hyper-V, WSL2 or Memory Integrity) is running: VirtualBox then "
                           "runs its VMs on top of it, slower, and some versions fail to start them",
                           "if `vagrant up` fails to start a VM or it crawls: turn off Hyper-V, Virtual Machine Platform "
                           "and Core isolation > Memory integrity, then reboot")
        enabled = info.get("HyperVRequirementVirtualizationFirmwareEnabled")
        if enabled is True:
            return Finding(check, PASS, "virtualization is enabled in the firmware", "nothing to do")
        if enabled is False:
            return Finding(check, FAIL, "virtualization is disabled in the firmware", firmware)
        return Finding(check, WARN, "could not read the firmware's virtualization setting",
                       "check Task Manager > Performance > CPU > Virtualization")
    flags = parse_cpu_flags(facts.cpuinfo or "") & {"vmx", "svm"}
    x86 = facts.machine.lower() in ("x86_64", "amd64", "i686")
    what = (", ".join(sorted(flags)) or "no vmx/svm flag") if x86 else f"{facts.machine} (no CPU flags to check)"
    if facts.provider == "libvirt":
        if not facts.dev_kvm:
            return Finding(check, FAIL, f"/dev/kvm is missing ({what} in /proc/cpuinfo)",
                           f"{firmware}; then sudo modprobe kvm_intel (or kvm_amd)")
        if x86 and not flags:
            return Finding(check, WARN, "/dev/kvm is there but the CPU shows no vmx/svm flag (a VM without nested "
                           "virtualization?): the VMs may fail to start or run very slowly", firmware)
        return Finding(check, PASS, f"/dev/kvm is there ({what})", "nothing to do")
    if x86 and not flags:
        return Finding(check, FAIL, "the CPU shows no vmx/svm flag in /proc/cpuinfo: VirtualBox cannot start "
                       "64-bit VMs", firmware)
    loaded = [name for name in facts.kvm_modules if name in ("kvm_intel", "kvm_amd")]
    if loaded:
        return Finding(check, WARN, f"{what}; KVM ({', '.join(loaded)}) is loaded: on Linux 6.12 and later it can hold "
                       "the CPU's virtualization and VirtualBox then refuses to start VMs "
                       "(VERR_VMX_IN_VMX_ROOT_MODE or VERR_SVM_IN_USE)",
                       f"if `vagrant up` shows that error: sudo modprobe -r {' '.join(loaded)} (until the next boot)")
    return Finding(check, PASS, what, "nothing to do")


def total_memory_mb(facts: Facts) -> tuple[int | None, int | None]:
    """(total, available now) in MiB; available only where the OS says it cheaply (Linux)."""
    if facts.system == "Darwin":
        size = parse_int(facts.memsize)
        return (size // 2**20 if size else None), None
    if facts.system == "Windows" or facts.wsl:   # WSL's /proc/meminfo is its own VM's, not the laptop's
        size = parse_windows_info(facts.windows_info).get("CsTotalPhysicalMemory")
        return (int(size) // 2**20 if size else None), None
    return parse_meminfo(facts.meminfo or "")


def check_memory(facts: Facts, needs: Needs) -> Finding:
    check = "memory"
    vms = needs.memory_mb
    want = vms + HOST_RESERVE_MB
    sizes = ", ".join(f"{node['name']} {node['memory_mb']}" for node in needs.nodes)
    total, available = total_memory_mb(facts)
    if total is None:
        return Finding(check, WARN, f"could not read the memory size; the lab needs {want} MiB ({sizes}, "
                       f"{HOST_RESERVE_MB} for the host)", "check by hand that the machine has that much")
    if total < want:
        return Finding(check, FAIL, f"{total} MiB of memory, the lab needs {want} MiB ({sizes} MiB for the VMs, "
                       f"{HOST_RESERVE_MB} for the host)", "use a machine with more memory, or lower the workers' memory_mb "
                       f"in inventory/group_vars/all/topology.yml (cp1 not below {KUBEADM_CONTROL_PLANE_MIN_MB}: kubeadm "
                       "refuses less)")
    if available is not None and available < vms:
        return Finding(check, WARN, f"{total} MiB of memory but only {available} MiB free now; the VMs take {vms} MiB",
                       "close programs before vagrant up, or the host will swap")
    return Finding(check, PASS, f"{total} MiB of memory, the lab needs {want} MiB ({vms} for the VMs)", "nothing to do")


def check_disk(facts: Facts, needs: Needs) -> Finding:
    check = "disk"
    if not facts.disks:
        return Finding(check, WARN, "could not read the free disk space",
                       f"check by hand: about {needs.disk_gib} GiB free")
    per_device: dict[Any, dict[str, Any]] = {}
    for disk in facts.disks:
        need = DISK_BOX_GIB if disk["label"] == "boxes" else DISK_PER_NODE_GIB * len(needs.nodes)
        entry = per_device.setdefault(disk["device"], {"free": disk["free"], "need": 0, "where": []})
        entry["need"] += need
        entry["where"].append(f"{disk['label']} in {disk['path']}")
    short = [e for e in per_device.values() if e["free"] < e["need"] * 2**30]
    describe = "; ".join(f"{e['free'] / 2**30:.0f} GiB free for {', '.join(e['where'])} (needs about {e['need']})"
                         for e in per_device.values())
    if short:
        return Finding(check, FAIL, describe, "free some space there, or move Vagrant's boxes (VAGRANT_HOME) and the "
                       "VMs' folder to a disk with room")
    return Finding(check, PASS, describe, "nothing to do")


def check_host_only_range(facts: Facts, needs: Needs) -> Finding:
    check = "host-only-range"
    if facts.provider != "virtualbox":
        return Finding(check, INFO, "libvirt does not restrict the host-only network's range", "nothing to do")
    version, _ = parse_vboxmanage_version(facts.vboxmanage or "")
    if facts.system == "Windows" or facts.wsl:
        return Finding(check, INFO, "VirtualBox on Windows does not restrict host-only ranges", "nothing to do")
    if facts.system == "Darwin" and version and version >= (7, 0):
        return Finding(check, INFO, "Vagrant does not check host-only ranges with VirtualBox 7 on macOS",
                       "nothing to do")
    if version and version < VIRTUALBOX_HOSTONLY_CHECKED_FROM:
        return Finding(check, INFO, f"VirtualBox {dotted(version)} does not restrict host-only ranges", "nothing to do")
    ranges = parse_networks_conf(facts.networks_conf)
    source = NETWORKS_CONF if facts.networks_conf is not None else f"VirtualBox's default (no {NETWORKS_CONF})"
    addresses = [needs.client_ip] + [ipaddress.ip_address(node["ip"]) for node in needs.nodes]
    outside = [str(ip) for ip in addresses if not any(ip in net for net in ranges if net.version == ip.version)]
    allowed = " ".join(map(str, ranges)) or "nothing"
    if outside:
        return Finding(check, FAIL, f"{', '.join(outside)} outside the allowed host-only ranges ({allowed}, from {source})",
                       f"allow the node network: echo '* {needs.node_network}' | sudo tee -a {NETWORKS_CONF} "
                       f"(create /etc/vbox first: sudo mkdir -p /etc/vbox)")
    return Finding(check, PASS, f"the node network {needs.node_network} is allowed ({allowed}, from {source})",
                   "nothing to do")


def clashes(needs: Needs, addresses: list[Address], routes: list[Route],
            hostonly: list[Address]) -> tuple[list[str], list[str]]:
    """What on the host collides with the lab's node network: (failures, warnings).

    An address inside the node network, or a route as specific as it or more, on an interface
    that is not a provider's host-only one, takes the lab's traffic away (a home or office
    LAN, a VPN, a container bridge). Broader routes (a VPN's 192.168.0.0/16) do not: the
    host-only network's own route is more specific and wins. The lab's own host-only
    interface (the client address on the node network) is not a clash; another host-only
    interface on that range (an old project's) is worth a warning."""
    net = needs.node_network
    hostonly_ips = {iface.ip for _, iface in hostonly}
    hostonly_names = {name for name, _ in hostonly}

    def is_hostonly(name: str, ip=None) -> bool:
        return bool(HOSTONLY_IFNAME.match(name)) or name in hostonly_names or (ip is not None and ip in hostonly_ips)

    failures, warnings, seen = [], [], set()
    for name, iface in addresses:
        inside = iface.ip in net or (iface.network.overlaps(net) and iface.network.prefixlen >= net.prefixlen)
        if iface.ip.is_loopback or not inside:
            continue
        seen.add((name, iface.network))
        if is_hostonly(name, iface.ip):
            if not (iface.ip == needs.client_ip and iface.network == net):
                warnings.append(f"host-only interface {name} has {iface}, on the node network {net}")
        else:
            failures.append(f"{name} has {iface}, on the lab's node network {net}")
    for dev, dst in routes:
        if (dev, dst) in seen or not dst.overlaps(net) or dst.prefixlen < net.prefixlen or is_hostonly(dev):
            continue
        failures.append(f"a route to {dst} via {dev or '?'} covers the lab's node network {net}")
    return failures, warnings


def check_address_clash(facts: Facts, needs: Needs) -> Finding:
    check = "address-clash"
    if facts.ip_addr is not None:
        addresses, routes, source = parse_ip_addr(facts.ip_addr), parse_ip_route(facts.ip_route), "addresses and routes"
    elif facts.ifconfig is not None:
        addresses, routes, source = parse_ifconfig(facts.ifconfig), [], "addresses (ifconfig; routes not read)"
    elif facts.windows_addresses is not None:
        addresses, routes, source = parse_windows_addresses(facts.windows_addresses), [], "addresses (routes not read)"
    else:
        return Finding(check, WARN, "could not read the host's addresses",
                       f"check by hand that no network of this machine overlaps {needs.node_network}")
    failures, warnings = clashes(needs, addresses, routes, parse_hostonlyifs(facts.hostonlyifs))
    if failures:
        return Finding(check, FAIL, "; ".join(failures), "leave that network (VPN, LAN) while the lab runs, or move the "
                       "lab: change node_network, the node and client addresses and the MetalLB pool in "
                       "inventory/group_vars/all/topology.yml")
    if warnings:
        return Finding(check, WARN, "; ".join(warnings), "if it belongs to an old project, remove it "
                       "(VirtualBox: File > Tools > Network Manager; libvirt: virsh net-list --all)")
    return Finding(check, PASS, f"no {source} of this host overlap the node network {needs.node_network}",
                   "nothing to do")


def check_ansible(facts: Facts, needs: Needs) -> Finding:
    check = "ansible"
    if facts.ansible is None:
        if needs.vagrantfile_has_ansible_local:
            return Finding(check, INFO, "no ansible-playbook on this host: Vagrant will provision from inside the "
                           "control-plane VM (ansible_local) instead", f"nothing to do; to provision from the host: "
                           f"{INSTALL_ANSIBLE}")
        return Finding(check, FAIL, "no ansible-playbook on this host, and the Vagrantfile provisions from the host",
                       INSTALL_ANSIBLE)
    path, output = facts.ansible
    have = parse_ansible_version(output)
    want = needs.ansible_core_minimum
    if have is None or (want and have < want):
        return Finding(check, WARN, f"{path} is ansible-core {dotted(have)}, the roles are tested with "
                       f"{dotted(want)} or later", INSTALL_ANSIBLE)
    return Finding(check, PASS, f"ansible-core {dotted(have)} ({path}): Vagrant provisions from this host",
                   "nothing to do")


def evaluate(facts: Facts, needs: Needs) -> list[Finding]:
    """One finding per check, in the order a student fixes them."""
    return [
        check_host(facts),
        check_vagrant(facts, needs),
        check_provider(facts, needs),
        check_provider_vagrant(facts, needs),
        check_virtualization(facts),
        check_memory(facts, needs),
        check_disk(facts, needs),
        check_host_only_range(facts, needs),
        check_address_clash(facts, needs),
        check_ansible(facts, needs),
    ]


# ----- gathering: the only part that runs anything -----------------------------------------

def run(argv: list[str], timeout: float = TIMEOUT_S, english: bool = False,
        cwd: Path | None = None) -> tuple[int | None, str] | None:
    """(exit code, stdout and stderr) of ARGV; None when the program is not there, exit code
    None when it did not finish within TIMEOUT. ENGLISH asks for untranslated output (as
    Vagrant does of VBoxManage); Ansible is left alone, as it refuses a locale without UTF-8."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C") if english else None, stdin=subprocess.DEVNULL,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        return None, f"{argv[0]} did not answer within {timeout:.0f} s"
    except OSError as exc:
        return None, f"{argv[0]} could not run: {exc}"
    return done.returncode, done.stdout + done.stderr


def _output(argv: list[str], english: bool = False) -> str | None:
    result = run(argv, english=english)
    return None if result is None else result[1]


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def find_vboxmanage(system: str, wsl: bool, env: dict[str, str]) -> str | None:
    """Where Vagrant would find VBoxManage: PATH, else the installer's variables (Windows),
    else Windows' default folder seen from WSL."""
    for name in ("VBoxManage", "vboxmanage", "VBoxManage.exe"):
        if shutil.which(name):
            return name
    folders = [env[key] for key in ("VBOX_MSI_INSTALL_PATH", "VBOX_INSTALL_PATH") if env.get(key)]
    if wsl:
        folders.append("/mnt/c/Program Files/Oracle/VirtualBox")
    for folder in folders:
        for name in ("VBoxManage.exe", "VBoxManage"):
            if Path(folder, name).is_file():
                return str(Path(folder, name))
    return None


def choose_provider(requested: str | None, env: dict[str, str], system: str, vboxmanage: str | None,
                    virsh: bool, dev_kvm: bool) -> tuple[str, str]:
    """The provider `vagrant up` would use, and why: the one asked for, VAGRANT_DEFAULT_PROVIDER,
    VirtualBox where it is installed, libvirt on a Linux host that has it or KVM, else VirtualBox."""
    if requested:
        return requested, "--provider"
    if env.get("VAGRANT_DEFAULT_PROVIDER") in PROVIDERS:
        return env["VAGRANT_DEFAULT_PROVIDER"], "VAGRANT_DEFAULT_PROVIDER"
    if vboxmanage:
        return "virtualbox", "VirtualBox is installed"
    if system == "Linux" and (virsh or dev_kvm):
        return "libvirt", "no VirtualBox, and this Linux host has " + ("libvirt" if virsh else "/dev/kvm")
    return "virtualbox", "the default"


def os_name(system: str) -> str:
    if system == "Linux":
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
        except OSError:
            return "Linux"
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}"
    if system == "Windows":
        return f"Windows {platform.release()}"
    return system


def disk_places(provider: str, env: dict[str, str], wsl: bool = False) -> list[tuple[str, Path]]:
    """Where the box and the VMs' disks go: VAGRANT_HOME (default ~/.vagrant.d) for the box;
    VirtualBox's default machine folder (from WSL: Windows' C: drive), or libvirt's default
    storage pool, for the VMs."""
    home = Path.home()
    boxes = Path(env.get("VAGRANT_HOME") or home / ".vagrant.d")
    if provider == "libvirt":
        vms = Path("/var/lib/libvirt/images")
    else:
        vms = Path("/mnt/c/Users") if wsl else home / "VirtualBox VMs"
    return [("boxes", boxes), ("VM disks", vms)]


def free_space(label: str, path: Path) -> dict[str, Any] | None:
    """Free bytes on the file system that holds PATH (or its nearest existing parent)."""
    where = path
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return {"label": label, "path": str(path), "free": shutil.disk_usage(where).free, "device": where.stat().st_dev}
    except OSError:
        return None


def find_ansible_playbook(root: Path = ROOT) -> str | None:
    """The ansible-playbook the Vagrantfile uses: the project's virtualenv's, else PATH's."""
    venv = root / ".venv" / "bin" / "ansible-playbook"
    if os.access(venv, os.X_OK):
        return str(venv)
    return shutil.which("ansible-playbook")


def gather(requested_provider: str | None = None, root: Path = ROOT) -> Facts:
    """Ask the host. Each tool runs with a timeout; nothing is changed."""
    system, env = platform.system(), dict(os.environ)
    proc_version = _read("/proc/version") if system == "Linux" else None
    wsl = is_wsl(proc_version)
    vboxmanage = find_vboxmanage(system, wsl, env)
    virsh = shutil.which("virsh")
    dev_kvm = Path("/dev/kvm").exists()
    provider, reason = choose_provider(requested_provider, env, system, vboxmanage, bool(virsh), dev_kvm)
    facts = Facts(system=system, machine=platform.machine(), os_name=os_name(system), wsl=wsl, env=env,
                  provider=provider, provider_reason=reason, dev_kvm=dev_kvm)
    facts.vagrant = _output(["vagrant", "--version"])
    if provider == "virtualbox" and vboxmanage:
        facts.vboxmanage = _output([vboxmanage, "--version"], english=True)
        facts.hostonlyifs = _output([vboxmanage, "list", "hostonlyifs"], english=True)
    if provider == "libvirt":
        if facts.vagrant is not None:
            facts.vagrant_plugins = _output(["vagrant", "plugin", "list"])
        if virsh:
            facts.virsh = _output([virsh, "--version"])
            facts.virsh_uri = run([virsh, "-c", "qemu:///system", "uri"])
    if system == "Windows" or wsl:   # from WSL, Windows answers through its interop (powershell.exe)
        powershell = ["powershell.exe" if wsl else "powershell", "-NoProfile", "-NonInteractive", "-Command"]
        facts.windows_info = _output(powershell + [
            "Get-ComputerInfo -Property CsTotalPhysicalMemory,HyperVisorPresent,"
            "HyperVRequirementVirtualizationFirmwareEnabled | ConvertTo-Json"])
        facts.windows_addresses = _output(powershell + [
            "Get-NetIPAddress -AddressFamily IPv4 | Select-Object InterfaceAlias,IPAddress,PrefixLength | ConvertTo-Json"])
    if system == "Linux":
        facts.cpuinfo = _read("/proc/cpuinfo")
        facts.meminfo = _read("/proc/meminfo")
        modules = Path("/sys/module")
        facts.kvm_modules = sorted(p.name for p in modules.glob("kvm*")) if modules.is_dir() else []
        facts.networks_conf = _read(NETWORKS_CONF)
        if not wsl:   # from WSL, the host-only network is on Windows' side: its addresses count
            facts.ip_addr = _output(["ip", "-j", "addr"])
            facts.ip_route = _output(["ip", "-j", "route"])
    elif system == "Darwin":
        facts.memsize = _output(["sysctl", "-n", "hw.memsize"])
        facts.hv_support = _output(["sysctl", "-n", "kern.hv_support"])
        facts.networks_conf = _read(NETWORKS_CONF)
        facts.ifconfig = _output(["ifconfig"])
    facts.disks = [d for d in (free_space(label, path) for label, path in disk_places(provider, env, wsl)) if d]
    playbook = find_ansible_playbook(root)
    if playbook:
        result = run([playbook, "--version"])
        facts.ansible = (playbook, result[1] if result else "")
    return facts


def as_json(findings: list[Finding], facts: Facts, needs: Needs) -> dict[str, Any]:
    return {
        "ok": not any(f.status == FAIL for f in findings),
        "provider": facts.provider,
        "needs": {"memory_mb": needs.memory_mb + HOST_RESERVE_MB, "disk_gib": needs.disk_gib,
                  "vagrant": dotted(needs.vagrant_minimum), "node_network": str(needs.node_network)},
        "findings": [dataclasses.asdict(f) for f in findings],
    }


def render(findings: list[Finding]) -> str:
    """One line per check; WARN and FAIL lines say what to do and where to read more."""
    lines = []
    for f in findings:
        line = f"{f.status:<4}  {f.check:<16}  {f.detail}"
        if f.status in (WARN, FAIL):
            line += f" -> {f.fix} (see {f.see})"
        lines.append(line)
    failed = sum(f.status == FAIL for f in findings)
    warned = sum(f.status == WARN for f in findings)
    if failed:
        lines.append(f"{failed} check(s) failed, {warned} warning(s): fix the FAIL lines before vagrant up")
    else:
        lines.append(f"ready for vagrant up ({warned} warning(s))")
    return "\n".join(lines)
