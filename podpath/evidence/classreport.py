"""The class report: one row per student lab (host, lab, scenarios passed, the first failing
hop), as text, as JUnit XML and as one self-contained HTML page with the lab's picture.

Its input is a plain list of per-lab results, `LabResult`: the host, the lab and what the
verifier's `--scenario-json` wrote for it. `podpath report` verifies the labs of this host
and makes them; results of other hosts come in as files (`read_results`), in the format
`results_document` writes, so a report can gather a whole classroom's machines.

"The first failing hop" is the hop of the lowest-numbered failing scenario: the scenarios are
numbered from the pod outwards (namespace, veth, routes, Services, ARP, ingress), so it is the
innermost hop that fails. A broken hop often fails later scenarios too, and sometimes an
earlier one (no masquerade also breaks hairpin, scenario 9): the report lists the others.

The HTML page draws the lab once, from the plan (`picture.lab_picture`), and marks on it
the place of each failing student's first failing hop with a letter; the table gives each
student their letter. Every string from a result is escaped for the place it goes (HTML,
XML, DOT), and characters XML cannot hold are dropped, so a host name or a message of
any kind cannot add markup.
"""
from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from podpath.evidence import picture
from podpath.evidence.report import ScenarioReport
from podpath.evidence.scenarios import SCENARIOS, look_at, titles
from podpath.model.plan import Plan

FORMAT = "podpath-lab-results/1"
OUTCOMES = ("PASS", "FAIL", "SKIP", "NOT RUN")
TOTAL = len(SCENARIOS)
# how much of a failure's evidence the text report shows (the page and JUnit show it whole)
EVIDENCE_CHARS = 240
# students named on a mark of the picture before "+N more"
NAMES_ON_A_MARK = 6
PASS_COLOUR, FAIL_COLOUR, ERROR_COLOUR = "#2e7d32", picture.BAD, "#5d4037"


class ResultsError(Exception):
    """Results that cannot be read: the message names the file or value and the fix."""


@dataclass
class Outcome:
    outcome: str  # PASS, FAIL, SKIP, NOT RUN
    failures: list[str] = field(default_factory=list)  # each failed check's message: its evidence


@dataclass
class LabResult:
    host: str
    lab: str
    scenarios: dict[int, Outcome] = field(default_factory=dict)
    # why the verifier gave no results (the lab does not exist, pytest stopped): then no scenarios
    error: str | None = None

    @property
    def student(self) -> str:
        return f"{self.host}/{self.lab}"

    def outcome(self, number: int) -> Outcome:
        return self.scenarios.get(number) or Outcome("NOT RUN")

    @property
    def passed(self) -> int:
        return sum(1 for n in SCENARIOS if self.outcome(n).outcome == "PASS")

    @property
    def failing(self) -> list[int]:
        return [n for n in SCENARIOS if self.outcome(n).outcome == "FAIL"]

    @property
    def not_run(self) -> list[int]:
        return [n for n in SCENARIOS if self.outcome(n).outcome in ("SKIP", "NOT RUN")]

    @property
    def first_failing(self) -> int | None:
        """The lowest-numbered failing scenario, the innermost hop that fails."""
        return self.failing[0] if self.failing else None

    @property
    def status(self) -> str:
        """pass: no scenario failed and one at least passed; fail: one failed; error: no results."""
        if self.error is not None or (not self.failing and not self.passed):
            return "error"
        return "fail" if self.failing else "pass"

    @property
    def problem(self) -> str:
        """Why a lab without results has none."""
        return self.error if self.error is not None else "the verifier ran no check"


def _mode(plan: Plan | None) -> str:
    """kube-proxy's mode of PLAN's labs, which names the hops of its rules (iptables without a plan)."""
    return getattr(plan, "kube_proxy_mode", None) or "iptables"


def _edge(plan: Plan | None) -> str:
    """The edge of PLAN's labs (ingress-nginx or gateway-api), which names scenarios 15-17 and 19."""
    return getattr(plan, "edge", None) or "ingress-nginx"


