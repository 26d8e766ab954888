"""The resync: the agent compares spec and store on a timer and repairs the store.

What someone else did to the store behind the agent's back (a container removed, a
layer unmounted, a run config deleted) is undone at the next pass, with an Event
saying so. Storage whose object is gone is collected after a grace period, and
containers that podstore did not make, even ones that look like its own, are never
touched.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    agent_settings,
    by_object,
    events_of,
    in_thread,
    podstore_containers,
    ready_pod,
    running_agent,
    storage_container,
    storage_pod,
    wait_for_event,
    wait_for_phase,
    wait_gone,
    wait_until,
)
from tests.support.stores import container_json, containers_json, cs, is_mounted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def settings(kube, store, images):
    return agent_settings(kube, store, images, resync_interval=1, orphan_grace=3)


async def started_tool(kube, images):
    await ready_pod(kube, storage_pod("web"))
    await kube.aio.create(storage_container("tool", "web", images.busybox))
    started = await wait_for_phase(kube, CONTAINERS, "tool", "Started")
    # Events are posted by the agent's recorder after the reconcile, in the order they
    # were recorded: once the start's own is there, the create's are too.
    await wait_for_event(kube, "tool", "Started", timeout=10)
    return started


async def test_a_storage_container_removed_out_of_band_is_created_again(
    kube, store, images, settings
):
    async with running_agent(settings):
        ctr = await started_tool(kube, images)
        cid = ctr["status"]["containerID"]
        old = await in_thread(container_json, store, cid)
        created_events = len(await in_thread(events_of, kube, "tool", "Created"))

        await in_thread(cs, store, "unmount", "--force", cid)
        await in_thread(cs, store, "delete-container", cid)
        assert await in_thread(container_json, store, cid) is None

        async def back():
            found = await in_thread(container_json, store, cid)
            return found if found and await in_thread(is_mounted, store, cid) else None

        new = await wait_until(back, timeout=10)
        await wait_until(
            lambda: len(events_of(kube, "tool", "Created")) > created_events, timeout=10
        )
        after = await kube.aio.get(CONTAINERS, NAMESPACE, "tool")

    assert new["layer"] != old["layer"], "a new container, with a new layer"
    assert after["status"]["phase"] == "Started"
    assert after["status"]["containerID"] == cid
    assert os.path.isfile(after["status"]["configPath"])
    assert [c["id"] for c in by_object(store)[("StorageContainer", "tool")]] == [cid]


async def test_a_started_container_unmounted_out_of_band_is_mounted_again(
    kube, store, images, settings
):
    async with running_agent(settings):
        ctr = await started_tool(kube, images)
        cid = ctr["status"]["containerID"]

        await in_thread(cs, store, "unmount", "--force", cid)
        assert not await in_thread(is_mounted, store, cid)
        await wait_until(lambda: in_thread(is_mounted, store, cid), timeout=20)
        event = await wait_for_event(kube, "tool", "Remounted", timeout=10)

    assert event["type"] == "Warning"
    assert os.path.isfile(ctr["status"]["configPath"])
    assert container_json(store, cid) is not None


async def test_a_deleted_run_config_is_rendered_again(kube, store, images, settings):
    async with running_agent(settings):
        ctr = await started_tool(kube, images)
        config_path = ctr["status"]["configPath"]
        original = json.loads(await in_thread(_read, config_path))
        events_before = {e["metadata"]["name"] for e in await in_thread(events_of, kube, "tool")}

        os.remove(config_path)
        await wait_until(lambda: os.path.isfile(config_path), timeout=20)

        async def new_event():
            found = await in_thread(events_of, kube, "tool")
            return [e for e in found if e["metadata"]["name"] not in events_before]

        events = await wait_until(new_event, timeout=10)

    assert json.loads(_read(config_path)) == original
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ConfigRendered")]
    assert is_mounted(store, ctr["status"]["containerID"])


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


async def test_a_deleted_config_template_is_written_again(kube, store, images, settings):
    async with running_agent(settings):
        ctr = await started_tool(kube, images)
        template = os.path.join(ctr["status"]["workDir"], "config.json")
        assert os.path.isfile(template)

        os.remove(template)
        await wait_until(lambda: os.path.isfile(template), timeout=20)
        await wait_for_event(kube, "tool", "ConfigUpdated", timeout=10)


# -- orphans and foreign containers ------------------------------------------------------


def foreign_containers(store, image_id, lost_uid, pod_id="f" * 64):
    """Containers podstore did not make: one by hand, one as cri-o/podman label theirs
    (the contract's keys, even podstore-like labels naming a lost object), mounted."""
    cs(store, "create-container", "--name", "by-hand", image_id)
    crio = {
        "pod": False,
        "pod-name": "k8s_other_default_1234_0",
        "pod-id": pod_id,
        "image-name": "docker.io/library/busybox:latest",
        "image-id": image_id,
        "name": "k8s_app_other_default_1234_0",
        "metadata-name": "app",
        "uid": lost_uid,
        "namespace": "default",
        "attempt": 0,
        "created-at": 1700000000,
        "mountlabel": "",
        "labels": {
            "podstore.dev/uid": lost_uid,
            "podstore.dev/node": "node-a",
            "podstore.dev/source": "agent",
            "podstore.dev/kind": "StorageContainer",
        },
    }
    cs(store, "create-container", "--name", "crio-like", "--metadata", json.dumps(crio), image_id)
    cs(store, "mount", "crio-like")
    return {
        c["id"]: c for c in containers_json(store) if set(c["names"]) & {"by-hand", "crio-like"}
    }


async def test_storage_of_objects_deleted_while_the_agent_was_down_goes_after_the_grace_period(
    kube, store, images, settings
):
    async with running_agent(settings):
        pod = await ready_pod(
            kube, storage_pod("gone", containers=[{"name": "app", "image": images.busybox}])
        )
        await kube.aio.create(storage_container("tool", "gone", images.busybox))
        await wait_for_phase(kube, CONTAINERS, "gone-app", "Started")
        await wait_for_phase(kube, CONTAINERS, "tool", "Started")
        await ready_pod(kube, storage_pod("kept"))
    lost = {c["id"] for c in podstore_containers(store) if c["meta"]["metadata-name"] != "kept"}
    assert len(lost) == 3

    # While the agent is down, the objects go (finalizers dropped by hand).
    for plural, name in ((CONTAINERS, "gone-app"), (CONTAINERS, "tool"), (PODS, "gone")):
        await kube.aio.patch(plural, NAMESPACE, name, {"metadata": {"finalizers": None}})
        await kube.aio.delete(plural, NAMESPACE, name)
    foreign = await in_thread(foreign_containers, store, images.busybox_id, pod["metadata"]["uid"])

    async with running_agent(settings):
        # The first pass sees them; the grace period has not passed yet.
        assert lost <= {c["id"] for c in await in_thread(podstore_containers, store)}

        async def collected():
            left = {c["id"] for c in await in_thread(podstore_containers, store)}
            return not (left & lost)

        await wait_until(collected, timeout=20)
        await wait_for_phase(kube, PODS, "kept", "Ready")

    left = containers_json(store)
    assert [c["meta"]["metadata-name"] for c in podstore_containers(store)] == ["kept"]
    for cid, before in foreign.items():
        now = container_json(store, cid)
        assert now == before, "a container podstore did not make is left exactly as it was"
    assert is_mounted(store, "crio-like")
    assert len(left) == 3


async def test_deleting_a_pod_leaves_a_foreign_container_that_claims_its_pod_id(
    kube, store, images, settings
):
    async with running_agent(settings):
        pod = await ready_pod(kube, storage_pod("web"))
        foreign = await in_thread(
            foreign_containers, store, images.pause_id, str(uuid.uuid4()), pod["status"]["podID"]
        )
        await kube.aio.delete(PODS, NAMESPACE, "web")
        await wait_gone(kube, PODS, "web")

    assert podstore_containers(store) == []
    assert {c["id"]: c for c in containers_json(store)} == foreign
    assert is_mounted(store, "crio-like")
