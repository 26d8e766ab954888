"""Two nodes, two agents, one API: each agent keeps its own node's objects only.

Both agents run as ``serve`` tasks in the test's loop against the same emulator, each
with a store of its own, as two DaemonSet pods on two nodes would.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    FINALIZER,
    NAMESPACE,
    PODS,
    agent_settings,
    by_object,
    in_thread,
    ready_pod,
    running_agent,
    storage_container,
    storage_pod,
    wait_for_phase,
    wait_for_status,
    wait_gone,
)
from tests.support.stores import temporary_store

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def store_b(tmp_path):
    with temporary_store(tmp_path / "store-b") as paths:
        yield paths


def names_in(store):
    return sorted(name for _, name in by_object(store))


async def test_two_agents_each_keep_only_their_nodes_objects_in_their_own_store(
    kube, store, store_b, images
):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=2)
    agent_b = agent_settings(kube, store_b, images, node="node-b", resync_interval=2)
    app = [{"name": "app", "image": images.busybox}]
    async with running_agent(agent_a, agent_b):
        # A container created before its pod: both agents may see it, one keeps it.
        await kube.aio.create(storage_container("b-early", "b1", images.busybox))
        await wait_for_status(kube, CONTAINERS, "b-early", reason="PodNotFound")
        pod_a = await ready_pod(kube, storage_pod("a1", "node-a", containers=app))
        pod_b = await ready_pod(kube, storage_pod("b1", "node-b", containers=app))
        await kube.aio.create(storage_pod("c1", "node-c", containers=app))
        await kube.aio.create(storage_container("a-tool", "a1", images.busybox))
        await kube.aio.create(storage_container("b-tool", "b1", images.busybox))
        for name in ("a1-app", "a-tool", "b1-app", "b-tool", "b-early"):
            await wait_for_phase(kube, CONTAINERS, name, "Started")
        await wait_for_status(kube, PODS, "b1", where=three_started)

        assert await in_thread(names_in, store) == ["a-tool", "a1", "a1-app"]
        assert await in_thread(names_in, store_b) == ["b-early", "b-tool", "b1", "b1-app"]
        for name in ("a1-app", "a-tool"):
            obj = await kube.aio.get(CONTAINERS, NAMESPACE, name)
            assert (obj["status"]["nodeName"], obj["status"]["podID"]) == (
                "node-a",
                pod_a["status"]["podID"],
            )
        for name in ("b1-app", "b-tool", "b-early"):
            obj = await kube.aio.get(CONTAINERS, NAMESPACE, name)
            assert (obj["status"]["nodeName"], obj["status"]["podID"]) == (
                "node-b",
                pod_b["status"]["podID"],
            )

        # node-c has no agent: its pod is left alone (no status, no finalizer, no children).
        c1 = await kube.aio.get(PODS, NAMESPACE, "c1")
        assert "status" not in c1
        assert FINALIZER not in (c1["metadata"].get("finalizers") or [])
        assert await kube.aio.get(CONTAINERS, NAMESPACE, "c1-app") is None

        b1 = await kube.aio.get(PODS, NAMESPACE, "b1")

    assert b1["status"]["phase"] == "Ready"
    assert b1["status"]["nodeName"] == "node-b"


async def test_an_agent_never_takes_another_nodes_finalizer_off(kube, store, store_b, images):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=30)
    agent_b = agent_settings(kube, store_b, images, node="node-b", resync_interval=30)
    app = [{"name": "app", "image": images.busybox}]
    async with running_agent(agent_a, agent_b):
        await ready_pod(kube, storage_pod("a1", "node-a", containers=app))
        await wait_for_phase(kube, CONTAINERS, "a1-app", "Started")
        await wait_for_status(kube, PODS, "a1", where=lambda s: len(s["containers"]) == 1)
        settled = len(kube.requests)
        for _ in range(10):  # a second of quiet: nobody has anything left to change
            for plural, name in ((PODS, "a1"), (CONTAINERS, "a1-app")):
                obj = await kube.aio.get(plural, NAMESPACE, name)
                assert FINALIZER in (obj["metadata"].get("finalizers") or []), (name, obj)
            await asyncio.sleep(0.1)
        churn = [
            (r.resource, r.name)
            for r in kube.requests[settled:]
            if r.verb == "patch" and r.subresource is None
        ]
        assert churn == [], f"metadata patches after convergence: {len(churn)}"

        await kube.aio.delete(PODS, NAMESPACE, "a1")
        await wait_gone(kube, PODS, "a1")
        await wait_gone(kube, CONTAINERS, "a1-app")
        assert await in_thread(names_in, store) == [], "node-a's agent cleaned up first"


def three_started(status):
    members = status.get("containers") or []
    return len(members) == 3 and all(m["phase"] == "Started" for m in members)
