"""Image GC on a real store on a small filesystem (a tmpfs of 40 MiB) filled with real
images: which go and which stay (in use, pinned, another tool's, too young), in which
order, what is remembered across a restart, and what a pass does when the store
changes under it or is locked."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.reconcile import imagegc
from controller.reconcile.imagegc import GCPolicy
from controller.storage import ImageService, Store
from controller.storage.images import LAST_USED_KEY, PULLED_KEY
from controller.sync.imagegc import ImageCollector
from tests.support.commands import run
from tests.support.smallfs import build_filler_images, small_filesystem
from tests.support.stores import StorePaths, cs, temporary_store

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent.parent
FS_MIB = 40
IMAGE_MIB = 4
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fill_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_filler_images(tmp_path_factory.mktemp("fill"), 9, IMAGE_MIB)


@dataclass
class SmallStore:
    paths: StorePaths
    store: Store
    images: ImageService
    layout: Path

    def ref(self, index: int) -> str:
        return f"oci:{self.layout}:fill-{index}"

    def name(self, index: int) -> str:
        return self.images.store_name(self.ref(index))

    def pull(self, index: int) -> str:
        """Pulled by podstore: its image ID."""
        return self.images.pull_image(self.ref(index)).id

    def copy_foreign(self, index: int) -> str:
        """Put in the store by another tool (skopeo directly): its image ID."""
        name = f"localhost/other/fill:{index}"
        run(["skopeo", "copy", "--quiet", self.ref(index), self.paths.transport(name)])
        image = self.store.image(name)
        assert image is not None
        return image.id

    def ids(self) -> set[str]:
        return {i["id"] for i in cs(self.paths, "images", "--json") or ()}

    def percent(self) -> float:
        usage = self.store.filesystem_usage()
        return 100.0 * usage.used / usage.total


@pytest.fixture
def small(tmp_path: Path, fill_layout: Path) -> Iterator[SmallStore]:
    """A store whose graph root is alone on a 40 MiB tmpfs; torn down (containers
    unmounted, store shut down) before the tmpfs is unmounted."""
    with (
        small_filesystem(tmp_path / "fs", FS_MIB) as fs,
        temporary_store(fs / "store", "overlay") as paths,
    ):
        store = Store(paths.root, paths.run_root, paths.driver)
        yield SmallStore(paths, store, ImageService(store), fill_layout)


def collector(small: SmallStore, now: float, **policy: object) -> ImageCollector:
    return ImageCollector(
        small.images,
        policy=GCPolicy(**policy),  # type: ignore[arg-type]
        pinned=(small.name(1),),
        clock=lambda: now,
    )


def thresholds_to_free(small: SmallStore, images: float) -> dict[str, int]:
    """A high threshold under today's usage and a low one that takes about ``images``
    images' worth of bytes to reach."""
    usage = small.store.filesystem_usage()
    low = int(100 * (usage.used - images * IMAGE_MIB * MIB) / usage.total)
    return {"high_threshold": int(small.percent()) - 1, "low_threshold": low}


def test_a_pass_removes_podstores_unused_images_least_recently_used_first(
    small: SmallStore,
) -> None:
    in_use = small.pull(0)
    small.store.create_container(in_use, id="", names=["someone-elses"], metadata="{}")
    pinned = small.pull(1)
    foreign = small.copy_foreign(2)
    old = {index: small.pull(index) for index in (3, 4, 5)}
    middle = time.time()
    time.sleep(1.1)
    young = small.pull(6)
    # Last uses after every arrival: the order is theirs, 4 then 3 then 5.
    for index, offset in ((4, 10), (3, 20), (5, 30)):
        image = small.store.image(old[index])
        assert image is not None
        assert small.images.mark_used(image, middle + offset)
    now = middle + 1000  # the old ones are 1000 s old, the young one less
    gc = collector(small, now, minimum_age=1000.0, **thresholds_to_free(small, 1.5))

    outcome = gc.run_pass()

    assert [r.image_id for r in outcome.removed] == [old[4], old[3]]
    assert outcome.reason == ""
    assert outcome.plan is not None
    assert outcome.usage_after is not None
    assert outcome.usage_after.percent() < gc.policy.low_threshold
    assert outcome.bytes_freed >= 2 * IMAGE_MIB * MIB
    assert small.ids() == {in_use, pinned, foreign, old[5], young}
    why = {k.image_id: k.why for k in outcome.plan.kept}
    assert why == {
        in_use: imagegc.IN_USE,
        pinned: imagegc.PINNED,
        foreign: imagegc.FOREIGN,
        young: imagegc.TOO_YOUNG,
        old[5]: imagegc.NOT_NEEDED,
    }


