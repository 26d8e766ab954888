"""``podstore ps``, ``pods``, ``images`` and ``inspect``: the store, as people and
scripts read it, checked against what ``containers-storage`` says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.common import (
    by_name,
    container,
    managed,
    pod,
    podstore,
    run_once,
    template,
    write,
    written_verbs,
)
from tests.cli.conftest import Refs
from tests.support.images import LocalImages
from tests.support.stores import StorePaths, cs, is_mounted

pytestmark = pytest.mark.cli

PS_KEYS = {
    "id", "names", "pod_id", "pod_name", "namespace", "name", "image_name", "image_id",
    "infra", "mounted", "mountpoint", "created_at",
}  # fmt: skip


@pytest.fixture
def filled(store_root: StorePaths, manifests: Path, refs: Refs) -> dict[str, Any]:
    """A store holding default/web (app started, idle stopped) and data/db (main, and a
    container called ``web``), plus one container podstore did not make."""
    web = pod(
        "web",
        refs.pause,
        template("app", refs.busybox),
        template("idle", refs.busybox, state="Stopped"),
    )
    db = pod("db", refs.pause, template("main", refs.busybox2))
    db["metadata"]["namespace"] = "data"
    other_web = container("web", "db", refs.busybox)
    other_web["metadata"]["namespace"] = "data"
    write(manifests / "all.yaml", web, db, other_web)
    done = run_once(store_root, manifests, "-o", "json")
    assert done.returncode == 0, done.stderr
    image = cs(store_root, "images", "--json")[0]["id"]
    cs(store_root, "create-container", "--name", "not-podstores", image)
    return by_name(json.loads(done.stdout))


def _json(store: StorePaths, *args: str) -> Any:
    done = podstore(store, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _columns(text: str) -> list[dict[str, str]]:
    """Parse an aligned table by the header's column starts (cells may hold spaces)."""
    lines = text.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=\s{2}))\S", lines[0])]
    heads = [lines[0][a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(heads, cells, strict=True)))
    return rows