def hop(number: int, plan: Plan | None = None) -> str:
    """Where scenario NUMBER looks, in the words of PLAN's kube-proxy mode and edge."""
    return look_at(number, _mode(plan), _edge(plan))[0]


def title(number: int, plan: Plan | None = None) -> str:
    """Scenario NUMBER's title, as PLAN's edge has it."""
    return titles(_edge(plan))[number]


# --- input -------------------------------------------------------------------------------

def lab_result(host: str, lab: str, scenarios: dict[str, Any], where: str = "") -> LabResult:
    """A LabResult from what `--scenario-json` wrote for LAB on HOST; WHERE names the source
    in errors. Scenarios it does not list did not run."""
    where = where or f"the results of {host}/{lab}"
    if not isinstance(scenarios, dict):
        raise ResultsError(f"{where}: the scenarios must be an object of scenario number -> outcome, not "
                           f"{type(scenarios).__name__}")
    out = {}
    for key, value in scenarios.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            number = None
        if number not in SCENARIOS:
            raise ResultsError(f"{where}: {key!r} is not a scenario number (1 to {TOTAL}); is it a file of "
                               "podpath verify --scenario-json?")
        if not isinstance(value, dict) or value.get("outcome") not in OUTCOMES:
            got = value.get("outcome") if isinstance(value, dict) else value
            raise ResultsError(f"{where}: scenario {number} has outcome {got!r}; it must be one of "
                               f"{', '.join(OUTCOMES)}")
        failures = value.get("failures") or []
        if not isinstance(failures, list):
            raise ResultsError(f"{where}: scenario {number}'s failures must be a list of messages")
        out[number] = Outcome(value["outcome"], [str(f) for f in failures])
    return LabResult(str(host), str(lab), out)


def results_document(results: Iterable[LabResult]) -> dict[str, Any]:
    """RESULTS as JSON data, the file `podpath report --json` writes and `read_results` reads."""
    items = []
    for r in results:
        item: dict[str, Any] = {"host": r.host, "lab": r.lab}
        if r.error is not None:
            item["error"] = r.error
        else:
            item["scenarios"] = {str(n): {"outcome": o.outcome, "failures": o.failures}
                                 for n, o in sorted(r.scenarios.items())}
        items.append(item)
    return {"format": FORMAT, "results": items}


def parse_results(data: Any, where: str) -> list[LabResult]:
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("results"), list):
        raise ResultsError(f"{where}: not a file of podpath lab results (an object with \"format\": \"{FORMAT}\" "
                           "and a list \"results\"); podpath report --json FILE writes one")
    out = []
    for i, item in enumerate(data["results"]):
        at = f"{where}: result {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("host"), str) or not item.get("host") \
                or not isinstance(item.get("lab"), str) or not item.get("lab"):
            raise ResultsError(f"{at}: each result needs a host and a lab (non-empty strings)")
        if "error" in item:
            out.append(LabResult(item["host"], item["lab"], error=str(item["error"])))
        else:
            out.append(lab_result(item["host"], item["lab"], item.get("scenarios"), f"{at} ({item['host']}/"
                                                                                    f"{item['lab']})"))
    return out


def read_results(paths: Iterable[str | Path]) -> list[LabResult]:
    """The results in the files PATHS (written by `podpath report --json`, on this host or
    another), in order. One student lab (host and lab) appears once across them all."""
    results: list[LabResult] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read it: {exc.strerror}")
        except ValueError as exc:
            raise ResultsError(f"{path}: not JSON ({exc}); podpath report --json FILE writes the results")
        for result in parse_results(data, str(path)):
            if result.student in seen:
                raise ResultsError(f"{path}: lab {result.student} is also in {seen[result.student]}; give each "
                                   "host's results once")
            seen[result.student] = str(path)
            results.append(result)
    return results


