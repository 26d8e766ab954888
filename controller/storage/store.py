"""One containers/storage store, driven through its ``containers-storage`` CLI.

:class:`Store` knows the store's location and turns each verb of the CLI into
a typed Python call: it builds the argument list, asks for JSON where the tool
has it, parses the answer into frozen records, and maps the tool's error text
onto the error family. It knows nothing of pods: that is ``runtime``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.storage import names
from controller.storage.command import Completed, Runner, full_filesystem
from controller.storage.errors import (
    CommandError,
    ContainerNotKnown,
    ImageInUse,
    ImageNotFound,
    InvalidName,
    NameConflict,
    NoSpace,
    StorageError,
)

log = logging.getLogger(__name__)

TOOL = "containers-storage"
_DRIVER = re.compile(r"^[a-z0-9]+$")

# containers-storage is a Go program that lives for tens of milliseconds, most of them
# spent decoding the store's metadata (its containers', layers' and images' JSON) and
# writing part of it back. At Go's default (GOGC=100) the collector runs several cycles
# in that time for garbage that the exit frees anyway: a quarter to a third of the CPU
# of a create-container at a few hundred containers, measured here (bench/README.md). So
# while the store's metadata is small its commands run with the collector off and
# GOMEMLIMIT as a backstop: a process then allocates about 20 times its JSON, 20-25 MB
# below GC_OFF_BELOW. A larger store keeps Go's defaults: a live heap near the limit
# would make the collector run without pause (4x the CPU at 3,000 containers with a
# 16 MiB limit).
GC_OFF_BELOW = 1 << 20  # bytes of metadata JSON
GC_OFF_ENV: Mapping[str, str] = {"GOGC": "off", "GOMEMLIMIT": "64MiB"}
# The metadata files of containers/storage's stores (store.go: <root>/<driver>-<kind>/).
_METADATA_FILES = (
    ("containers", "containers.json"),
    ("layers", "layers.json"),
    ("images", "images.json"),
)


def go_runtime_env(metadata_bytes: int) -> Mapping[str, str]:
    """The Go runtime's variables for a ``containers-storage`` command on a store whose
    metadata JSON has ``metadata_bytes`` bytes (negative: unknown, Go's defaults)."""
    return GC_OFF_ENV if 0 <= metadata_bytes < GC_OFF_BELOW else {}


# IDs per process in the batch verbs: far below the kernel's argument limit, and a
# failed batch (a lock held too long) takes no more than this many with it.
BATCH = 256
# The last component of a container's directories in containers/storage (store.go,
# ContainerDirectory and ContainerRunDirectory: <root>/<driver>-containers/<id>/userdata).
_USERDATA = "userdata"


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
            TOOL,
            prefix=prefix,
            timeout=timeout,
            space_paths=(self.root, self.run_root),
            env=lambda: go_runtime_env(self.metadata_bytes()),
        )
        # Where container directories are: derived from the store's location the way
        # containers/storage builds them, checked against the CLI for the first
        # container asked about (see container_dirs).
        self._dirs_lock = threading.Lock()
        self._dir_bases: tuple[str, str] | None = None
        self._dirs_checked = False

    def __repr__(self) -> str:
        return f"Store(root={self.root!r}, run_root={self.run_root!r}, driver={self.driver!r})"

    def metadata_bytes(self) -> int:
        """The size of the store's metadata JSON, from three ``stat`` calls (nothing is
        read or locked); -1 when none of the files is there (a new store, or a layout
        this version does not know)."""
        total, found = 0, False
        for kind, name in _METADATA_FILES:
            try:
                total += os.stat(os.path.join(self.root, f"{self.driver}-{kind}", name)).st_size
            except OSError:
                continue
            found = True
        return total if found else -1

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

    def derived_dirs(self, id: str) -> tuple[str, str]:
        """The container's directory and run directory as containers/storage builds them:
        ``<root>/<driver>-containers/<id>/userdata`` and the same under the run root.

        No process and no check that the container exists; the ID is validated first
        (it becomes part of a path).
        """
        names.container_id(id)
        with self._dirs_lock:
            bases = self._dir_bases
        if bases is None:
            bases = _default_bases(self.root, self.run_root, self.driver)
        return (
            os.path.join(bases[0], id, _USERDATA),
            os.path.join(bases[1], id, _USERDATA),
        )

    def container_dirs(self, id: str, *, known: bool = True) -> tuple[str, str]:
        """The container's directory and run directory, without a process when possible.

        The first call on this Store asks ``get-container-dir`` and
        ``get-container-run-dir`` and compares their answers with :meth:`derived_dirs`;
        later calls derive when they matched (or when the answers showed the same shape
        under other folders, which are then used), and always ask when they did not.
        ``known`` says the caller knows the container exists (it just made or listed
        it); otherwise a derived directory that is not on disk is asked about, so that
        an unknown container still raises :class:`ContainerNotKnown`.
        """
        names.container_id(id)
        with self._dirs_lock:
            checked, bases = self._dirs_checked, self._dir_bases
        if not checked:
            asked = (self.container_dir(id), self.container_run_dir(id))
            self._learn_bases(id, asked)
            return asked
        if bases is None:
            return (self.container_dir(id), self.container_run_dir(id))
        derived = self.derived_dirs(id)
        if known or os.path.isdir(os.path.dirname(derived[0])):
            return derived
        # Not on disk: an unknown container, or one whose directory was never made
        # (create-container does not make it); the CLI tells them apart.
        return (self.container_dir(id), self.container_run_dir(id))

    def _learn_bases(self, id: str, asked: tuple[str, str]) -> None:
        expected = _default_bases(self.root, self.run_root, self.driver)
        shape = tuple(
            os.path.dirname(os.path.dirname(path))
            if os.path.basename(path) == _USERDATA and os.path.basename(os.path.dirname(path)) == id
            else None
            for path in asked
        )
        bases: tuple[str, str] | None = None
        if shape[0] is not None and shape[1] is not None:
            bases = (shape[0], shape[1])
            if bases != expected:
                log.info(
                    "containers-storage keeps container directories under %s and %s, not "
                    "%s and %s; deriving them from there",
                    bases[0],
                    bases[1],
                    expected[0],
                    expected[1],
                )
        else:
            log.warning(
                "containers-storage answered %s and %s for container %s, which is not "
                "<folder>/<id>/userdata; asking it for every container's directories",
                asked[0],
                asked[1],
                id,
            )
        with self._dirs_lock:
            self._dir_bases = bases
            self._dirs_checked = True

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

    def mountpoint(self, id: str, layer: str = "") -> str:
        """Where a container that is mounted already has its layer, without mounting it
        again (a second ``mount`` would raise its mount count: one ``unmount`` by another
        tool would then leave it mounted).

        containers/storage mounts a layer at ``<root>/overlay/<layer>/merged`` (overlay)
        or ``<root>/vfs/dir/<layer>`` (vfs); the path is used when it is mounted there
        (for vfs, when the store counts it mounted). Otherwise, when it is still mounted,
        the layer is mounted once more and unmounted once (the count comes back) to learn
        the path; when it is not mounted any more, it is mounted (once).
        """
        names.container_id(id)
        if not layer:
            record = self.container(id)
            if record is None:
                raise ContainerNotKnown(f"container {id!r} is not in the store")
            layer = record.layer
        if layer and re.fullmatch(r"[0-9a-f]{64}", layer):
            if self.driver == "overlay":
                path = os.path.join(self.root, "overlay", layer, "merged")
                if os.path.ismount(path):
                    return path
            elif self.driver == "vfs":
                # A vfs layer's folder is there mounted or not: the store says which.
                path = os.path.join(self.root, "vfs", "dir", layer)
                if os.path.isdir(path) and id in self.mounted([id]):
                    return path
        if id not in self.mounted([id]):
            return self.mount(id)  # not mounted after all (unmounted since the caller looked)
        point = self.mount(id)
        self.unmount(id, force=False)
        return point

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

    # -- several containers in one process ------------------------------------
    #
    # mount, unmount, delete-container, container and metadata take several IDs and go
    # on after one fails (containers-storage 1.43: mount --json, unmount --json and
    # delete-container --json print one entry per ID with its error; container --json
    # and metadata --json leave the unknown ones out). The results are per ID: one
    # container's failure is its own. An ID that is not valid never reaches the command
    # line; its result is InvalidContainerID.

    def mount_many(self, ids: Iterable[str], *, label: str = "") -> dict[str, str | StorageError]:
        """Mount the layers of several containers; per ID its mountpoint or its error.

        Every ID given is mounted once more (containers/storage counts mounts): callers
        pass only those not mounted yet.
        """
        results, valid = _validated(ids)
        args = ["--json"]
        if label:
            args += ["--label", label]
        for chunk in _chunks(valid):
            done = self._run_batch("mount", args, chunk, results)
            if done is None:
                continue
            parsed = parse_mount_many(done.stdout, chunk, (self.root, self.run_root))
            for id in chunk:
                if id in parsed:
                    results[id] = parsed[id]
                else:  # not answered for: on its own
                    results[id] = _each(self.mount, id, label=label)
        return results

    def unmount_many(
        self, ids: Iterable[str], *, force: bool = True
    ) -> dict[str, bool | StorageError]:
        """Unmount several containers' layers; per ID True (unmounted, or it was not
        mounted), False (the container is gone) or its error."""
        results, valid = _validated(ids)
        args = ["--json"] + (["--force"] if force else [])
        for chunk in _chunks(valid):
            done = self._run_batch("unmount", args, chunk, results)
            if done is None:
                continue
            parsed = parse_unmount_many(done.stdout, chunk, (self.root, self.run_root))
            for id in chunk:
                if id in parsed:
                    results[id] = parsed[id]
                else:
                    results[id] = _each(self.unmount, id, force=force)
        return results

    def delete_many(self, ids: Iterable[str]) -> dict[str, bool | StorageError]:
        """Delete several containers; per ID True (deleted), False (already gone) or its
        error. A mounted container is unmounted by the delete."""
        results, valid = _validated(ids)
        for chunk in _chunks(valid):
            done = self._run_batch("delete-container", ["--json"], chunk, results)
            if done is None:
                continue
            parsed = parse_delete_many(done.stdout, chunk, (self.root, self.run_root))
            for id in chunk:
                if id in parsed:
                    results[id] = parsed[id]
                else:
                    results[id] = _each(self.delete_container, id)
        return results

    def containers_many(self, ids_or_names: Iterable[str]) -> dict[str, StorageContainer | None]:
        """Several containers by ID or name in one process; None for those the store
        does not have. Raises when the store cannot be read at all."""
        wanted = list(dict.fromkeys(ids_or_names))
        for key in wanted:
            names.id_or_name(key)
        found: dict[str, StorageContainer | None] = {}
        for chunk in _chunks(wanted):
            done = self.runner.run("container", "--json", *chunk, check=False)
            try:
                # Unknown keys are left out, with exit 1 and no message: "[]" at least.
                data = json.loads(done.stdout)
            except ValueError:
                data = None
            if not isinstance(data, list):
                raise CommandError(TOOL, "container", done.returncode, done.stderr or done.stdout)
            found.update(match_containers(data, chunk))
        return found

    def metadata_many(self, ids: Iterable[str]) -> dict[str, str | None]:
        """The metadata field of several containers in one process; None for IDs the
        store does not have. (``metadata`` looks up layers and images too: pass
        container IDs only.)"""
        wanted = list(dict.fromkeys(ids))
        for id in wanted:
            names.container_id(id)
        found: dict[str, str | None] = {}
        for chunk in _chunks(wanted):
            done = self.runner.run("metadata", "--json", *chunk, check=False)
            try:
                data = json.loads(done.stdout)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise CommandError(TOOL, "metadata", done.returncode, done.stderr or done.stdout)
            for id in chunk:
                value = data.get(id)
                found[id] = value if isinstance(value, str) else None
        return found

    def _run_batch(
        self,
        verb: str,
        args: Sequence[str],
        chunk: Sequence[str],
        results: dict[str, Any],
    ) -> Completed | None:
        """Run one batch; when the process itself fails (a lock held too long, a
        timeout), every ID of the chunk gets that error and None is returned."""
        try:
            return self.runner.run(verb, *args, *chunk, check=False)
        except StorageError as err:
            for id in chunk:
                results[id] = err
            return None

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


