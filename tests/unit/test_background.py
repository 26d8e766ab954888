"""The quiet queue's thread: woken when the last reconcile ends, not polling for it.

The layer namer's and the Event recorder's own tests cover what they do with their
items; these cover the queue they share and the executor's call when it goes quiet.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.actions import Emit
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import Context, Object
from controller.sync.background import QuietQueue, quiet_wait
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


def test_a_waiting_item_is_given_as_soon_as_it_is_woken_after_the_last_reconcile():
    busy = threading.Event()
    busy.set()
    # No poll to speak of and a far max_delay: only wake() can let the item go now.
    queue = Kept(idle=lambda: not busy.is_set(), delay=0.0, max_delay=600.0, poll=600.0)
    queue.hand("a")
    wait_for("the thread to wait for a quiet moment", lambda: queue._thread is not None)
    assert queue.given == []
    busy.clear()
    queue.wake()
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


def test_the_executor_calls_its_idle_callbacks_when_its_last_run_ends():
    executor = Executor(
        None,  # type: ignore[arg-type]
        NodeView(Listing(), max_age=1000.0),  # type: ignore[arg-type]
        events=LogEvents(),
        secrets=None,
        clock=lambda: 0.0,
    )
    seen: list[int] = []
    executor.on_idle.append(lambda: seen.append(executor.running))
    obj = {"metadata": {"name": "web", "namespace": "team", "uid": POD.uid}}
    target = Object.of(obj, model.POD_KIND)
    ctx = Context("node-a", "pause:3", "agent", 0.0)
    inner: list[int] = []

    class Nested(LogEvents):
        def emit(self, *args: Any) -> None:  # a run inside a run: only the outer end counts
            if not inner:
                inner.append(1)
                executor.run(obj, target, [Emit("Normal", "Inner", "x")], ctx)

    executor.events = Nested()
    executor.run(obj, target, [Emit("Normal", "Outer", "x")], ctx)
    assert seen == [0]
