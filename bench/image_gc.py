"""Time one image-GC pass at 100 images against the bare CLI doing the same removals.

A store (vfs, in a temporary folder) gets 100 small one-layer images, pulled through
podstore (so they carry its marks); 10 of them back a container. Then, alternating in
one run, each round on a freshly filled store:

- ``bare``: one ``containers-storage images --json`` and the 90 ``delete-image`` calls
  of the images no container uses (what any GC must at least do);
- ``podstore``: ``ImageCollector.run_pass`` with both thresholds at 0 (everything
  removable goes): three listings, the plan, the same 90 removals.

It prints the medians and the ratio podstore / bare, and the processes each way ran.
It asserts nothing about time. Run as root: ``.venv/bin/python bench/image_gc.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from controller.reconcile.imagegc import GCPolicy
from controller.storage import ImageService, Store
from controller.storage.command import CommandEvent, add_observer, remove_observer
from controller.sync.imagegc import ImageCollector

IMAGES = 100
IN_USE = 10


def build_layout(where: Path, count: int) -> Path:
    layout = where / "layout"
    umoci = ["umoci", "--log=error"]
    common.run([*umoci, "init", "--layout", str(layout)])
    blob = where / "blob"
    for index in range(count):
        blob.write_bytes(os.urandom(64 * 1024))
        tag = f"{layout}:img-{index}"
        common.run([*umoci, "new", "--image", tag])
        common.run([*umoci, "insert", "--image", tag, str(blob), "/data"])
    return layout


def fill(store: Store, layout: Path, count: int) -> list[str]:
    """Pull ``count`` images through podstore; the first IN_USE back a container."""
    images = ImageService(store)
    ids = [images.pull_image(f"oci:{layout}:img-{i}").id for i in range(count)]
    for index, image_id in enumerate(ids[:IN_USE]):
        store.create_container(image_id, id="", names=[f"user-{index}"], metadata="{}")
    return ids


def bare(store: common.TempStore, ids: list[str]) -> float:
    flags = ["--graph", store.root, "--run", store.run_root, "--storage-driver", "vfs"]
    started = time.monotonic()
    listed = json.loads(common.run([common.CS, *flags, "images", "--json"]).stdout or "[]")
    assert len(listed) == len(ids)
    for image_id in ids[IN_USE:]:
        common.run([common.CS, *flags, "delete-image", image_id])
    return time.monotonic() - started


def podstore(store: Store) -> float:
    gc = ImageCollector(
        ImageService(store),
        policy=GCPolicy(high_threshold=0, low_threshold=0, minimum_age=0),
        clock=lambda: time.time() + 3600,
    )
    started = time.monotonic()
    outcome = gc.run_pass()
    seconds = time.monotonic() - started
    assert len(outcome.removed) == IMAGES - IN_USE, outcome
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round each")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    common.need("umoci", "skopeo", common.CS)
    rounds = 1 if args.quick else args.rounds
    times: dict[str, list[float]] = {"bare": [], "podstore": []}
    procs: dict[str, Counter[str]] = {"bare": Counter(), "podstore": Counter()}
    with common.temp_dir() as where:
        layout = build_layout(where, IMAGES)
        for round_ in range(rounds):
            for variant in ("bare", "podstore") if round_ % 2 == 0 else ("podstore", "bare"):
                with common.temp_store(base=where / f"store-{round_}-{variant}") as temp:
                    store = Store(temp.root, temp.run_root, "vfs")
                    ids = fill(store, layout, IMAGES)
                    seen: list[CommandEvent] = []
                    add_observer(seen.append)
                    try:
                        seconds = bare(temp, ids) if variant == "bare" else podstore(store)
                    finally:
                        remove_observer(seen.append)
                    times[variant].append(seconds)
                    procs[variant] = Counter(f"{e.tool} {e.verb}" for e in seen)
    bare_s, ours = statistics.median(times["bare"]), statistics.median(times["podstore"])
    print(f"one GC pass, {IMAGES} images ({IMAGES - IN_USE} removed), {rounds} round(s)")
    print(f"  bare CLI : {bare_s * 1000:8.1f} ms  (images --json + delete-image each)")
    print(f"  podstore : {ours * 1000:8.1f} ms  processes: {dict(procs['podstore'])}")
    print(f"  ratio podstore / bare: {ours / bare_s:.2f}x")


if __name__ == "__main__":
    main()
