"""The node agent: the sync driver fed by kopf, its decisions taken to the API.

:class:`Agent` is what the kopf handlers call: it hands each object to the
:class:`~controller.sync.driver.Driver` with an :class:`ApiSink` (status into
kopf's patch or through the API, a pod's child plan and owned members as API
calls) and turns the :class:`Outcome` into the kopf error that makes kopf come
back (``TemporaryError``) or stop (``PermanentError``). A container waiting on its
pod is not kopf's to retry (kopf would log an ERROR each time): it waits here,
looked at again after a growing delay, or at once when its pod becomes Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from controller.config import Settings
from controller.handlers import kube, metrics
from controller.handlers.events import EventRecorder
from controller.handlers.health import Backoff, describe
from controller.handlers.known import KnownObjects, uid_of
from controller.reconcile import ChildPlan, Outcome, model
from controller.reconcile.plan import WAITING_ON_POD
from controller.reconcile.status import merge_patch
from controller.storage import ImageService, RuntimeService, Store
from controller.sync import NodeView, Reconciler
from controller.sync.driver import Driver, with_status
from controller.sync.execute import LayerNamer, MountBatcher

log = logging.getLogger(__name__)


class ApiSecrets:
    def docker_config(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return kube.docker_config(namespace, name)


# The status fields of a pod's member summary (what a member's change changes).
SUMMARY_KEYS = frozenset({"containers", "ready", "conditions"})
SUMMARY_DELAY = 0.2  # members changing together are summed up in one write
SUMMARY_PATIENCE = 60.0  # a pod that is not Ready for that long is left to its resync


class Summaries:
    """Pods' member summaries, coalesced: written once for all members that changed.

    A member's status change marks its pod due, and so does every event of the pod
    itself (whoever wrote it: kopf's patch of the pod's own reconcile may carry a
    summary computed from members as kopf's index had them). After
    :data:`SUMMARY_DELAY` the pod's ``status.containers``/``ready``/``ContainersReady``
    are computed from kopf's indexes of this node's objects overlaid with the statuses
    this agent wrote since (the indexes learn them one watch event later), compared with
    the newest status of the pod known (the index's, unless the index still shows the
    version this writer's latest write was made on), and written only if they differ.
    So the summary follows the members without a resync, a stale summary is put right
    within one delay, and N members changing at once cost one pod write, not N.
    """

    def __init__(
        self,
        reconciler: Reconciler,
        clock: Callable[[], float],
        known: KnownObjects | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.clock = clock
        self.known = known if known is not None else KnownObjects(clock)
        self._lock = threading.Lock()
        self._due: dict[tuple[str, str], float] = {}
        self._members: dict[tuple[str, str], dict[str, Any]] = {}  # (ns, name) -> status
        # (ns, pod) -> the pod's resourceVersions older than this writer's latest write (the
        # ones its writes were based on, and its earlier writes'), the version that write
        # made, and the status it left (resourceVersions are opaque: only compared equal).
        self._pods: dict[tuple[str, str], tuple[frozenset[str], str, dict[str, Any]]] = {}
        # (ns, pod) -> {child name: (the child as created, or None when deleted, since)}:
        # what this agent did to a pod's children that kopf's index may not show yet.
        self._planned: dict[tuple[str, str], dict[str, tuple[Mapping[str, Any] | None, float]]]
        self._planned = {}
        self.pods_index: Any = None
        self.members_index: Any = None

    def use_indexes(self, pods: Any, members: Any) -> None:
        """kopf's live indexes of this node's pods and of their members (by pod)."""
        self.pods_index, self.members_index = pods, members

    def written(
        self, namespace: str, name: str, obj: Mapping[str, Any], patch: Mapping[str, Any]
    ) -> None:
        pod = (obj.get("spec") or {}).get("podName")
        with self._lock:
            key = (namespace, name)
            base = self._members.get(key) or dict(obj.get("status") or {})
            self._members[key] = merge_patch(base, patch)
            if isinstance(pod, str) and pod:
                self._due.setdefault((namespace, pod), self.clock())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._members.pop((namespace, name), None)

    def forget_pod(self, namespace: str, pod: str) -> None:
        """The pod is deleted: what this writer kept of it goes."""
        with self._lock:
            self._planned.pop((namespace, pod), None)
            self._pods.pop((namespace, pod), None)

    def made(self, namespace: str, pod: str, child: Mapping[str, Any]) -> None:
        """The agent created one of the pod's children (it counts, Pending, until seen)."""
        self._plan(namespace, pod, str(child["metadata"]["name"]), child)

    def unmade(self, namespace: str, pod: str, name: str) -> None:
        """The agent deleted one of the pod's children (it no longer counts)."""
        self._plan(namespace, pod, name, None)

    def _plan(self, namespace: str, pod: str, name: str, child: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._planned.setdefault((namespace, pod), {})[name] = (child, self.clock())

    def due(self, namespace: str, pod: str) -> None:
        with self._lock:
            self._due.setdefault((namespace, pod), self.clock())

    def fresh(
        self, namespace: str, pod: str, members: Iterable[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """``members`` (from kopf's index) with the children this agent made or deleted
        since and the statuses it wrote since."""
        with self._lock:
            return [self._fresh(m) for m in self._with_planned((namespace, pod), members)]

    def flush(self) -> int:
        """Write the summaries that are due; returns how many pods were written."""
        now = self.clock()
        with self._lock:
            ready = [k for k, since in self._due.items() if now - since >= SUMMARY_DELAY]
        written = 0
        for key in ready:
            pod = self._pod(key)
            if pod is None or (pod.get("status") or {}).get("phase") != "Ready":
                with self._lock:
                    if pod is None or now - self._due.get(key, now) > SUMMARY_PATIENCE:
                        self._due.pop(key, None)
                continue
            with self._lock:
                self._due.pop(key, None)
                found = self._with_planned(key, self._index_members(key))
                members = [self._fresh(m) for m in found]
            patch = self.reconciler.reconcile_pod_summary(pod, members)
            if not patch:
                continue
            try:
                version = kube.patch_pod_status(key[0], key[1], patch)
            except Exception:
                with self._lock:  # still due: the next flush writes it
                    self._due.setdefault(key, now)
                raise
            if version:
                base = str((pod.get("metadata") or {}).get("resourceVersion") or "")
                status = merge_patch(pod.get("status") or {}, patch)
                with self._lock:
                    # Two writes can be made before the index shows the first: until it
                    # shows the latest, the versions before it are all older than this one.
                    earlier = self._pods.get(key)
                    older = {base} | ({*earlier[0], earlier[1]} if earlier else set())
                    self._pods[key] = (frozenset(older), version, status)
            written += 1
        return written

    def _pod(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """The pod as the index has it, with the newest status known of it."""
        found = self.pods_index.get(key) if self.pods_index is not None else None
        pod = next(iter(self.known.live(found)), None) if found else None
        if pod is None:
            with self._lock:
                self._pods.pop(key, None)
            return None
        seen = str((pod.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            mine = self._pods.get(key)
            if mine is not None and seen not in mine[0]:
                del self._pods[key]  # the index shows our latest write, or one after it
                mine = None
        if mine is None:
            return dict(pod)
        return dict(pod, status=mine[2])

    def _index_members(self, key: tuple[str, str]) -> list[Mapping[str, Any]]:
        found = self.members_index.get(key) if self.members_index is not None else None
        return self.known.live(found)

    def _with_planned(
        self, key: tuple[str, str], found: Iterable[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """The index's members of a pod, overlaid with the children this agent made or
        deleted that the index does not show yet (with the lock held)."""
        members = list(found)
        planned = self._planned.get(key)
        if not planned:
            return members
        names = {str((m.get("metadata") or {}).get("name")) for m in members}
        now = self.clock()
        for name, (child, since) in list(planned.items()):
            if (child is not None) == (name in names) or now - since > SUMMARY_PATIENCE:
                del planned[name]  # the index caught up (or never will: left to the resync)
            elif child is not None:
                members.append(child)
            else:
                members = [m for m in members if (m.get("metadata") or {}).get("name") != name]
        if not planned:
            del self._planned[key]
        return members

    def _fresh(self, member: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = member.get("metadata") or {}
        mine = self._members.get((str(meta.get("namespace") or "default"), str(meta.get("name"))))
        return dict(member, status=mine) if mine is not None else member


async def summary_loop(agent: Agent, stop: threading.Event | asyncio.Event) -> None:
    """Write the coalesced member summaries of this node's pods, a few times a second."""
    backoff = Backoff(initial=1.0, cap=30.0)
    while not stop.is_set():
        try:
            await asyncio.to_thread(agent.summaries.flush)
        except Exception as err:  # the API: the due pods stay due, tried again
            delay = backoff.failed()
            log.warning(
                "writing pods' member summaries failed (%s); again in %.0fs", describe(err), delay
            )
            await asyncio.sleep(delay)
            continue
        backoff.ok()
        await asyncio.sleep(SUMMARY_DELAY / 2)


class ApiSink:
    """The driver's decisions as API calls; the handled object's status goes into kopf's patch.

    kopf applies a handler's ``patch`` when the handler returns, in one request with its
    own bookkeeping; any other object (the pod whose summary a container changes, the
    members of a deleted pod) is patched through the API at once.
    """

    def __init__(
        self,
        node: str,
        body: Mapping[str, Any] | None,
        patch: MutableMapping[str, Any] | None,
        summaries: Summaries | None = None,
    ) -> None:
        self.node = node
        self.uid = uid_of(body) if body is not None else None
        self.patch = patch
        self.summaries = summaries

    def write_status(self, kind: str, obj: Mapping[str, Any], patch: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        if kind == model.CONTAINER_KIND and self.summaries is not None:
            self.summaries.written(namespace, name, obj, patch)
        if self.patch is not None and uid_of(obj) == self.uid:
            self.patch.setdefault("status", {}).update(patch)
            return
        if kind == model.POD_KIND:
            if self.summaries is not None and set(patch) <= SUMMARY_KEYS:
                # A member changed: the pod's summary is written once for all of them.
                self.summaries.due(namespace, name)
                return
            kube.patch_pod_status(namespace, name, patch)
        else:
            kube.patch_container_status(namespace, name, patch)

    def apply_children(self, pod: Mapping[str, Any], plan: ChildPlan) -> None:
        namespace, name = pod["metadata"]["namespace"], str(pod["metadata"]["name"])
        for child in plan.create:
            made = _on_node(child, self.node)
            kube.create_container(made)
            if self.summaries is not None:
                self.summaries.made(namespace, name, made)
        for child_name, spec_patch in plan.update:
            kube.patch_container_spec(namespace, child_name, spec_patch)
        for child_name in plan.delete:
            kube.delete_container(namespace, child_name)
            if self.summaries is not None:
                self.summaries.unmade(namespace, name, child_name)

    def delete_child(self, pod: Mapping[str, Any], child: Mapping[str, Any]) -> None:
        kube.delete_container(pod["metadata"]["namespace"], child["metadata"]["name"])


@dataclass
class _Waiter:
    """A container waiting on its pod: looked at again after ``delay``, doubling."""

    body: Mapping[str, Any]
    pod: tuple[str, str]
    delay: float
    due: float


WAIT_INITIAL = 1.0
# A pod that is not Ready yet comes within a pull; one that does not exist may take long.
WAIT_MAX = {"PodNotReady": 30.0, "PodNotFound": 300.0}


@dataclass
class Agent:
    settings: Settings
    reconciler: Reconciler
    driver: Driver = field(init=False)
    waiting: dict[tuple[str, str], _Waiter] = field(init=False, default_factory=dict)
    clock: Any = time.monotonic

    def __post_init__(self) -> None:
        self.driver = Driver(self.reconciler)
        # Handlers run on several threads: their mounts of a burst share one process, and
        # a new layer is named after the run that made it, off the way to Started.
        # Events too are posted after the runs of a burst (the recorder's own thread): both
        # wait for a lull, not for an instant between two of the burst's runs.
        executor = self.reconciler.executor
        executor.mounts = MountBatcher(self.reconciler.runtime)
        executor.namer = LayerNamer(
            self.reconciler.runtime, self.reconciler.view, idle=executor.quiet
        )
        if isinstance(self.reconciler.events, EventRecorder):
            self.reconciler.events.idle = executor.quiet
        self.known = KnownObjects(self.clock)
        self.summaries = Summaries(self.reconciler, self.clock, self.known)
        self._waiting_lock = threading.Lock()
        # Pods this agent found Ready, with the status it wrote: their members need not
        # wait for the API (or kopf's index) to show it. (ns, name) -> pod with status.
        self._ready_pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.wakeup: Callable[[], None] = lambda: None  # the wait loop's, once it runs

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
            events=EventRecorder.for_node(settings.node_name),
            view=NodeView(runtime, max_age=max(settings.resync_interval / 2, 1.0)),
            orphan_grace=settings.orphan_grace,
        )
        return cls(settings, reconciler)

    def sink(
        self, body: Mapping[str, Any] | None, patch: MutableMapping[str, Any] | None
    ) -> ApiSink:
        return ApiSink(self.settings.node_name, body, patch, self.summaries)

    # -- pods -----------------------------------------------------------------

    def sync_pod(
        self,
        body: Mapping[str, Any],
        members: Iterable[Mapping[str, Any]],
        patch: MutableMapping[str, Any] | None,
        *,
        raise_errors: bool = True,
    ) -> None:
        if not raise_errors and not _handled(body):
            return  # a resync before the first reconcile has written status: nothing to compare
        started = time.monotonic()
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        members = self.summaries.fresh(namespace, name, members)  # as fresh as the writer's
        outcome = self.driver.sync_pod(body, members, self.sink(body, patch))
        if outcome is None:
            return
        key = (namespace, name)
        with self._waiting_lock:
            if outcome.phase == "Ready":
                self._ready_pods[key] = with_status(body, outcome.status)
            else:
                self._ready_pods.pop(key, None)
        if outcome.phase == "Ready":
            self._wake(key)
        self._finish(model.POD_KIND, outcome, started, raise_errors)

    def delete_pod(self, body: Mapping[str, Any], members: Iterable[Mapping[str, Any]]) -> None:
        """Delete the pod's owned members, then its storage; members that only name it wait."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        with self._waiting_lock:
            self._ready_pods.pop(key, None)
        self.summaries.forget_pod(*key)
        for member in self.driver.remove_pod(body, members, self.sink(None, None)):
            self._wait_for_pod(member, "PodNotFound")

    # -- containers -----------------------------------------------------------

    def sync_container(
        self,
        body: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        siblings: Iterable[Mapping[str, Any]],
        patch: MutableMapping[str, Any] | None,
        *,
        raise_errors: bool = True,
    ) -> None:
        if not raise_errors and not _handled(body):
            return
        started = time.monotonic()
        if not _ready(pod):
            # Watches of the two kinds are separate streams: a container made together with
            # its pod is often seen before the pod's Ready status, or before kopf has even
            # written it. What this agent found is known here; else ask the API.
            namespace = str((body.get("metadata") or {}).get("namespace") or "default")
            name = (body.get("spec") or {}).get("podName")
            if isinstance(name, str) and name:
                pod = self._ready_pod(namespace, name, pod) or kube.get_pod(namespace, name) or pod
        outcome = self.driver.sync_container(body, pod, siblings, self.sink(body, patch))
        if outcome is None:
            return
        if outcome.reason in WAITING_ON_POD:
            self._wait_for_pod(with_status(body, outcome.status), outcome.reason)
            raise_errors = False  # looked at again by the wait loop, not by kopf's retries
        else:
            self._done_waiting(body)
        self._finish(model.CONTAINER_KIND, outcome, started, raise_errors)

    def delete_container(
        self,
        body: Mapping[str, Any],
        pod: Mapping[str, Any] | None = None,
        siblings: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self._done_waiting(body)
        self.driver.remove_container(body, pod, siblings, self.sink(None, None))
        meta = body.get("metadata") or {}
        self.summaries.forget(str(meta.get("namespace") or "default"), str(meta.get("name")))

    # -- containers waiting on their pod -------------------------------------------

    def _wait_for_pod(self, body: Mapping[str, Any], reason: str) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        pod = (key[0], str((body.get("spec") or {}).get("podName") or ""))
        with self._waiting_lock:
            old = self.waiting.get(key)
            delay = min(old.delay * 2, WAIT_MAX.get(reason, 30.0)) if old else WAIT_INITIAL
            self.waiting[key] = _Waiter(body, pod, delay, self.clock() + delay)
        log.info(
            "StorageContainer %s/%s waits for StoragePod %s (%s); looking again in %.0fs",
            key[0],
            key[1],
            pod[1],
            reason,
            delay,
        )

    def _done_waiting(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name")))
        with self._waiting_lock:
            self.waiting.pop(key, None)

    def _ready_pod(
        self, namespace: str, name: str, pod: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The pod as this agent last found it Ready, if it is the same object as ``pod``."""
        with self._waiting_lock:
            mine = self._ready_pods.get((namespace, name))
        if mine is None or (pod is not None and uid_of(pod) != uid_of(mine)):
            return None
        if self.known.is_gone(mine):
            return None
        return mine

    def _wake(self, pod: tuple[str, str]) -> None:
        """The pod is Ready: its waiting containers are due now."""
        woken = False
        with self._waiting_lock:
            for waiter in self.waiting.values():
                if waiter.pod == pod:
                    waiter.due = 0.0
                    woken = True
        if woken:
            self.wakeup()

    def retry_waiting(self) -> int:
        """Look again at the containers whose wait is over; returns how many were looked at."""
        now = self.clock()
        with self._waiting_lock:
            due = [(k, w) for k, w in self.waiting.items() if w.due <= now]
        for key, waiter in due:
            body = waiter.body
            try:
                pod = None
                if waiter.pod[1]:
                    pod = self._ready_pod(*waiter.pod, None) or kube.get_pod(*waiter.pod)
                self.sync_container(body, pod, (), None, raise_errors=False)
            except Exception as err:  # the API or the store: the next look tries again
                log.warning("StorageContainer %s/%s: %s; trying again", key[0], key[1], err)
                self._wait_for_pod(body, "PodNotReady")
        return len(due)

    # -- both -----------------------------------------------------------------

    def _finish(self, kind: str, outcome: Outcome, started: float, raise_errors: bool) -> None:
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

    def close(self) -> None:
        """The agent is stopping: give the layer names still waiting (one process each)
        and post the Events still waiting."""
        namer = self.reconciler.executor.namer
        if namer is not None:
            namer.close()
        if isinstance(self.reconciler.events, EventRecorder):
            self.reconciler.events.close()

    # -- orphans and gauges -----------------------------------------------------

    def collect_orphans(self) -> list[str]:
        node = self.settings.node_name
        began = self.clock()
        live = kube.list_pod_uids(node) | kube.list_container_uids(node)
        # What kopf still holds but the API server no longer has: its resyncs stop now,
        # before this pass removes the objects' storage.
        gone = self.known.listed(live, began)
        if gone:
            log.info(
                "%d objects seen before are gone from the API server; their resyncs and "
                "kopf's calls for them are ignored from now on",
                len(gone),
            )
        metrics.GONE.set(self.known.gone_count())
        with self._waiting_lock:  # pods kopf never saw deleted: not Ready for anyone
            for key in [k for k, p in self._ready_pods.items() if self.known.is_gone(p)]:
                del self._ready_pods[key]
        removed = self.driver.collect_orphans(live)
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
    """A child as the agent creates it: labelled with its node, which its watch selects
    on, and with that node's finalizer already, the one kopf would add first (a PATCH,
    and a watch event handled before the child's own handler could run)."""
    meta = dict(child["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), model.LABEL_NODE: node}
    finalizer = model.finalizer_for(node)
    if finalizer not in (meta.get("finalizers") or ()):
        meta["finalizers"] = [*(meta.get("finalizers") or ()), finalizer]
    return {**child, "metadata": meta}


def _handled(body: Mapping[str, Any]) -> bool:
    return "observedGeneration" in (body.get("status") or {})


def _ready(pod: Mapping[str, Any] | None) -> bool:
    status = (pod or {}).get("status") or {}
    return bool(status.get("phase") == "Ready" and status.get("podID"))


async def wait_loop(agent: Agent, stop: threading.Event | asyncio.Event) -> None:
    """Look again at the containers whose wait for their pod is over: every second, and at
    once when a pod they wait for becomes Ready."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wakeup() -> None:  # from a handler thread
        loop.call_soon_threadsafe(woken.set)

    agent.wakeup = wakeup
    while not stop.is_set():
        woken.clear()
        try:
            await asyncio.to_thread(agent.retry_waiting)
        except Exception as err:
            log.warning("looking at waiting containers failed (%s); trying again", err)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(woken.wait(), 1.0)


async def orphan_loop(agent: Agent, stop: threading.Event | asyncio.Event) -> None:
    """Every resync interval, remove what podstore made for objects that are gone."""
    backoff = Backoff(initial=agent.settings.resync_interval, cap=300.0)
    while not stop.is_set():
        delay = agent.settings.resync_interval
        try:
            removed = await asyncio.to_thread(agent.collect_orphans)
            if removed:
                log.info("removed %d orphaned storage containers", len(removed))
            backoff.ok()
        except Exception as err:  # the store (locked, full) or the API: one line, no traceback
            delay = backoff.failed()
            log.warning("orphan collection failed (%s); again in %.0fs", describe(err), delay)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.sleep(delay)