def test_ps_json_has_the_contract_keys_and_says_what_the_store_says(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    listed = _json(store_root, "ps", "-o", "json")
    store = managed(store_root)

    assert {c["metadata_name"] for c in listed} == {"web-app", "web-idle", "db-main", "web"}
    for entry in listed:
        assert set(entry) >= PS_KEYS
        record = next(r for r in store.values() if r["id"] == entry["id"])
        meta = record["meta"]
        assert entry["names"] == record["names"]
        for key in ("pod_id", "pod_name", "namespace", "name", "image_name", "image_id"):
            assert entry[key] == meta[key.replace("_", "-")], key
        assert entry["created_at"] == meta["created-at"]
        assert entry["infra"] is False
        assert entry["mounted"] == is_mounted(store_root, entry["id"])
    app = next(c for c in listed if c["metadata_name"] == "web-app")
    assert app["mounted"] is True
    assert app["mountpoint"] == filled["StorageContainer/web-app"]["status"]["mountPoint"]
    assert Path(app["mountpoint"], "bin", "busybox").exists()
    idle = next(c for c in listed if c["metadata_name"] == "web-idle")
    assert (idle["mounted"], idle["mountpoint"]) == (False, "")


def test_ps_shows_infra_containers_only_when_asked_and_filters_by_pod_and_namespace(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    everything = _json(store_root, "ps", "-a", "-o", "json")
    infra = [c for c in everything if c["infra"]]
    assert {c["id"] for c in infra} == {
        filled["StoragePod/web"]["status"]["podID"],
        filled["StoragePod/db"]["status"]["podID"],
    }
    assert "not-podstores" not in {n for c in everything for n in c["names"]}

    web_id = filled["StoragePod/web"]["status"]["podID"]
    for pod_arg in ("web", web_id, web_id[:12]):
        names = {
            c["metadata_name"] for c in _json(store_root, "ps", "--pod", pod_arg, "-o", "json")
        }
        assert names == {"web-app", "web-idle"}, pod_arg
    in_data = _json(store_root, "ps", "--namespace", "data", "-o", "json")
    assert {c["metadata_name"] for c in in_data} == {"db-main", "web"}
    quiet = podstore(store_root, "ps", "-q", "-n", "data").stdout.split()
    assert sorted(quiet) == sorted(c["id"] for c in in_data)


def test_ps_reads_the_store_without_changing_it(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    done = podstore(store_root, "ps", "-a", "--log-level", "DEBUG")
    assert done.returncode == 0, done.stderr
    assert written_verbs(done.stderr) == []
    # One listing and one mount question, whatever the number of containers.
    verbs = [
        line.split("overlay ", 1)[1].split()[0]
        for line in done.stderr.splitlines()
        if "run: containers-storage" in line
    ]
    assert verbs.count("containers") == 1
    assert verbs.count("mounted") == 1


def test_ps_table_is_aligned_with_short_ids_and_ages(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    done = podstore(store_root, "ps")
    assert done.returncode == 0, done.stderr
    rows = _columns(done.stdout)
    assert list(rows[0]) == [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "MOUNTED",
        "NAME",
        "POD",
        "NAMESPACE",
        "POD ID",
    ]
    by_row = {r["NAME"]: r for r in rows}
    assert set(by_row) == {"web-app", "web-idle", "db-main", "web"}
    app = by_row["web-app"]
    assert app["CONTAINER"] == filled["StorageContainer/web-app"]["status"]["containerID"][:12]
    assert (app["MOUNTED"], app["POD"], app["NAMESPACE"]) == ("yes", "web", "default")
    assert by_row["web-idle"]["MOUNTED"] == "no"
    assert all(re.fullmatch(r"\d+[smhd]", r["CREATED"]) for r in rows)
    assert all(len(r["POD ID"]) == 12 for r in rows)


def test_pods_lists_each_pod_with_its_container_count(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    listed = {p["metadata_name"]: p for p in _json(store_root, "pods", "-o", "json")}
    assert set(listed) == {"web", "db"}
    web = listed["web"]
    assert web["id"] == filled["StoragePod/web"]["status"]["podID"]
    assert web["uid"] == filled["StoragePod/web"]["metadata"]["uid"]
    assert (web["namespace"], web["attempt"], web["containers"]) == ("default", 0, 2)
    assert listed["db"]["containers"] == 2
    assert web["name"] == managed(store_root)["pod/web"]["meta"]["pod-name"]
    assert isinstance(web["created_at"], int)

    rows = _columns(podstore(store_root, "pods", "--namespace", "data").stdout)
    assert [(r["NAME"], r["NAMESPACE"], r["CONTAINERS"]) for r in rows] == [("db", "data", "2")]
    assert rows[0]["POD ID"] == listed["db"]["id"][:12]


def test_images_lists_the_store_images_with_sizes(
    store_root: StorePaths, filled: dict[str, Any], image_layout: LocalImages
) -> None:
    listed = {i["id"]: i for i in _json(store_root, "images", "-o", "json")}
    assert set(listed) == {i["id"] for i in cs(store_root, "images", "--json")}
    busybox = listed[image_layout.busybox_id]
    assert {"id", "names", "digest", "size"} <= set(busybox)
    assert busybox["digest"].startswith("sha256:")
    assert busybox["size"] > 1_000_000  # the layer, not just the manifest
    assert busybox["containers"] == 3  # web-app, web-idle, data/web
    rows = _columns(podstore(store_root, "images").stdout)
    assert {r["IMAGE ID"] for r in rows} == {i[:12] for i in listed}


def test_inspect_finds_a_container_by_name_id_or_pod_and_shows_everything(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    app_status = filled["StorageContainer/web-app"]["status"]
    by_resource = _json(store_root, "inspect", "web-app")
    assert by_resource == _json(store_root, "inspect", app_status["containerID"][:8])
    assert by_resource["id"] == app_status["containerID"]
    assert by_resource["metadata"] == managed(store_root)["web-app"]["meta"]
    assert by_resource["work_dir"] == app_status["workDir"]
    assert by_resource["run_dir"] == app_status["runDir"]
    assert (by_resource["mounted"], by_resource["mountpoint"]) == (True, app_status["mountPoint"])
    assert by_resource["config_path"] == app_status["configPath"]
    assert Path(by_resource["config_template"]).is_file()

    infra = _json(store_root, "inspect", "default/web")
    assert infra["infra"] is True
    assert sorted(infra["members"]) == sorted(
        filled[f"StorageContainer/{n}"]["status"]["containerID"] for n in ("web-app", "web-idle")
    )

    ambiguous = podstore(store_root, "inspect", "web")
    assert ambiguous.returncode == 1
    assert "names more than one container" in ambiguous.stderr
    missing = podstore(store_root, "inspect", "nothing-here")
    assert missing.returncode == 1
    assert "no container or pod that podstore made is called 'nothing-here'" in missing.stderr
    assert podstore(store_root, "inspect", "not-podstores").returncode == 1


def test_run_once_prints_an_aligned_table(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", pod("web", refs.pause, template("app", refs.busybox)))
    done = run_once(store_root, manifests)
    assert done.returncode == 0, done.stderr
    rows = _columns(done.stdout)
    assert [(r["KIND"], r["NAMESPACE"], r["NAME"], r["PHASE"], r["REASON"]) for r in rows] == [
        ("StoragePod", "default", "web", "Ready", "<none>"),
        ("StorageContainer", "default", "web-app", "Started", "<none>"),
    ]
    assert all(len(r["ID"]) == 12 and re.fullmatch(r"\d+s", r["AGE"]) for r in rows)


def test_ps_state_filters_and_full_ids(store_root: StorePaths, filled: dict[str, Any]) -> None:
    everything = _json(store_root, "ps", "-a", "-o", "json")
    # Keyed by resource name: data/web's container and default/web's infra share "web".
    listed = {c["metadata_name"]: c for c in everything if not c["infra"]}
    mounted = {c["id"] for c in everything if is_mounted(store_root, c["id"])}
    for view in everything:
        assert (view["state"] == "Started") == (view["id"] in mounted), view
    assert listed["web-app"]["state"] == "Started"
    # Never started (its spec says Stopped from the start): Created, as crictl has it.
    assert listed["web-idle"]["state"] == "Created"

    def names(*args: str) -> set[str]:
        return {c["metadata_name"] for c in _json(store_root, "ps", *args, "-o", "json")}

    assert names("--state", "Created") == {"web-idle"}
    assert names("--state", "Stopped") == set()
    assert names("--state", "Started") == {"web-app", "db-main", "web"}
    app = listed["web-app"]
    key, value = next(iter(app["labels"].items()))
    assert "web-app" in names("--label", f"{key}={value}")
    assert names("--label", "no.such/label=x") == set()
    assert names("--image", app["image_id"][:12]) == {"web-app", "web-idle", "web"}
    latest = _json(store_root, "ps", "-l", "-o", "json")
    assert [c["id"] for c in latest] == [_json(store_root, "ps", "-o", "json")[-1]["id"]]

    full = _columns(podstore(store_root, "ps", "--no-trunc").stdout)
    assert {r["CONTAINER"] for r in full} == {c["id"] for c in everything if not c["infra"]}
    as_yaml = yaml.safe_load(podstore(store_root, "ps", "-a", "-o", "yaml").stdout)
    assert as_yaml == _json(store_root, "ps", "-a", "-o", "json")


def test_a_container_started_then_stopped_is_stopped_and_one_never_started_is_created(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(
        manifests / "web.yaml",
        pod(
            "web",
            refs.pause,
            template("app", refs.busybox),
            template("idle", refs.busybox, state="Stopped"),
        ),
    )
    assert run_once(store_root, manifests).returncode == 0
    write(
        manifests / "web.yaml",
        pod(
            "web",
            refs.pause,
            template("app", refs.busybox, state="Stopped"),
            template("idle", refs.busybox, state="Stopped"),
        ),
    )
    assert run_once(store_root, manifests).returncode == 0

    members = [c for c in _json(store_root, "ps", "-o", "json") if not c["infra"]]
    assert {c["metadata_name"]: c["state"] for c in members} == {
        "web-app": "Stopped",
        "web-idle": "Created",
    }
    assert not any(is_mounted(store_root, c["id"]) for c in members)


def test_id_prefixes_must_be_long_enough_and_distinguishable(
    store_root: StorePaths, filled: dict[str, Any]
) -> None:
    short = podstore(store_root, "inspect", "ab")
    assert short.returncode == 1
    assert "too short: give at least 3 characters" in short.stderr
    assert len(short.stderr.strip().splitlines()) == 1


def test_an_unknown_flag_is_named_with_its_subcommand(store_root: StorePaths) -> None:
    done = podstore(store_root, "pods", "--no-such-flag")
    assert done.returncode == 2
    assert "podstore pods: error: unrecognized arguments: --no-such-flag" in done.stderr
