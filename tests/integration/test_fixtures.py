"""The shared fixtures do what they promise, with the real tools.

Every other integration test stands on these fixtures, so each is proven here on
its own: the registries serve (or refuse, or are dead), the images carry the
configuration tests expect, a store is torn down without leaving a mount even when a
container is still mounted, and ``run_bundle`` runs a bundle.
"""

from __future__ import annotations

import json
import socket
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import images as test_images
from tests.support.commands import run
from tests.support.images import LocalImages, RegistryImages, unpack_rootfs
from tests.support.registry import DeadRegistry, Registry
from tests.support.runc import minimal_config, run_bundle, write_config
from tests.support.stores import (
    StorePaths,
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
    temporary_store,
)

pytestmark = pytest.mark.integration


def skopeo_json(*args: str) -> Any:
    return json.loads(run(["skopeo", *args], timeout=60).stdout)


def config_of(ref: str, *flags: str) -> dict[str, Any]:
    return dict(skopeo_json("inspect", "--config", *flags, ref)["config"])


def config_digest_of(ref: str, *flags: str) -> str:
    return str(skopeo_json("inspect", "--raw", *flags, ref)["config"]["digest"])


BUSYBOX_CONFIG = {
    "Entrypoint": test_images.BUSYBOX_ENTRYPOINT,
    "Cmd": test_images.BUSYBOX_CMD,
    "Env": test_images.BUSYBOX_ENV,
    "WorkingDir": test_images.BUSYBOX_WORKDIR,
}
PAUSE_CONFIG = {
    "Entrypoint": test_images.PAUSE_ENTRYPOINT,
    "Cmd": test_images.PAUSE_CMD,
    "Env": test_images.PAUSE_ENV,
    "WorkingDir": "/",
}


# -- registries and images ---------------------------------------------------


@pytest.mark.parametrize(
    ("attr", "expected", "id_attr"),
    [
        pytest.param("busybox", BUSYBOX_CONFIG, "busybox_id", id="busybox:1"),
        pytest.param("busybox2", BUSYBOX_CONFIG, "busybox2_id", id="busybox:2"),
        pytest.param("pause", PAUSE_CONFIG, "pause_id", id="pause"),
    ],
)
def test_registry_serves_each_pushed_image_with_its_config(
    images: RegistryImages, attr: str, expected: dict[str, Any], id_attr: str
) -> None:
    ref = "docker://" + getattr(images, attr)
    assert getattr(images, attr).startswith(images.registry_host + "/podstore-test/")
    config = config_of(ref, "--tls-verify=false")
    assert {key: config.get(key) for key in expected} == expected
    assert config_digest_of(ref, "--tls-verify=false") == "sha256:" + getattr(images, id_attr)


def test_registry_answers_v2_and_serves_by_digest(
    registry: Registry, images: RegistryImages
) -> None:
    assert registry.url == f"http://{registry.host}"
    assert registry.get("/v2/") == 200
    inspected = skopeo_json("inspect", "--tls-verify=false", "docker://" + images.busybox_by_digest)
    assert inspected["Digest"] == images.busybox_info.manifest_digest


def test_busybox2_is_busybox1_plus_a_version_file(
    image_layout: LocalImages, tmp_path: Path
) -> None:
    assert len({image_layout.busybox_id, image_layout.busybox2_id, image_layout.pause_id}) == 3
    one = skopeo_json("inspect", image_layout.busybox_oci)["Layers"]
    two = skopeo_json("inspect", image_layout.busybox2_oci)["Layers"]
    assert two[: len(one)] == one
    assert len(two) == len(one) + 1
    rootfs = unpack_rootfs(image_layout, "busybox-2", tmp_path / "bundle")
    assert (rootfs / "etc" / "podstore-version").read_text() == "2\n"
    assert (rootfs / "bin" / "sh").readlink() == Path("busybox")


