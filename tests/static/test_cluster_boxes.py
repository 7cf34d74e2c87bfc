"""boxes/build.py, the build of the cluster lab's Vagrant boxes from Debian's cloud image.

The real build needs the network and qemu-img and virt-customize; here the whole build runs
against a local stand-in image served by file:// URLs and stand-ins for the two tools that
record what they are asked, so every step in between (checksum checks, the seed, the box
formats, the archive, SHA256SUMS, the catalog Vagrant reads) is the real code. What the tools
and Vagrant then do with the results is not checked here (docs/cluster.md says so)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml

from boxes import build

pytestmark = pytest.mark.static

OVF = "{http://schemas.dmtf.org/ovf/envelope/1}"
VBOX = "{http://www.virtualbox.org/ovf/machine}"
RASD = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"
# Where Debian's vagrant package keeps Vagrant's insecure public key, to compare with ours.
VAGRANT_PUBLIC_KEYS = sorted(Path("/usr/share/rubygems-integration/all/gems").glob("vagrant-*/keys/vagrant.pub"))

# qemu-img: resize does nothing, info says 20 GiB, convert copies; virt-customize does nothing.
# Both log their arguments, one call per line.
QEMU_IMG = """#!/bin/sh
echo "qemu-img $*" >> "$(dirname "$0")/calls.log"
case "$1" in
  info) echo '{"virtual-size": 21474836480, "format": "qcow2"}' ;;
  convert) for last; do :; done; cp "$6" "$last" ;;
