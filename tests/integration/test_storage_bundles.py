"""A started container's run directory is an OCI bundle that ``runc`` really runs.

The template is built from the image's config and the container spec
(``build_template``), kept in the container directory, and rendered by
``start_container``; ``runc run --bundle <run dir>`` then prints what the process
printed, which shows which of Entrypoint, Cmd, Env and WorkingDir won.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.storage import ImageService, ProcessSpec, RuntimeService, build_template, new_id
from tests.support import images as test_images
from tests.support.images import RegistryImages
from tests.support.registry import Registry
from tests.support.runc import run_bundle
from tests.support.stores import container_run_dir, copy_image, each_driver, is_mounted

pytestmark = pytest.mark.integration


@pytest.fixture
def runtime(store: Any, registry: Registry, images: RegistryImages) -> RuntimeService:
    """A RuntimeService over a store that holds busybox:1 and busybox:2 (copied in)."""
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.busybox2_oci, images.busybox2)
    return RuntimeService(ImageService(store, insecure_registries=(registry.host,)))


def started(runtime: RuntimeService, image: str, spec: ProcessSpec, name: str = "app") -> Any:
    """Create a container from ``image``, keep its template, start it."""
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_name=image,
        container_name=name,
        metadata_name=name,
    )
    runtime.write_config_template(info.id, build_template(info.config, spec))
    runtime.start_container(info.id)
    return info


# busybox:1 has Entrypoint ["/bin/sh", "-c"], Cmd ["echo hello from busybox"],
# Env PATH=/bin GREETING=hello, WorkingDir "/".
SPECS = [
    pytest.param(ProcessSpec(), "hello from busybox\n", id="image-entrypoint-and-cmd"),
    pytest.param(
        ProcessSpec(command=["/bin/echo", "command", "only"]),
        "command only\n",
        id="command-replaces-entrypoint-and-drops-cmd",
    ),
    pytest.param(
        ProcessSpec(args=["echo args to the image entrypoint"]),
        "args to the image entrypoint\n",
        id="args-replace-cmd",
    ),
    pytest.param(
        ProcessSpec(command=["/bin/sh", "-c"], args=["echo both; echo $0"]),
        "both\n/bin/sh\n",
        id="command-and-args",
    ),
    pytest.param(
        ProcessSpec(
            args=["echo $GREETING $EXTRA; echo $PATH"],
            env={"GREETING": "overridden", "EXTRA": "added"},
        ),
        "overridden added\n/bin\n",
        id="env-merged-over-the-images",
    ),
    pytest.param(
        ProcessSpec(
            command=["/bin/echo", "$(GREETING)", "$$(GREETING)", "$(NOPE)", "$(URL)"],
            env={"GREETING": "expanded", "URL": "http://$(GREETING):80"},
        ),
        "expanded $(GREETING) $(NOPE) http://expanded:80\n",
        id="var-references-in-command-expanded-from-env",
    ),
    pytest.param(
        ProcessSpec(args=["echo $URL; echo '$(GREETING)'"], env={"URL": "x-$(GREETING)"}),
        "x-$(GREETING)\n$(GREETING)\n",
        id="image-env-is-no-source-for-var-references",
    ),
    pytest.param(
        ProcessSpec(args=["pwd"], working_dir="/tmp"),
        "/tmp\n",
        id="working-dir-replaces-the-images",
    ),
]


@each_driver
@pytest.mark.parametrize(("spec", "printed"), SPECS)
def test_the_run_dir_runs_with_runc_and_prints_what_the_spec_says(
    runtime: RuntimeService, runc_root: Path, spec: ProcessSpec, printed: str, images: Any
) -> None:
    info = started(runtime, images.busybox, spec)
    done = run_bundle(info.run_dir, info.id, runc_root=runc_root)
    assert (done.returncode, done.stdout, done.stderr) == (0, printed, "")


def test_the_process_exit_status_comes_back_from_runc(
    runtime: RuntimeService, runc_root: Path, images: RegistryImages
) -> None:
    info = started(runtime, images.busybox, ProcessSpec(args=["exit 7"]))
    assert run_bundle(info.run_dir, info.id, runc_root=runc_root).returncode == 7


@each_driver
def test_the_container_sees_every_layer_of_its_image(
    runtime: RuntimeService, runc_root: Path, images: RegistryImages
) -> None:
    spec = ProcessSpec(command=["/bin/cat", test_images.VERSION_FILE])
    two = started(runtime, images.busybox2, spec, name="two")
    done = run_bundle(two.run_dir, two.id, runc_root=runc_root)
    assert (done.returncode, done.stdout) == (0, "2\n")
    one = started(runtime, images.busybox, spec, name="one")
    done = run_bundle(one.run_dir, one.id, runc_root=runc_root)
    assert done.returncode != 0
    assert "No such file" in done.stderr


@each_driver
def test_what_a_container_wrote_is_there_after_stop_and_start(
    store: Any, runtime: RuntimeService, runc_root: Path, images: RegistryImages
) -> None:
    spec = ProcessSpec(args=["echo run >> /runs; cat /runs"])
    info = started(runtime, images.busybox, spec)
    assert run_bundle(info.run_dir, info.id, runc_root=runc_root).stdout == "run\n"

    runtime.stop_container(info.id)
    assert not (container_run_dir(store, info.id) / "config.json").exists()
    mountpoint = runtime.start_container(info.id)

    assert is_mounted(store, info.id)
    assert (Path(mountpoint) / "runs").read_text() == "run\n"
    done = run_bundle(info.run_dir, info.id, runc_root=runc_root)
    assert (done.returncode, done.stdout) == (0, "run\nrun\n")


def test_two_containers_of_one_image_do_not_share_writes(
    runtime: RuntimeService, runc_root: Path, images: RegistryImages
) -> None:
    writer = started(runtime, images.busybox, ProcessSpec(args=["touch /mine"]), name="writer")
    assert run_bundle(writer.run_dir, writer.id, runc_root=runc_root).returncode == 0
    reader = started(runtime, images.busybox, ProcessSpec(args=["ls /mine"]), name="reader")
    done = run_bundle(reader.run_dir, reader.id, runc_root=runc_root)
    assert done.returncode != 0
    assert "No such file" in done.stderr


def test_a_bundle_with_a_mount_label_runs_on_this_host(
    runtime: RuntimeService, runc_root: Path, images: RegistryImages
) -> None:
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    info = runtime.create_container(
        pod_name="web",
        pod_id=new_id(),
        image_name=images.busybox,
        container_name="labelled",
        metadata_name="labelled",
        mount_label=label,
    )
    template = build_template(info.config, ProcessSpec(args=["echo labelled"]), mount_label=label)
    runtime.write_config_template(info.id, template)
    runtime.start_container(info.id)
    done = run_bundle(info.run_dir, info.id, runc_root=runc_root)
    assert (done.returncode, done.stdout, done.stderr) == (0, "labelled\n", "")
