"""podpath-shim (podpath/runtime/shim.c), built from its source and run for real.

Each test starts shims over small real commands, reads the status file each writes (its
contract: module_utils/podpath_lab.py, status_problem) and its log, and stops them; every
process a test starts is gone when it ends (a shim's container never outlives it).
Back-off times are shortened with --backoff and --backoff-max; the rules are the kubelet's.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from podpath.model.labdir import lab as podpath_lab
from podpath.runtime import pause_build

WAIT_S = 20.0  # the longest any wait below may take before the test fails (not a speed bound)
# a first process that handles SIGTERM: it writes down that it got it, then exits (it says
# when its handler is in place by writing 'ready')
HANDLER = ("import pathlib, signal, sys, time; "
           "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('SIGTERM'), sys.exit(0))); "
           "pathlib.Path(sys.argv[1]).write_text('ready'); time.sleep(600)")
# a first process that ignores SIGTERM (once it has written 'ready')
DEAF = ("import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).write_text('ready'); time.sleep(600)")
RUNTIME = ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--mount-proc", "--"]


@pytest.fixture(scope="module")
def shim_program(tmp_path_factory) -> Path:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build podpath-shim (apt-get install gcc)")
    return pause_build.compile_program(pause_build.SHIM_SOURCE, tmp_path_factory.mktemp("shim") / "podpath-shim")


def wait_until(predicate, timeout: float = WAIT_S, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


class Shim:
    """One podpath-shim over ARGV, its status file and log in a folder of the test's own."""

    def __init__(self, program: Path, folder: Path, argv: list[str], name: str = "pod/box", **options: str):
        self.status_path = folder / "status" / "group" / (name.replace("/", "_") + ".json")
        self.log_path = folder / f"{name.replace('/', '_')}.log"
        self.name = name
        argv_options = []
        for key, value in options.items():
            argv_options += ["--" + key.replace("_", "-"), str(value)]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(program), "--status", str(self.status_path), "--name", name,
                                      *argv_options, "--", *argv], stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def status(self) -> dict | None:
        data, problem = podpath_lab.read_container_status(str(self.status_path))
        assert problem in ("", "missing"), f"the status file {problem}"
        return data

    def wait_status(self, predicate, what: str) -> dict:
        found = wait_until(lambda: (lambda s: s if s and predicate(s) else None)(self.status()))
        assert found, f"the status never showed {what}; last: {self.status()}; log:\n{self.log_text()}"
        return found

    def running(self, restarts: int = 0) -> dict:
        return self.wait_status(lambda s: s["state"] == "running" and s["restarts"] == restarts,
                                f"running after {restarts} restarts")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=WAIT_S)
        finally:
            self.log.close()


@pytest.fixture
def shims(shim_program, tmp_path):
    started: list[Shim] = []

    def start(argv: list[str], **options: str) -> Shim:
        shim = Shim(shim_program, tmp_path, argv, **options)
        started.append(shim)
        return shim

    yield start
    for shim in started:
        if shim.proc.poll() is None:
            shim.proc.kill()  # its container goes with it (the parent-death signal)
        shim.proc.wait(timeout=WAIT_S)
        shim.log.close()


def needs_root():
    if os.geteuid() != 0:
        pytest.skip("a container's own PID namespace (unshare --pid) needs root")
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")


def ancestors(pid: int) -> list[int]:
    found = []
    while pid and pid != 1 and len(found) < 10:
        pid = podpath_lab.parent_pid(pid)
        found.append(pid)
    return found


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def context_switches(pid: int) -> int:
    """How many times PID has been switched out (voluntary and not): a process asleep stays still."""
    status = Path(f"/proc/{pid}/status").read_text()
    return sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)


