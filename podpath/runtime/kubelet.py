"""The kubelet's part of a node of the netns lab: the readiness of the node's own pods.

In a cluster the kubelet of each node probes the containers of its own pods (readiness
probes: tcpSocket or httpGet, from the node to the pod's address), keeps each container's
Ready condition and reports it to the API server, where the EndpointSlice controller turns
it into each endpoint's `ready` condition, which every node's kube-proxy follows. A pod is
ready when all its containers are; a container that is not running is not ready; a
container with no readiness probe is ready while it runs; one with a probe starts not ready
and becomes ready after `successThreshold` successes in a row, not ready again after
`failureThreshold` failures in a row.

Here the node process (podpath.runtime.proxier, which plays kube-proxy's part too) runs
this part for its node:

- it probes only the pods of its node, from the node's namespace over the node's bridge
  (local traffic, nothing on the LAN), with each container's readinessProbe as the lab's
  workloads declare it (podpath.model.workloads.readiness_probe) and Kubernetes' defaults
  for what they leave out;
- it hears at once of a container that stops or starts again: the process that started the
  container writes its state (running, waiting, terminated) to a status file when it
  changes and rings the node's doorbell, and this part reads those files again;
- it publishes each pod's readiness, as an EndpointSlice's endpoint conditions (ready,
  serving, terminating), to the file `endpoints/<node>.json` of the lab's folder, written
  whole (a temporary file, then a rename) and only when something changed.

Its inputs (`kubelet/<node>.conf`, rendered by `podpath up`): the lab, the node, the file it
publishes, and the node's pods with their addresses and containers (each with its status
file and its readinessProbe, or none).
"""
from __future__ import annotations

import _socket as socket  # socket without its enums (about 0.2 MiB in each node process)
import errno
import fcntl
import os
import struct
import time

from podpath.model.record import Record
from podpath.runtime.daemon import READ, WRITE, log, read_json, write_json

# typing's TYPE_CHECKING without importing typing, memory in each node process
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

TCP_SOCKET, HTTP_GET = "tcpSocket", "httpGet"
RUNNING = "running"
UNKNOWN = "unknown"  # no status file (yet): taken as running, as far as the kubelet knows
PROBE_FIELDS = {TCP_SOCKET, HTTP_GET, "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
                "failureThreshold"}
MAX_RESPONSE = 64 * 1024  # bytes of an HTTP probe's answer read, at most


class Probe(Record):
    """A readinessProbe with Kubernetes' defaults filled in (never changed once made)."""
    __slots__ = ("action", "port", "path", "initial_delay", "period", "timeout", "success_threshold",
                 "failure_threshold")

    def __init__(self, action: str, port: int, path: str = "/", initial_delay: float = 0.0, period: float = 10.0,
                 timeout: float = 1.0, success_threshold: int = 1, failure_threshold: int = 3):
        self.action = action  # tcpSocket | httpGet
        self.port = port
        self.path = path
        self.initial_delay = initial_delay
        self.period = period
        self.timeout = timeout
        self.success_threshold = success_threshold
        self.failure_threshold = failure_threshold

    @classmethod
    def from_spec(cls, spec: dict[str, Any], where: str) -> "Probe":
        """The probe SPEC declares (Kubernetes' field names); WHERE names its container in errors."""
        if not isinstance(spec, dict):
            raise ValueError(f"readinessProbe of {where} is {spec!r}, not a mapping: give tcpSocket or httpGet "
                             "and the optional periodSeconds, timeoutSeconds, ...")
        unknown = sorted(set(spec) - PROBE_FIELDS)
        if unknown:
            raise ValueError(f"readinessProbe of {where} has {', '.join(unknown)}, which the lab does not know: use "
                             f"{', '.join(sorted(PROBE_FIELDS))}")
        actions = [a for a in (TCP_SOCKET, HTTP_GET) if a in spec]
        if len(actions) != 1:
            raise ValueError(f"readinessProbe of {where} needs exactly one of tcpSocket and httpGet (has "
                             f"{', '.join(actions) or 'neither'})")
        action = actions[0]
        handler = spec[action] if isinstance(spec[action], dict) else {}
        port = handler.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"readinessProbe of {where}: {action}.port is {port!r}: give the port number "
                             "(1 to 65535) the container listens on")
        path = handler.get("path", "/")
        if action == HTTP_GET and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"readinessProbe of {where}: httpGet.path is {path!r}: give a path that starts with /")
        scheme = handler.get("scheme", "HTTP")
        if scheme != "HTTP":
            raise ValueError(f"readinessProbe of {where}: httpGet.scheme {scheme!r} is not one the lab probes: use HTTP")

        def number(key: str, default: float, least: int) -> float:
            value = spec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"readinessProbe of {where}: {key} is {value!r}: give a whole number of at least "
                                 f"{least}")
            return value
        return cls(action=action, port=port, path=path if action == HTTP_GET else "/",
                   initial_delay=number("initialDelaySeconds", 0, 0), period=number("periodSeconds", 10, 1),
                   timeout=number("timeoutSeconds", 1, 1), success_threshold=int(number("successThreshold", 1, 1)),
                   failure_threshold=int(number("failureThreshold", 3, 1)))

    def describe(self) -> str:
        """As `kubectl describe pod` shows it."""
        what = f"http-get http://:{self.port}{self.path}" if self.action == HTTP_GET else f"tcp-socket :{self.port}"
        return (f"{what} delay={self.initial_delay:g}s timeout={self.timeout:g}s period={self.period:g}s "
                f"#success={self.success_threshold} #failure={self.failure_threshold}")