@pytest.mark.parametrize("attr", ["oci_archive", "docker_archive", "dir", "busybox_oci"])
def test_local_forms_of_busybox_are_readable_and_keep_its_id(
    image_layout: LocalImages, attr: str
) -> None:
    ref = getattr(image_layout, attr)
    assert config_of(ref)["Entrypoint"] == test_images.BUSYBOX_ENTRYPOINT
    assert config_digest_of(ref) == "sha256:" + image_layout.busybox_id
    for path_attr in ("oci_archive_path", "docker_archive_path", "dir_path"):
        assert getattr(image_layout, path_attr).exists()


def test_auth_registry_refuses_a_client_without_credentials(auth_registry: Registry) -> None:
    assert auth_registry.get("/v2/", auth=False) == 401
    done = run(
        [
            "skopeo", "inspect", "--tls-verify=false", "--no-creds",
            "docker://" + auth_registry.ref("busybox:1"),
        ],
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unauthorized" in done.stderr.lower() or "authentication" in done.stderr.lower()


def test_auth_registry_accepts_the_auth_file(auth_registry: Registry, auth_file: Path) -> None:
    assert auth_registry.username
    assert auth_registry.password
    auths = json.loads(auth_file.read_text())["auths"]
    assert list(auths) == [auth_registry.host]
    config = config_of(
        "docker://" + auth_registry.ref("busybox:1"),
        "--tls-verify=false",
        f"--authfile={auth_file}",
    )
    assert config["Cmd"] == test_images.BUSYBOX_CMD


def test_dead_registry_refuses_connections(dead_registry: DeadRegistry) -> None:
    host, port = dead_registry.host.rsplit(":", 1)
    assert str(dead_registry) == dead_registry.host
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), 2):
        pass
    done = run(
        ["skopeo", "inspect", "--tls-verify=false", "docker://" + dead_registry.ref("busybox:1")],
        check=False,
    )
    assert done.returncode != 0
    assert "connection refused" in done.stderr


# -- stores ------------------------------------------------------------------


def create_mounted_container(paths: Any, source: str, name: str) -> tuple[str, str]:
    """By hand, as podman would: copy an image in, create a container, mount it twice."""
    image_id = copy_image(paths, source, f"localhost/podstore-test/{name}:1")
    created = cs(paths, "create-container", "--json", "--name", name, image_id)
    container_id = str(created["id"])
    mountpoint = cs(paths, "mount", container_id)
    assert cs(paths, "mount", container_id) == mountpoint  # mount count 2
    return container_id, mountpoint


@pytest.fixture
def no_mounts_left(tmp_path: Path) -> Iterator[None]:
    """Set up before ``store_root``, so this check runs after its teardown."""
    yield
    assert mounts_under(tmp_path) == []
    assert not (tmp_path / "store").exists()


@each_driver
def test_store_fixture_tears_down_a_mounted_container(
    no_mounts_left: None, store: Any, store_root: StorePaths, image_layout: LocalImages
) -> None:
    assert Path(store.root) == store_root.root
    assert store.driver == store_root.driver
    container_id, mountpoint = create_mounted_container(store, image_layout.busybox_oci, "held")
    assert (Path(mountpoint) / "bin" / "busybox").exists()
    assert is_mounted(store_root, container_id)
    if store_root.driver == "overlay":
        assert Path(mountpoint) in mounts_under(store_root.root)


def test_temporary_store_unmounts_and_removes_everything(
    tmp_path: Path, image_layout: LocalImages
) -> None:
    base = tmp_path / "own-store"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with temporary_store(base, "overlay") as paths:
            create_mounted_container(paths, image_layout.busybox_oci, "held")
            assert mounts_under(base)
    assert [str(w.message) for w in caught] == []
    assert mounts_under(base) == []
    assert not base.exists()


def test_temporary_store_unmounts_a_stray_mount_and_says_so(tmp_path: Path) -> None:
    base = tmp_path / "own-store"

    def mount_a_tmpfs_the_store_does_not_know() -> None:
        with temporary_store(base) as paths:
            stray = paths.root.parent / "stray"
            stray.mkdir()
            run(["mount", "-t", "tmpfs", "tmpfs", stray])

    with pytest.warns(UserWarning, match="had to unmount"):
        mount_a_tmpfs_the_store_does_not_know()
    assert mounts_under(tmp_path) == []
    assert not base.exists()