# -- the status file ----------------------------------------------------------------------------
def test_the_status_is_written_in_the_contracts_shape_when_the_container_starts(shims):
    shim = shims(["sleep", "600"])
    status = shim.running()
    assert podpath_lab.status_problem(status) == "", status
    assert list(status) == list(podpath_lab.STATUS_KEYS)
    assert status["name"] == "pod/box" and status["last"] is None and status["backoffUntil"] is None
    assert status["pid"] != shim.proc.pid and comm(status["pid"]) == "sleep"
    assert shim.proc.pid in ancestors(status["pid"])
    assert isinstance(status["started"], float) and status["started"] <= time.time()
    assert shim.status_path.name == "pod_box.json"
    assert podpath_lab.container_status_path("lab", "group", "pod/box").endswith("/status/group/pod_box.json")


def test_the_pid_is_the_containers_first_process_below_the_runtime_and_signals_are_told(shims):
    needs_root()
    shim = shims(RUNTIME + ["sleep", "600"])
    status = shim.running()
    init = status["pid"]
    wrapper = podpath_lab.parent_pid(init)
    assert comm(init) == "sleep" and comm(wrapper) == "unshare" and podpath_lab.parent_pid(wrapper) == shim.proc.pid
    assert Path(f"/proc/{init}/status").read_text().split("NSpid:")[1].split("\n")[0].split()[-1] == "1", (
        "the container's first process is not pid 1 of its own PID namespace")
    assert podpath_lab.shim_container(shim.proc.pid) == init
    assert podpath_lab.status_pid(status, "pod/box", shim.proc.pid) == init
    os.kill(init, signal.SIGKILL)
    after = shim.running(restarts=1)
    # unshare reaps the container and does not pass the signal on; the shim reads it all the same
    assert after["last"]["signal"] == signal.SIGKILL and after["last"]["exitCode"] is None, after
    assert after["pid"] != init and comm(after["pid"]) == "sleep"



