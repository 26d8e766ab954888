"""``podstore run`` never removes silently: the -f paths are recorded, a run with other
paths warns of what goes, ``--dry-run`` changes nothing, every removal is logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.common import identity, pod, run_once, state_file, template, write
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths, containers_json, cs

pytestmark = pytest.mark.cli


@pytest.fixture
def web(store_root: StorePaths, manifests: Path, refs: Refs) -> Path:
    write(manifests / "web.yaml", pod("web", refs.pause, template("app", refs.busybox)))
    done = run_once(store_root, manifests)
    assert done.returncode == 0, done.stderr
    return manifests


def _store_state(store: StorePaths) -> object:
    mounted = cs(store, "mounted", *[c["id"] for c in containers_json(store)], check=False)
    return (containers_json(store), cs(store, "images", "--json"), mounted)


def test_the_state_file_records_the_paths(store_root: StorePaths, web: Path) -> None:
    data = json.loads(state_file(store_root).read_text())
    assert data["paths"] == [str(web)]


def test_dry_run_prints_the_plan_and_changes_nothing(
    store_root: StorePaths, web: Path, refs: Refs, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write(other / "db.yaml", pod("db", refs.pause, template("main", refs.busybox)))
    before = _store_state(store_root)
    state_before = state_file(store_root).read_text()
    done = run_once(store_root, other, "--dry-run", "-o", "json")
    assert done.returncode == 0, done.stderr
    plan = {(p["action"], p["kind"], p["name"]) for p in json.loads(done.stdout)}
    assert plan == {
        ("create", "StoragePod", "db"),
        ("create", "StorageContainer", "db-main"),
        ("remove", "StoragePod", "web"),
        ("remove", "StorageContainer", "web-app"),
    }
    assert _store_state(store_root) == before
    assert state_file(store_root).read_text() == state_before
    assert "will be removed from the store" in done.stderr

    same = run_once(store_root, web, "--dry-run", "-o", "json")
    assert {p["action"] for p in json.loads(same.stdout)} == {"keep"}


def test_a_run_with_other_paths_warns_of_each_removal(
    store_root: StorePaths, web: Path, refs: Refs, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    write(other / "db.yaml", pod("db", refs.pause))
    gone = identity(store_root)
    done = run_once(store_root, other)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert any(f"this store was last run with -f {web}, now with -f {other}" in w for w in warnings)
    for name in ("web", "web-app"):
        assert any(f"/{name} will be removed from the store" in w for w in warnings), name
        assert any("removed" in w and f"/{name} from the store" in w for w in warnings), name
    assert not {i for i, _, _ in gone.values()} & {c["id"] for c in containers_json(store_root)}
