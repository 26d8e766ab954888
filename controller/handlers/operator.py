"""The kopf handlers: thin, each parses kopf's arguments and calls the Agent.

Handlers are registered into a registry built for one node
(:func:`build_registry`): their filters need the node's name. The resync is
not a kopf timer per object but one loop for the node (:func:`resync_loop`,
scheduled by :class:`~controller.handlers.schedule.ResyncSchedule`) over the
same indexes. The API server sends each agent only its node's objects:
StoragePods by ``fieldSelector=spec.nodeName=<node>`` (as the kubelet watches
its pods), StorageContainers by ``labelSelector=podstore.dev/node=<node>``
(children carry the label from birth; unlabelled ones are given to their
pod's node by :mod:`controller.handlers.claims`). The indexes hold only those
objects, and only the fields the handlers read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from controller.config import Settings
from controller.handlers import health, kube, metrics, release
from controller.handlers.agent import Agent, orphan_loop, summary_loop, wait_loop
from controller.handlers.claims import Claims
from controller.handlers.images import NodeImageGC, image_gc_loop
from controller.handlers.known import KnownObjects, uid_of
from controller.handlers.passing import next_pass_retries
from controller.handlers.prepull import PrePulls, prepull_loop
from controller.handlers.schedule import ResyncSchedule
from controller.reconcile import model

log = logging.getLogger(__name__)

PODS = (model.GROUP, model.VERSION, model.POD_PLURAL)
CONTAINERS = (model.GROUP, model.VERSION, model.CONTAINER_PLURAL)
IMAGES = (model.GROUP, model.VERSION, kube.IMAGE_PLURAL)
# kopf's delays between retries of a failed API call: about 2 minutes in all.
API_BACKOFFS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0, 30.0)
# Every resource with handlers that keep kopf's bookkeeping: what kopf lists, watches and
# patches; and those with raw event handlers only, which kopf lists and watches. RBAC is
# derived from both in controller.handlers.rbac; a test checks the registry against them.
WATCHED = (PODS, CONTAINERS)
EVENTS_ONLY = (IMAGES,)


def _pod_of(
    known: KnownObjects, index: Any, namespace: str | None, name: Any
) -> Mapping[str, Any] | None:
    """The pod's entry in kopf's index (a gone object's entry left out)."""
    found = index.get((namespace, name)) if index is not None else None
    return next(iter(known.live(found)), None) if found else None


def _members_of(
    known: KnownObjects, index: Any, namespace: str | None, pod: Any
) -> list[Mapping[str, Any]]:
    """A snapshot of the pod's members in kopf's live index, gone objects left out."""
    return known.live(index.get((namespace, pod), ()))


# -- the resync: one loop for the node, not a kopf timer per object --------------------------


def resync_candidates(agent: Agent) -> list[tuple[str, str, tuple[Any, Any], str]]:
    """(UID, kind, index key, name) of each object in this node's indexes that is not
    being deleted (its deletion handler has it). Run in the event loop's thread: kopf
    changes its indexes there."""
    found: list[tuple[str, str, tuple[Any, Any], str]] = []
    indexes = {
        model.POD_KIND: agent.summaries.pods_index,
        model.CONTAINER_KIND: agent.summaries.members_index,
    }
    for kind, index in indexes.items():
        if index is None:  # no handler has run yet: nothing was handled to look at again
            continue
        for key, values in index.items():
            for body in values:
                meta = body.get("metadata") or {}
                if meta.get("uid") and not meta.get("deletionTimestamp"):
                    found.append((str(meta["uid"]), kind, key, str(meta.get("name"))))
    return found


def resync(agent: Agent, due: list[tuple[str, str, tuple[Any, Any], str]]) -> int:
    """Look at each due object again as its index has it now (in a worker thread): the
    store is compared with the spec and repaired, the status written if it changed."""
    pods, members = agent.summaries.pods_index, agent.summaries.members_index
    done = 0
    for uid, kind, (namespace, indexed_as), name in due:
        try:
            if kind == model.POD_KIND:
                body = _pod_of(agent.known, pods, namespace, name)
                if body is None or uid_of(body) != uid:
                    continue
                with next_pass_retries("resync", namespace, name):
                    agent.sync_pod(
                        body,
                        _members_of(agent.known, members, namespace, name),
                        None,
                        raise_errors=False,
                    )
            else:
                siblings = _members_of(agent.known, members, namespace, indexed_as)
                body = next((m for m in siblings if uid_of(m) == uid), None)
                if body is None:
                    continue
                pod = _pod_of(agent.known, pods, namespace, indexed_as)
                with next_pass_retries("resync", namespace, name):
                    agent.sync_container(body, pod, siblings, None, raise_errors=False)
            done += 1
        except Exception as err:  # the API: one line; the next pass tries again
            log.warning(
                "resync of %s %s/%s failed (%s); again at the next pass",
                kind,
                namespace,
                name,
                health.describe(err),
            )
    return done


async def resync_loop(agent: Agent, stop: asyncio.Event) -> None:
    """Every object of this node looked at again about once a resync interval."""
    schedule = ResyncSchedule(agent.settings.resync_interval)
    tick = min(1.0, agent.settings.resync_interval / 4)
    while not stop.is_set():
        candidates = resync_candidates(agent)
        due_uids = set(schedule.take((c[0] for c in candidates), agent.clock()))
        due = [c for c in candidates if c[0] in due_uids]
        if due:
            try:
                await asyncio.to_thread(resync, agent, due)
            except Exception as err:  # never expected: resync catches per object
                log.warning("resync pass failed (%s); again in %.0fs", health.describe(err), tick)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), tick)


