"""The quiet queue that layer names and Events wait in, and the executor's quiet moments.

The layer namer's and the Event recorder's own tests cover what they do with their
items; these cover the queue they share and the executor's call when it goes quiet.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.actions import Emit
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import Context, Object
from controller.sync.background import LULL, QuietQueue, quiet_wait
from controller.sync.execute import Executor, LogEvents
from controller.sync.view import NodeView
from tests.support.waiting import wait_for


class Kept(QuietQueue[str]):
    def __init__(self, **options: Any) -> None:
        super().__init__(name="test-quiet", **options)
        self.given: list[str] = []

    def hand(self, *items: str) -> None:
        self._put(items)

    def give(self, item: str) -> None:
        self.given.append(item)


@pytest.mark.parametrize(
    ("poll", "wait"),
    [
        pytest.param(0.1, 0.1, id="looks-again-after-poll"),
        pytest.param(60.0, 0.5, id="never-past-max-delay"),
    ],
)
def test_a_busy_queue_looks_again_after_its_poll_or_at_its_max_delay(poll, wait):
    got = quiet_wait(
        now=10.5, asked=10.0, idle=False, closing=False, delay=0.05, max_delay=1.0, poll=poll
    )
    assert got == pytest.approx(wait)


def test_a_waiting_item_is_given_once_the_reconciles_have_ended():
    busy = threading.Event()
    busy.set()
    queue = Kept(idle=lambda: not busy.is_set(), delay=0.0, max_delay=600.0)
    queue.hand("a")
    wait_for("the thread to wait for a quiet moment", lambda: queue._thread is not None)
    assert queue.given == []
    busy.clear()
    wait_for("the item", lambda: queue.given == ["a"], timeout=10)
    queue.close()


def test_items_are_given_in_the_order_they_were_handed_over():
    queue = Kept(delay=0.0)
    queue.hand("a", "b")
    queue.hand("c")
    wait_for("the items", lambda: len(queue.given) == 3)
    assert queue.given == ["a", "b", "c"]
    queue.close()


def test_after_close_an_item_is_given_by_the_caller():
    queue = Kept(delay=0.0)
    queue.close()
    queue.hand("late")
    assert queue.given == ["late"]
    assert queue.closing


POD = ObjectRef(model.POD_KIND, "team", "web", "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a")


class Listing:
    def list_containers(self) -> list[Any]:
        return []

    def mounted(self, ids: Any) -> set[str]:
        return set()

    def layer_names(self) -> dict[str, list[str]]:
        return {}


def an_executor() -> Executor:
    """An executor whose runs here only emit Events (no storage, an empty store)."""
    return Executor(
        None,  # type: ignore[arg-type]
        NodeView(Listing(), max_age=1000.0),  # type: ignore[arg-type]
        events=LogEvents(),
        secrets=None,
        clock=lambda: 0.0,
    )


def test_the_executor_is_quiet_only_once_its_last_run_has_ended():
    executor = an_executor()
    obj = {"metadata": {"name": "web", "namespace": "team", "uid": POD.uid}}
    target = Object.of(obj, model.POD_KIND)
    ctx = Context("node-a", "pause:3", "agent", 0.0)
    during: list[float] = []

    class Nested(LogEvents):
        def emit(self, *args: Any) -> None:
            during.append(executor.quiet_for(time.monotonic() + 60))
            if len(during) == 1:  # a run inside a run: only the outer one's end counts
                executor.run(obj, target, [Emit("Normal", "Inner", "x")], ctx)
                during.append(executor.quiet_for(time.monotonic() + 60))

    executor.events = Nested()
    assert executor.quiet_for(time.monotonic() + 60) >= 60  # quiet since it was made
    executor.run(obj, target, [Emit("Normal", "Outer", "x")], ctx)
    assert during == [0.0, 0.0, 0.0]  # never quiet while a run is under way
    ended = time.monotonic()
    assert executor.quiet_for(ended + 5) >= 5
    assert executor.quiet_for(ended - 60) == 0.0  # a clock before the end: not negative


def test_a_quiet_moment_is_a_lull_not_an_instant_between_two_runs():
    executor = an_executor()
    obj = {"metadata": {"name": "web", "namespace": "team", "uid": POD.uid}}
    inside: list[bool] = []

    class Looking(LogEvents):
        def emit(self, *args: Any) -> None:
            inside.append(executor.quiet(time.monotonic() + 60))

    executor.events = Looking()
    executor.run(obj, Object.of(obj, model.POD_KIND), [Emit("Normal", "x", "x")], ctx())
    ended = time.monotonic()
    assert inside == [False]  # a run under way
    assert executor.quiet(ended + LULL / 2) is False  # an instant after it: not yet
    assert executor.quiet(ended + LULL) is True  # a lull


def ctx() -> Context:
    return Context("node-a", "pause:3", "agent", 0.0)
