"""Labs without root (docs/rootless.md), for real.

Two unprivileged users, made for this test (homes in a temporary folder, subordinate ID
ranges of their own), each build a lab named `rlab` in a sandbox of their own, verify it
(podpath verify and pytest), use the article's tools in it, and try many ways to reach the
other's lab: every one fails and both labs still verify. A third user without subordinate IDs
is told why before anything is built. Root builds a lab of the same name, lists, verifies and
removes every user's lab. The host's network namespace (links, addresses, routes, rules) is
the same before and after, and everything goes at the end: the users, their processes, homes
and subordinate ID lines, leaving /etc/passwd, /etc/subuid and the rest as they were.

The users run podpath from this checkout when every user can read it and its venv's Python.
Otherwise (a venv made from an interpreter in root's home, a checkout in a closed folder)
they run it from a clone of this repository (its committed HEAD) in a temporary folder, with
a venv made from the system's python3; how long that took is printed.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from podpath import sandbox
from podpath.model.plan import build
from podpath.model.topology import load

ROOT = Path(__file__).resolve().parents[2]
LAB = "rlab"
SYSTEM_PYTHON = "/usr/bin/python3"
ETC = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid")
ALL_PASSED = re.compile(r"19 scenarios, 18 run, \d+ checks: all passed")
NAMESPACE_KINDS = ("user", "mount", "net", "pid", "uts", "ipc", "cgroup", "time")
pytestmark = pytest.mark.slow


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path
    subuids: list[tuple[int, int]] = field(default_factory=list)

    def host_uid(self, inside: int) -> int:
        """The host's uid of uid INSIDE of this user's sandbox."""
        if inside == 0:
            return self.uid
        first, _count = self.subuids[0]
        return first + inside - 1


def closed_to_others(path: Path) -> str | None:
    """Why a user who is not root cannot reach PATH (None: they can): a folder on the way
    without o+x, or the file itself without o+r."""
    real = path.resolve()
    for folder in reversed(real.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return f"{folder} is closed to other users (mode {folder.stat().st_mode & 0o777:o})"
    if not real.stat().st_mode & stat.S_IROTH:
        return f"{real} cannot be read by other users"
    return None


def _normalized(text: str) -> str:
    """Command output without what changes by itself (lifetimes, counters)."""
    text = re.sub(r"\b(valid_lft|preferred_lft|expires) \d+sec", r"\1 Nsec", text)
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


def host_net_state() -> dict[str, str]:
    """The host's network namespace: links, addresses, routes, policy rules and nftables rules."""
    commands = {"links": ["ip", "-o", "link", "show"], "addresses": ["ip", "-o", "addr", "show"],
                "routes": ["ip", "route", "show", "table", "all"], "routes6": ["ip", "-6", "route", "show", "table", "all"],
                "rules": ["ip", "rule", "show"], "rules6": ["ip", "-6", "rule", "show"],
                "nftables": ["nft", "list", "ruleset"]}
    return {key: _normalized(subprocess.run(argv, capture_output=True, text=True).stdout)
            for key, argv in commands.items()}


def etc_files() -> dict[str, bytes]:
    return {path: Path(path).read_bytes() for path in ETC if Path(path).exists()}


def ranges_in_use() -> int:
    """The first ID after every subordinate range /etc/subuid and /etc/subgid give."""
    end = 100000
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines() if Path(path).exists() else []:
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def add_user(name: str, home: Path, subids: bool) -> User:
    argv = ["useradd", "-m", "-d", str(home), "-s", "/bin/bash", "-K", "HOME_MODE=0700"]
    if not subids:
        argv += ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
    subprocess.run(argv + [name], check=True, capture_output=True)
    entry = pwd.getpwnam(name)
    if subids and not sandbox.subordinate_ranges(entry, "/etc/subuid"):  # this useradd gives none by itself
        first = ranges_in_use()
        span = f"{first}-{first + 65535}"
        subprocess.run(["usermod", "--add-subuids", span, "--add-subgids", span, name], check=True, capture_output=True)
    user = User(name, entry.pw_uid, entry.pw_gid, home, sandbox.subordinate_ranges(entry, "/etc/subuid"))
    assert bool(user.subuids) == subids, f"user {name}: subordinate IDs {user.subuids}"
    return user


