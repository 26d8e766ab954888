"""A first end-to-end pass: the real agent against the emulator, a real store."""

from __future__ import annotations

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    agent_settings,
    in_thread,
    running_agent,
    storage_pod,
    wait_for_phase,
    wait_for_status,
    wait_gone,
)
from tests.support.stores import container_metadata, containers_json, is_mounted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


async def test_a_pod_with_a_container_becomes_ready_and_started(kube, store, images):
    settings = agent_settings(kube, store, images, resync_interval=5)
    async with running_agent(settings):
        await kube.aio.create(
            storage_pod("web", containers=[{"name": "app", "image": images.busybox}])
        )
        ctr = await wait_for_phase(kube, CONTAINERS, "web-app", "Started")
        cid = ctr["status"]["containerID"]
        assert await in_thread(is_mounted, store, cid)
        meta = await in_thread(container_metadata, store, cid)
        assert meta["pod-id"] == ctr["status"]["podID"]
        await wait_for_status(
            kube,
            PODS,
            "web",
            containers=[{"name": "web-app", "containerID": cid, "phase": "Started"}],
        )
        await kube.aio.delete(PODS, NAMESPACE, "web")
        await wait_gone(kube, PODS, "web")
        assert await in_thread(containers_json, store) == []
