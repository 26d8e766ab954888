"""The sync loop both sources feed: one object at a time, or a whole pass.

The kubelet has several config sources (files, HTTP, the API) feeding one sync
loop; podstore has two: the agent's API objects (kopf calls in, one event at a
time) and ``podstore run``'s manifest files (a pass over every resource). Both
hand their objects to :class:`Driver` and take what it decided through a
:class:`Sink`: status patches, a pod's child plan, the members to delete with
their pod. Everything of the lifecycle lives here and below: a pod's owned
children (``spec.containers``) follow its templates once its sandbox is Ready, its
member summary follows its members, and a deleted pod takes only the containers
it owns (a container that merely names it loses its storage and waits,
``PodNotFound``, until the pod comes back).

Calls for one object are serialized (a resync and an event never reconcile the
same container at once); calls for different objects run in parallel.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from controller.reconcile import (
    ChildPlan,
    model,
    owned_by,
    plan_children,
    planned_members,
    status_patch,
)
from controller.reconcile.plan import WAITING_ON_POD, Outcome
from controller.reconcile.status import merge_patch
from controller.sync.reconciler import Reconciler

log = logging.getLogger(__name__)

# The fields of a container's status that name its storage: gone with the storage.
STORAGE_FIELDS = (
    "containerID",
    "podID",
    "mountPoint",
    "configPath",
    "workDir",
    "runDir",
    "startedAt",
    "stoppedAt",
)


class Sink(Protocol):
    """Where a source takes the driver's decisions."""

    def write_status(self, kind: str, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` (None deletes a key) into the object's status."""

    def apply_children(self, pod: Mapping[str, Any], plan: ChildPlan) -> None:
        """Create, patch and delete the pod's owned StorageContainers as planned."""

    def delete_child(self, pod: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        """Delete an owned StorageContainer of a pod that is being deleted."""


class Driver:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, obj: Mapping[str, Any]) -> threading.Lock:
        uid = str((obj.get("metadata") or {}).get("uid") or id(obj))
        with self._guard:
            return self._locks.setdefault(uid, threading.Lock())

    def _forget_lock(self, obj: Mapping[str, Any]) -> None:
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        with self._guard:
            self._locks.pop(uid, None)

    # -- pods -------------------------------------------------------------------------------

    def sync_pod(
        self, pod: Mapping[str, Any], members: Iterable[Mapping[str, Any]], sink: Sink
    ) -> Outcome | None:
        """Reconcile a pod; once Ready, bring its owned children in step with its templates."""
        members = list(members)  # a snapshot: a source's live index may change meanwhile
        plan = plan_children(pod, members)
        with self._lock(pod):
            # A Ready pod's summary counts the children its plan makes (Pending) and not the
            # ones it deletes: a pod with two templates is never "0/0 containers ready".
            outcome = self.reconciler.reconcile_pod(pod, planned_members(members, plan))
        if outcome is None:
            return None
        if outcome.phase == "Ready" and not plan.empty:
            sink.apply_children(pod, plan)
        self._write(sink, model.POD_KIND, pod, outcome.status)
        return outcome

    def summarize(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]], sink: Sink
    ) -> dict[str, Any]:
        """Bring a Ready pod's member summary up to date; returns the patch written."""
        if (pod.get("status") or {}).get("phase") != "Ready":
            return {}
        patch = self.reconciler.reconcile_pod_summary(pod, members)
        if patch:
            sink.write_status(model.POD_KIND, pod, patch)
        return patch

    def remove_pod(
        self, pod: Mapping[str, Any], members: Iterable[Mapping[str, Any]], sink: Sink
    ) -> list[Mapping[str, Any]]:
        """Remove a deleted pod: its owned children go, its storage goes, members that only
        name it lose their storage and wait for it. Returns those waiting members, with the
        status written."""
        members = list(members)
        sink.write_status(model.POD_KIND, pod, {"phase": "Terminating"})
        standalone = []
        for member in members:
            if owned_by(member, pod):
                sink.delete_child(pod, member)
            else:
                standalone.append(member)
        with self._lock(pod):
            self.reconciler.delete_pod(pod)
        self._forget_lock(pod)
        waiting = []
        for member in standalone:
            outcome = self.sync_container(member, None, (), sink)
            waiting.append(with_status(member, outcome.status) if outcome else member)
        return waiting

    # -- containers -------------------------------------------------------------------------

    def sync_container(
        self,
        ctr: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        siblings: Iterable[Mapping[str, Any]],
        sink: Sink,
    ) -> Outcome | None:
        """Reconcile a container; a Ready pod's summary follows at once."""
        siblings = list(siblings)
        with self._lock(ctr):
            outcome = self.reconciler.reconcile_container(ctr, pod)
        if outcome is None:
            return None
        status = dict(outcome.status)
        if outcome.reason in WAITING_ON_POD and not self._has_storage(ctr):
            # Nothing of it is in the store: its status names no storage either.
            current = ctr.get("status") or {}
            status.update({k: None for k in STORAGE_FIELDS if current.get(k) is not None})
        self._write(sink, model.CONTAINER_KIND, ctr, status)
        if pod is not None:
            name = (ctr.get("metadata") or {}).get("name")
            members = [s for s in siblings if (s.get("metadata") or {}).get("name") != name]
            members.append(dict(ctr, status=dict(ctr.get("status") or {}, **status)))
            self.summarize(pod, members, sink)
        return Outcome(status, outcome.retry_after, outcome.failed, outcome.event)

    def remove_container(
        self,
        ctr: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        siblings: Iterable[Mapping[str, Any]],
        sink: Sink,
    ) -> None:
        """Remove a deleted container's storage; a Ready pod's summary drops it at once."""
        with self._lock(ctr):
            self.reconciler.delete_container(ctr)
        self._forget_lock(ctr)
        if pod is not None:
            name = (ctr.get("metadata") or {}).get("name")
            rest = [s for s in siblings if (s.get("metadata") or {}).get("name") != name]
            self.summarize(pod, rest, sink)

    # -- orphans ------------------------------------------------------------------------------

    def collect_orphans(self, live_uids: set[str]) -> list[str]:
        return self.reconciler.collect_orphans(live_uids)

    # -- helpers ------------------------------------------------------------------------------

    def _has_storage(self, ctr: Mapping[str, Any]) -> bool:
        uid = str((ctr.get("metadata") or {}).get("uid") or "")
        return bool(self.reconciler.view.where(**{model.LABEL_UID: uid}))

    @staticmethod
    def _write(sink: Sink, kind: str, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        changes = status_patch(obj.get("status") or {}, status)
        if changes:
            sink.write_status(kind, obj, changes)


def with_status(obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with a status merge patch applied (None removes a key), as the API would."""
    return dict(obj, status=merge_patch(obj.get("status") or {}, status))
