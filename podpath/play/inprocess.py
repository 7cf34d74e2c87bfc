"""podpath's modules run inside ansible-playbook when the managed host is Ansible's control node.

The netns lab is managed on localhost with the local connection and the Python that runs
ansible-playbook. Run the usual way, each task of podpath_netns, podpath_iptables or
podpath_containers starts a new Python, unpacks the module and imports
ansible.module_utils.basic and pyroute2 again: 0.5 to 1 s a task, most of a warm
`podpath up`. In that one case the action plugins in plugins/action/ call the same
module code, `run_module()` of library/<name>.py, on the control node instead:

- the module file and its module_utils are imported once, when the strategy first loads
  the action plugin in ansible-playbook's main process; every task's worker process is a
  fork of it and starts with them imported;
- the task's arguments are checked against the module's ARGUMENT_SPEC by the same
  validator AnsibleModule uses, so bad input fails with the same message;
- `LocalModule` gives the module what it uses of AnsibleModule (params, check_mode,
  _diff, exit_json, fail_json, run_command, get_bin_path), and the result is the dict
  the module would have printed.

Any other case runs the module the usual way: another connection (the cluster lab's VMs),
become, async, another interpreter, or `podpath_in_process: false` (what the tests use to
run both ways).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

from podpath.model.labdir import MODULE_UTILS, load_file, load_module_util
from podpath.play.tether import tether_worker

LIBRARY = MODULE_UTILS.parent / "library"
# AnsibleModule.get_bin_path also looks in the sbin folders, which a user's PATH may lack
SBIN = ("/sbin", "/usr/sbin", "/usr/local/sbin")


class ModuleExit(BaseException):
    """exit_json or fail_json was called. A BaseException, as SystemExit is for a module
    run the usual way, so the module's own `except Exception` blocks do not catch it."""

    def __init__(self, result: dict):
        super().__init__(result.get("msg", ""))
        self.result = result


class LocalModule:
    """The part of AnsibleModule the podpath modules use, for a run on the control node."""

    def __init__(self, name: str, params: dict, check_mode: bool = False, diff: bool = False):
        self._name = name
        self.params = params
        self.check_mode = check_mode
        self._diff = diff

    def _finish(self, result: dict) -> dict:
        result.setdefault("invocation", {"module_args": self.params})
        return result

    def exit_json(self, **result):
        result.setdefault("changed", False)
        raise ModuleExit(self._finish(result))

    def fail_json(self, msg, **result):
        result.update(failed=True, msg=str(msg))
        raise ModuleExit(self._finish(result))

    def get_bin_path(self, name: str, required: bool = False):
        path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
        found = shutil.which(name, path=path)
        if required and not found:
            self.fail_json(msg="Failed to find required executable %s in paths: %s" % (name, path))
        return found

    def run_command(self, args, check_rc: bool = False, data=None, binary_data: bool = False):
        """Run ARGS (a list, no shell); DATA goes to stdin, with a newline unless BINARY_DATA."""
        if data is not None and not binary_data:
            data = data + "\n"
        try:
            done = subprocess.run(list(args), input=data.encode() if isinstance(data, str) else data,
                                  capture_output=True, check=False)
        except OSError as exc:
            if check_rc:
                self.fail_json(msg=str(exc), cmd=list(args), rc=2)
            return 2, "", str(exc)
        out = done.stdout.decode(errors="surrogateescape")
        err = done.stderr.decode(errors="surrogateescape")
        if check_rc and done.returncode != 0:
            self.fail_json(msg=err.strip() or out.strip(), cmd=list(args), rc=done.returncode, stdout=out, stderr=err)
        return done.returncode, out, err


def library_names() -> list[str]:
    """The project's modules: library/podpath_*.py."""
    return sorted(path.stem for path in LIBRARY.glob("podpath_*.py"))


def load_library(name: str):
    """Import library/NAME.py as Ansible would ship it: its `ansible.module_utils.podpath_*`
    imports resolve to the files of module_utils/."""
    for util in sorted(MODULE_UTILS.glob("podpath_*.py")):
        load_module_util(util.stem)
    return load_file("podpath_inprocess_" + name, LIBRARY / f"{name}.py")


def plain(value):
    """VALUE as a module run the usual way receives it: its arguments come as JSON, so
    plain dicts, lists, str, int, float, bool and None, without the tags Ansible's
    templating puts on them. Copying tagged values costs about 100 times more (the
    validator deep-copies its input): 0.8 s for the arguments of 500 pods."""
    if isinstance(value, str):
        return str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        return {plain(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def run(library, name: str, args: dict, check_mode: bool = False, diff: bool = False) -> dict:
    """Validate ARGS as AnsibleModule does, run LIBRARY's run_module, return its result."""
    from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
    from ansible.module_utils.errors import UnsupportedError

    validation = ModuleArgumentSpecValidator(library.ARGUMENT_SPEC).validate(plain(args))
    if validation.error_messages:
        msg = validation.errors.msg
        if isinstance(validation.errors[0], UnsupportedError):
            msg = "Unsupported parameters for (%s) module: %s" % (name, msg)
        return {"failed": True, "msg": msg, "invocation": {"module_args": validation.validated_parameters}}
    try:
        library.run_module(LocalModule(name, validation.validated_parameters, check_mode, diff))
    except ModuleExit as done:
        return done.result
    return {"failed": True, "msg": "module %s returned without a result" % name}


def action_plugin(name: str):
    """The ActionModule class of plugins/action/NAME.py."""
    from ansible.module_utils.parsing.convert_bool import boolean
    from ansible.plugins.action import ActionBase

    try:
        library = load_library(name)  # here, in ansible-playbook's main process: the workers inherit it
    except Exception:  # noqa: BLE001 - any control node that cannot load it (no pyroute2, not Linux) runs it as usual
        library = None  # the cluster lab's laptop may be one: its tasks run on the VMs anyway

    class ActionModule(ActionBase):
        _supports_check_mode = True
        _supports_async = True

        def in_process(self, task_vars: dict) -> bool:
            """The task would run the module on the control node, as the same user, with the
            control node's own Python: then running it in-process changes nothing but the time."""
            if library is None or not boolean(task_vars.get("podpath_in_process", True), strict=False):
                return False
            if self._connection.transport not in ("local", "ansible.builtin.local"):
                return False
            if self._play_context.become or self._task.async_val:
                return False
            interpreter = self._templar.template(task_vars.get("ansible_python_interpreter", ""))
            return bool(interpreter) and os.path.abspath(str(interpreter)) == os.path.abspath(sys.executable)

        def run(self, tmp=None, task_vars=None):
            tether_worker()  # a worker of a play the CLI started ends with that play
            task_vars = task_vars or {}
            result = super().run(tmp, task_vars)
            del tmp  # not used
            if self.in_process(task_vars):
                result.update(run(library, name, self._task.args, bool(self._task.check_mode),
                                  bool(self._task.diff)))
            else:
                result.update(self._execute_module(module_name=self._task.action, task_vars=task_vars,
                                                   wrap_async=self._task.async_val))
            return result

    ActionModule.__doc__ = "Runs %s in-process on the control node where that is the same as running it." % name
    return ActionModule
