"""An OpenSSH server of the test's own, on 127.0.0.1, for tests that drive this host over SSH.

`ssh_server()` (a context manager; `sshd_server` below is the pytest fixture, module-scoped: a
test module takes it with `from sshd import sshd_server`) starts Debian's
/usr/sbin/sshd as root on a free high port of 127.0.0.1, with everything in a temporary folder:
its own sshd_config, host key, a key pair made for the test (the client's private key and
the server's authorized_keys) and its log. Nothing of the host's /etc/ssh is read or
changed: the server reads only its own sshd_config (-f), and the client side uses
`ssh -F none` with the test's known_hosts. sshd needs its privilege-separation folder
(/run/sshd); it is made when missing and removed again at the end. The server is stopped
and the folder removed when the block ends, also when the test fails.

    with ssh_server() as server:
        server.run("id -u")                       # a command over SSH, as root
        server.inventory_vars()                   # ansible_host, ansible_port, key, user
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT_S = 10.0

CONFIG = """\
# sshd_config of one test run: nothing here comes from /etc/ssh
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
LogLevel VERBOSE
MaxStartups 100:30:200
MaxSessions 100
"""


class SSHServerMissing(RuntimeError):
    """What the server needs is not here (the message says what and how to get it)."""


def free_port() -> int:
    """A free TCP port of 127.0.0.1 above 20000, as the kernel hands one out."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port > 20000:
            return port
    raise RuntimeError("no free port above 20000 on 127.0.0.1")


@dataclass
class SSHServer:
    folder: Path
    port: int
    key: Path  # the client's private key
    known_hosts: Path
    process: subprocess.Popen

    host = "127.0.0.1"
    user = "root"

    @property
    def log(self) -> str:
        path = self.folder / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ssh_argv(self) -> list[str]:
        return ["ssh", "-F", "none", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", f"{self.user}@{self.host}"]

    def run(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([*self.ssh_argv(), command], capture_output=True, text=True, timeout=timeout)

    def inventory_vars(self) -> dict[str, object]:
        """The connection variables of an Ansible host that reaches this server."""
        return {"ansible_host": self.host, "ansible_port": self.port, "ansible_user": self.user,
                "ansible_ssh_private_key_file": str(self.key),
                "ansible_ssh_common_args": f"-F none -o IdentitiesOnly=yes -o UserKnownHostsFile={self.known_hosts} "
                                           "-o StrictHostKeyChecking=yes"}


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def _wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s:\n"
                       f"{log.read_text(errors='replace')}")


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise SSHServerMissing("the test's sshd runs as root (it logs in as root, as the fleet's become does)")
    for tool, package in ((SSHD, "openssh-server"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client")):
        if shutil.which(tool) is None:
            raise SSHServerMissing(f"{tool} is not installed: apt-get install {package} (make deps installs it)")


@contextlib.contextmanager
def ssh_server() -> Iterator[SSHServer]:
    """Start the test's sshd; stop it and remove everything it made when the block ends."""
    check_prerequisites()
    folder = Path(tempfile.mkdtemp(prefix="podpath-sshd-"))
    made_privsep = False
    process = None
    try:
        os.chmod(folder, 0o700)
        _keygen(folder / "host_ed25519_key", "podpath test sshd host key")
        _keygen(folder / "client_key", "podpath test client key")
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        port = free_port()
        host_key = (folder / "host_ed25519_key.pub").read_text().split()
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        config = folder / "sshd_config"
        config.write_text(CONFIG.format(port=port, dir=folder))
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
            made_privsep = True
        check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd refused the test's configuration: {check.stderr.strip()}")
        log = folder / "sshd.log"
        process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_listening(port, process, log)
        yield SSHServer(folder=folder, port=port, key=folder / "client_key", known_hosts=known_hosts,
                        process=process)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)
        if made_privsep:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _stop(process: subprocess.Popen) -> None:
    """Stop sshd and the connections it still serves: each is a child of the listener in a
    session of its own (a client's ControlPersist master keeps one open after its command)."""
    for pid in _children(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[SSHServer]:
    """The test's sshd on 127.0.0.1 for a whole test module; skips, saying why, where it cannot run."""
    try:
        check_prerequisites()
    except SSHServerMissing as missing:
        pytest.skip(str(missing))
    with ssh_server() as server:
        yield server
