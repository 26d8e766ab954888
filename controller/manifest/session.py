"""One ``podstore run``: the resource set, reconciled pass after pass.

A :class:`Session` holds the resources that :func:`~controller.manifest.resources.build`
made from the manifests and hands them to the operator's
:class:`~controller.reconcile.Reconciler` (``source="run"``) exactly as the
agent's handlers do: removed resources first (``delete_container``, then
``delete_pod``), then every StoragePod (``reconcile_pod``), every
StorageContainer with its pod (``reconcile_container``), the pods' member
summaries (``reconcile_pod_summary``), and last ``collect_orphans`` for what
this source made that no resource names any more. Each outcome's ``status``
is merged into the resource as a status patch would be.

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
from controller.reconcile import Outcome, model
from controller.reconcile.status import rfc3339
from controller.storage.errors import StorageError
from controller.sync import Reconciler

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
        self.reconciler.view.refresh()
        for entry in sorted(self.removing.values(), key=_removal_order):
            if self.should_stop():
                report.interrupted = True
                return report
            self._remove(entry, report)
        for pod in self.pods():
            if self.should_stop():
                report.interrupted = True
                return report
            if self._due(pod):
                members = [m.obj for m in self.members(pod)]
                self._record(pod, self._call(pod, self.reconciler.reconcile_pod, members), report)
        for ctr in self.containers():
            if self.should_stop():
                report.interrupted = True
                return report
            if self._due(ctr):
                owner = self.entries.get(
                    Key(model.POD_KIND, ctr.key.namespace, str(_spec(ctr).get("podName")))
                )
                pod_obj = owner.obj if owner is not None else None
                outcome = self._call(ctr, self.reconciler.reconcile_container, pod_obj)
                self._record(ctr, outcome, report)
        for pod in self.pods():
            if pod.status.get("phase") != "Ready":
                continue
            patch = self.reconciler.reconcile_pod_summary(
                pod.obj, [m.obj for m in self.members(pod)]
            )
            if patch:
                self._patch(pod, patch, report)
        if self.should_stop():
            report.interrupted = True
            return report
        live = {e.obj["metadata"]["uid"] for e in [*self.entries.values(), *self.removing.values()]}
        try:
            report.orphans = self.reconciler.collect_orphans(live)
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

    def _call(self, entry: Entry, func: Callable[..., Outcome | None], arg: Any) -> Outcome | None:
        try:
            return func(entry.obj, arg)
        except StorageError as err:
            # The reconciler catches these itself; one slipping through (a store
            # that went away under it) is a passing problem of this resource.
            self.reconciler.view.invalidate()
            log.warning("%s: %s", entry.key, err)
            status = {"phase": "Pending", "reason": "StorageError", "message": str(err)}
            return Outcome(dict(entry.status, **status), retry_after=DELETE_RETRY)

    def _record(self, entry: Entry, outcome: Outcome | None, report: PassReport) -> None:
        if outcome is None:
            log.warning("%s is not this node's; it is left alone", entry.key)
            return
        self._patch(entry, outcome.status, report)
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

    def _remove(self, entry: Entry, report: PassReport) -> None:
        if not self._due(entry):
            return
        try:
            if entry.key.kind == model.POD_KIND:
                self.reconciler.delete_pod(entry.obj)
            else:
                self.reconciler.delete_container(entry.obj)
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


def merge_patch(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with a status merge patch applied (None removes a key)."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


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
