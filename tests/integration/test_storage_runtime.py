"""RuntimeService keeps pods as sets of containers in a real store.

Everything podstore does is read back with ``containers-storage`` itself (the ``cs``
helpers): the metadata JSON with the contract's keys, the names, the layer names, the
directories and whether a layer is mounted. Images are copied into the store with
``skopeo`` beforehand unless the pull is what a test is about.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.storage import (
    ImageConfig,
    ImageService,
    ProcessSpec,
    RuntimeContainerMetadata,
    RuntimeService,
    build_template,
    new_id,
)
from controller.storage import runtime as runtime_module
from controller.storage.command import CommandEvent
from controller.storage.errors import InvalidImageName, NotOurs
from controller.storage.ocispec import ROOT_PLACEHOLDER
from controller.storage.store import GC_OFF_ENV
from tests.support import images as test_images
from tests.support.images import RegistryImages
from tests.support.registry import Registry
from tests.support.stores import (
    container_dir,
    container_json,
    container_metadata,
    container_run_dir,
    containers_json,
    copy_image,
    cs,
    each_driver,
    images_json,
    is_mounted,
    layer_names,
    mounts_under,
)

pytestmark = pytest.mark.integration

CONTRACT_KEYS = {
    "pod", "pod-name", "pod-id", "image-name", "image-id", "name", "metadata-name",
    "uid", "namespace", "attempt", "created-at", "mountlabel",
}  # fmt: skip
PODSTORE_KEYS = {"managed-by", "labels"}

BUSYBOX_CONFIG = ImageConfig(
    entrypoint=tuple(test_images.BUSYBOX_ENTRYPOINT),
    cmd=tuple(test_images.BUSYBOX_CMD),
    env=tuple(test_images.BUSYBOX_ENV),
    working_dir=test_images.BUSYBOX_WORKDIR,
)
PAUSE_CONFIG = ImageConfig(
    entrypoint=tuple(test_images.PAUSE_ENTRYPOINT),
    cmd=tuple(test_images.PAUSE_CMD),
    env=tuple(test_images.PAUSE_ENV),
    working_dir="/",
)
NOW = 1_700_000_000


@pytest.fixture
def seeded(store: Any, images: RegistryImages) -> RegistryImages:
    """busybox:1 and pause:1 in the store under their registry names, copied, not pulled."""
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.pause_oci, images.pause)
    return images


@pytest.fixture
def runtime(store: Any, registry: Registry) -> RuntimeService:
    """A RuntimeService with a fixed clock, so that ``created-at`` can be asserted."""
    return RuntimeService(
        ImageService(store, insecure_registries=(registry.host,)), clock=lambda: NOW
    )


def make_pod(runtime: RuntimeService, images: RegistryImages, pod: str = "web") -> Any:
    return runtime.create_pod_sandbox(
        pod_name=pod,
        pod_id=new_id(),
        image_name=images.pause,
        container_name=f"{pod}-infra",
        metadata_name=pod,
        uid=f"uid-{pod}",
        namespace="default",
        attempt=1,
    )


def make_member(
    runtime: RuntimeService, images: RegistryImages, pod: Any, name: str, **kwargs: Any
) -> Any:
    pod_meta = pod.metadata
    kwargs.setdefault("image_name", images.busybox)
    return runtime.create_container(
        pod_name=pod_meta.pod_name,
        pod_id=pod.id,
        container_name=name,
        metadata_name=name.removeprefix(f"{pod_meta.pod_name}-"),
        uid=pod_meta.uid,
        namespace=pod_meta.namespace,
        **kwargs,
    )


def ids_in(store: Any) -> set[str]:
    return {c["id"] for c in containers_json(store)}


# -- pods and their containers -------------------------------------------------


@each_driver
def test_a_pod_is_an_infra_container_whose_id_is_the_pod_id(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod_id = new_id()
    info = runtime.create_pod_sandbox(
        pod_name="web",
        pod_id=pod_id,
        image_name=seeded.pause,
        container_name="web-infra",
        metadata_name="web",
        uid="uid-web",
        namespace="team-a",
        attempt=2,
        mount_label="",
        labels={"podstore.dev/resource": "team-a/web"},
    )

    assert info.id == pod_id
    record = container_json(store, pod_id)
    assert record is not None
    assert record["names"] == ["web-infra", "web"]
    assert record["image"] == seeded.pause_id
    meta = container_metadata(store, pod_id)
    assert set(meta) == CONTRACT_KEYS | PODSTORE_KEYS
    assert meta == {
        "pod": True,
        "pod-name": "web",
        "pod-id": pod_id,
        "image-name": seeded.pause,
        "image-id": seeded.pause_id,
        "name": "web-infra",
        "metadata-name": "web",
        "uid": "uid-web",
        "namespace": "team-a",
        "attempt": 2,
        "created-at": NOW,
        "mountlabel": "",
        "managed-by": "podstore",
        "labels": {"podstore.dev/resource": "team-a/web"},
    }
    assert layer_names(store, record["layer"]) == ["web-infra-layer"]
    assert not is_mounted(store, pod_id)
    assert Path(info.dir) == container_dir(store, pod_id)
    assert Path(info.run_dir) == container_run_dir(store, pod_id)
    assert Path(info.dir).is_dir()
    assert Path(info.run_dir).is_dir()
    assert info.config == PAUSE_CONFIG


@each_driver
def test_a_member_container_carries_its_pods_id(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    info = make_member(runtime, seeded, pod, "web-app", attempt=3)

    assert info.id != pod.id
    record = container_json(store, info.id)
    assert record is not None
    assert record["names"] == ["web-app"]
    assert record["image"] == seeded.busybox_id
    meta = container_metadata(store, info.id)
    assert set(meta) == CONTRACT_KEYS | PODSTORE_KEYS
    assert {k: meta[k] for k in ("pod", "pod-id", "pod-name", "name", "attempt")} == {
        "pod": False,
        "pod-id": pod.id,
        "pod-name": "web",
        "name": "web-app",
        "attempt": 3,
    }
    assert (meta["image-name"], meta["image-id"]) == (seeded.busybox, seeded.busybox_id)
    assert layer_names(store, record["layer"]) == ["web-app-layer"]
    assert (Path(info.dir), Path(info.run_dir)) == (
        container_dir(store, info.id),
        container_run_dir(store, info.id),
    )
    assert info.config == BUSYBOX_CONFIG
    assert ids_in(store) == {pod.id, info.id}


def test_a_container_given_a_container_id_gets_that_id(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    wanted = new_id()
    info = make_member(runtime, seeded, pod, "web-app", container_id=wanted)
    assert info.id == wanted
    assert container_json(store, "web-app")["id"] == wanted


def test_create_container_with_only_an_image_name_pulls_the_missing_image(
    store: Any, runtime: RuntimeService, images: RegistryImages, skopeo_copies: list[CommandEvent]
) -> None:
    assert images_json(store) == []
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_name=images.busybox,
        container_name="web-app",
        metadata_name="app",
    )

    assert len(skopeo_copies) == 1
    stored = images_json(store)
    assert [(i["id"], i["names"]) for i in stored] == [(images.busybox_id, [images.busybox])]
    meta = container_metadata(store, info.id)
    assert (meta["image-name"], meta["image-id"]) == (images.busybox, images.busybox_id)
    assert info.config == BUSYBOX_CONFIG


@pytest.mark.parametrize(
    "image_id",
    [
        pytest.param("full", id="full-id"),
        pytest.param("sha256", id="sha256-prefixed-id"),
    ],
)
def test_create_container_with_only_an_image_id_uses_the_image_in_the_store(
    store: Any,
    runtime: RuntimeService,
    seeded: RegistryImages,
    skopeo_copies: list[CommandEvent],
    image_id: str,
) -> None:
    given = seeded.busybox_id if image_id == "full" else "sha256:" + seeded.busybox_id
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_id=given,
        container_name="web-app",
        metadata_name="app",
    )

    assert skopeo_copies == []
    assert container_json(store, info.id)["image"] == seeded.busybox_id
    meta = container_metadata(store, info.id)
    assert (meta["image-name"], meta["image-id"]) == (seeded.busybox, seeded.busybox_id)
    assert info.config == BUSYBOX_CONFIG


def test_create_container_with_a_short_image_id_uses_the_image_in_the_store(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_id=seeded.busybox_id[:12],
        container_name="web-app",
        metadata_name="app",
    )
    assert container_json(store, info.id)["image"] == seeded.busybox_id


def test_an_infra_container_named_like_its_pod_has_that_one_name(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod_id = new_id()
    runtime.create_pod_sandbox(
        pod_name="web",
        pod_id=pod_id,
        image_name=seeded.pause,
        container_name="web",
        metadata_name="web",
        uid="uid-web",
        namespace="default",
    )
    assert container_json(store, pod_id)["names"] == ["web"]
    assert layer_names(store, container_json(store, pod_id)["layer"]) == ["web-layer"]


def test_create_container_with_neither_image_name_nor_id_is_refused(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    before = containers_json(store)
    with pytest.raises(InvalidImageName, match="neither an image name nor an image ID"):
        runtime.create_container(
            pod_name="web", pod_id=new_id(), container_name="web-app", metadata_name="app"
        )
    assert containers_json(store) == before


# -- start and stop --------------------------------------------------------------


@each_driver
def test_the_template_is_written_to_disk_and_a_start_does_not_wait_for_the_disk(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, monkeypatch: Any
) -> None:
    """The template is kept for the container's life; the rendered config (made again
    at every start, in the run root) and the started marker need no fsync."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(runtime_module.os, "fsync", fsync)
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    template = build_template(info.config, ProcessSpec(args=["echo hi"]))
    runtime.write_config_template(info.id, template)
    assert len(synced) == 1
    assert synced[0].startswith(str(container_dir(store, info.id)))
    synced.clear()

    runtime.start_container(info.id)

    assert synced == []
    rendered = json.loads((container_run_dir(store, info.id) / "config.json").read_text())
    assert rendered["root"]["path"] == runtime.start_container(info.id)
    assert runtime.was_started(info.id)


