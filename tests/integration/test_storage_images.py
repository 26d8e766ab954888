"""ImageService pulls with the real ``skopeo`` into a real store, and looks images up.

Sources: the plain-HTTP test registry, the one that needs basic auth, one where
nothing listens, and the busybox image as ``oci:``, ``oci-archive:``,
``docker-archive:`` and ``dir:``. What landed in the store is read back with
``containers-storage`` itself.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.storage import ImageConfig, ImageService, RuntimeService, new_id
from controller.storage.auth import temporary_auth_file
from controller.storage.command import CommandEvent
from controller.storage.errors import ImageInUse, ImagePullError, InvalidImageName
from tests.support import images as test_images
from tests.support.images import LocalImages, RegistryImages
from tests.support.registry import DeadRegistry, Registry, basic_auth
from tests.support.stores import (
    containers_json,
    copy_image,
    cs,
    each_driver,
    images_json,
)

pytestmark = pytest.mark.integration

BUSYBOX_CONFIG = ImageConfig(
    entrypoint=tuple(test_images.BUSYBOX_ENTRYPOINT),
    cmd=tuple(test_images.BUSYBOX_CMD),
    env=tuple(test_images.BUSYBOX_ENV),
    working_dir=test_images.BUSYBOX_WORKDIR,
)


def stored(store: Any) -> list[tuple[str, list[str]]]:
    """Every image in the store as (ID, names), read with containers-storage."""
    return sorted((i["id"], sorted(i.get("names") or [])) for i in images_json(store))


# -- pulling ----------------------------------------------------------------------


@each_driver
def test_pull_image_copies_an_image_from_the_registry_into_the_store(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    info = image_service.pull_image(images.busybox)

    assert (info.id, info.names, info.name) == (
        images.busybox_id,
        (images.busybox,),
        images.busybox,
    )
    assert info.config == BUSYBOX_CONFIG
    assert info.digest == images.busybox_info.manifest_digest
    assert info.size > 0
    assert stored(store) == [(images.busybox_id, [images.busybox])]
    assert cs(store, "get-image-data", "-f", "/dev/stdout", images.busybox_id, "manifest")


def test_pull_image_takes_a_docker_transport_prefix(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    info = image_service.pull_image("docker://" + images.busybox)
    assert info.id == images.busybox_id
    assert stored(store) == [(images.busybox_id, [images.busybox])]


def test_pull_image_by_digest_names_the_image_by_its_digest(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    info = image_service.pull_image(images.busybox_by_digest)
    assert info.id == images.busybox_id
    assert stored(store) == [(images.busybox_id, [images.busybox_by_digest])]
    assert image_service.image_status(images.busybox_by_digest).id == images.busybox_id


def test_pulling_a_second_tag_that_shares_a_layer_keeps_both_images(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    one = image_service.pull_image(images.busybox)
    two = image_service.pull_image(images.busybox2)
    assert stored(store) == sorted([(one.id, [images.busybox]), (two.id, [images.busybox2])])
    layers = cs(store, "layers", "--json")
    assert len(layers) == 2  # busybox:2 is busybox:1's layer plus one


LOCAL_SOURCES = [
    pytest.param("busybox_oci", "localhost/layout:busybox-1", id="oci"),
    pytest.param("oci_archive", "localhost/busybox-oci:latest", id="oci-archive"),
    pytest.param("docker_archive", "localhost/busybox-docker:1", id="docker-archive"),
    pytest.param("dir", "localhost/busybox-dir:latest", id="dir"),
]


@pytest.mark.parametrize(("attr", "name"), LOCAL_SOURCES)
def test_pull_image_takes_local_image_forms(
    store: Any, image_service: ImageService, image_layout: LocalImages, attr: str, name: str
) -> None:
    ref = getattr(image_layout, attr)
    info = image_service.pull_image(ref)

    assert info.id == image_layout.busybox_id
    assert info.config == BUSYBOX_CONFIG
    assert stored(store) == [(image_layout.busybox_id, [name])]
    assert image_service.image_status(ref).id == image_layout.busybox_id
    assert image_service.image_status(name).id == image_layout.busybox_id


def test_concurrent_pulls_of_one_image_in_one_process_pull_once(
    store: Any,
    image_service: ImageService,
    images: RegistryImages,
    skopeo_copies: list[CommandEvent],
) -> None:
    threads = 4
    start = threading.Barrier(threads)
    results: list[Any] = []
    lock = threading.Lock()

    def pull() -> None:
        start.wait()
        try:
            outcome: Any = image_service.pull_image(images.busybox)
        except Exception as err:  # handed to the test thread
            outcome = err
        with lock:
            results.append(outcome)

    workers = [threading.Thread(target=pull) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert len(results) == threads
    assert {getattr(r, "id", r) for r in results} == {images.busybox_id}
    assert len(skopeo_copies) == 1
    assert stored(store) == [(images.busybox_id, [images.busybox])]


def test_concurrent_creates_from_one_missing_image_pull_it_once(
    store: Any,
    runtime_service: RuntimeService,
    images: RegistryImages,
    skopeo_copies: list[CommandEvent],
) -> None:
    threads = 3
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def create(index: int) -> None:
        start.wait()
        try:
            runtime_service.create_container(
                pod_name="web",
                pod_id=new_id(),
                image_name=images.busybox,
                container_name=f"web-app-{index}",
                metadata_name="app",
            )
        except Exception as err:  # handed to the test thread
            errors.append(err)

    workers = [threading.Thread(target=create, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert errors == []
    assert len(skopeo_copies) == 1
    assert len(containers_json(store)) == threads


# -- failing pulls ------------------------------------------------------------------


def test_a_pull_from_a_registry_that_is_down_names_the_reference_and_the_answer(
    store: Any, dead_registry: DeadRegistry
) -> None:
    service = ImageService(store, insecure_registries=(dead_registry.host,))
    ref = dead_registry.ref("busybox:1")
    with pytest.raises(ImagePullError) as caught:
        service.pull_image(ref)
    assert caught.value.reference == ref
    assert f"pulling image {ref!r} failed" in str(caught.value)
    assert "connection refused" in caught.value.detail
    assert images_json(store) == []


def test_a_pull_of_an_image_the_registry_does_not_have_says_so(
    store: Any, image_service: ImageService, registry: Registry, images: RegistryImages
) -> None:
    ref = registry.ref("no-such-image:1")
    with pytest.raises(ImagePullError, match=r"manifest unknown|not found") as caught:
        image_service.pull_image(ref)
    assert caught.value.reference == ref
    assert images_json(store) == []


MALFORMED = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("Busybox:1", id="upper-case"),
    pytest.param("-busybox", id="leading-dash"),
    pytest.param("busy box:1", id="space"),
    pytest.param("busybox:1\n", id="newline"),
    pytest.param("busybox@sha256:abc", id="short-digest"),
    pytest.param("busybox:a:b", id="two-tags"),
    pytest.param("docker-daemon:busybox:1", id="docker-daemon-transport"),
    pytest.param("containers-storage:busybox", id="containers-storage-transport"),
    pytest.param("http://127.0.0.1/busybox", id="url"),
    pytest.param("oci:relative/layout", id="relative-oci-path"),
    pytest.param("oci:", id="oci-without-a-path"),
    pytest.param("dir:/tmp/../etc", id="dir-path-with-dot-dot"),
    pytest.param("ab" * 32, id="image-id"),
]


@pytest.mark.parametrize("ref", MALFORMED)
def test_a_malformed_reference_is_refused_before_anything_runs(
    store: Any,
    image_service: ImageService,
    images: RegistryImages,
    skopeo_copies: list[CommandEvent],
    ref: str,
) -> None:
    copy_image(store, images.busybox_oci, images.busybox)
    before = images_json(store)
    with pytest.raises(InvalidImageName):
        image_service.pull_image(ref)
    if ref != "ab" * 32:  # an ID is a fine thing to look up or remove
        with pytest.raises(InvalidImageName):
            image_service.image_status(ref)
        with pytest.raises(InvalidImageName):
            image_service.remove_image(ref)
    assert skopeo_copies == []
    assert images_json(store) == before


# -- credentials ----------------------------------------------------------------------


@pytest.fixture
def auth_ref(auth_registry: Registry) -> str:
    return auth_registry.ref("busybox:1")


def test_a_pull_from_a_registry_that_needs_credentials_fails_without_them(
    store: Any, auth_registry: Registry, auth_ref: str
) -> None:
    service = ImageService(store, insecure_registries=(auth_registry.host,))
    with pytest.raises(ImagePullError, match=r"(?i)unauthorized|authentication") as caught:
        service.pull_image(auth_ref)
    assert caught.value.reference == auth_ref
    assert images_json(store) == []


def test_a_pull_with_wrong_credentials_fails(
    store: Any, auth_registry: Registry, auth_ref: str, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"auths": {auth_registry.host: {"auth": basic_auth("x", "no")}}}))
    service = ImageService(store, insecure_registries=(auth_registry.host,), auth_file=wrong)
    with pytest.raises(ImagePullError, match=r"(?i)unauthorized|authentication"):
        service.pull_image(auth_ref)
    assert images_json(store) == []


def test_a_pull_with_the_services_auth_file_succeeds(
    store: Any, auth_registry: Registry, auth_ref: str, auth_file: Path, image_layout: LocalImages
) -> None:
    service = ImageService(store, insecure_registries=(auth_registry.host,), auth_file=auth_file)
    assert service.pull_image(auth_ref).id == image_layout.busybox_id
    assert stored(store) == [(image_layout.busybox_id, [auth_ref])]


def test_a_pull_with_an_auth_file_for_this_call_succeeds(
    store: Any, auth_registry: Registry, auth_ref: str, auth_file: Path, image_layout: LocalImages
) -> None:
    service = ImageService(store, insecure_registries=(auth_registry.host,))
    assert service.pull_image(auth_ref, auth_file=auth_file).id == image_layout.busybox_id
    assert stored(store) == [(image_layout.busybox_id, [auth_ref])]


def test_a_pull_with_image_pull_secrets_in_a_temporary_auth_file_succeeds(
    store: Any, auth_registry: Registry, auth_ref: str, image_layout: LocalImages
) -> None:
    secret = {
        "auths": {auth_registry.host: {"auth": basic_auth(*auth_registry.creds().split(":"))}}
    }
    other = {"auths": {"elsewhere.example": {"auth": basic_auth("a", "b")}}}
    service = ImageService(store, insecure_registries=(auth_registry.host,))
    with temporary_auth_file([other, secret]) as path:
        assert path is not None
        assert Path(path).stat().st_mode & 0o777 == 0o600
        assert service.pull_image(auth_ref, auth_file=path).id == image_layout.busybox_id
    assert not Path(path).exists()
    assert stored(store) == [(image_layout.busybox_id, [auth_ref])]


def test_a_create_passes_its_auth_file_to_the_pull(
    store: Any, auth_registry: Registry, auth_ref: str, auth_file: Path, image_layout: LocalImages
) -> None:
    runtime = RuntimeService(ImageService(store, insecure_registries=(auth_registry.host,)))
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_name=auth_ref,
        container_name="web-app",
        metadata_name="app",
        auth_file=str(auth_file),
    )
    assert cs(store, "container", "--json", info.id)[0]["image"] == image_layout.busybox_id


def test_a_pull_with_an_auth_file_that_does_not_exist_names_it(
    store: Any, auth_registry: Registry, auth_ref: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.json"
    service = ImageService(store, insecure_registries=(auth_registry.host,))
    with pytest.raises(ImagePullError, match=r"missing\.json"):
        service.pull_image(auth_ref, auth_file=missing)
    assert images_json(store) == []


# -- looking up and removing ------------------------------------------------------------


def test_image_status_is_none_for_an_image_not_in_the_store(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    assert image_service.image_status(images.busybox) is None
    assert image_service.image_status(images.busybox_id) is None
    assert image_service.list_images() == []


def test_image_status_finds_an_image_by_name_or_id_with_its_config(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    copy_image(store, images.busybox_oci, images.busybox)
    for ref in (images.busybox, images.busybox_id, "sha256:" + images.busybox_id):
        info = image_service.image_status(ref)
        assert info is not None, ref
        assert (info.id, info.names, info.config) == (
            images.busybox_id,
            (images.busybox,),
            BUSYBOX_CONFIG,
        )
    assert image_service.image_status(images.busybox2) is None


def test_list_images_lists_every_image_in_the_store(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.pause_oci, images.pause)
    listed = {(i.id, i.names) for i in image_service.list_images()}
    assert listed == {(images.busybox_id, (images.busybox,)), (images.pause_id, (images.pause,))}


@pytest.mark.parametrize("by", ["name", "id"])
def test_remove_image_removes_it_and_is_fine_when_it_is_gone(
    store: Any, image_service: ImageService, images: RegistryImages, by: str
) -> None:
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.pause_oci, images.pause)
    ref = images.busybox if by == "name" else images.busybox_id
    assert image_service.image_status(ref) is not None  # cached now

    image_service.remove_image(ref)
    image_service.remove_image(ref)

    assert stored(store) == [(images.pause_id, [images.pause])]
    assert image_service.image_status(ref) is None


def test_remove_image_by_one_of_two_names_keeps_the_image_under_the_other(
    store: Any, image_service: ImageService, images: RegistryImages
) -> None:
    other = images.busybox.replace("busybox:1", "busybox:stable")
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.busybox_oci, other)
    assert stored(store) == [(images.busybox_id, sorted([images.busybox, other]))]

    image_service.remove_image(images.busybox)

    assert stored(store) == [(images.busybox_id, [other])]


def test_remove_image_refuses_an_image_a_container_uses(
    store: Any, runtime_service: RuntimeService, images: RegistryImages
) -> None:
    copy_image(store, images.busybox_oci, images.busybox)
    info = runtime_service.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_name=images.busybox,
        container_name="web-app",
        metadata_name="app",
    )
    with pytest.raises(ImageInUse, match=r"in use|used by"):
        runtime_service.images.remove_image(images.busybox)
    assert stored(store) == [(images.busybox_id, [images.busybox])]

    runtime_service.delete_container(info.id)
    runtime_service.images.remove_image(images.busybox)
    assert images_json(store) == []


def test_a_create_after_its_image_was_removed_pulls_it_again(
    store: Any, runtime_service: RuntimeService, images: RegistryImages
) -> None:
    """The name-to-ID cache must not hand out an image that is gone."""
    args = {"pod_name": "web", "pod_id": new_id(), "metadata_name": "app"}
    first = runtime_service.create_container(
        image_name=images.busybox, container_name="one", **args
    )
    runtime_service.delete_container(first.id)
    cs(store, "delete-image", images.busybox_id)  # behind podstore's back

    second = runtime_service.create_container(
        image_name=images.busybox, container_name="two", **args
    )
    assert cs(store, "container", "--json", second.id)[0]["image"] == images.busybox_id
