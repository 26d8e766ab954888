"""The one process runner: redaction, timeouts, missing tools, observers.

These run tiny standard programs (sleep, sh, true, false), never the storage
tools.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.storage.command import (
    CommandEvent,
    Completed,
    Runner,
    add_observer,
    redact,
    remove_observer,
)
from controller.storage.errors import (
    CommandError,
    CommandTimeout,
    StorageError,
    StoreLocked,
    ToolMissing,
)

# -- redaction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["skopeo", "copy", "--src-creds", "user:pw", "a", "b"],
            ["skopeo", "copy", "--src-creds", "<redacted>", "a", "b"],
            id="separate-value",
        ),
        pytest.param(
            ["skopeo", "copy", "--dest-creds=user:pw", "a"],
            ["skopeo", "copy", "--dest-creds=<redacted>", "a"],
            id="joined-value",
        ),
        pytest.param(
            ["skopeo", "inspect", "--creds", "u:p", "--password", "pw", "--registry-token", "t"],
            [
                "skopeo",
                "inspect",
                "--creds",
                "<redacted>",
                "--password",
                "<redacted>",
                "--registry-token",
                "<redacted>",
            ],
            id="several",
        ),
        pytest.param(["skopeo", "--creds"], ["skopeo", "--creds"], id="option-without-value"),
        pytest.param(
            ["containers-storage", "--graph", "/g", "create-container", "--metadata", "{}"],
            ["containers-storage", "--graph", "/g", "create-container", "--metadata", "{}"],
            id="nothing-secret",
        ),
        pytest.param(
            ["skopeo", "copy", "--src-authfile", "/run/auth.json"],
            ["skopeo", "copy", "--src-authfile", "/run/auth.json"],
            id="an-auth-file-path-is-not-secret",
        ),
    ],
)
def test_redact_hides_the_values_of_secret_options(argv, expected):
    assert redact(argv) == expected


@pytest.mark.parametrize(
    "option",
    [
        pytest.param("--src-password", id="src-password"),
        pytest.param("--dest-password", id="dest-password"),
        pytest.param("--src-registry-token", id="src-registry-token"),
        pytest.param("--dest-registry-token", id="dest-registry-token"),
    ],
)
def test_redact_hides_skopeo_copys_password_and_token_options(option):
    assert "s3cret" not in " ".join(redact(["skopeo", "copy", option, "s3cret", "a", "b"]))


def test_redact_leaves_the_argument_list_it_was_given_unchanged():
    argv = ["skopeo", "--creds", "u:p"]
    redact(argv)
    assert argv == ["skopeo", "--creds", "u:p"]


def test_the_debug_log_line_of_a_command_is_redacted(caplog):
    caplog.set_level(logging.DEBUG, logger="controller.storage.command")
    Runner("true", prefix=["--creds", "user:s3cret"]).run("copy")
    assert "run: true --creds <redacted> copy" in caplog.text
    assert "s3cret" not in caplog.text


# -- running ---------------------------------------------------------------------------


def test_a_command_runs_as_tool_prefix_verb_args_and_returns_what_it_printed():
    done = Runner("sh", prefix=["-c"]).run('echo "$0|$1"; echo err >&2', "x", "y z")
    assert isinstance(done, Completed)
    assert done.argv == ("sh", "-c", 'echo "$0|$1"; echo err >&2', "x", "y z")
    assert done.returncode == 0
    assert done.stdout == "x|y z\n"
    assert done.stderr == "err\n"
    assert done.seconds >= 0


def test_arguments_reach_the_tool_verbatim_without_a_shell():
    done = Runner("printf").run("%s\n", "$(touch /nonexistent)", "; rm -rf /", "*")
    assert done.stdout.splitlines() == ["$(touch /nonexistent)", "; rm -rf /", "*"]


def test_the_child_gets_the_runners_variables_besides_podstores_environment(monkeypatch):
    monkeypatch.setenv("PODSTORE_TEST_KEPT", "kept")
    asked: list[int] = []

    def env() -> dict[str, str]:
        asked.append(1)
        return {"PODSTORE_TEST_ADDED": "added"}

    runner = Runner("sh", prefix=["-c"], env=env)
    done = runner.run('echo "$PODSTORE_TEST_ADDED|$PODSTORE_TEST_KEPT"')
    assert done.stdout == "added|kept\n"
    runner.run("true")
    assert len(asked) == 2  # asked again for every command


def test_podstores_own_environment_wins_over_the_runners_variables(monkeypatch):
    """An operator who sets GOGC for the agent keeps it for the agent's commands."""
    monkeypatch.setenv("PODSTORE_TEST_SET", "operator")
    runner = Runner("sh", prefix=["-c"], env=lambda: {"PODSTORE_TEST_SET": "runner"})
    assert runner.run('echo "$PODSTORE_TEST_SET"').stdout == "operator\n"


def test_without_variables_the_child_inherits_podstores_environment(monkeypatch):
    monkeypatch.setenv("PODSTORE_TEST_KEPT", "kept")
    assert Runner("sh", prefix=["-c"], env=dict).run('echo "$PODSTORE_TEST_KEPT"').stdout == (
        "kept\n"
    )


def test_the_child_gets_no_standard_input():
    assert Runner("cat").run("-").stdout == ""