@each_driver
def test_start_container_mounts_the_layer_and_renders_the_template_into_the_run_dir(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    info = make_member(runtime, seeded, pod, "web-app")
    template = build_template(info.config, ProcessSpec(args=["echo hi"]))
    template_path = runtime.write_config_template(info.id, template)
    assert Path(template_path) == container_dir(store, info.id) / "config.json"

    mountpoint = runtime.start_container(info.id)

    assert is_mounted(store, info.id)
    assert (Path(mountpoint) / "bin" / "busybox").is_file()
    rendered = json.loads((container_run_dir(store, info.id) / "config.json").read_text())
    assert rendered["root"]["path"] == mountpoint
    assert {k: v for k, v in rendered.items() if k != "root"} == {
        k: v for k, v in template.items() if k != "root"
    }
    # The template stays a template.
    kept = json.loads(Path(template_path).read_text())
    assert kept["root"]["path"] == ROOT_PLACEHOLDER
    assert runtime.read_config_template(info.id) == kept
    if store.driver == "overlay":
        assert Path(mountpoint) in mounts_under(Path(store.root))


@each_driver
def test_stop_container_unmounts_the_layer_and_removes_the_rendered_config(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    info = make_member(runtime, seeded, pod, "web-app")
    runtime.write_config_template(info.id, build_template(info.config, ProcessSpec()))
    mountpoint = runtime.start_container(info.id)
    rendered = container_run_dir(store, info.id) / "config.json"
    assert rendered.is_file()

    runtime.stop_container(info.id)

    assert not is_mounted(store, info.id)
    assert not rendered.exists()
    assert (container_dir(store, info.id) / "config.json").is_file()
    assert Path(mountpoint) not in mounts_under(Path(store.root))
    assert container_json(store, info.id) is not None


def test_a_container_started_twice_needs_one_stop(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    first = runtime.start_container(info.id)
    assert runtime.start_container("web-app") == first
    runtime.stop_container("web-app")
    assert not is_mounted(store, info.id)


def test_start_container_without_a_template_mounts_and_renders_nothing(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    runtime.start_container(info.id)
    assert is_mounted(store, info.id)
    assert not (container_run_dir(store, info.id) / "config.json").exists()


def test_a_restarted_agent_stops_what_the_last_one_started_and_removes_its_config(
    store: Any, runtime: RuntimeService, registry: Registry, seeded: RegistryImages
) -> None:
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    runtime.write_config_template(info.id, build_template(info.config, ProcessSpec()))
    runtime.start_container(info.id)
    rendered = container_run_dir(store, info.id) / "config.json"
    assert rendered.is_file()

    restarted = RuntimeService(ImageService(store, insecure_registries=(registry.host,)))
    restarted.stop_container(info.id)

    assert not is_mounted(store, info.id)
    assert not rendered.exists(), "the rendered config still names the unmounted layer"


@each_driver
def test_a_mount_label_is_kept_and_a_host_without_selinux_still_mounts_the_container(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app", mount_label=label)
    assert container_metadata(store, info.id)["mountlabel"] == label

    mountpoint = runtime.start_container(info.id)

    assert is_mounted(store, info.id)
    assert (Path(mountpoint) / "bin" / "busybox").is_file()


# -- metadata and directories -------------------------------------------------------


def test_container_metadata_round_trips_through_the_store(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    meta = runtime.get_container_metadata(info.id)
    assert meta == info.metadata
    assert meta.to_dict() == container_metadata(store, info.id)

    changed = replace(
        meta,
        attempt=7,
        mount_label="system_u:object_r:container_file_t:s0:c1,c2",
        labels={"podstore.dev/generation": "4"},
        extra={"future-key": [1, 2]},
    )
    runtime.set_container_metadata("web-app", changed)

    stored = container_metadata(store, info.id)
    assert stored["attempt"] == 7
    assert stored["mountlabel"] == "system_u:object_r:container_file_t:s0:c1,c2"
    assert stored["labels"] == {"podstore.dev/generation": "4"}
    assert stored["future-key"] == [1, 2]
    assert set(stored) == CONTRACT_KEYS | PODSTORE_KEYS | {"future-key"}
    assert runtime.get_container_metadata(info.id) == changed
    assert RuntimeContainerMetadata.from_dict(stored) == changed


def test_work_and_run_dirs_are_the_stores_container_dirs(
    store: Any, runtime: RuntimeService, registry: Registry, seeded: RegistryImages
) -> None:
    info = make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    assert Path(runtime.get_work_dir(info.id)) == container_dir(store, info.id)
    assert Path(runtime.get_run_dir(info.id)) == container_run_dir(store, info.id)
    # A process that never saw the create asks the store.
    fresh = RuntimeService(ImageService(store, insecure_registries=(registry.host,)))
    assert (fresh.get_work_dir(info.id), fresh.get_run_dir(info.id)) == (info.dir, info.run_dir)


@each_driver
def test_the_stores_metadata_size_is_read_where_containers_storage_writes_it(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    """The three JSON files are where the Store looks for them (this containers-storage's
    layout), so a small store's commands run with Go's collector off."""
    make_member(runtime, seeded, make_pod(runtime, seeded), "web-app")
    root = Path(store.root)
    files = [root / f"{store.driver}-{kind}" / f"{kind}.json" for kind in KINDS]
    assert all(path.is_file() for path in files), files
    assert store.metadata_bytes() == sum(path.stat().st_size for path in files) > 0
    assert dict(store.runner.env()) == dict(GC_OFF_ENV)
    # ... and the tool works with them: the listing shows both containers.
    assert len(store.containers()) == 2


KINDS = ("containers", "layers", "images")


# -- removing -----------------------------------------------------------------------


@each_driver
def test_remove_pod_sandbox_removes_its_members_and_its_infra_container(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    web = make_pod(runtime, seeded, "web")
    app = make_member(runtime, seeded, web, "web-app")
    sidecar = make_member(runtime, seeded, web, "web-sidecar")
    db = make_pod(runtime, seeded, "db")
    db_app = make_member(runtime, seeded, db, "db-app")
    runtime.start_container(app.id)
    runtime.start_container(web.id)

    runtime.remove_pod_sandbox("web")

    assert ids_in(store) == {db.id, db_app.id}
    for gone in (web, app, sidecar):
        assert not is_mounted(store, gone.id)
        assert not Path(gone.dir).exists()
    assert mounts_under(Path(store.root)) in ([], [Path(store.root) / "overlay"])
    # The images stay: removing a pod is not removing its images.
    assert {i["id"] for i in images_json(store)} == {seeded.busybox_id, seeded.pause_id}


def test_delete_container_removes_a_started_container_and_its_mount(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    info = make_member(runtime, seeded, pod, "web-app")
    mountpoint = runtime.start_container(info.id)

    runtime.delete_container("web-app")

    assert ids_in(store) == {pod.id}
    assert Path(mountpoint) not in mounts_under(Path(store.root))
    assert not is_mounted(store, info.id)


def test_list_containers_shows_pods_and_members_with_their_metadata(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    app = make_member(runtime, seeded, pod, "web-app")
    listed = {c.id: c for c in runtime.list_containers()}
    assert set(listed) == {pod.id, app.id}
    assert listed[pod.id].infra
    assert listed[pod.id].names == ("web-infra", "web")
    assert not listed[app.id].infra
    assert listed[app.id].metadata.pod_id == pod.id
    assert listed[app.id].image == seeded.busybox_id
    assert runtime.mounted([pod.id, app.id]) == set()
    runtime.start_container(app.id)
    assert runtime.mounted([pod.id, app.id]) == {app.id}


# -- containers podstore did not make ----------------------------------------------------

CRIO_LIKE = {
    "pod": False, "pod-name": "web", "pod-id": "ab" * 32, "image-name": "busybox",
    "image-id": "cd" * 32, "name": "k8s_app_web", "metadata-name": "app", "uid": "u",
    "namespace": "default", "attempt": 0, "created-at": NOW, "mountlabel": "",
}  # fmt: skip
FOREIGN_METADATA = [
    pytest.param(None, id="no-metadata"),
    pytest.param("not json at all", id="plain-text"),
    pytest.param(json.dumps({"podman": True, "name": "sleepy"}), id="podman-like"),
    pytest.param(json.dumps(CRIO_LIKE), id="cri-o-keys-without-managed-by"),
    pytest.param(json.dumps({**CRIO_LIKE, "managed-by": "cri-o"}), id="managed-by-someone-else"),
]


def make_foreign(store: Any, image_id: str, metadata: str | None) -> str:
    """A container made by hand, as podman or cri-o would have, named ``foreign``."""
    args = ["create-container", "--json", "--name", "foreign"]
    if metadata is not None:
        args += ["--metadata", metadata]
    return str(cs(store, *args, image_id)["id"])


@pytest.mark.parametrize("metadata", FOREIGN_METADATA)
def test_list_containers_ignores_containers_podstore_did_not_make(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, metadata: str | None
) -> None:
    foreign = make_foreign(store, seeded.busybox_id, metadata)
    pod = make_pod(runtime, seeded)
    assert ids_in(store) == {pod.id, foreign}
    assert [c.id for c in runtime.list_containers()] == [pod.id]
    with pytest.raises(NotOurs):
        runtime.delete_container("foreign")
    assert ids_in(store) == {pod.id, foreign}


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda rt, ref: rt.start_container(ref), id="start"),
        pytest.param(lambda rt, ref: rt.stop_container(ref), id="stop"),
        pytest.param(lambda rt, ref: rt.delete_container(ref), id="delete"),
        pytest.param(lambda rt, ref: rt.remove_pod_sandbox(ref), id="remove-pod"),
        pytest.param(lambda rt, ref: rt.get_container_metadata(ref), id="get-metadata"),
        pytest.param(
            lambda rt, ref: rt.set_container_metadata(ref, RuntimeContainerMetadata(name="x")),
            id="set-metadata",
        ),
        pytest.param(lambda rt, ref: rt.write_config_template(ref, {}), id="write-template"),
    ],
)
@pytest.mark.parametrize("by", ["id", "name"])
def test_podstore_never_touches_a_container_it_did_not_make(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, call: Any, by: str
) -> None:
    foreign = make_foreign(store, seeded.busybox_id, json.dumps({"podman": True}))
    cs(store, "mount", foreign)
    before = containers_json(store)
    before_files = sorted(p.name for p in container_dir(store, foreign).iterdir())

    with pytest.raises(NotOurs, match="not made by podstore"):
        call(runtime, foreign if by == "id" else "foreign")

    assert containers_json(store) == before
    assert is_mounted(store, foreign)
    assert sorted(p.name for p in container_dir(store, foreign).iterdir()) == before_files


# -- mounted at most once (issue 12, defect 3) ---------------------------------


def _mount_count(store: Any, runtime: RuntimeService, cid: str) -> int:
    from tests.reliability.kill9 import mount_counts

    layer = runtime.store.container(cid).layer  # type: ignore[union-attr]
    return mount_counts(store).get(layer, (0, ""))[0]


@each_driver
def test_a_start_killed_after_its_mount_is_finished_without_a_second_mount(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    ctr = make_member(runtime, seeded, pod, "web-app")
    runtime.write_config_template(ctr.id, build_template(ctr.config, ProcessSpec()))
    # As found: the start was killed between `mount` and its run config (and status):
    # the layer is mounted, nothing says where.
    runtime.store.mount(ctr.id)
    assert _mount_count(store, runtime, ctr.id) == 1

    mountpoint = runtime.start_container(ctr.id, mounted=True)

    assert _mount_count(store, runtime, ctr.id) == 1, "mounted twice"
    assert is_mounted(store, ctr.id)
    rendered = json.loads(Path(ctr.run_dir, "config.json").read_text())
    assert rendered["root"]["path"] == mountpoint
    runtime.stop_container(ctr.id)  # one unmount undoes it, as any other tool expects
    assert not is_mounted(store, ctr.id)


@each_driver
def test_a_start_that_thought_it_mounted_mounts_when_it_was_unmounted_since(
    store: Any, runtime: RuntimeService, seeded: RegistryImages
) -> None:
    pod = make_pod(runtime, seeded)
    ctr = make_member(runtime, seeded, pod, "web-app")
    runtime.start_container(ctr.id, mounted=True)  # a stale "mounted": it was not
    assert _mount_count(store, runtime, ctr.id) == 1
    assert is_mounted(store, ctr.id)
