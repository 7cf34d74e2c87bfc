"""Fixtures of the integration tests that run podpath_netns through ansible-playbook.

Every test gets a lab of its own, named 't' + 6 random characters, whose namespaces are
all named '<lab>-...'. Whatever happens in the test, the fixture then removes the lab
with state: absent and, as a safety net, deletes any /run/netns entry with the lab's
prefix, stops the processes still in those namespaces and removes /run/podpath/<lab>.
Nothing is ever created in the host's own namespace; the fixture checks that no link
with the lab's name appeared there.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from labtools import ip_json

from podpath.model import labdir

ROOT = Path(__file__).resolve().parents[2]
NETNS_DIR = Path(labdir.lab.NETNS_DIR)
RUN_ROOT = Path(labdir.RUN_ROOT)
PAUSE = ROOT / ".venv" / "bin" / "podpath-pause"

PLAYBOOK = """\
- name: Apply a netns spec with podpath_netns
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Wire the namespaces as the spec says
      podpath_netns:
        lab: "{{ lab }}"
        state: "{{ state | default('present') }}"
        namespaces: "{{ namespaces | default([]) }}"
        root_links: "{{ root_links | default([]) }}"
        allow_root_namespace: "{{ allow_root_namespace | default(false) }}"
        prune: "{{ prune | default(true) }}"
        purge: "{{ purge | default(false) }}"
        pause: "{{ pause | default(omit) }}"
"""


def find_tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed here (make venv installs ansible-core, make deps iproute2)")
    return found


def random_lab() -> str:
    return "t" + "".join(random.choices(string.ascii_lowercase + string.digits, k=6))


def netns_inode(name: str) -> int | None:
    try:
        return (NETNS_DIR / name).stat().st_ino
    except OSError:
        return None


def net_inode_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def pids_in_netns(name: str) -> list[int]:
    """Processes whose network namespace is the one bound at NETNS_DIR/NAME."""
    inode = netns_inode(name)
    if inode is None:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and net_inode_of(int(entry)) == inode:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_until(predicate, timeout: float = 5.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def host_link_names() -> set[str]:
    return {link["ifname"] for link in ip_json("link", "show")}


@dataclass
class Result:
    """One ansible-playbook run: its exit code, output and the module's result."""
    rc: int
    stdout: str
    stderr: str
    module: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.module.get("changed"))

    @property
    def failed(self) -> bool:
        return bool(self.module.get("failed")) or self.rc != 0

    @property
    def msg(self) -> str:
        return str(self.module.get("msg", ""))

    def __str__(self) -> str:
        return f"rc={self.rc}\nmodule={json.dumps(self.module, indent=1)[:4000]}\nstderr={self.stderr[-2000:]}"


