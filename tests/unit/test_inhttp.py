"""The verifier's own HTTP requests from inside a namespace (podpath/evidence/inhttp.py): the
answers curl would give, with its exit codes. The namespace here is the test's own
(/proc/self/ns/net) and the servers listen on loopback."""
from __future__ import annotations

import socket
import threading

import pytest

from podpath.evidence import inhttp

OWN = "/proc/self/ns/net"


def serve(reply: bytes | None, hold: float = 0.0):
    """A one-request server on 127.0.0.1: it reads the request, sends REPLY (None: closes at
    once), and returns (its port, the request it got)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    got: list[bytes] = []

    def run():
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            if reply:
                conn.sendall(reply)
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], got


def test_an_answer_is_read_as_curl_shows_it_and_the_request_is_curl_s():
    port, got = serve(b"HTTP/1.1 200 OK\r\nX-Ingress-Controller: c1\r\nContent-Length: 19\r\n\r\npod=echo-1 node=w1\nEXTRA")
    answer = inhttp.get(OWN, f"http://127.0.0.1:{port}/demo?x=1", host="demo.local")
    assert (answer.rc, answer.status, answer.headers["x-ingress-controller"]) == (0, 200, "c1")
    assert answer.body == "pod=echo-1 node=w1" and answer.field("pod") == "echo-1"
    request = got[0].decode()
    assert request.startswith("GET /demo?x=1 HTTP/1.1\r\n")
    assert "\r\nHost: demo.local\r\n" in request and "\r\nConnection: close\r\n" in request


def test_a_chunked_body_is_joined():
    port, _ = serve(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nnot \r\n5\r\nfound\r\n0\r\n\r\n")
    answer = inhttp.get(OWN, f"http://127.0.0.1:{port}/")
    assert (answer.status, answer.body) == (404, "not found")


def test_the_host_header_carries_a_port_that_is_not_80():
    port, got = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    inhttp.get(OWN, f"http://127.0.0.1:{port}/")
    assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in got[0]


def test_a_refused_connection_is_curl_s_exit_7():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    answer = inhttp.get(OWN, f"http://127.0.0.1:{port}/")
    assert (answer.rc, answer.status) == (7, None) and answer.error.startswith("curl: (7) Failed to connect")


def test_no_answer_in_time_is_curl_s_exit_28():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # the kernel accepts, nobody answers
    try:
        answer = inhttp.get(OWN, f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.3)
    finally:
        listener.close()
    assert answer.rc == 28 and answer.error.startswith("curl: (28) Operation timed out after")


def test_an_empty_reply_is_curl_s_exit_52():
    port, _ = serve(None)
    answer = inhttp.get(OWN, f"http://127.0.0.1:{port}/")
    assert (answer.rc, answer.error) == (52, "curl: (52) Empty reply from server")


def test_a_namespace_that_cannot_be_entered_leaves_it_to_curl():
    assert inhttp.get("/run/netns/podpath-no-such-namespace", "http://127.0.0.1/") is None


@pytest.mark.parametrize("data", [b"garbage\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n"])
def test_an_answer_that_is_not_http_is_an_error(data):
    answer = inhttp.parse_response(data)
    assert answer.rc != 0 and answer.status is None
