"""Pull credentials leave nothing behind (issue 12, defect 5): ``podstore run`` is
killed with SIGKILL while skopeo pulls with a pull secret, and no trace of the
password is left on disk; while the pull runs, none is in any process's command
line or environment either."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.common import pod, start_watch, stop_watch, template, wait_for, write
from tests.support.stores import StorePaths

pytestmark = pytest.mark.cli


@pytest.fixture
def hanging_registry() -> Iterator[str]:
    """host:port of a registry that takes connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _processes() -> Iterator[tuple[int, list[bytes]]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            yield int(entry.name), argv


def _in_proc(words: list[bytes]) -> list[str]:
    hits = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                data = Path(entry.path, part).read_bytes()
            except OSError:
                continue
            hits += [f"{entry.path}/{part}" for word in words if word in data]
    return hits


def _on_disk(roots: list[Path], words: list[bytes]) -> list[str]:
    hits = []
    for root in roots:
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    info = os.lstat(path)
                    # Only regular files: a device node (an unpacked image's dev/zero) never ends.
                    if not stat.S_ISREG(info.st_mode) or info.st_size > 16 * 1024 * 1024:
                        continue
                    with open(path, "rb") as handle:
                        data = handle.read()
                except OSError:
                    continue
                hits += [path for word in words if word in data]
    return hits


def test_a_pull_killed_midway_leaves_no_credentials_anywhere(
    store_root: StorePaths, manifests: Path, hanging_registry: str, tmp_path: Path
) -> None:
    password = "pw-crash-" + secrets.token_hex(12)
    auth = base64.b64encode(f"podstore:{password}".encode())
    words = [password.encode(), auth]
    config = {"auths": {hanging_registry: {"auth": auth.decode()}}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    image = f"{hanging_registry}/busybox:1"
    write(manifests / "secret.yaml", secret)
    write(
        manifests / "web.yaml",
        pod("web", image, template("app", image), imagePullSecrets=[{"name": "regcred"}]),
    )
    proc = start_watch(store_root, manifests, "--insecure-registry", hanging_registry)
    try:

        def pulling() -> int | None:
            for pid, argv in _processes():
                if argv[0].endswith(b"skopeo") and any(
                    hanging_registry.encode() in a for a in argv
                ):
                    return pid
            return None

        skopeo = wait_for("skopeo to pull from the hanging registry", pulling, timeout=60)
        assert _in_proc(words) == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # The pull runs in a process group of its own; a crash of the node kills it too.
        os.kill(skopeo, signal.SIGKILL)
    finally:
        stop_watch(proc, signal.SIGKILL)
    roots = [Path("/tmp"), Path("/dev/shm"), store_root.root, store_root.run_root, tmp_path]
    assert _on_disk(roots, words) == []
    assert _in_proc(words) == []
