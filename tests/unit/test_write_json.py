"""write_json_atomic: a reader never sees half a file; durable writes reach the disk first."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controller.storage import runtime as runtime_module
from controller.storage.errors import StorageError
from controller.storage.runtime import write_json_atomic


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        seen.append(fd)
        real(fd)

    monkeypatch.setattr(runtime_module.os, "fsync", counting)
    return seen


@pytest.mark.parametrize(
    ("durable", "expected_fsyncs"),
    [
        pytest.param(True, 1, id="durable-waits-for-the-disk"),
        pytest.param(False, 0, id="volatile-does-not"),
    ],
)
def test_a_write_replaces_the_file_whole_and_syncs_only_when_durable(
    tmp_path: Path, fsyncs: list[int], durable: bool, expected_fsyncs: int
) -> None:
    target = tmp_path / "config.json"
    target.write_text('{"old": true}')
    write_json_atomic(str(target), {"b": 1, "a": [1, 2]}, durable=durable)
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert len(fsyncs) == expected_fsyncs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # no temporary left


def test_writes_are_durable_unless_asked_otherwise(tmp_path: Path, fsyncs: list[int]) -> None:
    write_json_atomic(str(tmp_path / "state.json"), {})
    assert len(fsyncs) == 1


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "volatile"])
def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, durable: bool
) -> None:
    target = tmp_path / "config.json"
    target.write_text('{"old": true}')
    with pytest.raises(TypeError):
        write_json_atomic(str(target), {"bad": object()}, durable=durable)
    assert json.loads(target.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_a_folder_that_cannot_be_written_is_a_storage_error_naming_the_file(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "gone" / "config.json"
    with pytest.raises(StorageError, match=r"cannot write .*gone/config\.json"):
        write_json_atomic(str(missing), {}, durable=False)
