"""ingress-nginx's controller for one controller pod of the netns lab.

In ingress-nginx the controller's process (/nginx-ingress-controller) starts the nginx
master as its own child, in a process group of its own so that signals meant for the
controller do not reach nginx, and takes part in the leader election (client-go's
leaderelection, on the Lease named by --election-id) from that same process. So does this
program, the first process of the pod's `controller` container:

    python -m podpath.runtime.ingress --lease PATH --identity POD [--duration 3] [--retry 0.75] -- NGINX ARGV...

- It starts NGINX ARGV (nginx with the pod's configuration and `daemon off`) as its child.
- Every retry period, while that nginx lives, it tries to take or renew the lease at PATH
  (podpath.runtime.lease): the lease lives in the controller, so a controller whose nginx
  is gone, or that is frozen, stops renewing it, and another controller takes it once
  its duration has passed.
- When nginx exits without being asked, the controller says so and exits too, with
  nginx's failure (its exit code, 128 + the signal that killed it, or 1 if it exited 0
  on its own). It does not give the lease up: a controller that fails keeps it until the
  duration runs out, as a controller that crashes does. (ingress-nginx itself logs that
  the nginx master died and lets the liveness probe have the kubelet restart the
  container; the netns lab has no liveness probe, so the container ends at once.)
- On SIGTERM (or SIGINT) it sends nginx QUIT (a graceful stop: nginx finishes the requests
  it has), releases the lease so that another controller takes it within a retry period,
  waits for nginx to exit and exits 0.

As the first process of its PID namespace it also reaps the processes that nginx leaves
behind (its workers, if the master is killed before them).
"""
from __future__ import annotations

import os
import signal
import sys
import time
import types

from podpath.runtime import lease as lease_mod

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# The lab's lease times, ingress-nginx's scaled down by 10: its --election-ttl is 30 s (the
# lease's duration), and it gives client-go's elector a retry period of ttl/4. A lab's
# failover is meant to be seen, not waited for.
DURATION = 3.0  # leaseDurationSeconds
RETRY = DURATION / 4  # seconds between two tries to take or renew the lease


def log(message: str) -> None:
    """One line to the container's log (its stdout, which the lab sends to a file). Not
    podpath.runtime.daemon's: that module brings in what the daemons need (ctypes,
    dataclasses), memory a process in every controller pod does not need."""
    print(time.strftime("%H:%M:%S"), message, flush=True)


def failure_code(status: int) -> int:
    """The exit code that carries the failure of a child whose wait status is STATUS."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return 128 - code  # killed by signal -code, as a shell reports it (SIGKILL: 137)
    return code or 1  # nginx left on its own without being asked: still a failure of the container


def describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def reap(child: int) -> int | None:
    """Reap every child that has exited (nginx, and orphans the kernel gave the namespace's
    first process); return CHILD's wait status if it was one of them."""
    found = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if pid == 0:
            return found
        if pid == child:
            found = status


# every signal that can be caught: its default action in nginx, whatever this process was given
DEFAULT_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def start_nginx(argv: list[str]) -> int:
    """NGINX ARGV as a child in a process group of its own, with no signal blocked and every
    signal's default action (Python ignores SIGPIPE, and a job started with & ignores SIGINT
    and SIGQUIT: an ignored signal stays ignored across exec)."""
    return os.posix_spawnp(argv[0], argv, os.environ, setpgroup=0, setsigmask=(), setsigdef=DEFAULT_SIGNALS)


USAGE = ("usage: python -m podpath.runtime.ingress --lease PATH --identity POD [--duration SECONDS] "
         "[--retry SECONDS] -- NGINX ARGV...")
OPTIONS = {"--lease": "the lease file the controllers elect their leader with",
           "--identity": "this controller's name in the lease (its pod's)",
           "--duration": f"leaseDurationSeconds (default {DURATION:g})",
           "--retry": f"seconds between two tries (default {RETRY:g}, a quarter of the duration)"}


