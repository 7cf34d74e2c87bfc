"""Build the cluster lab's Vagrant boxes from Debian's official cloud image.

Why the project builds its boxes: HCP Vagrant (the old Vagrant Cloud), where Debian's and
bento's boxes are published, takes no new boxes since October 2026 and ends operations on
2026-12-31 (hashicorp/vagrant issue 13836); bento's move elsewhere is still a proposal
(chef/bento issue 1699); Debian's own `debian/trixie64` was published for libvirt only. A
box named only by its registry name stops resolving, and no other host of Debian 13 boxes
with published checksums could be found. Debian's cloud images, on the other hand, are
published per architecture in dated directories with a SHA512SUMS file
(https://cloud.debian.org/images/cloud/trixie/), so a box built from one is as trustworthy as
the image, and the same image makes the VirtualBox and the libvirt box of an architecture.

What a box is here: the "generic" image (Debian's full kernel, with the disk and network
drivers VirtualBox and QEMU present), grown to the lab's disk size, plus a cloud-init NoCloud
seed written into its file system (/var/lib/cloud/seed/nocloud): at first boot cloud-init
creates the user `vagrant` with Vagrant's published insecure public keys and passwordless
sudo, then turns itself off. Vagrant replaces those keys with a key per machine on the first
`vagrant up`. Nothing else is changed; the roles install everything the lab needs.

Each build checks the image twice before using it: against the sha512 pinned in versions.yml
and against the line for it in the SHA512SUMS Debian publishes beside it. It writes, under
build/boxes/: one .box per provider and architecture, SHA256SUMS of the boxes, and one
Vagrant box catalog (metadata.json format) per architecture, through which `vagrant up` adds
the box and checks its sha256.

Needs, on a Linux machine (WSL2 will do): qemu-img (Debian: qemu-utils) and virt-customize
(Debian: libguestfs-tools). virt-customize only writes files here, it runs nothing inside
the image, so one amd64 machine builds the arm64 boxes too.

    python boxes/build.py                          # both providers, this machine's architecture
    python boxes/build.py --arch all               # amd64 and arm64
    python boxes/build.py --base-url https://lab.example.org/boxes/   # catalog for a web server
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "inventory" / "group_vars" / "all" / "versions.yml"
PROVIDERS = ("virtualbox", "libvirt")
ARCHITECTURES = ("amd64", "arm64")
# The machine's name for its CPU -> Debian's architecture name.
MACHINES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
TOOLS = {"qemu-img": "qemu-utils", "virt-customize": "libguestfs-tools"}

# Vagrant's insecure public keys, as published in hashicorp/vagrant (keys/vagrant.pub and
# keys/vagrant.pub.ed25519). Vagrant logs in with them once and then puts a key of its own per
# machine in their place. Both: Vagrant 2.4 tries the ed25519 one, older releases the RSA one.
VAGRANT_INSECURE_KEYS = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key",  # noqa: E501
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y vagrant insecure public key",
)
SEED_DIR = "/var/lib/cloud/seed/nocloud"
# Only the NoCloud seed above: no waiting for cloud metadata services that a laptop lacks.
DATASOURCE_CFG = "/etc/cloud/cloud.cfg.d/90_podpath.cfg"


class BuildError(Exception):
    """A build step failed; the message says which and what to do."""


# ----- the pins ----------------------------------------------------------------------------

def load_boxes(path: Path = VERSIONS) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["podpath_versions"]["boxes"]


def box_pin(boxes: dict[str, Any], provider: str, arch: str) -> dict[str, Any]:
    """Everything one box is built from: its Vagrant name and version, the image's URL and
    sha512, the checksum file, the disk size. Raises BuildError naming a missing key."""
    try:
        entry = boxes[provider][arch]
        image = boxes["images"][entry["image"]]
        return {"provider": provider, "arch": arch, "name": entry["name"], "version": str(boxes["version"]),
                "url": image["url"], "sha512": image["sha512"], "checksums_url": boxes["checksums_url"],
                "disk_gb": int(boxes["disk_gb"])}
    except KeyError as exc:
        raise BuildError(f"versions.yml: boxes has no {exc} for {provider}/{arch}") from None


# ----- checking the image ------------------------------------------------------------------

def parse_sha512sums(text: str) -> dict[str, str]:
    """SHA512SUMS ("<hex>  <file name>" per line, as sha512sum writes it) -> {name: hex}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 128:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_image(path: Path, pin: dict[str, Any], sums: dict[str, str]) -> None:
    """The image must match the pin and Debian's SHA512SUMS; the pin must match the file too,
    so a mistyped pin is found before anything is built."""
    name = pin["url"].rsplit("/", 1)[-1]
    published = sums.get(name)
    if published is None:
        raise BuildError(f"{pin['checksums_url']} lists no {name}: is the url in versions.yml right?")
    if published != pin["sha512"]:
        raise BuildError(f"versions.yml pins sha512 {pin['sha512'][:16]}... for {name}, Debian's SHA512SUMS says "
                         f"{published[:16]}...: fix the pin")
    actual = file_digest(path, "sha512")
    if actual != published:
        raise BuildError(f"{path} has sha512 {actual[:16]}..., Debian publishes {published[:16]}...: "
                         f"delete it and build again (a broken or altered download)")


