"""podpath.sandbox without namespaces: the subordinate ID ranges and the maps made from them,
the words for what a kernel or distribution refuses, the pidfile that is read only when it is
a plain file the kernel agrees with, and the argv and environment a verb runs with in a
sandbox. tests/integration/test_rootless.py runs real sandboxes."""
from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path

import pytest

from podpath import cli, sandbox


def someone(home) -> pwd.struct_passwd:
    return pwd.struct_passwd(("stu1", "x", 1234, 1234, "", str(home), "/bin/sh"))


def test_subordinate_ranges_are_the_lines_of_the_user_by_name_or_uid(tmp_path):
    subuid = tmp_path / "subuid"
    subuid.write_text("other:100000:65536\nstu1:165536:65536\n1234:300000:10\nstu1:bad:1\nstu1:400000:0\n\nstu1\n")
    assert sandbox.subordinate_ranges(someone(tmp_path), str(subuid)) == [(165536, 65536), (300000, 10)]
    assert sandbox.subordinate_ranges(someone(tmp_path), str(tmp_path / "missing")) == []


def test_the_map_puts_the_user_at_0_and_the_ranges_after_it():
    assert sandbox.map_args(1234, [(165536, 65536)]) == ["0", "1234", "1", "1", "165536", "65536"]
    assert sandbox.map_args(7, [(100, 10), (500, 5)]) == ["0", "7", "1", "1", "100", "10", "11", "500", "5"]


@pytest.mark.parametrize("settings, code, words", [
    ({"kernel.unprivileged_userns_clone": "0"}, errno.EPERM, "sysctl -w kernel.unprivileged_userns_clone=1"),
    ({"user.max_user_namespaces": "0"}, errno.ENOSPC, "sysctl -w user.max_user_namespaces=15000"),
    ({"user.max_user_namespaces": "5"}, errno.ENOSPC, "limit of user namespaces is reached"),
    ({}, errno.EPERM, "seccomp"),
], ids=["debian", "rhel", "limit", "other"])
def test_a_refused_user_namespace_names_the_setting(monkeypatch, settings, code, words):
    monkeypatch.setattr(sandbox, "_sysctl", settings.get)
    assert words in sandbox.why_no_user_namespace(code)


def test_ubuntus_apparmor_restriction_is_named_with_both_ways(monkeypatch):
    monkeypatch.setattr(sandbox, "_sysctl", {"kernel.apparmor_restrict_unprivileged_userns": "1"}.get)
    said = sandbox.why_no_capability("mounting a tmpfs", errno.EPERM)
    assert "kernel.apparmor_restrict_unprivileged_userns" in said and "docs/rootless.md" in said
    monkeypatch.setattr(sandbox, "_sysctl", {}.get)
    assert "apparmor" not in sandbox.why_no_capability("mounting a tmpfs", errno.EPERM).lower()


def test_a_pidfile_that_is_a_fifo_a_link_or_a_stranger_names_no_sandbox(tmp_path, monkeypatch):
    who = someone(tmp_path)
    folder = sandbox.state_dir(who)
    folder.mkdir(parents=True)
    monkeypatch.setattr(sandbox, "sandboxes", lambda uid=None: [])
    path = sandbox.pidfile(who)
    os.mkfifo(path)  # a reader that opened it plainly would wait forever
    assert sandbox.find(who) is None
    path.unlink()
    target = tmp_path / "elsewhere"
    target.write_text(f"{os.getpid()} {sandbox.start_time(os.getpid())}\n")
    path.symlink_to(target)
    assert sandbox.find(who) is None
    path.unlink()
    path.write_text(f"{os.getpid()} {sandbox.start_time(os.getpid())}\n")  # a live process, but no sandbox
    assert sandbox.find(who) is None


def test_this_process_is_no_sandbox_and_not_in_one():
    assert not sandbox.is_sandbox(os.getpid(), os.getuid())
    assert not sandbox.inside()


def test_a_state_folder_others_can_write_is_refused(tmp_path):
    who = pwd.getpwuid(os.getuid())
    folder = tmp_path / "state"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    with pytest.raises(sandbox.SandboxError, match="chmod go-w"):
        sandbox._safe_folder(folder, who.pw_uid)
    os.chmod(folder, 0o700)
    sandbox._safe_folder(folder, who.pw_uid)
    with pytest.raises(sandbox.SandboxError, match="uid"):
        sandbox._safe_folder(folder, who.pw_uid + 1)


