"""podpath cluster doctor: its parsers on recorded outputs of the real tools, its checks on
facts built from them, and one real run on this host (tests/unit/recorded/cluster_doctor/README.md
says which outputs were captured here and which follow upstream documentation)."""
from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from podpath.cluster import doctor
from podpath.cluster.doctor import FAIL, INFO, PASS, WARN, Facts, Needs

RECORDED = Path(__file__).parent / "recorded" / "cluster_doctor"
CHECKS = ["host", "vagrant", "provider", "provider-vagrant", "virtualization", "memory", "disk",
          "host-only-range", "address-clash", "ansible"]


def rec(name: str) -> str:
    return (RECORDED / name).read_text()


def needs(**changes) -> Needs:
    """A lab like the reference one; the minimum Vagrant here is the test's own, not the pin."""
    base = Needs(node_network=ipaddress.ip_network("192.168.56.0/24"), client_ip=ipaddress.ip_address("192.168.56.1"),
                 nodes=[{"name": n, "ip": f"192.168.56.{i}", "memory_mb": 2048} for n, i in
                        (("cp1", 10), ("worker1", 11), ("worker2", 12))],
                 vagrant_minimum=(2, 4, 9), ansible_core_minimum=(2, 18), vagrantfile_has_ansible_local=True,
                 vagrant_for_virtualbox={(7, 0): (2, 3, 2), (7, 1): (2, 4, 2), (7, 2): (2, 4, 9)},
                 virtualbox_arm64_minimum=(7, 1))
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def linux(**fields) -> Facts:
    return Facts(system="Linux", machine="x86_64", **fields)


# ----- parsers ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("vagrant-version_2.3.4_debian12.txt", (2, 3, 4)),
    ("vagrant-version_2.4.1_upstream.txt", (2, 4, 1)),
    ("vagrant-version_2.4.9_upstream.txt", (2, 4, 9)),
])
def test_vagrant_version(name, expected):
    assert doctor.parse_vagrant_version(rec(name)) == expected


@pytest.mark.parametrize("name, version, broken", [
    ("vboxmanage-version_7.1.4_upstream.txt", (7, 1, 4), False),
    ("vboxmanage-version_7.1.8_macos_upstream.txt", (7, 1, 8), False),
    ("vboxmanage-version_7.2.20_macos_upstream.txt", (7, 2, 20), False),
    ("vboxmanage-version_4.1.2_ubuntu-package_upstream.txt", (4, 1, 2), False),
    ("vboxmanage-version_6.0.12_linux-module-not-loaded_upstream.txt", (6, 0, 12), True),
])
def test_vboxmanage_version(name, version, broken):
    found, warning = doctor.parse_vboxmanage_version(rec(name))
    assert found == version
    assert bool(warning) is broken


def test_virsh_version():
    assert doctor.parse_virsh_version(rec("virsh-version_9.0.0_debian12.txt")) == (9, 0, 0)
    assert doctor.parse_virsh_version(rec("virsh-uri_9.0.0_debian12-no-daemon.txt")) is None


@pytest.mark.parametrize("name, expected", [
    ("vagrant-plugin-list_2.3.4_debian12.txt", {"vagrant-libvirt": "0.11.2"}),
    ("vagrant-plugin-list_global-with-constraint_upstream.txt", {"vagrant-libvirt": "0.12.2", "vagrant-vbguest": "0.32.0"}),
    ("vagrant-plugin-list_none_upstream.txt", {}),
])
def test_vagrant_plugins(name, expected):
    assert doctor.parse_vagrant_plugins(rec(name)) == expected


@pytest.mark.parametrize("name, present, absent", [
    ("proc-cpuinfo_debian12-amd-epyc-vm-no-svm.txt", {"hypervisor", "avx2"}, {"vmx", "svm"}),
    ("proc-cpuinfo_intel-laptop-vmx_upstream.txt", {"vmx", "ept"}, {"svm"}),
    ("proc-cpuinfo_arm64_upstream.txt", {"asimd"}, {"vmx", "svm"}),
])
def test_cpu_flags(name, present, absent):
    flags = doctor.parse_cpu_flags(rec(name))
    assert present <= flags and not absent & flags


