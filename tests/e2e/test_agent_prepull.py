"""Pre-pull: a StorageImage is held by the agent of every node it selects, each writing
its own entry of status.nodes (two agents at once lose neither entry), pinned against
image GC while it exists and collectable once it is gone."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.agent import agent_settings, in_thread, running_agent, wait_until
from tests.support.stores import cs, temporary_store

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

IMAGES = "storageimages"


@pytest.fixture
def store_b(tmp_path: Any) -> Any:
    with temporary_store(tmp_path / "store-b") as paths:
        yield paths


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def storage_image(name: str, image: str, **selector: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image}
    if selector:
        spec["nodeSelector"] = selector
    return {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StorageImage",
        "metadata": {"name": name},
        "spec": spec,
    }


def entries(kube: Any, name: str) -> dict[str, dict[str, Any]]:
    obj = kube.get(IMAGES, None, name) or {}
    return {n["nodeName"]: n for n in (obj.get("status") or {}).get("nodes") or ()}


def image_ids(store: Any) -> set[str]:
    return {i["id"] for i in cs(store, "images", "--json") or ()}


async def test_each_selected_node_pulls_the_image_and_reports_in_its_own_entry(
    kube: Any, store: Any, store_b: Any, images: Any
) -> None:
    kube.create(node("node-a", role="worker"))
    kube.create(node("node-b", role="worker", disk="ssd"))
    kube.create(storage_image("everywhere", images.busybox))
    kube.create(storage_image("ssd-only", images.busybox2, disk="ssd"))
    a = agent_settings(kube, store, images, node="node-a", resync_interval=2)
    b = agent_settings(kube, store_b, images, node="node-b", resync_interval=2)

    async with running_agent(a, b):

        async def both_pulled() -> dict[str, Any]:
            found = await in_thread(entries, kube, "everywhere")
            pulled = {k for k, v in found.items() if v["phase"] == "Pulled"}
            return found if pulled == {"node-a", "node-b"} else {}

        everywhere = await wait_until(both_pulled, timeout=60)

        async def b_pulled() -> dict[str, Any]:
            found = await in_thread(entries, kube, "ssd-only")
            return found if found.get("node-b", {}).get("phase") == "Pulled" else {}

        ssd_only = await wait_until(b_pulled, timeout=60)

    assert everywhere["node-a"]["imageID"] == everywhere["node-b"]["imageID"]
    assert everywhere["node-a"]["imageID"] == images.busybox_id
    assert images.busybox_id in await in_thread(image_ids, store)
    assert images.busybox_id in await in_thread(image_ids, store_b)
    assert set(ssd_only) == {"node-b"}  # node-a is not selected: no entry, no pull
    assert images.busybox2_id not in await in_thread(image_ids, store)
    assert images.busybox2_id in await in_thread(image_ids, store_b)
    for entry in everywhere.values():
        assert entry["reason"] == "Pulled"
        assert entry["lastTransitionTime"]


async def test_a_pre_pulled_image_is_pinned_until_its_object_is_deleted(
    kube: Any, store: Any, images: Any
) -> None:
    kube.create(node("node-a"))
    kube.create(storage_image("keep", images.busybox))
    settings = agent_settings(
        kube, store, images, node="node-a", resync_interval=2,
        image_gc_interval=1.0, image_gc_high_threshold=0, image_gc_low_threshold=0,
        image_minimum_gc_age=0.0,
    )  # fmt: skip

    async with running_agent(settings):

        async def pulled() -> bool:
            found = await in_thread(entries, kube, "keep")
            return found.get("node-a", {}).get("phase") == "Pulled"

        await wait_until(pulled, timeout=60)
        # Several GC passes with every threshold at 0: the pinned image stays.
        await in_thread(time.sleep, 3.0)
        assert images.busybox_id in await in_thread(image_ids, store)

        await kube.aio.delete(IMAGES, None, "keep")

        async def collected() -> bool:
            return images.busybox_id not in await in_thread(image_ids, store)

        await wait_until(collected, timeout=30)


def test_a_stale_write_is_refused_and_redone_keeping_the_other_nodes_entry(
    kube: Any, store: Any, images: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controller.handlers import kube as kube_api
    from controller.handlers.prepull import PrePulls
    from controller.storage import ImageService, Store

    kube_api.reset_client()
    kube_api.configure(str(kube.kubeconfig))
    kube.create(storage_image("shared", images.busybox))
    stale = kube.get(IMAGES, None, "shared")
    # Another node's agent writes its entry after this one read the object.
    other = {"nodeName": "node-b", "phase": "Pulled", "imageID": "b" * 64}
    version = stale["metadata"]["resourceVersion"]
    assert kube_api.patch_storage_image_nodes("shared", version, [other])
    # The API refuses a write on the version read before it.
    assert not kube_api.patch_storage_image_nodes("shared", version, [])

    reads = [stale]
    real_get = kube_api.get_storage_image

    def get_stale_first(name: str) -> Any:
        return reads.pop() if reads else real_get(name)

    monkeypatch.setattr(kube_api, "get_storage_image", get_stale_first)
    service = ImageService(
        Store(store.root, store.run_root, store.driver), insecure_registries=(images.registry_host,)
    )
    prepulls = PrePulls(service, "node-a", labels=lambda _: {})
    prepulls._write("shared", {"nodeName": "node-a", "phase": "Pulled", "imageID": "a" * 64})

    found = entries(kube, "shared")
    assert set(found) == {"node-a", "node-b"}
    assert found["node-b"]["imageID"] == "b" * 64
    kube_api.reset_client()