def processes_of(user: User) -> list[int]:
    """Pids of every process that runs as USER or as one of USER's subordinate IDs."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = int(Path(f"/proc/{entry}/status").read_text().split("\nUid:\t", 1)[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if uid == user.uid or any(first <= uid < first + count for first, count in user.subuids):
            found.append(int(entry))
    return found


def remove_user(user: User) -> None:
    """The user's sandboxes (whose end ends every process in them), then what is left of their
    processes, each by its pid, then the user with their home and subordinate ID lines."""
    for box in sandbox.sandboxes(user.uid):
        sandbox.stop(box)
    deadline = time.monotonic() + 10
    while (left := processes_of(user)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    try:
        pwd.getpwnam(user.name)
    except KeyError:
        return
    subprocess.run(["userdel", "-r", user.name], capture_output=True)
    for path in ("/etc/subuid", "/etc/subgid"):
        if any(line.startswith(user.name + ":") for line in Path(path).read_text().splitlines()):
            raise AssertionError(f"userdel left {user.name}'s line in {path}")


@dataclass
class World:
    checkout: Path
    users: dict[str, User]
    tmp: Path
    etc_before: dict[str, bytes]
    net_before: dict[str, str]

    @property
    def podpath(self) -> str:
        return str(self.checkout / ".venv" / "bin" / "podpath")

    def as_user(self, who: str, *argv: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        user = self.users[who]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user.home), "USER": user.name,
               "LOGNAME": user.name, "LANG": "C.UTF-8", "SHELL": "/bin/bash"}
        return subprocess.run(list(argv), user=user.uid, group=user.gid, extra_groups=[], env=env,
                              cwd=str(cwd or user.home), capture_output=True, text=True, timeout=timeout)

    def podpath_as(self, who: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.as_user(who, self.podpath, *args, timeout=timeout)

    def as_root(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([self.podpath, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.tmp))

    def shell(self, who: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.podpath_as(who, "shell", "--lab", LAB, "--", "sh", "-c", command, timeout=timeout)

    def netns_inode(self, who: str, name: str = f"{LAB}-cp1") -> str:
        done = self.shell(who, f"stat -L -c %i /run/netns/{name}")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def make_copy(tmp: Path) -> tuple[Path, float]:
    """A clone of this repository with a venv from the system's python3 and podpath's programs
    built, all readable by every user; with the seconds it took."""
    started = time.monotonic()
    checkout = tmp / "checkout"
    steps = [["git", "clone", "-q", str(ROOT), str(checkout)],
             [SYSTEM_PYTHON, "-m", "venv", str(checkout / ".venv")],
             [str(checkout / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "-e", str(checkout)],
             [str(checkout / ".venv" / "bin" / "python"), "-m", "podpath.runtime.pause_build"]]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode:
            pytest.skip(f"cannot make a copy of the checkout every user can run ({' '.join(argv[:4])}): "
                        f"{(done.stderr or done.stdout).strip()[-400:]}")
    return checkout, time.monotonic() - started


@pytest.fixture(scope="module")
def world():
    if os.geteuid() != 0:
        pytest.skip("making users and reading every user's sandbox needs root")
    for tool in ("useradd", "userdel", "usermod", "newuidmap", "newgidmap", "git"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make deps installs uidmap; useradd is Debian's passwd)")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is missing: the users' podpath runs with the system's Python (make deps)")
    tmp = Path(tempfile.mkdtemp(prefix="podpath-rootless-"))
    os.chmod(tmp, 0o755)  # our own folder: the users reach the copy and their homes through it
    why = closed_to_others(ROOT) or closed_to_others(ROOT / ".venv" / "bin" / "python")
    if why:
        checkout, seconds = make_copy(tmp)
        print(f"\nthe checkout cannot be used by other users ({why}): they run a copy in {checkout}, made (git clone, "
              f"venv from {SYSTEM_PYTHON}, pip install, programs built) in {seconds:.1f} s")
    else:
        checkout = ROOT
    etc_before, net_before = etc_files(), host_net_state()
    tag = f"rl{os.getpid() % 100000}"
    users: dict[str, User] = {}
    made = World(checkout, users, tmp, etc_before, net_before)
    try:
        users["a"] = add_user(tag + "a", tmp / "home-a", subids=True)
        users["b"] = add_user(tag + "b", tmp / "home-b", subids=True)
        users["c"] = add_user(tag + "c", tmp / "home-c", subids=False)
        a, b = users["a"].subuids[0], users["b"].subuids[0]
        assert a[0] + a[1] <= b[0] or b[0] + b[1] <= a[0], f"the users' subordinate ranges overlap: {a} {b}"
        yield made
    finally:
        subprocess.run([made.podpath, "down", "--lab", LAB], capture_output=True, cwd=str(tmp), timeout=300)
        for user in users.values():
            remove_user(user)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def built(world):
    """Each of the users a and b builds lab rlab: {user: up's result}."""
    return {who: world.podpath_as(who, "up", "--lab", LAB) for who in ("a", "b")}


def test_each_user_builds_and_verifies_a_lab_of_the_same_name(world, built):
    for who in ("a", "b"):
        assert built[who].returncode == 0, f"up as {who}: {built[who].stderr[-2000:]}"
        done = world.podpath_as(who, "verify", "--lab", LAB)
        assert done.returncode == 0 and ALL_PASSED.search(done.stdout), f"verify as {who}:\n{done.stdout[-3000:]}"
    assert world.netns_inode("a") != world.netns_inode("b"), "the two users' labs share a namespace"
    assert not any(name.startswith(f"{LAB}-") for name in os.listdir("/run/netns")), \
        "a user's lab is bound in the host's /run/netns"
    listed = world.podpath_as("a", "labs")
    assert listed.returncode == 0 and re.search(rf"^{LAB}\s+12\s+21/21\s+ok$", listed.stdout, re.M), listed.stdout


def test_pytest_verifies_the_users_own_lab(world, built):
    done = world.as_user("a", str(world.checkout / ".venv" / "bin" / "pytest"), "--hosts=local://", "tests/verify",
                         "--lab", LAB, "-q", "-p", "no:cacheprovider", cwd=world.checkout)
    assert done.returncode == 0 and ALL_PASSED.search(done.stdout), done.stdout[-3000:] + done.stderr[-2000:]


def test_the_articles_commands_work_in_the_users_lab_shell(world, built):
    plan = build(load(None), LAB)
    address, host = plan.ingress_service.load_balancer_ip, plan.ingress_host
    commands = {
        "ls /var/run/netns": f"{LAB}-client",
        f"ip netns exec {LAB}-worker1 iptables-save -t nat": "KUBE-SERVICES",
        f"ip netns exec {LAB}-worker1 nft list tables": "table ip nat",
        f"ip netns exec {LAB}-worker1 conntrack -L": "flow entries have been shown",
        f"ip netns exec {LAB}-client curl -s -m 5 -H 'Host: {host}' http://{address}/": "echo-",
        f"ip netns exec {LAB}-client arping -c 1 -w 3 -i eth0 {address}": "1 packets received",
        "lsns -t net -o NS,PID,COMMAND": "podpath-pause",
        # tcpdump drops to user tcpdump, which only the subordinate IDs give the sandbox
        f"ip netns exec {LAB}-client sh -c 'timeout 10 tcpdump -nn -c 1 -i eth0 arp 2>&1 & sleep 1; "
        f"arping -q -c 1 -w 2 -i eth0 {address}; wait'": "1 packet captured",
        "id -u; cat /proc/self/uid_map": "0\n",
    }
    for command, expected in commands.items():
        done = world.shell("a", command)
        said = done.stdout + done.stderr
        assert done.returncode == 0 and expected in said, f"{command}: exit {done.returncode}\n{said[-1500:]}"
    for verb in (["status"], ["trace"]):
        done = world.podpath_as("a", *verb, "--lab", LAB)
        assert done.returncode == 0, f"{verb}: {done.stdout[-1500:]}{done.stderr[-1500:]}"


def test_a_drill_runs_in_the_users_lab(world, built):
    started = world.podpath_as("a", "drill", "start", "--seed", "3", "--lab", LAB)
    assert started.returncode == 0, started.stdout + started.stderr
    checked = world.podpath_as("a", "drill", "check", "--lab", LAB)
    assert checked.returncode == 1 and "not fixed yet" in checked.stdout, checked.stdout + checked.stderr
    revealed = world.podpath_as("a", "drill", "reveal", "--lab", LAB)
    assert revealed.returncode == 0 and "repairs it" in revealed.stdout, revealed.stdout + revealed.stderr
    repaired = world.podpath_as("a", "up", "--lab", LAB)
    assert repaired.returncode == 0, repaired.stderr[-2000:]


def _of(world, who: str, comm: str, uid: int | None = None) -> int:
    """A pid (host's) of a process of WHO's lab running COMM (as host uid UID, when given)."""
    user = world.users[who]
    for pid in processes_of(user):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            owner = int(Path(f"/proc/{pid}/status").read_text().split("\nUid:\t", 1)[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if name == comm and (uid is None or owner == uid) and not sandbox.is_sandbox(pid, user.uid):
            return pid
    raise AssertionError(f"no {comm} of user {who}'s lab runs")


def test_nobody_reaches_the_other_users_lab(world, built):
    a, b = world.users["a"], world.users["b"]
    box = sandbox.sandboxes(a.uid)[0]
    pause = _of(world, "a", "podpath-pause")
    worker = _of(world, "a", "nginx", uid=a.host_uid(65534))  # a worker, dropped to nobody in a's sandbox
    inode_a = world.netns_inode("a")
    inode_b = world.netns_inode("b")
    state = a.home / ".local" / "state" / "podpath"
    attempts = {
        "ip netns exec on the host": ["ip", "netns", "exec", f"{LAB}-cp1", "true"],
        "nsenter into the sandbox's user and mount namespaces": ["nsenter", "-t", str(box.pid), "--user", "--mount",
                                                                 "true"],
        "kill the sandbox": ["kill", "-TERM", str(box.pid)],
        "kill a worker of the lab's nginx": ["kill", "-KILL", str(worker)],
        "the sandbox's /run through /proc/<pid>/root": ["ls", f"/proc/{box.pid}/root/run/podpath"],
        "a pause's namespace link": ["readlink", f"/proc/{pause}/ns/net"],
        "a pause's environment": ["cat", f"/proc/{pause}/environ"],
        "the sandbox's pidfile": ["cat", str(state / "sandbox.pid")],
        "the state folder": ["ls", str(state)],
        "podpath status --user": [world.podpath, "status", "--user", a.name, "--lab", LAB],
        "podpath verify --user": [world.podpath, "verify", "--user", a.name, "--lab", LAB],
        "podpath down --user": [world.podpath, "down", "--user", a.name, "--lab", LAB],
        "podpath shell --user": [world.podpath, "shell", "--user", a.name, "--lab", LAB, "--", "true"],
        "podpath labs --all-users": [world.podpath, "labs", "--all-users"],
    }
    attempts.update({f"nsenter --{kind} into a pause's": ["nsenter", "-t", str(pause), f"--{kind}", "true"]
                     for kind in NAMESPACE_KINDS})
    reached = {}
    for what, argv in attempts.items():
        done = world.as_user("b", *argv, timeout=120)
        if done.returncode == 0:
            reached[what] = done.stdout[-300:]
    assert not reached, f"user b reached user a's lab: {reached}"
    # what b sees of the host's namespaces holds none of a's
    listed = world.as_user("b", "lsns", "-t", "net", "-o", "NS", "--noheadings")
    assert inode_a not in listed.stdout.split(), "b lists a namespace of a's lab"
    assert not [n for n in world.as_user("b", "ls", "/run/netns").stdout.split() if n.startswith(LAB)]
    # every verb b runs with --lab rlab reaches b's own lab, also with a pidfile that names a's sandbox, a link to
    # a's, or a FIFO; root, asked about b, never lands in a's sandbox either
    b_state = b.home / ".local" / "state" / "podpath"
    planted = {"a pidfile naming a's sandbox": f"echo '{box.pid} {box.start}' > {b_state}/sandbox.pid",
               "a link to a's pidfile": f"ln -sf {state}/sandbox.pid {b_state}/sandbox.pid",
               "a FIFO": f"rm -f {b_state}/sandbox.pid && mkfifo {b_state}/sandbox.pid"}
    for what, command in planted.items():
        assert world.as_user("b", "sh", "-c", command).returncode == 0, what
        assert world.netns_inode("b") == inode_b, f"with {what}, b's shell is not in b's lab"
        seen = subprocess.run([world.podpath, "shell", "--user", b.name, "--lab", LAB, "--", "stat", "-L", "-c", "%i",
                               f"/run/netns/{LAB}-cp1"], capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0 and seen.stdout.strip() == inode_b, f"with {what}, root --user b: {seen}"
        labs = world.as_root("labs", "--all-users", "--json", timeout=60)
        users = sorted((item["user"], item["lab"]) for item in json.loads(labs.stdout) if item["lab"] == LAB)
        assert users == sorted([(a.name, LAB), (b.name, LAB)]), f"with {what}: {users}"
    world.as_user("b", "rm", "-f", str(b_state / "sandbox.pid"))
    # and both labs are whole
    assert sandbox.is_sandbox(box.pid, a.uid, box.start), "a's sandbox has gone"
    for who in ("a", "b"):
        done = world.podpath_as(who, "verify", "--lab", LAB)
        assert done.returncode == 0 and ALL_PASSED.search(done.stdout), f"verify as {who}:\n{done.stdout[-3000:]}"


def test_the_kernel_keeps_a_users_lab_out_of_the_hosts_namespace(world, built):
    # fd 7 is the host's network namespace, opened by the user on the host and passed into the sandbox
    moved = world.as_user("a", "bash", "-c", f"exec 7</proc/self/ns/net; {world.podpath} shell --lab {LAB} -- "
                                             "ip link add rlz0 type veth peer name rlz1 netns /proc/self/fd/7")
    assert moved.returncode != 0 and "Operation not permitted" in moved.stderr, moved.stdout + moved.stderr
    entered = world.as_user("a", "bash", "-c", f"exec 7</proc/self/ns/net; {world.podpath} shell --lab {LAB} -- "
                                               "nsenter --net=/proc/self/fd/7 ip link add rlz2 type dummy")
    assert entered.returncode != 0, entered.stdout + entered.stderr
    assert host_net_state() == world.net_before, "the host's network namespace changed"


def test_a_lab_named_as_root_names_its_own_stays_each_owners(world, built):
    up = world.as_root("up", "--lab", LAB)
    assert up.returncode == 0, up.stderr[-2000:]
    try:
        shell = world.as_root("shell", "--lab", LAB, "--", "stat", "-L", "-c", "%i", f"/run/netns/{LAB}-cp1")
        assert shell.returncode == 0, shell.stderr
        inode_root = shell.stdout.strip()
        assert inode_root not in (world.netns_inode("a"), world.netns_inode("b"))
        banner = subprocess.run([world.podpath, "shell", "--lab", LAB], input="exit\n", capture_output=True,
                                text=True, timeout=60)
        assert f"a shell for lab {LAB}, in this host's namespaces" in banner.stderr, banner.stderr
    finally:
        down = world.as_root("down", "--lab", LAB)
    assert down.returncode == 0, down.stderr[-2000:]
    for who in ("a", "b"):
        done = world.podpath_as(who, "status", "--lab", LAB)
        assert done.returncode == 0, f"{who}'s lab after root's down: {done.stdout[-1500:]}"


def test_root_lists_verifies_and_removes_every_users_lab(world, built):
    a, b = world.users["a"], world.users["b"]
    listed = world.as_root("labs", "--all-users", "--json")
    found = {(item["user"], item["lab"]) for item in json.loads(listed.stdout)}
    assert {(a.name, LAB), (b.name, LAB)} <= found, listed.stdout
    assert not [item for item in json.loads(listed.stdout) if item["user"] == world.users["c"].name]
    # root's environment and descriptors stay root's, and the terminal is not the command's own (no TIOCSTI)
    secret = os.open("/etc/shadow", os.O_RDONLY)  # inheritable below
    try:
        looked = subprocess.run([world.podpath, "shell", "--user", a.name, "--lab", LAB, "--", "sh", "-c",
                                 f'env; [ -e /proc/$$/fd/{secret} ] && echo fd LEAKED || echo fd closed; '
                                 'echo session $$ $(cut -d" " -f6 /proc/$$/stat)'],
                                capture_output=True, text=True, timeout=60, pass_fds=(secret,),
                                env=dict(os.environ, ROOTS_SECRET="s3cret"), cwd=str(world.tmp))
    finally:
        os.close(secret)
    assert looked.returncode == 0, looked.stderr
    assert "ROOTS_SECRET" not in looked.stdout and f"HOME={a.home}" in looked.stdout, looked.stdout
    assert "fd closed" in looked.stdout, "a descriptor root had (of /etc/shadow) reached a's sandbox"
    _, pid, session = next(line for line in looked.stdout.splitlines() if line.startswith("session ")).split()
    assert pid == session, "root's command in a's sandbox shares root's session (and terminal)"
    verified = world.as_root("verify", "--user", a.name, "--lab", LAB)
    assert verified.returncode == 0 and ALL_PASSED.search(verified.stdout), verified.stdout[-3000:]
    down = world.as_root("down", "--user", b.name, "--lab", LAB)
    assert down.returncode == 0, down.stderr[-2000:]
    deadline = time.monotonic() + 10
    while processes_of(b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandbox.sandboxes(b.uid) and not processes_of(b), "b's sandbox or a process of b is left"
    assert world.podpath_as("a", "status", "--lab", LAB).returncode == 0, "a's lab went with b's"


def test_a_user_without_subordinate_ids_is_told_before_anything_is_built(world):
    c = world.users["c"]
    done = world.podpath_as("c", "up", "--lab", LAB)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "usermod --add-subuids" in done.stderr and "nobody" in done.stderr, done.stderr
    assert not processes_of(c) and not sandbox.sandboxes(c.uid)
    assert not (c.home / ".local" / "state" / "podpath" / "sandbox.pid").exists()


def test_everything_goes_at_the_end(world, built):
    a = world.users["a"]
    down = world.podpath_as("a", "down", "--lab", LAB)
    assert down.returncode == 0, down.stderr[-2000:]
    deadline = time.monotonic() + 10
    while processes_of(a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sandbox.sandboxes(a.uid) and not processes_of(a), "the last down left a's sandbox or a process"
    for user in world.users.values():
        remove_user(user)
        assert not processes_of(user)
    assert etc_files() == world.etc_before, "the users' files in /etc are not as they were"
    assert host_net_state() == world.net_before, "the host's network namespace changed"
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{LAB}-")]