def refuse(message: str) -> None:
    """Bad arguments: say what is wrong on stderr, with the usage line, and exit 2."""
    print(f"{USAGE}\npython -m podpath.runtime.ingress: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse(argv: list[str] | None) -> types.SimpleNamespace:
    """The command line: the options, then (after --, or from the first word that is not an
    option) nginx's command. Not argparse: it would be memory in every controller pod."""
    argv = sys.argv[1:] if argv is None else list(argv)
    given: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        name, eq, value = argv[i].partition("=")
        if name in ("-h", "--help"):
            print(USAGE + "\n\n" + "\n".join(f"  {o:<12} {h}" for o, h in OPTIONS.items()))
            raise SystemExit(0)
        if name not in OPTIONS:
            refuse(f"unknown option {argv[i]}: the options are {', '.join(OPTIONS)}")
        if not eq:
            if i + 1 >= len(argv):
                refuse(f"{name} needs a value")
            i += 1
            value = argv[i]
        given[name] = value
        i += 1
    nginx = argv[i + 1:] if argv[i:i + 1] == ["--"] else argv[i:]
    for name in ("--lease", "--identity"):
        if not given.get(name):
            refuse(f"{name} is required")
    times = {}
    for name, default in (("--duration", DURATION), ("--retry", RETRY)):
        try:
            times[name] = float(given.get(name, default))
        except ValueError:
            refuse(f"{name} {given[name]!r} is not a number of seconds")
    duration, retry = times["--duration"], times["--retry"]
    if not nginx:
        refuse("no nginx command: give it after --, e.g. -- nginx -c CONF -g 'daemon off;'")
    if not 0 < retry < duration:
        refuse(f"--retry {retry} must be above 0 and below --duration {duration}: a leader renews "
               "several times within the lease's duration")
    return types.SimpleNamespace(lease=given["--lease"], identity=given["--identity"], duration=duration,
                                 retry=retry, nginx=nginx)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    watched = {signal.SIGCHLD, *STOP_SIGNALS}
    # From here on these signals stay pending until the loop asks for them (sigtimedwait):
    # a stop or nginx's exit ends the wait between two tries at once, never a write of the
    # lease half-way. nginx starts with none of them blocked (start_nginx). The stop signals
    # also get a handler (never run while they are blocked): the first process of a PID
    # namespace that has none is taken as deaf to SIGTERM and killed at once, by the kernel
    # for signals from inside and by the lab's runtime (it reads SigCgt), with no release.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        nginx = start_nginx(args.nginx)
    except OSError as exc:
        log(f"cannot start nginx ({args.nginx[0]}): {exc.strerror}")
        return 127
    log(f"{args.identity}: started nginx, pid {nginx}: {' '.join(args.nginx)}")
    role, trouble = None, None
    while True:
        status = reap(nginx)
        if status is not None:
            log(f"{args.identity}: nginx (pid {nginx}) {describe(status)} without being asked: the controller stops "
                f"renewing the lease and exits with code {failure_code(status)}")
            return failure_code(status)
        try:
            lease = lease_mod.step(args.lease, args.identity, args.duration, time.time())
        except OSError as exc:  # the lease cannot be read or written: try again, as client-go does
            if str(exc) != trouble:
                log(f"{args.identity}: cannot take or renew the lease {args.lease}: {exc}")
                trouble, role = str(exc), None
        else:
            trouble = None
            holder = lease.get("holderIdentity")
            new_role = "primary" if holder == args.identity else "secondary"
            if new_role != role:
                log(f"{args.identity} is {new_role} (leader: {holder})")
                role = new_role
        got = signal.sigtimedwait(watched, args.retry)
        if got is not None and got.si_signo in STOP_SIGNALS:
            break
    log(f"{args.identity}: {signal.Signals(got.si_signo).name}: nginx told to quit (QUIT), lease released")
    try:
        os.kill(nginx, signal.SIGQUIT)
    except ProcessLookupError:
        pass
    try:
        lease_mod.release(args.lease, args.identity)
    except OSError as exc:
        log(f"{args.identity}: cannot release the lease {args.lease}: {exc}")
    try:
        os.waitpid(nginx, 0)  # the container's runtime ends a drain that outlasts its grace period
    except ChildProcessError:
        pass
    log(f"{args.identity}: nginx has stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