def download(url: str, target: Path) -> Path:
    """url -> target, through a .part file so an interrupted download is never taken as whole."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    print(f"boxes: downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:  # noqa: S310 (https pins)
        shutil.copyfileobj(response, out, 1 << 20)
    part.replace(target)
    return target


# ----- what goes into the image ------------------------------------------------------------

def seed_files(pin: dict[str, Any]) -> dict[str, str]:
    """The NoCloud seed (user-data, meta-data) and the datasource setting, by path in the image."""
    user_data = {
        "users": [{
            "name": "vagrant",
            "gecos": "Vagrant",
            "shell": "/bin/bash",
            "lock_passwd": True,
            "sudo": "ALL=(ALL) NOPASSWD:ALL",
            "ssh_authorized_keys": list(VAGRANT_INSECURE_KEYS),
        }],
        "ssh_pwauth": False,
        # Vagrant sets the host name (config.vm.hostname); cloud-init must never set it back.
        "preserve_hostname": True,
        # The roles install what the lab needs, pinned; nothing is upgraded behind them.
        "package_update": False,
        "package_upgrade": False,
        # Once the user exists, cloud-init has nothing more to do: later boots skip it.
        "runcmd": [["touch", "/etc/cloud/cloud-init.disabled"]],
    }
    instance = f"podpath-{pin['name'].split('/')[-1]}-{pin['version']}"
    return {
        f"{SEED_DIR}/user-data": "#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False),
        f"{SEED_DIR}/meta-data": yaml.safe_dump({"instance-id": instance}),
        DATASOURCE_CFG: yaml.safe_dump({"datasource_list": ["NoCloud", "None"]}),
    }


def customize_argv(image: Path, staged: dict[str, Path]) -> list[str]:
    """virt-customize writing the staged files into the image: --mkdir and --upload only, so
    nothing runs inside the guest (which is why a foreign architecture works)."""
    argv = ["virt-customize", "--no-network", "-a", str(image)]
    for directory in sorted({str(Path(path).parent) for path in staged}):
        argv += ["--mkdir", directory]
    for path, local in sorted(staged.items()):
        argv += ["--upload", f"{local}:{path}"]
    return argv


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    print("boxes: " + " ".join(argv), file=sys.stderr)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise BuildError(f"{argv[0]} failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-600:]}")
    return result


# ----- the providers' box formats ----------------------------------------------------------

def libvirt_metadata(arch: str, virtual_size_gb: int) -> dict[str, Any]:
    """vagrant-libvirt's box metadata: the image is box.img, qcow2, of this many GiB."""
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_size_gb, "architecture": arch}


OVF_TEMPLATE = """<?xml version="1.0"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
    xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
    xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{disk_file}" ovf:size="{disk_bytes}"/>
  </References>
  <DiskSection>
    <Info>The virtual disk</Info>
    <Disk ovf:capacity="{capacity_bytes}" ovf:diskId="vmdisk1" ovf:fileRef="file1"
        ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="{disk_uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The network the adapter uses</Info>
    <Network ovf:name="NAT">
      <Description>NAT</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{system}">
    <Info>A Debian 13 machine for podpath's cluster lab</Info>
    <OperatingSystemSection ovf:id="{ovf_os}">
      <Info>The guest operating system</Info>
      <vbox:OSType ovf:required="false">{os_type}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware (Vagrant sets CPUs and memory from the topology at vagrant up)</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{system}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>virtualbox-2.2</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>2 virtual CPUs</rasd:Caption>
        <rasd:ElementName>2 virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>2</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>2048 MB of memory</rasd:Caption>
        <rasd:ElementName>2048 MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>2048</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>{controller}0</rasd:Caption>
        <rasd:ElementName>{controller}0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>{controller_type}</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on 'NAT'</rasd:Caption>
        <rasd:Connection>NAT</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on 'NAT'</rasd:ElementName>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:ResourceSubType>{nic_type}</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
{machine}  </VirtualSystem>
</Envelope>
"""