def test_the_container_gets_every_signals_default_action_even_when_the_shims_starter_ignored_some(
        shim_program, tmp_path):
    # what a job started with & hands down (SIGINT and SIGQUIT ignored), and Python's SIGPIPE
    ignore = (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGTERM)

    def ignoring():
        for signum in ignore:
            signal.signal(signum, signal.SIG_IGN)
    log = open(tmp_path / "shim.log", "ab")
    status_path = tmp_path / "status" / "group" / "pod_box.json"
    proc = subprocess.Popen([str(shim_program), "--status", str(status_path), "--name", "pod/box", "--", "sleep", "600"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=ignoring)
    try:
        found = wait_until(lambda: (podpath_lab.read_container_status(str(status_path))[0] or {}).get("pid"))
        assert found, f"the container never ran: {(tmp_path / 'shim.log').read_text()}"
        ignored = int(next(line.split()[1] for line in Path(f"/proc/{found}/status").read_text().splitlines()
                           if line.startswith("SigIgn:")), 16)
        # the standard signals, 1 to 31; glibc keeps 32 and 33 for itself (signal() refuses them,
        # and the C library in the container sets their handlers when it needs them)
        standard = ignored & ((1 << 31) - 1)
        assert standard == 0, [s.name for s in signal.Signals if s < 32 and standard & (1 << (s - 1))]
    finally:
        proc.kill()
        proc.wait(timeout=WAIT_S)
        log.close()

def test_each_status_write_rings_every_bell_after_the_file_is_in_place(shims, tmp_path):
    import select

    from podpath.runtime.daemon import Bell

    bells = tmp_path / "bells"
    listening = [Bell(str(bells), node) for node in ("cp1", "worker1")]
    os.mkfifo(bells / "worker2")  # a node process that is not running: passed by
    (bells / "notes").write_text("")  # not a bell: left alone
    try:
        shim = shims(["sleep", "600"], bells=str(bells))
        for bell in listening:
            assert select.select([bell], [], [], WAIT_S)[0], f"no ring; log:\n{shim.log_text()}"
        # a ring comes once the file is in place: whoever it wakes reads the new status
        assert (shim.status() or {}).get("state") == "running"
        assert [bell.drain() for bell in listening] == [1, 1], "one write, one ring for each bell"
        shim.stop()
        assert shim.status()["state"] == "terminated"
        assert [bell.drain() for bell in listening] == [1, 1], "the last status (terminated) rang no bell"
        assert (bells / "notes").read_text() == ""
    finally:
        for bell in listening:
            bell.close()


def test_an_exit_code_is_told_with_no_signal(shims):
    shim = shims(["sh", "-c", "exit 3"], backoff="3600")
    status = shim.wait_status(lambda s: s["state"] == "waiting" and s["restarts"] == 1, "a second exit")
    assert status["last"]["exitCode"] == 3 and status["last"]["signal"] is None, status
    assert status["pid"] is None and status["started"] is None


def test_every_read_of_the_status_file_is_whole_while_the_shim_rewrites_it(shims):
    """The file is replaced by a rename, never written in place: a reader racing the writer
    gets the old file or the new one, whole, and no temporary file is left once it stops."""
    shim = shims(["true"], backoff="0", backoff_max="0")
    reads, broken = 0, []
    states = set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            raw = shim.status_path.read_bytes()
        except FileNotFoundError:
            continue
        reads += 1
        try:
            data = json.loads(raw)
        except ValueError:
            broken.append(raw)
            continue
        problem = podpath_lab.status_problem(data)
        if problem:
            broken.append(raw)
        states.add(data["state"])
    last = shim.status()
    assert reads > 100 and not broken, f"{len(broken)} of {reads} reads were not a whole status: {broken[:3]}"
    assert last["restarts"] > 10 and states >= {"running", "waiting"}, (last, states)
    assert shim.stop() == 0
    assert [p.name for p in shim.status_path.parent.iterdir()] == [shim.status_path.name]
    assert shim.status()["state"] == "terminated"


# -- restarts and the back-off ------------------------------------------------------------------
def restart_delays(shim: Shim) -> list[float]:
    """The back-off the shim said it waited before each restart (0 for at once)."""
    delays = []
    for line in shim.log_text().splitlines():
        if "exited (" in line and "; restart " in line:
            delays.append(0.0 if line.endswith("at once") else float(line.rsplit("back-off of ", 1)[1].split()[0]))
    return delays


def test_the_first_restart_is_at_once_then_the_back_off_doubles_up_to_its_cap(shims, tmp_path):
    starts = tmp_path / "starts"
    # the container writes down when it started, then exits at once
    script = f"import time; open({str(starts)!r}, 'a').write(repr(time.time()) + chr(10))"
    shim = shims([sys.executable, "-c", script], backoff="0.2", backoff_max="0.8")
    shim.wait_status(lambda s: s["restarts"] >= 6 and s["state"] == "waiting", "six restarts")
    assert shim.stop() == 0
    delays = restart_delays(shim)
    assert delays[:7] == [0.0, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8][:len(delays[:7])] and len(delays) >= 6, (
        f"restart delays {delays}\n{shim.log_text()}")
    begun = [float(t) for t in starts.read_text().split()]
    gaps = [b - a for a, b in zip(begun, begun[1:])]
    for gap, delay in zip(gaps, delays):
        assert gap >= delay - 0.01, f"a restart came {gap:.3f} s after the last start, before its back-off {delay}"


def test_the_waiting_status_is_written_at_the_exit_before_the_back_off(shims):
    shim = shims(["sh", "-c", "exit 1"], backoff="3600")
    status = shim.wait_status(lambda s: s["restarts"] == 1 and s["state"] == "waiting", "the back-off")
    assert status["backoffUntil"] == pytest.approx(status["last"]["finished"] + 3600, abs=0.01), status
    assert shim.proc.poll() is None


def test_a_container_that_ran_twice_the_cap_starts_again_at_once(shims):
    """The kubelet forgets a container's back-off once it has not moved for twice its cap: a
    container that ran that long since its last restart is restarted at once."""
    shim = shims(["sh", "-c", "sleep 0.5; exit 1"], backoff="0.1", backoff_max="0.2")
    shim.wait_status(lambda s: s["restarts"] >= 3, "three restarts")
    assert shim.stop() == 0
    delays = restart_delays(shim)
    assert len(delays) >= 3 and set(delays) == {0.0}, f"restart delays {delays}"


def test_the_shim_sleeps_between_events_and_notices_the_exit_when_it_happens(shims, tmp_path):
    """Nothing wakes an idle shim (no polling loop): it waits in the kernel for the container's
    exit or a signal, and the exit time it writes is when the container ended."""
    gone = tmp_path / "gone"
    shim = shims([sys.executable, "-c", f"import time, pathlib; time.sleep(1.5); "
                  f"pathlib.Path({str(gone)!r}).write_text(repr(time.time()))"], backoff="3600")
    shim.running()
    time.sleep(0.2)
    before = context_switches(shim.proc.pid)
    time.sleep(0.8)
    assert context_switches(shim.proc.pid) == before, "the shim woke up while nothing happened"
    status = shim.wait_status(lambda s: s["state"] == "waiting", "the exit")
    ended = float(gone.read_text())
    assert ended <= status["last"]["finished"] + 0.001


def test_orphans_left_by_a_container_go_with_it(shims, tmp_path):
    pidfile = tmp_path / "orphan"
    shim = shims(["sh", "-c", f"sleep 600 & echo $! > {pidfile}; exec sleep 600"], backoff="3600")
    first = shim.running()
    orphan = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip()) or 0)
    assert orphan and podpath_lab.alive(orphan)
    os.kill(first["pid"], signal.SIGKILL)
    shim.running(restarts=1)  # the first restart is at once
    assert wait_until(lambda: not podpath_lab.alive(orphan)), "a process the container left behind still runs"