esac
"""
VIRT_CUSTOMIZE = """#!/bin/sh
echo "virt-customize $* LIBGUESTFS_BACKEND=$LIBGUESTFS_BACKEND" >> "$(dirname "$0")/calls.log"
"""


# ----- the pins ----------------------------------------------------------------------------

@pytest.mark.parametrize("provider", build.PROVIDERS)
@pytest.mark.parametrize("arch", build.ARCHITECTURES)
def test_every_provider_and_architecture_has_a_box_from_a_checked_image(
        versions: dict[str, Any], provider: str, arch: str) -> None:
    boxes = versions["boxes"]
    pin = build.box_pin(boxes, provider, arch)
    directory = boxes["checksums_url"].rsplit("/", 1)[0]
    assert boxes["checksums_url"].startswith("https://cloud.debian.org/images/cloud/")
    assert pin["url"].startswith(directory + "/"), "the image and its SHA512SUMS come from the same dated build"
    assert boxes["debian_build"] in directory and f"-generic-{arch}-{boxes['debian_build']}.qcow2" in pin["url"]
    assert len(pin["sha512"]) == 128 and int(pin["sha512"], 16) >= 0
    assert pin["name"].startswith("podpath/") and arch in pin["name"]
    assert pin["version"] == "13." + boxes["debian_build"].replace("-", "."), "Debian 13, that build"
    assert pin["disk_gb"] >= 10


def test_one_box_name_per_architecture_across_providers(versions: dict[str, Any]) -> None:
    # One catalog per architecture holds both providers' boxes under one name.
    boxes = versions["boxes"]
    for arch in build.ARCHITECTURES:
        assert len({boxes[provider][arch]["name"] for provider in build.PROVIDERS}) == 1
    assert len({boxes["virtualbox"][arch]["name"] for arch in build.ARCHITECTURES}) == len(build.ARCHITECTURES)


def test_a_missing_pin_is_named() -> None:
    with pytest.raises(build.BuildError, match="arm64"):
        build.box_pin({"virtualbox": {"amd64": {}}}, "virtualbox", "arm64")


# ----- checking the image ------------------------------------------------------------------

def fake_image(tmp_path: Path, arch: str = "amd64") -> tuple[Path, str]:
    image = tmp_path / "debian" / f"debian-13-generic-{arch}-20260831-2587.qcow2"
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"QFI\xfb" + arch.encode() * 1000)
    return image, hashlib.sha512(image.read_bytes()).hexdigest()


def pin_for(image: Path, sha512: str, provider: str, arch: str) -> dict[str, Any]:
    return {"provider": provider, "arch": arch, "name": f"podpath/debian-13-{arch}", "version": "13.20260831.2587",
            "url": image.as_uri(), "sha512": sha512, "checksums_url": (image.parent / "SHA512SUMS").as_uri(),
            "disk_gb": 20}


def test_sha512sums_are_read_as_sha512sum_writes_them() -> None:
    text = f"{'a' * 128}  one.qcow2\n{'B' * 128} *two.raw\nnot a line\n"
    assert build.parse_sha512sums(text) == {"one.qcow2": "a" * 128, "two.raw": "b" * 128}


def test_the_image_must_match_the_pin_and_debians_sums(tmp_path: Path) -> None:
    image, digest = fake_image(tmp_path)
    pin = pin_for(image, digest, "libvirt", "amd64")
    build.check_image(image, pin, {image.name: digest})
    with pytest.raises(build.BuildError, match="fix the pin"):
        build.check_image(image, dict(pin, sha512="0" * 128), {image.name: digest})
    with pytest.raises(build.BuildError, match="lists no"):
        build.check_image(image, pin, {})
    image.write_bytes(b"altered")
    with pytest.raises(build.BuildError, match="delete it and build again"):
        build.check_image(image, pin, {image.name: digest})


# ----- the seed ----------------------------------------------------------------------------

def test_the_seed_makes_the_vagrant_user_and_nothing_else(versions: dict[str, Any]) -> None:
    files = build.seed_files(build.box_pin(versions["boxes"], "virtualbox", "amd64"))
    user_data = files[f"{build.SEED_DIR}/user-data"]
    assert user_data.startswith("#cloud-config\n"), "cloud-init reads user-data as cloud-config only with this line"
    config = yaml.safe_load(user_data)
    (user,) = config["users"]
    assert user["name"] == "vagrant" and user["sudo"] == "ALL=(ALL) NOPASSWD:ALL" and user["lock_passwd"] is True
    assert [key.split()[0] for key in user["ssh_authorized_keys"]] == ["ssh-rsa", "ssh-ed25519"]
    assert config["ssh_pwauth"] is False and config["preserve_hostname"] is True
    assert config["package_upgrade"] is False
    assert config["runcmd"] == [["touch", "/etc/cloud/cloud-init.disabled"]]
    assert yaml.safe_load(files[f"{build.SEED_DIR}/meta-data"])["instance-id"].startswith("podpath-")
    assert yaml.safe_load(files[build.DATASOURCE_CFG]) == {"datasource_list": ["NoCloud", "None"]}


@pytest.mark.skipif(not VAGRANT_PUBLIC_KEYS, reason="Vagrant's keys/vagrant.pub is not installed here")
def test_the_seeds_rsa_key_is_vagrants_insecure_key() -> None:
    published = VAGRANT_PUBLIC_KEYS[-1].read_text().split()[:2]
    assert build.VAGRANT_INSECURE_KEYS[0].split()[:2] == published


def test_the_image_is_only_written_to_never_run(tmp_path: Path) -> None:
    staged = {"/var/lib/cloud/seed/nocloud/user-data": tmp_path / "a", "/etc/cloud/cloud.cfg.d/x.cfg": tmp_path / "b"}
    argv = build.customize_argv(tmp_path / "disk.qcow2", staged)
    options = [word for word in argv if word.startswith("--")]
    assert set(options) == {"--no-network", "--mkdir", "--upload"}, "no --run, --run-command or --install"
    assert f"{tmp_path / 'a'}:/var/lib/cloud/seed/nocloud/user-data" in argv


# ----- box formats -------------------------------------------------------------------------

@pytest.mark.parametrize("arch", build.ARCHITECTURES)
def test_virtualbox_descriptor(arch: str) -> None:
    root = ET.fromstring(build.virtualbox_ovf(arch, f"podpath/debian-13-{arch}", "box-disk001.vmdk", 1234, 20 << 30))
    (file_ref,) = root.iter(f"{OVF}File")
    assert file_ref.get(f"{OVF}href") == "box-disk001.vmdk" and file_ref.get(f"{OVF}size") == "1234"
    (disk,) = root.iter(f"{OVF}Disk")
    assert disk.get(f"{OVF}capacity") == str(20 << 30) and disk.get(f"{OVF}format").endswith("#streamOptimized")
    items = {item.findtext(f"{RASD}InstanceID"): item for item in root.iter(f"{OVF}Item")}
    assert items["5"].findtext(f"{RASD}Parent") == "3" and items["5"].findtext(f"{RASD}HostResource") == "/disk/vmdisk1"
    controller = items["3"].findtext(f"{RASD}ResourceSubType")
    machines = list(root.iter(f"{VBOX}Machine"))
    if arch == "arm64":
        assert controller == "VirtioSCSI"
        (machine,) = machines
        platform = machine.find(f"{OVF}Platform")
        assert platform.get("architecture") == "ARM" and platform.find(f"{OVF}Chipset").get("type") == "ARMv8Virtual"
        image = machine.find(f".//{OVF}AttachedDevice/{OVF}Image")
        assert image.get("uuid") == "{" + disk.get(f"{VBOX}uuid") + "}", "the machine's disk is the one in the box"
    else:
        assert controller == "AHCI" and not machines, "x86: plain OVF, VirtualBox's defaults (BIOS) boot Debian"


def test_libvirt_metadata() -> None:
    assert build.libvirt_metadata("arm64", 20) == {"provider": "libvirt", "format": "qcow2", "virtual_size": 20,
                                                    "architecture": "arm64"}


def test_catalog_keeps_the_other_providers(tmp_path: Path) -> None:
    image, digest = fake_image(tmp_path)
    virtualbox = pin_for(image, digest, "virtualbox", "amd64")
    libvirt = pin_for(image, digest, "libvirt", "amd64")
    catalog = build.update_catalog(None, virtualbox, "file:///b/v.box", "1" * 64)
    catalog = build.update_catalog(catalog, libvirt, "file:///b/l.box", "2" * 64)
    catalog = build.update_catalog(catalog, virtualbox, "file:///b/v2.box", "3" * 64)
    (version,) = catalog["versions"]
    assert catalog["name"] == "podpath/debian-13-amd64" and version["version"] == "13.20260831.2587"
    assert [(p["name"], p["url"], p["checksum"]) for p in version["providers"]] == [
        ("libvirt", "file:///b/l.box", "2" * 64), ("virtualbox", "file:///b/v2.box", "3" * 64)]
    assert all(p["checksum_type"] == "sha256" and p["architecture"] == "amd64" for p in version["providers"])
    with pytest.raises(build.BuildError, match="not 'podpath/other'"):
        build.update_catalog(catalog, dict(virtualbox, name="podpath/other"), "u", "0" * 64)


def test_tools_are_named_with_their_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda tool: None)
    with pytest.raises(build.BuildError, match=r"qemu-img \(Debian package qemu-utils\).*libguestfs-tools"):
        build.check_tools()


# ----- a whole build, with stand-in tools ----------------------------------------------------

@pytest.fixture()
def stand_in_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name, script in (("qemu-img", QEMU_IMG), ("virt-customize", VIRT_CUSTOMIZE)):
        (tools / name).write_text(script)
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    return tools


@pytest.mark.parametrize("provider", build.PROVIDERS)
@pytest.mark.parametrize("arch", build.ARCHITECTURES)
def test_a_whole_build(tmp_path: Path, stand_in_tools: Path, provider: str, arch: str) -> None:
    image, digest = fake_image(tmp_path, arch)
    (image.parent / "SHA512SUMS").write_text(f"{digest}  {image.name}\n{'f' * 128}  other.raw\n")
    pin = pin_for(image, digest, provider, arch)
    out = tmp_path / "boxes"
    out.mkdir()
    box = build.build(pin, out, build.base_url_for(out, None), out / "cache")

    calls = (stand_in_tools / "calls.log").read_text().splitlines()
    assert any(c.startswith("qemu-img resize ") and c.endswith(" 20G") for c in calls), "grown to disk_gb"
    (customize,) = [c for c in calls if c.startswith("virt-customize ")]
    assert "--upload" in customize and customize.endswith("LIBGUESTFS_BACKEND=direct")
    with tarfile.open(box) as tar:
        names = tar.getnames()
        metadata = json.load(tar.extractfile("metadata.json"))
        if provider == "virtualbox":
            ET.fromstring(tar.extractfile("box.ovf").read())
    assert names[0] == "metadata.json", "Vagrant reads it first"
    if provider == "libvirt":
        assert set(names) == {"metadata.json", "box.img"} and metadata == build.libvirt_metadata(arch, 20)
    else:
        assert set(names) == {"metadata.json", "box.ovf", "box-disk001.vmdk"}
        assert any("subformat=streamOptimized" in c for c in calls)
        assert metadata == {"provider": "virtualbox", "architecture": arch}
    sha256 = hashlib.sha256(box.read_bytes()).hexdigest()
    assert (out / "SHA256SUMS").read_text() == f"{sha256}  {box.name}\n"
    catalog = json.loads((out / build.catalog_name(pin["name"])).read_text())
    (entry,) = catalog["versions"][0]["providers"]
    assert entry == {"name": provider, "url": box.resolve().as_uri(), "checksum_type": "sha256", "checksum": sha256,
                     "architecture": arch, "default_architecture": True}
    assert not [p for p in out.iterdir() if p.name.startswith("podpath-box-")], "the work directory is removed"


def test_a_build_stops_on_an_image_debian_does_not_vouch_for(tmp_path: Path, stand_in_tools: Path) -> None:
    image, digest = fake_image(tmp_path)
    (image.parent / "SHA512SUMS").write_text(f"{'0' * 128}  {image.name}\n")
    out = tmp_path / "boxes"
    out.mkdir()
    with pytest.raises(build.BuildError, match="fix the pin"):
        build.build(pin_for(image, digest, "libvirt", "amd64"), out, "https://lab.example.org/", out / "cache")
    assert not (stand_in_tools / "calls.log").exists(), "nothing is built from an image that failed its check"
    assert not list(out.glob("*.box"))


@pytest.mark.parametrize("provider", build.PROVIDERS)
def test_a_build_with_the_real_qemu_img(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    """qemu-img for real (Debian package qemu-utils) on a small qcow2 it makes itself: the
    arguments the build gives it are accepted, the disk is grown, `info` is read, and the
    VirtualBox disk really is a stream-optimised VMDK. Only virt-customize is a stand-in."""
    qemu_img = shutil.which("qemu-img") or pytest.skip("qemu-img is not installed here (Debian package qemu-utils)")
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "virt-customize").write_text(VIRT_CUSTOMIZE)
    (tools / "virt-customize").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    image = tmp_path / "debian" / "debian-13-generic-amd64-20260831-2587.qcow2"
    image.parent.mkdir()
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    digest = hashlib.sha512(image.read_bytes()).hexdigest()
    (image.parent / "SHA512SUMS").write_text(f"{digest}  {image.name}\n")
    out = tmp_path / "boxes"
    out.mkdir()
    pin = dict(pin_for(image, digest, provider, "amd64"), disk_gb=1)
    box = build.build(pin, out, "https://lab.example.org/boxes/", out / "cache")
    unpacked = tmp_path / "unpacked"
    with tarfile.open(box) as tar:
        # the "data" filter (Python 3.11.4+, and backported to older patch releases) where there is one
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    disk = unpacked / ("box.img" if provider == "libvirt" else "box-disk001.vmdk")
    info = json.loads(subprocess.run([qemu_img, "info", "--output=json", str(disk)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["virtual-size"] == 1 << 30, "grown to disk_gb"
    if provider == "libvirt":
        assert info["format"] == "qcow2"
        assert json.loads((unpacked / "metadata.json").read_text())["virtual_size"] == 1
    else:
        assert info["format"] == "vmdk" and info["format-specific"]["data"]["create-type"] == "streamOptimized"
        (disk_element,) = ET.parse(unpacked / "box.ovf").getroot().iter(f"{OVF}Disk")
        assert disk_element.get(f"{OVF}capacity") == str(1 << 30)
    catalog = json.loads((out / build.catalog_name(pin["name"])).read_text())
    assert catalog["versions"][0]["providers"][0]["url"] == f"https://lab.example.org/boxes/{box.name}"