class Status(Record):
    """What the process that started a container last wrote of it."""
    __slots__ = ("state", "started", "restarts")

    def __init__(self, state: str, started: float | None, restarts: int):
        self.state = state  # running | waiting | terminated
        self.started = started  # wall clock, when the running process started
        self.restarts = restarts


def read_status(path: str) -> Status | None:
    """The container's status file, or None when there is none (or it is not a whole one)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        return None
    started = data.get("started")
    restarts = data.get("restarts")
    return Status(data["state"], float(started) if isinstance(started, (int, float)) else None,
                  restarts if isinstance(restarts, int) else 0)


class Container(Record):
    __slots__ = ("pod", "name", "status_path", "probe", "ip", "state", "started", "restarts", "ready", "successes",
                 "failures", "next_probe", "generation", "awaited")

    def __init__(self, pod: str, name: str, status_path: str, probe: Probe | None, ip: str):
        self.pod = pod
        self.name = name
        self.status_path = status_path
        self.probe = probe
        self.ip = ip  # the pod's address, which its probes go to
        self.state = UNKNOWN
        self.started: float | None = None
        self.restarts = 0
        self.ready = False
        self.successes = 0  # probe results in a row
        self.failures = 0
        self.next_probe: float | None = None  # monotonic time of the next probe; None: none due
        self.generation = 0  # one more on every (re)start: a probe of an older start is ignored
        self.awaited = False  # running since the kubelet started, no probe result yet

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, UNKNOWN)

    @property
    def key(self) -> str:
        return f"{self.pod}/{self.name}"


class Pod(Record):
    __slots__ = ("name", "namespace", "ip", "containers")

    def __init__(self, name: str, namespace: str, ip: str, containers: list[Container] | None = None):
        self.name = name
        self.namespace = namespace
        self.ip = ip
        self.containers = [] if containers is None else containers

    @property
    def ready(self) -> bool:
        return all(c.ready for c in self.containers)


class Kubelet:
    """The readiness of one node's pods, as a state machine; the node process feeds it the
    status files' changes and the probes' results, and asks it which probes are due."""

    def __init__(self, config: dict[str, Any]):
        self.node = config["node"]
        self.publish_path = config["endpoints"]
        self.bells = config.get("bells")  # the lab's doorbells, rung after each publication
        self.link = config.get("link")  # the node's link to the LAN; None: not watched
        self.node_ready = True
        self.node_reason = ""
        self.pods: list[Pod] = []
        for raw in config["pods"]:
            pod = Pod(raw["name"], raw.get("namespace", "default"), raw["ip"])
            for c in raw["containers"]:
                where = f"{raw['name']}/{c['name']}"
                probe = Probe.from_spec(c["readinessProbe"], where) if c.get("readinessProbe") is not None else None
                pod.containers.append(Container(raw["name"], c["name"], c["status"], probe, raw["ip"]))
            self.pods.append(pod)
        self.by_status = {c.status_path: c for p in self.pods for c in p.containers}
        self.published: dict | None = None  # what the file holds (what this part last wrote)
        self.started = False
        self.changed = True  # something the file shows changed since it was last written

    # -- what the status files say -------------------------------------------------------------
    def folders(self) -> list[str]:
        """The folders of the status files of this node's containers."""
        return sorted({os.path.dirname(path) for path in self.by_status})

    def begin(self, now: float, wall: float) -> None:
        """The kubelet starts: read every status file; what runs is probed at once (as a kubelet
        that starts again probes the containers it finds running, without waiting again)."""
        for container in self.by_status.values():
            self.observe(container, read_status(container.status_path), now, wall, at_start=True)
        self.started = True

    def status_changed(self, path: str, now: float, wall: float) -> bool:
        """The status file PATH changed (or went away); whether it is one of this node's."""
        container = self.by_status.get(path)
        if container is None:
            return False
        self.observe(container, read_status(path), now, wall)
        return True

    def observe(self, c: Container, status: Status | None, now: float, wall: float, at_start: bool = False) -> None:
        before = (c.state, c.ready, c.restarts)
        self._observe(c, status, now, wall, at_start)
        self.changed |= (c.state, c.ready, c.restarts) != before

    def _observe(self, c: Container, status: Status | None, now: float, wall: float, at_start: bool) -> None:
        state = status.state if status else UNKNOWN
        started = status.started if status else None
        was_running, old_started = c.running and not at_start, c.started
        c.restarts = status.restarts if status else c.restarts
        if state == UNKNOWN and not at_start:
            return  # the file went away (the lab's folder is being removed): keep what is known
        c.state = state
        if not c.running:
            if c.ready or c.next_probe is not None:
                log(f"{self.node}: container {c.key} is {state}: not ready")
            c.ready, c.next_probe, c.successes, c.failures, c.awaited = False, None, 0, 0, False
            c.started = started
            c.generation += 1
            return
        if was_running and started == old_started:
            return  # the same run of the container: nothing new
        # it (re)started, or the kubelet just started: a new run of the container
        c.started = started
        c.generation += 1
        c.successes = c.failures = 0
        if c.probe is None:
            c.ready, c.next_probe = True, None
            return
        c.ready = False  # Kubernetes' readiness before the first probe
        if at_start:
            c.next_probe, c.awaited = now, True
        else:
            since = (wall - started) if started is not None else 0.0
            c.next_probe = now + max(0.0, c.probe.initial_delay - since)
            log(f"{self.node}: container {c.key} started again: not ready until its probe passes "
                f"({c.probe.describe()})")

    def link_changed(self, up: bool) -> None:
        """The node's LAN link is UP or not. A node cut off from the others is, for them, a node
        whose pods no longer answer: its pods are published not ready (a cluster's node
        lifecycle controller marks them so once the node has missed its heartbeats for
        node-monitor-grace-period, 40 s by default; the lab does it at once)."""
        if up == self.node_ready:
            return
        self.node_ready = up
        self.node_reason = "" if up else f"{self.link} is down: the other nodes cannot reach this node's pods"
        log(f"{self.node}: " + ("node ready again: its pods' readiness is published again" if up else
                                f"node not ready ({self.node_reason}): all its pods published not ready"))
        self.changed = True

    # -- probes --------------------------------------------------------------------------------
    def due(self, now: float) -> list[Container]:
        """Containers whose probe is due at NOW (each then waits for its result)."""
        found = [c for p in self.pods for c in p.containers if c.next_probe is not None and c.next_probe <= now]
        for c in found:
            c.next_probe = None
        return found

    def next_due(self) -> float | None:
        times = [c.next_probe for p in self.pods for c in p.containers if c.next_probe is not None]
        return min(times) if times else None

    def result(self, c: Container, generation: int, ok: bool, now: float) -> None:
        """A probe of C (started for its run GENERATION) answered OK or not."""
        if generation != c.generation or not c.running or c.probe is None:
            return
        was_ready, c.awaited = c.ready, False
        if ok:
            c.successes, c.failures = c.successes + 1, 0
            if not c.ready and c.successes >= c.probe.success_threshold:
                c.ready = True
                log(f"{self.node}: container {c.key} ready ({c.successes} probe(s) passed)")
        else:
            c.successes, c.failures = 0, c.failures + 1
            if c.ready and c.failures >= c.probe.failure_threshold:
                c.ready = False
                log(f"{self.node}: container {c.key} not ready: {c.failures} probes failed in a row "
                    f"({c.probe.describe()})")
        c.next_probe = now + c.probe.period
        self.changed |= c.ready != was_ready

    # -- what the node publishes ---------------------------------------------------------------
    def document(self) -> dict:
        """The node's pods as an EndpointSlice's endpoints would show them (no timestamps: the
        file changes only when readiness or a container's state does)."""
        pods = {}
        for p in self.pods:
            ready = p.ready and self.node_ready
            pods[p.name] = {
                "namespace": p.namespace, "ip": p.ip,
                # the lab never deletes a pod gracefully: no endpoint is ever terminating
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "containers": {c.name: {"state": c.state, "ready": c.ready, "restarts": c.restarts,
                                        "readinessProbe": c.probe.describe() if c.probe else None}
                               for c in p.containers}}
        return {"node": self.node, "nodeReady": {"ready": self.node_ready, "reason": self.node_reason}, "pods": pods}

    def publish(self, write: Callable[[str, Any], None] = write_json) -> bool:
        """Write the node's file if what it would hold changed, once every container running at
        the start has had its first probe; whether it wrote."""
        if not self.changed or not self.started or any(c.awaited for p in self.pods for c in p.containers):
            return False
        doc = self.document()
        if doc == self.published:
            self.changed = False
            return False
        write(self.publish_path, doc)  # an error leaves it to the next change
        self.published, self.changed = doc, False
        return True