def test_a_failing_command_raises_a_command_error_with_its_stderr():
    with pytest.raises(CommandError) as caught:
        Runner("sh", prefix=["-c"]).run("echo 'image not known' >&2; exit 3")
    err = caught.value
    assert err.tool == "sh"
    assert err.returncode == 3
    assert err.stderr == "image not known"
    assert "exited 3: image not known" in str(err)
    assert isinstance(err, StorageError)


def test_a_failing_command_without_stderr_quotes_its_stdout():
    with pytest.raises(CommandError, match="exited 1: on stdout"):
        Runner("sh", prefix=["-c"]).run("echo on stdout; exit 1")


def test_a_failing_command_with_check_false_returns_its_status():
    done = Runner("false").run("ignored", check=False)
    assert done.returncode == 1


def test_a_command_past_its_timeout_raises_command_timeout_quickly():
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"killed after 0\.2s") as caught:
        Runner("sleep", timeout=0.2).run("5")
    assert time.monotonic() - started < 3
    assert caught.value.returncode is None
    assert "timed out" in str(caught.value)


def test_the_timeout_of_one_call_overrides_the_runners():
    with pytest.raises(CommandTimeout):
        Runner("sleep", timeout=60).run("5", timeout=0.2)


def test_the_child_is_gone_after_a_timeout(tmp_path):
    pidfile = tmp_path / "pid"
    # exec: the pid written is the sleeping process itself.
    script = f'echo $$ > "{pidfile}"; exec sleep 5'
    with pytest.raises(CommandTimeout):
        Runner("sh", prefix=["-c"], timeout=0.5).run(script)
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_missing_tool_raises_tool_missing_naming_the_tool():
    with pytest.raises(ToolMissing, match="podstore-no-such-tool"):
        Runner("podstore-no-such-tool").run("version")


def test_tool_missing_is_a_storage_error():
    assert issubclass(ToolMissing, StorageError)


# -- observers ----------------------------------------------------------------------------


@pytest.fixture
def events():
    seen: list[CommandEvent] = []
    add_observer(seen.append)
    yield seen
    remove_observer(seen.append)


def test_observers_are_told_about_every_command(events):
    Runner("true").run("first")
    Runner("false").run("second", check=False)
    assert [(e.tool, e.verb, e.ok) for e in events] == [
        ("true", "first", True),
        ("false", "second", False),
    ]
    assert all(e.seconds >= 0 for e in events)


def test_observers_are_told_about_a_failure_that_raises(events):
    with pytest.raises(CommandError):
        Runner("false").run("x")
    assert [(e.verb, e.ok) for e in events] == [("x", False)]


def test_observers_are_told_about_a_timeout(events):
    with pytest.raises(CommandTimeout):
        Runner("sleep", timeout=0.1).run("5")
    assert [(e.tool, e.verb, e.ok) for e in events] == [("sleep", "5", False)]
    assert events[0].seconds >= 0.1


def test_an_observer_added_twice_is_told_once(events):
    add_observer(events.append)
    Runner("true").run("x")
    assert len(events) == 1


def test_a_removed_observer_is_told_nothing():
    seen: list[CommandEvent] = []
    add_observer(seen.append)
    remove_observer(seen.append)
    remove_observer(seen.append)  # removing twice is harmless
    Runner("true").run("x")
    assert seen == []


def test_an_observer_that_raises_does_not_break_the_command(events, caplog):
    def broken(event: CommandEvent) -> None:
        raise RuntimeError("metrics are down")

    add_observer(broken)
    try:
        done = Runner("true").run("x")
    finally:
        remove_observer(broken)
    assert done.returncode == 0
    assert len(events) == 1
    assert "command observer failed" in caplog.text


def test_a_command_waiting_for_a_lock_another_process_holds_names_it(tmp_path: Path) -> None:
    """Issue 12, defect 7: not 'timed out', but who holds which lock."""
    lock = tmp_path / "layers.lock"
    lock.write_text("")
    with open(lock, "r+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        grab = f"import fcntl; fcntl.lockf(open({str(lock)!r}, 'r+'), fcntl.LOCK_EX)"
        runner = Runner(sys.executable, timeout=60, lock_wait=0.5)
        with pytest.raises(StoreLocked) as caught:
            runner.run("-c", grab)
    message = str(caught.value)
    assert message.startswith(f"the store is locked by another process: pid {os.getpid()}")
    assert str(lock) in message
    assert caught.value.reason == "StoreLocked"
    assert subprocess.run([sys.executable, "-c", grab], check=False, timeout=30).returncode == 0


def test_a_failure_out_of_space_names_the_full_filesystem(tmp_path: Path) -> None:
    """Issue 12, defect 6: the tool's own message names the path; its mount point is told."""
    from controller.storage.command import full_filesystem

    said = "write /proc/self/x/y: no space left on device"
    assert full_filesystem(said, ()) == "/proc"
    assert full_filesystem("exited for another reason", (str(tmp_path),)) is None
    runner = Runner("sh", space_paths=("/proc",))  # /proc has no free space at all
    with pytest.raises(StorageError) as caught:
        runner.run("-c", "exit 1")
    assert str(caught.value).startswith("no space left on /proc (sh -c failed)")
    assert caught.value.reason == "NoSpace"
