"""The steps a plan asks for: small frozen values, run in order by the executor.

A plan is a tuple of these. The executor (:mod:`controller.sync.execute`)
runs them through ``controller.storage`` and stops at the first that fails;
an :class:`Emit` runs only when every step before it succeeded, so an Event
never reports what did not happen. Being plain values, the steps of many
objects can be compared, logged, and batched by an executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.reconcile.model import ContainerSpec, ObjectRef


@dataclass(frozen=True)
class PullImage:
    """Pull ``image`` (with the named pull secrets of ``namespace``) for ``owner``."""

    owner: ObjectRef
    image: str
    namespace: str
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateSandbox:
    pod: ObjectRef
    pod_id: str
    image: str
    attempt: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateContainer:
    container: ObjectRef
    pod: ObjectRef
    container_id: str
    pod_id: str
    attempt: int
    spec: ContainerSpec
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteTemplate:
    """Write the runtime config template of ``container_id``.

    For a container that exists already (``update_labels``), its metadata's labels
    become ``labels`` too: they carry the template's hash, which is how the next
    pass knows the template is in step with the spec.
    """

    container_id: str
    spec: ContainerSpec
    pod: ObjectRef
    labels: Mapping[str, str] = field(default_factory=dict)
    update_labels: bool = False


@dataclass(frozen=True)
class NameLayer:
    """Give a container's layer its ``<name>-layer`` name (a killed create left it unnamed)."""

    container_id: str


@dataclass(frozen=True)
class Mount:
    container_id: str


@dataclass(frozen=True)
class RenderConfig:
    """Render the run config; ``mountpoint`` empty means the one the mount step returned."""

    container_id: str
    mountpoint: str = ""


@dataclass(frozen=True)
class Unmount:
    container_id: str


@dataclass(frozen=True)
class Remove:
    """Remove a storage container (with its members when it is a sandbox)."""

    container_id: str
    sandbox: bool = False


@dataclass(frozen=True)
class Emit:
    """A Kubernetes-style Event about ``obj``."""

    type: str
    reason: str
    message: str


Action = (
    PullImage
    | CreateSandbox
    | CreateContainer
    | WriteTemplate
    | NameLayer
    | Mount
    | RenderConfig
    | Unmount
    | Remove
    | Emit
)
