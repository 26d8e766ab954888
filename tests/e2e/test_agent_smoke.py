"""A first end-to-end pass: the real agent against the emulator, a real store."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from controller.config import Settings
from controller.handlers import kube as kube_api
from controller.handlers.operator import serve
from tests.support.stores import container_metadata, containers_json, is_mounted

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@contextlib.asynccontextmanager
async def running_agent(settings: Settings):
    kube_api.reset_client()
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop_flag=stop, ready_flag=ready))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        kube_api.reset_client()


async def test_a_pod_with_a_container_becomes_ready_and_started(kube_env, store, images):
    settings = Settings(
        root=store.root,
        run_root=store.run_root,
        driver=store.driver,
        node_name="node-a",
        infra_image=images.pause,
        insecure_registries=(images.registry_host,),
        health_port=0,
        metrics_port=0,
        resync_interval=5,
        kubeconfig=str(kube_env.kubeconfig),
    )
    async with running_agent(settings):
        kube_env.create(
            {
                "apiVersion": "podstore.dev/v1alpha1",
                "kind": "StoragePod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "nodeName": "node-a",
                    "containers": [{"name": "app", "image": images.busybox}],
                },
            }
        )

        def started():
            c = kube_env.get("storagecontainers", "default", "web-app")
            return c and (c.get("status") or {}).get("phase") == "Started"

        await kube_env.aio.wait_for(started, timeout=60)
        ctr = kube_env.get("storagecontainers", "default", "web-app")
        cid = ctr["status"]["containerID"]
        assert is_mounted(store, cid)
        meta = container_metadata(store, cid)
        assert meta["pod-id"] == ctr["status"]["podID"]
        await kube_env.aio.wait_for(
            lambda: (
                (kube_env.get("storagepods", "default", "web")["status"].get("containers") or [{}])[
                    0
                ].get("phase")
                == "Started"
            ),
            timeout=30,
        )
        kube_env.delete("storagepods", "default", "web")
        await kube_env.aio.wait_for(
            lambda: kube_env.get("storagepods", "default", "web") is None, timeout=60
        )
        assert containers_json(store) == []
