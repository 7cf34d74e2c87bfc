"""What the lab's small Python daemons (the node processes) share: their log line,
how they read their configuration files, how they write a state file that others read, how
a node process sleeps until a file it follows changed (its doorbell) without looking again
and again (its loop's `Waiter`), and how it runs a command (`run`).

It imports little (no dataclasses, no ctypes, no subprocess, no selectors; signal's C half,
without the enums signal makes; json's C half, without the json package, which loads re and
enum): each of these modules is memory in every daemon of every lab (docs/performance.md)."""
from __future__ import annotations

import _signal as signal  # signal without its enums
import os
import select
import stat
import sys
import time

try:  # CPython
    from _json import encode_basestring_ascii as _json_string, make_scanner as _make_scanner
except ImportError:  # pragma: no cover - another Python: the json package does it all
    _make_scanner = None


def log(message: str) -> None:
    """One line to the daemon's log (its stdout, which the lab sends to a file); the speaker
    (podpath/runtime/speaker.c) writes its lines the same way."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


NETNS_DIR = "/run/netns"


def refuse_outside(netns: str | None, program: str) -> None:
    """Exit 2 unless this process is in the lab's namespace NETNS (bound under /run/netns): a
    daemon that applies firewall rules and sends probes must never do so in the host's own
    namespace, nor in another lab's. Nothing to compare with when NETNS is not given."""
    if not netns:
        return
    try:
        here, there = os.stat("/proc/self/ns/net"), os.stat(f"{NETNS_DIR}/{netns}")
        inside = (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
        why = "it runs in another network namespace"
    except OSError as exc:
        inside, why = False, f"that namespace cannot be read ({exc.strerror})"
    if not inside:
        print(f"podpath.runtime.{program}: refused: it applies kube-proxy's rules and probes pods, so it runs only "
              f"in its lab's node namespace {netns}, and {why}; `podpath up` starts it there "
              f"(ip netns exec {netns} ...)", file=sys.stderr)
        raise SystemExit(2)


def start_many(argv: list[str], program: str, names: list[str]) -> list[dict]:
    """Read the JSON configuration files named on the command line (one for each of NAMES,
    which the usage line shows); exit on SIGTERM."""
    if len(argv) != len(names) + 1:
        print(f"usage: python -m podpath.runtime.{program} {' '.join(names)}", file=sys.stderr)
        raise SystemExit(2)
    configs = []
    for path in argv[1:]:
        with open(path) as handle:
            configs.append(parse_json(handle.read()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return configs


def write_json(path: str, data) -> None:
    """Write DATA to PATH as JSON, whole or not at all: a reader sees the old file or the new
    one, never half of it (a file beside it, then a rename). The temporary file's name starts
    with a dot, which readers of a folder of such files skip."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(json_text(data) + "\n")
    os.replace(tmp, path)


def read_json(path: str):
    """The JSON in PATH, or None when there is no such file or it is not whole JSON."""
    try:
        with open(path) as handle:
            return parse_json(handle.read())
    except (OSError, ValueError):
        return None


# -- JSON with json's C half alone ----------------------------------------------------------------
# The json package imports re (and with it enum, functools and the regular expression
# compiler) for its pure-Python paths: about 0.3 MiB of each node process. What the daemons
# read and write is small and plain, and _json, the C module the json package itself uses,
# reads and writes it the same way.
_WHITESPACE = " \t\n\r"  # JSON's


class _Decoding:
    """What _json's scanner reads from its decoder: json.loads' defaults."""
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = _make_scanner(_Decoding) if _make_scanner else None


def parse_json(text: str):
    """What json.loads(TEXT) gives; its ValueError (json.JSONDecodeError) if TEXT is not JSON."""
    if _scan is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except (StopIteration, ValueError, SystemError):
            # not JSON (the scanner takes its error's class from json.decoder, and raises a
            # SystemError while that is not loaded): the json package says where and why
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json  # only for what is not JSON (or another Python): memory only then
    return json.loads(text)


def json_text(data) -> str:
    """What json.dumps(DATA, indent=1, sort_keys=True) gives, for DATA of dicts with string keys,
    lists, tuples, strings, numbers, booleans and None (a TypeError names anything else)."""
    if _make_scanner is None:  # pragma: no cover - another Python
        import json
        return json.dumps(data, indent=1, sort_keys=True)
    out: list[str] = []
    _encode(data, "\n", out)
    return "".join(out)


def _encode(value, newline: str, out: list[str]) -> None:
    """VALUE as json.dumps(indent=1, sort_keys=True) writes it, NEWLINE (with the indent of
    VALUE's level) before each of its items and at its end."""
    if isinstance(value, str):
        out.append(_json_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value:
            out.append("NaN")
        elif value in (float("inf"), float("-inf")):
            out.append("Infinity" if value > 0 else "-Infinity")
        else:
            out.append(float.__repr__(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + " "
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str to be written as JSON here, not {key!r}")
            out.append(("," if i else "") + inner + _json_string(key) + ": ")
            _encode(value[key], inner, out)
        out.append(newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + " "
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + inner)
            _encode(item, inner, out)
        out.append(newline + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# -- the node processes' doorbell -------------------------------------------------------------
class Bell:
    """A node process's doorbell: the FIFO NAME in FOLDER (the lab's bells folder), which it
    holds open and sleeps on. Whoever writes a file the node processes follow (a shim, a
    container's status; a node process, its published readiness) rings every bell of the
    lab (podpath_lab.ring_bells); the ring says only "look again", so a ring is never lost by
    being merged with others, and a process that starts reads everything anyway.

    Unlike inotify it takes nothing from a per-user kernel quota (fs.inotify.max_user_instances,
    128 on Debian, which allowed about 40 labs of one user): a FIFO is a file of the lab's
    folder. Its file descriptor is readable while rings wait (for select or a selector)."""

    def __init__(self, folder: str, name: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, name)
        try:
            if not stat.S_ISFIFO(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # not a bell: a bell takes its place
        except FileNotFoundError:
            pass
        try:
            os.mkfifo(self.path, 0o600)
        except FileExistsError:
            pass  # the bell of this node's earlier process
        # read and write: the FIFO never reads as closed (EOF) while no one rings
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> int:
        """Take every ring that waits; how many there were."""
        rings = 0
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return rings
            except InterruptedError:
                continue
            rings += len(data)
            if not data:
                return rings

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def ring_bells(folder: str) -> int:
    """Ring every doorbell (FIFO) in FOLDER: one byte each, never blocking; how many were rung.
    A bell nobody listens to (its node process is not running: ENXIO) is skipped, and one
    whose pipe is full already has rings waiting (EAGAIN): a reader reads everything again
    whatever the number of rings. Anything in FOLDER that is not a FIFO is left alone."""
    rung = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.name.startswith(".") or not stat.S_ISFIFO(entry.stat(follow_symlinks=False).st_mode):
                continue
            fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            os.write(fd, b"!")
            rung += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return rung


# -- what a node process's loop sleeps on ---------------------------------------------------------
READ, WRITE = select.EPOLLIN, select.EPOLLOUT


class Waiter:
    """epoll over the objects (anything with a fileno()) a loop registered, each with its data:
    `select` gives the data of those that are ready. What selectors' epoll selector does, for
    the one loop of a node process, without the selectors module (which loads collections)."""

    def __init__(self):
        self._epoll = select.epoll()
        self._data: dict[int, object] = {}

    def register(self, thing, events: int, data=None) -> None:
        fd = thing.fileno()
        self._epoll.register(fd, events)
        self._data[fd] = data

    def modify(self, thing, events: int, data=None) -> None:
        fd = thing.fileno()
        self._epoll.modify(fd, events)
        self._data[fd] = data

    def unregister(self, thing) -> None:
        fd = thing.fileno()
        self._epoll.unregister(fd)
        del self._data[fd]

    def select(self, timeout: float | None = None) -> list:
        """The data of each registered object that is ready (an error or a hang-up counts as
        ready), waiting at most TIMEOUT seconds (None: until one is)."""
        ready = self._epoll.poll(-1 if timeout is None else max(timeout, 0.0), max(len(self._data), 1))
        return [self._data[fd] for fd, _events in ready if fd in self._data]

    def close(self) -> None:
        self._epoll.close()
        self._data.clear()


# -- a command, without subprocess ---------------------------------------------------------------
def run(argv: list[str], stdin: bytes) -> tuple[int, str]:
    """Run ARGV (its program found in PATH) with STDIN as its input and wait for it: (its exit
    code, or minus the signal that ended it; what it wrote to stdout and stderr, together).
    Raises OSError when the program cannot be started (FileNotFoundError: not in PATH).

    os.posix_spawnp and two pipes, where subprocess would load threading, locale, signal's enums
    and more (about 1 MiB in each node process). As subprocess does, the child gets the default
    action of SIGPIPE and SIGXFSZ back (Python ignores them), and no descriptor of this process
    but the pipes: Python opens its own non-inheritable, and those this process inherited
    are closed in the child."""
    child_in, to_child = os.pipe()
    from_child, child_out = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, child_in, 0), (os.POSIX_SPAWN_DUP2, child_out, 1),
               (os.POSIX_SPAWN_DUP2, child_out, 2)]
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited()]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except BaseException:
        for fd in (child_in, to_child, from_child, child_out):
            os.close(fd)
        raise
    os.close(child_in)
    os.close(child_out)
    try:
        output = _exchange(to_child, from_child, stdin)
    except BaseException:  # SIGTERM while it runs: the command does not outlive this process
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output.decode(errors="replace")


def _inherited() -> list[int]:
    """This process's descriptors above 2 that a child would inherit (what its parent gave it)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return found


def _exchange(to_child: int, from_child: int, data: bytes) -> bytes:
    """Write DATA to TO_CHILD and read FROM_CHILD until its end, both at once (neither pipe's
    buffer can fill and stop the other); close both."""
    pending = memoryview(data)
    chunks = []
    poller = select.poll()
    poller.register(from_child, select.POLLIN)
    os.set_blocking(to_child, False)
    if pending:
        poller.register(to_child, select.POLLOUT)
    else:
        os.close(to_child)
        to_child = -1
    try:
        while from_child >= 0:
            for fd, _event in poller.poll():
                if fd == to_child:
                    try:
                        pending = pending[os.write(to_child, pending[:65536]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:  # it reads no more of its input: its answer says why
                        pending = pending[:0]
                    if not pending:
                        poller.unregister(to_child)
                        os.close(to_child)
                        to_child = -1
                elif fd == from_child:
                    chunk = os.read(from_child, 65536)
                    if chunk:
                        chunks.append(chunk)
                    else:
                        poller.unregister(from_child)
                        os.close(from_child)
                        from_child = -1
    finally:
        for fd in (to_child, from_child):
            if fd >= 0:
                os.close(fd)
    return b"".join(chunks)