# VirtualBox's own section for an ARM machine: without it VirtualBox imports the VM as an x86
# one, which an Apple Silicon Mac cannot run. Platform ARM with the ARMv8Virtual chipset and
# UEFI firmware, the disk on virtio-scsi, a virtio NIC: what VirtualBox 7.1+ exports for ARM VMs.
ARM_MACHINE = """    <vbox:Machine ovf:required="false" version="1.20-linux" uuid="{{{machine_uuid}}}" name="{system}" OSType="{os_type}">
      <ovf:Info>VirtualBox's own settings of this machine</ovf:Info>
      <Hardware>
        <Memory RAMSize="2048"/>
        <Firmware type="EFI"/>
        <Boot>
          <Order position="1" device="HardDisk"/>
        </Boot>
        <Display controller="QemuRamFB" VRAMSize="16"/>
        <Network>
          <Adapter slot="0" enabled="true" type="virtio">
            <NAT/>
          </Adapter>
        </Network>
        <StorageControllers>
          <StorageController name="VirtioSCSI" type="VirtioSCSI" PortCount="1" useHostIOCache="false" Bootable="true">
            <AttachedDevice type="HardDisk" port="0" device="0">
              <Image uuid="{{{disk_uuid}}}"/>
            </AttachedDevice>
          </StorageController>
        </StorageControllers>
      </Hardware>
      <Platform architecture="ARM">
        <Chipset type="ARMv8Virtual"/>
        <CPU count="2"/>
      </Platform>
    </vbox:Machine>
"""


def virtualbox_ovf(arch: str, name: str, disk_file: str, disk_bytes: int, capacity_bytes: int) -> str:
    """The OVF descriptor VirtualBox imports (Vagrant runs `VBoxManage import box.ovf`).

    amd64: plain OVF 1.0 (a SATA disk, one NAT adapter); VirtualBox's defaults do the rest,
    including BIOS firmware, which Debian's amd64 image boots. arm64: plus VirtualBox's machine
    section (ARM_MACHINE). The UUIDs derive from the box's name, so a rebuild writes the same file."""
    arm = arch == "arm64"
    system = escape(name.replace("/", "-"))
    values = {
        "disk_file": escape(disk_file), "disk_bytes": disk_bytes, "capacity_bytes": capacity_bytes,
        "disk_uuid": uuid.uuid5(uuid.NAMESPACE_URL, f"podpath:{name}:{arch}:disk"),
        "machine_uuid": uuid.uuid5(uuid.NAMESPACE_URL, f"podpath:{name}:{arch}:machine"),
        "system": system, "ovf_os": "110" if arm else "96", "os_type": "Linux_arm64" if arm else "Debian_64",
        "controller": "virtioSCSIController" if arm else "sataController",
        "controller_type": "VirtioSCSI" if arm else "AHCI", "nic_type": "virtio" if arm else "E1000",
    }
    values["machine"] = ARM_MACHINE.format(**values) if arm else ""
    return OVF_TEMPLATE.format(**values)


def pack(files: dict[str, Path], box: Path) -> Path:
    """A Vagrant box is a tar archive of the provider's files (metadata.json first)."""
    box.parent.mkdir(parents=True, exist_ok=True)
    part = box.with_name(box.name + ".part")
    with tarfile.open(part, "w", format=tarfile.GNU_FORMAT) as tar:
        for arcname in sorted(files, key=lambda name: (name != "metadata.json", name)):
            tar.add(files[arcname], arcname=arcname)
    part.replace(box)
    return box


# ----- the catalog Vagrant reads -----------------------------------------------------------

def box_file_name(pin: dict[str, Any]) -> str:
    return f"{pin['name'].replace('/', '-')}-{pin['version']}-{pin['provider']}.box"


def catalog_name(box_name: str) -> str:
    """The catalog of a box, beside the boxes: podpath/debian-13-amd64 -> podpath-debian-13-amd64.json.
    The Vagrantfile builds the same name (tests/static/test_cluster_boxes.py checks both)."""
    return box_name.replace("/", "-") + ".json"


def update_catalog(catalog: dict[str, Any] | None, pin: dict[str, Any], url: str, sha256: str) -> dict[str, Any]:
    """Add (or replace) one provider's box in a box catalog, keeping the other providers."""
    catalog = catalog or {"name": pin["name"], "description": "Debian 13 for podpath's cluster lab", "versions": []}
    if catalog.get("name") != pin["name"]:
        raise BuildError(f"the catalog holds box {catalog.get('name')!r}, not {pin['name']!r}")
    versions = [v for v in catalog["versions"] if v["version"] == pin["version"]]
    if not versions:
        catalog["versions"].append({"version": pin["version"], "providers": []})
        versions = catalog["versions"][-1:]
    providers = [p for p in versions[0]["providers"] if p["name"] != pin["provider"]]
    providers.append({"name": pin["provider"], "url": url, "checksum_type": "sha256", "checksum": sha256,
                      "architecture": pin["arch"], "default_architecture": True})
    versions[0]["providers"] = sorted(providers, key=lambda p: p["name"])
    return catalog


