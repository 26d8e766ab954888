"""`podstore run` collects images after a pass that changed the store: the image a removed
container left unused goes, the images the manifests name stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.common import pod, run_once, template, write
from tests.cli.conftest import Refs
from tests.support.images import LocalImages
from tests.support.stores import StorePaths, cs

pytestmark = pytest.mark.cli

GC_NOW = (
    "--image-gc-high-threshold", "0", "--image-gc-low-threshold", "0",
    "--image-minimum-gc-age", "0",
)  # fmt: skip


def image_ids(store: StorePaths) -> set[str]:
    return {i["id"] for i in cs(store, "images", "--json") or ()}


def test_a_run_that_removed_a_container_collects_its_unused_image(
    store_root: StorePaths, manifests: Path, refs: Refs, image_layout: LocalImages
) -> None:
    both = pod("web", refs.pause, template("a", refs.busybox), template("b", refs.busybox2))
    write(manifests / "web.yaml", both)
    first = run_once(store_root, manifests, "--infra-image", refs.pause, *GC_NOW)
    assert first.returncode == 0, first.stderr
    # Every image is used or named: nothing went.
    assert image_ids(store_root) == {
        image_layout.pause_id,
        image_layout.busybox_id,
        image_layout.busybox2_id,
    }

    write(manifests / "web.yaml", pod("web", refs.pause, template("b", refs.busybox2)))
    second = run_once(store_root, manifests, "--infra-image", refs.pause, *GC_NOW)

    assert second.returncode == 0, second.stderr
    assert image_ids(store_root) == {image_layout.pause_id, image_layout.busybox2_id}
    assert "image GC: removed image " + image_layout.busybox_id[:12] in second.stderr
    # The low threshold of 0 % cannot be reached: said once, the run still succeeds.
    assert "FreeDiskSpaceFailed" in second.stderr


def test_a_run_that_changed_nothing_runs_no_gc(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", pod("web", refs.pause, template("a", refs.busybox)))
    assert run_once(store_root, manifests, "--infra-image", refs.pause).returncode == 0
    again = run_once(store_root, manifests, "--infra-image", refs.pause, *GC_NOW)
    assert again.returncode == 0, again.stderr
    assert "image GC" not in again.stderr