def test_the_sandbox_environment_has_the_sbin_folders_and_the_users_home(monkeypatch):
    env = sandbox.sandbox_env(pwd.getpwuid(os.getuid()), {"PATH": "/usr/bin:/bin", "HOME": "/x"})
    assert env["PATH"].split(":")[:2] == ["/usr/bin", "/bin"] and "/usr/sbin" in env["PATH"].split(":")
    assert env["HOME"] == "/x"  # the caller's own sandbox: their environment as it is
    other = pwd.struct_passwd(("stu1", "x", os.getuid() + 1, 1, "", "/home/stu1", "/bin/sh"))
    env = sandbox.sandbox_env(other, {"PATH": "/usr/bin", "HOME": "/root", "API_TOKEN": "s3cret", "PODPATH_LAB": "x"})
    assert env["HOME"] == "/home/stu1" and env["USER"] == "stu1" and env[sandbox.USER_ENV] == "stu1"
    assert "API_TOKEN" not in env and env["PODPATH_LAB"] == "x", "root's environment reaches another user"


def test_user_is_left_out_of_what_runs_in_the_sandbox():
    assert cli.user_argv(["down", "--user", "stu1", "--lab", "x"]) == ["down", "--lab", "x"]
    assert cli.user_argv(["status", "--user=stu1"]) == ["status"]
    assert cli.user_argv(["shell", "--user", "stu1", "--", "id", "--user", "x"]) == ["shell", "--", "id", "--user", "x"]


def test_an_unknown_user_is_named():
    with pytest.raises(sandbox.SandboxError, match="no user 'no-such-user-here'"):
        sandbox.account("no-such-user-here")


def test_a_user_may_not_name_another_user(monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cli.os, "getuid", lambda: 1000)
    other = next(p.pw_name for p in pwd.getpwall() if p.pw_uid not in (0, 1000))
    assert cli.main(["status", "--user", other, "--lab", "lab"]) == cli.EXIT_MISSING
    assert f"only root may work on the labs of user {other}" in capsys.readouterr().err


def test_a_user_without_a_sandbox_is_told_how_to_build_a_lab(monkeypatch, capsys):
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(cli.os, "getuid", lambda: 1000)
    me = pwd.struct_passwd(("stu1", "x", 1000, 1000, "", "/nonexistent", "/bin/sh"))
    monkeypatch.setattr(sandbox, "account", lambda user=None: me)
    monkeypatch.setattr(sandbox, "find", lambda who: None)
    monkeypatch.setattr(sandbox, "ensure", lambda who: pytest.fail("only up makes a sandbox"))
    assert cli.main(["labs"]) == cli.EXIT_OK
    assert "no labs of yours on this host" in capsys.readouterr().out
    assert cli.main(["status", "--lab", "lab"]) == cli.EXIT_USAGE
    assert "stu1 has no lab on this host" in capsys.readouterr().err


@pytest.mark.parametrize("ranges, words", [([], "usermod --add-subuids"), ([(100000, 1000)], "needs 65534 at least")],
                         ids=["none", "too-few"])
def test_subordinate_ids_the_lab_cannot_run_with_are_refused_before_anything(tmp_path, monkeypatch, ranges, words):
    me = pwd.getpwuid(os.getuid())
    who = pwd.struct_passwd((me.pw_name, "x", me.pw_uid, me.pw_gid, "", str(tmp_path), "/bin/sh"))
    monkeypatch.setattr(sandbox, "subordinate_ranges", lambda _who, _path: list(ranges))
    monkeypatch.setattr(sandbox, "programs", lambda: ((Path("pause.c"), Path("/bin/true")),))
    monkeypatch.setattr(sandbox.os, "fork", lambda: pytest.fail("a sandbox was started"))
    with pytest.raises(sandbox.SandboxError, match=words):
        sandbox.create(who)
    assert not sandbox.pidfile(who).exists()


def test_a_program_of_the_builder_that_is_not_built_is_named_before_anything(tmp_path, monkeypatch):
    """Each program pause_build builds is checked (podpath-ingress too, which a checkout updated
    since root's last `make pause` lacks): the user is told which one and that root builds it."""
    me = pwd.getpwuid(os.getuid())
    who = pwd.struct_passwd((me.pw_name, "x", me.pw_uid, me.pw_gid, "", str(tmp_path), "/bin/sh"))
    missing = tmp_path / "podpath-ingress"
    monkeypatch.setattr(sandbox, "programs", lambda: ((None, Path("/bin/true")), (None, missing)))
    monkeypatch.setattr(sandbox, "subordinate_ranges", lambda _who, _path: pytest.fail("went past the programs"))
    monkeypatch.setattr(sandbox.os, "fork", lambda: pytest.fail("a sandbox was started"))
    with pytest.raises(sandbox.SandboxError, match=f"{missing} is not built .*make pause"):
        sandbox.create(who)
    assert not sandbox.pidfile(who).exists()
