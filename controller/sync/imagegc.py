"""One image garbage-collection pass: observe the store, plan, remove.

:class:`ImageCollector` is shared by the agent (on a timer), ``podstore run``
(after a pass that changed the store) and ``podstore rmi --prune``. It reads
the store in three listings (images, layers, containers) and one ``statvfs``,
asks :func:`controller.reconcile.imagegc.plan` what to remove, and removes the
images one at a time through :class:`~controller.storage.ImageService`:

- an image that a container came to use meanwhile is refused by the store and
  skipped, as is one a create of podstore holds right now;
- a store lock that cannot be had (another process holds it past the storage
  layer's wait) ends the pass before anything more is done;
- each removal is one ``delete-image``, which containers/storage makes safe
  against a crash; podstore keeps no state of its own about a pass, so a pass
  killed midway leaves nothing to repair and the next one starts afresh.

Last use is remembered on the images themselves (see
:mod:`controller.storage.images`): an image in use gets "now" written now and
then, so that after its containers are gone (and after an agent restart) it
is still known to have been used recently.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.config import Settings
from controller.reconcile.imagegc import FsUsage, GCInput, GCPlan, GCPolicy, ImageRecord, Removal
from controller.reconcile.imagegc import plan as make_plan
from controller.storage import ImageService, StorageContainer, StorageImage
from controller.storage.errors import InvalidName, StorageError, StoreLocked
from controller.storage.images import BUSY, GONE, IN_USE, REMOVED, ImageMarks
from controller.storage.store import chain_layers

log = logging.getLogger(__name__)

# Event reasons, as the kubelet names them.
IMAGE_GC_FAILED = "ImageGCFailed"
FREE_DISK_SPACE_FAILED = "FreeDiskSpaceFailed"
# The kubelet posts no event per removed image; podstore does, under this reason.
IMAGE_REMOVED = "ImageGarbageCollected"

# An image in use has its last use written again once the record is older than this.
REFRESH_SECONDS = 600.0


@dataclass(frozen=True)
class Skipped:
    """A planned removal that did not happen, and why."""

    removal: Removal
    why: str


@dataclass(frozen=True)
class GCOutcome:
    """What one pass did."""

    plan: GCPlan | None
    removed: tuple[Removal, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    usage_after: FsUsage | None = None
    # Why the pass stopped, or failed to remove an image (ImageGCFailed).
    error: str = ""
    dry_run: bool = False
    # Usage stayed at or over the low threshold after a due collection.
    low_unreachable: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in self.removed)

    @property
    def reason(self) -> str:
        """The kubelet's event reason for a pass that fell short; empty when none did."""
        if self.error:
            return IMAGE_GC_FAILED
        if self.low_unreachable:
            return FREE_DISK_SPACE_FAILED
        return ""


