"""The ingress controller program (podpath-ingress, podpath/runtime/ingress.c), built from its
source and run as real processes: a stand-in for nginx (a shell that sleeps, and says when it
gets QUIT) is its child; the lease is a file in the test's folder, read as `podpath status`
and the verifier read it (podpath.runtime.lease.read).

It renews the lease while its child lives; when the child dies it stops renewing, keeps
the lease (a failed controller does not give it up) and exits with the child's failure;
on SIGTERM it tells the child to quit and releases the lease; a second controller takes
the lease over once the first has died and the lease's duration has run out, and not
before; and a controller frozen while it holds the lease's lock hangs no other."""
from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from waiting import WAIT, until

from podpath.model import labdir
from podpath.runtime import lease as lease_mod



def fake_nginx(mark: Path) -> list[str]:
    """A child that lives until killed and writes 'quit' to MARK when it gets SIGQUIT (nginx's
    graceful stop), then exits 0. Once its trap is set it writes MARK.ready (ready())."""
    return ["sh", "-c", f"trap 'echo quit > {mark}; exit 0' QUIT; : > {mark}.ready; while :; do sleep 0.05; done"]


def ready(mark: Path) -> bool:
    """The fake nginx of MARK has its QUIT trap set: a QUIT sent before would find none."""
    return Path(f"{mark}.ready").exists()