def test_vfs_store_fixture_is_a_vfs_store(vfs_store: Any) -> None:
    assert vfs_store.driver == "vfs"
    assert containers_json(vfs_store) == []
    assert images_json(vfs_store) == []


def test_store_root_unpacks_as_a_pair(store_root: StorePaths) -> None:
    root, run_root = store_root
    assert (root, run_root, store_root.driver) == (
        store_root.root,
        store_root.run_root,
        "overlay",
    )
    assert not root.exists()


def test_readers_see_what_the_cli_wrote(
    store_root: StorePaths, images: RegistryImages, tmp_path: Path
) -> None:
    image_id = copy_image(store_root, "docker://" + images.busybox, images.busybox)
    assert image_id == images.busybox_id
    created = cs(
        store_root, "create-container", "--json", "--name", "reader",
        "--metadata", json.dumps({"pod": True, "name": "reader"}), image_id,
    )  # fmt: skip
    cid = created["id"]
    assert [c["id"] for c in containers_json(store_root)] == [cid]
    assert container_json(store_root, "reader")["image"] == image_id
    assert container_json(store_root, "no-such-container") is None
    assert container_metadata(store_root, cid) == {"pod": True, "name": "reader"}
    layer = created["layer"]
    cs(store_root, "add-names", "--name", "reader-layer", layer)
    assert layer_names(store_root, layer) == ["reader-layer"]
    assert container_dir(store_root, cid).is_dir()
    assert container_run_dir(store_root, cid).is_dir()
    assert not is_mounted(store_root, cid)
    cs(store_root, "mount", cid)
    assert is_mounted(store_root, "reader")
    cs(store_root, "unmount", cid)
    assert not is_mounted(store_root, cid)
    assert not is_mounted(store_root, "no-such-container")


# -- runc --------------------------------------------------------------------


def test_run_bundle_runs_an_unpacked_rootfs(
    image_layout: LocalImages, tmp_path: Path, runc_root: Path
) -> None:
    bundle = tmp_path / "bundle"
    unpack_rootfs(image_layout, "busybox-2", bundle)
    script = "echo $GREETING; cat /etc/podstore-version; pwd; exit 3"
    config = minimal_config(["/bin/sh", "-c", script], env=["PATH=/bin", "GREETING=hi"], cwd="/tmp")
    write_config(bundle, config)
    done = run_bundle(bundle, "podstore-test-unpacked", runc_root=runc_root)
    assert (done.returncode, done.stdout, done.stderr) == (3, "hi\n2\n/tmp\n", "")


@each_driver
def test_run_bundle_runs_a_mounted_store_container(
    store_root: StorePaths, image_layout: LocalImages, tmp_path: Path
) -> None:
    container_id, mountpoint = create_mounted_container(
        store_root, image_layout.busybox_oci, "runner"
    )
    bundle = container_run_dir(store_root, container_id)
    write_config(
        bundle, minimal_config(["/bin/sh", "-c", "echo hello > /made; cat /made"], root=mountpoint)
    )
    done = run_bundle(bundle, f"podstore-test-{store_root.driver}")
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello\n", "")
    assert (Path(mountpoint) / "made").read_text() == "hello\n"


def test_run_bundle_kills_and_deletes_a_container_past_its_timeout(
    image_layout: LocalImages, tmp_path: Path, runc_root: Path
) -> None:
    bundle = tmp_path / "bundle"
    unpack_rootfs(image_layout, "busybox-1", bundle)
    write_config(bundle, minimal_config(["/bin/sleep", "60"]))
    with pytest.raises(subprocess.TimeoutExpired):
        run_bundle(bundle, "podstore-test-timeout", timeout=1, runc_root=runc_root)
    listed = run(["runc", "--root", runc_root, "list", "--format", "json"]).stdout.strip()
    assert json.loads(listed or "null") in (None, [])
