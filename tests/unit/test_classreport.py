"""The class report (podpath/evidence/classreport.py) from made-up verifier results: one row
per lab with its count and first failing hop, JUnit XML parsed back with its counts, every
string escaped in HTML, XML and the picture, the picture's marks on the right boxes, the
results files read back or refused with a message that names the file, and `podpath
report --results` end to end (no lab, no root)."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from podpath import cli
from podpath.evidence import classreport as cr
from podpath.evidence.scenarios import LOOK, SCENARIOS, look, look_at, titles
from podpath.model import plan as plan_mod
from podpath.model import topology as topology_mod

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed (apt-get install graphviz)")
PLAN = plan_mod.build(topology_mod.load(), "<lab>")
SVG = "{http://www.w3.org/2000/svg}"
NASTY = "<script>alert('x')</script> & \"quoted\" \x1b[31m"  # markup, quotes and a terminal's colour code


def scenarios(fail: dict[int, list[str]] | None = None, not_run=(14,), skip=()) -> dict:
    """What `podpath verify --scenario-json` writes: FAIL for FAIL's scenarios (with their
    messages), NOT RUN and SKIP as told, PASS for the rest."""
    fail = fail or {}
    out = {}
    for n in SCENARIOS:
        outcome = "FAIL" if n in fail else "NOT RUN" if n in not_run else "SKIP" if n in skip else "PASS"
        out[str(n)] = {"outcome": outcome, "failures": fail.get(n, [])}
    return out


def healthy(lab: str, host: str = "pc1") -> cr.LabResult:
    return cr.lab_result(host, lab, scenarios())


def failing(lab: str, fail: dict[int, list[str]], host: str = "pc1") -> cr.LabResult:
    return cr.lab_result(host, lab, scenarios(fail))


def text_rows(text: str) -> dict[str, list[str]]:
    """The table of render_text, by host/lab: [host, lab, passed, first failing hop]."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("HOST"))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        host, lab, passed, hop = line.split(None, 3)
        rows[f"{host}/{lab}"] = [host, lab, passed, hop]
    return rows


# --- rows ---------------------------------------------------------------------------------

def test_a_row_per_lab_with_scenarios_passed_and_the_first_failing_hop():
    results = [healthy("stu1"), failing("stu2", {11: ["no REJECT"], 5: ["no route"]}),
               failing("stu3", {13: ["nobody answered ARP"]})]
    rows = text_rows(cr.render_text(results, PLAN))
    assert set(rows) == {"pc1/stu1", "pc1/stu2", "pc1/stu3"}
    assert rows["pc1/stu1"][2:] == [f"{len(SCENARIOS) - 1}/{len(SCENARIOS)}", "-"]  # 14 is not run by default
    assert rows["pc1/stu2"][2] == f"{len(SCENARIOS) - 3}/{len(SCENARIOS)}"
    assert rows["pc1/stu2"][3] == f"scenario 5: {LOOK[5][0]}"
    assert rows["pc1/stu3"][3] == f"scenario 13: {LOOK[13][0]}"
    assert [r.status for r in results] == ["pass", "fail", "fail"]


@pytest.mark.parametrize("failing_set", [{1}, {19}, {5, 11}, {18, 9, 10}, {16, 13, 15, 17, 19}])
def test_the_first_failing_hop_is_the_lowest_failing_scenario(failing_set):
    result = failing("stu1", {n: [f"check of {n} failed"] for n in failing_set})
    assert result.first_failing == min(failing_set)
    assert result.failing == sorted(failing_set)
    assert result.passed == len(SCENARIOS) - len(failing_set) - 1


def test_the_text_lists_the_other_failing_scenarios_and_the_evidence_of_the_first():
    text = cr.render_text([failing("stu2", {9: ["pod echo-1 never reached itself"], 18: ["no SNAT"]})], PLAN)
    assert "scenario 9" in text and "(also failing: 18)" in text
    assert "evidence: pod echo-1 never reached itself" in text
    assert "next:     for n in cp1 worker1 worker2; do ip -n stu2-$n -d link show master cni0" in text


def test_the_hop_and_its_command_follow_kube_proxys_mode():
    topo = topology_mod.load()
    topo["kube_proxy"] = {**topo.get("kube_proxy", {}), "mode": "nftables"}
    nft = plan_mod.build(topo, "<lab>")
    result = failing("stu1", {11: ["Service no-endpoints answered late"]})
    rows, text = text_rows(cr.render_text([result], nft)), cr.render_text([result], nft)
    assert rows["pc1/stu1"][3] == f"scenario 11: {look(11, 'nftables')[0]}" != f"scenario 11: {LOOK[11][0]}"
    assert "nft list map ip kube-proxy no-endpoint-services" in text and "iptables-save" not in text
    failure = ET.fromstring(cr.render_junit([result], nft)).find(".//failure")
    assert failure.get("message") == f"hop: {look(11, 'nftables')[0]}"



