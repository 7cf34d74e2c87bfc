"""The lab's folder and ownership rules, shared with the Ansible modules.

The modules carry module_utils/podpath_lab.py to the managed host; the CLI, the plan
and the tests load that same file from the checkout, so the rules (lab names, paths,
pidfiles) are written once.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "module_utils" / "podpath_lab.py"
_spec = importlib.util.spec_from_file_location("podpath_module_utils_lab", _PATH)
lab = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = lab
_spec.loader.exec_module(lab)

RUN_ROOT = lab.RUN_ROOT
check_lab_name = lab.check_lab_name
lab_dir = lab.lab_dir
holder_pidfile = lab.holder_pidfile
read_pid = lab.read_pid
alive = lab.alive
