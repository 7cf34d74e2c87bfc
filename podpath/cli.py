"""podpath: the short way to build, verify, trace and remove a lab.

Each verb binds its flags and calls the library; the work is done by the project's
playbooks (through ansible-runner) and its pytest-testinfra suites, which users can
also run directly.

Exit codes: 0 success, 1 the lab or the verifier failed, 2 bad usage or input,
3 missing requirement (root, a system tool), 4 the lab is locked by another command.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from podpath.cluster.cli import register as register_cluster
from podpath.model import labdir
from podpath.model.topology import REFUSED, ROOT, TopologyError, load, read

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING, EXIT_LOCKED = 0, 1, 2, 3, 4



def required_tools(path: Path = ROOT / "debian-packages.txt") -> dict[str, str]:
    """command -> the Debian package that brings it, for the commands the netns lab runs."""
    tools = {}
    for line in path.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        tools.update({command: words[0] for command in words[1:]})
    return tools


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def require_root() -> None:
    if os.geteuid() != 0:
        raise CliError("podpath builds network namespaces and must run as root: try sudo podpath ...", EXIT_MISSING)


def require_tools(tools: dict[str, str] | None = None) -> None:
    tools = required_tools() if tools is None else tools
    missing = {tool: pkg for tool, pkg in tools.items() if shutil.which(tool) is None}
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise CliError(f"missing system tools: {', '.join(sorted(missing))}; install them with: apt-get install {pkgs}",
                       EXIT_MISSING)


DEFAULT_LAB = "podpath"
# The verbs a user who is not root runs in their own sandbox (podpath/sandbox.py, docs/rootless.md),
# and root runs in a user's sandbox with --user USER.
SANDBOX_VERBS = ("up", "down", "verify", "trace", "status", "drill", "labs", "shell")


def user_argv(argv: list[str]) -> list[str]:
    """ARGV without --user USER (before a `--`): what runs in that user's sandbox."""
    out, skip = [], False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word == "--":
            return out + argv[i:]
        elif word == "--user":
            skip = True
        elif not word.startswith("--user="):
            out.append(word)
    return out


def in_sandbox(args, argv: list[str]) -> int | None:
    """Run this command in a user's sandbox, when it belongs there: the caller is not root (their
    own sandbox, made by `up` if needed), or root gave --user USER. None: it runs here."""
    from podpath import sandbox

    user = getattr(args, "user", None)
    if args.verb not in SANDBOX_VERBS or getattr(args, "all_users", False):
        return None
    if sandbox.inside():
        if user is not None:
            raise CliError("--user works from the host, not from inside a sandbox")
        return None
    if os.geteuid() == 0 and user is None:
        return None
    try:
        who = sandbox.account(user)
        if os.geteuid() != 0 and who.pw_uid != os.getuid():
            raise CliError(f"only root may work on the labs of user {who.pw_name}", EXIT_MISSING)
        if who.pw_uid == 0:
            raise CliError("root's labs run on the host: leave out --user")
        found = sandbox.find(who)
        if found is None:
            if args.verb == "labs":
                print(f"no labs of {who.pw_name} on this host; build one with: podpath up" if user else
                      "no labs of yours on this host; build one with: podpath up")
                return EXIT_OK
            if args.verb != "up" or os.getuid() != who.pw_uid:
                raise CliError(f"{who.pw_name} has no lab on this host (no sandbox runs): podpath up --lab NAME, "
                               "run as that user, builds one")
            found = sandbox.ensure(who)
        inner = user_argv(argv)  # this command goes on in the sandbox, in a child of this process
        return sandbox.run(found, lambda: main(inner), end_if=sandbox.holds_nothing if args.verb == "down" else None)
    except sandbox.SandboxError as exc:
        raise CliError(str(exc), EXIT_MISSING)


def choose_lab(args) -> str:
    """The lab a command works on: --lab, else $PODPATH_LAB, else the only lab on this host
    (said on stderr, so a student who built `stu1` can type `podpath status`), else
    `podpath` for `up` (a first lab) and an error that lists the labs for the other verbs."""
    if args.lab is not None:  # given, even if empty: check_lab says what is wrong with it
        return args.lab
    if os.environ.get("PODPATH_LAB"):
        return os.environ["PODPATH_LAB"]
    from podpath.evidence.status import list_labs

    labs = [item["lab"] for item in list_labs()]
    if len(labs) == 1:
        if labs[0] != DEFAULT_LAB:
            print(f"podpath: using lab {labs[0]}, the only lab on this host", file=sys.stderr)
        return labs[0]
    if not labs and args.verb == "up":
        return DEFAULT_LAB
    if not labs:
        raise CliError("there is no lab on this host: build one with podpath up [--lab NAME]")
    raise CliError(f"this host has {len(labs)} labs ({', '.join(labs)}): say which with --lab NAME "
                   "or set PODPATH_LAB=NAME")


def check_lab(name: str) -> str:
    error = labdir.check_lab_name(name)
    if error:
        raise CliError(error)
    return name


class LabLock:
    """An exclusive lock per lab, so two commands never change one lab at once."""

    def __init__(self, lab: str, wait: bool):
        labdir.LOCKS.mkdir(parents=True, exist_ok=True, mode=0o755)
        self.path = labdir.LOCKS / f"{lab}.lock"
        self.lab = lab
        self.wait = wait
        self.fd = None

    def holder(self) -> str:
        """The command that holds the lock: 'pid N (its command line)', as far as it can be read."""
        pid = os.pread(self.fd, 64, 0).decode(errors="replace").strip()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0") if pid.isdigit() else []
        except OSError:
            argv = []
        words = [os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
                 for i, a in enumerate(argv)]
        return f"pid {pid or '?'}" + (f": {' '.join(words)[:120]}" if words else "")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not self.wait:
                os.close(self.fd)
                raise CliError(f"lab {self.lab} is being changed by another podpath command ({holder}); "
                               "wait for it to finish, or pass --wait to queue behind it", EXIT_LOCKED)
            # a command that waits says so, and for what, before it waits
            print(f"podpath: waiting for lab {self.lab}: another podpath command is changing it ({holder})",
                  file=sys.stderr, flush=True)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            print(f"podpath: lab {self.lab} is free: going on", file=sys.stderr, flush=True)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        os.ftruncate(self.fd, 0)
        os.close(self.fd)


