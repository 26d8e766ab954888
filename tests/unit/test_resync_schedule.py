"""The node's one resync schedule (controller.handlers.schedule): which objects are due.

Each row gives the objects present at each call and the time; the jitter is a fixed
sequence, so every due time is known: first seen at t, due at t + interval x (1 + 0.5 j).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.handlers.schedule import JITTER, ResyncSchedule


def fixed(*values: float) -> Iterator[float]:
    while True:
        yield from values


def schedule(interval: float = 10.0, jitter: tuple[float, ...] = (0.0,)) -> ResyncSchedule:
    numbers = fixed(*jitter)
    return ResyncSchedule(interval, jitter=lambda: next(numbers))


# (what the table row shows, jitter values, [(time, present, due)])
CASES = [
    (
        "first seen is scheduled, not due; due one interval later, then every interval",
        (0.0,),
        [(0, ["a"], []), (9.9, ["a"], []), (10, ["a"], ["a"]), (15, ["a"], []), (20, ["a"], ["a"])],
    ),
    (
        "objects seen together are spread by the jitter",
        (0.0, 1.0),
        [(0, ["a", "b"], []), (10, ["a", "b"], ["a"]), (15, ["a", "b"], ["b"])],
    ),
    (
        "one seen later keeps its own time",
        (0.0,),
        [(0, ["a"], []), (4, ["a", "b"], []), (10, ["a", "b"], ["a"]), (14, ["a", "b"], ["b"])],
    ),
    (
        "an object gone is forgotten: back again, it is new",
        (0.0,),
        [(0, ["a"], []), (5, [], []), (11, ["a"], []), (21, ["a"], ["a"])],
    ),
    (
        "a late pass takes every overdue object once, and schedules it from now",
        (0.0,),
        [
            (0, ["a", "b"], []),
            (35, ["a", "b"], ["a", "b"]),
            (44, ["a", "b"], []),
            (45, ["a", "b"], ["a", "b"]),
        ],
    ),
    (
        "an object listed twice is taken once",
        (0.0,),
        [(0, ["a", "a"], []), (10, ["a", "a"], ["a"])],
    ),
    (
        "the order given is the order due",
        (0.0,),
        [(0, ["c", "a", "b"], []), (10, ["b", "c", "a"], ["b", "c", "a"])],
    ),
]


@pytest.mark.parametrize(("what", "jitter", "steps"), CASES, ids=[c[0] for c in CASES])
def test_which_objects_are_due(what, jitter, steps):
    s = schedule(jitter=jitter)
    for now, present, due in steps:
        assert s.take(present, float(now)) == due, f"at {now}"
    assert len(s) == len(set(steps[-1][1]))


def test_the_jitter_is_that_of_the_kubelets_pod_workers():
    assert JITTER == 0.5
    s = schedule(interval=30.0, jitter=(1.0,))
    s.take(["a"], 0.0)
    assert s.take(["a"], 44.9) == []
    assert s.take(["a"], 45.0) == ["a"]


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_an_interval_that_is_not_positive_is_refused(interval):
    with pytest.raises(ValueError, match="resync interval must be more than 0"):
        ResyncSchedule(interval)
