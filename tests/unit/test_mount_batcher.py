"""Mounts asked for together by the agent's handler threads run as one ``start_many``."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.storage.errors import StorageError
from controller.sync.execute import MountBatcher


class Runtime:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def start_many(self, ids: list[str], mounted: Any = None) -> dict[str, Any]:
        self.calls.append(sorted(ids))
        return {i: StorageError(f"{i} is broken") if "bad" in i else f"/m/{i}" for i in ids}


def test_starts_asked_for_together_share_one_call_and_keep_their_own_results() -> None:
    runtime = Runtime()

    def gather(batcher: MountBatcher) -> None:  # the first start waits for all four
        while batcher.pending < 4:
            threading.Event().wait(0.001)

    batcher = MountBatcher(runtime, gather=gather)  # type: ignore[arg-type]
    results: dict[str, Any] = {}

    def start(cid: str) -> None:
        try:
            results[cid] = batcher.start(cid)
        except StorageError as err:
            results[cid] = err

    threads = [threading.Thread(target=start, args=(c,)) for c in ("a", "b", "bad", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert runtime.calls == [["a", "b", "bad", "c"]]
    assert batcher.batches == [4]
    assert results["a"] == "/m/a"
    assert results["c"] == "/m/c"
    assert isinstance(results["bad"], StorageError)


def test_a_start_alone_is_a_batch_of_one_and_a_missing_answer_is_an_error() -> None:
    class Silent(Runtime):
        def start_many(self, ids: list[str], mounted: Any = None) -> dict[str, Any]:
            self.calls.append(ids)
            return {}

    batcher = MountBatcher(Silent(), window=0.0)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match="was not started"):
        batcher.start("x")
    assert batcher.batches == [1]