def _natural(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def ordered(results: Iterable[LabResult]) -> list[LabResult]:
    """By host, then lab, numbers in names as numbers (stu2 before stu10)."""
    return sorted(results, key=lambda r: (_natural(r.host), _natural(r.lab)))


# --- escaping ----------------------------------------------------------------------------

# What XML 1.0 cannot hold at all, escaped or not (a terminal's colour codes, NULs).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    return _NOT_XML.sub("", str(text))


def _h(text: Any) -> str:
    """TEXT for HTML: escaped for an element or a quoted attribute."""
    return html.escape(clean(str(text)), quote=True)


def _short(text: str, limit: int = EVIDENCE_CHARS) -> str:
    text = " ".join(clean(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- text --------------------------------------------------------------------------------

def summary(results: list[LabResult]) -> str:
    hosts = len({r.host for r in results})
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "fail", "error")}
    words = [f"{counts['pass']} pass", f"{counts['fail']} fail"]
    if counts["error"]:
        words.append(f"{counts['error']} without results")
    labs = f"{len(results)} lab{'s' if len(results) != 1 else ''}"
    return f"{labs} on {hosts} host{'s' if hosts != 1 else ''}: {', '.join(words)}"


def passed_cell(result: LabResult) -> str:
    return "-" if result.status == "error" and result.error is not None else f"{result.passed}/{TOTAL}"


def first_hop_cell(result: LabResult, plan: Plan | None = None) -> str:
    if result.status == "error":
        return f"no results: {_short(result.problem, 120)}"
    number = result.first_failing
    if number is None:
        return "-"
    return f"scenario {number}: {hop(number, plan)}"


def not_run_everywhere(results: list[LabResult]) -> list[int]:
    ran = [r for r in results if r.status != "error"]
    return [n for n in SCENARIOS if ran and all(n in r.not_run for r in ran)]


def render_text(results: list[LabResult], plan: Plan | None = None) -> str:
    """One row per student lab, then each failing lab's first failure in a few lines."""
    results = ordered(results)
    rows = [("HOST", "LAB", "PASSED", "FIRST FAILING HOP")]
    rows += [(clean(r.host), clean(r.lab), passed_cell(r), first_hop_cell(r, plan)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"podpath class report: {summary(results)}", ""]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3] for row in rows]
    missing = not_run_everywhere(results)
    if missing:
        lines += ["", "not run in any lab: " + ", ".join(f"scenario {n}" for n in missing)
                  + (" (disruptive: podpath report or verify --disruptive runs it)" if 14 in missing else "")]
    failing = [r for r in results if r.status == "fail"]
    if failing:
        lines += ["", "first failures:"]
    for r in failing:
        number = r.first_failing
        also = [n for n in r.failing if n != number]
        lines.append(f"  {clean(r.student)}  scenario {number}  {title(number, plan)}"
                     + (f"  (also failing: {', '.join(map(str, also))})" if also else ""))
        lines.append(f"      hop:      {hop(number, plan)}")
        for message in r.outcome(number).failures[:1]:
            lines.append(f"      evidence: {_short(message)}")
        lines.append(f"      next:     {next_command(r, number, plan)}")
    return "\n".join(lines) + "\n"


def next_command(result: LabResult, number: int, plan: Plan | None) -> str:
    """The command that shows hop NUMBER in RESULT's lab, as `podpath verify` suggests it."""
    fill = {"{lab}": result.lab}
    if plan is not None:
        fill.update({"{nodes}": " ".join(n.name for n in plan.nodes), "<ingress host>": plan.ingress_host,
                     "<MetalLB address>": plan.ingress_service.load_balancer_ip or "<MetalLB address>"})
    return clean(ScenarioReport("netns", fill, _mode(plan), _edge(plan)).next_command(number))


# --- JUnit XML ---------------------------------------------------------------------------

def _junit_name(number: int, plan: Plan | None = None) -> str:
    return f"scenario {number:02d}: {title(number, plan)}"