def test_with_the_kubelets_defaults_a_full_store_is_brought_under_80_percent(
    small: SmallStore,
) -> None:
    pulled = []
    index = 0
    while small.percent() <= 86:
        pulled.append(small.pull(index))
        index += 1
    assert small.percent() > 85
    gc = ImageCollector(small.images, policy=GCPolicy(), clock=lambda: time.time() + 3600)

    outcome = gc.run_pass()

    assert outcome.removed
    assert [r.image_id for r in outcome.removed] == pulled[: len(outcome.removed)]
    assert small.percent() < 80
    assert outcome.reason == ""
    assert small.ids() == set(pulled[len(outcome.removed) :])


def test_a_low_threshold_out_of_reach_is_freedisk_space_failed(small: SmallStore) -> None:
    kept = [small.copy_foreign(i) for i in range(3)]
    gone = small.pull(3)
    gc = collector(small, time.time() + 3600, **thresholds_to_free(small, 3))

    outcome = gc.run_pass()

    assert [r.image_id for r in outcome.removed] == [gone]
    assert outcome.low_unreachable
    assert outcome.reason == "FreeDiskSpaceFailed"
    assert small.ids() == set(kept)


def test_gc_all_removes_images_another_tool_put_in_the_store(small: SmallStore) -> None:
    foreign = small.copy_foreign(2)
    gc = collector(small, time.time() + 3600, gc_all=True, high_threshold=0, low_threshold=0)
    assert [r.image_id for r in gc.run_pass().removed] == [foreign]
    assert small.ids() == set()


def test_an_image_a_container_came_to_use_after_the_plan_is_skipped(small: SmallStore) -> None:
    first, second = small.pull(3), small.pull(4)
    gc = collector(small, time.time() + 3600, high_threshold=0, low_threshold=0)
    plan = gc.plan()
    assert [r.image_id for r in plan.removals] == [first, second]
    small.store.create_container(first, id="", names=["came-late"], metadata="{}")

    outcome = gc.execute(plan)

    assert [r.image_id for r in outcome.removed] == [second]
    assert [(s.removal.image_id, s.why) for s in outcome.skipped] == [
        (first, "a container uses it now")
    ]
    assert small.ids() == {first}


def test_an_image_a_create_holds_is_skipped(small: SmallStore) -> None:
    held = small.pull(3)
    gc = collector(small, time.time() + 3600, high_threshold=0, low_threshold=0)
    with small.images.using(held):
        outcome = gc.run_pass()
    assert outcome.removed == ()
    assert [s.why for s in outcome.skipped] == ["a create holds it"]
    assert small.ids() == {held}


def test_an_image_being_pulled_is_kept(small: SmallStore) -> None:
    image = small.pull(3)
    gc = collector(small, time.time() + 3600, high_threshold=0, low_threshold=0)
    plan = gc.plan(wanted=(small.ref(3),))
    assert plan.removals == ()
    assert {k.image_id: k.why for k in plan.kept} == {image: imagegc.WANTED}


def test_pulled_and_last_used_are_kept_in_the_store_and_survive_a_restart(
    small: SmallStore,
) -> None:
    in_use = small.pull(0)
    idle = small.pull(3)
    foreign = small.copy_foreign(2)
    small.store.create_container(in_use, id="", names=["user"], metadata="{}")
    now = time.time() + 5000
    collector(small, now).observe()  # writes the in-use image's last use

    # A new process, as after an agent restart: everything is read from the store again.
    fresh = ImageService(Store(small.paths.root, small.paths.run_root, "overlay"))
    gc_input, _ = ImageCollector(fresh, policy=GCPolicy()).observe(write=False)
    records = {r.id: r for r in gc_input.images}
    assert records[in_use].pulled
    assert records[idle].pulled
    assert not records[foreign].pulled
    assert records[in_use].last_used > 0  # in use: now; its stored mark is checked below
    assert records[idle].last_used > 0
    assert records[foreign].last_used == 0
    stored = {i["id"]: i for i in cs(small.paths, "images", "--json")}
    assert PULLED_KEY in stored[idle]["big-data-names"]
    metadata = json.loads(stored[in_use]["metadata"])
    assert metadata[LAST_USED_KEY] == int(now)
    # containers/image's own key is still there.
    assert "signatures-sizes" in metadata