# -- the node's own link: the node lifecycle controller's part ---------------------------------
RTMGRP_LINK = 1  # rtnetlink's multicast group of link changes
SIOCGIFFLAGS = 0x8913
IFF_UP, IFF_RUNNING = 0x1, 0x40


class NodeLink:
    """The node's link to the LAN (eth1), watched through rtnetlink's link events: the kernel
    wakes the node process when a link of its namespace changes, never otherwise."""

    def __init__(self, name: str):
        self.name = name
        self.events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                    socket.NETLINK_ROUTE)
        self.events.bind((0, RTMGRP_LINK))
        self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)  # never sends

    def fileno(self) -> int:
        return self.events.fileno()

    def drain(self) -> None:
        """Read the events that wait (what they say is read from the link itself)."""
        while True:
            try:
                self.events.recv(65536)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.ENOBUFS:  # events were lost: the link is read anyway
                    continue
                raise

    def up(self) -> bool:
        """Whether the link is up with a carrier (IFF_UP and IFF_RUNNING); False if it is gone."""
        try:
            answer = fcntl.ioctl(self._ioctl.fileno(), SIOCGIFFLAGS, struct.pack("16sH22x", self.name.encode(), 0))
        except OSError:
            return False
        flags = struct.unpack("16sH22x", answer)[1]
        return bool(flags & IFF_UP and flags & IFF_RUNNING)

    def close(self) -> None:
        self.events.close()
        self._ioctl.close()