def render_junit(results: list[LabResult], plan: Plan | None = None) -> str:
    """One testsuite per student lab, one testcase per scenario; a failure carries the hop
    (its message), the evidence of each failed check and the command that shows the hop. A
    lab without results is one testcase in error."""
    results = ordered(results)
    root = ET.Element("testsuites", name="podpath class report")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for r in results:
        suite = ET.SubElement(root, "testsuite", name=clean(r.student), hostname=clean(r.host))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="host", value=clean(r.host))
        ET.SubElement(props, "property", name="lab", value=clean(r.lab))
        counts = dict.fromkeys(totals, 0)
        classname = clean(f"podpath.{r.host}.{r.lab}")
        if r.status == "error":
            case = ET.SubElement(suite, "testcase", classname=classname, name="the verifier's results")
            ET.SubElement(case, "error", message=_short(r.problem), type="no results").text = clean(r.problem)
            counts["tests"], counts["errors"] = 1, 1
        else:
            for number in SCENARIOS:
                outcome = r.outcome(number)
                case = ET.SubElement(suite, "testcase", classname=classname, name=clean(_junit_name(number, plan)))
                counts["tests"] += 1
                if outcome.outcome == "FAIL":
                    counts["failures"] += 1
                    text = [f"hop: {hop(number, plan)}"] + [f"evidence: {m}" for m in outcome.failures]
                    text.append(f"next: {next_command(r, number, plan)}")
                    ET.SubElement(case, "failure", message=clean(f"hop: {hop(number, plan)}"),
                                  type=f"scenario {number}").text = clean("\n".join(text))
                elif outcome.outcome in ("SKIP", "NOT RUN"):
                    counts["skipped"] += 1
                    why = "disruptive: not run without --disruptive" if number == 14 and outcome.outcome == "NOT RUN" \
                        else outcome.outcome.lower()
                    ET.SubElement(case, "skipped", message=why)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- the picture -------------------------------------------------------------------------

@dataclass
class Mark:
    """One letter on the picture: the students whose first failing hop is SCENARIO at BOXES."""
    tag: str
    scenario: int
    boxes: tuple[str, ...]
    students: list[LabResult] = field(default_factory=list)


def _named(name: str, texts: list[str]) -> bool:
    pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
    return any(pattern.search(t) for t in texts)


def places(plan: Plan, drawn: set[str], number: int, messages: list[str]) -> tuple[str, ...]:
    """The boxes of the lab's picture where scenario NUMBER looks: those of the nodes or pods
    its failure MESSAGES name, else every such box."""
    pods = [p for p in plan.pods if p.app != "idle"]

    def pod_boxes(chosen) -> list[str]:
        return [f"pod/{p.name}" for p in chosen]

    def node_boxes(suffix: str) -> list[str]:
        return [f"{n.name}/{suffix}" for n in plan.nodes]

    tunnels = [f"{n.name}/flannel.1" if f"{n.name}/flannel.1" in drawn else f"{n.name}/eth1" for n in plan.nodes]
    candidates: list[str] = {
        1: pod_boxes(pods) + node_boxes("idle"), 2: pod_boxes(pods) + node_boxes("idle"),
        3: pod_boxes(p for p in pods if len(p.containers) > 1) or pod_boxes(pods),
        4: node_boxes("cni0"), 5: tunnels, 6: tunnels, 9: node_boxes("cni0"),
        13: ["metallb"], 14: ["metallb"], 15: pod_boxes(plan.edge_pods), 16: pod_boxes(plan.edge_pods),
        17: pod_boxes(plan.edge_pods), 19: ["client"],
    }.get(number, ["services"])  # 7, 8, 10, 11, 12, 18: kube-proxy's rules
    candidates = [c for c in candidates if c in drawn]

    def names(box: str) -> list[str]:  # the names of the lab a box stands for
        kind, _, rest = box.partition("/")
        if kind == "pod":
            return [rest]
        if rest == "idle":
            return [p.name for p in plan.pods if p.app == "idle" and p.node == kind]
        return [kind] if kind in {n.name for n in plan.nodes} else []

    named = [c for c in candidates if any(_named(n, messages) for n in names(c))]
    return tuple(named or candidates)


