"""Pull credentials leave nothing behind (issue 12, defect 5): ``podstore run`` and
the agent are killed with SIGKILL while skopeo pulls with a pull secret, and no trace
of the password is left on disk; while the pull runs, none is in any process's
command line or environment either. A pull that succeeds against a registry with
basic auth, logged at DEBUG, shows the password nowhere: not in the logs, the
statuses, the Events, the state file, the disk, nor ``/proc/*/cmdline`` or
``environ`` of podstore's and skopeo's processes while they run."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.common import (
    by_name,
    pod,
    run_once,
    start_watch,
    state_file,
    stop_watch,
    template,
    write,
)
from tests.e2e.agent import CONTAINERS, NAMESPACE, PODS, AgentProcess, pull_secret, storage_pod
from tests.support.registry import Registry, basic_auth
from tests.support.stores import StorePaths
from tests.support.waiting import wait_for

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
    # Other tests' own folders under pytest's base (a fixture's auth.json of the shared
    # test registry) are theirs, not podstore's: only this test's folders are read there.
    mine = [str(r) for r in roots if "pytest-of-" in str(r)]
    hits = []
    for root in roots:
        for folder, dirs, files in os.walk(root):
            if "pytest-of-" in folder and not any(
                folder.startswith(m) or m.startswith(folder) for m in mine
            ):
                dirs[:] = []
                continue
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


def _words(registry: Registry) -> list[bytes]:
    """The password, and the ``user:password`` of an Authorization header or auth file."""
    assert registry.username is not None
    assert registry.password is not None
    return [registry.password.encode(), basic_auth(registry.username, registry.password).encode()]


class ProcWatch:
    """Looks at every process's command line and environment while a block runs."""

    def __init__(self, words: list[bytes]) -> None:
        self.words = words
        self.hits: set[str] = set()
        self.skopeo_seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.hits.update(_in_proc(self.words))
            if not self.skopeo_seen:
                self.skopeo_seen = any(a[0].endswith(b"skopeo") for _, a in _processes() if a)
            self._stop.wait(0.01)

    def __enter__(self) -> ProcWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_an_authenticated_pull_shows_the_password_nowhere(
    store_root: StorePaths, manifests: Path, auth_registry: Registry, image_layout: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    words = _words(auth_registry)
    image = auth_registry.ref("busybox:1")
    write(manifests / "secret.yaml", pull_secret("regcred", auth_registry))
    write(
        manifests / "web.yaml",
        pod("web", image_layout.pause_oci, template("app", image),
            imagePullSecrets=[{"name": "regcred"}]),
    )  # fmt: skip

    with ProcWatch(words) as seen:
        done = run_once(
            store_root, manifests, "-o", "json", "--log-level", "DEBUG",
            insecure=auth_registry.host,
        )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert by_name(json.loads(done.stdout))["StorageContainer/web-app"]["status"]["phase"] == (
        "Started"
    )
    assert "skopeo copy" in done.stderr  # the pull was logged at DEBUG ...
    for word in words:  # ... and nothing of the credentials with it
        assert word.decode() not in done.stderr
        assert word.decode() not in done.stdout
        assert word not in state_file(store_root).read_bytes()
    assert seen.hits == set()
    roots = [Path("/tmp"), Path("/dev/shm"), store_root.root, store_root.run_root, tmp_path]
    assert _on_disk(roots, words) == []


@pytest.mark.e2e
def test_an_agent_pulling_with_a_secret_shows_the_password_nowhere(
    kube: Any, store: Any, images: Any, auth_registry: Registry, tmp_path: Path
) -> None:
    words = _words(auth_registry)
    agent = AgentProcess(kube, store, images, tmp_path / "agent.log")
    agent.args += ["--insecure-registry", auth_registry.host, "--log-level", "DEBUG"]
    kube.create(pull_secret("regcred", auth_registry))
    app = {"name": "app", "image": auth_registry.ref("busybox:1")}
    with ProcWatch(words) as seen, agent:
        kube.create(storage_pod("web", containers=[app], imagePullSecrets=[{"name": "regcred"}]))

        def started() -> bool:
            obj = kube.get(CONTAINERS, NAMESPACE, "web-app") or {}
            return (obj.get("status") or {}).get("phase") == "Started"

        wait_for("web-app to be Started", started, timeout=90)
    log = agent.log()
    assert "skopeo copy" in log
    shown = json.dumps(
        [
            kube.list(PODS, NAMESPACE),
            kube.list(CONTAINERS, NAMESPACE),
            kube.list("events", NAMESPACE),
        ]
    )
    for word in words:
        assert word.decode() not in log
        assert word.decode() not in shown
    assert seen.hits == set()
    roots = [Path("/tmp"), Path("/dev/shm"), Path(store.root), Path(store.run_root)]
    # The test's own kubeconfig and agent log are under tmp_path: the log is checked above.
    assert _on_disk(roots, words) == []


@pytest.mark.e2e
def test_an_agent_killed_mid_pull_leaves_no_credentials_anywhere(
    kube: Any, store: Any, images: Any, hanging_registry: str, tmp_path: Path
) -> None:
    password = "pw-agent-crash-" + secrets.token_hex(12)
    auth = base64.b64encode(f"podstore:{password}".encode())
    words = [password.encode(), auth]
    hanging = Registry(hanging_registry, tmp_path, tmp_path / "none.log", "podstore", password)
    agent = AgentProcess(kube, store, images, tmp_path / "agent.log")
    agent.args += ["--insecure-registry", hanging_registry]
    kube.create(pull_secret("regcred", hanging))
    app = {"name": "app", "image": f"{hanging_registry}/busybox:1"}
    with agent:
        kube.create(storage_pod("web", containers=[app], imagePullSecrets=[{"name": "regcred"}]))

        def pulling() -> int | None:
            for pid, argv in _processes():
                if argv[0].endswith(b"skopeo") and any(
                    hanging_registry.encode() in a for a in argv
                ):
                    return pid
            return None

        skopeo = wait_for("skopeo to pull from the hanging registry", pulling, timeout=90)
        assert _in_proc(words) == []
        agent.kill()
        os.kill(skopeo, signal.SIGKILL)
    roots = [Path("/tmp"), Path("/dev/shm"), Path(store.root), Path(store.run_root)]
    assert _on_disk(roots, words) == []
    assert _in_proc(words) == []
