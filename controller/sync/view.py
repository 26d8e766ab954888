"""What the node's store holds, read once and shared by every reconcile.

Reading the store costs a process per question; a node with a thousand
containers would spend seconds asking about each one. :class:`NodeView`
answers from one listing of the store (``containers --json``), one
``mounted`` question for all of podstore's containers and one listing of the
layers (to see a layer a killed create left unnamed, or one the agent has yet
to name: it names a new container's layer after the start), taken again when it
is older than ``max_age`` or when asked. podstore's own changes are applied
to the view as they are made, so the view stays true between listings;
changes made by others show at the next listing (the resync takes one every
pass), and an action that finds the view stale invalidates it. Containers are
indexed by their object's UID label: a reconcile finds its own without a scan.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from controller.reconcile import model
from controller.storage import ManagedContainer, RuntimeContainerMetadata, RuntimeService

INDEXED = model.LABEL_UID  # what every reconcile looks its containers up by


class NodeView:
    def __init__(
        self,
        runtime: RuntimeService,
        *,
        max_age: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._taken: float | None = None
        self._containers: dict[str, ManagedContainer] = {}
        self._by_uid: dict[str, dict[str, None]] = {}  # INDEXED label value -> IDs, in order
        self._mounted: set[str] = set()
        # Containers whose layer lacks its name (a create killed part-way).
        self._unnamed: set[str] = set()
        # Containers whose layer podstore is about to name (the agent's LayerNamer): a
        # listing taken meanwhile shows them unnamed, but no pass need name them.
        self._naming: set[str] = set()
        # podstore's own changes made while a listing is taken: replayed onto it, since
        # the listing may have been read before them (None: no listing under way).
        self._journal: list[Callable[[], None]] | None = None
        self.listings = 0

    def refresh(self) -> None:
        """List the store again (three processes), whatever the view's age."""
        with self._refresh_lock:
            started = self.clock()
            with self._lock:
                self._journal = []
            try:
                listing = self.runtime.list_containers()
                mounted = self.runtime.mounted([c.id for c in listing])
                layers = self.runtime.layer_names() if listing else {}
            except BaseException:
                with self._lock:
                    self._journal = None
                raise
            with self._lock:
                journal, self._journal = self._journal or [], None
                self._containers = {}
                self._by_uid = {}
                for c in listing:
                    self._index(c)
                self._mounted = mounted
                self._unnamed = {
                    c.id
                    for c in listing
                    if c.layer and f"{c.metadata.name}-layer" not in layers.get(c.layer, ())
                }
                for change in journal:  # made during the listing: true whatever it read
                    change()
                self._taken = started
                self.listings += 1

    def _fresh(self) -> None:
        with self._lock:
            taken = self._taken
        if taken is None or self.clock() - taken > self.max_age:
            with self._refresh_lock:
                # Another thread may have refreshed while this one waited.
                with self._lock:
                    taken = self._taken
                if taken is not None and self.clock() - taken <= self.max_age:
                    return
            self.refresh()

    def invalidate(self) -> None:
        with self._lock:
            self._taken = None

    def get(self, container_id: str) -> ManagedContainer | None:
        self._fresh()
        with self._lock:
            return self._containers.get(container_id)

    def is_mounted(self, container_id: str) -> bool:
        self._fresh()
        with self._lock:
            return container_id in self._mounted

    def layer_unnamed(self, container_id: str) -> bool:
        """The container's layer lacks its name and nothing in this process is naming it."""
        self._fresh()
        with self._lock:
            return container_id in self._unnamed and container_id not in self._naming

    def set_layer_naming(self, container_id: str) -> None:
        """podstore made the container with its layer unnamed, and names it soon."""
        with self._lock:
            self._naming.add(container_id)

    def set_layer_named(self, container_id: str) -> None:
        with self._lock:
            self._naming.discard(container_id)
        self._change(lambda: self._unnamed.discard(container_id))

    def set_layer_unnamed(self, container_id: str) -> None:
        """Naming the layer failed or was dropped: the container's next pass names it."""
        with self._lock:
            self._naming.discard(container_id)
        self._change(lambda: self._unnamed.add(container_id))

    def containers(self) -> list[ManagedContainer]:
        self._fresh()
        with self._lock:
            return list(self._containers.values())

    def where(self, **labels: str) -> list[ManagedContainer]:
        """podstore's containers whose labels have these values."""
        self._fresh()
        with self._lock:
            if INDEXED in labels:
                found = [self._containers[i] for i in self._by_uid.get(labels[INDEXED], ())]
                if len(found) > 1:  # in the view's order, as a scan would find them
                    order = {ident: n for n, ident in enumerate(self._containers)}
                    found.sort(key=lambda c: order[c.id])
            else:
                found = list(self._containers.values())
        return [c for c in found if all(c.metadata.labels.get(k) == v for k, v in labels.items())]

    def _index(self, container: ManagedContainer) -> None:
        """Put a container in the view and its index (with the lock held); one already
        there keeps its place (listing order)."""
        old = self._containers.get(container.id)
        if old is not None:
            self._unlabel(old)
        self._containers[container.id] = container
        uid = container.metadata.labels.get(INDEXED)
        if uid is not None:
            self._by_uid.setdefault(uid, {})[container.id] = None

    def _unindex(self, container_id: str) -> None:
        old = self._containers.pop(container_id, None)
        if old is not None:
            self._unlabel(old)

    def _unlabel(self, container: ManagedContainer) -> None:
        uid = container.metadata.labels.get(INDEXED)
        ids = self._by_uid.get(uid) if uid is not None else None
        if uid is not None and ids is not None:
            ids.pop(container.id, None)
            if not ids:
                del self._by_uid[uid]

    # -- podstore's own changes, applied as they are made -------------------

    def put(self, container: ManagedContainer) -> None:
        def apply() -> None:
            self._index(container)

        self._change(apply)

    def put_metadata(self, container_id: str, metadata: RuntimeContainerMetadata) -> None:
        def apply() -> None:
            found = self._containers.get(container_id)
            if found is not None:
                self._index(replace(found, metadata=metadata))

        self._change(apply)

    def forget(self, ids: Iterable[str]) -> None:
        gone = list(ids)

        def apply() -> None:
            for ident in gone:
                self._unindex(ident)
                self._mounted.discard(ident)
                self._unnamed.discard(ident)
                self._naming.discard(ident)

        self._change(apply)

    def set_mounted(self, container_id: str, mounted: bool) -> None:
        def apply() -> None:
            if mounted:
                self._mounted.add(container_id)
            else:
                self._mounted.discard(container_id)

        self._change(apply)

    def _change(self, apply: Callable[[], None]) -> None:
        """Apply one of podstore's changes now, and again onto a listing under way."""
        with self._lock:
            apply()
            if self._journal is not None:
                self._journal.append(apply)