def test_a_locked_store_stops_the_pass_before_anything_is_removed(small: SmallStore) -> None:
    image = small.pull(3)
    gc = collector(small, time.time() + 3600, high_threshold=0, low_threshold=0)
    small.store.runner.lock_wait = 1.0
    lock = small.paths.root / "overlay-images" / "images.lock"
    with lock.open("r+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        outcome = gc.run_pass()
    assert outcome.removed == ()
    assert outcome.reason == "ImageGCFailed"
    assert "locked" in outcome.error
    assert small.ids() == {image}


# -- the command line: `podstore images`, `podstore rmi --prune [--dry-run]` ------------


def podstore_flags(small: SmallStore) -> list[str]:
    paths = small.paths
    return ["--root", str(paths.root), "--runroot", str(paths.run_root), "--driver", paths.driver]


def podstore(small: SmallStore, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller", args[0], *podstore_flags(small), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


def test_images_shows_last_used_and_pinned(small: SmallStore) -> None:
    in_use = small.pull(0)
    small.pull(1)
    small.store.create_container(in_use, id="", names=["user"], metadata="{}")
    done = podstore(small, "images", "--pinned-image", small.name(1))
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split()[-3:] == ["LAST", "USED", "PINNED"]
    cells = {row.split()[1]: row for row in rows}
    assert "in use" in cells[small.name(0)]
    assert cells[small.name(0)].split()[-1] == "no"
    assert cells[small.name(1)].split()[-1] == "yes"
    listed = json.loads(podstore(small, "images", "-o", "json").stdout)
    assert {i["id"]: i["pulled_by_podstore"] for i in listed} == {
        in_use: True,
        small.store.image(small.name(1)).id: True,  # type: ignore[union-attr]
    }


def test_rmi_prune_dry_run_shows_the_plan_and_removes_nothing(small: SmallStore) -> None:
    ids = {small.pull(3), small.pull(4)}
    foreign = small.copy_foreign(2)
    # Under 15 %: what the foreign image and the store's own files take stays.
    gc_flags = ("--image-gc-high-threshold", "15", "--image-gc-low-threshold", "15")
    done = podstore(small, "rmi", "--prune", "--dry-run", *gc_flags, "--image-minimum-gc-age", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("would remove") == 2
    assert "not pulled by podstore" in done.stdout
    assert small.ids() == ids | {foreign}

    done = podstore(
        small, "rmi", "--prune", *gc_flags, "--image-minimum-gc-age", "0s", "-o", "json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {r["id"] for r in report["removed"]} == ids
    assert small.ids() == {foreign}


def test_rmi_prune_flag_errors_are_one_line_and_exit_2(small: SmallStore) -> None:
    done = podstore(small, "rmi", "--prune", "--image-gc-high-threshold", "70",
                    "--image-gc-low-threshold", "75")  # fmt: skip
    assert done.returncode == 2
    assert "must not be above --image-gc-high-threshold" in done.stderr
    done = podstore(small, "rmi", "--prune", "--image-minimum-gc-age", "soon")
    assert done.returncode == 2
    assert "not a duration" in done.stderr
    done = podstore(small, "rmi", "--prune", "x")
    assert done.returncode == 2
    assert done.stderr.strip() == "podstore rmi: give IMAGE... or --prune, not both"


def test_a_pass_killed_midway_leaves_a_consistent_store(small: SmallStore) -> None:
    in_use = small.pull(0)
    container = small.store.create_container(in_use, id="", names=["user"], metadata="{}")
    removable = {small.pull(i) for i in range(1, 8)}
    argv = [sys.executable, "-m", "controller", "rmi", *podstore_flags(small), "--prune",
            "--image-gc-high-threshold", "15", "--image-gc-low-threshold", "15",
            "--image-minimum-gc-age", "0"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if len(removable & set(_image_ids_unlocked(small))) < len(removable):
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)

    # The store reads; at most the image being removed lost its layers (containers-storage
    # 1.43 deletes the layers first); the in-use image is whole and its container mounts.
    images = cs(small.paths, "images", "--json") or []
    assert in_use in {i["id"] for i in images}
    assert len([i for i in images if not whole(small, i)]) <= 1
    assert cs(small.paths, "mount", container.id)
    cs(small.paths, "unmount", container.id)
    # The next pass finishes the work, the half-removed image included.
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert small.ids() == {in_use}
    assert all(whole(small, i) for i in cs(small.paths, "images", "--json"))


def whole(small: SmallStore, image: dict[str, Any]) -> bool:
    """Whether every layer of the image's chain is in the store."""
    layers = {layer["id"]: layer for layer in cs(small.paths, "layers", "--json") or []}
    layer = image["layer"]
    while layer:
        if layer not in layers:
            return False
        layer = layers[layer].get("parent") or ""
    return True


def _image_ids_unlocked(small: SmallStore) -> list[str]:
    """The image IDs as images.json has them, read without taking the store's lock (a
    listing through the CLI would wait on the pass, which is what is to be interrupted)."""
    try:
        data = json.loads((small.paths.root / "overlay-images" / "images.json").read_text())
    except (OSError, ValueError):
        return list(small.ids())
    return [str(i["id"]) for i in data or ()]


def test_an_image_a_killed_removal_left_without_layers_is_removed_by_the_next_pass(
    small: SmallStore,
) -> None:
    kept = small.pull(3)
    broken = small.pull(4)
    foreign = small.copy_foreign(2)
    for image_id in (broken, foreign):
        image = small.store.image(image_id)
        assert image is not None
        # What containers-storage 1.43 leaves when killed inside delete-image: the layers
        # went first, the record stayed.
        cs(small.paths, "delete", image.layer)
    gc = collector(small, time.time())  # usage far under 85 %: no collection due

    outcome = gc.run_pass()

    assert outcome.removed == ()
    # podstore's broken image is gone; another tool's is left to that tool.
    assert small.ids() == {kept, foreign}