def marks(plan: Plan, results: list[LabResult], drawn: set[str]) -> list[Mark]:
    """A mark per first failing hop and place, lettered in scenario order."""
    found: dict[tuple[int, tuple[str, ...]], Mark] = {}
    for r in ordered(results):
        number = r.first_failing
        if r.status != "fail" or number is None:
            continue
        key = (number, places(plan, drawn, number, r.outcome(number).failures))
        found.setdefault(key, Mark("", number, key[1])).students.append(r)
    out = [found[k] for k in sorted(found)]
    for i, mark in enumerate(out):
        mark.tag = _letters(i)
    return out


def _letters(i: int) -> str:
    """A, B, ..., Z, AA, AB, ..."""
    word = ""
    i += 1
    while i:
        i, rest = divmod(i - 1, 26)
        word = chr(ord("A") + rest) + word
    return word


def _who(results: list[LabResult], students: list[LabResult]) -> str:
    one_host = len({r.host for r in results}) == 1
    names = [clean(s.lab if one_host else s.student) for s in students]
    shown = ", ".join(names[:NAMES_ON_A_MARK])
    return shown + (f" +{len(names) - NAMES_ON_A_MARK} more" if len(names) > NAMES_ON_A_MARK else "")


# per-lab details of the lab's picture that differ from one student lab to the next
_PER_LAB = [(re.compile(r"cni-[0-9a-f]{8}-[0-9a-f-]{27}"), "cni-<uuid>"),
            (re.compile(r"\bveth[0-9a-f]{8}\b"), "veth<hash>"),
            (re.compile(r"^MAC [0-9a-f:]{17}$"), "MAC (each lab its own)")]


def _generic(line: str) -> str:
    for pattern, text in _PER_LAB:
        line = pattern.sub(text, line)
    return line


def class_picture(plan: Plan, results: list[LabResult]) -> tuple[picture.Picture, list[Mark]]:
    """The lab as planned (PLAN is built for the lab name `<lab>`), each box that is a
    student's first failing hop in red with its letter, scenario and students."""
    pic = picture.lab_picture(plan)
    drawn = {b.id for b in pic.all_boxes()}
    found = marks(plan, results, drawn)
    failing = sum(len(m.students) for m in found)
    pic.title = [f"every lab as planned (<lab> stands for each lab's name): {summary(results)}",
                 ("a red box with a letter is the first failing hop of the labs the table gives that letter"
                  if failing else "no lab fails a scenario")]
    for box in pic.all_boxes():
        box.lines = [_generic(line) for line in box.lines]
        if box.id == "metallb":  # the plan does not know who announces it in each lab
            box.lines = [line if not line.startswith("announced by") else "announced by one node (its election)"
                         for line in box.lines]
    for arrow in pic.arrows:
        arrow.lines = [_generic(line) for line in arrow.lines]
    boxes = {b.id: b for b in pic.all_boxes()}
    for mark in found:
        count = f"{len(mark.students)} lab{'s' if len(mark.students) != 1 else ''}"
        for box_id in mark.boxes:
            box = boxes[box_id]
            box.bad = True
            box.lines.append(f"✗ {mark.tag}: scenario {mark.scenario}, {count}: {_who(results, mark.students)}")
    return pic, found


def class_svg(plan: Plan, results: list[LabResult]) -> tuple[str, list[Mark]]:
    """The class picture drawn by Graphviz as an SVG element to put inside a page (no XML
    declaration, doctype or comments). The page's CSS fits its width to the page."""
    pic, found = class_picture(plan, results)
    svg = picture.render(picture.to_dot(pic), "svg").decode()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = with_badges(svg, found)
    svg = svg.replace("<svg ", '<svg role="img" aria-label="the lab, with each failing hop marked" ', 1)
    return svg, found


