"""Work that waits for a quiet moment: handed over by the reconciles, done by one thread.

Some of the agent's work need not be on a reconcile's way: a new layer's name (one
``add-names`` each) and the Kubernetes Events the reconciles emit. Both are handed to
a :class:`QuietQueue`, whose thread does each item at least ``delay`` after it was
handed over and at a moment when no reconcile is under way (``idle``), or
``max_delay`` after, whichever comes first: a burst of reconciles runs first and the
work follows when it is over, and a lone reconcile's work follows it at once. The agent's
``idle`` is a lull (:data:`LULL` with no reconcile under way), not an instant between two
reconciles of a burst: an ``add-names`` started there would hold the store's lock that
the burst's next create waits for. :meth:`QuietQueue.close` does what waits without
waiting any more.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

POLL = 0.1  # how often a due item looks again for a moment with no reconcile
LULL = 0.1  # seconds with no reconcile under way that make a quiet moment (the agent's)


def quiet_wait(
    *,
    now: float,
    asked: float,
    idle: bool,
    closing: bool,
    delay: float,
    max_delay: float,
    poll: float = POLL,
) -> float:
    """How long an item handed over at ``asked`` waits still (0: do it now).

    It waits ``delay`` after it was handed over, then for a moment when no reconcile is
    under way (``idle``), but never past ``max_delay``; when the queue closes, not at all.
    """
    if closing:
        return 0.0
    if now < asked + delay:
        return asked + delay - now
    if idle or now >= asked + max_delay:
        return 0.0
    return min(poll, asked + max_delay - now)


class QuietQueue(Generic[T]):
    """Items done one at a time by a thread of their own, each when :func:`quiet_wait`
    says. Subclasses say what doing one is (:meth:`give`); the thread starts with the
    first item and is a daemon, so a process that exits without :meth:`close` is not
    held up by it."""

    def __init__(
        self,
        *,
        name: str,
        idle: Callable[[], bool] = lambda: True,
        delay: float = 0.05,
        max_delay: float = 10.0,
        poll: float = POLL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.idle = idle
        self.delay = delay
        self.max_delay = max_delay
        self.poll = poll
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[float, T]] = collections.deque()
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def closing(self) -> bool:
        with self._cond:
            return self._closing

    def give(self, item: T) -> None:
        """Do one item (on the queue's thread, or the caller's once it is closing)."""
        raise NotImplementedError

    def _put(self, items: Iterable[T]) -> None:
        """Queue ``items``, or do them now on the caller's thread once the queue closes."""
        items = list(items)
        with self._cond:
            late = self._closing
            if not late:
                now = self.clock()
                self._queue.extend((now, item) for item in items)
                if self._thread is None and self._queue:
                    self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        if late:
            for item in items:
                self.give(item)

    def _drop(self, unwanted: Callable[[T], bool]) -> None:
        """Take the waiting items that are ``unwanted`` out of the queue (the lock is
        reentrant: a subclass may call this while it holds it)."""
        with self._cond:
            self._queue = collections.deque(e for e in self._queue if not unwanted(e[1]))

    def _taken(self, item: T) -> None:
        """Called with the queue's lock held as ``item`` leaves the queue to be done."""

    def _next(self) -> T | None:
        with self._cond:
            while True:
                if not self._queue:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                asked, item = self._queue[0]
                wait = quiet_wait(
                    now=self.clock(),
                    asked=asked,
                    idle=self.idle(),
                    closing=self._closing,
                    delay=self.delay,
                    max_delay=self.max_delay,
                    poll=self.poll,
                )
                if wait <= 0:
                    self._queue.popleft()
                    self._taken(item)
                    return item
                self._cond.wait(wait)

    def _loop(self) -> None:
        while (item := self._next()) is not None:
            self.give(item)

    def close(self, timeout: float = 30.0) -> None:
        """Do every waiting item now, for at most ``timeout`` seconds, then stop."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
