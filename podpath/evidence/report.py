"""A pytest plugin that turns the verifier's results into one line per scenario.

Loaded by tests/verify/conftest.py, so it works the same under `podpath verify` and
under a plain `pytest --hosts=local:// tests/verify`. Tests carry
`@pytest.mark.scenario(N)`; a scenario passes when all its checks pass.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict

from podpath.evidence.scenarios import SCENARIOS, look_at, titles

# How much of a failed check's message the report shows: its evidence, not a traceback.
EVIDENCE_CHARS = 300


class ScenarioReport:
    """KIND is netns or cluster; FILL gives the values of the placeholders in the commands a
    failure suggests ({lab}, {nodes}, <MetalLB address>, <ingress host>); MODE is kube-proxy's
    (iptables or nftables), whose rules the commands of its hops show."""

    def __init__(self, kind: str = "netns", fill: dict[str, str] | None = None, mode: str = "iptables",
                 edge: str = "ingress-nginx"):
        self.kind = kind
        self.fill = fill or {}
        self.mode = mode
        self.edge = edge  # the lab's edge: scenarios 15-17 and 19 have its titles and hops
        self.scenario_of: dict[str, int] = {}
        self.outcomes: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        # a run of several labs (the `lab` fixture parametrized): each check's lab, and each lab's outcomes
        self.target_of: dict[str, str] = {}
        self.by_target: dict[str, dict[int, list[tuple[str, str, str]]]] = defaultdict(lambda: defaultdict(list))
        self.deselected: set[int] = set()

    def pytest_collection_modifyitems(self, session, config, items):
        for item in items:
            marker = item.get_closest_marker("scenario")
            if marker:
                self.scenario_of[item.nodeid] = marker.args[0]
                target = getattr(getattr(item, "callspec", None), "params", {}).get("lab")
                if target is not None:
                    self.target_of[item.nodeid] = getattr(target, "id", str(target))

    def pytest_deselected(self, items):
        # the disruptive checks left out of the default run (the other lab's are not listed)
        for item in items:
            marker = item.get_closest_marker("scenario")
            if marker and item.get_closest_marker("disruptive"):
                self.deselected.add(marker.args[0])

    def pytest_runtest_logreport(self, report):
        number = self.scenario_of.get(report.nodeid)
        if number is None:
            return
        if report.when == "call" or (report.when == "setup" and not report.passed):
            message = ""
            if report.failed:
                message = str(report.longrepr.reprcrash.message if hasattr(report.longrepr, "reprcrash")
                              else report.longrepr).splitlines()[0].removeprefix("AssertionError: ")
            elif report.skipped:
                message = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
            entry = (report.nodeid.split("::")[-1], report.outcome, message)
            self.outcomes[number].append(entry)
            if report.nodeid in self.target_of:
                self.by_target[self.target_of[report.nodeid]][number].append(entry)

    def outcome(self, number: int, outcomes: dict | None = None) -> str:
        results = (self.outcomes if outcomes is None else outcomes).get(number, [])
        if any(r[1] == "failed" for r in results):
            return "FAIL"
        if any(r[1] == "passed" for r in results):
            return "PASS"
        return "SKIP" if results else "NOT RUN"

    def document(self, outcomes: dict) -> dict:
        """OUTCOMES as the file of --scenario-json: scenario number -> outcome and failures."""
        return {str(n): {"outcome": self.outcome(n, outcomes),
                         "failures": [m for _, o, m in outcomes.get(n, []) if o == "failed"]} for n in SCENARIOS}

    def pytest_sessionfinish(self, session, exitstatus):
        files = {}
        path = session.config.getoption("scenario_json", default=None)
        if path:
            files[path] = self.outcomes
        folder = session.config.getoption("scenario_json_each", default=None)
        if folder:  # each lab's; a run of one lab has no parameter: its name is the one filled in
            lab = self.fill.get("{lab}", "<lab>")
            each = self.by_target or ({} if lab.startswith("<") else {lab: self.outcomes})
            for target, outcomes in each.items():
                files[os.path.join(folder, target.replace("/", "__") + ".json")] = outcomes
        for name, outcomes in files.items():
            with open(name, "w") as handle:
                json.dump(self.document(outcomes), handle, indent=1)

    def lines(self) -> list[str]:
        out = []
        checks = failed = 0
        for number, title in titles(self.edge).items():
            results = self.outcomes.get(number, [])
            checks += sum(1 for _, outcome, _ in results if outcome != "skipped")
            if not results:
                reason = "disruptive: run with --disruptive" if number in self.deselected else "not run"
                out.append(f"{number:>3}  ----  {title}  ({reason})")
                continue
            bad = [r for r in results if r[1] == "failed"]
            ran = [r for r in results if r[1] != "skipped"]
            word = "FAIL" if bad else ("PASS" if ran else "SKIP")
            failed += bool(bad)
            out.append(f"{number:>3}  {word}  {title}  ({len(ran)} check{'s' if len(ran) != 1 else ''})")
            if bad:
                out += self.failure_lines(number, bad)
            if not ran and results:
                out.append(f"           {results[0][2]}")
        run = sum(1 for n in SCENARIOS if any(o != "skipped" for _, o, _ in self.outcomes.get(n, [])))
        summary = f"{len(SCENARIOS)} scenarios, {run} run, {checks} checks: "
        summary += f"{failed} failed" if failed else ("all passed" if checks else "no check ran")
        return out + ["", summary]

    def next_command(self, number: int) -> str:
        hop, netns, cluster = look_at(number, self.mode, self.edge)
        command = netns if self.kind == "netns" else cluster
        for placeholder, value in self.fill.items():
            command = command.replace(placeholder, value)
        return command

    def failure_lines(self, number: int, bad: list[tuple[str, str, str]]) -> list[str]:
        """A failed scenario in a few lines: the hop, each failed check with its evidence (at
        most three), and the command that shows that hop."""
        lines = [f"           hop:      {look_at(number, self.mode, self.edge)[0]}"]
        for name, _, message in bad[:3]:
            evidence = message if len(message) <= EVIDENCE_CHARS else message[:EVIDENCE_CHARS - 3] + "..."
            lines.append(f"           check:    {name}")
            lines.append(f"           evidence: {evidence}")
        if len(bad) > 3:
            lines.append(f"           ... and {len(bad) - 3} more failed check(s) of this scenario")
        lines.append(f"           next:     {self.next_command(number)}")
        return lines

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if not self.scenario_of:
            return
        terminalreporter.section("podpath verifier: scenarios")
        for line in self.lines():
            terminalreporter.write_line(line)