BADGE_HEIGHT = 36  # in the picture's points: Graphviz's boxes have 10-point text


def _corners(svg: str) -> dict[str, tuple[float, float]]:
    """The top-left corner of each box Graphviz drew, by the box's id (its title)."""
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    out = {}
    for g in root.iter(f"{ns}g"):
        if g.get("class") != "node":
            continue
        title = g.find(f"{ns}title")
        shape = g.find(f"{ns}path")
        shape = shape if shape is not None else g.find(f"{ns}polygon")
        if title is None or shape is None:
            continue
        points = re.findall(r"(-?[\d.]+),(-?[\d.]+)", shape.get("d") or shape.get("points") or "")
        if points:
            out[title.text or ""] = (min(float(x) for x, _ in points), min(float(y) for _, y in points))
    return out


def with_badges(svg: str, found: list[Mark]) -> str:
    """SVG with a red badge at the corner of each marked box: the mark's letter and how many
    labs fail there, large enough to read from the back of a classroom (the boxes' own text
    is not)."""
    if not found:
        return svg
    corners = _corners(svg)
    drawn: list[str] = []
    taken: dict[str, float] = {}  # how far along a box's top edge its badges reach
    size = BADGE_HEIGHT * 0.7
    for mark in found:
        label = mark.tag + (f" ×{len(mark.students)}" if len(mark.students) > 1 else "")
        width = max(BADGE_HEIGHT, len(label) * size * 0.62 + BADGE_HEIGHT * 0.6)
        for box in mark.boxes:
            if box not in corners:
                continue
            x, y = corners[box]
            x = taken.get(box, x - BADGE_HEIGHT / 2)
            taken[box] = x + width + 4
            top = y - BADGE_HEIGHT / 2
            drawn.append(f'<g class="badge" data-tag="{_h(mark.tag)}"><rect x="{x:.1f}" y="{top:.1f}" '
                         f'width="{width:.1f}" height="{BADGE_HEIGHT}" rx="{BADGE_HEIGHT / 2}" fill="{FAIL_COLOUR}" '
                         f'stroke="#ffffff" stroke-width="2"/><text x="{x + width / 2:.1f}" '
                         f'y="{y + size * 0.36:.1f}" text-anchor="middle" fill="#ffffff" '
                         f'font-family="Helvetica,Arial,sans-serif" font-weight="bold" font-size="{size:.0f}">'
                         f"{_h(label)}</text></g>")
    end = svg.rindex("</g>")  # inside the graph's own group, in its coordinates
    return svg[:end] + "\n".join(drawn) + "\n" + svg[end:]


# --- HTML --------------------------------------------------------------------------------

STYLE = f"""
body {{ font-family: Helvetica, Arial, sans-serif; margin: 1.2em 2em; color: #212121; background: #ffffff;
       font-size: 20px; }}
h1 {{ font-size: 1.6em; margin: 0 0 .2em 0; }}
p.summary {{ font-size: 1.15em; margin: 0 0 .8em 0; }}
figure {{ margin: 0 0 1em 0; border: 1px solid #cfd8dc; padding: .3em; }}
figure svg {{ width: 100%; height: auto; display: block; }}
/* a marked box of the picture: filled, so that it shows from the back of the room */
figure svg g.node path[stroke="{FAIL_COLOUR}"], figure svg g.node polygon[stroke="{FAIL_COLOUR}"] {{ fill: #ffcdd2; }}
figcaption {{ font-size: .85em; color: #455a64; }}
table.students {{ border-collapse: collapse; width: 100%; font-size: 1.1em; }}
table.students th, table.students td {{ border-bottom: 1px solid #b0bec5; padding: .35em .6em; text-align: left;
                                        vertical-align: top; }}
table.students th {{ background: #eceff1; }}
td.status {{ font-weight: bold; color: #ffffff; text-align: center; width: 7em; }}
tr.pass td.status {{ background: {PASS_COLOUR}; }}
tr.fail td.status {{ background: {FAIL_COLOUR}; }}
tr.error td.status {{ background: {ERROR_COLOUR}; }}
td.passed {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
span.tag {{ display: inline-block; min-width: 1.4em; padding: 0 .3em; margin-right: .4em; border-radius: .7em;
           background: {FAIL_COLOUR}; color: #ffffff; font-weight: bold; text-align: center; }}
.also {{ color: #546e7a; font-size: .85em; }}
details {{ margin: .4em 0; font-size: .8em; }}
details pre {{ white-space: pre-wrap; background: #f5f5f5; padding: .4em; margin: .2em 0; }}
"""


