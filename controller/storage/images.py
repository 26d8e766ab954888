"""The seed's ImageServer: pulls and looks up images in the store.

Pulls go through containers/image (``skopeo copy SRC
containers-storage:[driver@root+runroot]NAME``), so podstore never writes
image layers itself. Two pulls of one reference in one process are one pull:
the second waits for the first and shares its result.

Image IDs are content addresses (the config digest): an ID's config never
changes, so it is cached for the life of the process. Name-to-ID answers are
cached too, and checked where they are used: a create that finds the image
gone or renamed drops the entry and asks again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.storage import names
from controller.storage.auth import inherited_fd
from controller.storage.command import Runner
from controller.storage.errors import (
    CommandError,
    CommandTimeout,
    ImageInUse,
    ImageNotFound,
    ImagePullError,
    InvalidImageName,
    NoSpace,
    StorageError,
)
from controller.storage.names import ImageReference
from controller.storage.store import StorageImage, Store

log = logging.getLogger(__name__)

# Image GC remembers two things in the store itself, so that an agent restart (or a
# `podstore rmi --prune` run by hand) knows them without a database of podstore's own:
# - that podstore pulled an image: a big-data item under this key, listed by
#   `images --json` (big-data-names) and kept when any tool pulls the image again;
PULLED_KEY = "podstore.dev/pulled"
# - when it was last used: a key of the image's metadata JSON (where containers/image
#   keeps its signature sizes; a new pull of the image by another tool rewrites it,
#   and then the image's store creation time stands in for it).
LAST_USED_KEY = "podstore.dev/last-used"


@dataclass(frozen=True)
class ImageMarks:
    """What podstore wrote on an image: whether it pulled it, and when it was last used."""

    pulled: bool
    last_used: float | None

    @classmethod
    def of(cls, image: StorageImage) -> ImageMarks:
        return cls(PULLED_KEY in image.big_data_names, _last_used(image.metadata))


def _metadata_object(text: str) -> dict[str, Any] | None:
    """An image's metadata as a JSON object; None when it is something else."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _last_used(text: str) -> float | None:
    value = (_metadata_object(text) or {}).get(LAST_USED_KEY)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


# What removing an image unused by every container came to.
REMOVED, GONE, IN_USE, BUSY = "removed", "gone", "in-use", "busy"


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config that a container's process is built from."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_blob(cls, blob: Mapping[str, Any]) -> ImageConfig:
        cfg = blob.get("config") or {}
        return cls(
            entrypoint=tuple(cfg.get("Entrypoint") or ()),
            cmd=tuple(cfg.get("Cmd") or ()),
            env=tuple(cfg.get("Env") or ()),
            working_dir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            labels=dict(cfg.get("Labels") or {}),
        )


@dataclass(frozen=True)
class ImageInfo:
    """An image in the store (the seed's ImageResult)."""

    id: str
    names: tuple[str, ...]
    digest: str
    size: int
    config: ImageConfig | None = None

    @property
    def name(self) -> str:
        return self.names[0] if self.names else ""


@dataclass(frozen=True)
class PullEvent:
    """One finished pull, as observers (the agent's metrics) see it."""

    reference: str
    ok: bool
    seconds: float
    bytes: int  # compressed size of the image's layers


PullObserver = Callable[[PullEvent], None]
_pull_observers: list[PullObserver] = []


def add_pull_observer(observer: PullObserver) -> None:
    """Be told about every pull (used for metrics)."""
    if observer not in _pull_observers:
        _pull_observers.append(observer)


def _notify(event: PullEvent) -> None:
    for observer in list(_pull_observers):
        try:
            observer(event)
        except Exception:  # an observer must never break a pull
            log.exception("pull observer failed")


class _Flight:
    """One pull in progress, which later callers of the same reference wait on."""

    def __init__(self, name: str = "") -> None:
        self.name = name  # the store name the image is pulled as
        self.done = threading.Event()
        self.result: ImageInfo | None = None
        self.error: BaseException | None = None