def test_meminfo():
    assert doctor.parse_meminfo(rec("proc-meminfo_debian12.txt")) == (24684084 // 1024, 24263428 // 1024)


def test_macos_sysctl_and_windows_info():
    assert doctor.parse_int(rec("macos-sysctl-n-hw.memsize_16GiB_upstream.txt")) == 16 * 2**30
    assert doctor.parse_int(rec("macos-sysctl-n-kern.hv_support_upstream.txt")) == 1
    info = doctor.parse_windows_info(rec("windows-get-computerinfo_hyperv-on_upstream.json"))
    assert info["HyperVisorPresent"] is True and info["HyperVRequirementVirtualizationFirmwareEnabled"] is None


@pytest.mark.parametrize("name, expected", [
    (None, ["192.168.56.0/21"]),
    ("networks-conf_two-ranges_upstream.conf", ["10.0.0.0/8", "192.168.0.0/16", "2001::/64"]),
    ("networks-conf_any_upstream.conf", ["0.0.0.0/0", "::/0"]),
    ("networks-conf_other-range-only_upstream.conf", ["10.10.0.0/16"]),
])
def test_networks_conf(name, expected):
    assert [str(n) for n in doctor.parse_networks_conf(rec(name) if name else None)] == expected


def test_addresses_and_routes():
    assert ("eth0", ipaddress.ip_interface("192.0.2.2/24")) in doctor.parse_ip_addr(rec("ip-j-addr_iproute2-6.1_debian12.json"))
    assert doctor.parse_ip_route(rec("ip-j-route_iproute2-6.1_debian12.json")) == [("eth0", ipaddress.ip_network("192.0.2.0/24"))]
    assert doctor.parse_ifconfig(rec("macos-ifconfig_home-lan-on-192.168.56_upstream.txt")) == [
        ("lo0", ipaddress.ip_interface("127.0.0.1/8")), ("en0", ipaddress.ip_interface("192.168.56.23/24")),
        ("utun3", ipaddress.ip_interface("10.8.0.6/32"))]
    assert [name for name, _ in doctor.parse_windows_addresses(rec("windows-get-netipaddress_upstream.json"))] == [
        "Wi-Fi", "VirtualBox Host-Only Network", "Loopback Pseudo-Interface 1"]


@pytest.mark.parametrize("name, expected", [
    ("vboxmanage-list-hostonlyifs_linux_upstream.txt", [("vboxnet0", "192.168.56.1/24")]),
    ("vboxmanage-list-hostonlyifs_windows_upstream.txt", [("VirtualBox Host-Only Ethernet Adapter", "192.168.56.1/24"),
                                                          ("VirtualBox Host-Only Ethernet Adapter #2", "192.168.99.1/24")]),
])
def test_hostonlyifs(name, expected):
    assert [(n, str(i)) for n, i in doctor.parse_hostonlyifs(rec(name))] == expected


@pytest.mark.parametrize("name, expected", [
    ("ansible-playbook-version_core-2.19.14.txt", (2, 19, 14)),
    ("ansible-playbook-version_2.9.27_upstream.txt", (2, 9, 27)),
])
def test_ansible_version(name, expected):
    assert doctor.parse_ansible_version(rec(name)) == expected


def test_wsl():
    assert doctor.is_wsl(rec("proc-version_wsl2_upstream.txt"))
    assert not doctor.is_wsl(rec("proc-version_debian12.txt"))


# ----- checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("output, status", [
    (None, FAIL),
    (rec("vagrant-version_2.3.4_debian12.txt"), FAIL),
    (rec("vagrant-version_2.4.9_upstream.txt"), PASS),
])
def test_check_vagrant(output, status):
    finding = doctor.check_vagrant(linux(vagrant=output), needs())
    assert finding.status == status
    if status == FAIL:
        assert "2.4.9" in finding.fix and doctor.INSTALL_VAGRANT in finding.fix


