"""The class report's HTML page in a real browser: Debian's headless Chromium opens the page
`podpath report --results ... --html` wrote, offline, and the test reads back both the DOM
Chromium built and the screenshot it took."""
from __future__ import annotations

import html.parser
import itertools
import json
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter

import pytest
from labtools import podpath

from podpath.evidence import classreport as cr
from podpath.evidence.scenarios import LOOK, SCENARIOS

pytestmark = [pytest.mark.slow]
WIDTH, HEIGHT = 1600, 2200
# the page's CSS: the body's left margin (2em of 20px); the status cells start there
STATUS_X = 40 + 6
COLOURS = {"pass": cr.PASS_COLOUR, "fail": cr.FAIL_COLOUR, "error": cr.ERROR_COLOUR}


def chromium() -> str:
    """Debian's chromium; a test skips only where apt has no chromium to install."""
    found = shutil.which("chromium")
    if found:
        return found
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True, text=True) \
        if shutil.which("apt-cache") else None
    if policy is None or "Candidate: (none)" in policy.stdout or "Candidate:" not in policy.stdout:
        pytest.skip("chromium cannot be installed here: apt knows no chromium package")
    pytest.fail("chromium is not installed but apt can install it: make deps (or apt-get install chromium)")


def browser(page, *args: str, home) -> subprocess.CompletedProcess:
    """Headless Chromium on PAGE, offline, its profile, config and cache under HOME (a
    temporary folder), so nothing is left in root's home."""
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-breakpad",
            "--force-device-scale-factor=1", f"--user-data-dir={home / 'profile'}", *args, page.as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG
    (what Chromium writes), decoded here: zlib and PNG's five row filters."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, f"a PNG this decoder does not read: {header}"
    step = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(b"".join(chunks)), width * step, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - step] if i >= step else 0
            up, corner = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        previous = line
        rows.append(bytes(line) if step == 3 else bytes(b for i, b in enumerate(line) if i % 4 != 3))
    return width, height, rows


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def runs_of(rows: list[bytes], x: int, colour: tuple[int, int, int], least: int = 20) -> int:
    """How many blocks of COLOUR, LEAST pixels tall or more, the column X crosses."""
    count = length = 0
    for row in rows + [b"\0\0\0" * (x + 1)]:
        near = all(abs(a - b) <= 2 for a, b in zip(row[3 * x:3 * x + 3], colour))
        if near:
            length += 1
        else:
            count += length >= least
            length = 0
    return count


