"""A store another process keeps locked (issue 12, defect 7): every command says so,
naming the process and the lock file, instead of a bare timeout; and recovers once
the lock is released."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.exitcodes import EXIT_STORE_LOCKED
from tests.cli.common import (
    ids,
    pod,
    podstore,
    run_once,
    start_watch,
    stop_watch,
    template,
    write,
)
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cli

HOLD = """
import fcntl, sys
handle = open(sys.argv[1], "r+")
fcntl.lockf(handle, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def _hold(path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("lock", ["containers", "layers"])
def test_a_store_locked_by_another_process_is_named_and_released_later(
    store_root: StorePaths, manifests: Path, refs: Refs, lock: str
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    first = run_once(store_root, manifests)
    assert first.returncode == 0, first.stderr
    (path,) = Path(store_root.root).glob(f"*-{lock}/{lock}.lock")
    holder = _hold(path)
    proc = next(holder)
    try:
        for command in (["ps"], ["run", "--once", "-f", str(manifests), "--node-name", "testnode"]):
            done = podstore(store_root, command[0], "--command-timeout", "2", *command[1:])
            assert done.returncode == EXIT_STORE_LOCKED, (done.returncode, done.stderr)
            assert "Traceback" not in done.stderr, done.stderr
            said = [line for line in done.stderr.splitlines() if "locked by another" in line]
            assert said, done.stderr
            assert f"pid {proc.pid}" in said[0]
            assert str(path) in said[0]
            assert "timed out" not in said[0]
    finally:
        holder.close()
    again = podstore(store_root, "ps", "--command-timeout", "2")
    assert again.returncode == 0, again.stderr


def test_ps_on_a_locked_store_says_so_in_one_line_and_exits_75(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause))
    assert run_once(store_root, manifests).returncode == 0
    (path,) = Path(store_root.root).glob("*-containers/containers.lock")
    holder = _hold(path)
    proc = next(holder)
    try:
        done = podstore(store_root, "ps", "--command-timeout", "2")
    finally:
        holder.close()
    assert done.returncode == EXIT_STORE_LOCKED
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"podstore ps: the store is locked by another process: pid {proc.pid}")
    assert str(path) in line


def test_a_second_run_on_a_store_another_run_keeps_exits_75(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause))
    first = start_watch(store_root, manifests)
    try:
        wait_for("the first run to hold the state", lambda: "good" in str(ids(store_root)))
        done = run_once(store_root, manifests)
    finally:
        stop_watch(first)
    assert done.returncode == EXIT_STORE_LOCKED, done.stderr
    (line,) = done.stderr.splitlines()
    assert f"another `podstore run` (pid {first.pid}) is keeping this store" in line
    assert "Traceback" not in done.stderr