def _validated(ids: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Results holding InvalidContainerID for the IDs that may not reach the command
    line, and the valid ones (each once, in order)."""
    results: dict[str, Any] = {}
    valid: list[str] = []
    for id in dict.fromkeys(ids):
        try:
            names.container_id(id)
        except InvalidName as err:
            results[id] = err
        else:
            valid.append(id)
    return results, valid


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _each(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call`` on one ID, its StorageError as its result."""
    try:
        return call(*args, **kwargs)
    except StorageError as err:
        return err


def _json_tail(stdout: str) -> Any:
    """The JSON a batch verb printed. unmount and mounted print text lines
    (``ID mountpoint unmounted``) before their JSON, which is then the last line."""
    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    last = text.splitlines()[-1].strip()
    try:
        return json.loads(last)
    except ValueError:
        return None


def _entry_error(verb: str, id: str, text: str, space_paths: Sequence[str]) -> StorageError:
    if _not_known(text):
        return ContainerNotKnown(f"container {id!r} is not in the store")
    if "no space left on device" in text.lower():
        full = full_filesystem(text, space_paths)
        return NoSpace(TOOL, verb, 1, full or "the store's filesystem")
    return CommandError(TOOL, verb, 1, f"container {id}: {text}")


def parse_mount_many(
    stdout: str, ids: Sequence[str], space_paths: Sequence[str] = ()
) -> dict[str, str | StorageError]:
    """``mount --json ID...``: a list of ``{id, mountpoint, error}``, one per ID given.
    IDs it does not answer for are left out of the result."""
    data = _json_tail(stdout)
    out: dict[str, str | StorageError] = {}
    wanted = set(ids)
    for entry in data if isinstance(data, list) else ():
        if not isinstance(entry, dict) or entry.get("id") not in wanted:
            continue
        id, error = str(entry["id"]), str(entry.get("error") or "")
        mountpoint = str(entry.get("mountpoint") or "")
        if error:
            out[id] = _entry_error("mount", id, error, space_paths)
        elif not mountpoint:
            out[id] = StorageError(f"mounting container {id!r} gave no mountpoint")
        else:
            out[id] = mountpoint
    return out


def parse_unmount_many(
    stdout: str, ids: Sequence[str], space_paths: Sequence[str] = ()
) -> dict[str, bool | StorageError]:
    """``unmount --json ID...``: a list of ``{id, error}`` after text lines; True when
    unmounted (or not mounted), False when the container is gone."""
    data = _json_tail(stdout)
    out: dict[str, bool | StorageError] = {}
    wanted = set(ids)
    for entry in data if isinstance(data, list) else ():
        if not isinstance(entry, dict) or entry.get("id") not in wanted:
            continue
        id, error = str(entry["id"]), str(entry.get("error") or "")
        if not error:
            out[id] = True
        elif _not_known(error):
            out[id] = False
        else:
            out[id] = _entry_error("unmount", id, error, space_paths)
    return out


def parse_delete_many(
    stdout: str, ids: Sequence[str], space_paths: Sequence[str] = ()
) -> dict[str, bool | StorageError]:
    """``delete-container --json ID...``: an object ID -> error ("" when deleted);
    True when deleted, False when it was not a container (already gone)."""
    data = _json_tail(stdout)
    out: dict[str, bool | StorageError] = {}
    if not isinstance(data, dict):
        return out
    for id in ids:
        if id not in data:
            continue
        error = str(data[id] or "")
        if not error:
            out[id] = True
        elif _not_known(error):
            out[id] = False
        else:
            out[id] = _entry_error("delete-container", id, error, space_paths)
    return out


def match_containers(
    records: Sequence[Any], keys: Sequence[str]
) -> dict[str, StorageContainer | None]:
    """``container --json KEY...`` lists the containers it found, leaving out unknown
    keys; give each key (ID, name, or ID prefix, as containers/storage looks them up)
    its record or None."""
    parsed = [StorageContainer.from_json(r) for r in records if isinstance(r, dict) and "id" in r]
    by_id = {c.id: c for c in parsed}
    by_name = {name: c for c in parsed for name in c.names}
    out: dict[str, StorageContainer | None] = {}
    for key in keys:
        hit = by_id.get(key) or by_name.get(key)
        if hit is None:
            prefixed = [c for c in parsed if c.id.startswith(key)]
            hit = prefixed[0] if len(prefixed) == 1 else None
        out[key] = hit
    return out


def _default_bases(root: str, run_root: str, driver: str) -> tuple[str, str]:
    middle = f"{driver}-containers"
    return os.path.join(root, middle), os.path.join(run_root, middle)


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
    "BATCH",
    "FilesystemUsage",
    "StorageContainer",
    "StorageImage",
    "Store",
    "chain_layers",
    "chain_size",
    "match_containers",
    "parse_delete_many",
    "parse_mount_many",
    "parse_unmount_many",
]
