"""What podstore keeps in a node's store, read from the store itself.

``podstore ps``, ``pods``, ``images`` and ``inspect`` answer from
containers/storage, never from an API server: the metadata of every container
comes from one listing (:meth:`RuntimeService.list_containers`, which keeps only
containers whose metadata says podstore made them), the mount state of all of
them from one ``mounted`` question, the images from
:meth:`Store.images` (the records behind ``ImageService.list_images``, which
also name each image's top layer, so that its size can be summed). Nothing
here writes to the store or mounts anything: a container's mountpoint is read
from the run config rendered when it was started (``root.path`` of
``config.json`` in its run directory).

A container's ``state`` (``ps``'s STATE column, ``--state``) is derived, as
crictl's CREATED/RUNNING/EXITED are, from what the store shows without
writing: ``Started`` when its layer is mounted; ``Stopped`` when it is not
mounted but was started once (podstore's runtime leaves a
``podstore-started.json`` in the container's directory at each start);
``Created`` when it was never started.

IDs and their prefixes: a prefix must have at least :data:`MIN_PREFIX`
characters, as podman's and crictl's must be distinguishable; a prefix that
several IDs share is refused naming them.

The JSON keys of ``ps`` are the contract's: the snake_case forms of the
metadata keys (``pod_name`` is the ``pod-name`` field: the pod's name in the
store, ``k8s_<pod>_<namespace>_<uid>_<attempt>``; ``name`` is the container's
name in the store) plus ``id``, ``names``, ``infra``, ``mounted``,
``mountpoint``. ``metadata_name`` (the resource's own name) and ``pod`` (the
StoragePod's name) are added for people; tables show those.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.storage import ManagedContainer, RuntimeService
from controller.storage.errors import ContainerNotKnown, StorageError
from controller.storage.runtime import rendered_root
from controller.storage.store import StorageImage, chain_size

CONFIG_FILE = "config.json"
MIN_PREFIX = 3
STATES = ("Created", "Started", "Stopped")
_HEX = frozenset("0123456789abcdef")


class NotFound(LookupError):
    """No podstore container or pod answers to the name, or more than one does.

    ``gone``: nothing answers at all (for the removal commands, done already).
    """

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


def parse_labels(values: Sequence[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings as pairs; ValueError naming a malformed one."""
    out = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValueError(f"label {value!r} is not KEY=VALUE")
        out.append((key, val))
    return out


def _short_prefix(value: str) -> bool:
    return 0 < len(value) < MIN_PREFIX and set(value) <= _HEX


@dataclass(frozen=True)
class ContainerView:
    """A podstore container as ``ps`` shows it."""

    record: ManagedContainer
    mounted: bool
    mountpoint: str
    pod: str  # the StoragePod's name, from the pod's infra container ("" if none)
    state: str = "Created"  # one of STATES

    @property
    def label(self) -> str:
        """``NAMESPACE/NAME`` of the resource (``pod/NAMESPACE/NAME`` for an infra container)."""
        meta = self.record.metadata
        return ("pod " if self.record.infra else "") + f"{meta.namespace}/{meta.metadata_name}"

    def to_json(self) -> dict[str, Any]:
        meta = self.record.metadata
        return {
            "id": self.record.id,
            "names": list(self.record.names),
            "pod_id": meta.pod_id,
            "pod_name": meta.pod_name,
            "namespace": meta.namespace,
            "name": meta.name,
            "image_name": meta.image_name,
            "image_id": meta.image_id,
            "infra": meta.pod,
            "mounted": self.mounted,
            "mountpoint": self.mountpoint,
            "state": self.state,
            "created_at": meta.created_at,
            "metadata_name": meta.metadata_name,
            "pod": self.pod,
            "attempt": meta.attempt,
            "labels": dict(meta.labels),
        }


@dataclass(frozen=True)
class PodView:
    """A pod (its infra container and the number of its members) as ``pods`` shows it."""

    infra: ContainerView
    containers: int

    def to_json(self) -> dict[str, Any]:
        meta = self.infra.record.metadata
        return {
            "id": self.infra.record.id,
            "name": meta.pod_name,
            "metadata_name": meta.metadata_name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "attempt": meta.attempt,
            "containers": self.containers,
            "created_at": meta.created_at,
            "image_name": meta.image_name,
            "image_id": meta.image_id,
            "names": list(self.infra.record.names),
            "labels": dict(meta.labels),
        }