def _row(r: LabResult, tags: dict[str, str], plan: Plan) -> str:
    word = {"pass": "PASS", "fail": "FAIL", "error": "NO RESULTS"}[r.status]
    if r.status == "error":
        hop_cell = _h(r.problem)
    elif r.first_failing is None:
        hop_cell = "every scenario that ran passed"
    else:
        n = r.first_failing
        also = [m for m in r.failing if m != n]
        hop_cell = (f'<span class="tag">{_h(tags[r.student])}</span>scenario {n}: {_h(hop(n, plan))}'
                    + (f' <span class="also">(also failing: {_h(", ".join(map(str, also)))})</span>' if also else ""))
    return (f'<tr class="{r.status}" data-student="{_h(r.student)}"><td class="status">{word}</td>'
            f'<td class="host">{_h(r.host)}</td><td class="lab">{_h(r.lab)}</td>'
            f'<td class="passed">{_h(passed_cell(r))}</td><td class="hop">{hop_cell}</td></tr>')


def _details(r: LabResult, plan: Plan) -> str:
    n = r.first_failing
    lines = [f"hop: {hop(n, plan)}"] + [f"evidence: {m}" for m in r.outcome(n).failures[:3]]
    lines.append(f"next: {next_command(r, n, plan)}")
    return (f'<details><summary>{_h(r.student)}: scenario {n}, {_h(title(n, plan))}</summary>'
            f'<pre>{_h(chr(10).join(lines))}</pre></details>')


def render_html(results: list[LabResult], plan: Plan, generated: str = "") -> str:
    """The page an instructor projects: the lab's picture with each failing hop marked, a
    table of every student lab, and each failing lab's evidence (folded). Self-contained:
    inline SVG and CSS, no script, nothing fetched. PLAN is the lab's plan, built for the
    lab name `<lab>`. The page is well-formed XML as well as HTML."""
    results = ordered(results)
    svg, found = class_svg(plan, results)
    tags = {s.student: m.tag for m in found for s in m.students}
    missing = not_run_everywhere(results)
    note = (" Not run in any lab: " + ", ".join(f"scenario {n}" for n in missing) + "."
            if missing else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>podpath class report: {_h(summary(results))}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>podpath class report</h1>",
        f'<p class="summary">{_h(summary(results))}.{_h(note)}'
        + (f" Generated {_h(generated)}." if generated else "") + "</p>",
        f"<figure>{svg}<figcaption>The lab as planned. A red box is where the labs of its letter first "
        "fail; the letter is in the table. Scenarios are numbered from the pod outwards, so a lab's first failing "
        "hop is the innermost one that fails.</figcaption></figure>",
        '<table class="students"><thead><tr><th>status</th><th>host</th><th>lab</th>'
        f"<th>passed of {TOTAL}</th><th>first failing hop</th></tr></thead><tbody>",
        *[_row(r, tags, plan) for r in results],
        "</tbody></table>",
    ]
    failing = [r for r in results if r.status == "fail"]
    if failing:
        parts.append('<section class="evidence"><h2>Evidence of each first failure</h2>')
        parts += [_details(r, plan) for r in failing]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
