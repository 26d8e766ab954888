"""Batch verbs and derived directories on a real store, on overlay and vfs.

Each batch call is read back with ``containers-storage`` itself (the ``cs`` helpers):
what was mounted, unmounted or deleted, and that one container's failure left the
others' results alone.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.storage import ImageService, RuntimeService, Store, new_id
from controller.storage.command import CommandEvent, add_observer, remove_observer
from controller.storage.errors import (
    CommandError,
    ContainerNotKnown,
    InvalidContainerID,
    InvalidName,
    NameConflict,
    NotOurs,
)
from controller.storage.runtime import CONFIG_FILE
from tests.support.images import LocalImages
from tests.support.stores import (
    container_dir,
    container_json,
    container_run_dir,
    containers_json,
    copy_image,
    cs,
    each_driver,
    is_mounted,
)

pytestmark = pytest.mark.integration

IMAGE = "localhost/busybox:batch"


@pytest.fixture
def image_id(store: Store, image_layout: LocalImages) -> str:
    return copy_image(store, image_layout.busybox_oci, IMAGE)


@pytest.fixture
def runtime(store: Store, image_id: str) -> RuntimeService:
    return RuntimeService(ImageService(store))


@pytest.fixture
def verbs() -> Iterator[Counter[str]]:
    """containers-storage verbs run while the test does."""
    seen: Counter[str] = Counter()

    def observe(event: CommandEvent) -> None:
        if event.tool == "containers-storage":
            seen[event.verb] += 1

    add_observer(observe)
    yield seen
    remove_observer(observe)


def bare(store: Store, image_id: str, n: int) -> list[str]:
    """``n`` containers made with the CLI (not podstore's)."""
    ids = [new_id() for _ in range(n)]
    for cid in ids:
        cs(store, "create-container", "--id", cid, image_id)
    return ids


def make_pod(runtime: RuntimeService, members: int = 2, pod: str = "web") -> list[str]:
    """A pod and its members through RuntimeService; their IDs, infra first."""
    pod_id = new_id()
    runtime.create_pod_sandbox(
        pod_name=pod,
        pod_id=pod_id,
        image_name=IMAGE,
        container_name=f"{pod}-infra",
        metadata_name=pod,
        uid=f"uid-{pod}",
        namespace="default",
    )
    ids = [pod_id]
    for i in range(members):
        info = runtime.create_container(
            pod_name=pod,
            pod_id=pod_id,
            image_name=IMAGE,
            container_name=f"{pod}-c{i}",
            container_id=new_id(),
            metadata_name=f"c{i}",
            uid=f"uid-{pod}",
            namespace="default",
        )
        ids.append(info.id)
    return ids


def template_for(runtime: RuntimeService, cid: str) -> None:
    runtime.write_config_template(
        cid,
        {
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/"},
        },
    )


def mount_count_is_one(store: Store, cid: str) -> bool:
    """Mounted, and one plain (not forced) unmount leaves it unmounted."""
    if not is_mounted(store, cid):
        return False
    cs(store, "unmount", cid)
    return not is_mounted(store, cid)


# -- derived directories ----------------------------------------------------------------


@each_driver
def test_derived_directories_are_the_ones_containers_storage_gives(
    store: Store, image_id: str
) -> None:
    for cid in bare(store, image_id, 3):
        assert store.derived_dirs(cid) == (
            str(container_dir(store, cid)),
            str(container_run_dir(store, cid)),
        )


@each_driver
def test_creates_ask_for_directories_once_per_store_and_derive_them_after(
    store: Store, runtime: RuntimeService, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=2) + make_pod(runtime, members=2, pod="db")
    assert verbs["get-container-dir"] == 1
    assert verbs["get-container-run-dir"] == 1
    # A create is create-container and add-names on the layer, nothing else.
    assert verbs["create-container"] == len(ids)
    assert verbs["add-names"] == len(ids)
    for cid in ids:
        work, run = runtime.get_work_dir(cid), runtime.get_run_dir(cid)
        assert work == str(container_dir(store, cid))
        assert run == str(container_run_dir(store, cid))
        for path in (work, run, os.path.dirname(work), os.path.dirname(run)):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path


@each_driver
def test_the_directories_of_an_unknown_container_are_still_refused(
    runtime: RuntimeService, store: Store
) -> None:
    make_pod(runtime, members=0)
    missing = new_id()
    with pytest.raises(InvalidContainerID):
        runtime.get_work_dir(missing)
    assert not os.path.exists(os.path.dirname(store.derived_dirs(missing)[0]))


@each_driver
def test_a_store_whose_directories_are_not_where_derived_is_asked_every_time(
    store: Store, image_id: str, monkeypatch: pytest.MonkeyPatch, verbs: Counter[str]
) -> None:
    import controller.storage.store as store_module

    monkeypatch.setattr(store_module, "_USERDATA", "elsewhere")
    ids = bare(store, image_id, 2)
    for cid in ids:
        assert store.container_dirs(cid) == (
            str(container_dir(store, cid)),
            str(container_run_dir(store, cid)),
        )
    assert verbs["get-container-dir"] == 2


# -- Store: several IDs in one process ---------------------------------------------------


@each_driver
def test_mount_many_mounts_all_but_the_unknown_one_in_one_process(
    store: Store, image_id: str, verbs: Counter[str]
) -> None:
    ids = bare(store, image_id, 3)
    missing = new_id()
    result = store.mount_many([ids[0], missing, ids[1], ids[2], "../bad"])
    assert verbs["mount"] == 1
    assert isinstance(result[missing], ContainerNotKnown)
    assert isinstance(result["../bad"], InvalidContainerID)
    for cid in ids:
        point = result[cid]
        assert isinstance(point, str)
        assert os.path.ismount(point) or store.driver == "vfs"
        assert os.path.isdir(os.path.join(point, "bin"))
        assert mount_count_is_one(store, cid)


def test_a_mount_the_kernel_refuses_fails_only_its_own_batch_entries(
    store: Store, image_id: str
) -> None:
    # Without SELinux, overlay's context= option is refused by the kernel.
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is on: the label would be accepted")
    ids = bare(store, image_id, 2)
    missing = new_id()
    result = store.mount_many([ids[0], missing, ids[1]], label="system_u:object_r:foo_t:s0")
    assert isinstance(result[ids[0]], CommandError)
    assert not isinstance(result[ids[0]], ContainerNotKnown)
    assert ids[0] in str(result[ids[0]])
    assert isinstance(result[missing], ContainerNotKnown)
    assert not is_mounted(store, ids[0])
    assert isinstance(store.mount_many([ids[1]])[ids[1]], str)


@each_driver
def test_unmount_many_unmounts_the_mounted_passes_the_unmounted_and_names_the_gone(
    store: Store, image_id: str, verbs: Counter[str]
) -> None:
    ids = bare(store, image_id, 3)
    store.mount_many(ids[:2])
    store.mount_many(ids[:1])  # mounted twice: a forced unmount takes both
    missing = new_id()
    result = store.unmount_many([*ids, missing])
    assert verbs["unmount"] == 1
    assert result == {ids[0]: True, ids[1]: True, ids[2]: True, missing: False}
    assert not any(is_mounted(store, cid) for cid in ids)


@each_driver
def test_unmount_many_without_force_takes_one_mount_each(store: Store, image_id: str) -> None:
    ids = bare(store, image_id, 2)
    store.mount_many(ids)
    store.mount_many(ids[:1])
    assert store.unmount_many(ids, force=False) == {ids[0]: True, ids[1]: True}
    assert is_mounted(store, ids[0])
    assert not is_mounted(store, ids[1])


@each_driver
def test_delete_many_deletes_all_but_the_gone_one_mounted_or_not(
    store: Store, image_id: str, verbs: Counter[str]
) -> None:
    ids = bare(store, image_id, 3)
    keep = bare(store, image_id, 1)
    store.mount_many(ids[:1])
    missing = new_id()
    result = store.delete_many([ids[0], missing, ids[1], ids[2]])
    assert verbs["delete-container"] == 1
    assert result == {ids[0]: True, missing: False, ids[1]: True, ids[2]: True}
    assert [c["id"] for c in containers_json(store)] == keep
    for cid in ids:
        assert not os.path.exists(os.path.dirname(store.derived_dirs(cid)[0]))


@each_driver
def test_containers_many_and_metadata_many_answer_per_key(
    store: Store, runtime: RuntimeService, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=1)
    missing = new_id()
    found = store.containers_many([ids[0], missing, "web-c0"])
    assert verbs["container"] == 1
    assert found[missing] is None
    assert found[ids[0]] is not None
    assert found[ids[0]].names == ("web-infra", "web")
    assert found["web-c0"] is not None
    assert found["web-c0"].id == ids[1]
    meta = store.metadata_many([ids[0], missing, ids[1]])
    assert meta[missing] is None
    assert json.loads(meta[ids[1]] or "{}")["pod-id"] == ids[0]
    assert meta[ids[0]] == container_json(store, ids[0])["metadata"]  # type: ignore[index]


# -- RuntimeService: a pass's starts, stops and deletes ---------------------------------


@each_driver
def test_start_many_mounts_each_once_renders_configs_and_reports_each_failure(
    store: Store, runtime: RuntimeService, image_id: str, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=2)
    for cid in ids:
        template_for(runtime, cid)
    foreign = bare(store, image_id, 1)[0]
    missing = new_id()
    verbs.clear()
    result = runtime.start_many([*ids, foreign, missing, "bad/../id"])
    # One `mounted` to see what is mounted, one `mount` for the rest; the foreign
    # and the unknown container are looked up together.
    assert verbs == Counter({"container": 1, "mounted": 1, "mount": 1})
    assert isinstance(result[foreign], NotOurs)
    assert isinstance(result[missing], ContainerNotKnown)
    assert isinstance(result["bad/../id"], InvalidContainerID)
    assert not is_mounted(store, foreign)
    for cid in ids:
        point = result[cid]
        assert isinstance(point, str)
        config = json.loads(Path(runtime.get_run_dir(cid), CONFIG_FILE).read_text())
        assert config["root"]["path"] == point
    # Started again: nothing is mounted twice, the same mountpoints come back.
    verbs.clear()
    again = runtime.start_many(ids)
    assert verbs == Counter({"mounted": 1})
    assert again == {cid: result[cid] for cid in ids}
    for cid in ids:
        assert mount_count_is_one(store, cid)


@each_driver
def test_start_many_trusts_the_callers_mounted_set(
    store: Store, runtime: RuntimeService, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=2)
    verbs.clear()
    result = runtime.start_many(ids[1:], mounted=set())
    assert verbs == Counter({"mount": 1})
    assert all(isinstance(result[cid], str) for cid in ids[1:])
    assert not is_mounted(store, ids[0])


@each_driver
def test_start_many_of_a_container_mounted_by_someone_else_keeps_its_count(
    store: Store, runtime: RuntimeService
) -> None:
    ids = make_pod(runtime, members=1)
    cs(store, "mount", ids[1])  # no config rendered: the mountpoint must be asked
    result = runtime.start_many([ids[1]])
    assert isinstance(result[ids[1]], str)
    assert mount_count_is_one(store, ids[1])


@each_driver
def test_start_many_takes_back_the_mount_of_a_container_whose_template_is_broken(
    store: Store, runtime: RuntimeService
) -> None:
    ids = make_pod(runtime, members=2)
    Path(runtime.get_work_dir(ids[1]), CONFIG_FILE).write_text("{not json")
    result = runtime.start_many(ids[1:])
    assert isinstance(result[ids[1]], Exception)
    assert "not valid JSON" in str(result[ids[1]])
    assert not is_mounted(store, ids[1])
    assert isinstance(result[ids[2]], str)
    assert is_mounted(store, ids[2])


@each_driver
def test_stop_many_unmounts_removes_rendered_configs_and_passes_what_is_gone(
    store: Store, runtime: RuntimeService, image_id: str, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=2)
    for cid in ids:
        template_for(runtime, cid)
    runtime.start_many(ids)
    foreign = bare(store, image_id, 1)[0]
    cs(store, "mount", foreign)
    missing = new_id()
    verbs.clear()
    result = runtime.stop_many([*ids, missing, foreign])
    assert verbs == Counter({"container": 1, "unmount": 1})
    assert result[missing] is None
    assert isinstance(result[foreign], NotOurs)
    assert is_mounted(store, foreign)
    for cid in ids:
        assert result[cid] is None
        assert not is_mounted(store, cid)
        assert not Path(runtime.get_run_dir(cid), CONFIG_FILE).exists()
    cs(store, "unmount", foreign)


@each_driver
def test_delete_many_deletes_ours_and_leaves_the_foreign_one(
    store: Store, runtime: RuntimeService, image_id: str, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=2)
    runtime.start_many(ids)
    foreign = bare(store, image_id, 1)[0]
    missing = new_id()
    verbs.clear()
    result = runtime.delete_many([*ids[1:], missing, foreign, ids[0]])
    assert verbs == Counter({"container": 1, "delete-container": 1})
    assert result == {
        ids[1]: None,
        ids[2]: None,
        missing: None,
        foreign: result[foreign],
        ids[0]: None,
    }
    assert isinstance(result[foreign], NotOurs)
    assert [c["id"] for c in containers_json(store)] == [foreign]
    # Gone is gone: a second delete succeeds without a process for them.
    assert runtime.delete_many(ids) == dict.fromkeys(ids)


@each_driver
def test_remove_pod_sandbox_deletes_members_in_one_process_then_the_infra(
    store: Store, runtime: RuntimeService, verbs: Counter[str]
) -> None:
    ids = make_pod(runtime, members=3)
    other = make_pod(runtime, members=1, pod="db")
    verbs.clear()
    runtime.remove_pod_sandbox(ids[0])
    assert verbs == Counter({"containers": 1, "delete-container": 2})
    assert sorted(c["id"] for c in containers_json(store)) == sorted(other)


@each_driver
def test_containers_many_gives_ours_parsed_and_refuses_the_foreign(
    store: Store, runtime: RuntimeService, image_id: str
) -> None:
    ids = make_pod(runtime, members=1)
    foreign = bare(store, image_id, 1)[0]
    found = runtime.containers_many([*ids, foreign, "nosuch"])
    assert found["nosuch"] is None
    assert isinstance(found[foreign], NotOurs)
    infra = found[ids[0]]
    assert not isinstance(infra, Exception)
    assert infra is not None
    assert infra.infra
    member: Any = found[ids[1]]
    assert member.metadata.pod_id == ids[0]


@each_driver
def test_create_many_makes_each_side_by_side_and_keeps_each_failure_its_own(
    store: Store, runtime: RuntimeService, verbs: Counter[str]
) -> None:
    pod_id = make_pod(runtime, members=0)[0]
    base = {"pod_name": "web", "pod_id": pod_id, "image_name": IMAGE, "metadata_name": "m"}
    made = runtime.create_many(
        [
            {**base, "container_name": "web-a", "container_id": new_id()},
            {**base, "container_name": "bad name!", "container_id": new_id()},
            {**base, "container_name": "web-b", "container_id": new_id()},
            {**base, "container_name": "web-infra", "container_id": new_id()},  # the infra's
        ]
    )
    assert isinstance(made[1], InvalidName)
    assert isinstance(made[3], NameConflict)
    good = [made[0], made[2]]
    for info in good:
        assert not isinstance(info, Exception)
        assert info.metadata is not None
        assert container_json(store, info.id)["names"] == [info.metadata.name]  # type: ignore[index]
        assert os.path.isdir(info.dir)
        assert os.path.isdir(info.run_dir)
    assert len(containers_json(store)) == 3
