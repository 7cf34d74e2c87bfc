"""What the node process uses instead of heavier standard modules (docs/performance.md, the
lab at rest): daemon.run instead of subprocess, daemon.Waiter instead of selectors, records
instead of dataclasses, digest.base32 instead of base64, daemon.parse_json and json_text
instead of the json package. Each must do what the module it replaces did, for what the node
process asks of it."""
from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys

import pytest

from podpath.model.digest import base32
from podpath.model.record import Record
from podpath.runtime import daemon

SIGPIPE_BIT, SIGXFSZ_BIT = 1 << (13 - 1), 1 << (25 - 1)  # in /proc/PID/status' SigIgn mask


# -- daemon.run: a command, its input and its answer ---------------------------------------------
def test_run_gives_the_command_its_input_and_returns_its_exit_code_and_both_outputs():
    code, said = daemon.run(["sh", "-c", "cat; echo oops >&2; exit 3"], b"*nat\nCOMMIT\n")
    assert (code, said) == (3, "*nat\nCOMMIT\noops\n")


def test_run_with_no_input_gives_the_command_an_empty_stdin():
    assert daemon.run(["wc", "-c"], b"") == (0, "0\n")


def test_run_moves_more_than_a_pipe_holds_both_ways_at_once():
    data = os.urandom(512 * 1024).hex().encode()  # 1 MiB in and out: either pipe alone would fill
    # timeout ends cat if the two ends ever waited for each other (exit code 124, the answer cut short)
    code, said = daemon.run(["timeout", "30", "cat"], data)
    assert code == 0
    assert said.encode() == data


def test_run_reports_a_signal_that_ended_the_command_as_minus_its_number():
    assert daemon.run(["sh", "-c", "kill -TERM $$"], b"")[0] == -15


def test_run_refuses_a_program_that_is_not_in_path():
    with pytest.raises(FileNotFoundError):
        daemon.run(["podpath-no-such-program"], b"")


def test_the_command_gets_the_default_action_of_sigpipe_and_sigxfsz_back():
    code, said = daemon.run(["grep", "^SigIgn:", "/proc/self/status"], b"")
    assert code == 0, said
    ignored = int(said.split()[1], 16)
    assert not ignored & (SIGPIPE_BIT | SIGXFSZ_BIT), f"the command ignores SIGPIPE or SIGXFSZ: {said.strip()}"


LIST_FDS = "import os; print(*sorted(map(int, os.listdir('/proc/self/fd'))))"


def test_the_command_gets_no_descriptor_of_the_node_process_but_its_pipes(tmp_path):
    own = os.open(tmp_path / "own", os.O_CREAT | os.O_WRONLY)  # as the node process opens its files
    given = os.open(tmp_path / "given", os.O_CREAT | os.O_WRONLY)
    os.set_inheritable(given, True)  # as one its parent left open for it would be
    try:
        code, said = daemon.run([sys.executable, "-S", "-c", LIST_FDS], b"")
    finally:
        os.close(own)
        os.close(given)
    assert code == 0, said
    fds = [int(fd) for fd in said.split()]
    # 0, 1 and 2 are the pipes; one more is the listing's own descriptor
    assert fds[:3] == [0, 1, 2] and len(fds) == 4, said


# -- daemon.Waiter: the node loop's epoll ---------------------------------------------------------
@pytest.fixture
def waiter():
    made = daemon.Waiter()
    yield made
    made.close()


class Pipe:
    def __init__(self):
        self.r, self.w = os.pipe()

    def fileno(self) -> int:
        return self.r

    def close(self) -> None:
        for fd in (self.r, self.w):
            if fd >= 0:
                os.close(fd)
        self.r = self.w = -1


@pytest.fixture
def pipe():
    made = Pipe()
    yield made
    made.close()


def test_a_waiter_gives_the_data_of_what_is_ready_and_nothing_else(waiter, pipe):
    other = Pipe()
    try:
        waiter.register(pipe, daemon.READ, "bell")
        waiter.register(other, daemon.READ, "link")
        assert waiter.select(0) == []
        os.write(pipe.w, b"!")
        assert waiter.select(0) == ["bell"]
        assert waiter.select(5) == ["bell"], "what is not read stays ready"
    finally:
        waiter.unregister(other)
        other.close()


def test_a_waiter_follows_a_change_of_events_and_of_data(waiter, pipe):
    write_end = _WriteEnd(pipe.w)
    waiter.register(write_end, daemon.WRITE, "probe, connecting")
    assert waiter.select(0) == ["probe, connecting"]
    waiter.modify(write_end, daemon.READ, "probe, reading")
    assert waiter.select(0) == [], "a pipe's write end never has something to read"
    waiter.modify(write_end, daemon.WRITE, "probe, writing again")
    assert waiter.select(0) == ["probe, writing again"]


def test_a_waiter_forgets_what_was_unregistered(waiter, pipe):
    waiter.register(pipe, daemon.READ, "bell")
    os.write(pipe.w, b"!")
    waiter.unregister(pipe)
    assert waiter.select(0) == []


