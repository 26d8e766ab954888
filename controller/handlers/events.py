"""The node's Kubernetes Events: recorded by the reconciles, posted off their way.

As the kubelet's event recorder does, the agent never makes a reconcile wait for an
Event. :class:`EventRecorder` keeps the Events of every reconcile (kopf's handlers, the
resync, the wait for a pod) in one queue, posted by one thread:

- after the reconciles of a burst, not between them (a
  :class:`~controller.sync.background.QuietQueue`: at most ``max_delay`` late), so the
  API requests of a burst of pods go to the pods first;
- the same Event (object, type, reason, message) recorded again while it waits is one
  Event with a ``count``, as the kubelet's correlator counts a repeated Event;
- at most ``qps`` a second after a ``burst``, the kubelet's ``eventRecordQPS`` and
  ``eventBurst`` (50 and 100), so a node never floods the API server with Events;
- at most ``capacity`` waiting (the kubelet's 1,000): past that an Event is dropped
  with a WARNING line, never the agent's memory.

An Event that cannot be posted is one WARNING line; Events are information, not state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.handlers import kube
from controller.handlers.health import describe
from controller.sync.background import QuietQueue

log = logging.getLogger(__name__)

# The kubelet's defaults (KubeletConfiguration eventRecordQPS, eventBurst) and the size
# of its event broadcaster's queue.
EVENT_QPS = 50.0
EVENT_BURST = 100
EVENT_CAPACITY = 1000
EVENT_MAX_DELAY = 10.0  # seconds an Event may wait for the reconciles of a burst (as a layer name)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` kept: how long until the next one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> float:
        """Take a token and return 0, or return the seconds until one is there."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0 - 1e-9:  # a token that float arithmetic left a hair short
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self.rate


Key = tuple[str, ...]


@dataclass(frozen=True)
class Recorded:
    """One Event waiting to be posted, seen ``count`` times between ``first`` and ``last``."""

    obj: Mapping[str, Any]
    type: str
    reason: str
    message: str
    first: dt.datetime
    last: dt.datetime
    count: int = 1


def event_key(obj: Mapping[str, Any], type_: str, reason: str, message: str) -> Key:
    """What makes two Events the same Event (the kubelet's correlator key, less source)."""
    meta = obj.get("metadata") or {}
    return (
        str(obj.get("kind") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
        str(meta.get("uid") or ""),
        type_,
        reason,
        message,
    )


def reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What an Event needs of its object (its ``involvedObject``): a waiting Event does not
    keep the object's whole body."""
    meta = obj.get("metadata") or {}
    ref: dict[str, Any] = {
        "metadata": {k: str(meta[k]) for k in ("name", "namespace", "uid") if meta.get(k)}
    }
    for field in ("apiVersion", "kind"):
        if obj.get(field):
            ref[field] = str(obj[field])
    return ref


Post = Callable[[Recorded], None]


class EventRecorder(QuietQueue[Key]):
    """The agent's Events (the reconcilers' ``EventSink``); see the module's text."""

    def __init__(
        self,
        post: Post,
        *,
        idle: Callable[[], bool] = lambda: True,
        delay: float = 0.05,
        max_delay: float = EVENT_MAX_DELAY,
        qps: float = EVENT_QPS,
        burst: int = EVENT_BURST,
        capacity: int = EVENT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            name="podstore-events", idle=idle, delay=delay, max_delay=max_delay, clock=clock
        )
        self.post = post
        self.capacity = capacity
        self.wall = wall
        self.sleep = sleep
        self._bucket = TokenBucket(qps, burst, clock)
        self._waiting: dict[Key, Recorded] = {}
        self._post_lock = threading.Lock()  # the queue's thread, or close's late callers
        self.dropped = 0  # Events dropped past the capacity (the WARNING says how many)

    @classmethod
    def for_node(cls, node: str, **options: Any) -> EventRecorder:
        """Events posted through the API as ``podstore-agent`` on ``node``."""

        def post(event: Recorded) -> None:
            kube.post_object_event(
                event.obj,
                node,
                event.type,
                event.reason,
                event.message,
                count=event.count,
                first=event.first,
                last=event.last,
            )

        return cls(post, **options)

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event; never blocks on the API and never raises."""
        message = message[:1024]
        key = event_key(obj, type_, reason, message)
        now = self.wall()
        with self._cond:
            seen = self._waiting.get(key)
            if seen is not None:
                self._waiting[key] = dataclasses.replace(seen, count=seen.count + 1, last=now)
                return
            if len(self._waiting) >= self.capacity:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._waiting[key] = Recorded(reference(obj), type_, reason, message, now, now)
                dropped = 0
        if dropped:
            if dropped == 1 or dropped % 100 == 0:
                name = (obj.get("metadata") or {}).get("name")
                log.warning(
                    "%d Events waiting to be posted already: the %s Event of %s is dropped "
                    "(%d dropped so far); is the API server slow?",
                    self.capacity,
                    reason,
                    name,
                    dropped,
                )
            return
        self._put([key])

    def give(self, item: Key) -> None:
        """Post one Event, as soon as the rate allows."""
        with self._post_lock:
            while (wait := self._bucket.take()) > 0:
                self.sleep(wait)
            with self._cond:
                event = self._waiting.pop(item, None)
            if event is None:
                return
            try:
                self.post(event)
            except Exception as err:  # an Event is worth a line, not the agent
                name = (event.obj.get("metadata") or {}).get("name")
                log.warning(
                    "posting the %s Event of %s failed (%s)", event.reason, name, describe(err)
                )

    def close(self, timeout: float = 5.0) -> None:
        """Post what waits, for at most ``timeout`` seconds; say what was not posted."""
        super().close(timeout)
        with self._cond:
            left = len(self._waiting)
        if left:
            log.warning("%d Events were not posted: the agent is stopping", left)
