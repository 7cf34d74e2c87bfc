"""docs/walkthrough.md, run as a student would: every ```sh block, in order, against a fresh lab.

The page marks what each command block must show with HTML comments right after the block:

    ```sh
    podpath status
    ```
    <!-- shows: ^multi-container-pod\\s+worker1\\s+10\\.244\\.1\\.5\\b -->

Each `shows` is a Python regular expression (multi-line mode) searched in what the block
prints (stdout and stderr together, as a terminal shows them). `<lab>` in it stands for the
lab's name. The same expressions must match the output the page shows after the block, so
the page cannot drift from what the commands print.

The blocks run in one simulated shell session: each block is a new `bash` (with
`set -euo pipefail`, PODPATH_LAB set to the test's lab, .venv/bin first on PATH, the
repository as working folder and a timeout), and the variables and functions a block
defines are handed to the next one, as they would stay in a student's terminal. Asking for
block N runs blocks 1..N first, so `-k` can pick one section.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from labtools import ROOT, force_remove, lab_namespaces, new_lab_name, podpath

PAGE = ROOT / "docs" / "walkthrough.md"
BLOCK_TIMEOUT = 60  # seconds, against a block that hangs; the slowest (arping, 2 requests) takes about 2 s
LAB_PATTERN = "[a-z][a-z0-9]{0,9}"  # what <lab> stands for in the page's own outputs

FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
SHOWS = re.compile(r"^\s*<!--\s*shows:\s(?P<regex>.*?)\s*-->\s*$")
HEADING = re.compile(r"^##\s+(?P<title>.*)$")


@dataclass
class Block:
    """One ```sh block of the page, what it must show and the output the page gives for it."""
    section: str
    number: int
    line: int
    code: str
    shows: list[str] = field(default_factory=list)
    page_output: str | None = None

    @property
    def id(self) -> str:
        return f"{self.section}-block{self.number}"

    def patterns(self, lab: str) -> list[re.Pattern]:
        return [re.compile(s.replace("<lab>", lab), re.M) for s in self.shows]


def section_id(title: str) -> str:
    number = re.match(r"(\d+)\.", title)
    if number:
        return f"s{number.group(1)}"
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def parse(text: str) -> list[Block]:
    """The page's sh blocks in order, each with its `shows` and the first plain block after it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section, per_section = "top", 0
    i = 0
    while i < len(lines):
        heading = HEADING.match(lines[i])
        if heading:
            section, per_section = section_id(heading.group("title")), 0
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, lang, start = fence.group("indent"), fence.group("lang"), i
        body = []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1  # the closing fence
        content = "\n".join(body) + "\n"
        if lang == "sh":
            per_section += 1
            block = Block(section, per_section, start + 1, content)
            while i < len(lines) and SHOWS.match(lines[i]):
                block.shows.append(SHOWS.match(lines[i]).group("regex"))
                i += 1
            blocks.append(block)
        elif lang == "" and blocks and blocks[-1].page_output is None and blocks[-1].section == section:
            blocks[-1].page_output = content
    return blocks


BLOCKS = parse(PAGE.read_text())


# -- the page itself (no lab needed) ---------------------------------------------------

def test_the_page_has_command_blocks():
    assert len(BLOCKS) >= 15, f"docs/walkthrough.md has only {len(BLOCKS)} ```sh blocks: did the parser break?"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_each_block_says_what_it_shows_and_the_page_shows_it(block: Block):
    assert block.shows, (f"docs/walkthrough.md line {block.line} ({block.id}): add '<!-- shows: REGEX -->' "
                         "right after the block, matching the essential part of its output")
    assert block.page_output is not None, (
        f"docs/walkthrough.md line {block.line} ({block.id}): no output block follows this command block")
    for pattern in block.patterns(LAB_PATTERN):
        assert pattern.search(block.page_output), (
            f"docs/walkthrough.md line {block.line} ({block.id}): the page's own output does not match "
            f"{pattern.pattern!r}:\n{block.page_output}")


