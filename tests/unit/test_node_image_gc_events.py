"""What the agent makes of one image-GC pass: Events on its Node and metrics."""

from __future__ import annotations

from typing import Any

import pytest

from controller.config import Settings
from controller.handlers import metrics
from controller.handlers.images import NodeImageGC
from controller.reconcile.imagegc import FsUsage, GCPlan, Removal
from controller.storage import ImageService, Store
from controller.sync.imagegc import GCOutcome

MB = 1_000_000


def gc(posted: list[tuple[str, ...]]) -> NodeImageGC:
    images = ImageService(Store("/nonexistent/root", "/nonexistent/run", "vfs"))

    def post(node: str, type_: str, reason: str, message: str) -> None:
        posted.append((node, type_, reason, message))

    return NodeImageGC(images, Settings(node_name="node-a"), post=post)


def plan(used: int, to_free: int = 0) -> GCPlan:
    return GCPlan(
        needed=to_free > 0,
        usage=FsUsage(used=used, total=100 * MB),
        bytes_to_free=to_free,
        removals=(),
        kept=(),
        low_unreachable=False,
    )


def value(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


@pytest.mark.parametrize(
    ("outcome", "events"),
    [
        pytest.param(GCOutcome(plan=plan(50 * MB)), [], id="nothing-due-nothing-posted"),
        pytest.param(
            GCOutcome(
                plan=plan(90 * MB, 10 * MB),
                removed=(Removal("a" * 64, ("r/a:1",), 12 * MB, 0.0),),
                usage_after=FsUsage(78 * MB, 100 * MB),
            ),
            [("Normal", "ImageGarbageCollected", "removed image aaaaaaaaaaaa (r/a:1), 12MB")],
            id="a-removal-is-a-normal-event",
        ),
        pytest.param(
            GCOutcome(
                plan=plan(95 * MB, 15 * MB),
                usage_after=FsUsage(95 * MB, 100 * MB),
                low_unreachable=True,
            ),
            [("Warning", "FreeDiskSpaceFailed", "image filesystem usage is 95.0%")],
            id="out-of-reach-is-freediskspacefailed",
        ),
        pytest.param(
            GCOutcome(plan=None, error="the store could not be read: locked"),
            [("Warning", "ImageGCFailed", "the store could not be read: locked")],
            id="a-failed-pass-is-imagegcfailed",
        ),
    ],
)
def test_each_pass_becomes_events_on_the_node(
    outcome: GCOutcome, events: list[tuple[str, str, str]]
) -> None:
    posted: list[tuple[str, ...]] = []
    removed, freed = (
        value("podstore_image_gc_removed_total"),
        value("podstore_image_gc_bytes_total"),
    )
    gc(posted).report(outcome)
    assert [(p[1], p[2]) for p in posted] == [(e[0], e[1]) for e in events]
    for (_, _, _, message), (_, _, start) in zip(posted, events, strict=True):
        assert message.startswith(start)
    assert all(p[0] == "node-a" for p in posted)
    assert value("podstore_image_gc_removed_total") - removed == len(outcome.removed)
    assert value("podstore_image_gc_bytes_total") - freed == sum(r.bytes for r in outcome.removed)
    usage = outcome.usage_after or (outcome.plan.usage if outcome.plan else None)
    if usage is not None:
        assert value("podstore_image_fs_usage_ratio") == pytest.approx(usage.used / usage.total)


def test_an_event_that_cannot_be_posted_is_logged_and_gc_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    images = ImageService(Store("/nonexistent/root", "/nonexistent/run", "vfs"))

    def post(*_: Any) -> None:
        raise OSError("API down")

    outcome = GCOutcome(plan=None, error="boom")
    NodeImageGC(images, Settings(node_name="node-a"), post=post).report(outcome)
    assert "event ImageGCFailed on node node-a not posted (API down)" in caplog.text