class Controller:
    def __init__(self, program: Path, lease: Path, identity: str, child: list[str], duration: float = 3.0,
                 retry: float = 0.2, ignore=()):
        self.lease, self.identity = lease, identity

        def ignoring():  # what a starter that ignores IGNORE hands down (a job started with & ignores INT, QUIT)
            for signum in ignore:
                signal.signal(signum, signal.SIG_IGN)
        self.proc = subprocess.Popen([str(program), "--lease", str(lease), "--identity", identity, "--duration",
                                      str(duration), "--retry", str(retry), "--", *child], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, preexec_fn=ignoring if ignore else None)
        self.child = until(self._child, f"{identity} started no child")

    def _child(self) -> int | None:
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def holds(self) -> bool:
        return (lease_mod.read(str(self.lease)) or {}).get("holderIdentity") == self.identity

    def wait(self) -> int:
        return self.proc.wait(timeout=WAIT)

    def cleanup(self) -> None:
        for pid in (self.proc.pid, self.child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc.stdout.close()



@pytest.fixture
def controllers(ingress_program):
    started: list[Controller] = []

    def start(*args, **kwargs) -> Controller:
        started.append(Controller(ingress_program, *args, **kwargs))
        return started[-1]
    yield start
    for c in started:
        c.cleanup()


def renewed(lease: Path) -> float:
    return float((lease_mod.read(str(lease)) or {}).get("renewTime", 0))


def test_it_renews_the_lease_while_its_child_lives(tmp_path, controllers):
    lease = tmp_path / "leases" / "ingress.json"
    a = controllers(lease, "pod-a", fake_nginx(tmp_path / "quit"))
    until(a.holds, "pod-a did not take the free lease")
    seen = {renewed(lease)}

    def three_renewals() -> bool:
        seen.add(renewed(lease))
        return len(seen) >= 4
    until(three_renewals, "pod-a did not renew the lease three times")
    assert a.holds() and a.proc.poll() is None and os.path.exists(f"/proc/{a.child}")


def test_when_its_child_dies_it_stops_renewing_keeps_the_lease_and_exits_with_the_failure(tmp_path, controllers):
    lease = tmp_path / "ingress.json"
    a = controllers(lease, "pod-a", fake_nginx(tmp_path / "quit"), retry=0.1)
    until(a.holds, "pod-a did not take the free lease")
    os.kill(a.child, signal.SIGKILL)
    code = a.wait()
    out = a.proc.stdout.read()
    assert code == 128 + signal.SIGKILL, f"the controller exited {code}, not 137 (its child killed by SIGKILL):\n{out}"
    assert "killed by SIGKILL" in out, out
    last = lease_mod.read(str(lease))
    time.sleep(0.5)  # five retry periods: a controller that still ran would have renewed meanwhile
    assert lease_mod.read(str(lease)) == last, "the lease changed after the controller's child died"
    assert last["holderIdentity"] == "pod-a", f"a failed controller gave the lease up: {last}"


def test_a_child_that_exits_0_on_its_own_is_still_a_failure(tmp_path, controllers):
    a = controllers(tmp_path / "ingress.json", "pod-a", ["sh", "-c", "sleep 0.5"])
    assert a.wait() == 1


def test_sigterm_tells_the_child_to_quit_and_releases_the_lease_at_once(tmp_path, controllers):
    lease, quit_mark = tmp_path / "ingress.json", tmp_path / "quit"
    retry = 60.0  # a wait between two tries that the SIGTERM must cut short
    a = controllers(lease, "pod-a", fake_nginx(quit_mark), duration=120.0, retry=retry)
    until(a.holds, "pod-a did not take the free lease")
    until(lambda: ready(quit_mark), "the fake nginx did not set its QUIT trap")
    assert os.getpgid(a.child) == a.child != os.getpgid(a.proc.pid), "the child is not in a process group of its own"
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(timeout=retry / 2) == 0, "the controller did not exit 0 on SIGTERM before its retry period"
    assert quit_mark.read_text().strip() == "quit", "the child was not sent QUIT"
    assert not os.path.exists(f"/proc/{a.child}"), "the child outlived its controller"
    assert (lease_mod.read(str(lease)) or {}).get("holderIdentity") == "", "the lease was not released on SIGTERM"


def test_nginx_gets_every_signals_default_action_even_when_the_controller_was_started_ignoring_some(
        tmp_path, controllers):
    quit_mark = tmp_path / "quit"
    a = controllers(tmp_path / "ingress.json", "pod-a", fake_nginx(quit_mark),
                    ignore=(signal.SIGQUIT, signal.SIGINT, signal.SIGTERM))
    until(lambda: ready(quit_mark), "the fake nginx did not set its QUIT trap")
    ignored = int(next(line.split()[1] for line in Path(f"/proc/{a.child}/status").read_text().splitlines()
                       if line.startswith("SigIgn:")), 16)
    for signum in (signal.SIGQUIT, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        assert not ignored & (1 << (signum - 1)), f"nginx was started with {signum.name} ignored"
    a.proc.send_signal(signal.SIGTERM)
    assert a.wait() == 0
    assert quit_mark.read_text().strip() == "quit", "nginx never got the QUIT (it was started ignoring it)"


def test_a_second_controller_takes_the_lease_once_the_first_died_and_the_duration_ran_out(tmp_path, controllers):
    lease = tmp_path / "ingress.json"
    duration, retry = 2.0, 0.2
    a = controllers(lease, "pod-a", fake_nginx(tmp_path / "qa"), duration=duration, retry=retry)
    until(a.holds, "pod-a did not take the free lease")
    b = controllers(lease, "pod-b", fake_nginx(tmp_path / "qb"), duration=duration, retry=retry)
    os.kill(a.child, signal.SIGKILL)
    assert a.wait() != 0
    last = lease_mod.read(str(lease))
    assert last["holderIdentity"] == "pod-a"
    until(b.holds, "pod-b never took the lease over")
    taken = lease_mod.read(str(lease))
    gap = taken["acquireTime"] - last["renewTime"]
    assert gap > duration, f"pod-b took the lease {gap:.2f} s after pod-a's last renewal, before {duration} s ran out"
    # pod-b tries every retry period: the first try after the lease expired takes it
    assert gap <= duration + retry + 1.0, (f"pod-b took the lease only {gap:.2f} s after pod-a's last renewal "
                                           f"(duration {duration} s, retry {retry} s)")
    assert taken["leaseTransitions"] == last["leaseTransitions"] + 1, (last, taken)
    assert b.proc.poll() is None


def test_a_missing_program_is_named_and_ends_the_controller(tmp_path, ingress_program):
    done = subprocess.run([str(ingress_program), "--lease", str(tmp_path / "l.json"),
                           "--identity", "pod-a", "--", "no-such-nginx-here"], capture_output=True, text=True,
                          timeout=WAIT)
    assert done.returncode == 127 and "no-such-nginx-here" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "l.json").exists(), "a controller without nginx took part in the election"


@pytest.mark.parametrize("args, says", [
    (["--retry", "3", "--duration", "3", "--", "sleep", "1"], "--retry 3.0 must be above 0 and below --duration 3.0"),
    (["--"], "no nginx command"),
    (["--retry", "soon", "--", "sleep", "1"], "--retry 'soon' is not a number of seconds"),
    (["--ttl", "3", "--", "sleep", "1"], "unknown option --ttl"),
])
def test_bad_arguments_are_refused_with_the_value_and_the_fix(tmp_path, ingress_program, args, says):
    done = subprocess.run([str(ingress_program), "--lease", str(tmp_path / "l.json"), "--identity", "pod-a", *args],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not (tmp_path / "l.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace of its own needs root")
def test_as_the_first_process_of_its_pid_namespace_it_still_stops_gracefully_on_sigterm(tmp_path, ingress_program):
    """In the lab the controller is pid 1 of its container's PID namespace. A namespace's first
    process without a SIGTERM handler never gets SIGTERM from inside, and the lab's runtime kills
    it at once instead (podpath_lab.deaf_namespace_init): the controller has one, so SIGTERM from
    outside still makes it tell nginx to quit and release the lease."""
    lease, quit_mark = tmp_path / "ingress.json", tmp_path / "quit"
    wrapper = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--", str(ingress_program),
                                "--lease", str(lease), "--identity", "pod-a", "--", *fake_nginx(quit_mark)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: (lease_mod.read(str(lease)) or {}).get("holderIdentity") == "pod-a",
              "the controller did not take the free lease")
        until(lambda: ready(quit_mark), "the fake nginx did not set its QUIT trap")
        first = int(Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()[0])
        status = dict(line.split(":", 1) for line in Path(f"/proc/{first}/status").read_text().splitlines())
        assert status["NSpid"].split()[-1] == "1", f"the controller is not pid 1 of its namespace: {status['NSpid']}"
        assert not labdir.lab.deaf_namespace_init(first), "the lab's runtime would take the controller as deaf"
        os.kill(first, signal.SIGTERM)
        assert wrapper.wait(timeout=WAIT) == 0
        assert quit_mark.read_text().strip() == "quit", "nginx's stand-in was not sent QUIT"
        assert (lease_mod.read(str(lease)) or {}).get("holderIdentity") == "", "the lease was not released"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()


def test_help_names_every_option_and_exits_0(ingress_program):
    done = subprocess.run([str(ingress_program), "--help"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: podpath-ingress --lease PATH --identity POD"), done.stdout
    for option in ("--lease", "--identity", "--duration", "--retry"):
        assert f"\n  {option} " in done.stdout, f"--help does not name {option}:\n{done.stdout}"


def test_its_log_says_each_step_at_once_each_line_after_the_time(tmp_path, controllers):
    """The container's log: one line per event, 'HH:MM:SS message', written when it happens
    (read here while the controller still runs), as docs/netns-lab.md and the walkthrough show."""
    quit_mark = tmp_path / "quit"
    a = controllers(tmp_path / "ingress.json", "pod-a", fake_nginx(quit_mark))
    started = a.proc.stdout.readline()
    assert re.fullmatch(rf"\d\d:\d\d:\d\d pod-a: started nginx, pid {a.child}: sh -c trap .*\n", started), started
    assert re.fullmatch(r"\d\d:\d\d:\d\d pod-a is primary \(leader: pod-a\)\n", a.proc.stdout.readline())
    until(lambda: ready(quit_mark), "the fake nginx did not set its QUIT trap")
    a.proc.send_signal(signal.SIGTERM)
    assert a.wait() == 0
    rest = a.proc.stdout.read().splitlines()
    assert [line[9:] for line in rest] == ["pod-a: SIGTERM: nginx told to quit (QUIT), lease released",
                                           "pod-a: nginx has stopped"], rest
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in rest), rest


def test_a_fresh_lease_of_another_controller_is_left_to_it(tmp_path, controllers):
    lease = tmp_path / "ingress.json"
    # renewed, as far as pod-a can tell, for the next minute
    held = {"acquireTime": time.time(), "holderIdentity": "pod-b", "leaseDurationSeconds": 3.0, "leaseTransitions": 4,
            "renewTime": time.time() + 60}
    lease.write_text(json.dumps(held, sort_keys=True))
    a = controllers(lease, "pod-a", fake_nginx(tmp_path / "quit"), retry=0.05)
    assert a.proc.stdout.readline().split(" ", 1)[1].startswith("pod-a: started nginx")
    assert a.proc.stdout.readline()[9:] == "pod-a is secondary (leader: pod-b)\n"
    time.sleep(0.5)  # ten retry periods: a controller that took a fresh lease would have by now
    assert lease_mod.read(str(lease)) == held, "pod-a changed a lease that pod-b still held"


def test_a_controller_frozen_holding_the_lock_hangs_no_other(tmp_path, controllers):
    """A drill freezes (SIGSTOP) the controllers; one frozen inside its renewal keeps the lease's
    lock. Another controller then skips its tries (writing nothing) and still stops on SIGTERM,
    without releasing; once the lock is free a controller takes the lease again."""
    lease = tmp_path / "lease.json"
    expired = {"holderIdentity": "pod-b", "leaseDurationSeconds": 3.0, "leaseTransitions": 0, "renewTime": 100.0}
    lease.write_text(json.dumps(expired))
    frozen = os.open(lease, os.O_RDWR)  # another open file: its lock stands against the controller's
    try:
        fcntl.flock(frozen, fcntl.LOCK_EX)
        quit_mark = tmp_path / "quit"
        a = controllers(lease, "pod-a", fake_nginx(quit_mark), retry=0.1)
        until(lambda: ready(quit_mark), "the fake nginx did not set its QUIT trap")
        assert a.proc.stdout.readline()[9:].startswith("pod-a: started nginx")
        assert a.proc.stdout.readline()[9:] == "pod-a is secondary (leader: pod-b)\n"  # pod-b's, unlocked, as it is
        a.proc.send_signal(signal.SIGTERM)
        assert a.wait() == 0, "the controller did not stop while another held the lease's lock"
        assert json.loads(lease.read_text()) == expired, "the controller wrote the lease without its lock"
    finally:
        os.close(frozen)
    b = controllers(lease, "pod-c", fake_nginx(tmp_path / "quit-c"))
    until(b.holds, "pod-c did not take the expired lease once its lock was free")
