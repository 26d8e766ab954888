"""A full disk under the store (issue 12, defect 6): every command says "no space left
on PATH" in one line, the state file stays as it was, and the next run after space is
freed converges by itself. The store lives on a small tmpfs of its own."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.exitcodes import EXIT_NO_SPACE
from tests.cli.common import by_name, pod, podstore, run_once, state_file, template, write
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths, temporary_store

pytestmark = pytest.mark.cli


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for this test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "fs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def full_store(small_fs: Path) -> Iterator[StorePaths]:
    with temporary_store(small_fs / "store", "vfs") as paths:
        yield paths


def _fill(fs: Path) -> Path:
    """Fill the filesystem to the last byte."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _says_no_space(stderr: str, fs: Path) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "no space left on" in line]
    assert lines, stderr
    assert str(fs) in lines[0], lines[0]


def test_a_full_disk_is_named_and_the_next_run_converges(
    full_store: StorePaths, small_fs: Path, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    # A fresh store on a full filesystem.
    filler = _fill(small_fs)
    done = run_once(full_store, manifests, "-o", "json", "--timeout", "3")
    assert done.returncode == EXIT_NO_SPACE, (done.returncode, done.stderr)
    _says_no_space(done.stderr, small_fs)
    filler.unlink()

    first = run_once(full_store, manifests, "-o", "json")
    assert first.returncode == 0, first.stderr
    saved = state_file(full_store).read_text()

    # An existing store: a change while the disk is full.
    write(manifests / "more.yaml", pod("more", refs.pause, template("app", refs.busybox)))
    filler = _fill(small_fs)
    done = run_once(full_store, manifests, "-o", "json", "--timeout", "3")
    assert done.returncode == EXIT_NO_SPACE, (done.returncode, done.stderr)
    _says_no_space(done.stderr, small_fs)
    objects = by_name(json.loads(done.stdout))
    assert objects["StoragePod/good"]["status"]["phase"] == "Ready"
    assert state_file(full_store).read_text() == saved
    listed = podstore(full_store, "ps", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    filler.unlink()

    again = run_once(full_store, manifests, "-o", "json")
    assert again.returncode == 0, again.stderr
    objects = by_name(json.loads(again.stdout))
    assert objects["StoragePod/more"]["status"]["phase"] == "Ready"
    assert objects["StorageContainer/more-app"]["status"]["phase"] == "Started"
