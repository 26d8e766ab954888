"""A small synchronous Kubernetes API client for the agent's own calls.

The agent makes a dozen kinds of request (custom objects, one secret by name, one
watch); kopf makes the rest with its own client. The ``kubernetes`` package would do
them too, but importing it (its pydantic models, its dynamic client that pulls in
jsonschema) costs the agent about 20 MB of its resident memory for the whole of its
life, a third of an idle agent. This client is ``http.client`` with one keep-alive
connection per thread.

Credentials come from the in-cluster service account or a kubeconfig (token, token
file, client certificate, basic auth, CA). A kubeconfig that needs more (``exec``
or ``auth-provider`` plugins, several files in one KUBECONFIG) is handed to the
``kubernetes`` package's loader, imported only then. Certificate and key data are
kept in memory files (memfd), never written to disk.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import yaml

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
# Seconds a request may take (a watch: its own timeout plus this).
REQUEST_TIMEOUT = 60.0
# A token read from a file is read again this often (bound service-account tokens rotate).
TOKEN_REREAD = 60.0


class ApiError(Exception):
    """The API server answered with an HTTP error status."""

    def __init__(self, status: int, reason: str, body: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        self.body = body
        message = ""
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(body).get("message") or "")
        super().__init__(f"HTTP {status} {reason}" + (f": {message}" if message else ""))


class ConfigError(Exception):
    """No usable credentials: not in a cluster and no usable kubeconfig."""


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are; the fields of kopf's
    ConnectionInfo."""

    server: str
    ca_path: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    username: str | None = None
    password: str | None = None
    scheme: str | None = None
    token: str | None = None
    token_file: str | None = None
    certificate_path: str | None = None
    certificate_data: bytes | None = None
    private_key_path: str | None = None
    private_key_data: bytes | None = None
    default_namespace: str | None = None

    def connection_info(self) -> dict[str, Any]:
        """kopf.ConnectionInfo's keyword arguments (the token as it is now)."""
        token = self.token
        if self.token_file:
            token = _read_token(self.token_file)
        return {
            "server": self.server,
            "ca_path": self.ca_path,
            "ca_data": self.ca_data,
            "insecure": self.insecure,
            "username": self.username,
            "password": self.password,
            "scheme": self.scheme or ("Bearer" if token else None),
            "token": token,
            "certificate_path": self.certificate_path,
            "certificate_data": self.certificate_data,
            "private_key_path": self.private_key_path,
            "private_key_data": self.private_key_data,
            "default_namespace": self.default_namespace,
        }


# -- loading credentials ------------------------------------------------------------------


def load(kubeconfig: str = "") -> Credentials:
    """The given kubeconfig, else the in-cluster service account, else ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig(kubeconfig)
    try:
        return in_cluster()
    except ConfigError:
        default = os.path.expanduser("~/.kube/config")
        if os.path.isfile(default):
            return from_kubeconfig(default)
        raise


def in_cluster(env: Mapping[str, str] | None = None, base: str = SERVICE_ACCOUNT) -> Credentials:
    """The pod's service account, as the kubelet mounts it."""
    source = os.environ if env is None else env
    host = source.get("KUBERNETES_SERVICE_HOST", "")
    port = source.get("KUBERNETES_SERVICE_PORT", "")
    token_file = os.path.join(base, "token")
    if not host or not port or not os.path.isfile(token_file):
        raise ConfigError("not running in a cluster (no service host or service account token)")
    if ":" in host:
        host = f"[{host}]"
    ca = os.path.join(base, "ca.crt")
    namespace_file = os.path.join(base, "namespace")
    namespace = None
    if os.path.isfile(namespace_file):
        with open(namespace_file, encoding="utf-8") as handle:
            namespace = handle.read().strip() or None
    return Credentials(
        server=f"https://{host}:{port}",
        ca_path=ca if os.path.isfile(ca) else None,
        token_file=token_file,
        scheme="Bearer",
        default_namespace=namespace,
    )


