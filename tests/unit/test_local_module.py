"""podpath.play.inprocess: the stand-in for AnsibleModule and the argument check of an in-process run.

The modules' own behaviour is tested through ansible-playbook (tests/integration); here
the pieces that replace Ansible's module runner: validation with AnsibleModule's
messages, exit_json/fail_json, run_command and get_bin_path.
"""
from __future__ import annotations

import shutil
import sys
import types

import pytest

from podpath.play import inprocess
from podpath.play.inprocess import LocalModule, ModuleExit


def fake_library(run_module, spec=None):
    return types.SimpleNamespace(
        ARGUMENT_SPEC=spec or dict(lab=dict(type="str", required=True),
                                   state=dict(type="str", choices=["present", "absent"], default="present"),
                                   timeout=dict(type="float", default=10)),
        run_module=run_module)


def test_validated_arguments_reach_the_module_with_defaults_and_types():
    seen = {}

    def run_module(module):
        seen.update(module.params)
        module.exit_json(changed=True)

    result = inprocess.run(fake_library(run_module), "podpath_x", {"lab": "lab1", "timeout": "2.5"})
    assert result["changed"] is True
    assert seen == {"lab": "lab1", "state": "present", "timeout": 2.5}


def test_the_module_gets_plain_values_as_from_json_not_ansibles_tagged_ones():
    from ansible._internal._datatag._tags import Origin

    origin = Origin(path="/lab/vars.yml", line_num=3)
    tagged = origin.tag({"lab": origin.tag("lab1"),
                         "links": origin.tag([origin.tag({"name": origin.tag("eth0"), "mtu": origin.tag(1500)})]),
                         "pair": ("a", "b")})
    assert type(tagged["lab"]) is not str, "the test's values should carry Ansible's tags"
    got = inprocess.plain(tagged)
    assert got == {"lab": "lab1", "links": [{"name": "eth0", "mtu": 1500}], "pair": ["a", "b"]}

    def types_in(value):
        yield type(value)
        children = [*value, *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
        for child in children:
            yield from types_in(child)

    assert set(types_in(got)) <= {dict, list, str, int}, set(types_in(got))


def test_an_unknown_argument_fails_with_ansiblemodules_message_and_the_module_does_not_run():
    ran = []
    result = inprocess.run(fake_library(ran.append), "podpath_x", {"lab": "a", "colour": "red"})
    assert result["failed"] is True
    assert result["msg"].startswith("Unsupported parameters for (podpath_x) module: colour.")
    assert ran == []


@pytest.mark.parametrize("args, words", [
    ({}, "missing required arguments: lab"),
    ({"lab": "a", "state": "gone"}, "value of state must be one of: present, absent, got: gone"),
    ({"lab": "a", "timeout": "soon"}, "timeout"),
])
def test_bad_arguments_fail_before_the_module_runs(args, words):
    ran = []
    result = inprocess.run(fake_library(ran.append), "podpath_x", args)
    assert result["failed"] is True and words in result["msg"]
    assert ran == []


def test_fail_json_gives_a_failed_result_with_the_message_and_extra_keys():
    def run_module(module):
        module.fail_json(msg="namespace x is not the lab's", started=["a"])

    result = inprocess.run(fake_library(run_module), "podpath_x", {"lab": "a"})
    assert result["failed"] is True
    assert result["msg"] == "namespace x is not the lab's"
    assert result["started"] == ["a"]
    assert result["invocation"]["module_args"]["lab"] == "a"


def test_exit_json_ends_the_module_there():
    after = []

    def run_module(module):
        module.exit_json(changed=False, applied=[])
        after.append("ran on")

    result = inprocess.run(fake_library(run_module), "podpath_x", {"lab": "a"})
    assert result["changed"] is False and result["applied"] == []
    assert after == []


def test_the_modules_except_exception_blocks_do_not_catch_the_exit():
    def run_module(module):
        try:
            module.exit_json(changed=True)
        except Exception:  # noqa: BLE001 - the point of the test
            module.fail_json(msg="caught")

    assert inprocess.run(fake_library(run_module), "podpath_x", {"lab": "a"}).get("failed") is not True


def test_a_module_that_returns_without_exit_json_is_a_failure():
    result = inprocess.run(fake_library(lambda module: None), "podpath_x", {"lab": "a"})
    assert result["failed"] is True and "without a result" in result["msg"]


def test_check_mode_and_diff_are_passed_on():
    flags = {}

    def run_module(module):
        flags.update(check=module.check_mode, diff=module._diff)
        module.exit_json()

    inprocess.run(fake_library(run_module), "podpath_x", {"lab": "a"}, check_mode=True, diff=True)
    assert flags == {"check": True, "diff": True}


def test_run_command_feeds_stdin_with_a_newline_unless_binary():
    module = LocalModule("x", {})
    assert module.run_command(["cat"], data="rules") == (0, "rules\n", "")
    assert module.run_command(["cat"], data="rules", binary_data=True) == (0, "rules", "")


def test_run_command_returns_the_exit_code_and_stderr():
    rc, out, err = LocalModule("x", {}).run_command(["sh", "-c", "echo no >&2; exit 3"])
    assert (rc, out, err) == (3, "", "no\n")


def test_run_command_with_check_rc_fails_the_module_with_stderr():
    with pytest.raises(ModuleExit) as done:
        LocalModule("x", {}).run_command(["sh", "-c", "echo refused >&2; exit 4"], check_rc=True)
    assert done.value.result["failed"] is True
    assert done.value.result["rc"] == 4 and done.value.result["msg"] == "refused"


def test_run_command_of_a_missing_program_is_rc_2_not_an_exception():
    rc, _, err = LocalModule("x", {}).run_command(["/nonexistent/podpath-tool"])
    assert rc == 2 and "podpath-tool" in err


def test_get_bin_path_looks_in_sbin_as_ansiblemodule_does(monkeypatch):
    if not shutil.which("ip", path="/sbin:/usr/sbin"):
        pytest.skip("ip (iproute2) is not installed in /sbin or /usr/sbin here")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert LocalModule("x", {}).get_bin_path("ip").endswith("/ip")
    assert LocalModule("x", {}).get_bin_path("podpath-no-such-tool") is None


def test_the_real_modules_load_with_their_argument_specs():
    for name in ("podpath_netns", "podpath_iptables", "podpath_containers"):
        library = inprocess.load_library(name)
        assert "lab" in library.ARGUMENT_SPEC and callable(library.run_module)


def test_a_controller_that_cannot_load_the_module_runs_it_the_usual_way(monkeypatch):
    from unittest import mock

    def cannot_load(name):
        raise OSError("no netlink on this controller")

    monkeypatch.setattr(inprocess, "load_library", cannot_load)
    action_class = inprocess.action_plugin("podpath_netns")  # loading the plugin does not fail
    local = mock.MagicMock()
    local.transport = "local"
    action = action_class(mock.MagicMock(async_val=0), local, mock.MagicMock(become=False), mock.MagicMock(),
                          mock.MagicMock(), mock.MagicMock())
    assert action.in_process({"ansible_python_interpreter": inprocess.sys.executable}) is False


@pytest.mark.parametrize("transport, become, async_val, interpreter, podpath_in_process, expected", [
    ("local", False, 0, "controller", True, True),
    ("ssh", False, 0, "controller", True, False),
    ("local", True, 0, "controller", True, False),
    ("local", False, 30, "controller", True, False),
    ("local", False, 0, "/usr/bin/python3-other", True, False),
    ("local", False, 0, "controller", "false", False),
])
def test_the_module_runs_in_process_only_where_that_changes_nothing_but_time(
        transport, become, async_val, interpreter, podpath_in_process, expected):
    from unittest import mock

    action_class = inprocess.action_plugin("podpath_netns")
    connection = mock.MagicMock()
    connection.transport = transport
    templar = mock.MagicMock()
    templar.template.side_effect = lambda value: value
    action = action_class(mock.MagicMock(async_val=async_val), connection, mock.MagicMock(become=become),
                          mock.MagicMock(), templar, mock.MagicMock())
    task_vars = {"ansible_python_interpreter": inprocess.sys.executable if interpreter == "controller" else interpreter,
                 "podpath_in_process": podpath_in_process}
    assert action.in_process(task_vars) is expected


def load_action_plugin(name: str):
    """plugins/action/NAME.py as Ansible's plugin loader imports it, a fresh copy each time."""
    import importlib.util

    path = inprocess.LIBRARY.parent / "plugins" / "action" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"podpath_test_action_{name}", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    return plugin


@pytest.mark.parametrize("name", inprocess.library_names())
def test_the_action_plugin_runs_the_module_in_process_where_podpath_is_importable(name):
    action = load_action_plugin(name).ActionModule
    assert hasattr(action, "in_process"), "the plugin is not podpath.play.inprocess's"


@pytest.mark.parametrize("name", inprocess.library_names())
def test_without_podpath_the_action_plugin_is_ansibles_normal_one(name, monkeypatch):
    from ansible.plugins.action.normal import ActionModule as NormalAction

    monkeypatch.setitem(sys.modules, "podpath.play.inprocess", None)  # what an import of it then raises: ImportError
    assert load_action_plugin(name).ActionModule is NormalAction
