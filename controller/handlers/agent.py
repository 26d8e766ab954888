"""The node agent: one Reconciler, the API calls around it, and kopf's run.

:class:`Agent` is what the kopf handlers call: it runs a reconcile, applies
a StoragePod's child plan through the API, keeps the pod's member summary
up to date, and turns an :class:`Outcome` into a status patch and the kopf
error that makes kopf come back (``TemporaryError``) or stop
(``PermanentError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from controller.config import Settings
from controller.handlers import kube, metrics
from controller.reconcile import Outcome, model, owned_by, plan_children, status_patch
from controller.storage import ImageService, RuntimeService, Store
from controller.sync import NodeView, Reconciler

log = logging.getLogger(__name__)


class KopfEvents:
    """Kubernetes Events through kopf's poster (works from handler threads)."""

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            kopf.event(
                kopf.Body(cast(Any, dict(obj))), type=type_, reason=reason, message=message[:1024]
            )
        except LookupError:  # outside kopf's context (e.g. a background thread)
            log.info("%s %s: %s", reason, (obj.get("metadata") or {}).get("name"), message)


class ApiSecrets:
    def docker_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return kube.docker_config(namespace, name)


@dataclass
class Agent:
    settings: Settings
    reconciler: Reconciler

    @classmethod
    def from_settings(cls, settings: Settings) -> Agent:
        store = Store(
            settings.root, settings.run_root, settings.driver, timeout=settings.command_timeout
        )
        images = ImageService(
            store,
            insecure_registries=settings.insecure_registries,
            pull_timeout=settings.pull_timeout,
        )
        runtime = RuntimeService(images)
        reconciler = Reconciler(
            runtime,
            node_name=settings.node_name,
            infra_image=settings.infra_image,
            source="agent",
            secrets=ApiSecrets(),
            events=KopfEvents(),
            view=NodeView(runtime, max_age=max(settings.resync_interval / 2, 1.0)),
            orphan_grace=settings.orphan_grace,
        )
        return cls(settings, reconciler)

    # -- pods -----------------------------------------------------------------

    def sync_pod(
        self,
        body: Mapping[str, Any],
        members: Iterable[Mapping[str, Any]],
        patch: MutableMapping[str, Any],
        *,
        raise_errors: bool = True,
    ) -> None:
        members = list(members)
        if not raise_errors and not _handled(body):
            return  # a resync before the first reconcile has written status: nothing to compare
        started = time.monotonic()
        outcome = self.reconciler.reconcile_pod(body, members)
        if outcome is None:
            return
        if outcome.phase == "Ready":
            self._apply_children(body, members)
        self._finish(model.POD_KIND, body, outcome, patch, started, raise_errors)

    def _apply_children(self, pod: Mapping[str, Any], members: list[Mapping[str, Any]]) -> None:
        plan = plan_children(pod, members)
        for child in plan.create:
            kube.create_container(_on_node(child, self.settings.node_name))
        for name, spec_patch in plan.update:
            kube.patch_container_spec(pod["metadata"]["namespace"], name, spec_patch)
        for name in plan.delete:
            kube.delete_container(pod["metadata"]["namespace"], name)

    def delete_pod(self, body: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> None:
        """Delete the pod's members (a snapshot of kopf's live index), then its storage.

        Issue 11 wants only owned members (``owned_members``) to go, standalone ones to stay
        Pending/PodNotFound; that needs their status written when the pod goes, which is
        not done yet, so every member still goes with its pod.
        """
        meta = body.get("metadata") or {}
        kube.patch_pod_status(meta["namespace"], meta["name"], {"phase": "Terminating"})
        # kopf's index is live: other workers change it while this loop runs.
        for member in list(members):
            kube.delete_container(meta["namespace"], member["metadata"]["name"])
        self.reconciler.delete_pod(body)

    # -- containers -----------------------------------------------------------

    def sync_container(
        self,
        body: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        siblings: Iterable[Mapping[str, Any]],
        patch: MutableMapping[str, Any],
        *,
        raise_errors: bool = True,
    ) -> None:
        if not raise_errors and not _handled(body):
            return
        started = time.monotonic()
        if not _ready(pod):
            # Watches of the two kinds are separate streams: a container made together with
            # its pod is often seen before the pod's Ready status. Ask the API, not wait.
            namespace = (body.get("metadata") or {}).get("namespace") or "default"
            name = (body.get("spec") or {}).get("podName")
            if isinstance(name, str) and name:
                pod = kube.get_pod(namespace, name) or pod
        outcome = self.reconciler.reconcile_container(body, pod)
        if outcome is None:
            return
        if pod is not None and (pod.get("status") or {}).get("phase") == "Ready":
            self._summarize(pod, body, outcome, siblings)
        self._finish(model.CONTAINER_KIND, body, outcome, patch, started, raise_errors)

    def _summarize(
        self,
        pod: Mapping[str, Any],
        body: Mapping[str, Any],
        outcome: Outcome,
        siblings: Iterable[Mapping[str, Any]],
    ) -> None:
        """Bring the pod's member summary up to date with this container's phase."""
        name = body["metadata"]["name"]
        members = [s for s in siblings if s["metadata"]["name"] != name]
        members.append(dict(body, status=outcome.status))
        self._patch_summary(pod, members)

    def _patch_summary(self, pod: Mapping[str, Any], members: list[Mapping[str, Any]]) -> None:
        wanted = self.reconciler.reconcile_pod_summary(pod, members)
        if wanted:
            pmeta = pod["metadata"]
            kube.patch_pod_status(pmeta["namespace"], pmeta["name"], wanted)

    def delete_container(
        self,
        body: Mapping[str, Any],
        pod: Mapping[str, Any] | None = None,
        siblings: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.reconciler.delete_container(body)
        # The member is gone: a Ready pod's summary drops it now, not at the next resync.
        if pod is not None and (pod.get("status") or {}).get("phase") == "Ready":
            name = body["metadata"]["name"]
            self._patch_summary(pod, [s for s in siblings if s["metadata"]["name"] != name])

    # -- both -----------------------------------------------------------------

    def _finish(
        self,
        kind: str,
        body: Mapping[str, Any],
        outcome: Outcome,
        patch: MutableMapping[str, Any],
        started: float,
        raise_errors: bool,
    ) -> None:
        changes = status_patch(body.get("status") or {}, outcome.status)
        if changes:
            patch.setdefault("status", {}).update(changes)
        result = "failed" if outcome.failed else ("retry" if outcome.retry_after else "ok")
        metrics.RECONCILES.labels(kind, result).inc()
        metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
        if not raise_errors:
            return
        message = str(outcome.status.get("message") or outcome.phase)
        if outcome.failed:
            raise kopf.PermanentError(message)
        if outcome.retry_after is not None:
            raise kopf.TemporaryError(message, delay=max(outcome.retry_after, 1.0))

    # -- orphans and gauges -----------------------------------------------------

    def collect_orphans(self) -> list[str]:
        node = self.settings.node_name
        live = kube.list_pod_uids(node) | kube.list_container_uids(node)
        removed = self.reconciler.collect_orphans(live)
        counts: dict[str, int] = {"infra": 0, "mounted": 0, "unmounted": 0}
        view = self.reconciler.view
        for c in view.containers():
            if c.infra:
                counts["infra"] += 1
            elif view.is_mounted(c.id):
                counts["mounted"] += 1
            else:
                counts["unmounted"] += 1
        for phase, count in counts.items():
            metrics.MANAGED.labels(phase).set(count)
        return removed


def _on_node(child: Mapping[str, Any], node: str) -> dict[str, Any]:
    """A child as the agent creates it: labelled with its node, which its watch selects on."""
    meta = dict(child["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), model.LABEL_NODE: node}
    return {**child, "metadata": meta}


def owned_members(
    pod: Mapping[str, Any], members: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """A snapshot of the members made from ``pod``'s templates (owner UID or label)."""
    return [m for m in list(members) if owned_by(m, pod)]


def _handled(body: Mapping[str, Any]) -> bool:
    return "observedGeneration" in (body.get("status") or {})


def _ready(pod: Mapping[str, Any] | None) -> bool:
    status = (pod or {}).get("status") or {}
    return bool(status.get("phase") == "Ready" and status.get("podID"))


async def orphan_loop(agent: Agent, stop: threading.Event | asyncio.Event) -> None:
    """Every resync interval, remove what podstore made for objects that are gone."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(agent.collect_orphans)
            if removed:
                log.info("removed %d orphaned storage containers", len(removed))
        except Exception:
            log.exception("orphan collection failed; trying again next pass")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.sleep(agent.settings.resync_interval)
