"""Temporary containers/storage stores, read back and torn down with the real CLI.

Tests check what podstore did by asking ``containers-storage`` itself (:func:`cs` and
the small readers below), never podstore. :func:`temporary_store` gives a fresh store
location and, however the test ended, unmounts every layer, shuts the store down and
removes it, so that no overlay mount outlives a test.

Quirks of containers-storage 1.43 (Debian 12) that shaped this module:

- ``shutdown --force`` with a layer still mounted never returns (it spins at full CPU
  after unmounting), so teardown unmounts each layer with ``unmount --force`` first and
  then runs a plain ``shutdown``, each under a timeout.
- The overlay driver bind-mounts ``ROOT/overlay`` onto itself; only ``shutdown``
  removes that mount, and until then ``rm -rf`` of the store fails with EBUSY.
- ``mounted ID`` exits 0 whether or not ID is mounted and prints ``ID mounted`` only
  when it is; ``mounted --json`` does not say either way. An unknown ID exits 1
  ("layer not known checking if ID is mounted").
- ``images --json`` on an empty store prints ``null``; ``containers --json`` prints
  ``[]``. ``container --json UNKNOWN`` prints ``[]`` and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.commands import CommandFailed, run

log = logging.getLogger("tests.support.stores")

TOOL = "containers-storage"
DRIVERS = ("overlay", "vfs")
DEFAULT_DRIVER = "overlay"

#: Decorator running a test once per driver; ``store``/``store_root`` follow ``driver``.
each_driver = pytest.mark.parametrize("driver", DRIVERS, indirect=True)


class _StoreAttrs(Protocol):
    """What :class:`controller.storage.Store` exposes (and :class:`StorePaths` too)."""

    @property
    def root(self) -> Any: ...
    @property
    def run_root(self) -> Any: ...
    @property
    def driver(self) -> str: ...


StoreLike = _StoreAttrs | tuple[Any, ...]


@dataclass(frozen=True)
class StorePaths:
    """Where a store lives. Unpacks as a pair: ``root, run_root = paths``."""

    root: Path
    run_root: Path
    driver: str = DEFAULT_DRIVER

    def __iter__(self) -> Iterator[Path]:
        return iter((self.root, self.run_root))

    def flags(self) -> list[str]:
        """The global flags selecting this store on ``containers-storage``."""
        return flags_of(self)

    def transport(self, name: str = "") -> str:
        """This store as a containers/image reference (``skopeo copy SRC <this>``)."""
        return f"containers-storage:[{self.driver}@{self.root}+{self.run_root}]{name}"


def paths_of(store: StoreLike) -> StorePaths:
    """The location of a ``Store``, a :class:`StorePaths` or a (root, run_root[, driver])."""
    if isinstance(store, StorePaths):
        return store
    if isinstance(store, tuple):
        root, run_root, *rest = store
        return StorePaths(Path(root), Path(run_root), str(rest[0]) if rest else DEFAULT_DRIVER)
    try:
        return StorePaths(Path(store.root), Path(store.run_root), str(store.driver))
    except AttributeError as err:
        raise TypeError(f"{store!r} has no root/run_root/driver") from err


def flags_of(store: StoreLike) -> list[str]:
    paths = paths_of(store)
    return [
        "--graph", str(paths.root), "--run", str(paths.run_root),
        "--storage-driver", paths.driver,
    ]  # fmt: skip


def cs(store: StoreLike, *args: str, timeout: float = 60, check: bool = True) -> Any:
    """Run ``containers-storage`` on ``store`` and return what it printed.

    With ``--json``/``-j`` among ``args`` the output is parsed (``None`` when empty),
    otherwise it is the text, stripped. ``check=False`` returns the empty result
    instead of raising :class:`CommandFailed` on a non-zero exit.
    Example: ``cs(store, "containers", "--json")``, ``cs(store, "metadata", "-q", id)``.
    """
    done = run([TOOL, *flags_of(store), *args], timeout=timeout, check=check)
    wants_json = "--json" in args or "-j" in args
    if done.returncode != 0:
        return None if wants_json else ""
    if wants_json:
        text = done.stdout.strip()
        return json.loads(text) if text else None
    return done.stdout.strip()


def containers_json(store: StoreLike) -> list[dict[str, Any]]:
    """``containers --json``: every container in the store."""
    return list(cs(store, "containers", "--json") or [])


def images_json(store: StoreLike) -> list[dict[str, Any]]:
    """``images --json``: every image (an empty store prints ``null``)."""
    return list(cs(store, "images", "--json") or [])


def container_json(store: StoreLike, id_or_name: str) -> dict[str, Any] | None:
    """``container --json``: one container, or None when the store has none by that name."""
    data = cs(store, "container", "--json", id_or_name, check=False)
    return data[0] if data else None


def container_metadata(store: StoreLike, id_or_name: str) -> dict[str, Any]:
    """The container's ``metadata`` field, parsed (``{}`` when it is empty)."""
    text = cs(store, "metadata", "-q", id_or_name)
    return dict(json.loads(text)) if text else {}