def lab_exists(lab: str) -> bool:
    from podpath.evidence.status import lab_exists as exists

    return exists(lab)


def require_lab(lab: str) -> None:
    """A verb that reads a lab stops, saying how to build it, when the lab does not exist."""
    if not lab_exists(lab):
        raise CliError(f"lab {lab} does not exist on this host: build it with podpath up --lab {lab}")


def report_interrupted(lab: str, result) -> int:
    print(f"podpath: interrupted; the play stopped after {result.seconds:.1f} s and lab {lab} may be half-built: "
          f"podpath up --lab {lab} finishes it, podpath down --lab {lab} removes it", file=sys.stderr)
    return result.interrupted


def report_failure(result) -> None:
    for f in result.failures[:3]:
        print(f"FAILED: task '{f['task']}' on {f['host']}: {f['msg']}", file=sys.stderr)
    print(f"full log: {result.log}", file=sys.stderr)


def refused_topology(result) -> str | None:
    """The play's own words when its plan step refused the topology, else None."""
    for failure in result.failures:
        at = failure["msg"].find(REFUSED)
        if at >= 0:
            return failure["msg"][at:]
    return None


def topology_file(lab: str) -> Path:
    """Where `up` keeps the topology a lab was built from, when it was not the project's own."""
    return Path(labdir.lab_dir(lab), "topology.yml")


def remembered_topology(args) -> None:
    """Without --topology, a lab built with one is seen (verified, traced, repaired) with the
    same one: the copy `up` kept in the lab's folder. --topology always wins."""
    kept = topology_file(args.lab)
    if not args.topology and kept.is_file():
        args.topology = str(kept)
        if args.verb == "up" and not getattr(args, "quiet", False):
            print(f"podpath: lab {args.lab} was built from its own topology, kept in {kept}: up uses it "
                  "(give --topology to build it from another)")


def keep_topology(args) -> None:
    """After a good `up`: keep the topology the lab was built from (nothing for the project's own)."""
    kept = topology_file(args.lab)
    if args.topology and Path(args.topology) != kept:
        text = yaml.safe_dump({"podpath_topology": read(args.topology)}, sort_keys=False)
        tmp = kept.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, kept)
    elif not args.topology:
        kept.unlink(missing_ok=True)


def cmd_up(args) -> int:
    from podpath.play import together

    require_root()
    require_tools()
    if args.mode == "vagrant":
        raise CliError("the cluster lab is built with Vagrant: run `vagrant up` in the project folder "
                       "(see docs/cluster.md); `podpath up` builds the netns lab", EXIT_USAGE)
    extravars = {"podpath_lab": args.lab}
    if args.topology:
        try:  # read only: the play's plan step checks it, as it checks the default one
            extravars["podpath_topology"] = read(args.topology)
        except TopologyError as exc:
            raise CliError(f"topology: {exc}")
    from podpath import sandbox
    from podpath.runtime.pause_build import build as build_pause

    if not sandbox.inside():
        build_pause()
    else:  # in a sandbox the programs are root's, built by make (again after an update that adds one)
        problem = sandbox.unbuilt_program()
        if problem:
            raise CliError(problem, EXIT_MISSING)
    with LabLock(args.lab, args.wait):
        if not Path(labdir.lab_dir(args.lab), "netns.json").exists() and lab_exists(args.lab):
            print(f"podpath: lab {args.lab} has lost its folder {labdir.lab_dir(args.lab)}: up adopts what carries "
                  "the lab's mark and repairs the rest", file=sys.stderr)
        # alone, or in one play with the labs whose up started meanwhile (podpath/play/together.py)
        result = together.up(args.lab, extravars, verbose=args.verbose, quiet=args.quiet)
    if result.interrupted:
        return report_interrupted(args.lab, result)
    if result.rc != 0:
        refused = refused_topology(result)
        if refused:
            if not lab_exists(args.lab):  # nothing was built: leave no trace of the lab
                shutil.rmtree(labdir.RUNS / args.lab, ignore_errors=True)
                (labdir.LOCKS / f"{args.lab}.lock").unlink(missing_ok=True)
            raise CliError(refused)
        report_failure(result)
        return EXIT_FAILED
    keep_topology(args)
    wait_until_ready(args.lab, topology(args), quiet=args.quiet)  # its pods ready, as after kubectl rollout status
    if not args.quiet:
        print(f"lab {args.lab} is up in {result.seconds:.1f} s ({result.changed} tasks changed). "
              f"Next: podpath verify --lab {args.lab}")
    return EXIT_OK


def cmd_down(args) -> int:
    from podpath.play import together
    from podpath.play.playbook import run_playbook

    require_root()
    with LabLock(args.lab, args.wait):
        result = run_playbook("netns-lab-down-here.yml", {"podpath_lab": args.lab}, verbose=args.verbose,
                              quiet=args.quiet)
    if result.interrupted:
        return report_interrupted(args.lab, result)
    if result.rc != 0:
        report_failure(result)
        return EXIT_FAILED
    left = down_leftovers(args.lab)
    if left:  # the kernel, not the play's report, says whether the lab is gone
        print(f"podpath: lab {args.lab} is NOT down; still there with its mark: {'; '.join(left)}. Run podpath down "
              f"--lab {args.lab} again; what is held by a process that is not the lab's (a shell opened in one of "
              "its namespaces) goes when that process ends", file=sys.stderr)
        return EXIT_FAILED
    shutil.rmtree(labdir.RUNS / args.lab, ignore_errors=True)
    (labdir.LOCKS / f"{args.lab}.lock").unlink(missing_ok=True)
    together.tidy()  # the log of a play of labs started together, when no lab links to it any more
    if not args.quiet:
        print(f"lab {args.lab} is down ({result.seconds:.1f} s)")
    return EXIT_OK