# What the indexes keep of an object: what the reconciler and the child plan read.
# The resourceVersion tells the summary writer whether the pod's status it holds is newer.
_META_KEPT = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "labels",
    "ownerReferences",
    "deletionTimestamp",
)


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """An object without what no handler reads (managed fields, kopf's bookkeeping)."""
    meta = body.get("metadata") or {}
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}
    return {
        # An Event about the object names its kind (the resync posts them from the index).
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in _META_KEPT if k in meta},
        "spec": dict(body.get("spec") or {}),
        "status": status,
    }


def node_mismatch(body: Mapping[str, Any], pod: Mapping[str, Any], node: str) -> dict[str, Any]:
    """The status of a container labelled for this node whose pod is on another."""
    other = (pod.get("spec") or {}).get("nodeName") or "no node"
    label = model.LABEL_NODE
    return {
        "phase": "Pending",
        "reason": "NodeMismatch",
        "message": f"labelled {label}={node} but StoragePod "
        f"{(pod.get('metadata') or {}).get('name')!r} is on {other}; set the label to "
        f"{other} or remove it",
        "nodeName": node,
    }


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    node = settings.node_name
    every = settings.resync_interval
    agent_settings = settings

    def pod_is_mine(spec: Any, **_: Any) -> bool:
        return bool(spec.get("nodeName") == node)

    def container_is_mine(labels: Any, **_: Any) -> bool:
        return bool(labels.get(model.LABEL_NODE) == node)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.finalizer = model.finalizer_for(node)
        # Everything kopf keeps goes under status: the agent never writes spec or metadata
        # other than its finalizer, so GitOps tools see no drift.
        settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
        settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
        settings.posting.level = logging.WARNING
        # `kubectl describe` then names the node whose agent acted.
        settings.posting.reporting_component = "podstore-agent"
        settings.posting.reporting_instance = node
        # The two CRDs are known; scanning all CRDs would need list/watch on them.
        settings.scanning.disabled = True
        settings.execution.max_workers = 8
        settings.watching.server_timeout = 300
        # An API server that is away: retried calls spread out (one WARNING line each).
        settings.networking.error_backoffs = API_BACKOFFS
        # Only this node's objects, selected by the API server: nothing scales with the cluster.
        settings.watching.field_selectors[PODS[0], PODS[2]] = kube.pod_field_selector(node)
        settings.watching.label_selectors[CONTAINERS[0], CONTAINERS[2]] = (
            kube.container_label_selector(node)
        )
        memo["stop"] = asyncio.Event()
        memo["orphans"] = asyncio.create_task(orphan_loop(memo["agent"], memo["stop"]))
        memo["waits"] = asyncio.create_task(wait_loop(memo["agent"], memo["stop"]))
        memo["summaries"] = asyncio.create_task(summary_loop(memo["agent"], memo["stop"]))
        memo["resync"] = asyncio.create_task(resync_loop(memo["agent"], memo["stop"]))
        images = memo["agent"].reconciler.runtime.images
        memo["prepulls"] = PrePulls(images, node)
        memo["prepull"] = asyncio.create_task(prepull_loop(memo["prepulls"], every, memo["stop"]))
        gc = NodeImageGC(images, agent_settings, pinned=memo["prepulls"].pinned)
        memo["imagegc"] = asyncio.create_task(image_gc_loop(gc, memo["stop"]))

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        memo["stop"].set()
        memo["orphans"].cancel()
        memo["waits"].cancel()
        memo["summaries"].cancel()
        memo["resync"].cancel()
        memo["imagegc"].cancel()
        memo["prepull"].cancel()
        if "claims" in memo:
            memo["claims"].close()
        # The agent's handlers are done; names it owes new layers are given before it exits.
        await asyncio.to_thread(memo["agent"].close)

    @kopf.on.login(registry=registry)
    def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
        # One source of credentials for kopf and for the agent's own API calls.
        try:
            kube.configure(settings.kubeconfig)
        except Exception as err:
            memo.setdefault("health", health.ApiHealth()).failed("login", err)
            raise
        if "claims" not in memo and "agent" in memo:
            own = memo.setdefault("own", set())
            memo["claims"] = Claims(node, memo["agent"].reconciler, own, memo.get("health"))
            memo["claims"].start()
        return kopf.ConnectionInfo(**kube.connection_info())

    # /healthz fails (HTTP 500) while the agent cannot log in to or list from the API server.
    @kopf.on.probe(registry=registry, id="api", errors=kopf.ErrorsMode.PERMANENT)
    async def api_reachable(memo: Any, **_: Any) -> str:
        state = memo.setdefault("health", health.ApiHealth())
        try:
            return await asyncio.to_thread(health.check, state, lambda: kube.ping(node))
        except health.ApiUnreachable as err:
            raise kopf.PermanentError(str(err)) from None

    @kopf.index(*PODS, registry=registry, id="pods", when=pod_is_mine)
    def pods(
        namespace: str | None, name: str, body: kopf.Body, memo: Any, **_: Any
    ) -> dict[Any, Any]:
        memo.setdefault("own", set()).add((namespace, name))
        agent: Agent = memo["agent"]
        agent.known.seen(model.POD_KIND, body)
        if namespace:  # whoever wrote it, its member summary is checked against the members
            agent.summaries.due(namespace, name)
        return {(namespace, name): slim(body)}

    @kopf.index(*CONTAINERS, registry=registry, id="members", when=container_is_mine)
    def members(
        namespace: str | None, spec: Any, body: kopf.Body, memo: Any, **_: Any
    ) -> dict[Any, Any]:
        memo["agent"].known.seen(model.CONTAINER_KIND, body)
        return {(namespace, spec.get("podName")): slim(body)}

    @kopf.on.resume(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    @kopf.on.create(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    @kopf.on.update(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    def pod_changed(
        body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        agent: Agent = memo["agent"]
        if agent.known.is_gone(body):
            return  # kopf retrying an object the API server no longer has
        agent.summaries.use_indexes(kw["pods"], kw["members"])
        agent.sync_pod(body, _members_of(agent.known, kw["members"], namespace, name), patch)
        # A new pod's unassigned containers are its to claim now. A resumed or changed pod
        # has none the claims watch has not seen (its first LIST covers an agent restart).
        if "claims" in memo and namespace and kw.get("reason") == "create":
            memo["claims"].claim_for_pod(namespace, name)

    @kopf.on.delete(*PODS, registry=registry, when=pod_is_mine, id="remove")
    def pod_deleted(
        body: kopf.Body, name: str, namespace: str | None, memo: Any, **kw: Any
    ) -> None:
        agent: Agent = memo["agent"]
        agent.delete_pod(body, _members_of(agent.known, kw["members"], namespace, name))
        memo.setdefault("own", set()).discard((namespace, name))
        agent.known.deleted(body)

    @kopf.on.resume(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    @kopf.on.create(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    @kopf.on.update(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    def container_changed(
        body: kopf.Body, spec: Any, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        agent: Agent = memo["agent"]
        if agent.known.is_gone(body):
            return
        agent.summaries.use_indexes(kw["pods"], kw["members"])
        pod = _pod_of(agent.known, kw["pods"], namespace, spec.get("podName"))
        if pod is None and isinstance(spec.get("podName"), str):
            there = kube.get_pod(namespace or "default", spec["podName"])
            if there is not None and (there.get("spec") or {}).get("nodeName") != node:
                wanted = node_mismatch(body, there, node)
                changes = {k: v for k, v in wanted.items() if body.get("status", {}).get(k) != v}
                if changes:
                    patch.setdefault("status", {}).update(changes)
                return
        siblings = _members_of(agent.known, kw["members"], namespace, spec.get("podName"))
        agent.sync_container(body, pod, siblings, patch)

    @kopf.on.delete(*CONTAINERS, registry=registry, when=container_is_mine, id="remove")
    def container_deleted(
        body: kopf.Body, spec: Any, namespace: str | None, memo: Any, **kw: Any
    ) -> None:
        agent: Agent = memo["agent"]
        pod = _pod_of(agent.known, kw["pods"], namespace, spec.get("podName"))
        siblings = _members_of(agent.known, kw["members"], namespace, spec.get("podName"))
        agent.delete_container(body, pod, siblings)
        agent.known.deleted(body)

    # Its node label changed by hand: it left this agent's watch with this node's finalizer on.
    @kopf.on.event(
        *CONTAINERS,
        registry=registry,
        id="moved",
        when=lambda type, body, **_: release.moved_away(type, body, node),
    )
    def container_moved(
        body: kopf.Body, spec: Any, namespace: str | None, memo: Any, **kw: Any
    ) -> None:
        agent: Agent = memo["agent"]
        pod = _pod_of(agent.known, kw["pods"], namespace, spec.get("podName"))
        siblings = _members_of(agent.known, kw["members"], namespace, spec.get("podName"))
        try:
            agent.delete_container(body, pod, siblings)  # its storage first
            release.drop_finalizer(body, node)
        except Exception:
            if "claims" in memo:  # kopf never calls an event handler again: the sweep will
                memo["claims"].sweep_due.set()
            raise
        agent.known.deleted(body)

    # StorageImages: raw watch events only, no kopf bookkeeping (no finalizer, no
    # progress in status): the objects are shared by every node's agent.
    @kopf.on.event(*IMAGES, registry=registry, id="prepull")
    def storage_image_event(event: Any, memo: Any, **_: Any) -> None:
        body = event.get("object") or {}
        name = (body.get("metadata") or {}).get("name")
        if not name or "prepulls" not in memo:
            return
        if event.get("type") == "DELETED":
            memo["prepulls"].gone(name)
            return
        memo["prepulls"].seen(body)
        memo["prepulls"].sync(name)

    return registry


def run(settings: Settings, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run the agent for one node until stopped (blocking)."""
    asyncio.run(serve(settings, stop_flag=stop_flag, ready_flag=ready_flag))


async def serve(settings: Settings, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """The agent as a coroutine: kopf in standalone mode, cluster-wide, for one node."""
    agent = Agent.from_settings(settings)
    metrics.install(settings.metrics_port, settings.listen_address)
    health.quiet_probe_failures()
    health.quiet_api_retries()
    health.quiet_routine_successes()
    liveness = (
        f"http://{settings.listen_address}:{settings.health_port}/healthz"
        if settings.health_port
        else None
    )
    await kopf.operator(
        registry=build_registry(settings),
        # kopf's peering is leader election: it would pause every other node's agent.
        standalone=True,
        clusterwide=True,
        liveness_endpoint=liveness,
        memo=kopf.Memo(agent=agent, health=health.ApiHealth()),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
