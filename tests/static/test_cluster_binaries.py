"""roles/cluster_kubernetes/tasks/binaries.yml, the fallback used when apt refuses
pkgs.k8s.io, run for real by ansible-playbook on this machine: the release files are served
from a loopback HTTP server with the layout of versions.yml's URLs, and every path the tasks
write to points into a temporary directory. It checks that the node's architecture picks its
own files, that each binary is checked against its checksum (a wrong one stops the run and
installs nothing), and that crictl, the CNI plugins, kubelet's unit and kubeadm's drop-in
land where the role's defaults say."""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest
import yaml

from render_roles import ROOT

pytestmark = [
    pytest.mark.static,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the tasks give the files to root, as on a node: run as root"),
]
TASKS = ROOT / "roles" / "cluster_kubernetes" / "tasks" / "binaries.yml"
TEMPLATES = [ROOT / "roles" / "cluster_kubernetes" / "templates" / name for name in ("kubelet.service.j2", "10-kubeadm.conf.j2")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server of tmp_path/www: (base URL, directory)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(www))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve(www: Path, url: str, data: bytes) -> None:
    path = www / urlsplit(url).path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def local(url: str, base: str) -> str:
    """The same path, served from the loopback server instead of the publisher's host."""
    return base + urlsplit(url).path


def stand_in_releases(kube: dict[str, Any], base: str, www: Path) -> dict[str, Any]:
    """versions.yml's Kubernetes downloads, pointed at the loopback server, each file made up
    and served with the checksum the pin's form asks for (a sha256 pinned or a checksum file)."""
    out: dict[str, Any] = {"binaries": {}, "cri_tools": {}, "cni_plugins": {}}
    for name, group in kube["binaries"].items():
        out["binaries"][name] = {}
        for arch, download in group.items():
            data = f"#!/bin/sh\necho {name} {arch}\n".encode()
            url = local(download["url"], base)
            serve(www, url, data)
            assert "sha256_url" in download, "the binaries are pinned by checksum file"
            serve(www, local(download["sha256_url"], base), sha256(data).encode() + b"\n")
            out["binaries"][name][arch] = {"url": url, "sha256_url": local(download["sha256_url"], base)}
    members = {"cri_tools": lambda arch: {"crictl": f"crictl {arch}\n".encode()},
               "cni_plugins": lambda arch: {"./bridge": f"bridge {arch}\n".encode(),
                                            "./host-local": f"host-local {arch}\n".encode()}}
    for part, make in members.items():
        for arch, download in kube[part]["archive"].items():
            data = tarball(make(arch))
            url = local(download["url"], base)
            serve(www, url, data)
            out[part][arch] = {"url": url, "sha256": sha256(data)}
    return out