def down_leftovers(lab: str, settle_s: float = 2.0) -> list[str]:
    """What of LAB the kernel still holds after `down`; processes just signalled get SETTLE_S to go."""
    import time

    from podpath.evidence.status import leftovers

    deadline = time.monotonic() + settle_s
    while (left := leftovers(lab)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# pytest's plugins that wrap every check's setup, call and teardown for what a verifier run
# never shows (captured log records, warnings, exceptions in threads or at garbage collection,
# a hung test's traceback): about 10 % of the CPU of a run of 11,000 checks
VERIFY_NO_PLUGINS = ("logging", "warnings", "unraisableexception", "threadexception", "faulthandler")


def verify_argv(args, extra: list[str]) -> list[str]:
    # --assert=plain: every check's assertion carries its own evidence, and pytest's rewriting
    # of the suite and its plugins costs 0.3 CPU s a run where no bytecode is written
    no_plugins = [arg for plugin in VERIFY_NO_PLUGINS for arg in ("-p", f"no:{plugin}")]
    argv = [sys.executable, "-m", "pytest", "--hosts=local://", "--lab", args.lab, "-q", "--no-header",
            "-p", "no:cacheprovider", *no_plugins, "--assert=plain", "-o", "addopts=", str(ROOT / "tests" / "verify")]
    if getattr(args, "topology", None):
        argv.append(f"--topology={args.topology}")
    if args.junitxml:
        argv.append(f"--junitxml={args.junitxml}")
    if args.disruptive:
        argv.append("--disruptive")
    if not getattr(args, "verbose", False):  # a failed scenario says its hop, evidence and next command
        argv += ["--tb=no", "-rN"]
    return argv + extra


def say_if_arp_table_was_full(before: int | None, failed: bool) -> None:
    """After a verifier run that FAILED, say so on stderr when the host's ARP table was full
    since the count BEFORE it (probe.arp_table_fulls): a check may have failed for that."""
    from podpath.evidence import probe

    fulls = probe.arp_table_fulls_since(before)
    if failed and fulls:
        print(probe.arp_table_warning(fulls, probe.neighbour_table_limit()), file=sys.stderr)


def cmd_verify(args, extra=()) -> int:
    from podpath.evidence import probe

    require_root()
    require_lab(args.lab)
    before = probe.arp_table_fulls()
    code = subprocess.call(verify_argv(args, list(extra)), cwd=ROOT)
    say_if_arp_table_was_full(before, code != EXIT_OK)
    return code


def topology(args) -> dict:
    """The checked topology of --topology (or the default one); a refused one is a usage error."""
    try:
        return load(args.topology)
    except TopologyError as exc:
        raise CliError(f"topology: {exc}")


def cmd_trace(args) -> int:
    from podpath.evidence import picture, trace

    require_root()
    require_lab(args.lab)
    if args.output:
        picture_format(args.output)
    result = trace.trace(args.lab, topology(args), host=args.host)
    print(trace.render_text(result))
    if args.output:
        write_picture(picture.trace_picture(result), args.output)
        print(f"diagram written to {args.output}")
    return EXIT_OK if result.complete else EXIT_FAILED


def picture_format(path: str) -> str:
    """The picture format PATH names; a bad suffix, or SVG/PNG without Graphviz, stops the
    command before it does anything."""
    from podpath.evidence import picture

    try:
        return picture.output_format(path)
    except picture.PictureError as exc:
        raise CliError(str(exc), EXIT_MISSING if exc.missing else EXIT_USAGE)


def write_picture(drawn, path: str) -> None:
    """Write DRAWN (a podpath.evidence.picture.Picture) to PATH."""
    from podpath.evidence import picture

    try:
        picture.write(drawn, path)
    except picture.PictureError as exc:
        raise CliError(str(exc), EXIT_MISSING if exc.missing else EXIT_FAILED)
    except OSError as exc:
        raise CliError(f"{path}: cannot write the picture: {exc.strerror}", EXIT_FAILED)


def cmd_status(args) -> int:
    from podpath.evidence import picture, status
    from podpath.model.plan import build

    require_root()
    require_lab(args.lab)
    if args.picture:
        picture_format(args.picture)
    plan = build(topology(args), args.lab)
    report = status.lab_status(plan)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(status.render(report))
    if args.picture:
        write_picture(picture.lab_picture(plan, report), args.picture)
        print(f"picture written to {args.picture}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK if report["healthy"] else EXIT_FAILED


def all_users_labs() -> list[dict]:
    """Root's labs and every user's (each sandbox asked with `podpath labs --json`), each with its user."""
    from podpath import sandbox
    from podpath.evidence import status

    require_root()
    labs = [dict(item, user="root") for item in status.list_labs()]
    for box in sandbox.sandboxes():
        try:  # a user's sandbox is theirs to break: it gets a minute to answer
            done = subprocess.run([sys.executable, "-m", "podpath.sandbox", "run", str(box.pid), str(box.uid), "--",
                                   sys.executable, "-m", "podpath.cli", "labs", "--json"], capture_output=True,
                                  text=True, timeout=60)
            found = json.loads(done.stdout)
        except (ValueError, subprocess.TimeoutExpired) as exc:
            said = "no answer within 60 s" if isinstance(exc, subprocess.TimeoutExpired) else done.stderr.strip()
            print(f"podpath: the sandbox of {box.user} (pid {box.pid}) did not answer: {said}", file=sys.stderr)
            continue
        labs += [dict(item, user=box.user, sandbox=box.pid) for item in found]
    return labs


def cmd_labs(args) -> int:
    from podpath.evidence import status

    if args.all_users:
        labs = all_users_labs()
        if args.json:
            print(json.dumps(labs, indent=2))
            return EXIT_OK
        print(f"{'USER':<12} {'LAB':<12} {'NAMESPACES':>10}  {'PROCESSES':>9}  STATE")
        for item in labs:
            running = "?" if item["processes_running"] is None else item["processes_running"]
            print(f"{item['user']:<12} {item['lab']:<12} {item['namespaces']:>10}  "
                  f"{str(running) + '/' + str(item['processes']):>9}  {item['state']}")
        if not labs:
            print("no labs on this host")
        return EXIT_OK
    labs = status.list_labs()
    if args.json:
        print(json.dumps(labs, indent=2))
    elif not labs:
        print("no labs on this host; build one with: podpath up")
    else:
        if not all(item["kernel"] for item in labs):
            print("podpath: not root: the labs' folders only (the kernel, which says what runs, needs root)",
                  file=sys.stderr)
        print(f"{'LAB':<12} {'NAMESPACES':>10}  {'PROCESSES':>9}  STATE")
        for item in labs:
            running = "?" if item["processes_running"] is None else item["processes_running"]
            counts = f"{running}/{item['processes']}"
            print(f"{item['lab']:<12} {item['namespaces']:>10}  {counts:>9}  {item['state']}")
    return EXIT_OK


def drill_state(lab: str) -> Path:
    return Path(labdir.lab_dir(lab)) / "drill.json"


def run_verifier_quietly(lab: str, topology_file: str | None) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="podpath-drill-") as tmp:
        out = Path(tmp) / "scenarios.json"
        subprocess.run(verify_argv(argparse.Namespace(lab=lab, topology=topology_file, junitxml=None, disruptive=False,
                                                      verbose=False),
                                   ["--scenario-json", str(out)]), cwd=ROOT, capture_output=True, text=True)
        return json.loads(out.read_text()) if out.exists() else {}


def print_hint(drill: dict) -> None:
    """What fails and the hop that broke (a drill started by an older podpath has neither)."""
    if drill.get("fails"):
        print(f"  what fails: {drill['fails']}")
    if drill.get("hop"):
        print(f"  the hop:    {drill['hop']}")


def wait_until_ready(lab: str, topo: dict, limit_s: float = 30.0, quiet: bool = False) -> None:
    """Wait (at most LIMIT_S) until every node publishes all its pods ready. `up` ends there, as
    `kubectl rollout status` does after an apply: until then kube-proxy's rules leave the pods
    that are not ready out, and a check of every endpoint would fail. A pod that becomes ready,
    or stops being so, makes every node's kube-proxy render its rules again, which would repair
    a kube-proxy fault as soon as it is made: a drill breaks a settled lab."""
    import time

    from podpath.evidence import probe
    from podpath.evidence.status import unready_pods
    from podpath.model.plan import build

    nodes = [n.name for n in build(topo, lab).nodes]
    deadline = time.monotonic() + limit_s
    said = False
    fulls = probe.arp_table_fulls()
    while waiting := unready_pods(lab, nodes):
        if time.monotonic() > deadline:
            full = probe.arp_table_fulls_since(fulls)
            why = "; " + probe.arp_table_full_while_waiting(full, probe.neighbour_table_limit()) if full else ""
            raise CliError(f"lab {lab} has pods that are still not ready after {limit_s:.0f} s ({'; '.join(waiting)}): "
                           f"see podpath status --lab {lab}, and repair it with podpath up --lab {lab}{why}",
                           EXIT_FAILED)
        if not said and not quiet:
            print(f"waiting for lab {lab} to settle: not ready yet: {'; '.join(waiting)}")
        said = True
        time.sleep(0.5)


def cmd_drill(args) -> int:
    from podpath.evidence import faults
    from podpath.evidence.probe import NetnsLab

    require_root()
    require_lab(args.lab)
    state = drill_state(args.lab)
    if args.action == "start":
        if state.exists():
            raise CliError(f"lab {args.lab} already has a drill running: podpath drill reveal --lab {args.lab} ends it")
        with LabLock(args.lab, False):
            wait_until_ready(args.lab, topology(args))
            before = run_verifier_quietly(args.lab, args.topology)
            broken = sorted(n for n, r in before.items() if r["outcome"] == "FAIL")
            if broken:
                raise CliError(f"lab {args.lab} fails scenarios {', '.join(broken)} already: repair it with podpath up "
                               "before a drill", EXIT_FAILED)
            lab = NetnsLab(args.lab, topology(args))
            fault = faults.pick(args.seed, lab.plan)  # among the faults of the lab's edge
            made = faults.break_lab(lab, fault)
            drill = {"seed": args.seed, "fault": fault.name, "what": made.what, "fails": made.hint.fails,
                     "hop": made.hint.hop}
            state.write_text(json.dumps(drill) + "\n")
        print(f"drill {args.seed}: lab {args.lab} has one broken hop.")
        print_hint(drill)
        print(f"Find what is wrong at that hop. podpath verify --lab {args.lab} runs every check (its messages may "
              f"name the cause outright).\nWhen you think it is fixed: podpath drill check --lab {args.lab}")
        return EXIT_OK
    if not state.exists():
        raise CliError(f"lab {args.lab} has no drill running: start one with podpath drill start --lab {args.lab}")
    drill = json.loads(state.read_text())
    if args.action == "check":
        result = run_verifier_quietly(args.lab, args.topology)
        failing = sorted((n for n, r in result.items() if r["outcome"] == "FAIL"), key=int)
        if failing:
            which = f"scenarios {', '.join(failing)} fail" if len(failing) > 1 else f"scenario {failing[0]} fails"
            print(f"not fixed yet: {which} (podpath verify --lab {args.lab} shows how)")
            print_hint(drill)
            return EXIT_FAILED
        print(f"fixed: every scenario passes again (drill {drill['seed']})")
        return EXIT_OK
    from podpath.model.topology import kube_proxy_mode

    fault = {**faults.CATALOGUE, **faults.GATEWAY_CATALOGUE}[drill["fault"]].in_mode(kube_proxy_mode(topology(args)))  # its answer in the lab's mode
    node_ns = f"{args.lab}-<node>"
    print(f"drill {drill['seed']}: {fault.title}")
    print(f"  what was done: {drill['what']}")
    print(f"  the scenario that shows it: {fault.scenario}")
    print("  commands that would have found it:")
    for command in fault.finds_it:
        print("    " + command.replace("<lab>-<node>", node_ns).replace("<lab>", args.lab))
    print(f"  podpath up --lab {args.lab} repairs it")
    state.unlink()
    return EXIT_OK


def cmd_shell(args) -> int:
    """A shell (or COMMAND) where the lab's namespaces are: the host for root's labs, the user's
    sandbox for theirs (this runs in it), with PODPATH_LAB set to the lab."""
    from podpath import sandbox

    require_root()
    require_lab(args.lab)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = dict(os.environ, PODPATH_LAB=args.lab)
    if not command:
        where = (f"the sandbox of {os.environ.get(sandbox.USER_ENV, 'your user')}" if sandbox.inside()
                 else "this host's namespaces")
        print(f"podpath: a shell for lab {args.lab}, in {where}: ls /var/run/netns lists its namespaces, ip netns "
              f"exec {args.lab}-<node> CMD runs in one, podpath status shows it; exit leaves", file=sys.stderr)
        command = [os.environ.get("SHELL") or "/bin/bash"]
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        raise CliError(f"cannot run {command[0]}: {exc.strerror}", EXIT_FAILED)


def report_labs(text: str) -> list[str]:
    """The labs of --labs A,B,...: each a valid name, none twice."""
    labs = [name.strip() for name in text.split(",")]
    if not all(labs):
        raise CliError(f"--labs {text!r}: an empty name; give the labs separated by commas, e.g. --labs stu1,stu2")
    twice = sorted({name for name in labs if labs.count(name) > 1})
    if twice:
        raise CliError(f"--labs names {', '.join(twice)} more than once; give each lab once")
    return [check_lab(name) for name in labs]


def report_results(labs: list[str], host: str, args) -> list:
    """LABS verified as `podpath verify --scenario-json` verifies one, each lab's results (or
    why there are none), in the order of LABS. The labs that are verified with the same
    topology (the project's, --topology, or none kept by `up`) share runs of the verifier:
    one pytest for several labs (--lab a,b,c), twice as many runs at once as this machine has
    CPUs, since a pytest's start costs about half a CPU second; a lab built from its own topology
    is verified with the copy it keeps, in a run of its own."""
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from podpath.evidence import classreport

    results = {}
    groups: dict[str | None, list[str]] = {}
    for lab in labs:
        if not lab_exists(lab):
            results[lab] = classreport.LabResult(host, lab, error=f"lab {lab} does not exist on this host: build it "
                                                                  f"with podpath up --lab {lab}")
            continue
        kept = topology_file(lab)
        if not args.report_topology and kept.is_file():
            groups[f"{kept}"] = [lab]  # its own topology: a run of its own
        else:
            groups.setdefault(args.report_topology, []).append(lab)
    # two runs per CPU: a run spends part of its time waiting on the lab (answers, ARP), and
    # two per CPU verified 12 labs in 8.6 s here, against 12.1 s with one per CPU
    workers = 2 * max(1, len(os.sched_getaffinity(0)))
    runs = []
    for topo, members in groups.items():
        size = 1 if args.disruptive else -(-len(members) // workers)  # a disruptive check repairs one lab a run
        runs += [(topo, members[i:i + size]) for i in range(0, len(members), size)]
    numbered = {lab: i for i, lab in enumerate(labs, 1)}

    with tempfile.TemporaryDirectory(prefix="podpath-report-") as tmp:
        def verify(run):
            topo, members = run
            for lab in members:
                print(f"podpath: verifying lab {lab} ({numbered[lab]}/{len(labs)})", file=sys.stderr, flush=True)
            folder = Path(tmp, members[0])
            folder.mkdir()
            done = subprocess.run(verify_argv(argparse.Namespace(lab=",".join(members), topology=topo, junitxml=None,
                                                                 disruptive=args.disruptive, verbose=False),
                                              ["--scenario-json-each", str(folder)]),
                                  cwd=ROOT, capture_output=True, text=True)
            for lab in members:
                out = folder / f"{lab}.json"
                if out.exists():
                    results[lab] = classreport.lab_result(host, lab, json.loads(out.read_text()), str(out))
                else:
                    said = " / ".join((done.stdout + done.stderr).strip().splitlines()[-2:])
                    results[lab] = classreport.LabResult(host, lab, error=f"the verifier stopped (exit "
                                                                          f"{done.returncode}) without results: {said}")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(verify, runs))
    return [results[lab] for lab in labs]


def cmd_report(args) -> int:
    import datetime
    import socket

    from podpath.evidence import classreport
    from podpath.model.plan import build

    to_stdout = args.json == "-"  # --json -: the results on stdout (what verify --inventory asks each host)
    outputs = [(path, what) for path, what in ((args.html, "html"), (args.junit, "junit"), (args.json, "json"))
               if path and path != "-"]
    for path, _ in outputs:  # before any lab is verified
        folder = Path(path).resolve().parent
        why = "it is a folder" if Path(path).is_dir() else None if folder.is_dir() else f"no folder {folder}"
        if why:
            raise CliError(f"{path}: cannot write there: {why}; name a file in an existing folder")
    if args.html and shutil.which("dot") is None:
        raise CliError("--html draws the lab with Graphviz's dot: install it with apt-get install graphviz",
                       EXIT_MISSING)
    try:
        plan = build(load(args.report_topology), "<lab>")
        results = classreport.read_results(args.results or [])
    except (TopologyError, classreport.ResultsError) as exc:
        raise CliError(str(exc))
    labs = report_labs(args.labs) if args.labs is not None else None
    if labs is None and not args.results:
        from podpath.evidence.status import list_labs

        require_root()
        labs = [item["lab"] for item in list_labs()]
        if not labs:
            raise CliError("there is no lab on this host: build one with podpath up --lab NAME, or give --results FILE")
    if labs:
        from podpath.evidence import probe

        require_root()
        before = probe.arp_table_fulls()
        host = socket.gethostname()
        given = {r.student for r in results}
        clash = [lab for lab in labs if f"{host}/{lab}" in given]
        if clash:
            raise CliError(f"--results already holds {', '.join(host + '/' + lab for lab in clash)} of this host: "
                           "leave it out of --labs or of the files")
        results += report_results(labs, host, args)
        say_if_arp_table_was_full(before, any(r.status != "pass" for r in results))
    texts = {"json": lambda: json.dumps(classreport.results_document(results), indent=1) + "\n",
             "junit": lambda: classreport.render_junit(results, plan),
             "html": lambda: classreport.render_html(results, plan, datetime.datetime.now(datetime.timezone.utc)
                                                     .strftime("%Y-%m-%d %H:%M UTC"))}
    print(classreport.render_text(results, plan), end="", file=sys.stderr if to_stdout else sys.stdout)
    if to_stdout:
        print(texts["json"](), end="")
    for path, what in outputs:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(texts[what]())
        os.replace(tmp, path)
        print(f"{what} written to {path}")
    return EXIT_OK if all(r.status == "pass" for r in results) else EXIT_FAILED


# --- a class on many hosts: --inventory INVENTORY [--limit PATTERN] (docs/classroom.md) ----------
# up, down, verify, status and drill act on every lab of every host of an Ansible inventory.
# Ansible is the engine (podpath/play/fleet.py): up and down run the fleet's playbooks, the
# others ask each lab on its host with the podpath of the runtime there; verify gathers the
# answers into the class report.

FLEET_VERBS = ("up", "down", "verify", "status", "drill")
CLASS_REPORT_FILES = {"text": "class-report.txt", "junit": "class-report.xml", "html": "class-report.html",
                      "json": "class-results.json"}


def fleet_args(sp) -> None:
    group = sp.add_argument_group("a class on many hosts (docs/classroom.md)")
    group.add_argument("--inventory", metavar="INVENTORY",
                       help="act on every lab of every host of this Ansible inventory, over SSH")
    group.add_argument("--limit", metavar="PATTERN", help="with --inventory: only the hosts of this Ansible pattern")


def fleet_progress(args):
    """What tells the user each task of the play as it starts (once, though every host runs it)."""
    if getattr(args, "quiet", False) or getattr(args, "verbose", False):
        return None
    said = set()

    def progress(task: str) -> None:
        if task not in said and "Validating arguments" not in task:
            said.add(task)
            print(f"podpath: {task}", file=sys.stderr)
    return progress


def fleet_bad_hosts(run) -> None:
    for host, outcome in sorted(run.bad_hosts.items()):
        print(f"podpath: host {host} {outcome.state.upper()}: {outcome.message or 'see Ansible output (-v)'}",
              file=sys.stderr)


def fleet_schema_marks() -> list[str]:
    """The mark of the reference topology's schema check, which this control node passes: the
    hosts' podpath then needs no jsonschema (the runtime has the same topology, schema and code)."""
    from podpath.model import topology as topology_mod

    topo = topology(argparse.Namespace(topology=None))
    key = topology_mod._schema_key(topo, topology_mod.SCHEMA_FILE.read_text())
    return [str(topology_mod.SCHEMA_PASSED / key)] if key else []


def cmd_fleet(args, extra=()) -> int:
    from podpath.play import fleet

    if extra:
        raise CliError(f"{' '.join(extra)}: pytest's options do not go with --inventory")
    if args.topology:
        raise CliError("--topology does not go with --inventory: a class's labs are built and verified from "
                       "the reference topology; leave out --topology")
    if getattr(args, "user", None):
        raise CliError("--user does not go with --inventory: the labs of an inventory's hosts are root's")
    if args.lab is not None:
        check_lab(args.lab)
    try:
        inventory = fleet.check_inventory(args.inventory)
        if args.verb in ("up", "down"):
            return fleet_up_down(args, inventory)
        if args.verb == "verify":
            return fleet_verify(args, inventory)
        if args.verb == "status":
            return fleet_status(args, inventory)
        return fleet_drill(args, inventory)
    except fleet.FleetError as exc:
        raise CliError(str(exc))


def fleet_up_down(args, inventory: str) -> int:
    from podpath.play import fleet

    up = args.verb == "up"
    extravars = {"podpath_lab": args.lab} if args.lab else {}
    if not up and args.remove_runtime:
        extravars["podpath_remove_runtime"] = True
    run = fleet.run("netns-lab.yml" if up else "netns-lab-down.yml", inventory, args.limit, extravars,
                    fleet_progress(args), echo=args.verbose)
    if not args.quiet:
        for line in run.summary:
            print(line)
    fleet_bad_hosts(run)
    if run.rc != 0:
        print(f"podpath: {'up' if up else 'down'} failed on {', '.join(sorted(run.bad_hosts)) or 'a host'} "
              f"({run.seconds:.1f} s); the other hosts went on", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        print(f"every lab of {len(run.hosts)} host{'s' if len(run.hosts) != 1 else ''} is "
              f"{'up' if up else 'down'} ({run.seconds:.1f} s)."
              + (f" Next: podpath verify --inventory {args.inventory}" if up else ""))
    return EXIT_OK


def fleet_verify(args, inventory: str) -> int:
    import datetime

    from podpath.evidence import classreport, probe
    from podpath.model.plan import build
    from podpath.play import fleet

    folder = Path(args.report_dir)
    try:  # before any host is asked
        folder.mkdir(exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        raise CliError(f"--report-dir {args.report_dir}: cannot write the class report there ({exc.strerror}): "
                       "name a folder you can write, whose parent exists")
    plan = build(topology(argparse.Namespace(topology=None)), "<lab>")
    argv = ["report", "--json", "-"] + (["--disruptive"] if args.disruptive else [])
    asked = fleet.ask(inventory, argv, args.limit, all_labs=True, lab=args.lab, marks=fleet_schema_marks(),
                      progress=fleet_progress(args), echo=args.verbose)
    results = []
    for a in asked.answers:
        for line in a.stderr.splitlines():  # a host's own `podpath report` says when its ARP table was full
            if line.startswith(probe.ARP_TABLE_FULL):
                print(f"podpath: on host {a.host}: {line.removeprefix('podpath: ')}", file=sys.stderr)
        try:
            got = classreport.parse_results(json.loads(a.stdout), f"the answer of host {a.host}")
        except (ValueError, classreport.ResultsError):
            said = " / ".join((a.stderr or a.stdout).strip().splitlines()[-2:])
            results += [classreport.LabResult(a.host, lab, error=f"podpath report on {a.host} gave no results "
                                                                 f"(exit {a.rc}): {said}") for lab in a.labs]
            continue
        for r in got:
            r.host = a.host  # the inventory's name, not the machine's own
            if r.error and r.error.startswith(f"lab {r.lab} does not exist on this host"):
                r.error = (f"lab {r.lab} does not exist on {a.host}: podpath up --inventory {args.inventory} "
                           f"--limit {a.host} builds it")
        results += got
    for host, outcome in sorted(asked.run.bad_hosts.items()):
        why = f"host {host} {outcome.state}: {outcome.message or 'see podpath verify --inventory ... -v'}"
        results += [classreport.LabResult(host, lab, error=why) for lab in asked.labs.get(host) or ["-"]]
    if not results:
        raise CliError(f"no host of {args.inventory}{' (--limit ' + args.limit + ')' if args.limit else ''} has a "
                       "lab: give the hosts podpath_labs (docs/classroom.md) and build them with podpath up "
                       "--inventory")
    texts = {"text": classreport.render_text(results, plan), "junit": classreport.render_junit(results, plan),
             "json": json.dumps(classreport.results_document(results), indent=1) + "\n"}
    if shutil.which("dot"):
        texts["html"] = classreport.render_html(results, plan, datetime.datetime.now(datetime.timezone.utc)
                                                .strftime("%Y-%m-%d %H:%M UTC"))
    print(texts["text"], end="")
    written = []
    for what, text in texts.items():
        for path in [folder / CLASS_REPORT_FILES[what]] + ([Path(args.junitxml)] if what == "junit" and
                                                            args.junitxml else []):
            tmp = Path(f"{path}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            written.append(str(path))
    print(f"class report written to {', '.join(written)}")
    if "html" not in texts:
        print("podpath: no HTML page: it draws the lab with Graphviz's dot: apt-get install graphviz",
              file=sys.stderr)
    return EXIT_OK if asked.run.rc == 0 and all(r.status == "pass" for r in results) else EXIT_FAILED


def fleet_status(args, inventory: str) -> int:
    from podpath.play import fleet

    asked = fleet.ask(inventory, ["status", "--json"], args.limit, lab=args.lab, progress=fleet_progress(args))
    found: dict[str, dict[str, dict]] = {}
    for a in asked.answers:
        try:
            found.setdefault(a.host, {})[a.labs[0]] = json.loads(a.stdout)
        except ValueError:
            said = " / ".join((a.stderr or a.stdout).strip().splitlines()[-2:])
            found.setdefault(a.host, {})[a.labs[0]] = {"state": "no answer", "healthy": False, "problems": [said]}
    for host, outcome in sorted(asked.run.bad_hosts.items()):
        found[host] = {lab: {"state": outcome.state, "healthy": False, "problems": [outcome.message]}
                       for lab in asked.labs.get(host) or ["-"]}
    healthy = asked.run.rc == 0 and all(s["healthy"] for labs in found.values() for s in labs.values())
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK if healthy else EXIT_FAILED
    rows = [(host, lab, s.get("state", "?"), (s.get("problems") or [""])[0])
            for host in sorted(found, key=fleet_natural) for lab, s in sorted(found[host].items())]
    wide = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(("HOST", "LAB", "STATE"))]
    print(f"{'HOST':<{wide[0]}}  {'LAB':<{wide[1]}}  {'STATE':<{wide[2]}}  FIRST PROBLEM")
    for row in rows:
        print(f"{row[0]:<{wide[0]}}  {row[1]:<{wide[1]}}  {row[2]:<{wide[2]}}  {row[3] or '-'}")
    if not rows:
        print(f"no host of {args.inventory} has a lab")
    return EXIT_OK if healthy else EXIT_FAILED


def fleet_natural(text: str) -> list:
    import re

    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text)]


def fleet_drill(args, inventory: str) -> int:
    from podpath.play import fleet

    asked = fleet.ask(inventory, ["drill", args.action, "--seed", str(args.seed)], args.limit, lab=args.lab,
                      progress=fleet_progress(args))
    for a in sorted(asked.answers, key=lambda a: (fleet_natural(a.host), a.labs)):
        print(f"== {a.host} / {a.labs[0]}")
        for line in (a.stdout.rstrip().splitlines() + (a.stderr.rstrip().splitlines() if a.rc else [])):
            print(f"   {line}")
    fleet_bad_hosts(asked.run)
    return EXIT_OK if asked.run.rc == 0 and all(a.rc == 0 for a in asked.answers) else EXIT_FAILED

# --- end of the class on many hosts --------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podpath", description="A lab that shows how a packet reaches a pod in Kubernetes.")
    sub = p.add_subparsers(dest="verb", required=True)

    def lab_args(sp, locking=False):
        sp.add_argument("--lab", default=None,
                        help="lab name (default: $PODPATH_LAB, else the only lab on this host, else podpath)")
        sp.add_argument("--topology", help="topology file (default: inventory/group_vars/all/topology.yml)")
        sp.add_argument("--user", help="root only: work on this user's lab, in their sandbox (docs/rootless.md)")
        if locking:
            sp.add_argument("--wait", action="store_true", help="wait for another command on the same lab")
            sp.add_argument("-v", "--verbose", action="store_true", help="pass Ansible's full output through")
            sp.add_argument("-q", "--quiet", action="store_true", help="print only errors")

    up = sub.add_parser("up", help="build or repair a lab")
    lab_args(up, locking=True)
    up.add_argument("--mode", choices=["netns", "vagrant"], default="netns")
    fleet_args(up)
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="remove a lab and everything it made")
    lab_args(down, locking=True)
    fleet_args(down)
    down.add_argument("--remove-runtime", action="store_true",
                      help="with --inventory: also remove podpath's runtime (/opt/podpath) from the hosts")
    down.set_defaults(func=cmd_down)
    verify = sub.add_parser("verify", help="prove the lab's traffic path, scenario by scenario")
    lab_args(verify)
    verify.add_argument("--junitxml", help="also write pytest's JUnit XML report here")
    verify.add_argument("--disruptive", action="store_true", help="also run the scenarios that break and repair")
    verify.add_argument("-v", "--verbose", action="store_true",
                        help="also print pytest's traceback of each failed check")
    fleet_args(verify)
    verify.add_argument("--report-dir", default="class-report", metavar="DIR",
                        help="with --inventory: the folder of the class report's files (default: ./class-report)")
    verify.set_defaults(func=cmd_verify)
    trace = sub.add_parser("trace", help="follow one request from the client to a backend")
    lab_args(trace)
    trace.add_argument("--host", default=None, help="Host header (default: the topology's ingress host)")
    trace.add_argument("-o", "--output", help="also draw the path: .svg or .png (Graphviz), .dot, .mmd or .md "
                                              "(Mermaid)")
    trace.set_defaults(func=cmd_trace)
    status = sub.add_parser("status", help="what the lab runs and whether it is healthy")
    lab_args(status)
    status.add_argument("--json", action="store_true")
    status.add_argument("--picture", metavar="FILE", help="also draw the whole lab: .svg or .png (Graphviz), .dot, "
                                                          ".mmd or .md (Mermaid)")
    fleet_args(status)
    status.set_defaults(func=cmd_status)
    drill = sub.add_parser("drill", help="classroom drills: break one hop, find it, fix it")
    lab_args(drill)
    drill.add_argument("action", choices=["start", "check", "reveal"])
    drill.add_argument("--seed", type=int, default=0, help="the same seed gives the whole class the same fault")
    fleet_args(drill)
    drill.set_defaults(func=cmd_drill)
    report = sub.add_parser("report", help="the class report: every student lab verified, one row each, as text, "
                                           "HTML and JUnit XML")
    report.add_argument("--labs", metavar="A,B,...", help="labs of this host to verify (default: every lab on this "
                                                         "host, unless --results is given)")
    report.add_argument("--results", nargs="+", metavar="FILE", help="add the results other hosts wrote with --json")
    report.add_argument("--topology", dest="report_topology", metavar="FILE",
                        help="topology of the picture, and of the labs that keep none of their own (default: the "
                             "project's)")
    report.add_argument("--disruptive", action="store_true", help="also run the scenarios that break and repair")
    report.add_argument("--html", metavar="FILE", help="write the page to project: the lab's picture, every failing "
                                                       "hop marked, a row per lab")
    report.add_argument("--junit", metavar="FILE", help="write JUnit XML: a testsuite per lab, a testcase per scenario")
    report.add_argument("--json", metavar="FILE", help="write the results, for a report gathered from many hosts "
                                                       "(-: to stdout, and the text report to stderr)")
    report.set_defaults(func=cmd_report)
    register_cluster(sub)
    shell = sub.add_parser("shell", help="a shell where the lab's namespaces are (-- CMD: run one command there)")
    lab_args(shell)
    shell.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...: the command to run instead")
    shell.set_defaults(func=cmd_shell)
    labs = sub.add_parser("labs", help="the labs on this host")
    labs.add_argument("--json", action="store_true")
    labs.add_argument("--user", help="root only: the labs of this user, in their sandbox (docs/rootless.md)")
    labs.add_argument("--all-users", action="store_true", help="root only: root's labs and every user's")
    labs.set_defaults(func=cmd_labs)
    return p


def main(argv=None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra and args.verb != "verify":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if getattr(args, "inventory", None):  # a class on many hosts (cmd_fleet)
            return cmd_fleet(args, extra)
        if getattr(args, "limit", None):
            raise CliError("--limit works with --inventory INVENTORY: add it, or leave out --limit")
        routed = in_sandbox(args, list(sys.argv[1:] if argv is None else argv))
        if routed is not None:
            return routed
        if hasattr(args, "lab"):
            args.lab = check_lab(choose_lab(args))
        if hasattr(args, "topology"):
            remembered_topology(args)
        return args.func(args, extra) if args.verb == "verify" else args.func(args)
    except CliError as exc:
        print(f"podpath: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `podpath status | head`: the reader has gone, and so does the rest of the output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
