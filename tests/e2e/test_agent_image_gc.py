"""The agent's image GC against the emulator, on a real store on a 40 MiB tmpfs: the
timer removes podstore's unused images oldest first, posts an Event on the Node per
removal and FreeDiskSpaceFailed when it cannot get under the low threshold, and keeps
its metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.handlers import metrics
from controller.storage import ImageService, Store
from tests.e2e.agent import agent_settings, events_of, in_thread, running_agent, wait_until
from tests.support.commands import run
from tests.support.smallfs import build_filler_images, small_filesystem
from tests.support.stores import StorePaths, cs, temporary_store

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NODE = "node-a"
IMAGE_MIB = 4


@pytest.fixture(scope="module")
def fill_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_filler_images(tmp_path_factory.mktemp("fill"), 5, IMAGE_MIB)


@pytest.fixture
def small_store(tmp_path: Path) -> Iterator[StorePaths]:
    with (
        small_filesystem(tmp_path / "fs", 40) as fs,
        temporary_store(fs / "store", "overlay") as paths,
    ):
        yield paths


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def ids(paths: StorePaths) -> set[str]:
    return {i["id"] for i in cs(paths, "images", "--json") or ()}


def low_for(store: Store, images: float) -> int:
    usage = store.filesystem_usage()
    return int(100 * (usage.used - images * IMAGE_MIB * 1024 * 1024) / usage.total)


async def test_the_agent_collects_images_and_posts_events_and_metrics(
    kube: Any, images: Any, small_store: StorePaths, fill_layout: Path
) -> None:
    store = Store(small_store.root, small_store.run_root, small_store.driver)
    service = ImageService(store, insecure_registries=(images.registry_host,))
    infra = service.pull_image(images.pause).id  # the infra image: pinned
    pulled = [service.pull_image(f"oci:{fill_layout}:fill-{i}").id for i in range(3)]
    foreign = f"localhost/other/fill:{3}"
    run(["skopeo", "copy", "--quiet", f"oci:{fill_layout}:fill-3", small_store.transport(foreign)])
    removed_before = sample("podstore_image_gc_removed_total")
    bytes_before = sample("podstore_image_gc_bytes_total")
    settings = agent_settings(
        kube, small_store, images, node=NODE,
        image_gc_interval=1.0, image_gc_high_threshold=1,
        image_gc_low_threshold=low_for(store, 1.5), image_minimum_gc_age=0.0,
    )  # fmt: skip

    async with running_agent(settings):

        async def two_removed() -> list[Any]:
            found = await in_thread(events_of, kube, NODE, "ImageGarbageCollected")
            return found if len(found) >= 2 else []

        events = await wait_until(two_removed, timeout=60)

    assert [e["message"].split()[2] for e in events[:2]] == [p[:12] for p in pulled[:2]]
    for event in events:
        assert event["involvedObject"]["kind"] == "Node"
        assert event["involvedObject"]["name"] == NODE
        assert event["type"] == "Normal"
        assert event["source"]["component"] == "podstore-agent"
    remaining = await in_thread(ids, small_store)
    assert pulled[0] not in remaining
    assert pulled[1] not in remaining
    assert {infra, pulled[2]} <= remaining
    assert len(remaining) == 3  # and the foreign one
    assert sample("podstore_image_gc_removed_total") - removed_before == 2
    assert sample("podstore_image_gc_bytes_total") - bytes_before >= 2 * IMAGE_MIB * 1024 * 1024
    ratio = sample("podstore_image_fs_usage_ratio")
    assert 0 < ratio < settings.image_gc_low_threshold / 100
    assert await in_thread(events_of, kube, NODE, "FreeDiskSpaceFailed") == []


async def test_a_low_threshold_out_of_reach_is_a_freediskspacefailed_event(
    kube: Any, images: Any, small_store: StorePaths, fill_layout: Path
) -> None:
    store = Store(small_store.root, small_store.run_root, small_store.driver)
    for i in range(3):  # another tool's images only: nothing may go
        name = f"localhost/other/fill:{i}"
        run(
            [
                "skopeo",
                "copy",
                "--quiet",
                f"oci:{fill_layout}:fill-{i}",
                small_store.transport(name),
            ]
        )
    before = await in_thread(ids, small_store)
    settings = agent_settings(
        kube, small_store, images, node=NODE,
        image_gc_interval=1.0, image_gc_high_threshold=1,
        image_gc_low_threshold=low_for(store, 1), image_minimum_gc_age=0.0,
    )  # fmt: skip

    async with running_agent(settings):

        async def failed() -> list[Any]:
            return await in_thread(events_of, kube, NODE, "FreeDiskSpaceFailed")

        event = (await wait_until(failed, timeout=60))[0]

    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Node"
    assert "still at or over the low threshold" in event["message"]
    assert await in_thread(ids, small_store) == before
