"""The versions file of the cluster lab: complete, well-formed and self-consistent."""
from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.static

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")
# Components whose manifest is downloaded: version, URL and sha256 go together.
MANIFESTS = ["flannel", "metallb", "ingress_nginx"]
PROVIDERS = ["virtualbox", "libvirt"]


def version_tuple(text: str) -> tuple[int, ...]:
    """'1.35' -> (1, 35): versions are compared as numbers, never as strings."""
    return tuple(int(part) for part in text.split("."))


def test_every_component_is_pinned(versions: dict[str, Any]) -> None:
    assert set(versions) >= {"kubernetes", "containerd", *MANIFESTS, "images", "boxes"}
    assert set(versions["kubernetes"]) >= {
        "minor", "version", "package", "apt_repository", "apt_key_url", "apt_key_fingerprint"}
    assert set(versions["containerd"]) >= {"package", "pause_image"}
    assert set(versions["images"]) >= {"busybox", "nginx"}


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


@pytest.mark.parametrize("provider", PROVIDERS)
def test_box_is_pinned_per_provider(versions: dict[str, Any], provider: str) -> None:
    box = versions["boxes"][provider]
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", box["name"])
    assert isinstance(box["version"], str) and re.fullmatch(r"\d+(\.\d+)+", box["version"]), \
        "a box version is an exact version string, never a constraint"
