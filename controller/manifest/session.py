"""One ``podstore run``: the resource set, reconciled pass after pass.

A :class:`Session` holds the resources that :func:`~controller.manifest.resources.build`
made from the manifests and feeds them to the sync loop's
:class:`~controller.sync.driver.Driver` (``source="run"``), the one the agent's
handlers feed: removed resources first (``remove_container``, then
``remove_pod``), then every StoragePod (``sync_pod``), every StorageContainer
with its pod (``sync_container``, which keeps the pod's member summary), and last
``collect_orphans`` for what this source made that no resource names any more.
The driver's decisions come back through :class:`FileSink`: status patches
merged into the resources as the API server would merge them. What is file mode's
own stays here: the resource set, its UIDs and state file, and when to look again.

An outcome that asks to come back later (``retry_after``: a pull backing off,
a storage error) is not reconciled again before then, as kopf would not;
waiting on a pod (``PodNotReady``, ``PodNotFound``) costs no storage call and
is looked at every pass.

Between two steps the session asks ``should_stop``; a signal never cuts a
storage step in half.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.manifest.loader import Key, Loaded, Problem
from controller.manifest.resources import build
from controller.manifest.state import Entry, StateFile
from controller.reconcile import ChildPlan, Outcome, model
from controller.reconcile.status import merge_patch, rfc3339
from controller.storage.errors import StorageError
from controller.sync import Reconciler
from controller.sync.driver import Driver

log = logging.getLogger(__name__)

# Reasons that are only waiting on another resource: looked at again every pass.
WAITING_ON_POD = frozenset({"PodNotReady", "PodNotFound"})
# Reasons that no retry can cure while the manifests stay as they are.
STUCK = frozenset({"PodNotFound", "ErrImageNeverPull"})
DELETE_RETRY = 10.0
# The phases in which a resource is where its spec wants it.
SETTLED_OK = {
    model.POD_KIND: frozenset({"Ready"}),
    model.CONTAINER_KIND: frozenset({"Created", "Started", "Stopped"}),
}


@dataclass
class PassReport:
    """What one pass did."""

    changed: list[Key] = field(default_factory=list)  # resources whose status changed
    removed: list[Entry] = field(default_factory=list)  # resources removed from the store
    orphans: list[str] = field(default_factory=list)  # container IDs collected
    interrupted: bool = False

    @property
    def quiet(self) -> bool:
        return not (self.changed or self.removed or self.orphans)


class FileSecrets:
    """Image pull secrets read from the manifests (never written anywhere)."""

    def __init__(self) -> None:
        self.configs: dict[tuple[str, str], dict[str, Any]] = {}

    def docker_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.configs.get((namespace, name))


class LogEvents:
    """Kubernetes-style events, as log lines."""

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        level = logging.WARNING if type_ == "Warning" else logging.INFO
        log.log(
            level,
            "%s %s/%s: %s: %s",
            obj.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
            reason,
            message,
        )


class FileSink:
    """The driver's decisions applied to the session's resource set."""

    def __init__(self, session: Session, report: PassReport) -> None:
        self.session = session
        self.report = report

    def write_status(self, kind: str, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = Key(kind, str(meta.get("namespace") or "default"), str(meta.get("name")))
        entry = self.session.entries.get(key) or self.session.removing.get(key)
        if entry is not None:
            self.session._patch(entry, patch, self.report)

    def apply_children(self, pod: Mapping[str, Any], plan: ChildPlan) -> None:
        # The resource set was built with the same child plan when the manifests were
        # read (resources.build): what is left here is for the next read to apply.
        log.debug("%s: child plan left for the next read: %s", pod["metadata"]["name"], plan)

    def delete_child(self, pod: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        meta = child.get("metadata") or {}
        key = Key(model.CONTAINER_KIND, str(meta.get("namespace") or "default"), meta["name"])
        entry = self.session.entries.pop(key, None)
        if entry is not None:
            self.session.removing[key] = entry


class Session:
    def __init__(
        self,
        reconciler: Reconciler,
        state: StateFile,
        *,
        secrets: FileSecrets,
        should_stop: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.reconciler = reconciler
        self.driver = Driver(reconciler)
        self.state = state
        self.secrets = secrets
        self.should_stop = should_stop
        self.clock = clock
        self.wall_clock = wall_clock
        self.entries: dict[Key, Entry] = {}
        self.removing: dict[Key, Entry] = {}
        # Monotonic time before which a resource that asked to wait is left alone.
        self.not_before: dict[Key, float] = {}
        self.problems: list[Problem] = []

    # -- the resource set -------------------------------------------------------

    def restore(self) -> None:
        """Take up the resources of the last run, as they were."""
        for entry in self.state.load():
            if entry.deleting:
                self.removing[entry.key] = entry
            else:
                self.entries[entry.key] = entry

    def apply(self, loaded: Loaded) -> list[Problem]:
        """Make the resource set what the manifests say; returns every problem."""
        previous = [*self.entries.values(), *self.removing.values()]
        built = build(loaded, previous, now=rfc3339(self.wall_clock()))
        self.secrets.configs = dict(loaded.secrets)
        for key, entry in built.entries.items():
            old = self.entries.get(key)
            if old is None or old.spec_hash != entry.spec_hash:
                self.not_before.pop(key, None)  # a new spec is looked at at once
        self.entries = built.entries
        self.removing = {e.key: e for e in built.removed}
        for key in self.removing:
            self.not_before.pop(key, None)
        self.problems = [*loaded.problems, *built.problems]
        return self.problems

    def pods(self) -> list[Entry]:
        return sorted(
            (e for e in self.entries.values() if e.key.kind == model.POD_KIND), key=_by_name
        )

    def containers(self) -> list[Entry]:
        return sorted(
            (e for e in self.entries.values() if e.key.kind == model.CONTAINER_KIND),
            key=_by_name,
        )

    def members(self, pod: Entry) -> list[Entry]:
        key = pod.key
        return [
            c
            for c in self.containers()
            if c.key.namespace == key.namespace and _spec(c).get("podName") == key.name
        ]

    # -- one pass ---------------------------------------------------------------

    def sync(self) -> PassReport:
        """One pass over every resource; stops early (``interrupted``) when asked to."""
        report = PassReport()
        sink = FileSink(self, report)
        self.reconciler.view.refresh()
        for entry in sorted(self.removing.values(), key=_removal_order):
            if self.should_stop():
                report.interrupted = True
                return report
            self._remove(entry, report, sink)
        for pod in self.pods():
            if self.should_stop():
                report.interrupted = True
                return report
            if self._due(pod):
                members = [m.obj for m in self.members(pod)]
                outcome = self._call(pod, self.driver.sync_pod, pod.obj, members, sink)
                self._record(pod, outcome, report)
        for ctr in self.containers():
            if self.should_stop():
                report.interrupted = True
                return report
            if self._due(ctr):
                owner = self.entries.get(
                    Key(model.POD_KIND, ctr.key.namespace, str(_spec(ctr).get("podName")))
                )
                pod_obj = owner.obj if owner is not None else None
                siblings = [m.obj for m in self.members(owner)] if owner is not None else []
                outcome = self._call(
                    ctr, self.driver.sync_container, ctr.obj, pod_obj, siblings, sink
                )
                self._record(ctr, outcome, report)
        for pod in self.pods():
            self.driver.summarize(pod.obj, [m.obj for m in self.members(pod)], sink)
        if self.should_stop():
            report.interrupted = True
            return report
        live = {e.obj["metadata"]["uid"] for e in [*self.entries.values(), *self.removing.values()]}
        try:
            report.orphans = self.driver.collect_orphans(live)
        except StorageError as err:
            log.warning("collecting orphans failed (%s); trying again next pass", err)
        return report

    def save(self) -> bool:
        entries = [*self.entries.values(), *self.removing.values()]
        return self.state.save(entries, node_name=self.reconciler.node_name)

    # -- waiting ----------------------------------------------------------------

    def next_retry(self, *, can_change: bool) -> float | None:
        """When the next resource that asked to wait is due (monotonic); None if none.

        With ``can_change`` False (``--once``: the manifests stay as read) only
        resources that a retry could still bring on count.
        """
        due = [
            at
            for key, at in self.not_before.items()
            if can_change or self._reason(key) not in STUCK
        ]
        return min(due) if due else None

    def _reason(self, key: Key) -> str:
        entry = self.entries.get(key) or self.removing.get(key)
        return str(entry.status.get("reason") or "") if entry is not None else ""

    def _due(self, entry: Entry) -> bool:
        at = self.not_before.get(entry.key)
        return at is None or self.clock() >= at

    # -- helpers ----------------------------------------------------------------

    def _call(
        self, entry: Entry, step: Callable[..., Outcome | None], *args: Any
    ) -> Outcome | None:
        try:
            return step(*args)
        except StorageError as err:
            # The reconciler catches these itself; one slipping through (a store
            # that went away under it) is a passing problem of this resource.
            self.reconciler.view.invalidate()
            log.warning("%s: %s", entry.key, err)
            status = {"phase": "Pending", "reason": "StorageError", "message": str(err)}
            self._patch(entry, status, PassReport())
            return Outcome(dict(entry.status, **status), retry_after=DELETE_RETRY)

    def _record(self, entry: Entry, outcome: Outcome | None, report: PassReport) -> None:
        """When to look at the resource again (its status is written by the driver)."""
        if outcome is None:
            log.warning("%s is not this node's; it is left alone", entry.key)
            return
        reason = str(outcome.status.get("reason") or "")
        if outcome.retry_after is not None and reason not in WAITING_ON_POD:
            self.not_before[entry.key] = self.clock() + outcome.retry_after
        else:
            self.not_before.pop(entry.key, None)

    def _patch(self, entry: Entry, patch: Mapping[str, Any], report: PassReport) -> None:
        status = merge_patch(entry.status, patch)
        if status != entry.status:
            entry.obj["status"] = status
            if entry.key not in report.changed:
                report.changed.append(entry.key)

    def _remove(self, entry: Entry, report: PassReport, sink: FileSink) -> None:
        if not self._due(entry):
            return
        try:
            if entry.key.kind == model.POD_KIND:
                members = [m.obj for m in self.members(entry)]
                self.driver.remove_pod(entry.obj, members, sink)
            else:
                self.driver.remove_container(entry.obj, None, (), sink)
        except StorageError as err:
            entry.deleting = True
            self._patch(
                entry,
                {"phase": "Terminating", "reason": "StorageError", "message": str(err)},
                report,
            )
            self.not_before[entry.key] = self.clock() + DELETE_RETRY
            log.warning("removing %s failed: %s; trying again", entry.key, err)
            return
        del self.removing[entry.key]
        self.not_before.pop(entry.key, None)
        report.removed.append(entry)
        log.info("%s removed from the store", entry.key)


def settled_ok(entry: Entry) -> bool:
    """Whether a resource ended where its spec wants it."""
    if entry.deleting:
        return False
    phase = entry.status.get("phase")
    return phase in SETTLED_OK.get(entry.key.kind, frozenset())


def _spec(entry: Entry) -> Mapping[str, Any]:
    spec = entry.obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _by_name(entry: Entry) -> tuple[str, str]:
    return (entry.key.namespace, entry.key.name)


def _removal_order(entry: Entry) -> tuple[int, str, str]:
    # Containers before the pods they belong to.
    return (1 if entry.key.kind == model.POD_KIND else 0, entry.key.namespace, entry.key.name)
