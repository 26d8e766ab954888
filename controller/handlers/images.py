"""Image garbage collection on the node agent: a pass on a timer.

Every ``--image-gc-interval`` the agent runs one pass of
:class:`~controller.sync.imagegc.ImageCollector` on its store, in a
thread (a pass runs storage commands). The images this node's StoragePods and
StorageContainers name are kept (a create may be about to use them), as are
the infra image and the ``--pinned-image`` ones. Each removal is an Event on the
Node (reason ``ImageGarbageCollected``), a pass that falls short is the
kubelet's ``ImageGCFailed`` or ``FreeDiskSpaceFailed``, and the metrics
``podstore_image_gc_removed_total``, ``podstore_image_gc_bytes_total`` and
``podstore_image_fs_usage_ratio`` follow every pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable

from controller.config import Settings
from controller.handlers import kube, metrics
from controller.handlers.kube import ApiException
from controller.storage import ImageService
from controller.sync.imagegc import IMAGE_REMOVED, GCOutcome, collector_for, images_named

log = logging.getLogger(__name__)


def size(num: int) -> str:
    """Bytes as crictl prints image sizes (1000-based)."""
    value = float(num)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{value:.3g}GB"


EventPoster = Callable[[str, str, str, str], None]


class NodeImageGC:
    """One node's image GC: observe the API's view of what is wanted, collect, report."""

    def __init__(
        self,
        images: ImageService,
        settings: Settings,
        *,
        post: EventPoster = kube.post_node_event,
        pinned: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.collector = collector_for(images, settings)
        self.settings = settings
        self.post = post
        # Images pinned for now by the API (pre-pulled StorageImages), asked each pass.
        self.pinned = pinned

    def wanted(self) -> set[str]:
        objects = kube.list_node_objects(self.settings.node_name)
        return images_named(objects, self.settings.infra_image)

    def run_pass(self) -> GCOutcome:
        try:
            wanted = self.wanted()
        except ApiException as err:
            # Without the list, a create GC would undercut cannot be ruled out: skip the pass.
            log.warning("image GC skipped: this node's objects could not be listed: %s", err)
            return GCOutcome(plan=None, error=f"listing this node's objects failed: {err}")
        outcome = self.collector.run_pass(wanted=wanted, pinned=tuple(self.pinned()))
        self.report(outcome)
        return outcome

    def report(self, outcome: GCOutcome) -> None:
        usage = outcome.usage_after or (outcome.plan.usage if outcome.plan else None)
        if usage is not None and usage.total > 0:
            metrics.IMAGE_FS_USAGE.set(usage.used / usage.total)
        for removal in outcome.removed:
            metrics.IMAGE_GC_REMOVED.inc()
            metrics.IMAGE_GC_BYTES.inc(removal.bytes)
            name = removal.names[0] if removal.names else "no name"
            self._post(
                "Normal",
                IMAGE_REMOVED,
                f"removed image {removal.image_id[:12]} ({name}), {size(removal.bytes)}, "
                "to free disk space",
            )
        if outcome.reason:
            low = self.settings.image_gc_low_threshold
            detail = outcome.error or (
                f"image filesystem usage is {usage.percent():.1f}%, still at or over the low "
                f"threshold {low}%: only "
                f"{size(outcome.bytes_freed)} of the {size(outcome.plan.bytes_to_free)} needed "
                "could be freed (the rest is in use, pinned, too young or another tool's)"
                if usage is not None and outcome.plan is not None
                else "no usage known"
            )
            self._post("Warning", outcome.reason, detail)

    def _post(self, type_: str, reason: str, message: str) -> None:
        try:
            self.post(self.settings.node_name, type_, reason, message)
        except Exception as err:  # an event lost must not stop GC; it is logged instead
            log.warning(
                "event %s on node %s not posted (%s): %s",
                reason,
                self.settings.node_name,
                err,
                message,
            )


async def image_gc_loop(gc: NodeImageGC, stop: threading.Event | asyncio.Event) -> None:
    """A pass every ``--image-gc-interval`` (the first one after one interval too)."""
    interval = max(gc.settings.image_gc_interval, 1.0)
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.sleep(interval)
        if stop.is_set():
            break
        try:
            await asyncio.to_thread(gc.run_pass)
        except Exception:
            log.exception("image GC pass failed; trying again next interval")
