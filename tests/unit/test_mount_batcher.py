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
    assert list(batcher.batches) == [4]
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
    assert list(batcher.batches) == [1]


class Gated(Runtime):
    """The first ``start_many`` waits for the test; counts how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def start_many(self, ids: list[str], mounted: Any = None) -> dict[str, Any]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if not self.entered.is_set():
                self.entered.set()
                assert self.release.wait(5)
            return super().start_many(ids, mounted)
        finally:
            with self.lock:
                self.running -= 1


def started(
    batcher: MountBatcher, ids: list[str], results: dict[str, Any]
) -> list[threading.Thread]:
    def start(cid: str) -> None:
        try:
            results[cid] = batcher.start(cid)
        except BaseException as err:  # the test reads what each caller got
            results[cid] = err

    threads = [threading.Thread(target=start, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    return threads


def test_starts_asked_for_while_a_mount_runs_go_together_in_the_next_one() -> None:
    runtime = Gated()
    batcher = MountBatcher(runtime, window=0.0)  # type: ignore[arg-type]
    results: dict[str, Any] = {}
    first = started(batcher, ["a"], results)
    assert runtime.entered.wait(5)
    later = started(batcher, ["b", "c", "d"], results)
    while batcher.pending < 3:  # all three wait for the running mount
        threading.Event().wait(0.001)
    runtime.release.set()
    for t in first + later:
        t.join(5)

    assert runtime.calls == [["a"], ["b", "c", "d"]]
    assert list(batcher.batches) == [1, 3]
    assert runtime.most == 1  # one mount process at a time
    assert results == {c: f"/m/{c}" for c in "abcd"}


def test_a_leader_that_fails_fails_its_batch_and_the_next_start_still_runs() -> None:
    class Crashing(Runtime):
        def start_many(self, ids: list[str], mounted: Any = None) -> dict[str, Any]:
            self.calls.append(sorted(ids))
            if len(self.calls) == 1:
                raise RuntimeError("the runtime broke")
            return super().start_many(ids, mounted)

    runtime = Crashing()
    batcher = MountBatcher(runtime, window=0.0)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="the runtime broke"):
        batcher.start("x")
    assert batcher.start("y") == "/m/y"  # nobody is left waiting, nothing is stuck
    assert batcher.pending == 0
