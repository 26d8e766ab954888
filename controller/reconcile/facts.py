"""What was observed on the node, as typed values the plan functions read.

The observer (:mod:`controller.sync.observe`) fills these in from one
:class:`~controller.sync.view.NodeView` snapshot and a few file checks; the
plan functions read nothing else about the node. Frozen values: a plan made
from the same facts is the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stored:
    """One storage container of podstore's as the store lists it."""

    id: str
    infra: bool = False
    pod_id: str = ""
    mounted: bool = False
    # False when a create was killed between making the container and naming its layer.
    layer_named: bool = True
    image_name: str = ""
    image_id: str = ""
    created_at: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dirs:
    """A storage container's directories: the template's and the run config's."""

    work: str
    run: str


@dataclass(frozen=True)
class PodFacts:
    """What the store holds for one StoragePod."""

    # Every storage container labelled with the pod's UID (its sandboxes, any attempt).
    stored: tuple[Stored, ...] = ()
    # The directories of the wanted sandbox, when it exists.
    dirs: Dirs | None = None
    # None when not looked at (the sandbox exists, so the image does not matter).
    image_present: bool | None = None


@dataclass(frozen=True)
class ContainerFacts:
    """What the store holds for one StorageContainer under its pod's current sandbox."""

    # Every storage container labelled with the container's UID (any sandbox).
    stored: tuple[Stored, ...] = ()
    dirs: Dirs | None = None
    # The template config.json is in the container directory.
    template_present: bool = False
    # The root path of the rendered run config ("" when none is there).
    rendered_root: str = ""
    # None when not looked at (the container exists and the image is not needed).
    image_present: bool | None = None
    # The sandbox of the pod is in the store (its status may lag behind).
    sandbox_present: bool = False


@dataclass(frozen=True)
class Backoff:
    """A retry state kept between passes: failures so far and when to try again."""

    failures: int = 0
    until: float = 0.0