class ImageService:
    """Pulls, lists, inspects and removes images in one store."""

    def __init__(
        self,
        store: Store,
        *,
        insecure_registries: Iterable[str] = (),
        auth_file: str | os.PathLike[str] | None = None,
        pull_timeout: float = 600.0,
    ) -> None:
        self.store = store
        self.insecure_registries = frozenset(names.registry_host(r) for r in insecure_registries)
        self.auth_file = os.fspath(auth_file) if auth_file is not None else None
        self.skopeo = Runner(
            "skopeo", timeout=pull_timeout, space_paths=(store.root, store.run_root)
        )
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str | None], _Flight] = {}
        self._configs: dict[str, ImageConfig] = {}
        self._by_name: dict[str, StorageImage] = {}
        # Image GC and creates: a removal and the start of a create's use of an image
        # never overlap (see using() and remove_unused()).
        self._gc_lock = threading.Lock()
        self._using: dict[str, int] = {}
        self.clock: Callable[[], float] = time.time

    # -- lookups ------------------------------------------------------------

    def image_status(self, ref: str) -> ImageInfo | None:
        """The image a reference or ID names, with its config; None when absent."""
        image = self._lookup(ref)
        if image is None:
            return None
        return self._info(image)

    def list_images(self) -> list[ImageInfo]:
        return [self._info(image, with_config=False) for image in self.store.images()]

    def resolve(self, ref: str) -> StorageImage | None:
        """The stored image for a reference or ID, from the cache when it is there."""
        key = self.store_name(ref)
        with self._lock:
            cached = self._by_name.get(key)
        if cached is not None:
            return cached
        image = self._lookup(ref)
        if image is not None:
            with self._lock:
                self._by_name[key] = image
        return image

    def forget(self, ref: str) -> None:
        """Drop a cached name lookup that turned out stale."""
        with self._lock:
            self._by_name.pop(self.store_name(ref), None)

    def config(self, image_id: str) -> ImageConfig | None:
        """An image's config by ID; IDs are content addresses, so this caches forever."""
        with self._lock:
            cached = self._configs.get(image_id)
        if cached is not None:
            return cached
        blob = self.store.image_config(image_id)
        if blob is None:
            return None
        config = ImageConfig.from_blob(blob)
        with self._lock:
            self._configs[image_id] = config
        return config

    def store_name(self, ref: str) -> str:
        """The store's key for a reference: its normalized name, or the ID itself."""
        if _looks_like_id(ref):
            return names.image_id(ref)
        return names.image_reference(ref).store_name()

    def _lookup(self, ref: str) -> StorageImage | None:
        # A short ID (12+ hex digits) is an ID when the store has such an image, as
        # podman resolves it; otherwise it is a name like any other.
        if isinstance(ref, str) and _SHORT_ID.fullmatch(ref) and not _looks_like_id(ref):
            found = self.store.image(ref)
            if found is not None and found.id.startswith(ref):
                return found
        return self.store.image(self.store_name(ref))

    def _info(self, image: StorageImage, *, with_config: bool = True) -> ImageInfo:
        config = self.config(image.id) if with_config else None
        return ImageInfo(image.id, image.names, image.digest, image.size, config)

    # -- pull and remove ----------------------------------------------------

    def pull_image(self, ref: str, *, auth_file: str | os.PathLike[str] | None = None) -> ImageInfo:
        """Copy an image into the store; concurrent pulls of one reference run once."""
        if _looks_like_id(ref):
            raise InvalidImageName(
                f"cannot pull {ref!r}: it is an image ID; pull by name (registry/name:tag)"
            )
        parsed = names.image_reference(ref)
        auth = os.fspath(auth_file) if auth_file is not None else self.auth_file
        key = (parsed.skopeo_source(), auth)
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(parsed.store_name())
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.result is None:
                raise StorageError(f"the pull of {ref!r} this one waited for gave no image")
            return flight.result
        try:
            flight.result = self._pull(parsed, ref, auth)
            return flight.result
        except BaseException as err:
            flight.error = err
            raise
        finally:
            flight.done.set()
            with self._lock:
                self._flights.pop(key, None)

    def _pull(self, parsed: ImageReference, original: str, auth: str | None) -> ImageInfo:
        if auth is not None and not os.path.isfile(auth):
            raise ImagePullError(original, f"auth file {auth!r} does not exist")
        args: list[str] = ["--quiet"]
        if parsed.transport == "docker" and parsed.domain in self.insecure_registries:
            args.append("--src-tls-verify=false")
        fds: list[int] = []
        if auth is not None and parsed.transport == "docker":
            args += ["--src-authfile", auth]
            fd = inherited_fd(auth)
            if fd is not None:
                fds.append(fd)
        dest_name = parsed.store_name()
        args += [parsed.skopeo_source(), self.store.destination(dest_name)]
        log.info("pulling image %s", original)
        started = time.monotonic()
        try:
            self.skopeo.run("copy", *args, pass_fds=fds)
        except CommandError as err:
            _notify(PullEvent(original, False, time.monotonic() - started, 0))
            if isinstance(err, NoSpace):
                detail = str(err)
            elif isinstance(err, CommandTimeout):
                detail = (
                    f"timed out after {self.skopeo.timeout:g}s (--pull-timeout): the registry "
                    "did not send the whole image in time; the pull was stopped and is "
                    "tried again with back-off"
                )
            else:
                detail = _skopeo_message(err.stderr)
            raise ImagePullError(original, detail) from err
        self.forget(dest_name)
        image = self.store.image(dest_name)
        if image is None:
            raise ImagePullError(original, f"the image is not in the store as {dest_name!r}")
        with self._lock:
            self._by_name[dest_name] = image
        self.mark_pulled(image)
        if _pull_observers:
            size = self.store.image_layers_size(image.layer)
            _notify(PullEvent(original, True, time.monotonic() - started, size))
        return self._info(image)

    def remove_image(self, ref: str) -> None:
        """Remove an image by reference or ID; one already gone is not an error.

        Removed by one of several names, only that name goes (as cri-o and podman do);
        by ID or by its last name, the image goes.
        """
        image = self._lookup(ref)
        if image is None:
            return
        name = None if _looks_like_id(ref) or _SHORT_ID.fullmatch(ref) else self.store_name(ref)
        if name is not None and name in image.names and len(image.names) > 1:
            self.store.set_names(image.id, [n for n in image.names if n != name])
        else:
            self.store.delete_image(image.id)
        with self._lock:
            for key in [k for k, v in self._by_name.items() if v.id == image.id]:
                del self._by_name[key]

    # -- image GC -----------------------------------------------------------

    def mark_pulled(self, image: StorageImage) -> None:
        """Write on the image that podstore pulled it, and that it is used now.

        A mark that cannot be written leaves the image looking like another tool's,
        which GC keeps: the safe side."""
        now = self.clock()
        try:
            if PULLED_KEY not in image.big_data_names:
                self.store.set_image_data(image.id, PULLED_KEY, str(int(now)).encode())
            # A big-data item leaves the metadata as the record read after the pull has it.
            self.mark_used(image, now)
        except StorageError as err:
            log.warning("could not mark image %s as pulled by podstore: %s", image.id[:12], err)

    def mark_used(self, image: StorageImage, when: float) -> bool:
        """Record ``when`` as the image's last use, keeping every other metadata key.

        False (nothing written) when the metadata is not a JSON object podstore may extend.
        """
        data = _metadata_object(image.metadata)
        if data is None:
            return False
        data[LAST_USED_KEY] = int(when)
        self.store.set_image_metadata(image.id, json.dumps(data, separators=(",", ":")))
        return True

    @contextlib.contextmanager
    def using(self, image_id: str) -> Iterator[None]:
        """Hold an image for a create: GC does not remove it meanwhile."""
        with self._gc_lock:
            self._using[image_id] = self._using.get(image_id, 0) + 1
        try:
            yield
        finally:
            with self._gc_lock:
                left = self._using.get(image_id, 1) - 1
                if left > 0:
                    self._using[image_id] = left
                else:
                    self._using.pop(image_id, None)

    def pulling(self) -> frozenset[str]:
        """The store names of the images being pulled now (GC keeps them)."""
        with self._lock:
            return frozenset(f.name for f in self._flights.values() if f.name)

    def remove_unused(self, image_id: str) -> str:
        """Remove an image by ID unless something uses it: REMOVED, GONE (already),
        IN_USE (a container has it: the store refuses) or BUSY (a create holds it)."""
        with self._gc_lock:
            if image_id in self._using:
                return BUSY
            try:
                deleted = self.store.delete_image(image_id)
            except ImageInUse:
                return IN_USE
            with self._lock:
                for key in [k for k, v in self._by_name.items() if v.id == image_id]:
                    del self._by_name[key]
        return REMOVED if deleted else GONE

    def ensure(self, ref: str, *, auth_file: str | None = None) -> StorageImage:
        """The stored image for ``ref``, pulling it when it is missing."""
        image = self.resolve(ref)
        if image is not None:
            return image
        if _looks_like_id(ref):
            raise ImageNotFound(f"image ID {ref!r} is not in the store and an ID cannot be pulled")
        self.pull_image(ref, auth_file=auth_file)
        image = self.resolve(ref)
        if image is None:
            raise StorageError(f"image {ref!r} was pulled but is not in the store")
        return image


_ID_LIKE = re.compile(r"^(sha256:)?[a-f0-9]{64}$")
_SHORT_ID = re.compile(r"[a-f0-9]{12,63}")


def _looks_like_id(ref: str) -> bool:
    return isinstance(ref, str) and bool(_ID_LIKE.match(ref))


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def _skopeo_message(stderr: str) -> str:
    """The registry's answer out of skopeo's log line, unquoted."""
    found = _MSG.findall(stderr)
    text = found[-1] if found else stderr.strip()
    return text.replace('\\"', '"').strip() or "skopeo failed without a message"
