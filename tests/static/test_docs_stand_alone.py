"""The project stands alone: a clone needs nothing beside it to read its docs.

No tracked file points at material outside the repository, docs/lab.md's addresses and
scenarios agree with the topology file and podpath's scenario list, and every relative
link of README.md and docs/*.md leads to a file of the repository."""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
LAB_DOC = ROOT / "docs" / "lab.md"
# Names of the material the project was started from, which a clone does not have. Built
# from parts so that this file does not name them itself.
OUTSIDE = ["../" + "shared", "LAB" + ".md", "PINS" + ".md"]
# The addresses table: | what | value | `key` |; the scenarios table: | N | title |.
ADDRESS_ROW = re.compile(r"^\|[^|]*\|\s*(?P<value>[^|]*?)\s*\|\s*`(?P<key>[^`]+)`\s*\|\s*$")
SCENARIO_ROW = re.compile(r"^\|\s*(?P<number>\d+)\s*\|\s*(?P<title>.*?)\s*\|\s*$")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?![\d.])")
# [text](target), outside code; images too.
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def tracked_files() -> list[str]:
    """The repository's tracked files, as a clone has them."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git work tree (or git is not installed): the tracked files are unknown")
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                            capture_output=True, text=True).stdout
    return [name for name in listed.split("\0") if name]


def section_rows(text: str, marker: str, row: re.Pattern[str]) -> list[re.Match[str]]:
    """The rows of the table that follows the HTML comment `<!-- marker: ... -->`."""
    start = text.find(f"<!-- {marker}:")
    assert start >= 0, f"docs/lab.md has no '<!-- {marker}: ... -->' table"
    rows = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows or line.strip():
                break
            continue
        found = row.match(line)
        if found:
            rows.append(found)
    assert rows, f"docs/lab.md: the {marker} table has no rows"
    return rows


def topology_value(topology: dict[str, Any], key: str) -> Any:
    """A value of podpath_topology by the table's key: dotted names, `list[name]` picks the
    entry of that name, `pool[first]` the first address of a range."""
    value: Any = topology
    for part in key.split("."):
        name, _, pick = part.partition("[")
        pick = pick.rstrip("]")
        assert isinstance(value, dict) and name in value, f"topology.yml has no {key!r} ({name!r} missing)"
        value = value[name]
        if pick == "first":
            value = str(value).split("-")[0]
        elif pick:
            matching = [item for item in value if item.get("name") == pick]
            assert len(matching) == 1, f"topology.yml: {key!r} names no single entry {pick!r}"
            value = matching[0]
    return value


def address_leaves(value: Any, path: str = "") -> dict[str, str]:
    """Every IPv4 address, network or range of the topology, by its key."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in address_leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for item in value
                for k, v in address_leaves(item, f"{path}[{item.get('name', '?')}]"
                                           if isinstance(item, dict) else path).items()}
    if isinstance(value, str) and IPV4.search(value):
        return {path: value}
    return {}


def podpath_scenarios() -> dict[int, str]:
    """podpath's list of scenarios, wherever the package keeps it."""
    for module in ("podpath.evidence.scenarios", "podpath.scenarios"):
        try:
            return importlib.import_module(module).SCENARIOS
        except ModuleNotFoundError:
            continue
    pytest.fail("podpath has no scenario list (neither podpath.evidence.scenarios nor podpath.scenarios)")


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = []
    for name in tracked_files():
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            offenders += [f"{name}:{number}: {word}" for word in OUTSIDE if word in line]
    assert not offenders, ("these files name material a clone does not have; point at docs/lab.md "
                           "(or versions.yml and docs/cluster.md for versions) instead:\n"
                           + "\n".join(offenders))


def test_lab_doc_addresses_are_the_topology(topology: dict[str, Any]) -> None:
    rows = section_rows(LAB_DOC.read_text(), "addresses", ADDRESS_ROW)
    wrong = [f"{row['key']}: docs/lab.md says {row['value']!r}, topology.yml says "
             f"{topology_value(topology, row['key'])!r}"
             for row in rows if row["value"] != str(topology_value(topology, row["key"]))]
    assert not wrong, "docs/lab.md's addresses table disagrees with topology.yml:\n" + "\n".join(wrong)


def test_lab_doc_lists_every_address_of_the_topology(topology: dict[str, Any]) -> None:
    listed = {row["key"] for row in section_rows(LAB_DOC.read_text(), "addresses", ADDRESS_ROW)}
    missing = sorted(set(address_leaves(topology)) - listed)
    assert not missing, f"topology.yml has addresses docs/lab.md's table does not list: {missing}"


def test_lab_doc_names_no_address_outside_its_table(topology: dict[str, Any]) -> None:
    """An address in the prose must be one of the table's, so a changed topology cannot leave
    a stale address behind in the text."""
    text = LAB_DOC.read_text()
    rows = section_rows(text, "addresses", ADDRESS_ROW)
    known = {str(topology_value(topology, row["key"])) for row in rows}
    known |= {part for value in known for part in value.split("-")}
    stray = sorted({found for found in IPV4.findall(text) if found not in known})
    assert not stray, f"docs/lab.md names addresses that are not in its table: {stray}"


def test_lab_doc_scenarios_are_podpaths() -> None:
    scenarios = podpath_scenarios()
    rows = section_rows(LAB_DOC.read_text(), "scenarios", SCENARIO_ROW)
    documented = {int(row["number"]): row["title"] for row in rows}
    assert documented == scenarios, (
        "docs/lab.md's scenarios differ from podpath's list: "
        f"only in lab.md {sorted(set(documented.items()) - set(scenarios.items()))}, "
        f"only in podpath {sorted(set(scenarios.items()) - set(documented.items()))}")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_relative_links_lead_to_repository_files(doc: Path) -> None:
    tracked = set(tracked_files())
    # A link may name a folder (roles/): it exists if some tracked file is under it.
    tracked_dirs = {str(parent) for name in tracked for parent in Path(name).parents}
    text = INLINE_CODE.sub("", FENCE.sub("", doc.read_text()))
    broken = []
    for found in LINK.finditer(text):
        target = found["target"].split("#", 1)[0]
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # an anchor in the same page, or a URL
        resolved = (doc.parent / target).resolve()
        try:
            relative = str(resolved.relative_to(ROOT))
        except ValueError:
            broken.append(f"{found['target']} (outside the repository)")
            continue
        if relative not in tracked and relative not in tracked_dirs:
            broken.append(f"{found['target']} ({relative} is not a file of the repository)")
    assert not broken, f"{doc.relative_to(ROOT)} links to what a clone does not have: {broken}"