def layer_names(store: StoreLike, layer_id: str) -> list[str]:
    """The names of a layer (e.g. ``["<container name>-layer"]``)."""
    return list(cs(store, "get-names", "--json", layer_id) or [])


def container_dir(store: StoreLike, id_or_name: str) -> Path:
    return Path(cs(store, "get-container-dir", id_or_name))


def container_run_dir(store: StoreLike, id_or_name: str) -> Path:
    return Path(cs(store, "get-container-run-dir", id_or_name))


def is_mounted(store: StoreLike, id_or_name: str) -> bool:
    """Whether the store counts this container (or layer) as mounted.

    False for an ID the store does not know: a removed container is not mounted.
    """
    done = run([TOOL, *flags_of(store), "mounted", id_or_name], timeout=60, check=False)
    if done.returncode != 0:
        if "not known" in done.stderr:
            return False
        raise CommandFailed(done.args, done.returncode, done.stdout, done.stderr)
    return f"{id_or_name} mounted" in done.stdout.splitlines()


def copy_image(store: StoreLike, source: str, name: str, *extra: str, timeout: float = 120) -> str:
    """``skopeo copy`` ``source`` into the store as ``name``; return the new image's ID.

    ``docker://`` sources get ``--src-tls-verify=false`` (the test registries are plain
    HTTP); ``extra`` goes to skopeo as is (e.g. ``--src-authfile=...``).
    """
    paths = paths_of(store)
    args = ["skopeo", "copy", "--quiet", *extra]
    if source.startswith("docker://") and not any("tls-verify" in a for a in extra):
        args.append("--src-tls-verify=false")
    run([*args, source, paths.transport(name)], timeout=timeout)
    image = cs(store, "image", "--json", name)
    return str(image[0]["id"])


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    base = Path(path).resolve()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(_unescape_mountinfo(line.split(" ")[4]))
        if point == base or base in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def shutdown_store(paths: StorePaths, *, timeout: float = 60) -> list[str]:
    """Unmount every layer of the store and shut it down; return what went wrong."""
    problems: list[str] = []
    if not paths.root.exists():
        return problems
    try:
        layers = cs(paths, "layers", "--json", timeout=timeout) or []
    except CommandFailed as err:
        problems.append(f"listing layers failed: {err}")
        layers = []
    for layer in layers:
        # --force drops the mount count to zero whatever it was; harmless when unmounted.
        done = run(
            [TOOL, *paths.flags(), "unmount", "--force", layer["id"]], timeout=timeout, check=False
        )
        if done.returncode != 0:
            problems.append(f"unmount --force {layer['id']}: {done.stderr.strip()}")
    # Never `shutdown --force`: in 1.43 it loops forever when a layer is mounted.
    try:
        run([TOOL, *paths.flags(), "shutdown"], timeout=timeout)
    except CommandFailed as err:
        problems.append(f"shutdown failed: {err}")
    return problems


def unmount_leftovers(base: Path) -> list[Path]:
    """Unmount whatever is still mounted under ``base`` (lazily if need be)."""
    leftovers = mounts_under(base)
    for point in leftovers:
        if run(["umount", point], timeout=30, check=False).returncode != 0:
            run(["umount", "-l", point], timeout=30, check=False)
    still = mounts_under(base)
    if still:
        raise RuntimeError(f"could not unmount {', '.join(map(str, still))}")
    return leftovers


def remove_tree(path: Path, *, attempts: int = 5) -> None:
    """``rm -rf`` that retries briefly (a lazily unmounted tree may stay busy a moment)."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def teardown_store(paths: StorePaths, base: Path) -> list[str]:
    """Shut the store down, unmount anything left under ``base``, remove ``base``.

    Returns the problems met on the way (also logged); raises only if something
    stays mounted or ``base`` cannot be removed.
    """
    problems = shutdown_store(paths)
    for problem in problems:
        log.warning("store %s teardown: %s", paths.root, problem)
    leftovers = unmount_leftovers(base)
    if leftovers:
        message = f"store teardown had to unmount {', '.join(map(str, leftovers))} by hand"
        log.warning(message)
        problems.append(message)
    remove_tree(base)
    return problems


@contextlib.contextmanager
def temporary_store(base: Path, driver: str = DEFAULT_DRIVER) -> Iterator[StorePaths]:
    """A fresh store location under ``base`` (created now, removed after).

    ``base`` must be a folder of its own: everything mounted under it and the folder
    itself are removed at exit. Problems of the teardown are given as warnings.
    """
    if driver not in DRIVERS:
        raise ValueError(f"unknown storage driver {driver!r}: use one of {DRIVERS}")
    base.mkdir(parents=True, exist_ok=True)
    paths = StorePaths(base / "root", base / "run", driver)
    try:
        yield paths
    finally:
        for problem in teardown_store(paths, base):
            warnings.warn(f"store {paths.root}: {problem}", stacklevel=1)
