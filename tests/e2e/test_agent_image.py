"""The agent image as built by ``make image`` (mmdebstrap + umoci), run with runc.

The image is built once per test session into ``.cache/image/<hash of its inputs>``
(gitignored) and reused while its inputs are unchanged. It is unpacked once into a
root filesystem; each test runs it from its own bundle (a config.json pointing at that
root, read-only) with the host network (for the API emulator and the test registry) and
bind mounts of a host store, a manifest folder and the test image layout, at the same
paths as on the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.common import managed, pod, template, write
from tests.e2e.agent import CONTAINERS, REPO, storage_pod, wait_for_phase
from tests.support.images import LocalImages
from tests.support.stores import StorePaths

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

IMAGE_DIR = REPO / "manifests" / "image"
CACHE = REPO / ".cache" / "image"
VERSION = "0.1.0"
# The image's default process environment (its config has the same).
PATH = "/opt/podstore/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _inputs_hash() -> str:
    digest = hashlib.sha256()
    files = [
        *sorted(IMAGE_DIR.glob("*")),
        REPO / "pyproject.toml",
        REPO / "README.md",
        *sorted(p for p in (REPO / "controller").rglob("*") if "__pycache__" not in p.parts),
    ]
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def agent_rootfs() -> Path:
    """The unpacked root filesystem of the agent image (built if its inputs changed)."""
    out = CACHE / _inputs_hash()
    rootfs = out / "bundle" / "rootfs"
    if (rootfs / "opt" / "podstore" / "bin" / "podstore").exists():
        return rootfs
    subprocess.run(["rm", "-rf", str(CACHE)], check=True)
    built = subprocess.run(
        ["bash", str(IMAGE_DIR / "build-oci.sh"), str(out)],
        capture_output=True, text=True, timeout=1800, check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": "0"},
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-4000:]
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out / 'oci'}:{VERSION}", str(out / "bundle")],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return rootfs


_CAPABILITIES = [  # in bit order
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def _held_capabilities() -> list[str]:
    """The names of this process's bounding capabilities (bit i is _CAPABILITIES[i])."""
    status = Path("/proc/self/status").read_text()
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapBnd:")), 16)
    return [f"CAP_{name}" for bit, name in enumerate(_CAPABILITIES) if mask >> bit & 1]


def _bind(path: Path, *, readonly: bool = False) -> dict[str, Any]:
    options = ["rbind", "ro" if readonly else "rw"]
    return {"destination": str(path), "type": "bind", "source": str(path), "options": options}


def _bundle(rootfs: Path, where: Path, args: list[str], binds: list[dict[str, Any]]) -> Path:
    """A runc bundle running ``args`` in the image: host network, all capabilities."""
    config = json.loads((rootfs.parent / "config.json").read_text())
    # Every capability the test holds, as the DaemonSet's privileged container holds
    # them all: with fewer, containers/storage re-executes itself in a user namespace.
    caps = _held_capabilities()
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["process"].update(
        terminal=False,
        args=args,
        cwd="/",
        env=[f"PATH={PATH}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "HOME=/tmp"],
        capabilities=dict.fromkeys(("bounding", "effective", "permitted", "ambient"), caps),
    )
    config["process"].pop("rlimits", None)
    linux = config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    linux.pop("uidMappings", None)
    linux.pop("gidMappings", None)
    config["mounts"] = [
        *config["mounts"],
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        {"destination": "/var/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        # The host's resolver, so that 127.0.0.1 and localhost mean what they mean there.
        {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts",
         "options": ["rbind", "ro"]},
        *binds,
    ]  # fmt: skip
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps(config))
    return where


def _runc(bundle: Path, runc_root: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    name = f"img-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(
            ["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), name],
            capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        subprocess.run(
            ["runc", "--root", str(runc_root), "delete", "--force", name],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip


def _store_args(store: StorePaths) -> list[str]:
    return ["--root", str(store.root), "--runroot", str(store.run_root), "--driver", store.driver]


def _store_binds(store: StorePaths) -> list[dict[str, Any]]:
    store.root.mkdir(parents=True, exist_ok=True)
    store.run_root.mkdir(parents=True, exist_ok=True)
    return [_bind(store.root), _bind(store.run_root)]


def test_the_image_prints_its_version(agent_rootfs: Path, tmp_path: Path, runc_root: Path) -> None:
    bundle = _bundle(agent_rootfs, tmp_path / "b", ["podstore", "--version"], [])
    done = _runc(bundle, runc_root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"podstore {VERSION}"


@pytest.mark.parametrize("driver", ["vfs"], indirect=True)
def test_the_image_runs_a_manifest_folder_into_a_host_store(
    agent_rootfs: Path,
    store_root: StorePaths,
    image_layout: LocalImages,
    tmp_path: Path,
    runc_root: Path,
) -> None:
    folder = tmp_path / "manifests"
    write(
        folder / "web.yaml",
        pod(
            "web",
            image_layout.pause_oci,
            template("app", image_layout.busybox_oci, command=["/bin/true"]),
        ),
    )
    args = ["podstore", "run", "--once", "-f", str(folder), "--node-name", "imagenode"]
    binds = [*_store_binds(store_root), _bind(folder, readonly=True),
             _bind(image_layout.layout, readonly=True)]  # fmt: skip
    bundle = _bundle(agent_rootfs, tmp_path / "b", [*args, *_store_args(store_root)], binds)
    done = _runc(bundle, runc_root)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert set(managed(store_root)) == {"pod/web", "web-app"}


@contextlib.contextmanager
def _background(bundle: Path, runc_root: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    name = f"img-{uuid.uuid4().hex[:8]}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["runc", "--root", str(runc_root), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield proc
    finally:
        subprocess.run(
            ["runc", "--root", str(runc_root), "kill", name, "TERM"],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        subprocess.run(
            ["runc", "--root", str(runc_root), "delete", "--force", name],
            capture_output=True, check=False, timeout=30,
        )  # fmt: skip


@pytest.mark.parametrize("driver", ["vfs"], indirect=True)
async def test_the_image_runs_the_agent_against_the_api(
    agent_rootfs: Path,
    kube: Any,
    store_root: StorePaths,
    images: Any,
    tmp_path: Path,
    runc_root: Path,
) -> None:
    kubeconfig = Path(kube.kubeconfig)
    args = [
        "podstore", "agent", "--node-name", "node-a", *_store_args(store_root),
        "--kubeconfig", str(kubeconfig), "--infra-image", images.pause,
        "--insecure-registry", images.registry_host,
        "--health-port", "0", "--metrics-port", "0", "--resync-interval", "2",
    ]  # fmt: skip
    binds = [*_store_binds(store_root), _bind(kubeconfig, readonly=True)]
    bundle = _bundle(agent_rootfs, tmp_path / "b", args, binds)
    log = tmp_path / "agent.log"
    with _background(bundle, runc_root, log):
        await kube.aio.create(
            storage_pod("web", containers=[{"name": "app", "image": images.busybox}])
        )
        try:
            ctr = await wait_for_phase(kube, CONTAINERS, "web-app", "Started")
        except AssertionError as err:
            raise AssertionError(f"{err}\nagent log:\n{log.read_text()[-4000:]}") from None
    assert ctr["status"]["containerID"] in {c["id"] for c in managed(store_root).values()}
