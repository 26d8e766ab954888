"""Which images an image garbage-collection pass removes: a pure plan.

The kubelet's image GC, on podstore's terms. When the filesystem that holds the
store passes the high threshold, images are removed least recently used first
until the projected usage is under the low threshold, or nothing removable is
left. Never removed: an image any container in the store uses (podstore's or
another tool's), a pinned one, one a create of this pass is about to use, one
younger than the minimum age, and, unless ``gc_all``, one podstore did not pull.

What a removal frees is worked out per layer: layers shared with an image that
stays are not counted, so the projection does not promise space that the store
cannot give back. Nothing here reads the store or the clock: the executor
(:mod:`controller.sync.imagegc`) observes, this plans, it removes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# Why an image stays (Kept.why).
IN_USE = "in use"
PINNED = "pinned"
WANTED = "about to be used"
FOREIGN = "not pulled by podstore"
TOO_YOUNG = "younger than the minimum age"
NOT_NEEDED = "not needed"


@dataclass(frozen=True)
class ImageRecord:
    """One image as GC sees it."""

    id: str
    names: tuple[str, ...]
    # Its layer chain, top first: (layer ID, bytes on disk). Shared layers appear in
    # several images' chains.
    layers: tuple[tuple[str, int], ...]
    # Unix seconds of its last known use; 0 when never recorded.
    last_used: float
    # Unix seconds it came into the store (the kubelet's "first detected").
    created: float
    # Pulled by podstore (True) or put in the store by another tool (False).
    pulled: bool

    @property
    def size(self) -> int:
        return sum(size for _, size in self.layers)

    @property
    def recency(self) -> float:
        """When it was last used, or, never used, when it arrived."""
        return max(self.last_used, self.created)


@dataclass(frozen=True)
class FsUsage:
    """The filesystem holding the store: bytes used and capacity."""

    used: int
    total: int

    def percent(self, used: int | None = None) -> float:
        if self.total <= 0:
            return 100.0
        return 100.0 * (self.used if used is None else used) / self.total


@dataclass(frozen=True)
class GCPolicy:
    """The kubelet's image-GC settings."""

    high_threshold: int = 85  # percent of capacity that starts a collection
    low_threshold: int = 80  # percent of capacity a collection brings usage under
    minimum_age: float = 120.0  # seconds an image stays before it may be collected
    gc_all: bool = False  # also collect images podstore did not pull


@dataclass(frozen=True)
class GCInput:
    """Everything one GC pass decides on."""

    images: tuple[ImageRecord, ...]
    # Image IDs any container in the store is made from.
    in_use: frozenset[str]
    # Image IDs, or store names of images, that are never collected.
    pinned: frozenset[str]
    # Image IDs or store names a create (or pull) of this pass is about to use.
    wanted: frozenset[str]
    usage: FsUsage
    policy: GCPolicy
    now: float


@dataclass(frozen=True)
class Removal:
    """One image to remove, and the bytes its removal is expected to give back."""

    image_id: str
    names: tuple[str, ...]
    bytes: int
    last_used: float


@dataclass(frozen=True)
class Kept:
    """An image that stays, and why."""

    image_id: str
    names: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class GCPlan:
    """What one GC pass does."""

    # Usage reached the high threshold: a collection is due.
    needed: bool
    usage: FsUsage
    # Bytes to free for usage to go under the low threshold (0 when not needed).
    bytes_to_free: int
    removals: tuple[Removal, ...]
    kept: tuple[Kept, ...]
    # Usage was over the high threshold and removing every removable image does not
    # bring it under the low one (the kubelet's FreeDiskSpaceFailed).
    low_unreachable: bool
    # Set when no plan can be made (the kubelet's InvalidDiskCapacity).
    problem: str = ""

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in self.removals)

    @property
    def usage_percent(self) -> float:
        return self.usage.percent()

    @property
    def projected_percent(self) -> float:
        """Usage once the removals are done, as far as the layer sizes tell."""
        return self.usage.percent(max(self.usage.used - self.bytes_freed, 0))


def matches(image: ImageRecord, keys: frozenset[str]) -> bool:
    """Whether ``keys`` (image IDs and store names) name the image."""
    return image.id in keys or any(name in keys for name in image.names)


def plan(gc: GCInput) -> GCPlan:
    """The removals of one pass, least recently used first."""
    usage = gc.usage
    policy = gc.policy
    if usage.total <= 0:
        return GCPlan(
            needed=False,
            usage=usage,
            bytes_to_free=0,
            removals=(),
            kept=tuple(Kept(i.id, i.names, NOT_NEEDED) for i in gc.images),
            low_unreachable=False,
            problem=f"the filesystem reports a capacity of {usage.total} bytes",
        )
    if usage.percent() < policy.high_threshold:
        return GCPlan(
            needed=False,
            usage=usage,
            bytes_to_free=0,
            removals=(),
            kept=tuple(Kept(i.id, i.names, NOT_NEEDED) for i in gc.images),
            low_unreachable=False,
        )
    target = usage.total * policy.low_threshold // 100
    to_free = max(usage.used - target, 0)

    kept: list[Kept] = []
    candidates: list[ImageRecord] = []
    for image in gc.images:
        why = _why_kept(image, gc)
        if why:
            kept.append(Kept(image.id, image.names, why))
        else:
            candidates.append(image)
    candidates.sort(key=lambda i: (i.recency, i.created, i.id))

    # How many images that stay hold each layer: a layer is freed only when the last
    # image holding it goes.
    holders: Counter[str] = Counter()
    for image in gc.images:
        holders.update({layer for layer, _ in image.layers})

    removals: list[Removal] = []
    freed = 0
    for index, image in enumerate(candidates):
        if freed >= to_free:
            kept.extend(Kept(i.id, i.names, NOT_NEEDED) for i in candidates[index:])
            break
        gives = 0
        for layer, size in dict(image.layers).items():
            holders[layer] -= 1
            if holders[layer] == 0:
                gives += size
        freed += gives
        removals.append(Removal(image.id, image.names, gives, image.last_used))
    return GCPlan(
        needed=True,
        usage=usage,
        bytes_to_free=to_free,
        removals=tuple(removals),
        kept=tuple(kept),
        low_unreachable=freed < to_free,
    )


def _why_kept(image: ImageRecord, gc: GCInput) -> str:
    if image.id in gc.in_use:
        return IN_USE
    if matches(image, gc.pinned):
        return PINNED
    if matches(image, gc.wanted):
        return WANTED
    if not image.pulled and not gc.policy.gc_all:
        return FOREIGN
    if gc.now - image.created < gc.policy.minimum_age:
        return TOO_YOUNG
    return ""


__all__ = [
    "FOREIGN",
    "IN_USE",
    "NOT_NEEDED",
    "PINNED",
    "TOO_YOUNG",
    "WANTED",
    "FsUsage",
    "GCInput",
    "GCPlan",
    "GCPolicy",
    "ImageRecord",
    "Kept",
    "Removal",
    "matches",
    "plan",
]