def test_a_hang_up_counts_as_ready(waiter, pipe):
    waiter.register(pipe, daemon.READ, "probe")
    os.close(pipe.w)
    pipe.w = -1
    assert waiter.select(5) == ["probe"]


class _WriteEnd:
    def __init__(self, fd: int):
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


# -- records: what a dataclass gave ---------------------------------------------------------------
class Point(Record):
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x, self.y = x, y


class Line(Record):
    __slots__ = ("name", "points")

    def __init__(self, name, points):
        self.name, self.points = name, points


def test_records_compare_by_their_fields_and_only_with_their_own_class():
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 2) != (1, 2)
    assert Line("a", [Point(1, 2)]) == Line("a", [Point(1, 2)])


def test_a_record_shows_its_fields_and_holds_no_others():
    assert repr(Line("a", [Point(1, 2)])) == "Line(name='a', points=[Point(x=1, y=2)])"
    with pytest.raises(AttributeError):
        Point(1, 2).z = 3


def test_a_record_is_unhashable_as_a_dataclass_that_compares_is():
    with pytest.raises(TypeError):
        hash(Point(1, 2))


def test_a_records_dict_keeps_the_order_of_its_fields_and_turns_what_it_holds_into_dicts():
    as_dict = Line("a", [Point(1, 2), Point(3, 4)]).as_dict()
    assert as_dict == {"name": "a", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}
    assert list(as_dict) == ["name", "points"]


# -- base32 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", range(0, 12))
def test_base32_is_base64s_b32encode(size):
    for data in (bytes(size), bytes(range(255, 255 - size, -1)), os.urandom(size)):
        assert base32(data) == base64.b32encode(data).decode()


# -- JSON with _json alone ------------------------------------------------------------------------
DOCUMENTS = [
    {}, [], "", 0, -7, 2**70, 1.5, -0.0, 1e-7, 1e300, True, False, None,
    {"node": "worker1", "nodeReady": {"ready": True, "reason": ""},
     "pods": {"echo-1": {"namespace": "default", "ip": "10.244.1.2",
                         "conditions": {"ready": False, "serving": False, "terminating": False},
                         "containers": {"echo": {"state": "running", "ready": False, "restarts": 2,
                                                 "readinessProbe": "tcp-socket :8080 delay=0s timeout=1s"}}}}},
    {"b": [1, [2, []], {}], "a": {"z": None, "é": "ünï\u2028code \"quoted\" \\ back\tslash\n\x01"}, "": [{}]},
    {"emoji": "\U0001f600", "ports": ({"port": 80},), "nested": [[[[]]]]},
]


@pytest.mark.parametrize("data", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_json_text_is_what_json_dumps_writes_with_the_daemons_settings(data):
    assert daemon.json_text(data) == json.dumps(data, indent=1, sort_keys=True)


@pytest.mark.parametrize("data", DOCUMENTS, ids=range(len(DOCUMENTS)))
def test_parse_json_reads_what_json_loads_reads(data):
    for text in (json.dumps(data), json.dumps(data, indent=1, sort_keys=True), f" \n\t{json.dumps(data)}\r\n "):
        assert daemon.parse_json(text) == json.loads(text)


def test_json_texts_constants_are_jsons():
    data = [math.nan, math.inf, -math.inf]
    assert daemon.json_text(data) == json.dumps(data, indent=1, sort_keys=True)
    back = daemon.parse_json(daemon.json_text(data))
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("text", ["", " ", "{", '{"a": }', '{"a" 1}', "[1,]", "nul", '{"a": 1} x', "1 2", "\ufeff{}",
                                  '"\x01"', "{'a': 1}"])
def test_parse_json_refuses_what_json_loads_refuses_with_its_error(text):
    with pytest.raises(ValueError) as ours:
        daemon.parse_json(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("data, word", [({1: "a"}, "keys must be str"), ({"a": {3}}, "set"), (b"x", "bytes")])
def test_json_text_names_what_it_cannot_write(data, word):
    with pytest.raises(TypeError, match=word):
        daemon.json_text(data)


def test_read_json_gives_none_for_a_file_that_is_not_whole_json(tmp_path):
    (tmp_path / "half.json").write_text('{"state": "runn')
    (tmp_path / "whole.json").write_text('{"state": "running"}\n')
    assert daemon.read_json(str(tmp_path / "half.json")) is None
    assert daemon.read_json(str(tmp_path / "whole.json")) == {"state": "running"}
    assert daemon.read_json(str(tmp_path / "none.json")) is None


def test_the_node_process_reads_and_writes_json_without_the_json_package(tmp_path):
    probe = ("import sys; from podpath.runtime import daemon; "
             f"daemon.write_json({str(tmp_path / 'doc.json')!r}, {{'a': [1, {{}}]}}); "
             f"assert daemon.read_json({str(tmp_path / 'doc.json')!r}) == {{'a': [1, {{}}]}}; "
             "print(' '.join(m for m in ('json', 're', 'enum') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
