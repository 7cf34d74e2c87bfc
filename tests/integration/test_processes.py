"""How the lab stops its containers (module_utils/podpath_lab.py): real processes in PID
namespaces of their own, as `podpath_containers` starts them (unshare --pid --fork).

Each test starts its own processes and kills whatever is left of them at the end.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from podpath.model.labdir import lab as podpath_lab

pytestmark = pytest.mark.netns

# a first process that handles SIGTERM: it writes down that it got it, then exits
HANDLER = ("import pathlib, signal, sys, time; "
           "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('SIGTERM'), sys.exit(0))); "
           "print('ready', flush=True); time.sleep(600)")


@pytest.fixture
def container():
    """Start ARGV as a container's first process: `unshare --pid --fork --kill-child` (the
    wrapper's pid is returned, its child is pid 1 of a new PID namespace)."""
    if os.geteuid() != 0:
        pytest.skip("a new PID namespace needs root")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    started = []

    def start(*argv: str) -> tuple[int, int]:
        wrapper = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--", *argv],
                                   stdout=subprocess.PIPE, text=True, start_new_session=True)
        started.append(wrapper)
        deadline = time.monotonic() + 10
        while not podpath_lab.children(wrapper.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        child = podpath_lab.children(wrapper.pid)
        assert child, "unshare started no child"
        if argv[0] == sys.executable:
            assert wrapper.stdout.readline().strip() == "ready"
        return wrapper.pid, child[0]

    yield start
    for wrapper in started:
        with_children = [wrapper.pid] + podpath_lab.children(wrapper.pid)
        for pid in with_children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wrapper.wait(timeout=10)


def test_sleep_as_pid_1_cannot_get_sigterm(container):
    _, init = container("sleep", "600")
    assert podpath_lab.deaf_namespace_init(init)


def test_a_pid_1_with_a_sigterm_handler_is_not_deaf(container, tmp_path):
    _, init = container(sys.executable, "-c", HANDLER, str(tmp_path / "got"))
    assert not podpath_lab.deaf_namespace_init(init)


def test_a_process_that_is_not_a_namespace_init_is_not_deaf():
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        assert not podpath_lab.deaf_namespace_init(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stopping_a_deaf_container_does_not_wait_out_the_grace_period(container):
    wrapper, init = container("sleep", "600")
    grace = 60.0
    done = threading.Event()
    threading.Thread(target=lambda: (podpath_lab.stop_many([wrapper], grace, term_children=True), done.set()),
                     daemon=True).start()
    # stop_many returns once the container is gone; had it sent only SIGTERM, the sleep would
    # have stayed until the grace period's SIGKILL, 60 s on
    assert done.wait(grace / 2), "stop_many waited for a process that SIGTERM cannot stop"
    assert not podpath_lab.alive(init)


def test_a_container_with_a_handler_gets_sigterm_and_exits_on_its_own(container, tmp_path):
    wrapper, init = container(sys.executable, "-c", HANDLER, str(tmp_path / "got"))
    podpath_lab.stop_many([wrapper], 60.0, term_children=True)
    assert not podpath_lab.alive(init)
    assert (tmp_path / "got").read_text() == "SIGTERM"
