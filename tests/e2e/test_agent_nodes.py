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
    AgentProcess,
    agent_kubeconfig,
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
    wait_until,
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


# -- node-scoped lists and watches (issue 9) ------------------------------------------------


def foreign_requests(kube, since, foreign):
    """Requests after ``since`` that name one of ``foreign`` objects (GET, PATCH, DELETE)."""
    return [
        (r.method, r.resource, r.name, r.subresource)
        for r in kube.requests[since:]
        if r.name in foreign
    ]


async def test_each_agent_lists_and_watches_only_its_nodes_share(kube, store, images):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=1)
    app = [{"name": "app", "image": images.busybox}]
    labels = {"podstore.dev/node": "node-b"}
    await kube.aio.create(storage_pod("b1", "node-b", containers=app))
    far = storage_container("b1-tool", "b1", images.busybox)
    far["metadata"]["labels"] = labels
    await kube.aio.create(far)
    async with running_agent(agent_a):
        await ready_pod(kube, storage_pod("a1", "node-a", containers=app))
        await wait_for_phase(kube, CONTAINERS, "a1-app", "Started")
        await asyncio.sleep(2.5)  # two resync and orphan passes
        for i in range(20):  # another node's churn
            await kube.aio.patch_status(CONTAINERS, NAMESPACE, "b1-tool", {"message": f"c{i}"})
        await asyncio.sleep(0.5)

    reads = [r for r in kube.requests if r.verb in ("list", "watch")]
    pods = {r.query.get("fieldSelector") for r in reads if r.resource == PODS}
    ctrs = {r.query.get("labelSelector") for r in reads if r.resource == CONTAINERS}
    assert pods == {"spec.nodeName=node-a"}
    assert ctrs == {"podstore.dev/node=node-a", "!podstore.dev/node"}
    # Only the test's own status patches name another node's objects: the agent never does.
    assert {m for m, *_ in foreign_requests(kube, 0, {"b1", "b1-tool"})} <= {"PATCH"}
    assert len(foreign_requests(kube, 0, {"b1", "b1-tool"})) == 20
    for name in ("b1", "b1-tool"):
        obj = await kube.aio.get(PODS if name == "b1" else CONTAINERS, NAMESPACE, name)
        assert not obj["metadata"].get("finalizers"), obj
        assert "nodeName" not in (obj.get("status") or {}), obj
    child = await kube.aio.get(CONTAINERS, NAMESPACE, "a1-app")
    assert child["metadata"]["labels"]["podstore.dev/node"] == "node-a"


async def test_a_container_without_a_pod_gets_pod_not_found_once_and_no_finalizer(
    kube, store, store_b, images
):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=1)
    agent_b = agent_settings(kube, store_b, images, node="node-b", resync_interval=1)
    async with running_agent(agent_a, agent_b):
        await kube.aio.create(storage_container("lost", "nowhere", images.busybox))
        ctr = await wait_for_status(kube, CONTAINERS, "lost", reason="PodNotFound")
        # The other agent may have read the container before that write: its GET of the pod
        # and its conflicted write can land after the status is seen. Give it a moment.
        await asyncio.sleep(1)
        settled = len(kube.requests)
        await asyncio.sleep(3)  # three resync intervals of quiet
        writes = [
            (r.method, r.subresource, r.status)
            for r in kube.requests
            if r.name == "lost" and r.method in ("PATCH", "PUT")
        ]
        later = [r for r in kube.requests[settled:] if r.name in ("lost", "nowhere")]
        now = await kube.aio.get(CONTAINERS, NAMESPACE, "lost")
        await kube.aio.delete(CONTAINERS, NAMESPACE, "lost")
        await wait_gone(kube, CONTAINERS, "lost", timeout=2)

    assert ctr["status"]["phase"] == "Pending"
    assert "nodeName" not in ctr["status"]
    assert not ctr["metadata"].get("finalizers")
    assert "podstore.dev/node" not in (ctr["metadata"].get("labels") or {})
    # Both agents may try, on the version they read: one write lands, the other conflicts.
    assert [w for w in writes if w[2] < 300] == [("PATCH", "status", 200)], writes
    assert all(w[:2] == ("PATCH", "status") and w[2] in (200, 409) for w in writes), writes
    assert len(writes) <= 2, "each agent writes at most once"
    assert later == [], "nothing is written or read while nothing changes"
    assert now["metadata"]["resourceVersion"] == ctr["metadata"]["resourceVersion"]


