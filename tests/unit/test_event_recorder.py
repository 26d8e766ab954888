"""The node's Event recorder: off the reconciles' way, counted, rate-limited, bounded.

The recorder's thread and its posting function are real; the API is a list (the
e2e tests post through the emulator), and the clocks are the tests' own where the
decision depends on them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import pytest

from controller.handlers.events import (
    EVENT_BURST,
    EVENT_CAPACITY,
    EVENT_QPS,
    EventRecorder,
    Recorded,
    TokenBucket,
    event_key,
)
from tests.support.waiting import wait_for


def pod(name: str = "web", uid: str = "u-1") -> dict[str, Any]:
    return {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StoragePod",
        "metadata": {"name": name, "namespace": "default", "uid": uid},
    }


class Api:
    """Stands in for the API server: keeps what was posted, fails when told to."""

    def __init__(self) -> None:
        self.posted: list[Recorded] = []
        self.fail: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def post(self, event: Recorded) -> None:
        self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self.posted.append(event)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the token bucket ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("takes", "advance", "expected"),
    [
        pytest.param(0, 0.0, 0.0, id="a-full-bucket-gives-at-once"),
        pytest.param(3, 0.0, 0.5, id="an-empty-bucket-waits-for-the-next-token"),
        pytest.param(3, 0.25, 0.25, id="part-of-a-token-waits-less"),
        pytest.param(3, 0.5, 0.0, id="one-token-later-gives-again"),
        pytest.param(3, 100.0, 0.0, id="a-long-pause-refills-no-more-than-the-burst"),
    ],
)
def test_the_token_bucket_gives_rate_tokens_a_second_after_a_burst(takes, advance, expected):
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    for _ in range(takes):
        assert bucket.take() == 0.0
    clock.now += advance
    assert bucket.take() == pytest.approx(expected)


def test_after_a_long_pause_the_bucket_gives_only_its_burst_at_once():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    clock.now += 1000.0
    assert [bucket.take() for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert bucket.take() > 0


def test_the_recorders_limits_are_the_kubelets():
    assert (EVENT_QPS, EVENT_BURST, EVENT_CAPACITY) == (50.0, 100, 1000)


# -- what makes two Events the same -----------------------------------------------------


@pytest.mark.parametrize(
    ("other", "same"),
    [
        pytest.param((pod(), "Normal", "Created", "made"), True, id="same-object-and-words"),
        pytest.param((pod(uid="u-2"), "Normal", "Created", "made"), False, id="a-new-object"),
        pytest.param((pod("db"), "Normal", "Created", "made"), False, id="another-name"),
        pytest.param((pod(), "Warning", "Created", "made"), False, id="another-type"),
        pytest.param((pod(), "Normal", "Started", "made"), False, id="another-reason"),
        pytest.param((pod(), "Normal", "Created", "again"), False, id="another-message"),
    ],
)
def test_an_event_is_the_same_event_only_for_the_same_object_type_reason_and_message(other, same):
    assert (event_key(pod(), "Normal", "Created", "made") == event_key(*other)) is same


# -- recording and posting ---------------------------------------------------------------


def test_an_event_is_posted_by_the_recorders_thread_with_the_objects_reference():
    api = Api()
    recorder = EventRecorder(api.post, delay=0.0)
    recorder.emit(pod(), "Normal", "Created", "pod sandbox made")
    wait_for("the recorder's posts", lambda: api.posted)
    event = api.posted[0]
    assert (event.type, event.reason, event.message, event.count) == (
        "Normal",
        "Created",
        "pod sandbox made",
        1,
    )
    assert event.obj == {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StoragePod",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
    }
    assert event.first == event.last


def test_a_waiting_event_keeps_only_its_objects_reference_not_its_body():
    api = Api()
    recorder = EventRecorder(api.post, delay=0.0)
    body = {**pod(), "spec": {"containers": [{"name": "x" * 1000}]}, "status": {"phase": "Ready"}}
    recorder.emit(body, "Normal", "Created", "made")
    wait_for("the recorder's posts", lambda: api.posted)
    assert set(api.posted[0].obj) == {"apiVersion", "kind", "metadata"}
    recorder.close()
    recorder.close()


def test_emit_returns_at_once_while_the_api_is_slow():
    api = Api()
    api.gate.clear()  # every post hangs until the gate opens
    recorder = EventRecorder(api.post, delay=0.0)
    began = time.monotonic()
    for i in range(50):
        recorder.emit(pod(f"p{i}", uid=f"u{i}"), "Normal", "Created", "made")
    took = time.monotonic() - began
    api.gate.set()
    wait_for("the recorder's posts", lambda: len(api.posted) == 50)
    assert took < 5.0  # generous: 50 posts would hang for ever, emit never waits on one
    recorder.close()


def test_events_wait_while_reconciles_run_and_follow_when_they_end():
    api = Api()
    busy = threading.Event()
    busy.set()
    recorder = EventRecorder(api.post, idle=lambda: not busy.is_set(), delay=0.0, max_delay=30.0)
    recorder.emit(pod(), "Normal", "Created", "made")
    time.sleep(0.2)
    assert api.posted == []  # a reconcile is under way
    busy.clear()
    wait_for("the recorder's posts", lambda: len(api.posted) == 1)
    recorder.close()


def test_an_event_waits_no_longer_than_max_delay_for_a_quiet_moment():
    api = Api()
    recorder = EventRecorder(api.post, idle=lambda: False, delay=0.0, max_delay=0.2)
    recorder.emit(pod(), "Normal", "Created", "made")
    wait_for("the recorder's posts", lambda: len(api.posted) == 1, timeout=5)
    recorder.close()


def test_the_same_event_recorded_again_before_it_is_posted_is_counted():
    api = Api()
    wall = [dt.datetime(2026, 12, 8, 1, 0, 0, tzinfo=dt.UTC)]
    busy = threading.Event()
    busy.set()
    recorder = EventRecorder(
        api.post,
        idle=lambda: not busy.is_set(),
        delay=0.0,
        max_delay=30.0,
        wall=lambda: wall[0],
    )
    for second in range(3):
        wall[0] = wall[0].replace(second=second)
        recorder.emit(pod(), "Warning", "ErrImagePull", "no such image")
    recorder.emit(pod(), "Normal", "Pulled", "pulled")
    busy.clear()
    wait_for("the recorder's posts", lambda: len(api.posted) == 2)
    pull, pulled = api.posted
    assert (pull.reason, pull.count) == ("ErrImagePull", 3)
    assert (pull.first.second, pull.last.second) == (0, 2)
    assert (pulled.reason, pulled.count) == ("Pulled", 1)
    recorder.close()


def test_posting_follows_the_rate_after_the_burst():
    api = Api()
    clock = Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    recorder = EventRecorder(api.post, delay=0.0, qps=10.0, burst=2, clock=clock, sleep=sleep)
    for i in range(4):
        recorder.emit(pod(f"p{i}", uid=f"u{i}"), "Normal", "Created", "made")
    wait_for("the recorder's posts", lambda: len(api.posted) == 4)
    assert slept == [pytest.approx(0.1), pytest.approx(0.1)]  # two at once, then 10 a second
    assert [e.obj["metadata"]["name"] for e in api.posted] == ["p0", "p1", "p2", "p3"]
    recorder.close()


def test_past_its_capacity_the_recorder_drops_events_with_one_warning(caplog):
    api = Api()
    busy = threading.Event()
    busy.set()
    recorder = EventRecorder(
        api.post, idle=lambda: not busy.is_set(), delay=0.0, max_delay=30.0, capacity=3
    )
    with caplog.at_level(logging.WARNING, logger="controller.handlers.events"):
        for i in range(5):
            recorder.emit(pod(f"p{i}", uid=f"u{i}"), "Normal", "Created", "made")
    assert recorder.dropped == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the Created Event of p3 is dropped" in warnings[0]
    busy.clear()
    wait_for("the recorder's posts", lambda: len(api.posted) == 3)
    # Room again: the next Event is kept.
    recorder.emit(pod("p9", uid="u9"), "Normal", "Created", "made")
    wait_for("the recorder's posts", lambda: len(api.posted) == 4)
    recorder.close()


def test_a_post_that_fails_is_one_warning_and_the_next_events_still_go(caplog):
    api = Api()
    api.fail = ConnectionRefusedError(111, "Connection refused")
    recorder = EventRecorder(api.post, delay=0.0)
    with caplog.at_level(logging.WARNING, logger="controller.handlers.events"):
        recorder.emit(pod(), "Normal", "Created", "made")
        wait_for("a WARNING", lambda: any("failed" in r.getMessage() for r in caplog.records))
    assert "posting the Created Event of web failed" in caplog.records[-1].getMessage()
    api.fail = None
    recorder.emit(pod("db", uid="u-2"), "Normal", "Created", "made")
    wait_for("the recorder's posts", lambda: len(api.posted) == 1)
    recorder.close()


def test_close_posts_what_waits_at_once():
    api = Api()
    recorder = EventRecorder(api.post, idle=lambda: False, delay=0.0, max_delay=60.0)
    for i in range(3):
        recorder.emit(pod(f"p{i}", uid=f"u{i}"), "Normal", "Created", "made")
    recorder.close(timeout=10)
    assert len(api.posted) == 3


def test_close_says_how_many_events_it_could_not_post(caplog):
    api = Api()
    api.gate.clear()
    recorder = EventRecorder(api.post, idle=lambda: False, delay=0.0, max_delay=60.0)
    for i in range(3):
        recorder.emit(pod(f"p{i}", uid=f"u{i}"), "Normal", "Created", "made")
    with caplog.at_level(logging.WARNING, logger="controller.handlers.events"):
        recorder.close(timeout=0.2)
    assert "2 Events were not posted: the agent is stopping" in caplog.text
    api.gate.set()


def test_an_event_recorded_after_close_is_posted_by_its_caller():
    api = Api()
    recorder = EventRecorder(api.post, delay=0.0)
    recorder.close()
    recorder.emit(pod(), "Normal", "Deleted", "storage removed")
    assert [e.reason for e in api.posted] == ["Deleted"]


def test_a_long_message_is_cut_to_the_apis_bound():
    api = Api()
    recorder = EventRecorder(api.post, delay=0.0)
    recorder.emit(pod(), "Warning", "StorageError", "x" * 5000)
    wait_for("the recorder's posts", lambda: api.posted)
    assert len(api.posted[0].message) == 1024
    recorder.close()
