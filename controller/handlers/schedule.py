"""When each of this node's objects is looked at again: one schedule for the whole node.

The resync compares every object with the store about once a resync interval. A kopf
timer per object did that with a task, two events, a patch and a logger kept for each
object, and a wake-up of its own: about 15 MB at a thousand objects (bench/operator.py's
(c)), and a thousand separate sleeps. This is the bookkeeping of one loop instead: it is
given the objects there are, and says which are due.

Each object is due between one and one and a half intervals after it was first seen or
last looked at, as the kubelet's pod workers spread their resyncs with a jitter of
0.5: objects seen together (all of them, after a restart) do not all come due at once.
Pure: the caller gives the time and the random numbers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

JITTER = 0.5  # as the kubelet's workerResyncIntervalJitterFactor


class ResyncSchedule:
    """The due times of a set of objects known by key (a UID)."""

    def __init__(self, interval: float, jitter: Callable[[], float] = random.random) -> None:
        if not interval > 0:
            raise ValueError(f"the resync interval must be more than 0 seconds, not {interval!r}")
        self.interval = float(interval)
        self._jitter = jitter
        self._due: dict[str, float] = {}

    def _next(self, now: float) -> float:
        return now + self.interval * (1.0 + JITTER * self._jitter())

    def take(self, present: Iterable[str], now: float) -> list[str]:
        """The keys of ``present`` whose time has come, in the order given; each is
        scheduled again. A key seen for the first time is scheduled, not due; a key no
        longer present is forgotten."""
        due: list[str] = []
        known = self._due
        kept: dict[str, float] = {}
        for key in present:
            if key in kept:
                continue
            when = known.get(key)
            if when is None:
                when = self._next(now)
            elif when <= now:
                due.append(key)
                when = self._next(now)
            kept[key] = when
        self._due = kept
        return due

    def __len__(self) -> int:
        return len(self._due)