class ImageCollector:
    """Image GC for one store."""

    def __init__(
        self,
        images: ImageService,
        *,
        policy: GCPolicy,
        pinned: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        refresh: float = REFRESH_SECONDS,
    ) -> None:
        self.images = images
        self.store = images.store
        self.policy = policy
        self.pinned = tuple(pinned)
        self.clock = clock
        self.refresh = refresh

    # -- observe ------------------------------------------------------------

    def keys(self, refs: Iterable[str]) -> frozenset[str]:
        """References and IDs as the plan matches them: store names and full or short IDs."""
        out: set[str] = set()
        for ref in refs:
            try:
                out.add(self.images.store_name(ref))
            except InvalidName:
                log.warning("image GC: %r is not an image reference or ID; ignored", ref)
        return frozenset(out)

    def observe(
        self, wanted: Iterable[str] = (), pinned: Iterable[str] = (), *, write: bool = True
    ) -> tuple[GCInput, list[StorageImage]]:
        """The pass's input, read from the store (and, with ``write``, last uses refreshed)."""
        now = self.clock()
        stored = self.store.images()
        sizes, arrived = self.store.layer_arrivals() if stored else ({}, {})
        containers = self.store.containers() if stored else []
        in_use = frozenset(c.image for c in containers if c.image)
        used_at: dict[str, float] = {}
        for container in containers:
            when = container_created(container)
            used_at[container.image] = max(used_at.get(container.image, 0.0), when)
        records = []
        for image in stored:
            marks = ImageMarks.of(image)
            last = max(marks.last_used or 0.0, used_at.get(image.id, 0.0))
            if image.id in in_use:
                # Another tool's image is written on only when GC may remove it.
                ours = marks.pulled or self.policy.gc_all
                if write and ours and (marks.last_used or 0.0) < now - self.refresh:
                    self._mark_used(image, now)
                last = now
            records.append(
                ImageRecord(
                    id=image.id,
                    names=image.names,
                    layers=chain_layers(image.layer, sizes),
                    last_used=last,
                    # When it came into this store: its top layer's creation there.
                    created=parse_time(arrived.get(image.layer, "")) or parse_time(image.created),
                    pulled=marks.pulled,
                )
            )
        ids = [image.id for image in stored]
        pins = [*self.pinned, *pinned]
        wanted = list(wanted)
        gc = GCInput(
            images=tuple(records),
            in_use=in_use,
            pinned=self.keys(pins) | _by_prefix(pins, ids),
            wanted=self.keys(wanted) | self.images.pulling() | _by_prefix(wanted, ids),
            usage=self._usage(),
            policy=self.policy,
            now=now,
        )
        return gc, stored

    def _usage(self) -> FsUsage:
        found = self.store.filesystem_usage()
        return FsUsage(used=found.used, total=found.total)

    def _mark_used(self, image: StorageImage, now: float) -> None:
        try:
            self.images.mark_used(image, now)
        except StoreLocked:
            raise
        except StorageError as err:
            log.warning("image GC: could not record the use of %s: %s", image.id[:12], err)

    # -- one pass -----------------------------------------------------------

    def plan(self, wanted: Iterable[str] = (), pinned: Iterable[str] = ()) -> GCPlan:
        """The plan of a pass, changing nothing in the store."""
        gc, _ = self.observe(wanted, pinned, write=False)
        return make_plan(gc)

    def run_pass(
        self, wanted: Iterable[str] = (), pinned: Iterable[str] = (), *, dry_run: bool = False
    ) -> GCOutcome:
        """Observe, plan and (unless ``dry_run``) remove; never raises a StorageError."""
        try:
            gc, stored = self.observe(wanted, pinned, write=not dry_run)
            if not dry_run and self._repair(gc, stored):
                gc, stored = self.observe(wanted, pinned, write=False)
        except StorageError as err:
            log.warning("image GC: the store could not be read: %s", err)
            return GCOutcome(plan=None, error=f"the store could not be read: {err}")
        plan = make_plan(gc)
        if plan.problem:
            return GCOutcome(plan=plan, error=plan.problem, dry_run=dry_run)
        if dry_run or not plan.needed:
            return GCOutcome(plan=plan, dry_run=dry_run, low_unreachable=plan.low_unreachable)
        return self.execute(plan)

    def _repair(self, gc: GCInput, stored: list[StorageImage]) -> bool:
        """Finish removals a killed pass left half done.

        containers-storage 1.43 deletes an image's layers before its record, so a removal
        killed midway leaves an image whose top layer is gone: no container can be made
        from it. Such an image that podstore pulled is removed now, whatever the usage."""
        done = False
        for image, record in zip(stored, gc.images, strict=True):
            if not image.layer or record.layers or image.id in gc.in_use:
                continue
            if not record.pulled and not self.policy.gc_all:
                log.warning(
                    "image GC: image %s has lost its layers (another tool's: left alone)",
                    image.id[:12],
                )
                continue
            log.warning(
                "image GC: removing image %s, whose layers an interrupted removal took",
                image.id[:12],
            )
            try:
                self.images.remove_unused(image.id)
            except StoreLocked:
                raise
            except StorageError:
                # delete-image may refuse an image whose layer is unknown; the record
                # then goes with the CLI's unchecked delete, which touches nothing else.
                self.store.delete_record(image.id)
            done = True
        return done

    def execute(self, plan: GCPlan) -> GCOutcome:
        """Remove what ``plan`` says, one image at a time, while usage is not under low."""
        low = self.policy.low_threshold
        log.info(
            "image GC: usage %.1f%% is over the high threshold %d%%: freeing %d bytes "
            "(%d images planned)",
            plan.usage_percent,
            self.policy.high_threshold,
            plan.bytes_to_free,
            len(plan.removals),
        )
        removed: list[Removal] = []
        skipped: list[Skipped] = []
        errors: list[str] = []
        usage = plan.usage
        for removal in plan.removals:
            try:
                usage = self._usage()
                if usage.percent() < low:
                    break  # the store gave back more than its layer sizes promised
                result = self.images.remove_unused(removal.image_id)
            except StoreLocked as err:
                errors.append(str(err))
                break
            except StorageError as err:
                errors.append(f"removing image {removal.image_id[:12]} failed: {err}")
                continue
            if result == REMOVED:
                log.warning(
                    "image GC: removed image %s (%s), %d bytes",
                    removal.image_id[:12],
                    ", ".join(removal.names) or "no name",
                    removal.bytes,
                )
                removed.append(removal)
            elif result in (IN_USE, BUSY, GONE):
                why = {IN_USE: "a container uses it now", BUSY: "a create holds it"}.get(
                    result, "already gone"
                )
                log.info("image GC: kept image %s: %s", removal.image_id[:12], why)
                skipped.append(Skipped(removal, why))
        try:
            usage = self._usage()
        except StorageError as err:
            errors.append(str(err))
        return GCOutcome(
            plan=plan,
            removed=tuple(removed),
            skipped=tuple(skipped),
            usage_after=usage,
            error="; ".join(errors),
            low_unreachable=usage.percent() >= low,
        )