async def test_a_container_labelled_for_a_node_its_pod_is_not_on_says_so(kube, store, images):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=30)
    async with running_agent(agent_a):
        await kube.aio.create(storage_pod("b1", "node-b"))
        wrong = storage_container("wrong", "b1", images.busybox)
        wrong["metadata"]["labels"] = {"podstore.dev/node": "node-a"}
        await kube.aio.create(wrong)
        ctr = await wait_for_status(kube, CONTAINERS, "wrong", reason="NodeMismatch")

    assert ctr["status"]["phase"] == "Pending"
    assert "node-b" in ctr["status"]["message"]
    assert await in_thread(names_in, store) == []


async def test_a_labelled_container_waiting_for_its_pod_writes_nothing_until_the_pod_comes(
    kube, store, images
):
    # resync every second: the wait is the agent's, not kopf's retries or the resync's.
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=1)
    async with running_agent(agent_a):
        early = storage_container("early", "late", images.busybox)
        early["metadata"]["labels"] = {"podstore.dev/node": "node-a"}
        await kube.aio.create(early)
        ctr = await wait_for_status(kube, CONTAINERS, "early", reason="PodNotFound")
        await asyncio.sleep(1.5)  # the first status and kopf's bookkeeping settle
        settled = len(kube.requests)
        before = await kube.aio.get(CONTAINERS, NAMESPACE, "early")
        await asyncio.sleep(4)
        writes = [
            (r.method, r.subresource)
            for r in kube.requests[settled:]
            if r.name == "early" and r.method in ("PATCH", "PUT", "POST")
        ]
        quiet = await kube.aio.get(CONTAINERS, NAMESPACE, "early")

        await kube.aio.create(storage_pod("late", "node-a"))
        started = await wait_for_phase(kube, CONTAINERS, "early", "Started")

    assert ctr["status"]["phase"] == "Pending"
    assert writes == [], f"writes while nothing changed: {writes}"
    assert quiet["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert started["status"]["containerID"]


# -- what an unlabelled container costs the other nodes' agents (issue 9) --------------------


def agents_view(kube, token, name):
    """What the agent with ``token`` asked about ``name`` and what its watches sent of it."""
    mine = [r for r in kube.requests if r.user == token]
    calls = [(r.method, r.resource, r.name, r.subresource) for r in mine if r.name == name]
    events = [
        (r.query.get("labelSelector") or r.query.get("fieldSelector"), kind)
        for r in mine
        if r.verb == "watch"
        for kind, _, obj_name in r.events
        if obj_name == name
    ]
    return calls, events


async def test_an_unlabelled_container_costs_another_nodes_agent_one_get_and_no_write(
    kube, store, store_b, images, tmp_path
):
    # node-a's agent is a process of its own, with its own token: its requests are its own.
    config_a = agent_kubeconfig(kube, tmp_path / "a.kubeconfig", token="agent-a")
    config_b = agent_kubeconfig(kube, tmp_path / "b.kubeconfig", token="agent-b")
    agent_b = agent_settings(kube, store_b, images, node="node-b", kubeconfig=str(config_b))
    process_a = AgentProcess(
        kube, store, images, tmp_path / "agent-a.log", node="node-a", kubeconfig=config_a
    )
    with process_a:
        async with running_agent(agent_b):
            await ready_pod(kube, storage_pod("b1", "node-b"))
            await wait_until(lambda: watching_unassigned(kube, "agent-a"), timeout=30)
            await kube.aio.create(storage_container("b-tool", "b1", images.busybox))
            await wait_for_phase(kube, CONTAINERS, "b-tool", "Started")
            await asyncio.sleep(3)  # past node-a's resync and orphan passes (2 s)
            calls_a, events_a = agents_view(kube, "agent-a", "b-tool")
            pod_calls_a, pod_events_a = agents_view(kube, "agent-a", "b1")
            calls_b, _ = agents_view(kube, "agent-b", "b-tool")
            tool = await kube.aio.get(CONTAINERS, NAMESPACE, "b-tool")

    assert calls_a == [], "node-a's agent neither reads nor writes the container"
    assert pod_calls_a == [("GET", PODS, "b1", None)], "one GET of its pod, to learn its node"
    assert pod_events_a == []
    # Its watch of unassigned containers sends it the container once, and once more when
    # node-b's agent labels it (a label-selected watch reports an object leaving as DELETED).
    assert events_a == [("!podstore.dev/node", "ADDED"), ("!podstore.dev/node", "DELETED")]
    # node-b's agent claimed it with one conditional label write.
    labels = [c for c in calls_b if c[0] == "PATCH" and c[3] is None]
    assert labels[:1] == [("PATCH", CONTAINERS, "b-tool", None)]
    assert tool["metadata"]["labels"]["podstore.dev/node"] == "node-b"
    assert tool["metadata"]["finalizers"] == ["podstore.dev/storage-node-b"]


def watching_unassigned(kube, token):
    return any(
        r.user == token
        and r.verb == "watch"
        and r.query.get("labelSelector") == "!podstore.dev/node"
        for r in kube.requests
    )


# -- a container moved to another node by hand (issue 9) -------------------------------------


async def relabel(kube, name, node):
    await kube.aio.patch(
        CONTAINERS, NAMESPACE, name, {"metadata": {"labels": {"podstore.dev/node": node}}}
    )


@pytest.mark.parametrize(
    "new_node",
    [
        pytest.param("node-b", id="to-a-node-with-an-agent"),
        pytest.param("node-c", id="to-a-node-without-an-agent"),
    ],
)
async def test_a_container_moved_to_another_node_by_hand_is_released_by_its_old_node(
    kube, store, store_b, images, new_node
):
    agent_a = agent_settings(kube, store, images, node="node-a", resync_interval=30)
    agent_b = agent_settings(kube, store_b, images, node="node-b", resync_interval=30)
    async with running_agent(agent_a, agent_b):
        await ready_pod(kube, storage_pod("a1", "node-a"))
        await kube.aio.create(storage_container("a-tool", "a1", images.busybox))
        await wait_for_phase(kube, CONTAINERS, "a-tool", "Started")
        before = await kube.aio.get(CONTAINERS, NAMESPACE, "a-tool")
        assert before["metadata"]["finalizers"] == [FINALIZER]
        assert await in_thread(names_in, store) == ["a-tool", "a1"]

        await relabel(kube, "a-tool", new_node)

        async def released():
            obj = await kube.aio.get(CONTAINERS, NAMESPACE, "a-tool")
            return obj if FINALIZER not in (obj["metadata"].get("finalizers") or []) else None

        moved = await wait_until(released, timeout=30)
        assert await in_thread(names_in, store) == ["a1"], "node-a's store let it go"
        if new_node == "node-b":  # its pod is on node-a: node-b's agent says so
            moved = await wait_for_status(kube, CONTAINERS, "a-tool", reason="NodeMismatch")
            assert moved["metadata"]["finalizers"] == ["podstore.dev/storage-node-b"]
        else:
            assert moved["metadata"].get("finalizers") in (None, [])

        await kube.aio.delete(CONTAINERS, NAMESPACE, "a-tool")
        await wait_gone(kube, CONTAINERS, "a-tool", timeout=30)
        assert await in_thread(names_in, store_b) == []
        pod = await wait_for_status(kube, PODS, "a1", where=lambda s: not s.get("containers"))

    assert pod["status"]["phase"] == "Ready"


async def test_a_container_moved_while_its_old_nodes_agent_was_down_is_released_at_its_start(
    kube, store, images, tmp_path
):
    config = agent_kubeconfig(kube, tmp_path / "a.kubeconfig", token="agent-a")
    agent_a = agent_settings(
        kube, store, images, node="node-a", resync_interval=30, kubeconfig=str(config)
    )
    async with running_agent(agent_a):
        await ready_pod(kube, storage_pod("a1", "node-a"))
        await kube.aio.create(storage_container("a-tool", "a1", images.busybox))
        await wait_for_phase(kube, CONTAINERS, "a-tool", "Started")
    await relabel(kube, "a-tool", "node-c")  # nobody watching node-a's share now
    tool = await kube.aio.get(CONTAINERS, NAMESPACE, "a-tool")
    assert tool["metadata"]["finalizers"] == [FINALIZER]
    since = len(kube.requests)

    async with running_agent(agent_a):

        async def released():
            obj = await kube.aio.get(CONTAINERS, NAMESPACE, "a-tool")
            return not obj["metadata"].get("finalizers")

        await wait_until(released, timeout=30)
        assert await in_thread(names_in, store) == ["a1"]
        await kube.aio.delete(CONTAINERS, NAMESPACE, "a-tool")
        await wait_gone(kube, CONTAINERS, "a-tool", timeout=10)

    calls = [
        (r.method, r.subresource)
        for r in kube.requests[since:]
        if r.name == "a-tool" and r.user == "agent-a"
    ]
    # One GET to find it moved, one conditional write of its finalizers (then the test deletes
    # it: that is no business of node-a's any more).
    assert calls == [("GET", None), ("PATCH", None)], calls
