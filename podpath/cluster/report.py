"""podpath cluster report: after a failed boot, one file with what an instructor needs.

One Markdown file rather than a tarball: it opens in any editor or browser, pastes into an
issue or a chat, and can be read in full before it is shared; a tarball has to be unpacked
and invites whole logs and kubeconfigs in. It holds the host's versions, the doctor's
findings, `vagrant status`, the last failed Ansible task of the provisioning log and, when
cp1 runs, the nodes, pods and recent events. Each step has a timeout; a missing tool is
noted, not fatal. Everything passes through redact() before it is written.
"""
from __future__ import annotations

import configparser
import datetime
import os
import platform
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from podpath.cluster import doctor

ROOT = doctor.ROOT
OUT_DIR = ROOT / "build" / "cluster"
SUGGESTED_LOG = "build/cluster/provision.log"
MAX_LINES = 150          # per command: the tail is kept, where errors are
MAX_FAILURE_LINES = 80
KUBECTL = [
    ("Nodes", "kubectl get nodes -o wide"),
    ("Pods", "kubectl get pods -A -o wide"),
    ("Recent events", "kubectl get events -A --sort-by=.lastTimestamp | tail -n 40"),
]

# ----- secrets ------------------------------------------------------------------------------

_VALUE = r"""(["']?)[^\s"',}]+"""
REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # PEM blocks (private keys, certificates), whole; an unterminated one up to a blank line.
    (re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(?:.*?-----END \1-----|.*?(?=\n\s*\n)|.*)", re.S),
     r"[redacted \1]"),
    # kubeconfig and kubeadm fields that carry keys or certificates.
    (re.compile(r"(?i)\b((?:client-key|client-certificate|certificate-authority)-data|certificateKey)"
                r"([\"']?[ \t]*:[ \t]*)" + _VALUE),
     r"\1\2\3[redacted]"),
    # kubeadm's command-line secrets.
    (re.compile(r"(--(?:token|certificate-key|password)[ =])[^\s\"']+"), r"\1[redacted]"),
    # The CA hash a join checks (flag or caCertHashes list).
    (re.compile(r"(ca-cert-hash|caCertHashes)([\s:=\-\"'\[]*)sha256:[0-9a-fA-F]{64}"), r"\1\2sha256:[redacted]"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1[redacted]"),
    # JSON web tokens (service account tokens): three base64url parts.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted token]"),
    # key: value or key=value where the key names a secret.
    # (on one line: "bootstrapToken:" opens a block, its value is not on that line)
    (re.compile(r"(?i)\b([\w-]*(?:password|passwd|secret|token)[\w-]*)([\"']?[ \t]*[:=][ \t]*)" + _VALUE),
     r"\1\2\3[redacted]"),
    # kubeadm bootstrap tokens wherever they appear.
    (re.compile(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"), "[redacted token]"),
]


def redact(text: str) -> str:
    """TEXT without keys, certificates, tokens, CA hashes and passwords."""
    for pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# ----- the provisioning log -----------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# ansible's log_path prefixes each record: "2026-12-02 05:13:40,249 p=9573 u=root n=ansible INFO| "
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ p=\d+ u=\S+ n=\S+ +\w*\| ?", re.M)
HEADER = re.compile(r"^(TASK|RUNNING HANDLER) \[(.+?)\]|^PLAY \[|^PLAY RECAP", re.M)
FAILURE = re.compile(r"^(?:fatal|failed): \[([^\]]+)\]", re.M)
IGNORED = re.compile(r"^\.\.\.ignoring", re.M)


@dataclass
class FailedTask:
    task: str
    hosts: list[str]
    text: str
    recap: str


def clean_log(text: str) -> str:
    """Plain Ansible output from a tee'd terminal stream (colours) or a log_path file (prefixes)."""
    return LOG_PREFIX.sub("", ANSI.sub("", text.replace("\r\n", "\n")))


def last_failed_task(text: str) -> FailedTask | None:
    """The last task of the log whose failure was not ignored, and the last PLAY RECAP."""
    text = clean_log(text)
    starts = [m.start() for m in HEADER.finditer(text)] + [len(text)]
    failed, recap = None, ""
    for begin, end in zip(starts, starts[1:]):
        section = text[begin:end].rstrip()
        if section.startswith("PLAY RECAP"):
            recap = section
            continue
        header = HEADER.match(section)
        hosts = FAILURE.findall(section)
        if header and header.group(2) and len(hosts) > len(IGNORED.findall(section)):
            lines = section.splitlines()
            if len(lines) > MAX_FAILURE_LINES:
                lines = lines[:MAX_FAILURE_LINES] + [f"... ({len(lines) - MAX_FAILURE_LINES} more lines)"]
            failed = FailedTask(header.group(2), sorted(set(hosts)), "\n".join(lines), "")
    if failed:
        failed.recap = recap
    return failed


def ansible_log_path(root: Path = ROOT) -> Path | None:
    """Ansible's own log file, if ANSIBLE_LOG_PATH or the project's ansible.cfg sets one
    (the project's does not: Vagrant's provisioner prints Ansible's output to the terminal)."""
    if os.environ.get("ANSIBLE_LOG_PATH"):
        return Path(os.environ["ANSIBLE_LOG_PATH"]).expanduser()
    config = configparser.ConfigParser(interpolation=None)
    config.read(root / "ansible.cfg")
    value = config.get("defaults", "log_path", fallback="")
    return (root / Path(value).expanduser()) if value else None


def candidate_logs(given: list[Path], root: Path = ROOT) -> list[Path]:
    """The logs to search, first match wins: those given, Ansible's log_path, then the saved
    logs in build/cluster/ (newest first)."""
    found = list(given)
    configured = ansible_log_path(root)
    if configured:
        found.append(configured)
    saved = sorted((root / "build" / "cluster").glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found + [p for p in saved if p not in found]


# ----- vagrant status -----------------------------------------------------------------------

def parse_status(machine_readable: str) -> dict[str, str]:
    """Machine -> state from `vagrant status --machine-readable` ("1796188382,cp1,state,not_created")."""
    states = {}
    for line in machine_readable.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "state" and parts[1]:
            states[parts[1]] = parts[3].strip()
    return states


def control_plane(root: Path = ROOT) -> str:
    topology = yaml.safe_load((root / "inventory" / "group_vars" / "all" / "topology.yml").read_text())
    nodes = topology["podpath_topology"]["nodes"]
    return next((n["name"] for n in nodes if n["role"] == "control-plane"), nodes[0]["name"])


# ----- writing ------------------------------------------------------------------------------

def fence(text: str) -> str:
    lines = text.rstrip("\n").splitlines() or ["(no output)"]
    if len(lines) > MAX_LINES:
        lines = [f"... ({len(lines) - MAX_LINES} earlier lines left out)"] + lines[-MAX_LINES:]
    return "```\n" + "\n".join(lines).replace("```", "'''") + "\n```\n"


def command(argv: list[str], timeout: float, cwd: Path = ROOT) -> str:
    """The output of one step, or why there is none: a missing tool or a timeout is noted."""
    shown = " ".join(shlex.quote(a) for a in argv)
    result = doctor.run(argv, timeout=timeout, cwd=cwd)
    if result is None:
        return f"`{shown}`: not run, {argv[0]} is not installed\n"
    rc, output = result
    status = f"timed out after {timeout:.0f} s" if rc is None else f"exit {rc}"
    return f"`{shown}` ({status}):\n\n" + fence(output)


def git_revision(root: Path, timeout: float) -> str:
    head = doctor.run(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=timeout)
    if head is None or head[0] != 0:
        return "not a git checkout (or git is not installed)"
    dirty = doctor.run(["git", "-C", str(root), "status", "--porcelain"], timeout=timeout)
    changed = len(dirty[1].splitlines()) if dirty and dirty[0] == 0 else "?"
    return f"{head[1].strip()} ({changed} changed files)"


def build(logs: list[Path], provider: str | None, timeout: float, root: Path = ROOT) -> str:
    """The report's text, not yet redacted."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    facts = doctor.gather(provider, root)
    out = [f"# podpath cluster report, {now}\n",
           "Written by `podpath cluster report` after a failed `vagrant up`; secrets are left out.\n",
           "## Host\n",
           f"- OS: {facts.os_name or facts.system} ({platform.platform()}), {facts.machine}"
           + (", WSL" if facts.wsl else ""),
           f"- Python: {sys.version.split()[0]}",
           f"- podpath: {git_revision(root, timeout)}",
           f"- provider: {facts.provider} ({facts.provider_reason})\n",
           "## Versions\n"]
    tool = (("VBoxManage --version", facts.vboxmanage) if facts.provider == "virtualbox"
            else ("virsh --version", facts.virsh))
    versions = [("vagrant --version", facts.vagrant), tool,
                ("ansible-playbook --version", facts.ansible[1] if facts.ansible else None)]
    if facts.provider == "libvirt":
        versions.append(("vagrant plugin list", facts.vagrant_plugins))
    for what, output in versions:
        lines = (output or "").strip().splitlines()
        shown = "; ".join(lines) if what == "vagrant plugin list" else (lines[0] if lines else "")
        out.append(f"- `{what}`: {shown or 'not installed'}")
    out.append("\n## Doctor\n")
    try:
        out.append(fence(doctor.render(doctor.evaluate(facts, doctor.load_needs(root)))))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        out.append(f"not run: {exc}\n")

    out.append("## vagrant status\n")
    status = doctor.run(["vagrant", "status", "--machine-readable"], timeout=timeout, cwd=root)
    states: dict[str, str] = {}
    if status is None:
        out.append("not run: vagrant is not installed\n")
    elif status[0] != 0:
        out.append(f"`vagrant status` failed ({'timed out' if status[0] is None else f'exit {status[0]}'}):\n\n"
                   + fence(status[1]))
    else:
        states = parse_status(status[1])
        out += ["| machine | state |\n| --- | --- |"]
        out += [f"| {name} | {state} |" for name, state in states.items()] + [""]

    out.append("## Provisioning: the last failed task\n")
    searched = candidate_logs(logs, root)
    failure, source = None, None
    for path in searched:
        try:
            failure = last_failed_task(path.read_text(errors="replace"))
        except OSError:
            continue
        if failure:
            source = path
            break
    if failure:
        out += [f"From `{source}`: task **{failure.task}** failed on {', '.join(failure.hosts)}.\n",
                fence(failure.text)]
        if failure.recap:
            out.append(fence(failure.recap))
    else:
        looked = ", ".join(f"`{p}`" for p in searched) or "no log"
        out.append(f"No failed task found (looked in: {looked}). Vagrant prints Ansible's output to the terminal and "
                   f"keeps no log: run `vagrant provision 2>&1 | tee {SUGGESTED_LOG}`, then `podpath cluster report` "
                   "again (it reads that file).\n")

    cp1 = control_plane(root)
    out.append(f"## Cluster (through `vagrant ssh {cp1}`)\n")
    if states.get(cp1) != "running":
        out.append(f"not asked: {cp1} is {states.get(cp1, 'unknown to vagrant status')}\n")
    else:
        for title, kubectl in KUBECTL:
            out += [f"### {title}\n", command(["vagrant", "ssh", cp1, "-c", kubectl], timeout, root)]
    return "\n".join(out) + "\n"


def write(path: Path | None = None, logs: list[Path] | None = None, provider: str | None = None,
          timeout: float = 60, root: Path = ROOT) -> Path:
    """Build the report, redact it, write it (mode 0600) and return where."""
    if path is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = root / "build" / "cluster" / f"report-{stamp}.md"
    text = redact(build(logs or [], provider, timeout, root))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
