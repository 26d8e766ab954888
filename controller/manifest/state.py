"""What ``podstore run`` remembers between runs: each resource with its status.

In a cluster the API server keeps objects and their ``status``; without one,
``run`` keeps them in one JSON file beside the store, at
``<runroot>/podstore-run/state.json``. Each entry is the whole object as the API
would return it (``metadata.uid``, ``metadata.generation``, ``spec``, ``status``)
plus the digest of its spec and the manifest it came from, so that a second
``run`` continues where the first stopped: unchanged resources keep their
generation and status, and a changed spec bumps the generation as the API
server does.

The file is only a memory, never the truth about the node: storage IDs are
derived from the UIDs, and UIDs from kind, namespace and name, so a lost or
unreadable state file costs the status history (ages, generations), not the
containers. It is written atomically (a crash leaves the old or the new file,
never half of one) and a lock file keeps two ``run`` processes off one store.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from controller.manifest.loader import Key
from controller.storage.errors import NoSpace, StorageError, StoreLocked
from controller.storage.runtime import write_json_atomic

log = logging.getLogger(__name__)

STATE_DIR = "podstore-run"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
FORMAT = "podstore.dev/run-state/v1"
# All run-mode UIDs live under this UUID namespace: uuid5(RUN_NAMESPACE, kind/ns/name).
RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://podstore.dev/run")


class StateError(Exception):
    """The state folder cannot be used (e.g. another ``run`` holds it).

    ``reason`` is ``StoreLocked`` when another ``run`` holds it, ``NoSpace`` when its
    filesystem is full (the exit status follows it), else ``StateError``.
    """

    def __init__(self, message: str, reason: str = "StateError") -> None:
        super().__init__(message)
        self.reason = reason


def uid_for(key: Key) -> str:
    """The stable UID of a resource of ``podstore run``."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"{key.kind}/{key.namespace}/{key.name}"))


def spec_hash(spec: Any) -> str:
    """Digest of a spec; equal specs (after defaulting) have equal digests."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return Key(str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name")))


@dataclass
class Entry:
    """One resource as ``run`` keeps it."""

    obj: dict[str, Any]
    spec_hash: str
    file: str = ""
    document: int = 0
    # The StoragePod whose spec.containers made this StorageContainer, if one did.
    owner: Key | None = None
    # Removed from the manifests, but its storage is not removed yet.
    deleting: bool = False

    @property
    def key(self) -> Key:
        return key_of(self.obj)

    @property
    def status(self) -> dict[str, Any]:
        status = self.obj.get("status")
        return status if isinstance(status, dict) else {}

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}, document {self.document}" if self.document else self.file

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "specHash": self.spec_hash,
            "file": self.file,
            "document": self.document,
            "object": self.obj,
        }
        if self.owner is not None:
            out["owner"] = {
                "kind": self.owner.kind,
                "namespace": self.owner.namespace,
                "name": self.owner.name,
            }
        if self.deleting:
            out["deleting"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        obj = data["object"]
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ValueError("entry without an object")
        owner_data = data.get("owner")
        owner = (
            Key(str(owner_data["kind"]), str(owner_data["namespace"]), str(owner_data["name"]))
            if isinstance(owner_data, Mapping)
            else None
        )
        return cls(
            obj=obj,
            spec_hash=str(data.get("specHash") or spec_hash(obj.get("spec"))),
            file=str(data.get("file") or ""),
            document=int(data.get("document") or 0),
            owner=owner,
            deleting=bool(data.get("deleting")),
        )


class StateFile:
    """``<runroot>/podstore-run/state.json`` and its lock."""

    def __init__(self, run_root: str) -> None:
        self.directory = os.path.join(run_root, STATE_DIR)
        self.path = os.path.join(self.directory, STATE_FILE)
        self._written: str | None = None
        # Why the last save failed (the state file kept its last version), or None.
        self.failure: str | None = None
        # The -f paths of this run (written) and of the last one (read by load()).
        self.paths: tuple[str, ...] = ()
        self.last_paths: tuple[str, ...] = ()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state folder for this process; fail at once if another holds it."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            reason = NoSpace.reason if err.errno == errno.ENOSPC else "StateError"
            raise StateError(_write_failure(self.directory, err), reason) from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise StateError(
                    f"another `podstore run` (pid {holder}) is keeping this store "
                    f"({self.directory}); stop it first, or give another --runroot",
                    StoreLocked.reason,
                ) from err
            try:
                # Who holds it, for the message of the next one; only a courtesy.
                os.pwrite(fd, f"{os.getpid()}\n".ljust(16).encode(), 0)
            except OSError as err:
                log.debug("cannot write the pid into the lock file: %s", err.strerror)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load(self) -> list[Entry]:
        """The entries of the last run; [] when there was none or it is unreadable."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return []
        except OSError as err:
            log.warning("cannot read %s (%s); starting without it", self.path, err)
            return []
        try:
            data = json.loads(text)
            if data.get("apiVersion") != FORMAT:
                raise ValueError(f"unknown format {data.get('apiVersion')!r}")
            entries = [Entry.from_json(item) for item in data.get("resources") or ()]
            self.last_paths = tuple(str(p) for p in data.get("paths") or ())
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning(
                "%s is not a state file podstore can read (%s); starting without it: "
                "storage is adopted again by its IDs, statuses start over",
                self.path,
                err,
            )
            return []
        self._written = _canonical(data)
        return entries

    def save(self, entries: list[Entry], *, node_name: str) -> bool:
        """Write the entries (atomically) when they differ from the file; True if written."""
        data = {
            "apiVersion": FORMAT,
            "nodeName": node_name,
            **({"paths": list(self.paths)} if self.paths else {}),
            "resources": [e.to_json() for e in sorted(entries, key=_order)],
        }
        text = _canonical(data)
        if text == self._written:
            return False
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            write_json_atomic(self.path, data)
        except (OSError, StorageError) as err:
            # The last state file stays as it was; the next save tries again.
            message = _write_failure(self.directory, err)
            if message != self.failure:
                log.error("%s", message)
            self.failure = message
            return False
        self.failure = None
        self._written = text
        return True


def _write_failure(directory: str, err: BaseException) -> str:
    cause = err.__cause__ if isinstance(err, StorageError) else err
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        return (
            f"no space left on {directory} (the state of `podstore run`): free some space; "
            "the next run continues from the last state saved"
        )
    return f"cannot write the state of `podstore run` in {directory}: {err}"


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _order(entry: Entry) -> tuple[int, str, str]:
    key = entry.key
    return (0 if key.kind == "StoragePod" else 1, key.namespace, key.name)
