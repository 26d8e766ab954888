"""Throw-away image registries for the integration tests.

Pulls are the first thing podstore does with a pod, so the tests pull from a real
registry: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1, plain HTTP,
its storage in a temporary folder. One may require htpasswd basic auth, to test auth
files; :func:`dead_address` gives a ``host:port`` where nothing listens, to test
failing pulls.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.support.commands import run

log = logging.getLogger("tests.support.registry")

REGISTRY_BINARY = "/usr/bin/docker-registry"
#: Every test image lives under this repository namespace.
NAMESPACE = "podstore-test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_address() -> str:
    """``127.0.0.1:PORT`` where nothing listens: the port was bound, then released."""
    return f"127.0.0.1:{free_port()}"


@dataclass(frozen=True)
class DeadRegistry:
    """A registry address that refuses every connection; ``str()`` gives the host."""

    host: str

    def ref(self, name: str) -> str:
        """A reference into this (dead) registry, e.g. ``ref("busybox:1")``."""
        return f"{self.host}/{NAMESPACE}/{name}"

    def __str__(self) -> str:
        return self.host


def basic_auth(username: str, password: str) -> str:
    """The base64 ``user:pass`` used by auth files and ``Authorization: Basic``."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def write_auth_file(path: Path, host: str, username: str, password: str) -> Path:
    """Write a containers-auth.json granting ``username`` on ``host``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"auths": {host: {"auth": basic_auth(username, password)}}}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    path.chmod(0o600)
    return path


@dataclass
class Registry:
    """A running ``docker-registry``; stop it with :meth:`stop` (or use ``with``)."""

    host: str
    root: Path
    log_path: Path
    username: str | None = None
    password: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, name: str) -> str:
        """A docker reference in this registry: ``ref("busybox:1")`` ->
        ``127.0.0.1:PORT/podstore-test/busybox:1``."""
        return f"{self.host}/{NAMESPACE}/{name}"

    def write_auth_file(self, path: Path) -> Path:
        """Write a containers-auth.json with this registry's credentials at ``path``."""
        if self.username is None or self.password is None:
            raise ValueError(f"registry {self.host} has no credentials")
        return write_auth_file(path, self.host, self.username, self.password)

    def creds(self) -> str:
        """``user:pass`` for skopeo's ``--creds``/``--dest-creds``."""
        if self.username is None or self.password is None:
            raise ValueError(f"registry {self.host} has no credentials")
        return f"{self.username}:{self.password}"

    def get(self, path: str, *, auth: bool = True, timeout: float = 5) -> int:
        """HTTP status of ``GET url+path`` (with the credentials unless ``auth=False``)."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - http://127.0.0.1 only
        if auth and self.username is not None and self.password is not None:
            request.add_header("Authorization", "Basic " + basic_auth(self.username, self.password))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        """Terminate the server, then kill it if it lingers. Safe to repeat."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("registry %s ignored SIGTERM for %ss; killing it", self.host, timeout)
            proc.kill()
            proc.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config(root: Path, host: str, htpasswd: Path | None) -> dict[str, object]:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            # No background goroutines scanning the (tiny, short-lived) storage.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": host, "secret": "podstore-test-secret"},
        "health": {"storagedriver": {"enabled": False}},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "podstore-test", "path": str(htpasswd)}}
    return config


def _write_htpasswd(path: Path, username: str, password: str) -> None:
    # distribution's htpasswd only accepts bcrypt entries.
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{username}:{hashed}\n")


def start_registry(
    root: Path,
    *,
    credentials: tuple[str, str] | None = None,
    timeout: float = 30,
    attempts: int = 3,
) -> Registry:
    """Start a registry keeping its data and log under ``root`` and wait until it serves.

    With ``credentials`` (user, password) it requires basic auth. It is ready when
    ``GET /v2/`` answers 200 (with the credentials); if it never does within
    ``timeout`` seconds the error carries the registry's log. A port taken between
    :func:`free_port` and the server's bind is retried on another port.
    """
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if credentials is not None:
        htpasswd = root / "htpasswd"
        _write_htpasswd(htpasswd, *credentials)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    last_error = ""
    for attempt in range(1, attempts + 1):
        host = f"127.0.0.1:{free_port()}"
        config_path = root / "config.yml"
        # JSON is YAML: no YAML writer needed.
        config_path.write_text(json.dumps(_config(root, host, htpasswd), indent=2))
        log_path = root / f"registry-{attempt}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        user, password = credentials if credentials is not None else (None, None)
        registry = Registry(host, root, log_path, user, password, proc)
        try:
            _wait_until_serving(registry, proc, timeout)
        except _Exited:
            last_error = registry.log_text()
            registry.stop()
            if "address already in use" in last_error:
                log.info("registry port %s was taken; retrying", host)
                continue
            raise RuntimeError(
                f"docker-registry exited before serving on {host}; its log:\n{last_error}"
            ) from None
        except BaseException:
            registry.stop()
            raise
        log.info("registry serving on %s (data in %s)", host, root)
        return registry
    raise RuntimeError(f"docker-registry could not bind a port; last log:\n{last_error}")


class _Exited(Exception):
    pass


def _wait_until_serving(registry: Registry, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status: int | str = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _Exited
        try:
            status = registry.get("/v2/", timeout=2)
        except (urllib.error.URLError, OSError) as err:
            status = str(err)
        if status == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"docker-registry on {registry.host} did not answer 200 on /v2/ within {timeout}s "
        f"(last: {status}); its log:\n{registry.log_text()}"
    )


def push(source: str, registry: Registry, name: str, *, timeout: float = 120) -> str:
    """``skopeo copy`` ``source`` (e.g. ``oci:LAYOUT:TAG``) to ``registry.ref(name)``."""
    dest = registry.ref(name)
    args = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if registry.username is not None:
        args.append(f"--dest-creds={registry.creds()}")
    run([*args, source, f"docker://{dest}"], timeout=timeout)
    return dest