def test_what_a_container_leaves_in_a_pid_namespace_it_shares_with_its_pod_goes_with_it(shims, tmp_path):
    """In a PID namespace shared with the pod, the orphans of a container go to the pod's pid 1,
    not to the shim: the shim finds them by the container's own mount namespace."""
    needs_root()
    holder = subprocess.Popen(RUNTIME + ["sleep", "600"], start_new_session=True)
    try:
        pod_init = wait_until(lambda: podpath_lab.children(holder.pid))
        assert pod_init, "the pod's pid 1 did not start"
        shim = shims(["nsenter", f"--pid=/proc/{pod_init[0]}/ns/pid", "--no-fork", "--", "unshare", "--mount", "--fork",
                      "--kill-child=SIGKILL", "--mount-proc", "--", "sh", "-c", "sleep 600 & exec sleep 601"],
                     backoff="3600")
        first = shim.running()
        assert wait_until(lambda: comm(first["pid"]) == "sleep")
        left = (wait_until(lambda: podpath_lab.children(first["pid"])) or [0])[0]
        assert left and podpath_lab.alive(left), "the container started nothing in the background"
        pid_ns = os.stat(f"/proc/{pod_init[0]}/ns/pid").st_ino
        assert os.stat(f"/proc/{left}/ns/pid").st_ino == pid_ns, "the test's container is not in the pod's PID namespace"
        os.kill(first["pid"], signal.SIGKILL)
        shim.running(restarts=1)
        assert not podpath_lab.alive(left), "a process the container left in the pod's PID namespace still runs"
    finally:
        holder.kill()
        holder.wait(timeout=WAIT_S)


