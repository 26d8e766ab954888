"""``podstore run`` killed with SIGKILL mid-way, then run again: it converges.

No signal handler runs on SIGKILL: the state file may be older than the store, a
container may be made but not named or not mounted. The next run must finish the
job with exactly one storage container per resource and nothing else.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.cli.common import (
    by_name,
    ids,
    managed,
    pod,
    run_once,
    start_watch,
    template,
    write,
)
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths, containers_json, is_mounted, layer_names
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cli

PODS = [f"p{i}" for i in range(4)]


@pytest.mark.parametrize("after", [1, 3, 6], ids=["first-container", "three", "six"])
def test_run_killed_with_sigkill_converges_on_the_next_run_without_duplicates(
    store_root: StorePaths, manifests: Path, refs: Refs, after: int
) -> None:
    for name in PODS:
        write(
            manifests / f"{name}.yaml",
            pod(name, refs.pause, template("app", refs.busybox), template("db", refs.busybox)),
        )
    proc = start_watch(store_root, manifests)
    try:
        wait_for(f"{after} containers in the store", lambda: len(managed(store_root)) >= after)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    made_before = set(ids(store_root).values())

    done = run_once(store_root, manifests, "-o", "json")

    assert done.returncode == 0, done.stderr
    objects = by_name(json.loads(done.stdout))
    expected = {f"pod/{p}" for p in PODS} | {f"{p}-{c}" for p in PODS for c in ("app", "db")}
    # Counted from the raw listing (not keyed by name), so a duplicate would show.
    metas = [json.loads(r.get("metadata") or "{}") for r in containers_json(store_root)]
    names = [
        ("pod/" if m.get("pod") else "") + str(m.get("metadata-name"))
        for m in metas
        if m.get("managed-by") == "podstore"
    ]
    assert sorted(names) == sorted(expected)
    assert Counter(names).most_common(1)[0][1] == 1
    for record in containers_json(store_root):
        name = (record.get("names") or [""])[0]
        assert f"{name}-layer" in layer_names(store_root, record["layer"]), record
    now = ids(store_root)
    # What the killed run had made was adopted, not made again.
    assert made_before <= set(now.values())
    for p in PODS:
        assert objects[f"StoragePod/{p}"]["status"]["phase"] == "Ready"
        assert objects[f"StoragePod/{p}"]["status"]["podID"] == now[f"pod/{p}"]
        for c in ("app", "db"):
            status = objects[f"StorageContainer/{p}-{c}"]["status"]
            assert status["phase"] == "Started"
            assert status["containerID"] == now[f"{p}-{c}"]
            assert is_mounted(store_root, now[f"{p}-{c}"])