class Inventory:
    """Reads a store once and answers ``ps``, ``pods``, ``images`` and ``inspect``."""

    def __init__(self, runtime: RuntimeService) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self._views: list[ContainerView] | None = None

    # -- containers and pods ------------------------------------------------------

    def containers(self) -> list[ContainerView]:
        """Every podstore container (infra ones too), oldest first."""
        if self._views is None:
            records = self.runtime.list_containers()
            mounted = self.runtime.mounted([r.id for r in records]) if records else set()
            run_dirs = self._run_dirs([r.id for r in records])
            pods = {r.id: r.metadata.metadata_name for r in records if r.infra}
            self._views = sorted(
                (
                    ContainerView(
                        record=r,
                        mounted=r.id in mounted,
                        mountpoint=rendered_root(run_dirs.get(r.id, "")) if r.id in mounted else "",
                        pod=pods.get(r.metadata.pod_id, ""),
                        state="Started"
                        if r.id in mounted
                        else ("Stopped" if self._started(r.id) else "Created"),
                    )
                    for r in records
                ),
                key=lambda v: (v.record.metadata.created_at, v.record.id),
            )
        return list(self._views)

    def forget(self) -> None:
        """Read the store again at the next question (after a change)."""
        self._views = None

    def ps(
        self,
        *,
        pod: str = "",
        namespace: str = "",
        all_: bool = False,
        state: str = "",
        labels: Sequence[tuple[str, str]] = (),
        image: str = "",
    ) -> list[ContainerView]:
        """Member containers (infra ones too with ``all_``), filtered by pod, namespace,
        state, metadata labels and image."""
        out = []
        pod_ids = self._pod_ids(pod) if pod else None
        image_id = self.find_image(image).id if image else None
        for view in self.containers():
            meta = view.record.metadata
            if meta.pod and not all_:
                continue
            if state and view.state != state:
                continue
            if any(meta.labels.get(k) != v for k, v in labels):
                continue
            if image_id is not None and meta.image_id != image_id:
                continue
            if namespace and meta.namespace != namespace:
                continue
            if pod_ids is not None and meta.pod_id not in pod_ids:
                continue
            out.append(view)
        return out

    def pods(self, *, namespace: str = "", name: str = "") -> list[PodView]:
        views = self.containers()
        counts: dict[str, int] = {}
        for v in views:
            if not v.record.infra:
                counts[v.record.metadata.pod_id] = counts.get(v.record.metadata.pod_id, 0) + 1
        out = []
        for v in views:
            meta = v.record.metadata
            if not meta.pod:
                continue
            if namespace and meta.namespace != namespace:
                continue
            if name and name not in (meta.metadata_name, meta.pod_name):
                continue
            out.append(PodView(v, counts.get(v.record.id, 0)))
        return out

    def _pod_ids(self, pod: str) -> set[str]:
        """The pod IDs a ``--pod`` value names: an ID (or its prefix), a pod name
        in the store, or a StoragePod's name."""
        ids = set()
        for v in self.containers():
            meta = v.record.metadata
            if not meta.pod:
                continue
            if pod in (meta.metadata_name, meta.pod_name, *v.record.names) or (
                len(pod) >= 3 and v.record.id.startswith(pod)
            ):
                ids.add(v.record.id)
        return ids

    def find(
        self, id_or_name: str, *, containers_only: bool = False, pods_only: bool = False
    ) -> ContainerView:
        """The one podstore container that ``id_or_name`` names.

        Tried in turn: the full ID, a name in the store, a unique ID prefix, the
        resource's name (``NAME`` or ``NAMESPACE/NAME``; a StoragePod's name finds
        its infra container). Raises :class:`NotFound` when none or several match.
        """
        views = self.containers()
        if pods_only:
            views = [v for v in views if v.record.infra]
        what = "pod" if pods_only else "container" if containers_only else "container or pod"
        if _short_prefix(id_or_name) and not any(
            id_or_name in (*v.record.names, v.record.metadata.metadata_name) for v in views
        ):
            raise NotFound(
                f"ID prefix {id_or_name!r} is too short: give at least {MIN_PREFIX} characters"
            )
        tests = (
            lambda v: v.record.id == id_or_name,
            lambda v: id_or_name in v.record.names,
            lambda v: len(id_or_name) >= 3 and v.record.id.startswith(id_or_name),
            lambda v: (
                id_or_name
                in (
                    v.record.metadata.metadata_name,
                    f"{v.record.metadata.namespace}/{v.record.metadata.metadata_name}",
                )
            ),
        )
        for test in tests:
            found = [v for v in views if test(v)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                choices = ", ".join(
                    f"{v.record.id[:12]} ({v.record.metadata.namespace}/"
                    f"{v.record.metadata.metadata_name})"
                    for v in found
                )
                raise NotFound(f"{id_or_name!r} names more than one {what}: {choices}")
        record = self.store.container(id_or_name) if not pods_only else None
        if record is not None:
            raise NotFound(
                f"container {record.id[:12]} ({id_or_name!r}) was not made by podstore: "
                "podstore leaves it alone"
            )
        raise NotFound(
            f"no {what} that podstore made is called {id_or_name!r}; see `podstore "
            + ("pods`" if pods_only else "ps -a`"),
            gone=True,
        )

    def find_image(self, ref: str) -> StorageImage:
        """The one image ``ref`` names: full ID, unique ID prefix or name."""
        if _short_prefix(ref):
            raise NotFound(f"ID prefix {ref!r} is too short: give at least {MIN_PREFIX} characters")
        records = self.store.images()
        exact = [i for i in records if i.id == ref]
        if exact:
            return exact[0]
        if set(ref) <= _HEX:
            found = [i for i in records if i.id.startswith(ref)]
            if len(found) > 1:
                choices = ", ".join(i.id[:12] for i in found)
                raise NotFound(f"{ref!r} names more than one image: {choices}")
            if found:
                return found[0]
        image = self.runtime.images.resolve(ref)
        if image is None:
            raise NotFound(
                f"no image in the store is called {ref!r}; see `podstore images`", gone=True
            )
        return image

    def inspect(self, id_or_name: str) -> dict[str, Any]:
        """Everything about one container: metadata, directories, mount state, configs."""
        view = self.find(id_or_name)
        record = view.record
        try:
            work_dir = self.store.container_dir(record.id)
            run_dir = self.store.container_run_dir(record.id)
        except ContainerNotKnown as err:
            raise NotFound(f"container {record.id[:12]} went away: {err}") from err
        template = os.path.join(work_dir, CONFIG_FILE)
        rendered = os.path.join(run_dir, CONFIG_FILE)
        out: dict[str, Any] = {
            "id": record.id,
            "names": list(record.names),
            "infra": record.infra,
            "pod_id": record.metadata.pod_id,
            "pod": view.pod,
            "image": record.image,
            "layer": record.layer,
            "created": record.created,
            "metadata": record.metadata.to_dict(),
            "work_dir": work_dir,
            "run_dir": run_dir,
            "mounted": view.mounted,
            "mountpoint": rendered_root(run_dir) if view.mounted else "",
            "config_template": template if os.path.isfile(template) else "",
            "config_path": rendered if view.mounted and os.path.isfile(rendered) else "",
        }
        if record.infra:
            out["members"] = [
                v.record.id
                for v in self.containers()
                if v.record.metadata.pod_id == record.id and not v.record.infra
            ]
        return out

    # -- images -------------------------------------------------------------------

    def images(self) -> list[dict[str, Any]]:
        """Every image in the store, with its size and how many podstore containers use it."""
        # The records behind ImageService.list_images(), read directly because
        # they also name each image's top layer, from which its size is summed.
        records = self.store.images()
        layer_sizes = self._layer_sizes() if records else {}
        used: dict[str, int] = {}
        for v in self.containers():
            used[v.record.metadata.image_id] = used.get(v.record.metadata.image_id, 0) + 1
        out = []
        for image in sorted(records, key=lambda i: (i.names[0] if i.names else "~", i.id)):
            out.append(
                {
                    "id": image.id,
                    "names": list(image.names),
                    "digest": image.digest,
                    "size": chain_size(image.layer, layer_sizes) or image.size,
                    "containers": used.get(image.id, 0),
                }
            )
        return out

    def _layer_sizes(self) -> dict[str, tuple[str, int]]:
        """layer ID -> (parent ID, size on disk), from one listing; {} if it fails."""
        try:
            return self.store.layer_sizes()
        except StorageError:
            return {}

    # -- helpers ------------------------------------------------------------------

    def _started(self, container_id: str) -> bool:
        try:
            return self.runtime.was_started(container_id)
        except StorageError:  # gone meanwhile, or not podstore's to ask about
            return False

    def _run_dirs(self, ids: Sequence[str]) -> dict[str, str]:
        """Run directories of some containers, with as few processes as can be.

        containers/storage puts every run directory at the same place relative to
        the container's ID; the first one asked for shows the pattern, which is
        used for the others. Only run directories that exist are given (a
        container never started has none).
        """
        out: dict[str, str] = {}
        pattern: tuple[str, str] | None = None
        for cid in ids:
            if pattern is not None:
                guess = pattern[0] + cid + pattern[1]
                if os.path.isdir(guess):
                    out[cid] = guess
                continue
            try:
                found = self.store.container_run_dir(cid)
            except StorageError:
                continue
            if os.path.isdir(found):
                out[cid] = found
            head, sep, tail = found.partition(cid)
            if sep and cid not in tail:
                pattern = (head, tail)
        return out