def test_the_titles_hops_and_marks_of_15_to_17_follow_the_gateway_edge():
    gateway = plan_mod.build(topology_mod.load(topology_mod.ROOT / "inventory" / "gateway-api.yml"), "<lab>")
    assert gateway.edge == "gateway-api" and gateway.gateway_pods
    result = failing("stu1", {17: ["the HTTPRoute did not add its header"]})
    text = cr.render_text([result], gateway)
    hop17 = look_at(17, "iptables", "gateway-api")[0]
    assert text_rows(text)["pc1/stu1"][3] == f"scenario 17: {hop17}" != f"scenario 17: {LOOK[17][0]}"
    assert f"scenario 17  {titles('gateway-api')[17]}" in text and SCENARIOS[17] not in text
    assert "/nginx.conf" in text  # the command that shows the gateway's hop, not the Ingress's
    case = ET.fromstring(cr.render_junit([result], gateway)).find(".//failure/..")
    assert case.get("name") == f"scenario 17: {titles('gateway-api')[17]}"
    drawn = {b.id for b in cr.picture.lab_picture(gateway).all_boxes()}
    assert set(cr.places(gateway, drawn, 17, ["no answer"])) == {f"pod/{p.name}" for p in gateway.gateway_pods}


def test_a_lab_without_results_is_a_row_that_says_why():
    gone = cr.LabResult("pc1", "stu9", error="lab stu9 does not exist on this host: build it with podpath up")
    nothing_ran = cr.lab_result("pc1", "stu8", scenarios(not_run=tuple(SCENARIOS)))
    rows = text_rows(cr.render_text([gone, nothing_ran], PLAN))
    assert rows["pc1/stu9"][2:] == ["-", "no results: lab stu9 does not exist on this host: build it with podpath up"]
    assert rows["pc1/stu8"][2:] == [f"0/{len(SCENARIOS)}", "no results: the verifier ran no check"]
    assert gone.status == nothing_ran.status == "error"


def test_rows_are_ordered_by_host_then_lab_with_numbers_as_numbers():
    results = [healthy("stu10"), healthy("stu2", "pc2"), healthy("stu2"), healthy("stu1")]
    assert [r.student for r in cr.ordered(results)] == ["pc1/stu1", "pc1/stu2", "pc1/stu10", "pc2/stu2"]


def test_the_summary_counts_each_state():
    results = [healthy("a"), failing("b", {4: ["x"]}), cr.LabResult("pc2", "c", error="gone")]
    assert cr.summary(results) == "3 labs on 2 hosts: 1 pass, 1 fail, 1 without results"


# --- JUnit -------------------------------------------------------------------------------

def test_junit_parses_with_a_suite_per_lab_and_a_case_per_scenario():
    results = [healthy("stu1"), failing("stu2", {5: ["no route to echo-2"], 12: ["two KUBE-SEP"]}),
               cr.LabResult("pc1", "stu3", error="the verifier stopped")]
    root = ET.fromstring(cr.render_junit(results, PLAN))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["pc1/stu1", "pc1/stu2", "pc1/stu3"]
    for name, suite in suites.items():  # each suite's counts are what its cases hold
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        assert int(suite.get("skipped")) == sum(1 for c in cases if c.find("skipped") is not None)
    assert len(suites["pc1/stu1"].findall("testcase")) == len(SCENARIOS)
    assert (suites["pc1/stu2"].get("failures"), suites["pc1/stu2"].get("skipped")) == ("2", "1")
    assert (suites["pc1/stu3"].get("tests"), suites["pc1/stu3"].get("errors")) == ("1", "1")
    for key in ("tests", "failures", "errors", "skipped"):
        assert int(root.get(key)) == sum(int(s.get(key)) for s in suites.values())
    failure = suites["pc1/stu2"].find("testcase/failure")
    assert failure.get("message") == f"hop: {LOOK[5][0]}" and failure.get("type") == "scenario 5"
    assert "evidence: no route to echo-2" in failure.text and "next: for n in cp1 worker1 worker2" in failure.text


# --- escaping ----------------------------------------------------------------------------

def test_junit_escapes_every_string():
    result = failing(NASTY, {7: [NASTY, "a ]]> b"]}, host=NASTY)
    root = ET.fromstring(cr.render_junit([result], PLAN))  # parses: nothing broke out of its place
    suite = root.find("testsuite")
    assert suite.get("hostname") == cr.clean(NASTY) and "\x1b" not in suite.get("hostname")
    assert f"evidence: {cr.clean(NASTY)}" in suite.find("testcase/failure").text
    assert root.find(".//script") is None


