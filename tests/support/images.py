"""Small test images, built offline from Debian's busybox-static.

No test may reach the network, so the images are made here: one rootfs holding
``/bin/busybox`` and its applet links, packed by ``umoci`` into an OCI layout, then
copied by ``skopeo`` into every form podstore accepts (registry, ``oci:``,
``oci-archive:``, ``docker-archive:``, ``dir:``). Building takes well under a second.

Tags in the layout: ``busybox-1``, ``busybox-2`` (``busybox-1`` plus a layer adding
``/etc/podstore-version``) and ``pause-1`` (the infra image: ``/bin/sleep 3600``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.commands import run
from tests.support.registry import NAMESPACE, Registry, push

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "cat", "ls", "sleep", "env", "pwd", "id", "true", "false", "printenv",
    "test", "mkdir", "touch", "rm", "grep", "hostname", "whoami", "uname", "wc", "head",
)  # fmt: skip
#: Config of the ``busybox`` images (what ``skopeo inspect --config`` shows).
BUSYBOX_ENTRYPOINT = ["/bin/sh", "-c"]
BUSYBOX_CMD = ["echo hello from busybox"]
BUSYBOX_ENV = ["PATH=/bin", "GREETING=hello"]
BUSYBOX_WORKDIR = "/"
#: Config of the ``pause`` image.
PAUSE_ENTRYPOINT = ["/bin/sleep"]
PAUSE_CMD = ["3600"]
PAUSE_ENV = ["PATH=/bin"]
#: What ``busybox:2`` has and ``busybox:1`` lacks.
VERSION_FILE = "/etc/podstore-version"

# layout tag -> (registry repository:tag)
TAGS = {"busybox-1": "busybox:1", "busybox-2": "busybox:2", "pause-1": "pause:1"}


@dataclass(frozen=True)
class ImageInfo:
    """What a test may expect of one image once it is in a store."""

    tag: str  # tag in the OCI layout
    image_id: str  # config digest without "sha256:" = the image ID in containers/storage
    config_digest: str  # "sha256:..."
    manifest_digest: str  # "sha256:..." of the OCI manifest (kept when pushed)


@dataclass(frozen=True)
class LocalImages:
    """The test images on disk, no registry involved.

    Attributes ending in ``_ref`` (and ``oci_archive``, ``docker_archive``, ``dir``)
    are containers/image references with their transport, ready for ``skopeo copy`` or
    ``ImageService.pull_image``; ``*_path`` are the files behind them.
    """

    layout: Path
    busybox_oci: str  # "oci:LAYOUT:busybox-1"
    busybox2_oci: str
    pause_oci: str
    oci_archive: str  # "oci-archive:PATH" (busybox:1)
    oci_archive_path: Path
    docker_archive: str  # "docker-archive:PATH:busybox:1"
    docker_archive_path: Path
    dir: str  # "dir:PATH" (busybox:1)
    dir_path: Path
    busybox_info: ImageInfo
    busybox2_info: ImageInfo
    pause_info: ImageInfo

    @property
    def busybox_id(self) -> str:
        return self.busybox_info.image_id

    @property
    def busybox2_id(self) -> str:
        return self.busybox2_info.image_id

    @property
    def pause_id(self) -> str:
        return self.pause_info.image_id

    def oci(self, tag: str) -> str:
        """``oci:LAYOUT:TAG`` for a layout tag such as ``busybox-1``."""
        return f"oci:{self.layout}:{tag}"


@dataclass(frozen=True)
class RegistryImages(LocalImages):
    """:class:`LocalImages` plus the same images pushed to a registry."""

    registry_host: str
    busybox: str  # "127.0.0.1:PORT/podstore-test/busybox:1"
    busybox2: str  # ".../busybox:2"
    pause: str  # ".../pause:1"
    busybox_by_digest: str  # ".../busybox@sha256:..."


def _make_rootfs(rootfs: Path) -> None:
    for folder in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (rootfs / folder).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (rootfs / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")


def _config_args(entrypoint: list[str], cmd: list[str], env: list[str], workdir: str) -> list[str]:
    args = ["--clear=config.entrypoint", "--clear=config.cmd", "--clear=config.env"]
    args += [f"--config.entrypoint={e}" for e in entrypoint]
    args += [f"--config.cmd={c}" for c in cmd]
    args += [f"--config.env={e}" for e in env]
    args.append(f"--config.workingdir={workdir}")
    return args


def _info(layout: Path, tag: str) -> ImageInfo:
    raw = run(["skopeo", "inspect", "--raw", f"oci:{layout}:{tag}"], timeout=30).stdout
    manifest = json.loads(raw)
    config_digest = manifest["config"]["digest"]
    return ImageInfo(
        tag=tag,
        image_id=config_digest.removeprefix("sha256:"),
        config_digest=config_digest,
        manifest_digest="sha256:" + hashlib.sha256(raw.encode()).hexdigest(),
    )


def build_images(workdir: Path) -> LocalImages:
    """Build the layout and its archive copies under ``workdir`` (which must be empty)."""
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "layout"
    bundle = workdir / "bundle"
    umoci = ["umoci", "--log=error"]
    run([*umoci, "init", "--layout", layout], timeout=30)
    run([*umoci, "new", "--image", f"{layout}:base"], timeout=30)
    # unpack + repack (rather than insert) gives a layer with relative paths and "./".
    run([*umoci, "unpack", "--image", f"{layout}:base", bundle], timeout=60)
    _make_rootfs(bundle / "rootfs")
    run([*umoci, "repack", "--image", f"{layout}:base", bundle], timeout=60)
    shutil.rmtree(bundle)
    busybox_config = _config_args(BUSYBOX_ENTRYPOINT, BUSYBOX_CMD, BUSYBOX_ENV, BUSYBOX_WORKDIR)
    run([*umoci, "config", "--image", f"{layout}:base", "--tag", "busybox-1", *busybox_config])
    run(
        [
            *umoci, "config", "--image", f"{layout}:base", "--tag", "pause-1",
            *_config_args(PAUSE_ENTRYPOINT, PAUSE_CMD, PAUSE_ENV, "/"),
        ]
    )  # fmt: skip
    # busybox-2 = busybox-1 + one layer. Not `umoci insert`: umoci 0.4.7 writes a
    # single-file insert as a truncated tar (no padding, no end blocks).
    run([*umoci, "unpack", "--image", f"{layout}:busybox-1", bundle], timeout=60)
    (bundle / "rootfs" / VERSION_FILE.lstrip("/")).write_text("2\n")
    run([*umoci, "repack", "--image", f"{layout}:busybox-2", bundle], timeout=60)
    shutil.rmtree(bundle)
    run([*umoci, "rm", "--image", f"{layout}:base"])
    run([*umoci, "gc", "--layout", layout])

    busybox = f"oci:{layout}:busybox-1"
    oci_archive = workdir / "busybox-oci.tar"
    docker_archive = workdir / "busybox-docker.tar"
    dir_path = workdir / "busybox-dir"
    copy = ["skopeo", "copy", "--quiet"]
    run([*copy, busybox, f"oci-archive:{oci_archive}"])
    run([*copy, busybox, f"docker-archive:{docker_archive}:busybox:1"])
    run([*copy, busybox, f"dir:{dir_path}"])
    return LocalImages(
        layout=layout,
        busybox_oci=busybox,
        busybox2_oci=f"oci:{layout}:busybox-2",
        pause_oci=f"oci:{layout}:pause-1",
        oci_archive=f"oci-archive:{oci_archive}",
        oci_archive_path=oci_archive,
        docker_archive=f"docker-archive:{docker_archive}:busybox:1",
        docker_archive_path=docker_archive,
        dir=f"dir:{dir_path}",
        dir_path=dir_path,
        busybox_info=_info(layout, "busybox-1"),
        busybox2_info=_info(layout, "busybox-2"),
        pause_info=_info(layout, "pause-1"),
    )


def push_images(local: LocalImages, registry: Registry) -> RegistryImages:
    """Push every layout tag to ``registry`` under ``podstore-test/``."""
    refs = {tag: push(local.oci(tag), registry, name) for tag, name in TAGS.items()}
    fields = {name: getattr(local, name) for name in local.__dataclass_fields__}
    return RegistryImages(
        **fields,
        registry_host=registry.host,
        busybox=refs["busybox-1"],
        busybox2=refs["busybox-2"],
        pause=refs["pause-1"],
        busybox_by_digest=f"{registry.host}/{NAMESPACE}/busybox@{local.busybox_info.manifest_digest}",
    )


def unpack_rootfs(local: LocalImages, tag: str, dest: Path) -> Path:
    """``umoci unpack`` a layout tag into ``dest`` (an OCI bundle); return its rootfs."""
    run(["umoci", "--log=error", "unpack", "--image", f"{local.layout}:{tag}", dest], timeout=60)
    return dest / "rootfs"
