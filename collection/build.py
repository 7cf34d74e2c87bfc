"""Build the podpath.lab collection from the repository's own module files, and check it.

The playbooks use library/, module_utils/ and plugins/action/ where they are (ansible.cfg
points at them). A collection wants them under plugins/, and its module_utils imported as
ansible_collections.podpath.lab.plugins.module_utils.X instead of ansible.module_utils.X.
So nothing is kept twice in git: this script assembles the collection under build/ from
those files, rewriting only the import lines of the podpath module_utils, and
ansible-galaxy builds the tarball from that.

    python collection/build.py            # build/podpath-lab-<version>.tar.gz
    python collection/build.py --sanity   # and run ansible-test sanity on what it holds

The sanity run installs the tarball (ansible-galaxy, offline) in a temporary folder and
runs ansible-test there, so what is checked is what is shipped (and outside the
repository: inside a git work tree, ansible-test would check only the files git tracks,
and build/ is not tracked). ansible-test keeps its test environments under its
HOME, which is build/ansible-test-home here: the user's own ~/.ansible is left alone and
`make clean` removes them. See docs/module.md.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "collection"  # galaxy.yml, meta/, README.md, tests/sanity/
BUILD = ROOT / "build"
NAMESPACE, NAME = "podpath", "lab"
# the three kinds of files and where a collection keeps them
PARTS = {"library": "plugins/modules", "module_utils": "plugins/module_utils", "plugins/action": "plugins/action"}
UTILS_IMPORT = re.compile(r"^(\s*from\s+)ansible\.module_utils\.(podpath_\w+)(\s+import\b)", re.M)
COLLECTION_UTILS = "ansible_collections.%s.%s.plugins.module_utils." % (NAMESPACE, NAME)
# The Python the sanity tests run with: the project's (pyproject.toml: requires-python >= 3.11).
SANITY_PYTHON = "%d.%d" % sys.version_info[:2]


class BuildError(RuntimeError):
    """The collection cannot be built as asked; the message says why and what to do."""


def version() -> str:
    """The project's version (pyproject.toml), which the collection carries too."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def rewrite_imports(text: str, path: Path) -> str:
    """TEXT with `from ansible.module_utils.podpath_X import ...` made the collection's import."""
    text = UTILS_IMPORT.sub(r"\1" + COLLECTION_UTILS.replace("\\", r"\\") + r"\2\3", text)
    if "ansible.module_utils.podpath_" in text:
        raise BuildError("%s imports a podpath module_utils in a form the build does not rewrite: use "
                         "`from ansible.module_utils.podpath_X import name`" % path.relative_to(ROOT))
    return text


def assemble(dest: Path) -> Path:
    """Lay out the collection in DEST/ansible_collections/podpath/lab and return that folder."""
    tree = dest / "ansible_collections" / NAMESPACE / NAME
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    galaxy = yaml.safe_load((SOURCE / "galaxy.yml").read_text())
    galaxy["version"] = version()
    (tree / "galaxy.yml").write_text("---\n" + yaml.safe_dump(galaxy, sort_keys=False))
    shutil.copytree(SOURCE / "meta", tree / "meta")
    shutil.copytree(SOURCE / "tests", tree / "tests")
    shutil.copy2(SOURCE / "README.md", tree / "README.md")
    shutil.copy2(ROOT / "LICENSE", tree / "LICENSE")
    for part, target in PARTS.items():
        (tree / target).mkdir(parents=True)
        for path in sorted((ROOT / part).glob("podpath_*.py")):
            (tree / target / path.name).write_text(rewrite_imports(path.read_text(), path))
    return tree


def tool(name: str) -> str:
    """An Ansible command of the Python running this script (the project's .venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise BuildError("%s is not beside %s: run `make venv` first" % (name, sys.executable))
    return str(path)


def build() -> Path:
    """Assemble the collection and build its tarball in build/; return the tarball's path."""
    tree = assemble(BUILD / "collection")
    subprocess.run([tool("ansible-galaxy"), "collection", "build", str(tree), "--output-path", str(BUILD), "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    tarball = BUILD / ("%s-%s-%s.tar.gz" % (NAMESPACE, NAME, version()))
    print("podpath: built %s" % tarball.relative_to(ROOT))
    return tarball


# ansible-test makes a virtual environment per sanity test and bootstraps pip in it with a
# script it downloads from ci-files.testing.ansible.com, which a machine may not reach
# (this project's CI does not). It looks for the script in its cache first; this stand-in
# gets the same pip version another way: pip from Python's own ensurepip, then the version
# ansible-test asks for from the package index, which the project's install uses anyway.
PIP_BOOTSTRAP = '''"""Stand-in for ansible-test's get-pip script, written by podpath's collection/build.py."""
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])
'''


def sanity_home() -> dict:
    """The environment ansible-test runs in: HOME under build/, with the pip bootstrap in its cache."""
    home = BUILD / "ansible-test-home"
    try:
        from ansible_test._internal.python_requirements import get_venv_packages
        from ansible_test._internal.host_configs import NativePythonConfig
    except ImportError as exc:  # a future ansible-test that moved them: say so, rather than guess
        raise BuildError("cannot find which pip version ansible-test bootstraps (%s): update "
                         "collection/build.py for this ansible-test" % exc) from exc
    pip_version = get_venv_packages(NativePythonConfig(version=SANITY_PYTHON, path=sys.executable))["pip"]
    cache = home / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ("get_pip_%s.py" % pip_version.replace(".", "_"))).write_text(PIP_BOOTSTRAP)
    return dict(os.environ, HOME=str(home))


def sanity(tarball: Path, tests: list[str]) -> int:
    """Install TARBALL in a temporary folder and run ansible-test sanity there; its exit code."""
    env = sanity_home()
    with tempfile.TemporaryDirectory(prefix="podpath-sanity-") as where:
        subprocess.run([tool("ansible-galaxy"), "collection", "install", str(tarball), "-p", where, "--offline",
                        "--force"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        argv = [tool("ansible-test"), "sanity", "--python", SANITY_PYTHON, "--color", "no"]
        argv += [arg for test in tests for arg in ("--test", test)]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=Path(where, "ansible_collections", NAMESPACE, NAME), env=env, check=False)
        print("podpath: ansible-test sanity took %.0f s" % (time.monotonic() - started))
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sanity", action="store_true", help="also run ansible-test sanity on the built collection")
    parser.add_argument("--test", action="append", default=[], help="run only this sanity test (repeatable)")
    args = parser.parse_args(argv)
    try:
        tarball = build()
        return sanity(tarball, args.test) if args.sanity else 0
    except BuildError as exc:
        print("podpath: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