@pytest.mark.parametrize("vagrant, vbox, status", [
    ("vagrant-version_2.4.1_upstream.txt", "vboxmanage-version_7.1.4_upstream.txt", FAIL),   # 7.1 needs 2.4.2
    ("vagrant-version_2.4.1_upstream.txt", "vboxmanage-version_7.2.20_macos_upstream.txt", FAIL),
    ("vagrant-version_2.4.9_upstream.txt", "vboxmanage-version_7.2.20_macos_upstream.txt", PASS),
    ("vagrant-version_2.4.9_upstream.txt", "vboxmanage-version_7.1.8_macos_upstream.txt", PASS),
    ("vagrant-version_2.4.9_upstream.txt", "vboxmanage-version_4.1.2_ubuntu-package_upstream.txt", WARN),
    (None, "vboxmanage-version_7.1.4_upstream.txt", INFO),
])
def test_check_provider_vagrant_virtualbox(vagrant, vbox, status):
    facts = linux(vagrant=rec(vagrant) if vagrant else None, vboxmanage=rec(vbox))
    assert doctor.check_provider_vagrant(facts, needs()).status == status


def test_a_virtualbox_minor_newer_than_known_is_a_warning():
    # The same format as the recorded ones, for a minor podpath does not know yet.
    facts = linux(vagrant=rec("vagrant-version_2.4.9_upstream.txt"), vboxmanage="7.3.0r180000\n")
    finding = doctor.check_provider_vagrant(facts, needs())
    assert finding.status == WARN and "7.3" in finding.detail


@pytest.mark.parametrize("plugins, status", [
    ("vagrant-plugin-list_2.3.4_debian12.txt", PASS),
    ("vagrant-plugin-list_none_upstream.txt", FAIL),
])
def test_check_provider_vagrant_libvirt(plugins, status):
    facts = linux(provider="libvirt", vagrant=rec("vagrant-version_2.4.9_upstream.txt"), vagrant_plugins=rec(plugins))
    finding = doctor.check_provider_vagrant(facts, needs())
    assert finding.status == status
    assert status == PASS or "vagrant plugin install vagrant-libvirt" in finding.fix


@pytest.mark.parametrize("facts, status, says", [
    (linux(vboxmanage=rec("vboxmanage-version_6.0.12_linux-module-not-loaded_upstream.txt")), FAIL, "vboxdrv"),
    (linux(vboxmanage=None), FAIL, "VBoxManage"),
    (Facts(system="Darwin", machine="arm64", vboxmanage=rec("vboxmanage-version_7.2.20_macos_upstream.txt")), PASS, "7.2.20"),
    (Facts(system="Darwin", machine="arm64", vboxmanage=rec("vboxmanage-version_4.1.2_ubuntu-package_upstream.txt")),
     FAIL, "arm64"),
    (linux(provider="libvirt", virsh=None), FAIL, "virsh"),
    (linux(provider="libvirt", virsh=rec("virsh-version_9.0.0_debian12.txt"),
           virsh_uri=(1, rec("virsh-uri_9.0.0_debian12-no-daemon.txt"))), FAIL, "Failed to connect socket"),
    (linux(provider="libvirt", virsh=rec("virsh-version_9.0.0_debian12.txt"), virsh_uri=(0, "qemu:///system\n")),
     PASS, "9.0.0"),
    (Facts(system="Darwin", machine="arm64", provider="libvirt"), FAIL, "Linux"),
])
def test_check_provider(facts, status, says):
    finding = doctor.check_provider(facts, needs())
    assert finding.status == status and says in finding.detail


