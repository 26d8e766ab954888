"""Which of the objects kopf holds are gone from the API server.

kopf forgets an object only when its watch delivers the object's deletion. An API
server that comes back without some objects (restored, wiped, or the objects deleted
while the watch was down) delivers no deletion: kopf lists again and keeps what it
had, so its indexes still hold the old objects and its resync timers keep calling
the agent with their last bodies. Left alone, such a timer makes storage for an
object that no longer exists and the orphan pass removes it again, in turn, without
end (issue 12, defect 8).

An object is known to be gone, from facts of the API server and never from a cache:

- **superseded**: a watch event shows its kind, namespace and name with another UID.
  A name holds one object at a time, so the old one was deleted first;
- **missing from a complete LIST** that began after the agent first saw the object
  (the orphan pass lists this node's objects from the API server each time).

:class:`KnownObjects` keeps these facts for the handlers: a resync of a gone object
does nothing, and index entries of gone objects are left out of what the agent is
given. Its size follows this node's objects: an entry is dropped when kopf sees the
object's deletion, and a gone one is kept while kopf may still call about it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any

#: (kind, namespace, name): what one object at a time can hold.
Name = tuple[str, str, str]


def superseded(names: Mapping[Name, str], name: Name, uid: str) -> str | None:
    """The UID that ``name`` held before, when a watch event now shows it with ``uid``."""
    old = names.get(name)
    return old if old and uid and old != uid else None


def missing_from_list(first_seen: Mapping[str, float], listed: Set[str], began: float) -> set[str]:
    """The UIDs seen before a complete LIST began that the LIST did not return."""
    return {uid for uid, at in first_seen.items() if at < began and uid not in listed}


def uid_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


class KnownObjects:
    """The UIDs kopf showed the agent, and which of them are gone (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._first_seen: dict[str, float] = {}
        self._names: dict[Name, str] = {}
        self._name_of: dict[str, Name] = {}
        self._gone: set[str] = set()

    def seen(self, kind: str, obj: Mapping[str, Any]) -> str | None:
        """A watch event showed ``obj`` (kopf's index functions see every one).

        Returns the UID this made gone (the name's previous object), if any.
        """
        uid = uid_of(obj)
        meta = obj.get("metadata") or {}
        name = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if not uid:
            return None
        with self._lock:
            old = superseded(self._names, name, uid)
            if old is not None:
                self._mark_gone({old})
            self._gone.discard(uid)  # seen again: it is there (back in this node's selection)
            self._first_seen.setdefault(uid, self.clock())
            self._names[name] = uid
            self._name_of[uid] = name
        return old

    def listed(self, uids: Set[str], began: float) -> set[str]:
        """A complete LIST of this node's objects, begun at ``began`` (this clock),
        returned ``uids``; returns the UIDs this found gone."""
        with self._lock:
            gone = missing_from_list(self._first_seen, uids, began)
            self._mark_gone(gone)
        return gone

    def deleted(self, obj: Mapping[str, Any]) -> None:
        """kopf saw the object's deletion: it forgets the object, so do we."""
        uid = uid_of(obj)
        with self._lock:
            self._first_seen.pop(uid, None)
            self._gone.discard(uid)
            self._forget_name(uid)

    def is_gone(self, obj: Mapping[str, Any]) -> bool:
        uid = uid_of(obj)
        with self._lock:
            return uid in self._gone

    def live(self, objs: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
        """``objs`` (an index entry) without the gone ones."""
        found = list(objs or ())
        with self._lock:
            if not self._gone:
                return found
            return [o for o in found if uid_of(o) not in self._gone]

    def gone_count(self) -> int:
        with self._lock:
            return len(self._gone)

    def _mark_gone(self, uids: Iterable[str]) -> None:
        for uid in uids:
            self._gone.add(uid)
            self._first_seen.pop(uid, None)
            self._forget_name(uid)

    def _forget_name(self, uid: str) -> None:
        """The name ``uid`` held is no longer known to hold it (lock held)."""
        name = self._name_of.pop(uid, None)
        if name is not None and self._names.get(name) == uid:
            del self._names[name]
