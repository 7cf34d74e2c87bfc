"""The lab's folder and ownership rules, shared with the Ansible modules.

The modules carry module_utils/podpath_lab.py to the managed host; the CLI, the plan
and the tests load that same file from the checkout, so the rules (lab names, paths,
pidfiles) are written once.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MODULE_UTILS = Path(__file__).resolve().parent.parent / "module_utils"


def load_module_util(name: str):
    """Import module_utils/NAME.py from the checkout (the modules get it from Ansible)."""
    key = f"podpath_module_utils_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, MODULE_UTILS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


lab = load_module_util("podpath_lab")

RUN_ROOT = lab.RUN_ROOT
check_lab_name = lab.check_lab_name
lab_dir = lab.lab_dir
holder_pidfile = lab.holder_pidfile
read_pid = lab.read_pid
alive = lab.alive
