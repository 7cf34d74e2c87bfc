"""The lab's folder and ownership rules, shared with the Ansible modules.

The modules carry module_utils/podpath_lab.py to the managed host; the CLI, the plan
and the tests load that same file from the checkout, so the rules (lab names, paths,
pidfiles) are written once.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE_UTILS = Path(__file__).resolve().parents[2] / "module_utils"


def load_file(key: str, path: Path):
    """Import the Python file PATH as module KEY, once per process."""
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[key]
            raise
    return sys.modules[key]


def load_module_util(name: str):
    """Import module_utils/NAME.py from the checkout under the name the modules import it by
    (ansible.module_utils.NAME), after podpath_lab, which the others import."""
    load_file("ansible.module_utils.podpath_lab", MODULE_UTILS / "podpath_lab.py")
    return load_file("ansible.module_utils." + name, MODULE_UTILS / f"{name}.py")


lab = load_module_util("podpath_lab")

RUN_ROOT = lab.RUN_ROOT
# The host-wide folders beside the labs' own (a lab is never named with a leading dot).
LOCKS = Path(RUN_ROOT, ".locks")  # one flock file per lab: one command changes a lab at a time
RUNS = Path(RUN_ROOT, ".runs")  # ansible-runner's folders (events, stdout) per lab; `down` removes the lab's
CACHE = Path(RUN_ROOT, ".cache")
check_lab_name = lab.check_lab_name
lab_dir = lab.lab_dir
holder_pidfile = lab.holder_pidfile
read_pid = lab.read_pid
alive = lab.alive