@pytest.mark.parametrize("facts, status", [
    (linux(cpuinfo=rec("proc-cpuinfo_debian12-amd-epyc-vm-no-svm.txt")), FAIL),
    (linux(cpuinfo=rec("proc-cpuinfo_intel-laptop-vmx_upstream.txt")), PASS),
    (linux(cpuinfo=rec("proc-cpuinfo_intel-laptop-vmx_upstream.txt"), kvm_modules=["kvm", "kvm_intel"]), WARN),
    (linux(provider="libvirt", cpuinfo=rec("proc-cpuinfo_debian12-amd-epyc-vm-no-svm.txt"), dev_kvm=True), WARN),
    (linux(provider="libvirt", cpuinfo=rec("proc-cpuinfo_intel-laptop-vmx_upstream.txt"), dev_kvm=False), FAIL),
    (linux(provider="libvirt", cpuinfo=rec("proc-cpuinfo_intel-laptop-vmx_upstream.txt"), dev_kvm=True), PASS),
    (Facts(system="Linux", machine="aarch64", provider="libvirt", cpuinfo=rec("proc-cpuinfo_arm64_upstream.txt"),
           dev_kvm=True), PASS),
    (Facts(system="Darwin", machine="arm64", hv_support=rec("macos-sysctl-n-kern.hv_support_upstream.txt")), PASS),
    (Facts(system="Darwin", machine="x86_64", hv_support=rec("macos-sysctl-n-kern.hv_support_no-vtx_upstream.txt")), FAIL),
    (Facts(system="Windows", machine="AMD64", windows_info=rec("windows-get-computerinfo_16GiB-firmware-on_upstream.json")),
     PASS),
    (Facts(system="Windows", machine="AMD64", windows_info=rec("windows-get-computerinfo_hyperv-on_upstream.json")), WARN),
    # WSL 2: its own /proc/cpuinfo says nothing about the Windows side, where the VMs run.
    (linux(wsl=True, cpuinfo=rec("proc-cpuinfo_debian12-amd-epyc-vm-no-svm.txt"),
           windows_info=rec("windows-get-computerinfo_16GiB-firmware-on_upstream.json")), PASS),
])
def test_check_virtualization(facts, status):
    assert doctor.check_virtualization(facts).status == status


@pytest.mark.parametrize("facts, lab, status", [
    (linux(meminfo=rec("proc-meminfo_debian12.txt")), needs(), PASS),
    (linux(meminfo=rec("proc-meminfo_debian12.txt")),
     needs(nodes=[{"name": f"n{i}", "ip": f"192.168.56.{10 + i}", "memory_mb": 8192} for i in range(3)]), FAIL),
    (Facts(system="Darwin", machine="arm64", memsize=rec("macos-sysctl-n-hw.memsize_16GiB_upstream.txt")), needs(), PASS),
    (Facts(system="Windows", machine="AMD64", windows_info=rec("windows-get-computerinfo_16GiB-firmware-on_upstream.json")),
     needs(nodes=[{"name": f"n{i}", "ip": f"192.168.56.{10 + i}", "memory_mb": 6144} for i in range(3)]), FAIL),
    (linux(), needs(), WARN),
    # WSL 2: /proc/meminfo is the WSL VM's; Windows' figure counts.
    (linux(wsl=True, meminfo="MemTotal:        4000000 kB\nMemAvailable:    3000000 kB\n",
           windows_info=rec("windows-get-computerinfo_16GiB-firmware-on_upstream.json")), needs(), PASS),
])
def test_check_memory(facts, lab, status):
    finding = doctor.check_memory(facts, lab)
    assert finding.status == status
    assert str(lab.memory_mb + doctor.HOST_RESERVE_MB) in finding.detail


def test_check_disk_counts_box_and_vms_on_one_file_system():
    small = [{"label": "boxes", "path": "/home/s/.vagrant.d", "free": 10 * 2**30, "device": 1},
             {"label": "VM disks", "path": "/home/s/VirtualBox VMs", "free": 10 * 2**30, "device": 1}]
    assert doctor.check_disk(linux(disks=small), needs()).status == FAIL   # 10 GiB < 2 + 3 x 4
    big = [dict(d, free=100 * 2**30) for d in small]
    assert doctor.check_disk(linux(disks=big), needs()).status == PASS


@pytest.mark.parametrize("facts, status", [
    (linux(vboxmanage=rec("vboxmanage-version_7.1.4_upstream.txt")), PASS),
    (linux(vboxmanage=rec("vboxmanage-version_7.1.4_upstream.txt"),
           networks_conf=rec("networks-conf_other-range-only_upstream.conf")), FAIL),
    (linux(vboxmanage=rec("vboxmanage-version_7.1.4_upstream.txt"),
           networks_conf=rec("networks-conf_two-ranges_upstream.conf")), PASS),
    (linux(vboxmanage=rec("vboxmanage-version_7.1.4_upstream.txt"), networks_conf=rec("networks-conf_any_upstream.conf")),
     PASS),
    (Facts(system="Windows", machine="AMD64"), INFO),
    (Facts(system="Darwin", machine="arm64", vboxmanage=rec("vboxmanage-version_7.2.20_macos_upstream.txt"),
           networks_conf=rec("networks-conf_other-range-only_upstream.conf")), INFO),
    (linux(provider="libvirt", networks_conf=rec("networks-conf_other-range-only_upstream.conf")), INFO),
])
def test_check_host_only_range(facts, status):
    finding = doctor.check_host_only_range(facts, needs())
    assert finding.status == status
    if status == FAIL:
        assert "* 192.168.56.0/24" in finding.fix and doctor.NETWORKS_CONF in finding.fix