# -- stopping --------------------------------------------------------------------------------
def test_sigterm_reaches_the_container_and_the_shim_exits_without_a_restart(shims, tmp_path):
    needs_root()
    got = tmp_path / "got"
    shim = shims(RUNTIME + [sys.executable, "-c", HANDLER, str(got)], grace="60")
    init = shim.running()["pid"]
    assert wait_until(lambda: got.exists() and got.read_text() == "ready"), "the container did not start"
    assert shim.stop() == 0
    assert got.read_text() == "SIGTERM"
    status = shim.status()
    assert status["state"] == "terminated" and status["restarts"] == 0 and status["pid"] is None, status
    assert status["last"] == {"exitCode": 0, "signal": None, "finished": status["last"]["finished"]}
    assert not podpath_lab.alive(init)


def test_a_pid_1_without_a_sigterm_handler_is_killed_at_once_not_after_the_grace_period(shims):
    needs_root()
    shim = shims(RUNTIME + ["sleep", "600"], grace="600")
    init = shim.running()["pid"]
    assert podpath_lab.deaf_namespace_init(init)
    shim.proc.send_signal(signal.SIGTERM)
    # had the shim sent SIGTERM only, the kernel would have dropped it and the shim waited 600 s
    assert shim.proc.wait(timeout=WAIT_S) == 0
    assert shim.status()["last"]["signal"] == signal.SIGKILL


def test_a_container_that_ignores_sigterm_is_killed_after_the_grace_period(shims, tmp_path):
    ready = tmp_path / "ready"
    shim = shims([sys.executable, "-c", DEAF, str(ready)], grace="0.5")
    init = shim.running()["pid"]
    assert wait_until(ready.exists), "the container did not start"
    begun = time.monotonic()
    assert shim.stop() == 0
    assert time.monotonic() - begun >= 0.5, "the shim killed the container before its grace period"
    assert shim.status()["last"]["signal"] == signal.SIGKILL and not podpath_lab.alive(init)


def test_sigterm_during_the_back_off_ends_the_shim_without_a_restart(shims):
    shim = shims(["sh", "-c", "exit 2"], backoff="3600")
    shim.wait_status(lambda s: s["state"] == "waiting" and s["restarts"] == 1, "the back-off")
    assert shim.stop() == 0
    status = shim.status()
    assert status["state"] == "terminated" and status["restarts"] == 1 and status["last"]["exitCode"] == 2


def test_the_container_never_outlives_its_shim(shims):
    needs_root()
    shim = shims(RUNTIME + ["sleep", "600"])
    init = shim.running()["pid"]
    wrapper = podpath_lab.parent_pid(init)
    shim.stop(signal.SIGKILL)
    assert wait_until(lambda: not podpath_lab.alive(init) and not podpath_lab.alive(wrapper)), (
        "the container (or its runtime's unshare) outlived its shim")


def test_a_command_that_cannot_run_is_a_crash_that_waits_its_back_off(shims):
    shim = shims(["/nonexistent/program"], backoff="3600")
    status = shim.wait_status(lambda s: s["state"] == "waiting" and s["restarts"] == 1, "the back-off")
    assert status["last"]["exitCode"] == 127
    assert "cannot run /nonexistent/program" in shim.log_text()


@pytest.mark.parametrize("argv, said", [
    ([], "usage"),
    (["--status", "/tmp/x.json", "--", "true"], "usage"),
    (["--status", "/tmp/x.json", "--name", "a/b", "--grace", "soon", "--", "true"], "soon is not a number"),
])
def test_bad_arguments_are_refused_with_what_is_wrong(shim_program, argv, said):
    done = subprocess.run([str(shim_program), *argv], capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 2 and said in done.stderr, done.stderr


def test_many_shims_at_once_each_keep_their_own_container(shims):
    """Ten shims, each with its own status file: each names its own container."""
    started = [shims(["sleep", "600"], name=f"pod-{i}/box") for i in range(10)]
    pids = {shim.running()["pid"] for shim in started}
    assert len(pids) == 10
    threads = [threading.Thread(target=shim.stop) for shim in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert not any(podpath_lab.alive(pid) for pid in pids)