def from_kubeconfig(path: str) -> Credentials:
    """The current context of a kubeconfig file."""
    if os.pathsep in path:
        return _from_kubernetes_loader(path)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read kubeconfig {path}: {err}") from err
    if not isinstance(doc, Mapping):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    context_name = doc.get("current-context")
    context = _named(doc, "contexts", context_name, "context", path)
    cluster = _named(doc, "clusters", context.get("cluster"), "cluster", path)
    user = _named(doc, "users", context.get("user"), "user", path) if context.get("user") else {}
    if user.get("exec") or user.get("auth-provider"):
        return _from_kubernetes_loader(path)
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {path}: cluster {context.get('cluster')!r} has no server")
    folder = os.path.dirname(os.path.abspath(path))

    def file_of(key: str) -> str | None:
        value = user.get(key) if key in user else cluster.get(key)
        if not value:
            return None
        return value if os.path.isabs(value) else os.path.join(folder, value)

    def data_of(where: Mapping[str, Any], key: str) -> bytes | None:
        value = where.get(key)
        return base64.b64decode(value) if value else None

    token = user.get("token")
    return Credentials(
        server=server.rstrip("/"),
        ca_path=file_of("certificate-authority"),
        ca_data=data_of(cluster, "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        username=user.get("username"),
        password=user.get("password"),
        token=str(token) if token else None,
        token_file=file_of("tokenFile"),
        certificate_path=file_of("client-certificate"),
        certificate_data=data_of(user, "client-certificate-data"),
        private_key_path=file_of("client-key"),
        private_key_data=data_of(user, "client-key-data"),
        default_namespace=context.get("namespace"),
    )


def _named(doc: Mapping[str, Any], section: str, name: Any, key: str, path: str) -> dict[str, Any]:
    for entry in doc.get(section) or ():
        if isinstance(entry, Mapping) and entry.get("name") == name:
            value = entry.get(key) or {}
            return dict(value) if isinstance(value, Mapping) else {}
    raise ConfigError(f"kubeconfig {path}: no {key} named {name!r}")


def _from_kubernetes_loader(path: str) -> Credentials:
    """A kubeconfig this module does not read itself, through the kubernetes package."""
    try:  # only for plugins and merged kubeconfigs: the optional extra podstore[kubeconfig]
        from kubernetes import client, config
    except ImportError:
        raise ConfigError(
            f"kubeconfig {path} needs an exec or auth-provider plugin, or merges several files,"
            " which podstore reads through the kubernetes package: pip install"
            " 'podstore[kubeconfig]', or give a kubeconfig with a token or client certificate"
        ) from None

    log.info("kubeconfig %s needs the kubernetes package's loader (plugin or several files)", path)
    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return Credentials(
        server=str(cfg.host).rstrip("/"),
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _read_token(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError as err:
        log.warning("cannot read the API token in %s: %s", path, err.strerror)
        return None


def _memory_file(data: bytes, name: str) -> tuple[int, str]:
    """A file in memory holding ``data`` (for ssl, which loads certificates by path)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd, f"/proc/self/fd/{fd}"


# -- the client ---------------------------------------------------------------------------


@dataclass
class _Token:
    value: str | None = None
    read_at: float = 0.0


@dataclass
class ApiClient:
    """Requests to one API server with one set of credentials."""

    credentials: Credentials
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _fds: list[int] = field(default_factory=list, repr=False)
    _token: _Token = field(default_factory=_Token, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.credentials.server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"API server {self.credentials.server!r} is not an http(s) URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.context = self._ssl_context() if self.https else None

    def _ssl_context(self) -> ssl.SSLContext:
        cred = self.credentials
        ctx = ssl.create_default_context(
            cafile=cred.ca_path, cadata=cred.ca_data.decode() if cred.ca_data else None
        )
        if cred.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        cert, key = cred.certificate_path, cred.private_key_path
        if cred.certificate_data:
            fd, cert = _memory_file(cred.certificate_data, "podstore-client-cert")
            self._fds.append(fd)
        if cred.private_key_data:
            fd, key = _memory_file(cred.private_key_data, "podstore-client-key")
            self._fds.append(fd)
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx

    def close(self) -> None:
        self._drop()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    # -- requests ---------------------------------------------------------------------

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "podstore-agent"}
        cred = self.credentials
        token = cred.token
        if cred.token_file:
            with self._lock:
                now = time.monotonic()
                if self._token.value is None or now - self._token.read_at > TOKEN_REREAD:
                    self._token = _Token(_read_token(cred.token_file), now)
                token = self._token.value
        if token:
            headers["Authorization"] = f"{cred.scheme or 'Bearer'} {token}"
        elif cred.username:
            pair = f"{cred.username}:{cred.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(REQUEST_TIMEOUT)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        wanted = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return self.prefix + path + (f"?{urlencode(wanted)}" if wanted else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """One request; the answer's JSON. Raises ApiError on an HTTP error status.

        With ``timeout``, on a connection of its own that gives up after that long
        (a health check must not wait the default request timeout)."""
        data = None if body is None else json.dumps(body).encode()
        headers = self._headers(content_type if data is not None else None)
        url = self.url(path, query)
        if timeout is not None:
            own = self._connect(timeout)
            try:
                own.request(method, url, body=data, headers=headers)
                response = own.getresponse()
                raw = response.read()
            finally:
                own.close()
            if response.status >= 400:
                raise ApiError(response.status, response.reason, raw)
            return json.loads(raw) if raw else None
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, url, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed meanwhile: once more, anew.
                self._drop()
                if attempt == 2:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self._drop()
                raise
            if response.will_close:
                self._drop()
            if response.status >= 400:
                raise ApiError(response.status, response.reason, raw)
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def watch(
        self, path: str, query: Mapping[str, Any], timeout: float
    ) -> tuple[Iterator[dict[str, Any]], Callable[[], None]]:
        """A watch: an iterator of its events (dicts with ``type`` and ``object``) and a
        function that stops it from another thread."""
        conn = self._connect(timeout + REQUEST_TIMEOUT)
        stopped = threading.Event()
        # The socket, kept here: http.client hands it to the response (and forgets it)
        # when the server will close the connection at the end.
        sockets: list[socket.socket] = []

        def stop() -> None:
            stopped.set()
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        def events() -> Iterator[dict[str, Any]]:
            try:
                conn.request(
                    "GET", self.url(path, {**query, "watch": "true"}), headers=self._headers(None)
                )
                if conn.sock is not None:
                    sockets.append(conn.sock)
                if stopped.is_set():
                    return
                response = conn.getresponse()
                if response.status >= 400:
                    raise ApiError(response.status, response.reason, response.read())
                while not stopped.is_set():
                    try:
                        line = response.readline()
                    except (OSError, http.client.HTTPException, ValueError):
                        if stopped.is_set():
                            return
                        raise
                    if not line:
                        return
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
            finally:
                conn.close()

        return events(), stop


__all__ = [
    "ApiClient",
    "ApiError",
    "ConfigError",
    "Credentials",
    "from_kubeconfig",
    "in_cluster",
    "load",
]
