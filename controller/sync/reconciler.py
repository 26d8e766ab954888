"""One reconcile of a StoragePod or StorageContainer: observe, plan, execute.

:class:`Reconciler` is what both sources call, the agent's handlers and
``podstore run``, for one object at a time: it observes the store through
the pass's :class:`NodeView` (:mod:`controller.sync.observe`), asks the pure
plan functions (:mod:`controller.reconcile.plan`) what to do, runs their
steps (:class:`~controller.sync.execute.Executor`) and returns the
:class:`~controller.reconcile.plan.Outcome`: the status to write and when to
look again. Neither kopf nor any API client is imported here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.reconcile import model
from controller.reconcile import plan as planning
from controller.reconcile.actions import Remove
from controller.reconcile.plan import Context, Object, Outcome, PodView
from controller.storage import RuntimeService
from controller.sync import observe
from controller.sync.execute import EventSink, Executor, LogEvents, SecretSource
from controller.sync.view import NodeView

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        runtime: RuntimeService,
        *,
        node_name: str,
        infra_image: str,
        source: str = "agent",
        secrets: SecretSource | None = None,
        events: EventSink | None = None,
        view: NodeView | None = None,
        clock: Callable[[], float] = time.time,
        orphan_grace: float = 60.0,
    ) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.infra_image = infra_image
        self.source = source
        self.events: EventSink = events or LogEvents()
        self.view = view or NodeView(runtime)
        self.clock = clock
        self.orphan_grace = orphan_grace
        self.executor = Executor(
            runtime, self.view, events=self.events, secrets=secrets, clock=clock
        )
        self._lock = threading.Lock()
        self._orphans_seen: dict[str, float] = {}

    def context(self) -> Context:
        return Context(self.node_name, self.infra_image, self.source, self.clock())

    def owns_pod(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return isinstance(spec, Mapping) and spec.get("nodeName") == self.node_name

    # -- pods ---------------------------------------------------------------------------

    def reconcile_pod(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]] = ()
    ) -> Outcome | None:
        """Make the pod's sandbox exist; None when the pod belongs to another node."""
        ctx = self.context()
        obj = Object.of(pod, model.POD_KIND)
        spec = planning.pod_spec(obj, ctx)
        if isinstance(spec, Outcome):
            return self._done(pod, spec)
        if spec.node_name != self.node_name:
            return None
        facts = observe.pod(self.view, obj, spec, self.infra_image)
        image = spec.infra_image or self.infra_image
        plan = planning.plan_pod(
            obj, facts, ctx, self.executor.backoff_of(obj.ref.uid, image), spec=spec
        )
        if plan is None:
            return None
        ran = self.executor.run(pod, obj, plan.actions, ctx)
        if ran.outcome is not None:
            return self._done(pod, ran.outcome)
        if plan.outcome is not None:
            return self._done(pod, plan.outcome)
        return planning.pod_ready(obj, plan, facts, ran.results, members, ctx)

    def reconcile_pod_summary(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The status patch that brings a Ready pod's member summary up to date."""
        return planning.pod_summary(Object.of(pod, model.POD_KIND), members, self.context())

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Remove every storage container of the pod: members first, then infra."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        self.view.refresh()
        for s in observe.of_uid(self.view, uid):
            if s.infra:
                self.executor.remove(Remove(s.id, sandbox=True))
        self.executor.forget(uid)

    # -- containers -----------------------------------------------------------------------

    def reconcile_container(
        self, ctr: Mapping[str, Any], pod: Mapping[str, Any] | None
    ) -> Outcome | None:
        """Make the container exist, mounted or not per ``state``; None if not this node's."""
        ctx = self.context()
        obj = Object.of(ctr, model.CONTAINER_KIND)
        spec = planning.container_spec(obj, ctx)
        if isinstance(spec, Outcome):
            return self._done(ctr, spec)
        pod_view = PodView.of(pod) if pod is not None else None
        if pod_view is not None and pod_view.spec.get("nodeName") != self.node_name:
            return None
        facts = observe.container(self.view, obj, spec, pod_view)
        backoff = self.executor.backoff_of(obj.ref.uid, spec.image)
        plan = planning.plan_container(obj, pod_view, facts, ctx, backoff, spec=spec)
        if plan is None:
            return None
        ran = self.executor.run(ctr, obj, plan.actions, ctx)
        if ran.outcome is not None:
            return self._done(ctr, ran.outcome)
        if plan.outcome is not None:
            return self._done(ctr, plan.outcome)
        return planning.container_settled(obj, plan, facts, ran.results, ctx)

    def delete_container(self, ctr: Mapping[str, Any]) -> None:
        """Stop and remove the object's storage container(s); gone already is fine."""
        uid = str((ctr.get("metadata") or {}).get("uid") or "")
        self.view.refresh()
        status_id = str((ctr.get("status") or {}).get("containerID") or "")
        for step in planning.plan_removal(observe.of_uid(self.view, uid), status_id):
            self.executor.remove(Remove(step.container_id), gone_ok=True)
        self.executor.forget(uid)

    # -- orphans ----------------------------------------------------------------------------

    def collect_orphans(self, live_uids: set[str]) -> list[str]:
        """Remove this source's containers whose object is gone, after the grace period.

        ``live_uids`` are the UIDs of every object that exists now. Returns
        the IDs removed in this pass.
        """
        now = self.clock()
        self.view.refresh()
        mine = [
            observe.stored(self.view, c)
            for c in self.view.where(
                **{model.LABEL_SOURCE: self.source, model.LABEL_NODE: self.node_name}
            )
        ]
        with self._lock:
            seen = dict(self._orphans_seen)
        decided = planning.plan_orphans(mine, live_uids, seen, now, self.orphan_grace)
        removed: list[str] = []
        for s in decided.removals:
            self.executor.remove(Remove(s.id, sandbox=s.infra))
            removed.append(s.id)
            log.info(
                "removed orphan %s (%s %s/%s is gone)",
                s.id[:12],
                s.labels.get(model.LABEL_KIND),
                s.labels.get(model.LABEL_NAMESPACE),
                s.labels.get(model.LABEL_NAME),
            )
        with self._lock:
            self._orphans_seen = dict(decided.seen)
        return removed

    # -- helpers ------------------------------------------------------------------------------

    def _done(self, obj: Mapping[str, Any], outcome: Outcome) -> Outcome:
        if outcome.event is not None:
            self.events.emit(obj, outcome.event.type, outcome.event.reason, outcome.event.message)
        return outcome
