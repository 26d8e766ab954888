"""One containers/storage store, driven through its ``containers-storage`` CLI.

:class:`Store` knows the store's location and turns each verb of the CLI into
a typed Python call: it builds the argument list, asks for JSON where the tool
has it, parses the answer into frozen records, and maps the tool's error text
onto the error family. It knows nothing of pods: that is ``runtime``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.storage.command import Completed, Runner
from controller.storage.errors import (
    CommandError,
    ContainerNotKnown,
    ImageInUse,
    ImageNotFound,
    InvalidName,
    NameConflict,
    StorageError,
)

TOOL = "containers-storage"
_DRIVER = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class StorageContainer:
    """A container as ``containers-storage containers --json`` reports it."""

    id: str
    names: tuple[str, ...]
    image: str
    layer: str
    metadata: str
    created: str
    mount_label: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StorageContainer:
        flags = data.get("flags") or {}
        return cls(
            id=str(data["id"]),
            names=tuple(data.get("names") or ()),
            image=str(data.get("image") or ""),
            layer=str(data.get("layer") or ""),
            metadata=str(data.get("metadata") or ""),
            created=str(data.get("created") or ""),
            mount_label=str(flags.get("MountLabel") or ""),
        )


@dataclass(frozen=True)
class StorageImage:
    """An image as ``containers-storage images --json`` reports it."""

    id: str
    names: tuple[str, ...]
    digest: str
    layer: str
    created: str
    size: int = 0
    # The image's metadata field (containers/image keeps JSON there) and the keys of
    # its big-data items: podstore's image-GC marks live in these two.
    metadata: str = ""
    big_data_names: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StorageImage:
        sizes = data.get("big-data-sizes") or {}
        return cls(
            id=str(data["id"]),
            names=tuple(data.get("names") or ()),
            digest=str(data.get("digest") or ""),
            layer=str(data.get("layer") or ""),
            created=str(data.get("created") or ""),
            size=int(sum(v for v in sizes.values() if isinstance(v, int))),
            metadata=str(data.get("metadata") or ""),
            big_data_names=tuple(str(n) for n in data.get("big-data-names") or ()),
        )


def _not_known(stderr: str) -> bool:
    text = stderr.lower()
    return any(
        marker in text
        for marker in (
            "container not known",
            "not a container",
            "not a layer, image, or container",
            "not an image",
            "layer not known",
            "does not exist",
            "not found",
        )
    )


def _absent(done: Completed) -> bool:
    """A lookup that found nothing: an empty JSON list, or a not-known message."""
    if done.stdout.strip() in ("", "[]", "{}") and not done.stderr.strip():
        return True
    return _not_known(done.stderr) or "image not known" in done.stderr


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise StorageError(
            f"{TOOL} {what} printed output that is not JSON: {text[:200]!r}"
        ) from err


class Store:
    """A containers/storage store at ``root`` (graph root) and ``run_root``."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        run_root: str | os.PathLike[str],
        driver: str = "overlay",
        *,
        timeout: float = 120.0,
        storage_opts: Sequence[str] = (),
    ) -> None:
        self.root = _absolute(root, "store root")
        self.run_root = _absolute(run_root, "store run root")
        if not isinstance(driver, str) or not _DRIVER.fullmatch(driver):
            raise InvalidName(f"storage driver {driver!r} is not valid: use overlay or vfs")
        self.driver = driver
        self.storage_opts = tuple(storage_opts)
        prefix = ["--graph", self.root, "--run", self.run_root, "--storage-driver", driver]
        for opt in self.storage_opts:
            prefix += ["--storage-opt", opt]
        self.runner = Runner(
            TOOL, prefix=prefix, timeout=timeout, space_paths=(self.root, self.run_root)
        )

    def __repr__(self) -> str:
        return f"Store(root={self.root!r}, run_root={self.run_root!r}, driver={self.driver!r})"

    def destination(self, name: str) -> str:
        """This store as a containers/image destination for ``name``."""
        return f"containers-storage:[{self.driver}@{self.root}+{self.run_root}]{name}"

    # -- containers -------------------------------------------------------

    def containers(self) -> list[StorageContainer]:
        """Every container in the store, in one process."""
        out = self.runner.run("containers", "--json").stdout
        data = _parse_json(out or "[]", "containers")
        return [StorageContainer.from_json(item) for item in data or ()]

    def container(self, id_or_name: str) -> StorageContainer | None:
        """One container by ID or name; None when the store has none."""
        done = self.runner.run("container", "--json", id_or_name, check=False)
        if done.returncode != 0:
            if _absent(done):
                return None
            raise CommandError(TOOL, "container", done.returncode, done.stderr)
        data = _parse_json(done.stdout or "[]", "container")
        return StorageContainer.from_json(data[0]) if data else None

    def create_container(
        self, image: str, *, id: str, names: Sequence[str], metadata: str
    ) -> StorageContainer:
        args = ["--json", "--metadata", metadata]
        if id:
            args += ["--id", id]
        for name in names:
            args += ["--name", name]
        done = self.runner.run("create-container", *args, image, check=False)
        if done.returncode != 0:
            err = done.stderr.strip()
            if "already in use" in err:
                raise NameConflict(err)
            if "image not known" in err:
                raise ImageNotFound(f"image {image!r} is not in the store")
            raise CommandError(TOOL, "create-container", done.returncode, err)
        return StorageContainer.from_json(_parse_json(done.stdout, "create-container"))

    def delete_container(self, id: str) -> bool:
        """Delete a container; False when it was already gone."""
        done = self.runner.run("delete-container", id, check=False)
        if done.returncode == 0:
            return True
        if _not_known(done.stderr):
            return False
        raise CommandError(TOOL, "delete-container", done.returncode, done.stderr)

    def set_metadata(self, id: str, metadata: str) -> None:
        done = self.runner.run("set-metadata", "--metadata", metadata, id, check=False)
        if done.returncode != 0:
            if _not_known(done.stderr):
                raise ContainerNotKnown(f"container {id!r} is not in the store")
            raise CommandError(TOOL, "set-metadata", done.returncode, done.stderr)

    def add_names(self, id: str, new_names: Iterable[str]) -> None:
        """Add names to a container, image or layer."""
        args: list[str] = []
        for name in new_names:
            args += ["--name", name]
        done = self.runner.run("add-names", *args, id, check=False)
        if done.returncode != 0:
            if "already in use" in done.stderr:
                raise NameConflict(done.stderr.strip())
            raise CommandError(TOOL, "add-names", done.returncode, done.stderr)

    def set_names(self, id: str, new_names: Iterable[str]) -> None:
        """Replace the names of a container, image or layer."""
        args: list[str] = []
        for name in new_names:
            args += ["--name", name]
        done = self.runner.run("set-names", *args, id, check=False)
        if done.returncode != 0:
            if "already in use" in done.stderr:
                raise NameConflict(done.stderr.strip())
            raise CommandError(TOOL, "set-names", done.returncode, done.stderr)

    def layer_names(self, layer_id: str) -> tuple[str, ...]:
        done = self.runner.run("layer", "--json", layer_id, check=False)
        if done.returncode != 0:
            return ()
        data = _parse_json(done.stdout or "[]", "layer")
        return tuple(data[0].get("names") or ()) if data else ()

    def container_dir(self, id: str) -> str:
        return self._dir("get-container-dir", id)

    def container_run_dir(self, id: str) -> str:
        return self._dir("get-container-run-dir", id)

    def _dir(self, verb: str, id: str) -> str:
        done = self.runner.run(verb, id, check=False)
        if done.returncode != 0:
            if _not_known(done.stderr):
                raise ContainerNotKnown(f"container {id!r} is not in the store")
            raise CommandError(TOOL, verb, done.returncode, done.stderr)
        return done.stdout.strip()

    def mount(self, id: str, *, label: str = "") -> str:
        """Mount a container's layer; returns the mountpoint."""
        args = ["--json"]
        if label:
            args += ["--label", label]
        done = self.runner.run("mount", *args, id, check=False)
        if done.returncode != 0:
            # The reason may be only in the JSON's "error" field, with stderr empty.
            if _not_known(done.stderr) or _not_known(done.stdout):
                raise ContainerNotKnown(f"container {id!r} is not in the store")
            raise CommandError(TOOL, "mount", done.returncode, done.stderr)
        data = _parse_json(done.stdout, "mount")
        entry = data[0] if isinstance(data, list) and data else {}
        if entry.get("error"):
            raise StorageError(f"mounting container {id!r} failed: {entry['error']}")
        mountpoint = str(entry.get("mountpoint") or "")
        if not mountpoint:
            raise StorageError(f"mounting container {id!r} gave no mountpoint")
        return mountpoint

    def unmount(self, id: str, *, force: bool = True) -> bool:
        """Unmount a container's layer; False when the container is gone."""
        args = ["--force"] if force else []
        done = self.runner.run("unmount", *args, id, check=False)
        if done.returncode == 0:
            return True
        if _not_known(done.stderr):
            return False
        raise CommandError(TOOL, "unmount", done.returncode, done.stderr)

    def mounted(self, ids: Sequence[str]) -> set[str]:
        """Which of these containers are mounted, in one process.

        ``containers-storage mounted`` prints ``ID mounted`` for each mounted
        one (its JSON form does not say), so the text form is read.
        """
        if not ids:
            return set()
        done = self.runner.run("mounted", *ids, check=False)
        found: set[str] = set()
        for line in done.stdout.splitlines():
            ident, _, state = line.strip().rpartition(" ")
            if state == "mounted" and ident:
                found.add(ident)
        return found

    # -- images -------------------------------------------------------------

    def images(self) -> list[StorageImage]:
        data = _parse_json(self.runner.run("images", "--json").stdout or "[]", "images")
        return [StorageImage.from_json(item) for item in data or ()]

    def image(self, name_or_id: str) -> StorageImage | None:
        done = self.runner.run("image", "--json", name_or_id, check=False)
        if done.returncode != 0:
            # An unknown image is an empty JSON list and exit 1, often with no message.
            if _absent(done):
                return None
            raise CommandError(TOOL, "image", done.returncode, done.stderr)
        data = _parse_json(done.stdout or "[]", "image")
        return StorageImage.from_json(data[0]) if data else None

    def layer_names_all(self) -> dict[str, tuple[str, ...]]:
        """Every layer's names, from one ``layers --json``."""
        data = _parse_json(self.runner.run("layers", "--json").stdout or "[]", "layers")
        return {
            str(item["id"]): tuple(item.get("names") or ())
            for item in data or ()
            if isinstance(item, dict) and "id" in item
        }

    def layer_sizes(self, *, compressed: bool = False) -> dict[str, tuple[str, int]]:
        """Every layer: ID -> (parent ID, size), from one ``layers --json``.

        ``compressed`` gives what a pull moves; otherwise the size on disk (diff size).
        """
        data = _parse_json(self.runner.run("layers", "--json").stdout or "[]", "layers")
        key = "compressed-size" if compressed else "diff-size"
        return {
            str(item["id"]): (
                str(item.get("parent") or ""),
                int(item.get(key) or item.get("diff-size") or 0),
            )
            for item in data or ()
            if isinstance(item, dict) and "id" in item
        }

    def layer_arrivals(self) -> tuple[dict[str, tuple[str, int]], dict[str, str]]:
        """From one ``layers --json``: what :meth:`layer_sizes` gives (sizes on disk), and
        each layer's creation time in this store (RFC 3339), i.e. when it arrived.

        An image's own ``created`` is its config's build time, not its arrival."""
        data = _parse_json(self.runner.run("layers", "--json").stdout or "[]", "layers")
        items = [i for i in data or () if isinstance(i, dict) and "id" in i]
        sizes = {
            str(i["id"]): (str(i.get("parent") or ""), int(i.get("diff-size") or 0)) for i in items
        }
        return sizes, {str(i["id"]): str(i.get("created") or "") for i in items}

    def image_layers_size(self, top_layer: str) -> int:
        """The compressed size of a layer and its parents (what a pull of them moves)."""
        return chain_size(top_layer, self.layer_sizes(compressed=True))

    def image_config(self, image_id: str) -> dict[str, Any] | None:
        """The image's OCI config blob (stored under its digest), parsed."""
        key = "sha256:" + image_id
        done = self.runner.run("get-image-data", image_id, key, check=False)
        if done.returncode != 0:
            return None
        data = _parse_json(done.stdout, "get-image-data")
        return data if isinstance(data, dict) else None

    def delete_image(self, id: str) -> bool:
        """Delete an image; False when it was already gone."""
        done = self.runner.run("delete-image", id, check=False)
        if done.returncode == 0:
            return True
        err = done.stderr.lower()
        if "image not known" in err or _not_known(err):
            return False
        if "in use" in err or "used by" in err:
            raise ImageInUse(f"image {id!r} is used by containers: {done.stderr.strip()}")
        raise CommandError(TOOL, "delete-image", done.returncode, done.stderr)

    def delete_record(self, id: str) -> bool:
        """``delete ID``: the CLI's removal without safety checks, for a record whose
        layers are gone already; False when there was nothing to delete."""
        done = self.runner.run("delete", id, check=False)
        if done.returncode == 0:
            return True
        if _not_known(done.stderr):
            return False
        raise CommandError(TOOL, "delete", done.returncode, done.stderr)

    def set_image_metadata(self, id: str, metadata: str) -> None:
        """Replace an image's metadata field (``set-metadata`` takes images as well)."""
        done = self.runner.run("set-metadata", "--metadata", metadata, id, check=False)
        if done.returncode != 0:
            if _not_known(done.stderr) or "image not known" in done.stderr:
                raise ImageNotFound(f"image {id!r} is not in the store")
            raise CommandError(TOOL, "set-metadata", done.returncode, done.stderr)

    def set_image_data(self, id: str, key: str, data: bytes) -> None:
        """Attach a big-data item ``key`` to an image (kept until the image goes).

        The data reaches the CLI through an inherited memory file, never a file on disk.
        """
        if not key or "\x00" in key or "\n" in key:
            raise InvalidName(f"image data key {key!r} is not valid")
        fd = os.memfd_create("podstore-image-data", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            os.lseek(fd, 0, os.SEEK_SET)
            done = self.runner.run(
                "set-image-data", "--file", f"/proc/self/fd/{fd}", id, key,
                check=False, pass_fds=(fd,),
            )  # fmt: skip
        finally:
            os.close(fd)
        if done.returncode != 0:
            if _not_known(done.stderr) or "image not known" in done.stderr:
                raise ImageNotFound(f"image {id!r} is not in the store")
            raise CommandError(TOOL, "set-image-data", done.returncode, done.stderr)

    def filesystem_usage(self) -> FilesystemUsage:
        """How full the filesystem holding the store's graph root is (as the kubelet
        measures its image filesystem: capacity, and what is not available to users)."""
        path = self.root
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)  # a store not made yet: the filesystem it will be on
        try:
            st = os.statvfs(path)
        except OSError as err:
            raise StorageError(f"cannot measure the filesystem of {self.root}: {err}") from err
        total = st.f_blocks * st.f_frsize
        available = st.f_bavail * st.f_frsize
        return FilesystemUsage(used=max(total - available, 0), total=total)

    # -- store --------------------------------------------------------------

    def shutdown(self, *, force: bool = False) -> None:
        """Shut the store's driver down; with ``force``, unmount every container first.

        The CLI's own ``shutdown --force`` can spin forever after unmounting
        (containers-storage 1.43), so the unmounts are done one by one here.
        """
        if force:
            for container in self.containers():
                self.unmount(container.id, force=True)
        self.runner.run("shutdown")


