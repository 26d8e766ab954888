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
from controller.storage.store import chain_size

CONFIG_FILE = "config.json"


class NotFound(LookupError):
    """No podstore container or pod answers to the name, or more than one does."""


@dataclass(frozen=True)
class ContainerView:
    """A podstore container as ``ps`` shows it."""

    record: ManagedContainer
    mounted: bool
    mountpoint: str
    pod: str  # the StoragePod's name, from the pod's infra container ("" if none)

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
            run_dirs = self._run_dirs([r.id for r in records if r.id in mounted])
            pods = {r.id: r.metadata.metadata_name for r in records if r.infra}
            self._views = sorted(
                (
                    ContainerView(
                        record=r,
                        mounted=r.id in mounted,
                        mountpoint=rendered_root(run_dirs.get(r.id, "")),
                        pod=pods.get(r.metadata.pod_id, ""),
                    )
                    for r in records
                ),
                key=lambda v: (v.record.metadata.created_at, v.record.id),
            )
        return list(self._views)

    def ps(self, *, pod: str = "", namespace: str = "", all_: bool = False) -> list[ContainerView]:
        """Member containers (infra ones too with ``all_``), filtered by pod and namespace."""
        out = []
        pod_ids = self._pod_ids(pod) if pod else None
        for view in self.containers():
            meta = view.record.metadata
            if meta.pod and not all_:
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

    def find(self, id_or_name: str) -> ContainerView:
        """The one podstore container that ``id_or_name`` names.

        Tried in turn: the full ID, a name in the store, a unique ID prefix, the
        resource's name (``NAME`` or ``NAMESPACE/NAME``; a StoragePod's name finds
        its infra container). Raises :class:`NotFound` when none or several match.
        """
        views = self.containers()
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
                raise NotFound(f"{id_or_name!r} names more than one container: {choices}")
        raise NotFound(
            f"no container or pod that podstore made is called {id_or_name!r}; see `podstore ps -a`"
        )

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

    def _run_dirs(self, ids: Sequence[str]) -> dict[str, str]:
        """Run directories of some containers, with as few processes as can be.

        containers/storage puts every run directory at the same place relative to
        the container's ID; the first one asked for shows the pattern, which is
        used for the others when it holds (the folder exists), and asked for again
        when it does not.
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
            out[cid] = found
            head, sep, tail = found.partition(cid)
            if sep and cid not in tail:
                pattern = (head, tail)
        return out