def test_host_only_range_moved_outside_the_default():
    lab = needs(node_network=ipaddress.ip_network("10.20.0.0/24"), client_ip=ipaddress.ip_address("10.20.0.1"),
                nodes=[{"name": "cp1", "ip": "10.20.0.10", "memory_mb": 2048}])
    assert doctor.check_host_only_range(linux(vboxmanage="7.1.4r165100\n"), lab).status == FAIL
    conf = rec("networks-conf_two-ranges_upstream.conf")
    assert doctor.check_host_only_range(linux(vboxmanage="7.1.4r165100\n", networks_conf=conf), lab).status == PASS


IF = ipaddress.ip_interface
NET = ipaddress.ip_network


@pytest.mark.parametrize("addresses, routes, failures, warnings", [
    ([("vboxnet0", IF("192.168.56.1/24"))], [("vboxnet0", NET("192.168.56.0/24"))], 0, 0),   # the lab's own
    ([("virbr1", IF("192.168.56.1/24"))], [], 0, 0),
    ([("vboxnet1", IF("192.168.56.2/24"))], [], 0, 1),                                          # an old project's
    ([("wlan0", IF("192.168.56.23/24"))], [("wlan0", NET("192.168.56.0/24"))], 1, 0),          # a home LAN
    ([("wlan0", IF("192.168.1.5/24"))], [("tun0", NET("192.168.56.0/25"))], 1, 0),              # a VPN's route
    ([("wlan0", IF("192.168.1.5/24"))], [("tun0", NET("192.168.0.0/16"))], 0, 0),               # broader: harmless
    ([("docker0", IF("172.17.0.1/16"))], [("docker0", NET("172.17.0.0/16"))], 0, 0),
])
def test_clashes(addresses, routes, failures, warnings):
    found = doctor.clashes(needs(), addresses, routes, [])
    assert (len(found[0]), len(found[1])) == (failures, warnings)


@pytest.mark.parametrize("facts, status, names", [
    (linux(ip_addr=rec("ip-j-addr_iproute2-6.1_debian12.json"), ip_route=rec("ip-j-route_iproute2-6.1_debian12.json")),
     PASS, ""),
    (Facts(system="Darwin", machine="arm64", ifconfig=rec("macos-ifconfig_home-lan-on-192.168.56_upstream.txt")), FAIL, "en0"),
    (Facts(system="Windows", machine="AMD64", windows_addresses=rec("windows-get-netipaddress_upstream.json"),
           hostonlyifs=rec("vboxmanage-list-hostonlyifs_windows_upstream.txt")), PASS, ""),
    (Facts(system="Windows", machine="AMD64", windows_addresses=rec("windows-get-netipaddress_upstream.json")), FAIL,
     "VirtualBox Host-Only Network"),   # without VBoxManage's list it looks like any other network
    (linux(), WARN, ""),
])
def test_check_address_clash(facts, status, names):
    finding = doctor.check_address_clash(facts, needs())
    assert finding.status == status and names in finding.detail


@pytest.mark.parametrize("ansible, local, status", [
    (("/p/.venv/bin/ansible-playbook", rec("ansible-playbook-version_core-2.19.14.txt")), True, PASS),
    (("/usr/bin/ansible-playbook", rec("ansible-playbook-version_2.9.27_upstream.txt")), True, WARN),
    (None, True, INFO),
    (None, False, FAIL),
])
def test_check_ansible(ansible, local, status):
    finding = doctor.check_ansible(linux(ansible=ansible), needs(vagrantfile_has_ansible_local=local))
    assert finding.status == status
    if ansible is None and local:
        assert "ansible_local" in finding.detail