@dataclass(frozen=True)
class FilesystemUsage:
    """Bytes used and the capacity of one filesystem."""

    used: int
    total: int


def chain_layers(layer: str, sizes: Mapping[str, tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """A layer and all its parents, top first, each with its size (from ``layer_sizes``)."""
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    while layer and layer in sizes and layer not in seen:
        seen.add(layer)
        parent, size = sizes[layer]
        out.append((layer, size))
        layer = parent
    return tuple(out)


def chain_size(layer: str, sizes: Mapping[str, tuple[str, int]]) -> int:
    """The size of a layer and all its parents, from :meth:`Store.layer_sizes`."""
    total, seen = 0, set()
    while layer and layer in sizes and layer not in seen:
        seen.add(layer)
        parent, size = sizes[layer]
        total += size
        layer = parent
    return total


def _absolute(value: str | os.PathLike[str], what: str) -> str:
    path = os.fspath(value)
    if not isinstance(path, str) or not path or not os.path.isabs(path):
        raise InvalidName(f"{what} {path!r} must be an absolute path")
    if "\x00" in path or "\n" in path:
        raise InvalidName(f"{what} {path!r} contains control characters")
    if ":" in path or "+" in path or "[" in path or "]" in path:
        # These separate the parts of a containers-storage:[driver@root+runroot] reference.
        raise InvalidName(f"{what} {path!r} may not contain ':', '+', '[' or ']'")
    return os.path.normpath(path)


__all__ = [
    "FilesystemUsage",
    "StorageContainer",
    "StorageImage",
    "Store",
    "chain_layers",
    "chain_size",
]