@needs_dot
def test_html_escapes_every_string_also_in_the_picture():
    result = failing(NASTY, {4: [NASTY]}, host=NASTY)
    page = cr.render_html([result, cr.LabResult(NASTY, "stu2", error=NASTY)], PLAN, generated=NASTY)
    root = ET.fromstring(page)  # the page is well-formed XML: every string stayed text
    assert not [e for e in root.iter() if e.tag.split("}")[-1] == "script"]
    rows = [tr for tr in root.iter("tr") if tr.get("data-student")]
    assert sorted(tr.get("data-student") for tr in rows) == sorted([cr.clean(NASTY + "/" + NASTY),
                                                                     cr.clean(NASTY + "/stu2")])
    assert cr.clean(NASTY) in "".join(rows[0].itertext())
    svg_text = "".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert cr.clean(NASTY) in svg_text, "the mark names the lab, as text"


@needs_dot
def test_the_page_fetches_nothing_and_needs_no_script():
    page = cr.render_html([healthy("stu1"), failing("stu2", {13: ["x"]})], PLAN)
    root = ET.fromstring(page)
    names = {e.tag.split("}")[-1] for e in root.iter()}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}, names
    linked = [(e.tag, k, v) for e in root.iter() for k, v in e.attrib.items()
              if k.split("}")[-1] in ("src", "href", "srcset", "action")]
    assert not linked, linked
    style = "".join(s.text or "" for s in root.iter("style"))
    assert "url(" not in style and "@import" not in style


# --- the picture -------------------------------------------------------------------------

def test_each_first_failing_hop_marks_its_place_on_the_lab():
    results = [failing("stu1", {4: ["pod echo-1 on worker1: its host-side veth is attached to no bridge"]}),
               failing("stu2", {11: ["Service no-endpoints should be refused"], 12: ["later"]}),
               failing("stu3", {11: ["also refused late"]}),
               failing("stu4", {13: ["nobody answered ARP"]}), healthy("stu5")]
    pic, found = cr.class_picture(PLAN, results)
    marked = {(m.tag, m.scenario, m.boxes, tuple(s.lab for s in m.students)) for m in found}
    assert marked == {("A", 4, ("worker1/cni0",), ("stu1",)), ("B", 11, ("services",), ("stu2", "stu3")),
                      ("C", 13, ("metallb",), ("stu4",))}
    bad = {b.id for b in pic.all_boxes() if b.bad}
    assert bad == {"worker1/cni0", "services", "metallb"}
    services = next(b for b in pic.all_boxes() if b.id == "services")
    assert services.lines[-1] == "✗ B: scenario 11, 2 labs: stu2, stu3"


@pytest.mark.parametrize("number, message, expected", [
    (5, "cp1 has no route to pod echo-1's subnet via worker1", {"cp1/flannel.1", "worker1/flannel.1"}),
    (5, "something failed", {"cp1/flannel.1", "worker1/flannel.1", "worker2/flannel.1"}),
    (1, "pod echo-2 on worker2: namespace file missing", {"pod/echo-2"}),
    (16, "controllers ['ingress-nginx-controller-2'] never served", {"pod/ingress-nginx-controller-2"}),
    (16, "no controller holds the lease", {f"pod/{p.name}" for p in PLAN.ingress_pods}),
    (9, "ip netns exec stu1-worker2 ...: pod echo-1 on worker1", {"worker1/cni0"}),  # not worker2 of stu1-worker2
    (19, "the traced path is broken", {"client"}),
])
def test_a_mark_goes_to_the_nodes_or_pods_the_evidence_names_else_to_every_such_place(number, message, expected):
    drawn = {b.id for b in cr.picture.lab_picture(PLAN).all_boxes()}
    assert set(cr.places(PLAN, drawn, number, [message])) == expected


@needs_dot
def test_the_svg_has_a_badge_on_each_marked_box_and_none_elsewhere():
    results = [failing("stu1", {4: ["pod echo-1 on worker1"]}), failing("stu2", {11: ["x"]}),
               failing("stu3", {11: ["y"]}), healthy("stu4")]
    svg, found = cr.class_svg(PLAN, results)
    root = ET.fromstring(svg)
    badges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "badge"]
    assert sorted("".join(g.itertext()) for g in badges) == ["A", "B ×2"]
    assert not svg.startswith("<?xml") and "<!DOCTYPE" not in svg


@needs_dot
def test_no_failing_lab_draws_no_mark():
    svg, found = cr.class_svg(PLAN, [healthy("stu1"), healthy("stu2")])
    assert found == [] and 'class="badge"' not in svg and "no lab fails a scenario" in svg