def test_wsl_without_windows_access_is_a_warning():
    facts = linux(wsl=True, env={})
    assert doctor.check_host(facts).status == WARN
    assert "VAGRANT_WSL_ENABLE_WINDOWS_ACCESS=1" in doctor.check_host(facts).fix
    assert doctor.check_host(linux(wsl=True, env={"VAGRANT_WSL_ENABLE_WINDOWS_ACCESS": "1"})).status == INFO


@pytest.mark.parametrize("requested, env, vbox, virsh, kvm, expected", [
    ("libvirt", {}, "VBoxManage", False, False, "libvirt"),
    (None, {"VAGRANT_DEFAULT_PROVIDER": "libvirt"}, "VBoxManage", False, False, "libvirt"),
    (None, {}, "VBoxManage", True, True, "virtualbox"),
    (None, {}, None, False, True, "libvirt"),
    (None, {}, None, False, False, "virtualbox"),
])
def test_choose_provider(requested, env, vbox, virsh, kvm, expected):
    assert doctor.choose_provider(requested, env, "Linux", vbox, virsh, kvm)[0] == expected


# ----- the lab's needs and the docs ---------------------------------------------------------

def test_needs_come_from_the_files_the_vagrantfile_reads():
    lab = doctor.load_needs()
    versions = yaml.safe_load((doctor.VARS / "versions.yml").read_text())["podpath_versions"]
    topology = yaml.safe_load((doctor.VARS / "topology.yml").read_text())["podpath_topology"]
    assert lab.vagrant_minimum == doctor.version_tuple(versions["vagrant"]["minimum"])
    assert lab.memory_mb == sum(node.get("memory_mb", 2048) for node in topology["nodes"])
    assert str(lab.node_network) == topology["node_network"]


def test_needs_without_a_vagrant_minimum_is_a_clear_error(tmp_path):
    where = tmp_path / "inventory" / "group_vars" / "all"
    where.mkdir(parents=True)
    shutil.copy(doctor.VARS / "topology.yml", where)
    versions = yaml.safe_load((doctor.VARS / "versions.yml").read_text())
    versions["podpath_versions"].pop("vagrant")
    (where / "versions.yml").write_text(yaml.safe_dump(versions))
    (tmp_path / "pyproject.toml").write_text("")
    with pytest.raises(ValueError, match="podpath_versions.vagrant.minimum"):
        doctor.load_needs(tmp_path)


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_finding_points_at_an_entry_of_the_docs():
    text = (doctor.ROOT / "docs" / "cluster.md").read_text()
    anchors = {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    facts = linux(provider="libvirt")
    for finding in doctor.evaluate(facts, needs()) + doctor.evaluate(linux(), needs()):
        page, _, anchor = finding.see.partition("#")
        assert page == "docs/cluster.md" and anchor in anchors, f"{finding.check}: no heading for #{anchor}"


# ----- a real run on this host --------------------------------------------------------------

def run_doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podpath.cluster", "doctor", *args], capture_output=True, text=True,
                          cwd=doctor.ROOT, timeout=300)


def test_doctor_runs_here_and_every_check_reports_with_a_fix():
    """On this host (no VirtualBox, no hardware virtualization) FAIL lines are expected: the
    test checks the shape of what the doctor says, not the host's outcome."""
    done = run_doctor("--json")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert [f["check"] for f in report["findings"]] == CHECKS
    for finding in report["findings"]:
        assert finding["status"] in (PASS, INFO, WARN, FAIL)
        assert finding["detail"] and finding["fix"], finding
        assert finding["see"].startswith("docs/cluster.md#doctor-")
    failed = any(f["status"] == FAIL for f in report["findings"])
    assert report["ok"] is not failed
    assert done.returncode == (1 if failed else 0)


def test_doctor_text_is_one_line_per_check():
    done = run_doctor()
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == CHECKS
    for line in lines[:-1]:
        status = line.split()[0]
        assert status in (PASS, INFO, WARN, FAIL)
        if status in (WARN, FAIL):
            assert " -> " in line and "(see docs/cluster.md#doctor-" in line