def update_sums(path: Path, name: str, sha256: str) -> None:
    lines = [line for line in (path.read_text().splitlines() if path.exists() else []) if not line.endswith(f"  {name}")]
    path.write_text("\n".join(sorted(lines + [f"{sha256}  {name}"])) + "\n")


# ----- one build ---------------------------------------------------------------------------

def build(pin: dict[str, Any], out: Path, base_url: str, cache: Path) -> Path:
    """Build one box into out/, record it in out/SHA256SUMS and the architecture's catalog."""
    image_name = pin["url"].rsplit("/", 1)[-1]
    sums = parse_sha512sums(download_text(pin["checksums_url"]))
    image = download(pin["url"], cache / image_name)
    check_image(image, pin, sums)
    with tempfile.TemporaryDirectory(prefix="podpath-box-", dir=out) as tmp:
        work = Path(tmp)
        disk = work / "disk.qcow2"
        shutil.copyfile(image, disk)
        run(["qemu-img", "resize", str(disk), f"{pin['disk_gb']}G"])
        staged: dict[str, Path] = {}
        for number, (path, text) in enumerate(seed_files(pin).items()):
            local = work / f"seed-{number}"
            local.write_text(text)
            staged[path] = local
        run(customize_argv(disk, staged), env=dict(os.environ, LIBGUESTFS_BACKEND="direct"))
        info = json.loads(run(["qemu-img", "info", "--output=json", str(disk)]).stdout)
        capacity = int(info["virtual-size"])
        metadata = work / "metadata.json"
        if pin["provider"] == "libvirt":
            metadata.write_text(json.dumps(libvirt_metadata(pin["arch"], -(-capacity // (1 << 30)))))
            files = {"metadata.json": metadata, "box.img": disk}
        else:
            vmdk = work / "box-disk001.vmdk"
            run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(disk), str(vmdk)])
            ovf = work / "box.ovf"
            ovf.write_text(virtualbox_ovf(pin["arch"], pin["name"], vmdk.name, vmdk.stat().st_size, capacity))
            metadata.write_text(json.dumps({"provider": "virtualbox", "architecture": pin["arch"]}))
            files = {"metadata.json": metadata, "box.ovf": ovf, vmdk.name: vmdk}
        box = pack(files, out / box_file_name(pin))
    sha256 = file_digest(box, "sha256")
    update_sums(out / "SHA256SUMS", box.name, sha256)
    catalog_path = out / catalog_name(pin["name"])
    existing = json.loads(catalog_path.read_text()) if catalog_path.exists() else None
    catalog_path.write_text(json.dumps(update_catalog(existing, pin, base_url + box.name, sha256), indent=2) + "\n")
    print(f"boxes: {box} sha256 {sha256}", file=sys.stderr)
    return box


def download_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https pins)
        return response.read().decode()


def base_url_for(out: Path, given: str | None) -> str:
    """Where the catalog says the boxes are: the given URL (a web server the boxes are copied
    to), or this directory as a file:// URL."""
    if given:
        return given if given.endswith("/") else given + "/"
    return out.resolve().as_uri() + "/"


def check_tools() -> None:
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise BuildError("missing " + ", ".join(missing) + ": install them (sudo apt install qemu-utils "
                         "libguestfs-tools), on a Linux machine or in WSL2")


def host_arch() -> str:
    machine = os.uname().machine.lower()
    if machine not in MACHINES:
        raise BuildError(f"no box for this machine's CPU {machine!r}: pass --arch amd64 or --arch arm64")
    return MACHINES[machine]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=[*PROVIDERS, "all"], default="all")
    parser.add_argument("--arch", choices=[*ARCHITECTURES, "host", "all"], default="host")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "boxes")
    parser.add_argument("--base-url", help="the URL the boxes will be served from (default: file:// of --out)")
    args = parser.parse_args(argv)
    try:
        check_tools()
        boxes = load_boxes()
        arches = ARCHITECTURES if args.arch == "all" else (host_arch() if args.arch == "host" else args.arch,)
        providers = PROVIDERS if args.provider == "all" else (args.provider,)
        args.out.mkdir(parents=True, exist_ok=True)
        base_url = base_url_for(args.out, args.base_url)
        for arch in arches:
            for provider in providers:
                build(box_pin(boxes, provider, arch), args.out, base_url, args.out / "cache")
    except BuildError as exc:
        print(f"boxes: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