# -- probes that do not block: the node process runs them in its selector ---------------------
class ProbeRun:
    """One probe of one container, on a non-blocking socket: connect (tcpSocket), or connect,
    send a GET and read the status line (httpGet: 200 <= code < 400 passes, as the kubelet's)."""

    def __init__(self, container: Container, now: float):
        self.container = container
        self.generation = container.generation
        self.probe = container.probe
        self.ip = ip = container.ip
        self.deadline = now + self.probe.timeout
        self.sent = False
        self.answer = b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        code = self.sock.connect_ex((ip, self.probe.port))
        self.failed_at_once = code not in (0, errno.EINPROGRESS)

    @property
    def events(self) -> int:
        return READ if self.sent else WRITE

    def step(self) -> bool | None:
        """The socket is ready: the result (True: passed, False: failed), or None to go on."""
        if not self.sent:
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                return False
            if self.probe.action == TCP_SOCKET:
                return True
            request = (f"GET {self.probe.path} HTTP/1.1\r\nHost: {self.ip}:{self.probe.port}\r\n"
                       "User-Agent: kube-probe/podpath\r\nAccept: */*\r\nConnection: close\r\n\r\n")
            try:
                self.sock.send(request.encode())
            except OSError:
                return False
            self.sent = True
            return None
        try:
            chunk = self.sock.recv(4096)
        except BlockingIOError:
            return None
        except OSError:
            return False
        self.answer += chunk
        if chunk and b"\r\n" not in self.answer and len(self.answer) < MAX_RESPONSE:
            return None
        return http_passed(self.answer)

    def close(self) -> None:
        self.sock.close()


def http_passed(answer: bytes) -> bool:
    """Whether an HTTP answer's status line says success (200 <= code < 400)."""
    words = answer.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        return False
    return 200 <= int(words[1]) < 400
