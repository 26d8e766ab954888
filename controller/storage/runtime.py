"""The seed's RuntimeServer: pods and containers as containers in the store.

A pod is the set of containers whose metadata carries its ``pod-id``; its
infra container's ID is the pod ID and its names include the pod's name. A
container's layer gets the extra name ``<container name>-layer``. The runtime
config template lives in the container directory as ``config.json``; each
start mounts the layer and renders it into the run directory with
``root.path`` set to the mountpoint, which makes the run directory an OCI
bundle.

Every call is safe to repeat and to interrupt. A create finds a container it
made before (same ID or name, same metadata) and finishes it instead of
making a second; a create that fails part-way deletes what it made. Removing,
deleting or stopping what is already gone succeeds. Containers whose metadata
does not say ``managed-by: podstore`` are never changed.

A create is two processes, create-container and add-names on the layer (the
layer cannot be named at create time; add-names takes one layer per process;
a caller may take the second off the container's way to its start):
the container's directories are derived as containers/storage builds them,
checked against the CLI once per store. A start is one mount, a stop one
unmount, a delete one delete-container of a container this process already
knows. The ``*_many`` calls do the same for many containers in one process per
verb, with a result per container.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from controller.storage import names
from controller.storage.errors import (
    ContainerNotKnown,
    ImageNotFound,
    InvalidContainerID,
    InvalidImageName,
    InvalidSandboxID,
    NameConflict,
    NotOurs,
    StorageError,
)
from controller.storage.images import ImageConfig, ImageService
from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.ocispec import render
from controller.storage.store import StorageContainer, StorageImage, Store

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
# In a container's directory, beside the template: it was started at least once.
STARTED_FILE = "podstore-started.json"


@dataclass(frozen=True)
class ContainerInfo:
    """What a create returns (the seed's ContainerInfo)."""

    id: str
    dir: str
    run_dir: str
    config: ImageConfig | None
    # What the container's metadata field holds (podstore's addition).
    metadata: RuntimeContainerMetadata | None = None
    # The container's layer, and whether the create left naming it to the caller.
    layer: str = ""
    layer_unnamed: bool = False


@dataclass(frozen=True)
class ManagedContainer:
    """A podstore container as the store lists it: its record and parsed metadata."""

    id: str
    names: tuple[str, ...]
    image: str
    layer: str
    created: str
    metadata: RuntimeContainerMetadata

    @property
    def infra(self) -> bool:
        return self.metadata.pod


@dataclass(frozen=True)
class ContainerRequest:
    """Everything a create takes, as one value: the seed's CreateContainer arguments.

    ``sandbox`` is a pod's infra container (its ID is ``pod_id``); otherwise a member of
    the pod ``pod_id``. Either ``image_name`` or ``image_id`` may be empty, not both.
    Every field is validated by :meth:`RuntimeService.create` before a command runs.
    """

    pod_name: str
    pod_id: str
    container_name: str
    metadata_name: str
    image_name: str = ""
    image_id: str = ""
    container_id: str = ""
    uid: str = ""
    namespace: str = ""
    attempt: int = 0
    mount_label: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    sandbox: bool = False


class RuntimeService:
    """Creates, starts, stops and removes pods and containers in one store."""

    def __init__(
        self,
        images: ImageService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.images = images
        self.store: Store = images.store
        self.clock = clock
        self._lock = threading.Lock()
        # IDs of containers this process made or inspected and found to be
        # podstore's: a stop or delete of one needs no second inspection.
        self._ours: dict[str, RuntimeContainerMetadata] = {}
        # Directories never change for a container ID.
        self._dirs: dict[str, tuple[str, str]] = {}

    # -- create -------------------------------------------------------------

    def create_pod_sandbox(
        self,
        *,
        pod_name: str,
        pod_id: str,
        image_name: str = "",
        image_id: str = "",
        container_name: str,
        metadata_name: str,
        uid: str,
        namespace: str,
        attempt: int = 0,
        mount_label: str = "",
        labels: Mapping[str, str] | None = None,
        auth_file: str | None = None,
    ) -> ContainerInfo:
        """Create a pod's infra container, whose ID is the pod ID (the seed's API)."""
        return self.create(
            ContainerRequest(
                sandbox=True,
                pod_name=pod_name,
                pod_id=pod_id,
                container_name=container_name,
                container_id=pod_id,
                metadata_name=metadata_name,
                image_name=image_name,
                image_id=image_id,
                uid=uid,
                namespace=namespace,
                attempt=attempt,
                mount_label=mount_label,
                labels=dict(labels or {}),
            ),
            auth_file=auth_file,
        )

    def create_container(
        self,
        *,
        pod_name: str,
        pod_id: str,
        image_name: str = "",
        image_id: str = "",
        container_name: str,
        container_id: str = "",
        metadata_name: str,
        attempt: int = 0,
        mount_label: str = "",
        uid: str = "",
        namespace: str = "",
        labels: Mapping[str, str] | None = None,
        auth_file: str | None = None,
    ) -> ContainerInfo:
        """Create a member container of a pod (the seed's API)."""
        return self.create(
            ContainerRequest(
                pod_name=pod_name,
                pod_id=pod_id,
                container_name=container_name,
                container_id=container_id,
                metadata_name=metadata_name,
                image_name=image_name,
                image_id=image_id,
                uid=uid,
                namespace=namespace,
                attempt=attempt,
                mount_label=mount_label,
                labels=dict(labels or {}),
            ),
            auth_file=auth_file,
        )

    def create(
        self,
        request: ContainerRequest,
        *,
        auth_file: str | None = None,
        name_layer: bool = True,
    ) -> ContainerInfo:
        """Create what ``request`` describes: a pod's infra container or one of its members.

        ``name_layer=False`` leaves the ``<container name>-layer`` name to the caller
        (:meth:`name_new_layer`, one process, which need not come before the start): the
        returned info says ``layer_unnamed``. The name helps people who read the store;
        nothing podstore does depends on it, and a listing finds a layer left unnamed.
        """
        if not isinstance(request, ContainerRequest):
            raise StorageError(f"a create takes a ContainerRequest, not {type(request).__name__}")
        pod, pod_name, pod_id = request.sandbox, request.pod_name, request.pod_id
        image_name, image_id = request.image_name, request.image_id
        container_name, container_id = request.container_name, request.container_id
        metadata_name, uid, namespace = request.metadata_name, request.uid, request.namespace
        attempt, mount_label, labels = request.attempt, request.mount_label, request.labels
        names.pod_name(pod_name)
        if pod:
            names.sandbox_id(pod_id)
        elif not isinstance(pod_id, str) or not pod_id:
            raise InvalidSandboxID("pod ID is empty; a container belongs to a pod")
        else:
            names.sandbox_id(pod_id)
        names.container_name(container_name)
        if container_id:
            names.container_id(container_id)
        names.text(metadata_name, "metadata name")
        names.text(uid, "pod UID")
        names.text(namespace, "namespace")
        names.text(mount_label, "mount label")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise StorageError(f"attempt {attempt!r} must be a non-negative integer")
        if not image_name and not image_id:
            raise InvalidImageName("neither an image name nor an image ID was given")
        if image_id:
            names.image_id(image_id)
        if image_name:
            names.image_reference(image_name)

        container_names = [container_name]
        if pod and pod_name != container_name:
            container_names.append(pod_name)
        # Twice at most: a cached name-to-ID answer may name an image that was
        # removed behind podstore's back; then look again (and pull if need be).
        for last_try in (False, True):
            image = self._image_for(image_name, image_id, auth_file)
            wanted = RuntimeContainerMetadata(
                pod=pod,
                pod_name=pod_name,
                pod_id=pod_id,
                image_name=image_name or (image.names[0] if image.names else ""),
                image_id=image.id,
                name=container_name,
                metadata_name=metadata_name,
                uid=uid,
                namespace=namespace,
                attempt=attempt,
                created_at=int(self.clock()),
                mount_label=mount_label,
                labels=dict(labels or {}),
            )
            try:
                # Held from here, image GC leaves the image be; if GC took it just before,
                # the create finds it gone and looks again (the retry below).
                with self.images.using(image.id):
                    created = self.store.create_container(
                        image.id, id=container_id, names=container_names, metadata=wanted.to_json()
                    )
            except NameConflict:
                return self._adopt(
                    container_id, container_names, wanted, image_given=bool(image_id)
                )
            except ImageNotFound:
                for key in (image_id, image_name):
                    if key:
                        self.images.forget(key)
                if last_try:
                    raise
                continue
            return self._finish(created, container_name, wanted, name_layer=name_layer)
        raise AssertionError("unreachable: the last try returns or raises")

    def _image_for(self, image_name: str, image_id: str, auth_file: str | None) -> StorageImage:
        if image_id:
            image = self.images.resolve(image_id)
            if image is not None:
                return image
            if not image_name:
                raise ImageNotFound(
                    f"image ID {image_id!r} is not in the store and no image name was given "
                    "to pull it by"
                )
            image = self.images.ensure(image_name, auth_file=auth_file)
            if not image.id.startswith(names.image_id(image_id)):
                raise ImageNotFound(
                    f"image {image_name!r} was pulled as {image.id[:12]}, not the requested "
                    f"image ID {image_id!r}"
                )
            return image
        return self.images.ensure(image_name, auth_file=auth_file)

    def _finish(
        self,
        created: StorageContainer,
        container_name: str,
        wanted: RuntimeContainerMetadata,
        *,
        name_layer: bool = True,
    ) -> ContainerInfo:
        """The steps after create-container; on failure the container is deleted again."""
        try:
            if name_layer:
                self.store.add_names(created.layer, [f"{container_name}-layer"])
            info = replace(
                self._info(created.id, wanted.image_id),
                metadata=wanted,
                layer=created.layer,
                layer_unnamed=not name_layer,
            )
        except BaseException:
            log.warning("create of %s failed part-way; deleting it", created.id)
            try:
                self.store.delete_container(created.id)
            except StorageError:
                log.exception("could not delete half-made container %s", created.id)
            raise
        with self._lock:
            self._ours[created.id] = wanted
        return info

    def _adopt(
        self,
        container_id: str,
        container_names: Sequence[str],
        wanted: RuntimeContainerMetadata,
        *,
        image_given: bool,
    ) -> ContainerInfo:
        """A create found its ID or name taken: return the container if it is this one."""
        holder = None
        for key in [container_id, *container_names]:
            if key:
                holder = self.store.container(key)
                if holder is not None:
                    break
        if holder is None:
            raise NameConflict(
                f"the ID or name of container {wanted.name!r} is in use, but no container "
                "holds it now; try again"
            )
        existing = RuntimeContainerMetadata.from_json(holder.metadata)
        expected = (
            wanted
            if image_given
            else replace(wanted, image_id=existing.image_id if existing else "")
        )
        if existing is None:
            raise NameConflict(
                f"container {wanted.name!r} cannot be created: its ID or name is held by "
                f"container {holder.id[:12]} ({', '.join(holder.names)}), which podstore did "
                "not make"
            )
        same = (
            existing.managed
            and existing.same_identity(expected)
            and (not container_id or holder.id == container_id)
        )
        if not same:
            raise NameConflict(
                f"container {wanted.name!r} (pod {wanted.pod_name!r}) cannot be created: its "
                f"ID or name is held by container {holder.id[:12]} ({', '.join(holder.names)}) "
                "which is a different container; remove it or choose another name"
            )
        # The earlier create may have stopped before its layer got its name.
        layer_name = f"{wanted.name}-layer"
        if layer_name not in self.store.layer_names(holder.layer):
            self.store.add_names(holder.layer, [layer_name])
        with self._lock:
            self._ours[holder.id] = existing
        return replace(self._info(holder.id, existing.image_id), metadata=existing)

    def _info(self, container_id: str, image_id: str) -> ContainerInfo:
        work, run = self._dirs_of(container_id)
        config = self.images.config(image_id) if image_id else None
        return ContainerInfo(container_id, work, run, config)

    def _dirs_of(self, container_id: str, *, known: bool = True) -> tuple[str, str]:
        """The container's directories, made if need be. ``known``: the caller knows the
        container exists (it made, listed or mounted it), so they may be derived."""
        with self._lock:
            dirs = self._dirs.get(container_id)
        if dirs is None:
            dirs = self.store.container_dirs(container_id, known=known)
            with self._lock:
                self._dirs[container_id] = dirs
        # Made every time: a container removed behind podstore's back and made again
        # under the same ID has the same paths, but not the folders.
        for path in dirs:
            make_private_dirs(path)
        return dirs

    # -- remove -------------------------------------------------------------

    def remove_pod_sandbox(self, id_or_name: str) -> None:
        """Remove a pod: its member containers first, then its infra container.

        One listing of the store finds both the infra container and the members.
        """
        names.id_or_name(id_or_name)
        listing = self.store.containers()
        infra = next((c for c in listing if c.id == id_or_name or id_or_name in c.names), None) or (
            self.store.container(id_or_name) if names.is_full_id(id_or_name) is False else None
        )
        if infra is None:
            return
        meta = self._owned(infra)
        if not meta.pod:
            raise InvalidSandboxID(
                f"{id_or_name!r} names container {infra.id[:12]}, which is not a pod's infra "
                "container"
            )
        members = []
        for record in listing:
            member = RuntimeContainerMetadata.from_json(record.metadata)
            if member and member.managed and member.pod_id == infra.id and not member.pod:
                members.append(record.id)
        # The members in one process; the infra container only once they are all gone.
        for cid, result in self.store.delete_many(members).items():
            if isinstance(result, StorageError):
                raise result
            self._forget(cid)
        self._delete(infra.id)

    def delete_container(self, id_or_name: str) -> None:
        """Delete a container (unmounting it); one already gone is not an error."""
        container_id = self._ours_or_none(id_or_name)
        if container_id is not None:
            self._delete(container_id)

    def _ours_or_none(self, id_or_name: str) -> str | None:
        """The ID of podstore's container ``id_or_name``; None when the store has none.

        A container this process already knows needs no second inspection; one podstore
        did not make raises NotOurs.
        """
        names.id_or_name(id_or_name)
        with self._lock:
            if id_or_name in self._ours:
                return id_or_name
        record = self.store.container(id_or_name)
        if record is None:
            return None
        self._owned(record)
        return record.id

    def _delete(self, container_id: str) -> None:
        self.store.delete_container(container_id)
        with self._lock:
            self._ours.pop(container_id, None)
            self._dirs.pop(container_id, None)

    # -- start and stop -----------------------------------------------------

    def start_container(
        self, id_or_name: str, *, mounted: bool | None = False, layer: str = ""
    ) -> str:
        """Mount the container's layer and render its run config; returns the mountpoint.

        A container podstore mounted already (a start killed before its run config was
        rendered) is not mounted a second time: its mountpoint is found where it is
        (``mounted`` says what the caller knows, as podstore's executor does from its
        store listing; None asks the store, one more process).
        """
        container_id, meta = self._known_or_inspect(id_or_name)
        # Without SELinux a label is a mount option the kernel refuses (overlay's
        # context=); podman and cri-o apply labels only where SELinux is on.
        label = meta.mount_label if selinux_enabled() else ""
        if mounted is None:
            mounted = container_id in self.store.mounted([container_id])
        try:
            if mounted:
                mountpoint = self.store.mountpoint(container_id, layer)
                self.render_config(container_id, mountpoint)
                self._mark_started(container_id)
                return mountpoint
            mountpoint = self.store.mount(container_id, label=label)
        except ContainerNotKnown:
            with self._lock:  # removed behind podstore's back
                self._ours.pop(container_id, None)
            raise
        try:
            self.render_config(container_id, mountpoint)
            self._mark_started(container_id)
        except BaseException:
            # A failed start takes back its own mount (and only that one).
            try:
                self.store.unmount(container_id, force=False)
            except StorageError:
                log.exception("could not undo the mount of %s after a failed start", container_id)
            raise
        return mountpoint

    def _mark_started(self, container_id: str) -> None:
        """Remember in the container's directory that it was started once (``ps``'s
        Stopped, not Created, once it is unmounted again); written beside the template."""
        work, _ = self._dirs_of(container_id)
        # Only whether the file is there is read: after a crash it is there (whole or
        # empty) or not, and a container that reads Created instead of Stopped is all
        # that can be lost, so the start does not wait for the disk.
        write_json_atomic(
            os.path.join(work, STARTED_FILE), {"started-at": int(self.clock())}, durable=False
        )

    def was_started(self, container_id: str) -> bool:
        """Whether podstore started the container at least once (see :meth:`start_container`).

        Reads only: the directory is not made when it is not there."""
        with self._lock:
            dirs = self._dirs.get(container_id)
        work = dirs[0] if dirs else self.store.container_dirs(container_id)[0]
        return os.path.exists(os.path.join(work, STARTED_FILE))

    def render_config(self, container_id: str, mountpoint: str) -> str | None:
        """Write ``config.json`` into the run dir from the template, if there is one."""
        work, run = self._dirs_of(container_id)
        template_path = os.path.join(work, CONFIG_FILE)
        try:
            with open(template_path, encoding="utf-8") as handle:
                template = json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise StorageError(
                f"runtime config template {template_path} is not valid JSON: {err}; write it again"
            ) from err
        target = os.path.join(run, CONFIG_FILE)
        config = render(template, mountpoint)
        linux = config.get("linux")
        if isinstance(linux, dict) and not selinux_enabled():
            # As for the layer's mount: runc would add the label to every mount it
            # makes (/dev, ...) and the kernel refuses it where SELinux is off.
            linux.pop("mountLabel", None)
        # Rendered again at every start, in the run root (a tmpfs on a node, emptied by a
        # reboot with the mounts it names): the start need not wait for the disk.
        write_json_atomic(target, config, durable=False)
        return target

    def write_config_template(self, id_or_name: str, template: Mapping[str, Any]) -> str:
        """Keep ``template`` as the container's runtime config template; returns its path."""
        container_id, _ = self._known_or_inspect(id_or_name)
        work, _ = self._dirs_of(container_id)
        path = os.path.join(work, CONFIG_FILE)
        write_json_atomic(path, template)
        return path

    def read_config_template(self, id_or_name: str) -> dict[str, Any] | None:
        """The container's runtime config template, or None when it has none."""
        record, _ = self._inspect(id_or_name)
        work, _ = self._dirs_of(record.id)
        try:
            with open(os.path.join(work, CONFIG_FILE), encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def stop_container(self, id_or_name: str) -> None:
        """Unmount the container's layer; one not mounted, or gone, is not an error."""
        container_id = self._ours_or_none(id_or_name)
        if container_id is not None and self.store.unmount(container_id, force=True):
            # The rendered config names a mountpoint that is gone now.
            # A process that did not start it (a restarted agent) asks the store.
            with self._lock:
                dirs = self._dirs.get(container_id)
            try:
                run_dir = dirs[1] if dirs else self.store.container_dirs(container_id)[1]
            except ContainerNotKnown:
                return  # deleted meanwhile: its run dir went with it
            _remove_quietly(os.path.join(run_dir, CONFIG_FILE))

    # -- several containers at once ------------------------------------------
    #
    # What one reconcile pass does to many containers, in as few processes as
    # containers/storage allows: one ``container --json`` for those this process does
    # not know yet, one ``mounted`` (unless the caller knows), one ``mount`` per mount
    # label, one ``unmount``, one ``delete-container``. Each result is per key (the ID
    # or name given): one container's failure fails only that key. Keys are validated
    # before anything is run.

    def create_many(
        self, requests: Sequence[ContainerRequest | Mapping[str, Any]], *, workers: int = 4
    ) -> list[ContainerInfo | StorageError]:
        """Several :meth:`create_container` calls (each request holds its keyword
        arguments) run side by side on up to ``workers`` threads; per request, in order,
        its ContainerInfo or its error.

        A create is two processes that cannot be batched (``create-container`` makes one
        container, ``add-names`` names one layer), but much of each process is spent
        outside the store's locks (start-up, driver set-up), so creates overlap: two
        members of a pod at 1,000 containers take about 0.7x the time one after the other.
        """

        def one(request: ContainerRequest | Mapping[str, Any]) -> ContainerInfo | StorageError:
            try:
                if isinstance(request, ContainerRequest):
                    return self.create(request)
                return self.create_container(**request)
            except StorageError as err:
                return err

        if len(requests) <= 1 or workers <= 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(min(workers, len(requests)), "podstore-create") as pool:
            return list(pool.map(one, requests))

    def containers_many(
        self, ids_or_names: Iterable[str]
    ) -> dict[str, ManagedContainer | StorageError | None]:
        """Several containers by ID or name (one process): None for those the store does
        not have, NotOurs for containers podstore did not make."""
        keys, results = _keys(ids_or_names)
        if keys:
            try:
                found = self.store.containers_many(keys)
            except StorageError as err:
                return {**results, **dict.fromkeys(keys, err)}
            for key in keys:
                record = found.get(key)
                if record is None:
                    results[key] = None
                    continue
                try:
                    meta = self._owned(record)
                except NotOurs as err:
                    results[key] = err
                    continue
                results[key] = ManagedContainer(
                    record.id, record.names, record.image, record.layer, record.created, meta
                )
        return results

    def start_many(
        self, ids_or_names: Iterable[str], *, mounted: Collection[str] | None = None
    ) -> dict[str, str | StorageError]:
        """Start several containers: mount those not mounted yet (each stays mounted
        once) and render each one's run config; per key its mountpoint or its error.

        ``mounted`` is the set of container IDs the caller knows to be mounted (from its
        own ``mounted`` call this pass); without it one ``mounted`` process asks. A
        container already mounted is not mounted again: its mountpoint is the one its
        rendered config names (or, without one, is asked from a mount taken back at once).
        An unknown key gets InvalidContainerID (ContainerNotKnown).
        """
        resolved, results = self._resolve_many(ids_or_names, fresh=True)
        out: dict[str, str | StorageError] = dict(results)
        ids = list(dict.fromkeys(cid for cid, _ in resolved.values()))
        if not ids:
            return out
        by_id = dict(resolved.values())
        if mounted is None:
            try:
                already = self.store.mounted(ids)
            except StorageError as err:
                return {**out, **dict.fromkeys(resolved, err)}
        else:
            already = {cid for cid in ids if cid in mounted}
        points: dict[str, str | StorageError] = {}
        fresh: set[str] = set()
        ask: list[str] = []
        for cid in ids:
            if cid in already:
                known_point = rendered_root(self._dirs_of(cid)[1])
                if known_point:
                    points[cid] = known_point
                else:
                    ask.append(cid)
        if ask:
            # Mounted by someone who rendered no config: a mount and an unmount in turn
            # tell the mountpoint and leave the count as it was.
            asked = self.store.mount_many(ask)
            self.store.unmount_many(
                [c for c, v in asked.items() if isinstance(v, str)], force=False
            )
            points.update(asked)
        by_label: dict[str, list[str]] = {}
        for cid in ids:
            if cid not in already:
                by_label.setdefault(self._label(by_id[cid]), []).append(cid)
        for label, group in by_label.items():
            done = self.store.mount_many(group, label=label)
            points.update(done)
            fresh.update(c for c, v in done.items() if isinstance(v, str))
        for cid, point in points.items():
            if isinstance(point, ContainerNotKnown):
                with self._lock:  # removed behind podstore's back
                    self._ours.pop(cid, None)
                continue
            if not isinstance(point, str):
                continue
            try:
                self.render_config(cid, point)
                self._mark_started(cid)
            except (StorageError, OSError) as err:
                points[cid] = err if isinstance(err, StorageError) else StorageError(str(err))
                if cid in fresh:  # a failed start takes back its own mount, only that one
                    undone = self.store.unmount_many([cid], force=False).get(cid)
                    if isinstance(undone, StorageError):
                        log.error("could not undo the mount of %s: %s", cid, undone)
        for key, (cid, _) in resolved.items():
            out[key] = points.get(cid, StorageError(f"container {cid!r} was not mounted"))
        return out

    def stop_many(self, ids_or_names: Iterable[str]) -> dict[str, StorageError | None]:
        """Unmount several containers (forced: whatever the count); per key None when
        done (or not mounted, or gone) or its error. Rendered configs are removed."""
        resolved, results = self._resolve_many(ids_or_names, fresh=False)
        out: dict[str, StorageError | None] = dict(results)
        ids = list(dict.fromkeys(cid for cid, _ in resolved.values()))
        done = self.store.unmount_many(ids, force=True) if ids else {}
        for cid, result in done.items():
            if result is True:
                with self._lock:
                    dirs = self._dirs.get(cid)
                run_dir = dirs[1] if dirs else self.store.derived_dirs(cid)[1]
                # Derived without a check that it exists: only a file is removed.
                _remove_quietly(os.path.join(run_dir, CONFIG_FILE))
            elif result is False:
                self._forget(cid)
        for key, (cid, _) in resolved.items():
            outcome = done.get(cid)
            out[key] = outcome if isinstance(outcome, StorageError) else None
        return out

    def delete_many(self, ids_or_names: Iterable[str]) -> dict[str, StorageError | None]:
        """Delete several containers (unmounting them); per key None when deleted (or
        already gone) or its error. Members before their infra container is the
        caller's order to keep: all are deleted in one process, in the order given."""
        resolved, results = self._resolve_many(ids_or_names, fresh=False)
        out: dict[str, StorageError | None] = dict(results)
        ids = list(dict.fromkeys(cid for cid, _ in resolved.values()))
        done = self.store.delete_many(ids) if ids else {}
        for cid, result in done.items():
            if not isinstance(result, StorageError):
                self._forget(cid)
        for key, (cid, _) in resolved.items():
            outcome = done.get(cid)
            out[key] = outcome if isinstance(outcome, StorageError) else None
        return out

    def _resolve_many(
        self, ids_or_names: Iterable[str], *, fresh: bool
    ) -> tuple[dict[str, tuple[str, RuntimeContainerMetadata]], dict[str, Any]]:
        """Each key's (ID, metadata) when it is podstore's container, and the results of
        those that are not: their error, or (unknown to the store) InvalidContainerID
        when ``fresh`` (a start), None otherwise (a stop or delete of what is gone).

        Containers this process knows need no process (for ``fresh``, only while their
        directory is there); the others are looked up together.
        """
        keys, results = _keys(ids_or_names)
        resolved: dict[str, tuple[str, RuntimeContainerMetadata]] = {}
        unknown: list[str] = []
        for key in keys:
            with self._lock:
                meta = self._ours.get(key)
                dirs = self._dirs.get(key)
            if meta is not None and (not fresh or (dirs is not None and os.path.isdir(dirs[0]))):
                resolved[key] = (key, meta)
            else:
                unknown.append(key)
        if unknown:
            for key, found in self.containers_many(unknown).items():
                if isinstance(found, ManagedContainer):
                    resolved[key] = (found.id, found.metadata)
                elif found is None and fresh:
                    results[key] = ContainerNotKnown(f"container {key!r} is not in the store")
                else:
                    results[key] = found
        return resolved, results

    def _forget(self, container_id: str) -> None:
        with self._lock:
            self._ours.pop(container_id, None)
            self._dirs.pop(container_id, None)

    @staticmethod
    def _label(meta: RuntimeContainerMetadata) -> str:
        # Without SELinux a label is a mount option the kernel refuses (overlay's
        # context=); podman and cri-o apply labels only where SELinux is on.
        return meta.mount_label if selinux_enabled() else ""

    # -- metadata and directories -------------------------------------------

    def get_container_metadata(self, id_or_name: str) -> RuntimeContainerMetadata:
        return self._inspect(id_or_name)[1]

    def set_container_metadata(self, id_or_name: str, metadata: RuntimeContainerMetadata) -> None:
        record, _ = self._inspect(id_or_name)
        if not isinstance(metadata, RuntimeContainerMetadata):
            raise StorageError("metadata must be a RuntimeContainerMetadata")
        if not metadata.managed:
            raise StorageError("metadata must keep managed-by: podstore")
        self.store.set_metadata(record.id, metadata.to_json())
        with self._lock:
            self._ours[record.id] = metadata

    def get_work_dir(self, id: str) -> str:
        return self._dir_checked(id)[0]

    def get_run_dir(self, id: str) -> str:
        return self._dir_checked(id)[1]

    def _dir_checked(self, id: str) -> tuple[str, str]:
        names.container_id(id)
        with self._lock:
            cached = self._dirs.get(id)
        if cached is not None and all(os.path.isdir(path) for path in cached):
            return cached
        # Gone from disk: the container was deleted behind this process's back.
        with self._lock:
            self._dirs.pop(id, None)
        try:
            return self._dirs_of(id, known=False)
        except ContainerNotKnown as err:
            raise InvalidContainerID(f"container {id!r} is not in the store") from err

    # -- listing ------------------------------------------------------------

    def list_containers(self) -> list[ManagedContainer]:
        """Every container podstore made, from one listing of the store."""
        out: list[ManagedContainer] = []
        for record in self.store.containers():
            meta = RuntimeContainerMetadata.from_json(record.metadata)
            if meta is None or not meta.managed:
                continue
            out.append(
                ManagedContainer(
                    record.id, record.names, record.image, record.layer, record.created, meta
                )
            )
        return out

    def layer_names(self) -> dict[str, tuple[str, ...]]:
        """Every layer's names (one process): to see which containers' layers are named."""
        return self.store.layer_names_all()

    def name_layer(self, id_or_name: str) -> None:
        """Give the container's layer its name ``<container name>-layer`` (a create that was
        killed between making the container and naming its layer left it without)."""
        record, meta = self._inspect(id_or_name)
        layer_name = f"{meta.name}-layer"
        if layer_name not in self.store.layer_names(record.layer):
            self.store.add_names(record.layer, [layer_name])

    def name_new_layer(self, layer: str, container_name: str) -> None:
        """Name the layer of a container made with ``name_layer=False`` (one add-names).

        ``layer`` and ``container_name`` are what that create returned and was given; a
        layer that is gone by now (its container removed) raises :class:`StorageError`.
        """
        names.container_name(container_name)
        if not isinstance(layer, str) or not re.fullmatch(r"[0-9a-f]{64}", layer):
            raise StorageError(f"layer ID {layer!r} is not a full layer ID")
        self.store.add_names(layer, [f"{container_name}-layer"])

    def mounted(self, ids: Sequence[str]) -> set[str]:
        """Which of these containers are mounted now (one process)."""
        return self.store.mounted(list(ids))

    # -- helpers ------------------------------------------------------------

    def _inspect(self, id_or_name: str) -> tuple[StorageContainer, RuntimeContainerMetadata]:
        names.id_or_name(id_or_name)
        record = self.store.container(id_or_name)
        if record is None:
            raise InvalidContainerID(f"container {id_or_name!r} is not in the store")
        return record, self._owned(record)

    def _known_or_inspect(self, id_or_name: str) -> tuple[str, RuntimeContainerMetadata]:
        """A container this process made or inspected, without asking the store again
        while its directory is there; otherwise inspected."""
        with self._lock:
            meta = self._ours.get(id_or_name)
            dirs = self._dirs.get(id_or_name)
        if meta is not None and dirs is not None and os.path.isdir(dirs[0]):
            return id_or_name, meta
        record, meta = self._inspect(id_or_name)
        return record.id, meta

    def _owned(self, record: StorageContainer) -> RuntimeContainerMetadata:
        meta = RuntimeContainerMetadata.from_json(record.metadata)
        if meta is None or not meta.managed:
            raise NotOurs(
                f"container {record.id[:12]} ({', '.join(record.names)}) was not made by "
                "podstore; podstore leaves it alone"
            )
        with self._lock:
            self._ours[record.id] = meta
        return meta


def _keys(ids_or_names: Iterable[str]) -> tuple[list[str], dict[str, Any]]:
    """The keys that may reach the store (each once, in order) and the errors of those
    that may not."""
    keys: list[str] = []
    errors: dict[str, Any] = {}
    for key in dict.fromkeys(ids_or_names):
        try:
            names.id_or_name(key)
        except StorageError as err:
            errors[key] = err
        else:
            keys.append(key)
    return keys, errors


def make_private_dirs(path: str) -> None:
    """``os.makedirs`` with every folder it makes 0700, as containers/storage makes a
    container's directories (os.makedirs gives only the last one the mode)."""
    missing: list[str] = []
    current = path
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)


def selinux_enabled() -> bool:
    """Whether this host enforces or permits SELinux (its filesystem is mounted)."""
    return os.path.exists("/sys/fs/selinux/enforce")


def rendered_root(run_dir: str) -> str:
    """``root.path`` of the run config rendered in ``run_dir``: where the container's layer
    is mounted; "" when there is none."""
    if not run_dir:
        return ""
    try:
        with open(os.path.join(run_dir, CONFIG_FILE), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return ""
    root = config.get("root") if isinstance(config, dict) else None
    path = root.get("path") if isinstance(root, dict) else None
    return path if isinstance(path, str) and os.path.isabs(path) else ""


def new_id() -> str:
    """A fresh 64-hex container or pod ID, as cri-o makes them."""
    return secrets.token_hex(32)


def write_json_atomic(path: str, data: Any, *, durable: bool = True) -> None:
    """Write JSON so that a reader never sees half a file; ``durable``: nor a crash of
    the machine (the data reaches the disk before the new name does). What is made
    again at every start, or whose presence alone counts, need not wait for the disk."""
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _remove_quietly(tmp)
        raise StorageError(f"cannot write {path}: {err.strerror}") from err
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
