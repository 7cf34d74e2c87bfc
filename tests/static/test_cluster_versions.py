"""The versions file of the cluster lab: complete, well-formed and self-consistent. Every
file a role downloads has a URL and a checksum (a pinned sha256, or the publisher's checksum
file where no digest could be confirmed) for every architecture the lab supports."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.static

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
# Components whose manifest is downloaded: version, URL and sha256 go together.
MANIFESTS = ["flannel", "metallb", "ingress_nginx"]
# The machines students bring: Intel/AMD laptops and Apple Silicon (arm64 guests).
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
# Sections whose downloads are walked here; the boxes (images with sha512, built into boxes)
# are checked with the Vagrantfile and the box build (tests/static/test_cluster_vagrant.py).
DOWNLOAD_SECTIONS = ["kubernetes", "containerd", "runc"]


def version_tuple(text: str) -> tuple[int, ...]:
    """'1.35' -> (1, 35): versions are compared as numbers, never as strings."""
    return tuple(int(part) for part in text.split("."))


def downloads(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping with a `url` under node, with its path in the file (a.b.amd64)."""
    if isinstance(node, dict):
        if "url" in node:
            yield where, node
            return
        for key, value in node.items():
            yield from downloads(value, f"{where}.{key}")


def per_architecture(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping whose values are downloads: one download per architecture."""
    if isinstance(node, dict) and "url" not in node:
        values = list(node.values())
        if values and all(isinstance(value, dict) and "url" in value for value in values):
            yield where, node
            return
        for key, value in node.items():
            yield from per_architecture(value, f"{where}.{key}")


def all_downloads(versions: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [found for section in DOWNLOAD_SECTIONS for found in downloads(versions[section], section)]


def test_every_component_is_pinned(versions: dict[str, Any]) -> None:
    assert set(versions) >= {"architectures", "kubernetes", "containerd", "runc", *MANIFESTS, "images", "boxes"}
    assert set(versions["kubernetes"]) >= {
        "minor", "version", "package", "apt_repository", "apt_key_url", "apt_key_fingerprint",
        "binaries", "cri_tools", "cni_plugins"}
    assert set(versions["kubernetes"]["binaries"]) == {"kubeadm", "kubelet", "kubectl"}
    assert set(versions["containerd"]) >= {"version", "archive", "pause_image"}
    assert set(versions["runc"]) >= {"version", "binary"}
    assert set(versions["images"]) >= {"busybox", "nginx"}


def test_architectures_are_the_ones_students_bring(versions: dict[str, Any]) -> None:
    assert versions["architectures"] == ARCHITECTURES


def test_the_walk_finds_every_download(versions: dict[str, Any]) -> None:
    # kubeadm, kubelet, kubectl, crictl, CNI plugins, containerd, runc: 7 files, 2 architectures.
    assert len(all_downloads(versions)) == 7 * len(ARCHITECTURES)


def test_every_download_has_an_https_url_and_a_checksum(versions: dict[str, Any]) -> None:
    for where, download in all_downloads(versions):
        assert set(download) in ({"url", "sha256"}, {"url", "sha256_url"}), \
            f"{where}: a download is url plus sha256 or sha256_url, got {sorted(download)}"
        assert download["url"].startswith("https://"), f"{where}: {download['url']}"
        if "sha256" in download:
            assert SHA256.match(download["sha256"]), f"{where}: sha256 must be 64 lower-case hex digits"
        else:
            assert download["sha256_url"].startswith("https://"), where
            # The checksum file sits beside the file it describes, on the publisher's site.
            assert download["sha256_url"].startswith(download["url"]), \
                f"{where}: {download['sha256_url']} is not the checksum file of {download['url']}"


def test_every_download_exists_for_every_architecture(versions: dict[str, Any]) -> None:
    groups = [found for section in DOWNLOAD_SECTIONS for found in per_architecture(versions[section], section)]
    assert len(groups) == 7
    for where, group in groups:
        assert set(group) == set(ARCHITECTURES.values()), f"{where}: one download per architecture"
        for arch, download in group.items():
            assert re.search(rf"[-./]{arch}([-./]|$)", download["url"]), \
                f"{where}.{arch}: the URL does not name the architecture: {download['url']}"
        assert len({download["url"] for download in group.values()}) == len(group), f"{where}: the same URL twice"


def test_downloads_name_their_pinned_version(versions: dict[str, Any]) -> None:
    kube = versions["kubernetes"]
    expected = {
        "kubernetes.binaries": f"/v{kube['version']}/",
        "kubernetes.cri_tools": f"/{kube['cri_tools']['version']}/",
        "kubernetes.cni_plugins": f"/{kube['cni_plugins']['version']}/",
        "containerd": f"/v{versions['containerd']['version']}/",
        "runc": f"/v{versions['runc']['version']}/",
    }
    for where, download in all_downloads(versions):
        prefix = next(key for key in expected if where.startswith(key + "."))
        assert expected[prefix] in download["url"], f"{where}: {download['url']} is not release {expected[prefix]}"


def test_containerd_is_a_2x_release(versions: dict[str, Any]) -> None:
    # Kubernetes 1.35 is the last minor that supports containerd 1.x.
    assert version_tuple(versions["containerd"]["version"])[0] >= 2
    assert re.fullmatch(r"\d+\.\d+\.\d+", versions["runc"]["version"])


@pytest.mark.parametrize("component", MANIFESTS)
def test_manifest_pin_is_well_formed(versions: dict[str, Any], component: str) -> None:
    pin = versions[component]
    assert SHA256.match(pin["manifest_sha256"]), f"{component}: sha256 must be 64 lower-case hex digits"
    assert pin["manifest_url"].startswith("https://")
    assert f"/{pin['version']}/" in pin["manifest_url"], f"{component}: the URL must name the pinned release"


def test_kubernetes_pin_is_consistent(versions: dict[str, Any]) -> None:
    kube = versions["kubernetes"]
    assert re.fullmatch(r"\d+\.\d+", kube["minor"])
    assert kube["version"].startswith(kube["minor"] + "."), "the patch must belong to the pinned minor"
    assert kube["package"].startswith(kube["version"] + "-"), "the Debian version must be the pinned patch"
    for url in (kube["apt_repository"], kube["apt_key_url"]):
        assert url.startswith("https://pkgs.k8s.io/") and f"/v{kube['minor']}/" in url
    assert FINGERPRINT.match(kube["apt_key_fingerprint"])
    for name, group in kube["binaries"].items():
        for download in group.values():
            assert download["url"].startswith("https://dl.k8s.io/release/"), download["url"]
            assert download["url"].endswith("/" + name), f"{name}: {download['url']}"
    # crictl follows the Kubernetes minor it is released with.
    assert kube["cri_tools"]["version"].startswith(f"v{kube['minor']}.")


def test_kubernetes_minor_is_one_ingress_nginx_was_tested_with(versions: dict[str, Any]) -> None:
    tested = versions["ingress_nginx"]["kubernetes_tested_up_to"]
    assert version_tuple(versions["kubernetes"]["minor"]) <= version_tuple(tested)


@pytest.mark.parametrize("image", ["busybox", "nginx"])
def test_image_is_pinned_to_a_tag(versions: dict[str, Any], image: str) -> None:
    reference = versions["images"][image]
    name, _, tag = reference.rpartition(":")
    assert name and "/" in name, f"{reference}: name the registry and repository in full"
    assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{reference}: pin a version tag, never latest"


def test_pause_image_is_pinned(versions: dict[str, Any]) -> None:
    assert re.fullmatch(r"registry\.k8s\.io/pause:\d+\.\d+(\.\d+)?", versions["containerd"]["pause_image"])