def test_the_picture_shows_no_detail_of_one_lab():
    one = plan_mod.build(topology_mod.load(), "stu1")
    pic, _ = cr.class_picture(one, [healthy("stu1")])
    words = " ".join(line for b in pic.all_boxes() for line in b.lines) + " ".join(
        line for a in pic.arrows for line in a.lines)
    assert "cni-<uuid>" in words and "announced by one node" in words
    for pod in one.pods:
        assert pod.uid not in words and pod.host_veth not in words
    for node in one.nodes:
        assert node.vtep.mac not in words


# --- results files -----------------------------------------------------------------------

def test_results_written_for_other_hosts_read_back_the_same(tmp_path):
    results = [healthy("stu1"), failing("stu2", {5: ["a", "b"]}), cr.LabResult("pc1", "stu3", error="gone")]
    path = tmp_path / "pc1.json"
    path.write_text(json.dumps(cr.results_document(results)))
    again = cr.read_results([path])
    assert [(r.student, r.error, r.scenarios) for r in again] == [(r.student, r.error, r.scenarios) for r in results]


@pytest.mark.parametrize("content, words", [
    ("{not json", ["not JSON"]),
    (json.dumps({"1": {"outcome": "PASS", "failures": []}}), ["not a file of podpath lab results", "--json"]),
    (json.dumps({"format": cr.FORMAT, "results": [{"host": "pc1", "lab": "stu1", "scenarios": {"20": {}}}]}),
     ["'20' is not a scenario number", "pc1/stu1"]),
    (json.dumps({"format": cr.FORMAT, "results": [{"host": "pc1", "lab": "stu1",
                                                    "scenarios": {"3": {"outcome": "GREEN"}}}]}),
     ["scenario 3 has outcome 'GREEN'", "PASS, FAIL, SKIP, NOT RUN"]),
    (json.dumps({"format": cr.FORMAT, "results": [{"lab": "stu1", "scenarios": {}}]}), ["needs a host and a lab"]),
])
def test_a_bad_results_file_is_refused_naming_the_file_and_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(cr.ResultsError) as exc:
        cr.read_results([path])
    assert str(path) in str(exc.value)
    for word in words:
        assert word in str(exc.value)


def test_a_lab_given_twice_is_refused_naming_both_files(tmp_path):
    paths = []
    for name in ("a.json", "b.json"):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(cr.results_document([healthy("stu1")])))
    with pytest.raises(cr.ResultsError, match=r"b.json: lab pc1/stu1 is also in .*a.json"):
        cr.read_results(paths)


# --- the verb, on results files only (no lab is verified, no root needed) -----------------

@needs_dot
def test_report_from_results_files_writes_text_html_and_junit(tmp_path, capsys):
    files = []
    for host, results in (("pc1", [healthy("stu1"), failing("stu2", {11: ["late"]}, "pc1")]),
                          ("pc2", [healthy("stu1", "pc2")])):
        files.append(tmp_path / f"{host}.json")
        files[-1].write_text(json.dumps(cr.results_document(results)))
    html, junit = tmp_path / "class.html", tmp_path / "class.xml"
    rc = cli.main(["report", "--results", *map(str, files), "--html", str(html), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == cli.EXIT_FAILED, "a failing lab makes the report fail"
    assert set(text_rows(out)) == {"pc1/stu1", "pc1/stu2", "pc2/stu1"}
    assert f"html written to {html}" in out and f"junit written to {junit}" in out
    assert len(ET.parse(junit).getroot().findall("testsuite")) == 3
    assert len([tr for tr in ET.parse(html).getroot().iter("tr") if tr.get("data-student")]) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_report_of_results_files_passes_when_every_lab_passes_and_needs_no_root(tmp_path, capsys, monkeypatch):
    path = tmp_path / "pc1.json"
    path.write_text(json.dumps(cr.results_document([healthy("stu1"), healthy("stu2")])))
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["report", "--results", str(path)]) == cli.EXIT_OK
    assert "2 labs on 1 host: 2 pass, 0 fail" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["--labs", "stu1,,stu2"], ["--labs 'stu1,,stu2': an empty name"]),
    (["--labs", "stu1,stu1"], ["stu1 more than once"]),
    (["--labs", "Stu-1"], ["Stu-1"]),
    (["--labs", "stu1", "--html", "/nonexistent-folder/x.html"], ["/nonexistent-folder/x.html", "no folder"]),
    (["--results", "/nonexistent-folder/r.json"], ["/nonexistent-folder/r.json: cannot read it"]),
])
def test_bad_input_stops_the_report_before_any_lab_is_verified(argv, words, capsys, monkeypatch):
    monkeypatch.setattr(cli, "report_results", lambda *a: pytest.fail("a lab was verified despite bad input"))
    assert cli.main(["report", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    for word in words:
        assert word in err