def run_tasks(ansible_playbook: str, tmp_path: Path, arch: str,
              releases: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    node = tmp_path / "node"
    play = [{
        "name": "Run the binaries fallback of cluster_kubernetes with every path in a temporary directory",
        "hosts": "localhost",
        "gather_facts": True,
        "vars_files": [str(ROOT / "roles" / "cluster_kubernetes" / "defaults" / "main.yml"),
                       str(ROOT / "inventory" / "group_vars" / "all" / "versions.yml")],
    }]
    # Extra vars, so that they win over the role's defaults loaded above: nothing may point
    # outside the temporary directory.
    overrides = {
        "cluster_kubernetes_arch": arch,
        "cluster_kubernetes_binaries": releases["binaries"],
        "cluster_kubernetes_cri_tools_archive": releases["cri_tools"],
        "cluster_kubernetes_cni_plugins_archive": releases["cni_plugins"],
        "cluster_kubernetes_binaries_dir": str(node / "usr/local/bin"),
        "cluster_kubernetes_cni_bin_dir": str(node / "opt/cni/bin"),
        "cluster_kubernetes_download_dir": str(node / "var/cache/podpath"),
        "cluster_kubernetes_kubelet_unit_path": str(node / "etc/systemd/system/kubelet.service"),
        "cluster_kubernetes_kubeadm_dropin_path": str(node / "etc/systemd/system/kubelet.service.d/10-kubeadm.conf"),
        "cluster_kubernetes_kubelet_defaults_path": str(node / "etc/default/kubelet"),
    }
    # Every directory or file the task file and its templates name must be one of these.
    named = set(re.findall(r"cluster_kubernetes_\w+?_(?:dir|path)\b", TASKS.read_text()
                           + "".join(path.read_text() for path in TEMPLATES)))
    assert named <= set(overrides), f"not redirected into {tmp_path}: {sorted(named - set(overrides))}"
    play[0].update({
        "tasks": [
            {"name": "Create the directory the binaries go to, which a node has already",
             "ansible.builtin.file": {"path": str(node / "usr/local/bin"), "state": "directory", "mode": "0755"}},
            {"name": "Run the role's task file",
             "ansible.builtin.include_tasks": str(TASKS)},
        ],
        # The role's handler restarts kubelet; here it only says it would.
        "handlers": [{"name": "Restart kubelet", "ansible.builtin.debug": {"msg": "kubelet would restart"}}],
    })
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))
    # Outside its role the task file finds the role's templates beside the playbook.
    (tmp_path / "templates").symlink_to(ROOT / "roles" / "cluster_kubernetes" / "templates")
    extra = tmp_path / "overrides.json"
    extra.write_text(json.dumps(overrides))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [ansible_playbook, "-i", "localhost,", "-c", "local", str(playbook),
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def kube(versions: dict[str, Any]) -> dict[str, Any]:
    return versions["kubernetes"]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_binaries_fallback_installs_the_files_of_the_node_architecture(
        tool: Callable[[str], str], server: tuple[str, Path], tmp_path: Path, kube: dict[str, Any],
        arch: str) -> None:
    base, www = server
    result = run_tasks(tool("ansible-playbook"), tmp_path, arch, stand_in_releases(kube, base, www))
    assert result.returncode == 0, result.stdout + result.stderr
    node = tmp_path / "node"
    for name in ("kubeadm", "kubelet", "kubectl"):
        path = node / "usr/local/bin" / name
        assert path.read_text() == f"#!/bin/sh\necho {name} {arch}\n", f"{name}: not the {arch} file"
        assert path.stat().st_mode & 0o777 == 0o755
    assert (node / "usr/local/bin/crictl").read_text() == f"crictl {arch}\n"
    assert (node / "opt/cni/bin/bridge").read_text() == f"bridge {arch}\n"
    assert (node / "opt/cni/bin/host-local").exists()
    unit = (node / "etc/systemd/system/kubelet.service").read_text()
    assert f"ExecStart={node}/usr/local/bin/kubelet\n" in unit
    dropin = (node / "etc/systemd/system/kubelet.service.d/10-kubeadm.conf").read_text()
    assert f"ExecStart={node}/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS" in dropin


def test_a_binary_that_does_not_match_its_checksum_is_refused(
        tool: Callable[[str], str], server: tuple[str, Path], tmp_path: Path, kube: dict[str, Any]) -> None:
    base, www = server
    releases = stand_in_releases(kube, base, www)
    # The download site serves a kubelet other than the one its checksum file describes.
    serve(www, releases["binaries"]["kubelet"]["amd64"]["url"], b"#!/bin/sh\necho tampered\n")
    result = run_tasks(tool("ansible-playbook"), tmp_path, "amd64", releases)
    assert result.returncode != 0
    assert "checksum" in (result.stdout + result.stderr).lower()
    assert not (tmp_path / "node/usr/local/bin/kubelet").exists(), "a file that failed its check was installed"


def test_stand_ins_follow_the_versions_file(kube: dict[str, Any], tmp_path: Path) -> None:
    """The served files sit at the paths versions.yml names, for both architectures."""
    www = tmp_path / "www"
    releases = stand_in_releases(kube, "http://127.0.0.1:1", www)
    for name, group in kube["binaries"].items():
        assert set(releases["binaries"][name]) == set(group) == {"amd64", "arm64"}
        for arch, download in group.items():
            assert (www / urlsplit(download["url"]).path.lstrip("/")).is_file()
    assert yaml.safe_load(yaml.safe_dump(releases)) == releases
