"""Bad input gets the contract's error class and leaves the store as it was.

Names and IDs that could be taken for options or paths, unknown containers, a
registry that is down, templates that are not JSON: each call is made against one
store (shared by this module, holding a pod, a member and a container podstore did
not make) and the store, read back with ``containers-storage``, must not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from controller.storage import ImageService, RuntimeService, Store, new_id
from controller.storage.errors import (
    ImageNotFound,
    ImagePullError,
    InvalidContainerID,
    InvalidContainerName,
    InvalidImageName,
    InvalidName,
    InvalidPodName,
    InvalidSandboxID,
    NotOurs,
    StorageError,
)
from tests.support.images import RegistryImages
from tests.support.registry import Registry, dead_address
from tests.support.stores import (
    container_dir,
    containers_json,
    copy_image,
    cs,
    images_json,
    is_mounted,
    temporary_store,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class World:
    """One store with pod ``web`` (infra ``web-infra``), member ``web-app`` and a
    hand-made ``foreign`` container."""

    store: Store
    runtime: RuntimeService
    images: RegistryImages
    pod_id: str
    app_id: str
    dead_host: str

    def state(self) -> tuple[Any, ...]:
        """Everything a refused call must leave as it was."""
        containers = containers_json(self.store)
        # `mounted ID...` prints "ID mounted" for each mounted one (one process for all).
        lines = cs(self.store, "mounted", *(c["id"] for c in containers)).splitlines()
        return containers, images_json(self.store), sorted(lines)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, images: RegistryImages, registry: Registry
) -> Iterator[World]:
    with temporary_store(tmp_path_factory.mktemp("bad-input") / "store") as paths:
        store = Store(paths.root, paths.run_root, paths.driver)
        copy_image(store, images.busybox_oci, images.busybox)
        dead = dead_address()
        runtime = RuntimeService(ImageService(store, insecure_registries=(registry.host, dead)))
        pod_id = new_id()
        runtime.create_pod_sandbox(
            pod_name="web",
            pod_id=pod_id,
            image_name=images.busybox,
            container_name="web-infra",
            metadata_name="web",
            uid="uid-web",
            namespace="default",
        )
        app = runtime.create_container(
            pod_name="web",
            pod_id=pod_id,
            image_name=images.busybox,
            container_name="web-app",
            metadata_name="app",
        )
        runtime.start_container(app.id)
        cs(store, "create-container", "--name", "foreign", images.busybox_id)
        yield World(store, runtime, images, pod_id, app.id, dead)


@pytest.fixture
def unchanged(world: World) -> Iterator[World]:
    """The world, checked to be exactly as it was after the test."""
    before = world.state()
    yield world
    assert world.state() == before


# -- creating with bad arguments ------------------------------------------------------


def sandbox_args(world: World, **changes: Any) -> dict[str, Any]:
    args = {
        "pod_name": "db",
        "pod_id": new_id(),
        "image_name": world.images.busybox,
        "container_name": "db-infra",
        "metadata_name": "db",
        "uid": "uid-db",
        "namespace": "default",
    }
    return {**args, **changes}


def member_args(world: World, **changes: Any) -> dict[str, Any]:
    args = {
        "pod_name": "web",
        "pod_id": world.pod_id,
        "image_name": world.images.busybox,
        "container_name": "web-db",
        "metadata_name": "db",
    }
    return {**args, **changes}


BOTH = ["sandbox", "member"]
_BAD_CREATES = [
    # (applies to, changes, error)
    pytest.param(BOTH, {"pod_name": ""}, InvalidPodName, id="empty-pod-name"),
    pytest.param(BOTH, {"pod_name": "team/web"}, InvalidPodName, id="pod-name-with-slash"),
    pytest.param(BOTH, {"pod_name": "-rf"}, InvalidPodName, id="pod-name-with-leading-dash"),
    pytest.param(BOTH, {"pod_name": "my web"}, InvalidPodName, id="pod-name-with-space"),
    pytest.param(BOTH, {"pod_name": ".."}, InvalidPodName, id="pod-name-dot-dot"),
    pytest.param(BOTH, {"pod_name": "w" * 300}, InvalidPodName, id="pod-name-too-long"),
    pytest.param(BOTH, {"pod_name": None}, InvalidPodName, id="pod-name-not-a-string"),
    pytest.param(BOTH, {"container_name": ""}, InvalidContainerName, id="empty-container-name"),
    pytest.param(BOTH, {"container_name": "../etc"}, InvalidContainerName, id="name-with-slash"),
    pytest.param(BOTH, {"container_name": "--all"}, InvalidContainerName, id="name-like-option"),
    pytest.param(BOTH, {"container_name": "db app"}, InvalidContainerName, id="name-with-space"),
    pytest.param(BOTH, {"container_name": "db\n"}, InvalidContainerName, id="name-then-newline"),
    pytest.param(BOTH, {"pod_name": "web\n"}, InvalidPodName, id="pod-name-then-newline"),
    pytest.param(BOTH, {"pod_id": ""}, InvalidSandboxID, id="empty-pod-id"),
    pytest.param(BOTH, {"pod_id": "ab" * 32 + "\n"}, InvalidSandboxID, id="pod-id-then-newline"),
    pytest.param(BOTH, {"pod_id": "ab/cd"}, InvalidSandboxID, id="pod-id-with-slash"),
    pytest.param(BOTH, {"pod_id": "-" + "a" * 63}, InvalidSandboxID, id="pod-id-leading-dash"),
    pytest.param(BOTH, {"pod_id": "ab cd"}, InvalidSandboxID, id="pod-id-with-space"),
    pytest.param(["member"], {"container_id": "ab/cd"}, InvalidContainerID, id="id-with-slash"),
    pytest.param(["member"], {"container_id": "--id"}, InvalidContainerID, id="id-like-option"),
    pytest.param(["member"], {"container_id": "ab cd"}, InvalidContainerID, id="id-with-space"),
    pytest.param(BOTH, {"image_name": ""}, InvalidImageName, id="no-image-at-all"),
    pytest.param(BOTH, {"image_name": "Busybox"}, InvalidImageName, id="upper-case-image"),
    pytest.param(BOTH, {"image_name": "-busybox"}, InvalidImageName, id="image-like-option"),
    pytest.param(BOTH, {"image_name": "oci:rel/path"}, InvalidImageName, id="relative-oci"),
    pytest.param(BOTH, {"image_id": "xyz"}, InvalidImageName, id="image-id-not-hex"),
    pytest.param(BOTH, {"image_id": "ab" * 32 + "\n"}, InvalidImageName, id="image-id-newline"),
    pytest.param(BOTH, {"image_id": "../../etc/passwd"}, InvalidImageName, id="image-id-path"),
    pytest.param(
        BOTH, {"image_name": "", "image_id": "ef" * 32}, ImageNotFound, id="image-id-absent"
    ),
    pytest.param(BOTH, {"metadata_name": "a\x00b"}, InvalidName, id="metadata-name-control"),
    pytest.param(BOTH, {"namespace": "default\n"}, InvalidName, id="namespace-control"),
    pytest.param(BOTH, {"uid": 7}, InvalidName, id="uid-not-a-string"),
    pytest.param(BOTH, {"mount_label": "a\tb"}, InvalidName, id="mount-label-control"),
    pytest.param(BOTH, {"attempt": -1}, StorageError, id="negative-attempt"),
    pytest.param(BOTH, {"attempt": "1"}, StorageError, id="attempt-not-an-int"),
]


BAD_CREATES = [
    pytest.param(kind, *case.values[1:], id=f"{case.id}-{kind}")
    for case in _BAD_CREATES
    for kind in case.values[0]
]


@pytest.mark.parametrize(("kind", "changes", "error"), BAD_CREATES)
def test_a_create_with_bad_input_raises_its_error_and_changes_nothing(
    unchanged: World, kind: str, changes: dict[str, Any], error: type
) -> None:
    world = unchanged
    if kind == "sandbox":
        with pytest.raises(error):
            world.runtime.create_pod_sandbox(**sandbox_args(world, **changes))
    else:
        with pytest.raises(error):
            world.runtime.create_container(**member_args(world, **changes))


@pytest.mark.parametrize("kind", BOTH)
def test_a_create_while_the_registry_is_down_raises_image_pull_error_and_changes_nothing(
    unchanged: World, kind: str
) -> None:
    world = unchanged
    ref = f"{world.dead_host}/podstore-test/busybox:1"
    make = world.runtime.create_pod_sandbox if kind == "sandbox" else world.runtime.create_container
    args = (sandbox_args if kind == "sandbox" else member_args)(world, image_name=ref)
    with pytest.raises(ImagePullError, match="connection refused") as caught:
        make(**args)
    assert caught.value.reference == ref


# -- naming containers badly --------------------------------------------------------------

CALLS: list[Any] = [
    pytest.param(lambda rt, ref: rt.start_container(ref), id="start"),
    pytest.param(lambda rt, ref: rt.stop_container(ref), id="stop"),
    pytest.param(lambda rt, ref: rt.delete_container(ref), id="delete"),
    pytest.param(lambda rt, ref: rt.get_container_metadata(ref), id="get-metadata"),
    pytest.param(lambda rt, ref: rt.get_work_dir(ref), id="work-dir"),
    pytest.param(lambda rt, ref: rt.get_run_dir(ref), id="run-dir"),
]
MALFORMED_IDS = [
    pytest.param("", id="empty"),
    pytest.param("web/../web-app", id="slash"),
    pytest.param("-a", id="leading-dash"),
    pytest.param("web app", id="space"),
    pytest.param("web-app\x00", id="nul"),
    pytest.param("web-app\n", id="newline"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("ref", MALFORMED_IDS)
def test_a_malformed_container_id_is_refused_as_invalid_container_id(
    unchanged: World, call: Callable[[RuntimeService, Any], Any], ref: Any
) -> None:
    with pytest.raises(InvalidContainerID):
        call(unchanged.runtime, ref)


@pytest.mark.parametrize("ref", MALFORMED_IDS)
def test_a_malformed_pod_id_is_refused_by_remove_pod_sandbox(unchanged: World, ref: Any) -> None:
    # The pod is named by its infra container, so either class says what is wrong.
    with pytest.raises((InvalidSandboxID, InvalidContainerID)):
        unchanged.runtime.remove_pod_sandbox(ref)


@pytest.mark.parametrize("call", [c for c in CALLS if c.id not in ("stop", "delete")])
@pytest.mark.parametrize("ref", ["no-such-container", "ab" * 32])
def test_an_unknown_container_is_refused_as_invalid_container_id(
    unchanged: World, call: Callable[[RuntimeService, Any], Any], ref: str
) -> None:
    with pytest.raises(InvalidContainerID, match="not in the store"):
        call(unchanged.runtime, ref)


@pytest.mark.parametrize("ref", ["web-app", "app-id"])
def test_remove_pod_sandbox_refuses_a_member_container(unchanged: World, ref: str) -> None:
    ref = unchanged.app_id if ref == "app-id" else ref
    with pytest.raises(InvalidSandboxID, match="not a pod's infra container"):
        unchanged.runtime.remove_pod_sandbox(ref)


def test_remove_pod_sandbox_refuses_a_container_podstore_did_not_make(unchanged: World) -> None:
    with pytest.raises(NotOurs):
        unchanged.runtime.remove_pod_sandbox("foreign")


# -- bad metadata and templates -----------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param("managed-by-nobody", id="not-managed-by-podstore"),
        pytest.param({"pod": False}, id="a-plain-dict"),
        pytest.param(None, id="none"),
    ],
)
def test_set_container_metadata_refuses_what_would_lose_the_container(
    unchanged: World, metadata: Any
) -> None:
    world = unchanged
    if metadata == "managed-by-nobody":
        metadata = replace(world.runtime.get_container_metadata("web-app"), managed_by="")
    with pytest.raises(StorageError, match=r"managed-by|RuntimeContainerMetadata"):
        world.runtime.set_container_metadata("web-app", metadata)


@pytest.fixture
def template_path(world: World) -> Iterator[Path]:
    """The member's template file, removed again after the test."""
    path = container_dir(world.store, world.app_id) / "config.json"
    yield path
    path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="not-json"),
        pytest.param(json.dumps({"ociVersion": "1.0.2"}), "no root or no process", id="no-root"),
    ],
)
def test_a_start_with_a_broken_template_says_which_file_and_leaves_the_mount_count(
    unchanged: World, template_path: Path, content: str, message: str
) -> None:
    world = unchanged
    template_path.write_text(content)
    run_config = Path(world.runtime.get_run_dir(world.app_id)) / "config.json"
    with pytest.raises(StorageError, match=message):
        world.runtime.start_container(world.app_id)
    assert not run_config.exists()
    # The member was started once before; a failed start must not add a mount: one
    # plain unmount (not --force) brings the count back to zero.
    cs(world.store, "unmount", world.app_id)
    mounted_after_one_unmount = is_mounted(world.store, world.app_id)
    template_path.unlink()
    world.runtime.start_container(world.app_id)  # as it was
    assert not mounted_after_one_unmount, "the failed start left its mount behind"


