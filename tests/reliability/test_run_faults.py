"""``podstore run`` on a real store under faults found from outside (issue 12): bad
files beside good ones, a newcomer clashing with a running container."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.common import by_name, container, ids, pod, run_once, template, write
from tests.cli.conftest import Refs
from tests.reliability.fuzz import _alias_bomb
from tests.support.stores import StorePaths, is_mounted

pytestmark = pytest.mark.cli


def test_costly_and_mistyped_manifests_are_reported_and_good_ones_run(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    (manifests / "bomb.yaml").write_text(_alias_bomb(10))
    (manifests / "deep.yaml").write_text("[" * 1000 + "]" * 1000)
    (manifests / "kind.yaml").write_text("kind: {a: 1}\nmetadata: {name: k}\n")

    done = run_once(store_root, manifests, "-o", "json")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{manifests / 'bomb.yaml'}, document 1: not valid YAML: stands for" in done.stderr
    assert f"{manifests / 'deep.yaml'}, document 1: not valid YAML: nested" in done.stderr
    assert f"{manifests / 'kind.yaml'}, document 1: kind: Invalid value" in done.stderr
    objects = by_name(json.loads(done.stdout))
    assert objects["StoragePod/good"]["status"]["phase"] == "Ready"
    assert objects["StorageContainer/good-app"]["status"]["phase"] == "Started"


def test_a_new_file_clashing_with_a_running_container_changes_nothing(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    first = run_once(store_root, manifests, "-o", "json")
    assert first.returncode == 0, first.stderr
    before = ids(store_root)
    assert is_mounted(store_root, before["good-app"])

    write(manifests / "new.yaml", container("good-app", "good", refs.busybox, state="Stopped"))
    second = run_once(store_root, manifests, "-o", "json")

    assert second.returncode == 1
    assert f"{manifests / 'new.yaml'}, document 1: metadata.name:" in second.stderr
    assert ids(store_root) == before
    assert is_mounted(store_root, before["good-app"])
    app = by_name(json.loads(second.stdout))["StorageContainer/good-app"]
    assert app["status"]["phase"] == "Started"
    assert app["metadata"]["ownerReferences"][0]["name"] == "good"