# -- the page against a fresh lab ------------------------------------------------------

# Runs before each block: hands the previous blocks' variables and functions on, like one
# terminal session would, then runs the block under strict mode.
PRELUDE = r"""
__known=" $(compgen -v | tr '\n' ' ') "
__save() {
  local name
  {
    for name in $(compgen -v); do
      case "$name" in __*|BASH*|FUNCNAME|PIPESTATUS|_) continue ;; esac
      case "$__known" in *" $name "*) ;; *) declare -p "$name" ;; esac
    done
    declare -f
  } > "$__STATE" 2>/dev/null || true
}
trap __save EXIT
if [ -s "$__STATE" ]; then source "$__STATE"; fi
set -euo pipefail
"""


@dataclass
class Ran:
    rc: int
    output: str
    seconds: float


class Session:
    """The page's blocks run in order against one lab, each at most once."""

    def __init__(self, lab: str, workdir: Path):
        self.lab = lab
        self.state = workdir / "shell-state.sh"
        self.results: list[Ran] = []
        self.env = dict(os.environ, PODPATH_LAB=lab, __STATE=str(self.state),
                        PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")

    def result(self, index: int) -> Ran:
        while len(self.results) <= index:
            self.results.append(self._run(BLOCKS[len(self.results)]))
        return self.results[index]

    def _run(self, block: Block) -> Ran:
        started = time.monotonic()
        proc = subprocess.Popen(["bash", "-c", PRELUDE + block.code], cwd=ROOT, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the block's whole process group: curl, ip netns exec...
            output, _ = proc.communicate()
            return Ran(-1, output + f"\n<timed out after {BLOCK_TIMEOUT} s>", BLOCK_TIMEOUT)
        return Ran(proc.returncode, output, time.monotonic() - started)


def settled(lab: str, timeout: float = 30.0) -> str:
    """Wait until status says what the page assumes of a lab that is up: healthy, one node
    announcing the MetalLB address, a lease holder. Returns the last status seen."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        out = podpath("status", "--lab", lab, "--json", timeout=60)
        last = out.stdout + out.stderr
        try:
            report = json.loads(out.stdout)
        except ValueError:
            report = {}
        if (report.get("healthy") and report.get("leader")
                and sum(bool(a) for a in report.get("announcing", {}).values()) == 1):
            return last
        time.sleep(0.5)
    raise AssertionError(f"lab {lab} did not settle in {timeout:.0f} s:\n{last}")


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the walkthrough runs against a netns lab: run this test as root")
    name = new_lab_name("w")
    try:
        up = podpath("up", "--lab", name, "--quiet")
        assert up.returncode == 0, f"podpath up --lab {name} failed:\n{up.stdout}\n{up.stderr}"
        settled(name)
        yield Session(name, tmp_path_factory.mktemp("walkthrough"))
    finally:
        for written in Path("/tmp").glob(f"{name}-*"):  # files the page's commands write, named after the lab
            written.unlink(missing_ok=True)
        down = podpath("down", "--lab", name)
        if down.returncode != 0 or lab_namespaces(name):
            force_remove(name)
        assert down.returncode == 0, f"podpath down --lab {name} failed:\n{down.stderr}"


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[b.id for b in BLOCKS])
def test_block_runs_as_written_and_shows_what_the_page_says(session: Session, index: int):
    block = BLOCKS[index]
    assert block.shows, f"docs/walkthrough.md line {block.line} ({block.id}) says nothing it shows"
    ran = session.result(index)
    where = f"docs/walkthrough.md line {block.line} ({block.id}) on lab {session.lab}"
    assert ran.rc == 0, f"{where} exited {ran.rc}:\n{block.code}\n--- output ---\n{ran.output[-4000:]}"
    missing = [p.pattern for p in block.patterns(re.escape(session.lab)) if not p.search(ran.output)]
    assert not missing, (f"{where}: the output does not show {missing}\n{block.code}\n"
                         f"--- output ---\n{ran.output[-4000:]}")