def policy_of(settings: Settings) -> GCPolicy:
    return GCPolicy(
        high_threshold=settings.image_gc_high_threshold,
        low_threshold=settings.image_gc_low_threshold,
        minimum_age=settings.image_minimum_gc_age,
        gc_all=settings.image_gc_all,
    )


def collector_for(images: ImageService, settings: Settings) -> ImageCollector:
    """The one collector of a store: the infra image is always pinned."""
    return ImageCollector(
        images,
        policy=policy_of(settings),
        pinned=(settings.infra_image, *settings.pinned_images),
    )


def images_named(objects: Iterable[Mapping[str, Any]], infra_image: str) -> set[str]:
    """The images StoragePods and StorageContainers name (what their creates will use)."""
    out: set[str] = set()
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "StoragePod":
            out.add(str(spec.get("infraImage") or infra_image))
            for template in spec.get("containers") or ():
                if isinstance(template, Mapping) and template.get("image"):
                    out.add(str(template["image"]))
        for key in ("image", "imageID"):
            if spec.get(key):
                out.add(str(spec[key]))
    return out


_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")
_HEX = re.compile(r"^[a-f0-9]{12,64}$")


def parse_time(text: str) -> float:
    """Unix seconds of a containers/storage timestamp (RFC 3339, nanoseconds); 0 if none."""
    match = _ISO.match(text.strip()) if isinstance(text, str) else None
    if not match:
        return 0.0
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        stamp = datetime.fromisoformat(base + zone).timestamp()
    except ValueError:
        return 0.0
    return stamp + (float("0." + fraction) if fraction else 0.0)


def container_created(container: StorageContainer) -> float:
    """When a container was made: podstore's ``created-at``, else the store's record."""
    try:
        data = json.loads(container.metadata) if container.metadata else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        value = data.get("created-at")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return parse_time(container.created)


def _by_prefix(refs: Iterable[str], ids: Iterable[str]) -> frozenset[str]:
    """The image IDs that refs of 12 or more hex digits (short IDs) begin."""
    prefixes = [r.removeprefix("sha256:") for r in refs]
    prefixes = [p for p in prefixes if _HEX.match(p)]
    return frozenset(i for i in ids for p in prefixes if i.startswith(p))


__all__ = [
    "FREE_DISK_SPACE_FAILED",
    "IMAGE_GC_FAILED",
    "IMAGE_REMOVED",
    "GCOutcome",
    "ImageCollector",
    "Skipped",
    "collector_for",
    "container_created",
    "images_named",
    "parse_time",
    "policy_of",
]
