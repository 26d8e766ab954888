"""Pre-pull: StorageImage objects, held by each selected node's agent.

A StorageImage (cluster-scoped) names an image and, optionally, a nodeSelector.
Every agent watches them all (there are few), and for each one that selects its
own node pulls the image into the node's store and reports in its own entry of
``status.nodes`` (keyed by ``nodeName``). While the object exists, image GC on
that node keeps the image (:meth:`PrePulls.pinned`).

Many agents write one object's status. Each writes only its own entry, with a
merge patch of the whole list on the resourceVersion it read: a concurrent
writer makes the API server refuse it (409), and it reads again and redoes its
entry on top of the other's. No entry of another node can be lost that way,
and the emulator (like the API server) refuses a stale resourceVersion.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from controller.handlers import kube
from controller.storage import ImageService
from controller.storage.auth import temporary_auth_file
from controller.storage.errors import ImagePullError, InvalidName, StorageError

log = logging.getLogger(__name__)

PULLED, PENDING, FAILED = "Pulled", "Pending", "Failed"
# Attempts at writing one entry when other nodes' agents write at the same time.
WRITE_ATTEMPTS = 8


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a nodeSelector (all its labels, with their values) matches a node's labels."""
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PrePulls:
    """The StorageImages this agent knows, and its node's share of each."""

    def __init__(
        self,
        images: ImageService,
        node: str,
        *,
        labels: Callable[[str], Mapping[str, str]] = kube.node_labels,
        labels_ttl: float = 30.0,
    ) -> None:
        self.images = images
        self.node = node
        self._labels = labels
        self._labels_ttl = labels_ttl
        self._labels_cache: tuple[float, Mapping[str, str]] | None = None
        self._lock = threading.Lock()
        self._objects: dict[str, Mapping[str, Any]] = {}

    # -- what GC reads ------------------------------------------------------

    def pinned(self) -> tuple[str, ...]:
        """The images of the StorageImages that select this node."""
        with self._lock:
            objects = list(self._objects.values())
        try:
            labels = self.labels()
        except Exception as err:  # unknown labels: keep every pre-pulled image
            log.warning("node %s labels unknown (%s): every StorageImage pins", self.node, err)
            labels = None
        return tuple(
            str(o["spec"]["image"])
            for o in objects
            if (o.get("spec") or {}).get("image")
            and (labels is None or selects(o["spec"].get("nodeSelector"), labels))
        )

    def labels(self) -> Mapping[str, str]:
        now = time.monotonic()
        cached = self._labels_cache
        if cached is not None and now - cached[0] < self._labels_ttl:
            return cached[1]
        labels = self._labels(self.node)
        self._labels_cache = (now, labels)
        return labels

    # -- what the watch tells -----------------------------------------------

    def seen(self, body: Mapping[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name") or "")
        if name:
            with self._lock:
                self._objects[name] = {"metadata": dict(body.get("metadata") or {}),
                                       "spec": dict(body.get("spec") or {})}  # fmt: skip

    def gone(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._objects)

    # -- one object, this node ----------------------------------------------

    def sync(self, name: str) -> dict[str, Any] | None:
        """Hold the image if the object selects this node, and report; the entry written
        (None when this node is not selected, or the object is gone)."""
        obj = kube.get_storage_image(name)
        if obj is None:
            self.gone(name)
            return None
        self.seen(obj)
        spec = obj.get("spec") or {}
        if not selects(spec.get("nodeSelector"), self.labels()):
            self._write(name, None)
            return None
        entry = self._hold(spec, int((obj.get("metadata") or {}).get("generation") or 0))
        self._write(name, entry)
        return entry

    def sync_all(self) -> None:
        for name in self.names():
            try:
                self.sync(name)
            except Exception:
                log.exception("StorageImage %s: sync failed; trying again next pass", name)

    def _hold(self, spec: Mapping[str, Any], generation: int) -> dict[str, Any]:
        ref = str(spec.get("image") or "")
        entry: dict[str, Any] = {"nodeName": self.node, "observedGeneration": generation}
        try:
            configs = []
            for secret in spec.get("imagePullSecrets") or ():
                found = kube.docker_config(str(secret["namespace"]), str(secret["name"]))
                if found is not None:
                    configs.append(found)
            with temporary_auth_file(configs) as auth:
                image = self.images.ensure(ref, auth_file=auth)
        except InvalidName as err:
            return {**entry, "phase": FAILED, "reason": err.reason, "message": str(err)}
        except ImagePullError as err:
            return {**entry, "phase": FAILED, "reason": err.reason, "message": str(err)}
        except StorageError as err:
            return {**entry, "phase": PENDING, "reason": err.reason, "message": str(err)}
        return {**entry, "phase": PULLED, "imageID": image.id, "reason": "Pulled",
                "message": f"image {ref} is in the store of node {self.node}"}  # fmt: skip

    def _write(self, name: str, entry: dict[str, Any] | None) -> None:
        """Put this node's entry (or, None, its absence) into status.nodes, keeping every
        other node's entry, however many agents write at once."""
        for _ in range(WRITE_ATTEMPTS):
            obj = kube.get_storage_image(name)
            if obj is None:
                return
            nodes = list((obj.get("status") or {}).get("nodes") or [])
            mine = next((n for n in nodes if n.get("nodeName") == self.node), None)
            others = [n for n in nodes if n.get("nodeName") != self.node]
            if entry is None:
                if mine is None:
                    return
                wanted = others
            else:
                same = (
                    mine is not None
                    and {k: v for k, v in mine.items() if k != "lastTransitionTime"} == entry
                )
                if same:
                    return
                changed = mine is None or mine.get("phase") != entry["phase"]
                stamp = _now() if changed else (mine or {}).get("lastTransitionTime", _now())
                wanted = sorted(
                    [*others, {**entry, "lastTransitionTime": stamp}],
                    key=lambda n: str(n.get("nodeName")),
                )
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if kube.patch_storage_image_nodes(name, version, wanted):
                return
        log.warning("StorageImage %s: status of node %s not written: too many writers",
                    name, self.node)  # fmt: skip


async def prepull_loop(prepulls: PrePulls, interval: float, stop: Any) -> None:
    """Every ``interval``, hold every known StorageImage again (retries, drift)."""
    import asyncio

    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.sleep(max(interval, 1.0))
        if stop.is_set():
            break
        try:
            await asyncio.to_thread(prepulls.sync_all)
        except Exception:
            log.exception("pre-pull pass failed; trying again next interval")
