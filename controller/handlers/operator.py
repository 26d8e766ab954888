"""The kopf handlers: thin, each parses kopf's arguments and calls the Agent.

Handlers are registered into a registry built for one node
(:func:`build_registry`): their filters need the node's name, their timers
the resync interval. A StoragePod is this agent's when its ``spec.nodeName``
is this node; a StorageContainer when its pod is (or, while its pod does not
exist, when no other node has claimed it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from controller.config import Settings
from controller.handlers import kube, metrics
from controller.handlers.agent import Agent, orphan_loop
from controller.reconcile import model

log = logging.getLogger(__name__)

PODS = (model.GROUP, model.VERSION, model.POD_PLURAL)
CONTAINERS = (model.GROUP, model.VERSION, model.CONTAINER_PLURAL)


def _pod_of(index: Any, namespace: str | None, name: Any) -> Mapping[str, Any] | None:
    found = index.get((namespace, name)) if index is not None else None
    return next(iter(found), None) if found else None


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    node = settings.node_name
    every = settings.resync_interval

    def pod_is_mine(spec: Any, **_: Any) -> bool:
        return bool(spec.get("nodeName") == node)

    def container_is_mine(spec: Any, status: Any, namespace: str | None, **kw: Any) -> bool:
        pod = _pod_of(kw["pods"], namespace, spec.get("podName"))
        if pod is not None:
            return bool((pod.get("spec") or {}).get("nodeName") == node)
        return status.get("nodeName") in (None, "", node)

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
        memo["stop"] = asyncio.Event()
        memo["orphans"] = asyncio.create_task(orphan_loop(memo["agent"], memo["stop"]))

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: Any, **_: Any) -> None:
        memo["stop"].set()
        memo["orphans"].cancel()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        # One source of credentials for kopf and for the agent's own API calls.
        kube.configure(settings.kubeconfig)
        return kopf.ConnectionInfo(**kube.connection_info())

    @kopf.index(*PODS, registry=registry, id="pods")
    def pods(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, name): dict(body)}

    @kopf.index(*CONTAINERS, registry=registry, id="members")
    def members(namespace: str | None, spec: Any, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, spec.get("podName")): dict(body)}

    @kopf.on.resume(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    @kopf.on.create(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    @kopf.on.update(*PODS, registry=registry, when=pod_is_mine, id="reconcile")
    def pod_changed(
        body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        memo["agent"].sync_pod(body, kw["members"].get((namespace, name), ()), patch)

    @kopf.timer(
        *PODS, registry=registry, when=pod_is_mine, id="resync", interval=every, initial_delay=every
    )
    def pod_resync(
        body: kopf.Body, name: str, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        members = kw["members"].get((namespace, name), ())
        memo["agent"].sync_pod(body, members, patch, raise_errors=False)

    @kopf.on.delete(*PODS, registry=registry, when=pod_is_mine, id="remove")
    def pod_deleted(
        body: kopf.Body, name: str, namespace: str | None, memo: Any, **kw: Any
    ) -> None:
        memo["agent"].delete_pod(body, kw["members"].get((namespace, name), ()))

    @kopf.on.resume(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    @kopf.on.create(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    @kopf.on.update(*CONTAINERS, registry=registry, when=container_is_mine, id="reconcile")
    def container_changed(
        body: kopf.Body, spec: Any, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        pod = _pod_of(kw["pods"], namespace, spec.get("podName"))
        siblings = kw["members"].get((namespace, spec.get("podName")), ())
        memo["agent"].sync_container(body, pod, siblings, patch)

    @kopf.timer(
        *CONTAINERS,
        registry=registry,
        when=container_is_mine,
        id="resync",
        interval=every,
        initial_delay=every,
    )
    def container_resync(
        body: kopf.Body, spec: Any, namespace: str | None, patch: kopf.Patch, memo: Any, **kw: Any
    ) -> None:
        pod = _pod_of(kw["pods"], namespace, spec.get("podName"))
        siblings = kw["members"].get((namespace, spec.get("podName")), ())
        memo["agent"].sync_container(body, pod, siblings, patch, raise_errors=False)

    @kopf.on.delete(*CONTAINERS, registry=registry, when=container_is_mine, id="remove")
    def container_deleted(
        body: kopf.Body, spec: Any, namespace: str | None, memo: Any, **kw: Any
    ) -> None:
        pod = _pod_of(kw["pods"], namespace, spec.get("podName"))
        siblings = kw["members"].get((namespace, spec.get("podName")), ())
        memo["agent"].delete_container(body, pod, siblings)

    return registry


# The registry as the agent with default settings builds it: what RBAC is derived from.
registry = build_registry(Settings(node_name="rbac-derivation"))


def run(settings: Settings, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run the agent for one node until stopped (blocking)."""
    asyncio.run(serve(settings, stop_flag=stop_flag, ready_flag=ready_flag))


async def serve(settings: Settings, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
    """The agent as a coroutine: kopf in standalone mode, cluster-wide, for one node."""
    agent = Agent.from_settings(settings)
    metrics.install(settings.metrics_port, settings.listen_address)
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
        memo=kopf.Memo(agent=agent),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
