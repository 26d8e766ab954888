"""An agent killed with SIGKILL in the middle of its work, then started again.

The agent is stateless: storage IDs derive from object UIDs, creates are safe to
repeat, and everything it knows comes back from the store's metadata and the API.
So a restart after ``kill -9`` must converge to exactly what an uninterrupted run
makes: one storage container per object, the same IDs, nothing left over.
The agent runs as ``python -m controller agent`` here, so that it can be killed.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    AgentProcess,
    by_object,
    in_thread,
    podstore_containers,
    storage_container,
    storage_pod,
    wait_gone,
    wait_until,
)
from tests.support.stores import is_mounted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PODS_MADE = ("alpha", "beta", "gamma", "delta")


@pytest.fixture
def agent(kube, store, images, tmp_path):
    process = AgentProcess(kube, store, images, tmp_path / "agent.log")
    yield process
    process.stop()


def objects(pods=PODS_MADE):
    """Each pod with two templates (one Stopped), plus a standalone container per pod."""
    out = []
    for name in pods:
        templates = [
            {"name": "app", "image": "IMAGE"},
            {"name": "idle", "image": "IMAGE", "state": "Stopped"},
        ]
        out.append(storage_pod(name, containers=templates))
        out.append(storage_container(f"{name}-tool", name, "IMAGE"))
    return out


def with_image(obj, image):
    spec = obj["spec"]
    if "image" in spec:
        spec["image"] = image
    for template in spec.get("containers", ()):
        template["image"] = image
    return obj


async def converged(kube, pods=PODS_MADE):
    """Every pod Ready with its three members in their desired state."""
    pod_list = (await kube.aio.list(PODS, NAMESPACE))["items"]
    ctr_list = (await kube.aio.list(CONTAINERS, NAMESPACE))["items"]
    if sorted(p["metadata"]["name"] for p in pod_list) != sorted(pods):
        return None
    if len(ctr_list) != 3 * len(pods):
        return None
    for pod in pod_list:
        status = pod.get("status") or {}
        summary = status.get("containers") or []
        if status.get("phase") != "Ready" or len(summary) != 3:
            return None
        if any(not m["containerID"] for m in summary):
            return None
    for ctr in ctr_list:
        want = {"Started": "Started", "Stopped": "Created"}[ctr["spec"].get("state", "Started")]
        if (ctr.get("status") or {}).get("phase") != want:
            return None
    return pod_list, ctr_list


async def first_member_in_store(store):
    found = await in_thread(podstore_containers, store)
    return any(not c["meta"]["pod"] for c in found)


def assert_one_storage_container_per_object(store, pod_list, ctr_list):
    made = by_object(store)
    uids = {}
    for c in podstore_containers(store):
        uids.setdefault(c["meta"]["labels"]["podstore.dev/uid"], []).append(c["id"])
    expected = {("StoragePod", p["metadata"]["name"]): p for p in pod_list}
    expected.update({("StorageContainer", c["metadata"]["name"]): c for c in ctr_list})
    assert sorted(made) == sorted(expected), "a storage container per object, no orphan"
    for key, obj in expected.items():
        assert len(made[key]) == 1, f"{key}: {[c['id'] for c in made[key]]}"
        assert len(uids[obj["metadata"]["uid"]]) == 1, key
        stored_id = made[key][0]["id"]
        want = obj["status"]["podID" if key[0] == "StoragePod" else "containerID"]
        assert stored_id == want, key
    for ctr in ctr_list:
        mounted = is_mounted(store, ctr["status"]["containerID"])
        assert mounted == (ctr["spec"].get("state", "Started") == "Started"), ctr["metadata"]


async def test_an_agent_killed_mid_reconcile_converges_after_a_restart_without_duplicates(
    kube, store, images, agent
):
    agent.start()
    for obj in objects():
        await kube.aio.create(with_image(obj, images.busybox))
    await wait_until(lambda: first_member_in_store(store), interval=0.02, timeout=60)
    agent.kill()
    before = {c["id"]: c["meta"]["labels"]["podstore.dev/uid"] for c in podstore_containers(store)}
    assert not await converged(kube), "the kill came too late to interrupt anything"

    agent.start()
    try:
        pod_list, ctr_list = await wait_until(lambda: converged(kube), timeout=90)
    except TimeoutError:
        pytest.fail(f"no convergence after the restart; agent log:\n{agent.log()[-6000:]}")

    assert_one_storage_container_per_object(store, pod_list, ctr_list)
    after = {c["id"]: c["meta"]["labels"]["podstore.dev/uid"] for c in podstore_containers(store)}
    assert before.items() <= after.items(), "what the first run made is kept, same IDs"

    # One orphan pass later (grace 2s, interval 2s) nothing of a live object was taken.
    await asyncio.sleep(5)
    assert {c["id"] for c in await in_thread(podstore_containers, store)} == set(after)
    assert agent.running()
    # At INFO the log says what was handled, not kopf's routine index runs; the resync
    # is the node's own loop, not a kopf timer per object (no "Timer '...'" lines at all).
    log = agent.log()
    assert "Handler 'reconcile' succeeded." in log
    assert "Indexer '" not in log
    assert "Timer '" not in log


async def test_an_agent_killed_while_deleting_finishes_the_deletion_after_a_restart(
    kube, store, images, agent
):
    agent.start()
    for obj in objects(("alpha", "beta")):
        await kube.aio.create(with_image(obj, images.busybox))
    await wait_until(lambda: converged(kube, ("alpha", "beta")), timeout=60)
    assert len(await in_thread(podstore_containers, store)) == 8

    for name in ("alpha", "beta"):
        await kube.aio.delete(PODS, NAMESPACE, name)

    async def some_removed():
        return len(await in_thread(podstore_containers, store)) < 8

    await wait_until(some_removed, interval=0.02)
    agent.kill()

    agent.start()
    for name in ("alpha", "beta"):
        await wait_gone(kube, PODS, name)
    # The owned members went with their pods; the standalone ones stay, without storage.
    left = await wait_until(lambda: _only_standalone_waiting(kube))
    assert sorted(c["metadata"]["name"] for c in left) == ["alpha-tool", "beta-tool"]
    assert await in_thread(podstore_containers, store) == []


async def _only_standalone_waiting(kube):
    items = (await kube.aio.list(CONTAINERS, NAMESPACE))["items"]
    if any(c["metadata"].get("ownerReferences") for c in items):
        return None
    if any((c.get("status") or {}).get("reason") != "PodNotFound" for c in items):
        return None
    if any((c.get("status") or {}).get("containerID") for c in items):
        return None
    return items