# -- bad store and service settings ----------------------------------------------------


@pytest.mark.parametrize(
    ("root", "driver"),
    [
        pytest.param("relative/root", "overlay", id="relative-root"),
        pytest.param("", "overlay", id="empty-root"),
        pytest.param("/var/lib/a:b", "overlay", id="root-with-colon"),
        pytest.param("/var/lib/a+b", "overlay", id="root-with-plus"),
        pytest.param("/var/lib/[x]", "overlay", id="root-with-brackets"),
        pytest.param("/var/lib/containers", "over lay", id="driver-with-space"),
        pytest.param("/var/lib/containers", "--graph", id="driver-like-an-option"),
        pytest.param("/var/lib/containers", "overlay\n", id="driver-then-newline"),
    ],
)
def test_a_store_with_a_bad_location_or_driver_is_refused(root: str, driver: str) -> None:
    with pytest.raises(InvalidName):
        Store(root, "/run/containers/storage", driver)


@pytest.mark.parametrize("host", ["", "http://127.0.0.1:5000", "127.0.0.1:5000/path", "-x"])
def test_an_insecure_registry_that_is_not_host_and_port_is_refused(world: World, host: str) -> None:
    with pytest.raises(InvalidName):
        ImageService(world.store, insecure_registries=(host,))
