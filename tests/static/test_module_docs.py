"""The project's modules document themselves: ansible-doc shows their options, examples and
return values, and every option the module accepts is documented (and no other), down to the
suboptions, so that Ansible checks each one's type. ansible-test sanity's validate-modules
checks the rest of the agreement (types, defaults, choices) on the built collection
(tests/static/test_collection.py)."""
from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.static

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "library").glob("*.py"))
COLLECTION = "podpath.lab"


def option_tree(options: dict) -> dict:
    """{name: suboption tree} of documented OPTIONS or of an argument spec's."""
    return {name: option_tree(spec.get("suboptions") or spec.get("options") or {}) for name, spec in options.items()}


def argument_spec_keys(module: str) -> set[str]:
    """The top-level keys of ARGUMENT_SPEC = dict(...) in the module's source (the spec both
    AnsibleModule and the in-process run check arguments against)."""
    tree = ast.parse((ROOT / "library" / f"{module}.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["ARGUMENT_SPEC"]
                and isinstance(node.value, ast.Call)):
            return {kw.arg for kw in node.value.keywords}
    raise AssertionError(f"{module} has no ARGUMENT_SPEC = dict(...)")


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_shows_the_module(tool, module):
    done = subprocess.run([tool("ansible-doc"), "-M", "library", "-j", module], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)[module]
    assert doc["doc"]["short_description"] and doc["examples"].strip()
    assert doc["return"], f"{module} has no RETURN block"
    assert set(doc["doc"]["options"]) == argument_spec_keys(module), (
        f"{module}: documented options {sorted(doc['doc']['options'])} differ from the argument_spec "
        f"{sorted(argument_spec_keys(module))}")
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"


@pytest.mark.parametrize("module", MODULES)
def test_every_documented_suboption_is_in_the_argument_spec_and_no_other(tool, module):
    from podpath.play import inprocess

    done = subprocess.run([tool("ansible-doc"), "-M", "library", "-j", module], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    documented = option_tree(json.loads(done.stdout)[module]["doc"]["options"])
    assert documented == option_tree(inprocess.load_library(module).ARGUMENT_SPEC)


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_only_documented_options_and_the_collections_name(module):
    tree = ast.parse((ROOT / "library" / f"{module}.py").read_text())
    blocks = {n.targets[0].id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.targets[0], ast.Name) and n.targets[0].id in ("DOCUMENTATION", "EXAMPLES")}
    options = set(yaml.safe_load(blocks["DOCUMENTATION"])["options"])
    for task in yaml.safe_load(blocks["EXAMPLES"]):
        fqcn = f"{COLLECTION}.{module}"
        assert fqcn in task, f"{module}: the example {task.get('name')!r} does not call it as {fqcn}"
        assert set(task[fqcn]) <= options, f"{module}: an example uses {set(task[fqcn]) - options}"
