"""HTTP requests the verifier sends from inside one of the lab's network namespaces itself,
without starting a process: what `nsenter --net=NS -- curl -sS -m T -D - -o - URL` does,
with curl's exit codes and the words of its errors.

A socket belongs to the network namespace it was made in: the request's thread enters the
namespace (setns), makes the socket, and comes back at once; the connection, its route, its
source address and its packets are the namespace's, as curl's would be. The request is the
one curl sends (GET, HTTP/1.1, Host, Accept, `Connection: close`). A lab with many checks
sends about 90 requests; `nsenter` and `curl` cost about 13 ms of CPU each, this about 0.3 ms
(docs/performance.md). Where the namespace cannot be entered (no CAP_SYS_ADMIN in it),
`get` returns None and the caller runs curl."""
from __future__ import annotations

import errno
import os
import socket
import time
from urllib.parse import urlsplit

from podpath.evidence.lab import Http
from podpath.evidence.nodeprobe import CLONE_NEWNET, _setns

USER_AGENT = "curl (podpath verifier)"


def socket_in(path: str) -> socket.socket | None:
    """A TCP socket of the network namespace at PATH (/run/netns/NAME, /proc/PID/ns/net), or
    None where this thread cannot enter it."""
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            _setns(fd, CLONE_NEWNET, f"enter {path}")
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:  # never go on in the lab's namespace: an error here is raised
            _setns(home, CLONE_NEWNET, "return to the verifier's own network namespace")
    finally:
        os.close(home)


def get(path: str, url: str, host: str | None = None, timeout: float = 2.0) -> Http | None:
    """GET URL from inside the network namespace at PATH, within TIMEOUT seconds in all (curl
    -m); None where the namespace cannot be entered."""
    parts = urlsplit(url)
    address, port = parts.hostname or "", parts.port or 80
    sock = socket_in(path)
    if sock is None:
        return None
    started = time.monotonic()
    deadline = started + timeout

    def ms() -> int:
        return int((time.monotonic() - started) * 1000)

    with sock:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        name = host or (address if port == 80 else f"{address}:{port}")
        request = (f"GET {target} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n"
                   "Connection: close\r\n\r\n").encode()
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect((address, port))
        except ConnectionRefusedError:
            return Http(rc=7, status=None, error=f"curl: (7) Failed to connect to {address} port {port} after "
                                                 f"{ms()} ms: Couldn't connect to server")
        except socket.timeout:
            return Http(rc=28, status=None, error=f"curl: (28) Connection timed out after {ms()} milliseconds")
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return Http(rc=7, status=None, error=f"curl: (7) Failed to connect to {address} port {port} after "
                                                     f"{ms()} ms: {os.strerror(exc.errno)}")
            return Http(rc=7, status=None, error=f"curl: (7) Failed to connect to {address} port {port}: {exc}")
        data = bytearray()
        try:
            sock.sendall(request)
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            return Http(rc=28, status=None, error=f"curl: (28) Operation timed out after {ms()} milliseconds with "
                                                  f"{len(data)} bytes received")
        except ConnectionResetError:
            return Http(rc=56, status=None, error="curl: (56) Recv failure: Connection reset by peer")
        except OSError as exc:
            return Http(rc=56, status=None, error=f"curl: (56) Recv failure: {exc}")
    if not data:
        return Http(rc=52, status=None, error="curl: (52) Empty reply from server")
    return parse_response(bytes(data))


def parse_response(data: bytes) -> Http:
    """An HTTP/1.x response, read to its end: status, headers (names lower-cased, the last of
    a repeated one), body (de-chunked), as parsers.parse_http gives curl's."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    words = lines[0].split()
    status = int(words[1]) if len(words) > 1 and words[0].startswith("HTTP/") and words[1].isdigit() else None
    if status is None:
        return Http(rc=1, status=None, error=f"curl: (1) Received HTTP/0.9 when not allowed: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif headers.get("content-length", "").isdigit():
        body = body[:int(headers["content-length"])]
    return Http(rc=0, status=status, headers=headers, body=body.decode(errors="replace").strip())


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)
