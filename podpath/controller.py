"""A warm Ansible controller: one process per checkout that has imported Ansible, podpath and
the lab's modules once, and forks a fresh child for each playbook the CLI runs.

Starting `ansible-playbook` costs about a second on a small machine before its first task
(the interpreter, Ansible's imports, pyroute2's), which is half of a `podpath up` that has
nothing to change. The controller pays it once: each run is a child forked from it, so it
starts with those modules in memory and with nothing else from earlier runs. The child
runs the same `ansible-playbook` code (`PlaybookCLI`) with the same arguments, inventory
and ansible.cfg as the usual way, writes the play's output to the run's log (and to the
user's terminal with --verbose, through the file descriptors the CLI passes it), and sends
the play's events back to the CLI over the socket (plugins/callback/podpath_events.py).

- The controller starts with the first command that runs a playbook, and stops after
  PODPATH_CONTROLLER_IDLE seconds with nothing to do (600 by default), when `podpath down`
  removes the host's last lab, or with `podpath controller stop`.
- It never runs code older than the checkout's: a run whose podpath, plugins, library or
  module_utils files or Ansible package changed since the controller started, or whose
  ANSIBLE_* or PODPATH_* environment differs, makes it exit, and the CLI starts a new one.
- The CLI also passes its lab lock: the child holds it until it exits, and if the CLI
  dies or is interrupted, the child's play is interrupted as Ctrl-C would.
- PODPATH_CONTROLLER=off runs every playbook the usual way (ansible-runner starts
  `ansible-playbook`).

The socket is /run/podpath/.controller/ID.sock, mode 0600 in a folder only root may enter;
ID names the checkout and the Python that runs it.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .labdir import alive
from .topology import ROOT

CONTROL_DIR = Path("/run/podpath/.controller")
DEFAULT_IDLE_S = 600.0
START_TIMEOUT_S = 120.0
CODE_DIRS = ("podpath", "plugins", "library", "module_utils")
HEADER = struct.Struct("!I")  # length of the JSON request that follows it


class Unavailable(RuntimeError):
    """The controller could not be started or reached; the CLI runs the playbook the usual way."""


class RunLost(RuntimeError):
    """A run started in the controller ended without its result (its process died): the play
    failed, and is not run again the usual way."""


def settings_error(env: dict | None = None) -> str | None:
    """What is wrong with PODPATH_CONTROLLER or PODPATH_CONTROLLER_IDLE, and how to fix it."""
    env = os.environ if env is None else env
    switch = env.get("PODPATH_CONTROLLER", "on")
    if switch.strip().lower() not in ("on", "off"):
        return f"PODPATH_CONTROLLER={switch!r} is neither on nor off: set it to off to run playbooks without " \
               "the controller, or unset it"
    raw = env.get("PODPATH_CONTROLLER_IDLE", "")
    try:
        if raw and not float(raw) > 0:
            raise ValueError
    except ValueError:
        return f"PODPATH_CONTROLLER_IDLE={raw!r} is not a positive number of seconds: set it to e.g. 600, or unset it"
    return None


def enabled(env: dict | None = None) -> bool:
    return (os.environ if env is None else env).get("PODPATH_CONTROLLER", "on").strip().lower() != "off"


def idle_seconds(env: dict | None = None) -> float:
    raw = (os.environ if env is None else env).get("PODPATH_CONTROLLER_IDLE", "")
    return float(raw) if raw else DEFAULT_IDLE_S


@functools.lru_cache(maxsize=None)
def ansible_python() -> str:
    """The interpreter `ansible-playbook` runs with (its #! line), which the controller runs
    with too: the lab records the Python its daemons run with, and a run the usual way must
    find them as the controller left them."""
    script = Path(sys.executable).parent / "ansible-playbook"
    try:
        with open(script, "rb") as handle:
            first = handle.readline().decode().strip()
    except OSError:
        return sys.executable
    python = first[2:].strip().split()[0] if first.startswith("#!") and first[2:].strip() else ""
    return python if python and os.access(python, os.X_OK) else sys.executable


def controller_id(root: Path = ROOT, python: str | None = None) -> str:
    python = python or ansible_python()
    return hashlib.sha256(f"{Path(root).resolve()}\0{python}".encode()).hexdigest()[:12]


def socket_path(root: Path = ROOT) -> Path:
    return CONTROL_DIR / f"{controller_id(root)}.sock"


def log_path(root: Path = ROOT) -> Path:
    return CONTROL_DIR / f"{controller_id(root)}.log"


def environment_key(env: dict) -> dict:
    """The part of an environment that changes what Ansible or podpath do once imported."""
    return {k: v for k, v in env.items()
            if k.startswith(("ANSIBLE_", "PODPATH_")) and k != "PODPATH_CONTROLLER_IDLE" or k == "PYTHONPATH"}


def code_fingerprint(root: Path = ROOT) -> str:
    """Path, size and mtime of every file the controller may have imported: the checkout's
    Python code and ansible.cfg, and the installed Ansible and pyroute2 packages' roots."""
    digest = hashlib.sha256()
    files = [Path(root) / "ansible.cfg"]
    for folder in CODE_DIRS:
        files.extend(sorted((Path(root) / folder).rglob("*.py")))
    for package in ("ansible", "pyroute2", "ansible_collections"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec and spec.submodule_search_locations:
            base = Path(list(spec.submodule_search_locations)[0])
            files.extend([base, base / "__init__.py"])
    for path in files:
        try:
            st = path.stat()
        except OSError:
            digest.update(f"{path}:missing\n".encode())
            continue
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# -- the client side (the CLI) -------------------------------------------------------------------
def _connect(path: Path, timeout: float | None = None) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    payload = json.dumps(message).encode()
    socket.send_fds(sock, [HEADER.pack(len(payload))], list(fds))
    sock.sendall(payload)


def _request(message: dict, root: Path = ROOT, timeout: float = 5.0) -> dict | None:
    """Send a one-line request (ping, stop); None when no controller listens."""
    sock = _connect(socket_path(root), timeout)
    if sock is None:
        return None
    with sock:
        sock.settimeout(timeout)
        _send(sock, message)
        line = sock.makefile("rb").readline()
    return json.loads(line) if line else None


def status(root: Path = ROOT) -> dict | None:
    """The running controller's pid, start time, runs so far and idle limit, or None."""
    return _request({"op": "ping"}, root)


def stop(root: Path = ROOT, timeout: float = 10.0) -> int | None:
    """Stop the checkout's controller; wait until it has gone. Returns its pid, or None."""
    answer = _request({"op": "stop"}, root)
    if not answer:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(answer["pid"]):
        time.sleep(0.02)
    return answer["pid"]


def start(env: dict, root: Path = ROOT) -> None:
    """Start the checkout's controller with ENV unless one answers; return once it listens."""
    CONTROL_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(CONTROL_DIR / f"{controller_id(root)}.start", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # two CLIs at once start one controller
        sock = _connect(socket_path(root), 5.0)
        if sock is not None:
            sock.close()
            return
        read_end, write_end = os.pipe()
        with open(log_path(root), "ab") as log:
            try:
                subprocess.Popen([ansible_python(), "-m", "podpath.controller", "serve", str(write_end)],
                                 env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 pass_fds=(write_end,), start_new_session=True)
            finally:
                os.close(write_end)
        answer = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        with os.fdopen(read_end, "rb") as ready:
            while time.monotonic() < deadline:
                if not select.select([ready], [], [], deadline - time.monotonic())[0]:
                    break
                chunk = os.read(ready.fileno(), 4096)
                if not chunk:
                    break
                answer += chunk
        if answer.strip() != b"ready":
            reason = answer.decode(errors="replace").strip() or "it did not say it was ready"
            raise Unavailable(f"the controller did not start: {reason} (log: {log_path(root)})")


def run(playbook: Path, inventory: Path, extravars: dict[str, Any], env: dict, log: Path, verbose: bool,
        on_event: Callable[[dict], None], lock_fd: int | None = None, root: Path = ROOT) -> int:
    """Run PLAYBOOK in a child of the controller (started if needed); call ON_EVENT with each
    event the play sends; return ansible-playbook's exit code."""
    message = {"op": "run", "playbook": str(playbook), "inventory": str(inventory), "extravars": extravars,
               "env": env, "log": str(log), "verbose": verbose, "cwd": str(root)}
    for attempt in (1, 2):
        sock = _connect(socket_path(root))
        if sock is None:
            start(env, root)
            sock = _connect(socket_path(root))
            if sock is None:
                raise Unavailable(f"the controller started but does not answer on {socket_path(root)}")
        with sock:
            fds = [_fileno(sys.stdout), _fileno(sys.stderr)] + ([lock_fd] if lock_fd is not None else [])
            try:
                _send(sock, message, fds)
            except (BrokenPipeError, ConnectionResetError):
                continue  # it was stopping; start a new one
            for line in sock.makefile("rb"):
                event = json.loads(line)
                if "stale" in event:
                    break  # it exits; the next attempt starts a controller with today's code
                if event.get("event") == "done":
                    return int(event["rc"])
                on_event(event)
            else:
                raise RunLost(f"the controller's run of {playbook.name} ended without a result "
                              f"(see {log} and {log_path(root)})")
        _wait_gone(root)
    raise Unavailable("the controller kept restarting")


def _fileno(stream) -> int:
    """STREAM's file descriptor, or /dev/null's where it has none (output captured in memory)."""
    try:
        return stream.fileno()
    except (AttributeError, ValueError, OSError):
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def _wait_gone(root: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and socket_path(root).exists():
        time.sleep(0.01)


# -- the child: one playbook run ----------------------------------------------------------------
_SINK: Callable[[str, dict], None] | None = None


def event_sink() -> Callable[[str, dict], None] | None:
    """Where plugins/callback/podpath_events.py sends events: set only in a controller's child."""
    return _SINK


def _with_events_callback(env: dict) -> dict:
    """ENV with plugins/callback/podpath_events.py enabled beside any callbacks it enables."""
    enabled_now = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    return dict(env, ANSIBLE_CALLBACKS_ENABLED=",".join(enabled_now + ["podpath_events"]))


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> int:
    global _SINK
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(_with_events_callback(request["env"]))
    os.chdir(request["cwd"])
    for fd in fds:  # the CLI's terminal and lab lock: not for the processes the lab starts
        os.set_inheritable(fd, False)
    out_fd = fds[0] if fds else None
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    # the play's output: to the run's log, and to the user's terminal with --verbose
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)

    def tee() -> None:
        while chunk := os.read(read_end, 65536):
            os.write(log, chunk)
            if request.get("verbose") and out_fd is not None:
                try:
                    os.write(out_fd, chunk)
                except OSError:
                    pass

    copier = threading.Thread(target=tee, daemon=True)
    copier.start()

    sending = threading.Lock()

    events = open(Path(request["log"]).with_name("events.jsonl"), "wb")  # for bench/: per-task times

    def send(kind: str, data: dict) -> None:
        line = json.dumps({"event": kind, "event_data": data}, default=str).encode() + b"\n"
        with sending:
            events.write(line)
            try:
                conn.sendall(line)
            except OSError:
                pass

    _SINK = send

    finished = threading.Event()

    def watch() -> None:  # the CLI went away (Ctrl-C, killed): stop the play as Ctrl-C would
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        # as Ctrl-C would; again if Ansible was somewhere that let the first one pass
        for attempt in range(10):
            if finished.wait(1.0 if attempt else 0):
                return
            print(f"{time.strftime('%H:%M:%S')} run {os.getpid()}: the CLI went away, interrupting the play",
                  file=sys.__stderr__, flush=True)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()

    from ansible.cli.playbook import PlaybookCLI

    argv = ["ansible-playbook", request["playbook"], "-i", request["inventory"], "-e", json.dumps(request["extravars"])]
    try:
        PlaybookCLI.cli_executor(argv)
        rc = 0
    except SystemExit as done:
        rc = done.code if isinstance(done.code, int) else 1
    except KeyboardInterrupt:
        rc = 99
    finished.set()
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    copier.join(timeout=5)
    with sending:
        events.close()
        try:
            conn.sendall(json.dumps({"event": "done", "rc": rc}).encode() + b"\n")
        except OSError:
            pass
    return rc


# -- the controller ------------------------------------------------------------------------------
def _preload() -> None:
    """Import what every run needs, so that each child starts with it in memory."""
    import ansible.cli.playbook  # noqa: F401
    import ansible.executor.playbook_executor  # noqa: F401
    import ansible.executor.task_executor  # noqa: F401
    import ansible.plugins.action.normal  # noqa: F401
    import ansible.plugins.callback.default  # noqa: F401
    import ansible.plugins.connection.local  # noqa: F401
    import ansible.plugins.inventory.yaml  # noqa: F401
    import ansible.plugins.strategy.linear  # noqa: F401
    import ansible.modules.set_fact  # noqa: F401

    from . import inprocess

    modules = inprocess.library_names()
    for name in modules:
        inprocess.load_library(name)
    _warm_plugin_loaders(modules)


def _warm_plugin_loaders(modules: list[str]) -> None:
    """Set up Ansible's plugin loader as ansible-playbook does first, and read the
    documentation (the option definitions) of the plugins every play loads: each run would
    otherwise parse the same YAML again (about 0.3 s here). Loaded plugins stay in the
    loaders' caches, which the children inherit."""
    import warnings

    from ansible import constants as C
    from ansible.plugins import loader

    loader.init_plugin_loader([])
    # CLI.run sets the loader up again in each child: it is set up already, and says so
    warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already been configured")
    for plugins in (loader.connection_loader, loader.shell_loader, loader.become_loader, loader.callback_loader):
        list(plugins.all(class_only=True))
    for name in C.INVENTORY_ENABLED:
        loader.inventory_loader.get(name)
    for name in modules + ["normal", "set_fact", "validate_argument_spec"]:
        loader.action_loader.get(name, class_only=True)
    loader.strategy_loader.get(C.DEFAULT_STRATEGY, class_only=True)


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, HEADER.size, 8)
    if len(header) != HEADER.size:
        raise ValueError("short request")
    (size,) = HEADER.unpack(header)
    payload = b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise ValueError("truncated request")
        payload += chunk
    return json.loads(payload), fds


def serve(ready_fd: int) -> int:
    started = time.time()
    try:
        env_key = environment_key(dict(os.environ))
        idle = idle_seconds()
        os.environ.update(_with_events_callback(dict(os.environ)))  # read once, by Ansible's imports
        _preload()
        fingerprint = code_fingerprint()
        path = socket_path()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path.unlink(missing_ok=True)  # a dead controller's; start() holds the start lock
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(16)
        inode = path.stat().st_ino
    except Exception as exc:  # noqa: BLE001 - said to the CLI, which runs the play the usual way
        os.write(ready_fd, f"{type(exc).__name__}: {exc}".encode())
        os.close(ready_fd)
        return 1
    os.write(ready_fd, b"ready")
    os.close(ready_fd)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append("SIGTERM"))
    children: set[int] = set()
    runs = 0
    last_busy = time.monotonic()
    print(f"{time.strftime('%H:%M:%S')} controller {os.getpid()} ready, idle limit {idle:.0f} s", flush=True)
    while not stopping:
        for pid in list(children):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
                    last_busy = time.monotonic()
            except ChildProcessError:
                children.discard(pid)
        if not children and time.monotonic() - last_busy > idle:
            stopping.append(f"idle for {idle:.0f} s")
            break
        try:
            readable = select.select([listener], [], [], 0.5)[0]
        except InterruptedError:
            continue
        if not readable:
            continue
        conn, _ = listener.accept()
        fds: list[int] = []
        try:
            request, fds = _recv_request(conn)
            op = request.get("op")
            if op == "ping":
                conn.sendall(json.dumps({"pid": os.getpid(), "started": started, "runs": runs, "idle_s": idle,
                                         "running": len(children)}).encode() + b"\n")
            elif op == "stop":
                conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
                stopping.append("asked to stop")
            elif op == "run":
                reason = ("the code changed" if code_fingerprint() != fingerprint else
                          "the environment differs" if environment_key(request["env"]) != env_key else None)
                if reason:
                    conn.sendall(json.dumps({"stale": reason}).encode() + b"\n")
                    stopping.append(reason)
                else:
                    runs += 1
                    last_busy = time.monotonic()
                    pid = os.fork()
                    if pid == 0:
                        code = 1
                        try:
                            listener.close()
                            code = _run_child(conn, request, fds)
                        finally:
                            os._exit(code)
                    children.add(pid)
        except (OSError, ValueError) as exc:
            print(f"{time.strftime('%H:%M:%S')} bad request: {exc}", flush=True)
        finally:
            for fd in fds:
                os.close(fd)
            conn.close()
    listener.close()
    try:
        if path.stat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
    print(f"{time.strftime('%H:%M:%S')} controller {os.getpid()} stops: {stopping[0]}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "serve":
        print("usage: python -m podpath.controller serve READY_FD (the CLI starts it)", file=sys.stderr)
        return 2
    return serve(int(argv[2]))


if __name__ == "__main__":
    # run as podpath.controller, not __main__: the callback plugin finds the event sink there
    from podpath.controller import main as package_main

    raise SystemExit(package_main(sys.argv))
