"""Image GC for ``podstore run``: one pass after a pass that changed the store.

The images that the manifests name (a container's ``spec.image``, a pod's
``spec.infraImage`` or the infra image) are "about to be used" and stay, as do
the infra image and ``--pinned-image`` ones. What a pass did is logged the way
the agent posts it as Events: a WARNING per removal, and the kubelet's reasons
when the pass falls short.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from controller.config import Settings
from controller.storage import ImageService
from controller.sync.imagegc import GCOutcome, collector_for, images_named

log = logging.getLogger(__name__)


def report(outcome: GCOutcome) -> None:
    """Log a pass as the agent posts it."""
    if outcome.reason:
        plan = outcome.plan
        usage = outcome.usage_after or (plan.usage if plan else None)
        detail = outcome.error or (
            f"usage {usage.percent():.1f}% is still at or over the low threshold"
            if usage
            else "no usage known"
        )
        log.warning("%s: %s", outcome.reason, detail)


class RunImageGC:
    """What ``podstore run`` calls after a pass that changed the store."""

    def __init__(self, images: ImageService, settings: Settings) -> None:
        self.collector = collector_for(images, settings)
        self.infra_image = settings.infra_image

    def after_change(self, objects: Iterable[Mapping[str, Any]]) -> GCOutcome:
        outcome = self.collector.run_pass(wanted=images_named(objects, self.infra_image))
        report(outcome)
        return outcome