class NetnsLab:
    """A lab of the podpath_netns module, driven through ansible-playbook."""

    def __init__(self, name: str, workdir: Path):
        self.name = name
        self.workdir = workdir
        self.playbook = workdir / "netns.yml"
        self.playbook.write_text(PLAYBOOK)
        self.ansible_playbook = find_tool("ansible-playbook")
        self.runs = 0
        self.foreign: set[str] = set()  # namespaces a test made outside the lab on purpose

    def ns(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    @property
    def lab_dir(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def registry(self) -> Path:
        return self.lab_dir / "netns.json"

    def holder_pidfile(self, netns: str) -> Path:
        return self.lab_dir / "holders" / f"{netns}.pid"

    def holder_pid(self, netns: str) -> int | None:
        try:
            return int(self.holder_pidfile(netns).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def namespaces(self) -> list[str]:
        """The NETNS_DIR entries with this lab's prefix."""
        try:
            return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(self.name + "-"))
        except FileNotFoundError:
            return []

    def run(self, namespaces: Any = None, *, state: str = "present", check: bool = False, diff: bool = False,
            json_output: bool = True, lab: str | None = None, extra_argv: tuple[str, ...] = (),
            **params: Any) -> Result:
        """Run the module once through ansible-playbook, from the repository root so that
        ansible.cfg finds library/ and module_utils/. PARAMS go in as extra vars."""
        self.runs += 1
        variables = {"lab": self.name if lab is None else lab, "state": state}
        if namespaces is not None:
            variables["namespaces"] = namespaces
        if PAUSE.exists():
            variables["pause"] = str(PAUSE)
        variables.update(params)
        vars_file = self.workdir / f"vars-{self.runs}.json"
        vars_file.write_text(json.dumps(variables, indent=1))
        argv = [self.ansible_playbook, str(self.playbook), "-e", f"@{vars_file}"]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        argv += list(extra_argv)
        env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0")
        if json_output:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        result = Result(done.returncode, done.stdout, done.stderr)
        if json_output:
            try:
                tasks = json.loads(done.stdout)["plays"][0]["tasks"]
                result.module = tasks[0]["hosts"]["localhost"]
            except (ValueError, KeyError, IndexError) as exc:
                raise AssertionError(f"ansible-playbook printed no result ({exc}):\n{done.stdout[-3000:]}\n"
                                     f"{done.stderr[-3000:]}")
        return result

    def apply(self, namespaces: Any = None, **kwargs: Any) -> Result:
        """Run and insist that it worked."""
        result = self.run(namespaces, **kwargs)
        assert not result.failed, str(result)
        return result

    # -- the safety net --------------------------------------------------------------
    def force_cleanup(self) -> list[str]:
        """Remove whatever the lab left, without the module. Returns what it had to remove."""
        leftovers = []
        for netns in self.namespaces():
            for pid in pids_in_netns(netns):
                leftovers.append(f"process {pid} in {netns}")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30)
            leftovers.append(f"namespace {netns}")
        holders = self.lab_dir / "holders"
        if holders.is_dir():
            for pidfile in holders.glob("*.pid"):
                pid = self.holder_pid(pidfile.name[:-4])
                if pid and alive(pid) and self.name in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                    leftovers.append(f"holder {pid}")
                    os.kill(pid, signal.SIGKILL)
        if self.registry.exists():
            leftovers.append(f"registry {self.registry}")
        shutil.rmtree(self.lab_dir, ignore_errors=True)
        return leftovers


@pytest.fixture(scope="session")
def root_required() -> None:
    if os.geteuid() != 0:
        pytest.skip("podpath_netns creates network namespaces: run the integration tests as root")
    find_tool("ip")
    find_tool("ansible-playbook")
    try:
        import ansible_collections.ansible.posix  # noqa: F401  (the json callback)
    except ImportError:
        pytest.skip("ansible.posix (its json callback) is missing: make venv installs it with the 'ansible' package")


def _lab(workdir: Path) -> Iterator[NetnsLab]:
    lab = NetnsLab(random_lab(), workdir)
    before = host_link_names()
    try:
        yield lab
    finally:
        absent = lab.run(state="absent")
        leftovers = lab.force_cleanup()
        after = host_link_names()
        leaked = sorted(name for name in after - before if lab.name in name)
        assert not absent.failed, f"state: absent failed for lab {lab.name}:\n{absent}"
        assert not leaked, f"links of lab {lab.name} appeared in the host's namespace: {leaked}"
        assert not [x for x in leftovers if x.startswith("namespace") and x.split()[1] not in lab.foreign], (
            f"state: absent left these behind (now force-removed): {leftovers}")


@pytest.fixture
def netns_lab(root_required, tmp_path) -> Iterator[NetnsLab]:
    """A lab of its own for one test, always removed afterwards."""
    yield from _lab(tmp_path)


@pytest.fixture
def other_lab(root_required, tmp_path) -> Iterator[NetnsLab]:
    """A second lab, for tests of ownership between labs."""
    workdir = tmp_path / "other"
    workdir.mkdir()
    yield from _lab(workdir)


@pytest.fixture(scope="module")
def module_lab(root_required, tmp_path_factory) -> Iterator[NetnsLab]:
    """A lab shared by the read-only tests of one module, removed after the last of them."""
    yield from _lab(tmp_path_factory.mktemp("netns"))


@pytest.fixture
def lab_names():
    """Names of labs a test builds with `podpath up` (it appends them): each is taken down
    afterwards, and removed by force if `down` failed or left anything."""
    from labtools import force_remove, lab_namespaces, podpath

    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root")
    names: list[str] = []
    yield names
    for name in names:
        down = podpath("down", "--lab", name, "-q")
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