class Rows(html.parser.HTMLParser):
    """Each <tr data-student> of the DOM: its class and the text of each cell; and the badges."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, tuple[str, list[str]]] = {}
        self.badges: list[str] = []
        self.current: str | None = None
        self.cell: list[str] | None = None
        self.badge = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-student" in attrs:
            self.current = attrs["data-student"]
            self.rows[self.current] = (attrs.get("class", ""), [])
        elif tag == "td" and self.current:
            self.cell = []
        elif tag == "g" and attrs.get("class") == "badge":
            self.badges.append(attrs.get("data-tag", ""))

    def handle_endtag(self, tag):
        if tag == "td" and self.current and self.cell is not None:
            self.rows[self.current][1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr":
            self.current = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def scenarios(fail: dict[int, list[str]]) -> dict:
    return {str(n): {"outcome": "FAIL" if n in fail else "NOT RUN" if n == 14 else "PASS",
                     "failures": fail.get(n, [])} for n in SCENARIOS}


# Ten student labs on two hosts, one with a host name full of markup: four pass, five fail
# at four places, one has no results.
STUDENTS = [
    ("pc1", "stu1", {}), ("pc1", "stu2", {4: ["pod echo-1 on worker1: its veth is on no bridge"], 5: ["x"]}),
    ("pc1", "stu3", {11: ["Service no-endpoints answered late"]}), ("pc1", "stu4", {}),
    ("pc1", "stu5", {11: ["Service no-endpoints answered late"], 18: ["no SNAT"]}),
    ("pc2 <b>&amp;</b>", "stu6", {13: ["nobody answered ARP"]}), ("pc2 <b>&amp;</b>", "stu7", {}),
    ("pc2 <b>&amp;</b>", "stu8", {5: ["cp1 has no route to pod echo-1's subnet via worker1"]}),
    ("pc2 <b>&amp;</b>", "stu9", {}), ("pc2 <b>&amp;</b>", "stu10", None),
]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    chromium()
    folder = tmp_path_factory.mktemp("classpage")
    results = [cr.LabResult(host, lab, error="lab stu10 does not exist on this host") if fail is None
               else cr.lab_result(host, lab, scenarios(fail)) for host, lab, fail in STUDENTS]
    files = []
    for host in ("pc1", "pc2 <b>&amp;</b>"):
        files.append(folder / f"{len(files)}.json")
        files[-1].write_text(json.dumps(cr.results_document([r for r in results if r.host == host])))
    out = podpath("report", "--results", *map(str, files), "--html", str(folder / "class.html"))
    assert out.returncode == 1 and "html written to" in out.stdout, out.stdout + out.stderr
    return folder / "class.html", results


def test_chromium_builds_a_row_for_every_student_with_its_hop(page, tmp_path):
    """Chromium's own DOM of the page (--dump-dom) holds one table row per student lab, with
    its host and lab decoded back to the very text of the results (so escaping neither broke
    the page nor showed as entities), its status, its count and its first failing hop with a
    letter; the picture has a badge of each letter of the table and of no other, and labs
    share a letter only when they first fail at the same scenario."""
    path, results = page
    dom = browser(path, "--dump-dom", home=tmp_path).stdout
    parsed = Rows()
    parsed.feed(dom)
    assert set(parsed.rows) == {r.student for r in results}
    letters = {}
    for r in results:
        status, cells = parsed.rows[r.student]
        assert status == r.status
        word, host, lab, passed, hop = cells
        assert (word, host, lab) == ({"pass": "PASS", "fail": "FAIL", "error": "NO RESULTS"}[r.status], r.host, r.lab)
        if r.status == "error":
            assert (passed, hop) == ("-", r.error)
        else:
            assert passed == f"{r.passed}/{len(SCENARIOS)}"
        if r.status == "fail":
            n = r.first_failing
            tag, _, rest = hop.partition("scenario ")
            assert tag.isalpha() and tag.isupper() and rest.startswith(f"{n}: {LOOK[n][0]}"), hop
            letters[r.student] = (tag, n)
    assert set(parsed.badges) == {tag for tag, _ in letters.values()}, parsed.badges
    for a, b in itertools.combinations(letters.values(), 2):
        assert a[0] != b[0] or a[1] == b[1], f"one letter for two scenarios: {letters}"
    assert "<script" not in dom


def test_chromium_shows_every_row_in_its_colour_in_the_screenshot(page, tmp_path):
    """The screenshot Chromium takes of the page has the window's size, is not blank, and
    its status column shows one block of the pass colour per passing lab, one of the fail
    colour per failing lab and one of the no-results colour per lab without results: every
    student's row is drawn, with the page's CSS, where the instructor sees it."""
    path, results = page
    shot = tmp_path / "class.png"
    browser(path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", home=tmp_path)
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    colours = Counter(row[i:i + 3] for row in rows[::4] for i in range(0, len(row), 12))
    white = colours.get(b"\xff\xff\xff", 0) / sum(colours.values())
    assert len(colours) > 50 and white < 0.95, f"a blank page: {len(colours)} colours, {white:.0%} white"
    expected = Counter(r.status for r in results)
    seen = {status: runs_of(rows, STATUS_X, rgb(colour)) for status, colour in COLOURS.items()}
    assert seen == {status: expected[status] for status in COLOURS}
