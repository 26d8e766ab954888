"""Store turns what the real containers-storage printed into records and errors.

Every answer here was recorded from containers-storage itself (see
``recorded/record.py``); the stub replaces only the process boundary
(``Store.runner``), so the parsing and the error mapping are Store's own.
Where the stub is strict, the arguments Store builds must equal the recorded
ones: the command line is then known to work with the real tool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.storage.command import Completed
from controller.storage.errors import (
    CommandError,
    ContainerNotKnown,
    ImageInUse,
    ImageNotFound,
    InvalidName,
    NameConflict,
    StorageError,
)
from controller.storage.images import ImageConfig
from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.store import GC_OFF_BELOW, GC_OFF_ENV, TOOL, Store, go_runtime_env

RECORDED = Path(__file__).resolve().parent / "recorded"
POD_ID = "aaaa" + "0" * 59 + "1"
MEMBER_ID = "bbbb" + "0" * 59 + "2"
MISSING_ID = "cccc" + "0" * 59 + "9"
MISSING_IMAGE_ID = "eeee" + "0" * 60


def capture(name: str) -> dict[str, Any]:
    with open(RECORDED / f"{name}.json", encoding="utf-8") as handle:
        return json.load(handle)


def out(name: str) -> Any:
    """The JSON a recorded command printed."""
    return json.loads(capture(name)["stdout"])


IMAGE = out("image")[0]
IMAGE_ID = IMAGE["id"]
IMAGE_NAME = IMAGE["names"][0]
INFRA_CREATED = out("create-container-infra")
MEMBER_CREATED = out("create-container-member")
FOREIGN_ID = next(c["id"] for c in out("containers") if c["names"] == ["foreign"])
RECORDED_STORE = capture("containers")["store"]


class Recorded:
    """Stands in for ``Store.runner``: answers each command with the next capture."""

    def __init__(self, *names: str, strict: bool = True) -> None:
        self.captures = [capture(name) for name in names]
        self.strict = strict
        self.calls: list[tuple[str, ...]] = []

    def run(
        self, verb: str, *args: str, timeout: float | None = None, check: bool = True
    ) -> Completed:
        assert self.captures, f"no recorded answer left for {verb} {args}"
        record = self.captures.pop(0)
        argv = (verb, *args)
        self.calls.append(argv)
        if self.strict:
            assert list(argv) == record["args"], "Store built another command than recorded"
        done = Completed(
            (TOOL, *argv), record["returncode"], record["stdout"], record["stderr"], 0.0
        )
        if check and done.returncode != 0:
            raise CommandError(TOOL, verb, done.returncode, done.stderr or done.stdout)
        return done


def synthetic(returncode: int, stdout: str = "", stderr: str = "") -> dict[str, Any]:
    return {"args": [], "returncode": returncode, "stdout": stdout, "stderr": stderr}


@pytest.fixture
def store() -> Store:
    return Store(RECORDED_STORE["root"], RECORDED_STORE["runroot"], RECORDED_STORE["driver"])


def answer(store: Store, *names: str, strict: bool = True) -> Recorded:
    runner = Recorded(*names, strict=strict)
    store.runner = runner  # type: ignore[assignment]
    return runner


# -- the store's own options ---------------------------------------------------------


def test_every_command_carries_the_stores_graph_run_root_and_driver():
    store = Store("/srv/store", "/run/store", "vfs", storage_opts=["vfs.ignore_chown_errors=true"])
    assert store.runner.tool == "containers-storage"
    assert store.runner.prefix == (
        "--graph",
        "/srv/store",
        "--run",
        "/run/store",
        "--storage-driver",
        "vfs",
        "--storage-opt",
        "vfs.ignore_chown_errors=true",
    )


@pytest.mark.parametrize(
    ("metadata_bytes", "expected"),
    [
        pytest.param(-1, {}, id="unknown-or-new-store-go-defaults"),
        pytest.param(0, {"GOGC": "off", "GOMEMLIMIT": "64MiB"}, id="empty-store-collector-off"),
        pytest.param(300_000, {"GOGC": "off", "GOMEMLIMIT": "64MiB"}, id="hundreds-collector-off"),
        pytest.param(GC_OFF_BELOW - 1, GC_OFF_ENV, id="just-below-the-bound"),
        pytest.param(GC_OFF_BELOW, {}, id="at-the-bound-go-defaults"),
        pytest.param(20 << 20, {}, id="large-store-go-defaults"),
    ],
)
def test_commands_run_with_the_collector_off_only_while_the_metadata_is_small(
    metadata_bytes, expected
):
    assert dict(go_runtime_env(metadata_bytes)) == expected


def test_the_metadata_size_is_the_sum_of_the_stores_three_json_files(tmp_path):
    store = Store(tmp_path / "root", tmp_path / "run", "overlay")
    assert store.metadata_bytes() == -1  # nothing there yet: a new store
    for kind, size in (("containers", 300), ("layers", 200), ("images", 50)):
        folder = tmp_path / "root" / f"overlay-{kind}"
        folder.mkdir(parents=True)
        (folder / f"{kind}.json").write_bytes(b"x" * size)
    assert store.metadata_bytes() == 550
    (tmp_path / "root" / "overlay-images" / "images.json").unlink()
    assert store.metadata_bytes() == 500  # a store with no image yet


def test_a_store_of_another_driver_does_not_count_these_files(tmp_path):
    folder = tmp_path / "root" / "overlay-layers"
    folder.mkdir(parents=True)
    (folder / "layers.json").write_bytes(b"x" * 10)
    assert Store(tmp_path / "root", tmp_path / "run", "vfs").metadata_bytes() == -1


def test_the_store_runs_its_commands_with_the_go_variables_its_size_asks_for(tmp_path):
    store = Store(tmp_path / "root", tmp_path / "run", "vfs")
    assert store.runner.env is not None
    assert dict(store.runner.env()) == {}
    (tmp_path / "root" / "vfs-layers").mkdir(parents=True)
    (tmp_path / "root" / "vfs-layers" / "layers.json").write_text("[]")
    assert dict(store.runner.env()) == dict(GC_OFF_ENV)


def test_the_store_names_itself_as_a_containers_image_destination():
    store = Store("/srv/store", "/run/store")
    assert store.destination("localhost/t:1") == (
        "containers-storage:[overlay@/srv/store+/run/store]localhost/t:1"
    )


@pytest.mark.parametrize(
    ("root", "run_root", "driver"),
    [
        pytest.param("relative", "/run/s", "overlay", id="relative-root"),
        pytest.param("/srv/s", "", "overlay", id="empty-run-root"),
        pytest.param("/srv/a:b", "/run/s", "overlay", id="colon-in-root"),
        pytest.param("/srv/a+b", "/run/s", "overlay", id="plus-in-root"),
        pytest.param("/srv/[a]", "/run/s", "overlay", id="brackets-in-root"),
        pytest.param("/srv/s", "/run/s", "Overlay --x", id="odd-driver"),
        pytest.param("/srv/s", "/run/s", "", id="empty-driver"),
    ],
)
def test_a_store_location_that_cannot_be_named_safely_is_rejected(root, run_root, driver):
    with pytest.raises(InvalidName):
        Store(root, run_root, driver)


def test_the_store_root_is_normalized():
    assert Store("/srv//store/", "/run/store/.").root == "/srv/store"


# -- containers ----------------------------------------------------------------------------


def test_containers_lists_every_container_with_its_names_layer_and_metadata(store):
    runner = answer(store, "containers")
    listed = store.containers()
    assert runner.calls == [("containers", "--json")]
    assert [c.id for c in listed] == [POD_ID, MEMBER_ID, FOREIGN_ID]
    infra, member, foreign = listed
    assert infra.names == ("k8s_POD_web", "web")
    assert member.names == ("web-app",)
    assert infra.image == member.image == IMAGE_ID
    assert infra.layer == INFRA_CREATED["layer"]
    assert infra.created.startswith("20")
    assert foreign.metadata == ""
    assert infra.mount_label == ""


def test_the_metadata_of_listed_containers_parses_to_the_contract_keys(store):
    answer(store, "containers")
    infra, member, foreign = store.containers()
    infra_meta = RuntimeContainerMetadata.from_json(infra.metadata)
    member_meta = RuntimeContainerMetadata.from_json(member.metadata)
    assert infra_meta is not None
    assert member_meta is not None
    assert infra_meta.pod
    assert infra_meta.managed
    assert infra_meta.pod_id == member_meta.pod_id == POD_ID
    assert not member_meta.pod
    assert member_meta.labels == {"podstore.dev/container": "app"}
    assert RuntimeContainerMetadata.from_json(foreign.metadata) is None


@pytest.mark.parametrize(
    ("case", "key", "expected"),
    [
        pytest.param("container", POD_ID, POD_ID, id="by-id"),
        pytest.param("container-by-name", "web-app", MEMBER_ID, id="by-name"),
    ],
)
def test_container_finds_one_container_by_id_or_name(store, case, key, expected):
    answer(store, case)
    found = store.container(key)
    assert found is not None
    assert found.id == expected


def test_container_of_the_listing_and_of_the_lookup_are_equal(store):
    answer(store, "containers", "container")
    assert store.containers()[0] == store.container(POD_ID)


@pytest.mark.parametrize(
    ("case", "key"),
    [
        pytest.param("container-unknown", MISSING_ID, id="unknown-id"),
        pytest.param("container-unknown-name", "nosuchname", id="unknown-name"),
    ],
)
def test_container_is_none_when_the_store_has_no_such_container(store, case, key):
    # The tool exits 1 and prints an empty JSON list, with nothing on stderr.
    assert capture(case)["returncode"] == 1
    answer(store, case)
    assert store.container(key) is None


def test_container_raises_when_the_tool_fails_for_another_reason(store):
    store.runner = Recorded(strict=False)  # type: ignore[assignment]
    store.runner.captures = [synthetic(1, "", "permission denied")]
    with pytest.raises(CommandError, match="permission denied"):
        store.container(POD_ID)


def test_create_container_sends_id_names_and_metadata_and_returns_the_record(store):
    recorded = capture("create-container-infra")
    metadata = recorded["args"][recorded["args"].index("--metadata") + 1]
    runner = answer(store, "create-container-infra")
    created = store.create_container(
        IMAGE_ID, id=POD_ID, names=["k8s_POD_web", "web"], metadata=metadata
    )
    assert runner.calls[0][0] == "create-container"
    assert created.id == POD_ID
    assert created.names == ("k8s_POD_web", "web")
    assert created.layer == INFRA_CREATED["layer"]
    assert created.metadata == metadata


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        pytest.param("create-container-name-conflict", NameConflict, "already in use", id="name"),
        pytest.param("create-container-id-conflict", NameConflict, "ID is already", id="id"),
        pytest.param("create-container-image-unknown", ImageNotFound, MISSING_IMAGE_ID, id="image"),
    ],
)
def test_create_container_maps_the_tools_refusals_to_errors(store, case, error, message):
    answer(store, case, strict=False)
    with pytest.raises(error, match=message):
        store.create_container(MISSING_IMAGE_ID, id="", names=["x"], metadata="{}")


def test_a_name_conflict_says_which_container_holds_the_name(store):
    answer(store, "create-container-name-conflict", strict=False)
    with pytest.raises(NameConflict, match=MEMBER_ID):
        store.create_container(IMAGE_ID, id="", names=["web-app"], metadata="{}")


def test_create_container_without_an_id_lets_the_store_choose_one(store):
    runner = answer(store, "create-container-member", strict=False)
    store.create_container(IMAGE_ID, id="", names=["web-app"], metadata="{}")
    assert "--id" not in runner.calls[0]


def test_delete_container_is_true_when_deleted_and_false_when_already_gone(store):
    answer(store, "delete-container", "delete-container-unknown")
    assert store.delete_container(MEMBER_ID) is True
    assert store.delete_container(MISSING_ID) is False


def test_set_metadata_sends_the_new_metadata(store):
    recorded = capture("set-metadata")
    runner = answer(store, "set-metadata")
    store.set_metadata(MEMBER_ID, recorded["args"][2])
    assert runner.calls[0][:2] == ("set-metadata", "--metadata")


def test_set_metadata_of_an_unknown_container_is_container_not_known(store):
    answer(store, "set-metadata-unknown")
    with pytest.raises(ContainerNotKnown):
        store.set_metadata(MISSING_ID, "{}")


# -- names and layers ---------------------------------------------------------------------


def test_add_names_gives_a_layer_its_extra_name(store):
    runner = answer(store, "add-names-layer")
    store.add_names(MEMBER_CREATED["layer"], ["web-app-layer"])
    assert runner.calls == [("add-names", "--name", "web-app-layer", MEMBER_CREATED["layer"])]


def test_layer_names_reads_the_names_of_a_layer(store):
    answer(store, "layer", "layer-unknown", strict=False)
    assert store.layer_names(MEMBER_CREATED["layer"]) == ("web-app-layer",)
    assert store.layer_names("nosuchlayer") == ()


def test_add_names_moves_a_name_another_layer_holds_instead_of_refusing(store):
    # What the tool does (recorded): exit 0, and the first layer loses the name.
    # So add_names never raises NameConflict for a layer name in practice.
    answer(store, "add-names-taken", "layer-after-taken", strict=False)
    store.add_names(INFRA_CREATED["layer"], ["web-app-layer"])
    assert store.layer_names(MEMBER_CREATED["layer"]) == ()


@pytest.mark.parametrize(
    ("method", "case", "base"),
    [
        pytest.param("container_dir", "get-container-dir", "root", id="work-dir"),
        pytest.param("container_run_dir", "get-container-run-dir", "runroot", id="run-dir"),
    ],
)
def test_the_container_directories_are_read_without_the_newline(store, method, case, base):
    answer(store, case)
    path = getattr(store, method)(POD_ID)
    assert path == f"{RECORDED_STORE[base]}/overlay-containers/{POD_ID}/userdata"


@pytest.mark.parametrize(
    ("method", "case"),
    [
        pytest.param("container_dir", "get-container-dir-unknown", id="work-dir"),
        pytest.param("container_run_dir", "get-container-run-dir-unknown", id="run-dir"),
    ],
)
def test_the_directories_of_an_unknown_container_are_container_not_known(store, method, case):
    answer(store, case)
    with pytest.raises(ContainerNotKnown, match=MISSING_ID):
        getattr(store, method)(MISSING_ID)


# -- mounts ---------------------------------------------------------------------------------


def test_mount_returns_the_mountpoint_from_the_json_answer(store):
    runner = answer(store, "mount")
    mountpoint = store.mount(POD_ID)
    assert runner.calls == [("mount", "--json", POD_ID)]
    assert mountpoint == (f"{RECORDED_STORE['root']}/overlay/{INFRA_CREATED['layer']}/merged")


def test_mount_passes_the_mount_label(store):
    runner = answer(store, "mount", strict=False)
    store.mount(POD_ID, label="system_u:object_r:container_file_t:s0")
    assert runner.calls == [
        ("mount", "--json", "--label", "system_u:object_r:container_file_t:s0", POD_ID)
    ]


def test_mount_of_an_unknown_container_is_container_not_known(store):
    answer(store, "mount-unknown")
    with pytest.raises(ContainerNotKnown):
        store.mount(MISSING_ID)


def test_mount_of_an_unknown_container_raises_a_storage_error_at_least(store):
    answer(store, "mount-unknown")
    with pytest.raises(StorageError):
        store.mount(MISSING_ID)


def test_mount_reports_the_error_field_of_the_json_answer(store):
    store.runner = Recorded(strict=False)  # type: ignore[assignment]
    store.runner.captures = [
        synthetic(0, json.dumps([{"id": POD_ID, "mountpoint": "", "error": "no space left"}]))
    ]
    with pytest.raises(StorageError, match="no space left"):
        store.mount(POD_ID)


def test_mounted_reads_the_text_form_and_skips_what_is_not_mounted(store):
    runner = answer(store, "mounted")
    assert store.mounted([POD_ID, MEMBER_ID, FOREIGN_ID]) == {POD_ID, FOREIGN_ID}
    assert runner.calls == [("mounted", POD_ID, MEMBER_ID, FOREIGN_ID)]


def test_mounted_still_reads_the_answer_when_one_id_is_unknown(store):
    # The tool exits 1 with an error for the unknown ID, after the lines for the others.
    assert capture("mounted-with-unknown")["returncode"] == 1
    answer(store, "mounted-with-unknown")
    assert store.mounted([POD_ID, MEMBER_ID, MISSING_ID]) == {POD_ID}


def test_mounted_of_nothing_runs_no_command(store):
    runner = answer(store)
    assert store.mounted([]) == set()
    assert runner.calls == []


@pytest.mark.parametrize(
    ("case", "key", "expected"),
    [
        pytest.param("unmount", POD_ID, True, id="mounted"),
        pytest.param("unmount-not-mounted", MEMBER_ID, True, id="not-mounted"),
        pytest.param("unmount-unknown", MISSING_ID, False, id="gone"),
    ],
)
def test_unmount_succeeds_unless_the_container_is_gone(store, case, key, expected):
    answer(store, case)
    assert store.unmount(key, force=True) is expected


def test_unmount_without_force_sends_no_force_flag(store):
    runner = answer(store, "unmount", strict=False)
    store.unmount(POD_ID, force=False)
    assert runner.calls == [("unmount", POD_ID)]


# -- images ----------------------------------------------------------------------------------


def test_images_lists_ids_names_digest_and_the_size_of_its_data(store):
    answer(store, "images")
    (image,) = store.images()
    assert image.id == IMAGE_ID
    assert image.names == (IMAGE_NAME,)
    assert image.digest.startswith("sha256:")
    assert image.layer == IMAGE["layer"]
    assert image.size == sum(IMAGE["big-data-sizes"].values())


def test_image_finds_an_image_by_name(store):
    answer(store, "image")
    image = store.image(IMAGE_NAME)
    assert image is not None
    assert image.id == IMAGE_ID


def test_image_is_none_when_the_store_has_no_such_image(store):
    answer(store, "image-unknown")
    assert store.image("localhost/nope:1") is None


def test_image_config_reads_the_config_blob_stored_under_the_image_id(store):
    runner = answer(store, "get-image-data")
    blob = store.image_config(IMAGE_ID)
    assert runner.calls == [("get-image-data", IMAGE_ID, "sha256:" + IMAGE_ID)]
    assert blob is not None
    config = ImageConfig.from_blob(blob)
    assert config.cmd == ("/bin/busybox", "sh")
    assert config.env == ("PATH=/bin",)
    assert config.entrypoint == ()


def test_image_config_of_an_unknown_image_is_none(store):
    answer(store, "get-image-data-unknown")
    assert store.image_config(MISSING_IMAGE_ID) is None


def test_delete_image_of_an_image_in_use_is_image_in_use(store):
    answer(store, "delete-image-in-use")
    with pytest.raises(ImageInUse, match="used by containers"):
        store.delete_image(IMAGE_ID)


def test_delete_image_of_an_image_already_gone_is_false(store):
    answer(store, "delete-image-unknown")
    assert store.delete_image(MISSING_IMAGE_ID) is False


# -- output that is not what the tool should print ------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(lambda s: s.containers(), id="containers"),
        pytest.param(lambda s: s.images(), id="images"),
        pytest.param(lambda s: s.container(POD_ID), id="container"),
        pytest.param(lambda s: s.mount(POD_ID), id="mount"),
    ],
)
def test_output_that_is_not_json_is_a_storage_error_that_quotes_it(store, method):
    store.runner = Recorded(strict=False)  # type: ignore[assignment]
    store.runner.captures = [synthetic(0, "panic: runtime error")]
    with pytest.raises(StorageError, match=r"not JSON.*panic"):
        method(store)


def test_an_empty_listing_is_no_containers(store):
    store.runner = Recorded(strict=False)  # type: ignore[assignment]
    store.runner.captures = [synthetic(0, "")]
    assert store.containers() == []


def test_shutdown_with_force_unmounts_each_container_then_shuts_down(store):
    runner = answer(
        store, "containers", "unmount", "unmount-not-mounted", "unmount", "unmount", strict=False
    )
    store.shutdown(force=True)
    assert runner.calls == [
        ("containers", "--json"),
        ("unmount", "--force", POD_ID),
        ("unmount", "--force", MEMBER_ID),
        ("unmount", "--force", FOREIGN_ID),
        ("shutdown",),
    ]
