"""The agent's own API client: credentials from kubeconfigs and the service account, and
requests and watches against a local HTTP server."""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from controller.handlers import apiclient
from controller.handlers.apiclient import ApiClient, ApiError, ConfigError, Credentials


def write_kubeconfig(path: Path, user: dict[str, Any], cluster: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "mine",
        "contexts": [
            {"name": "other", "context": {"cluster": "nope", "user": "nope"}},
            {"name": "mine", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
        ],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_kubeconfig_with_a_token_gives_its_current_contexts_server_and_token(tmp_path):
    path = write_kubeconfig(
        tmp_path / "config",
        {"token": "t0k"},
        {"server": "https://api.example:6443/", "certificate-authority": "ca.pem"},
    )
    cred = apiclient.from_kubeconfig(str(path))
    assert cred.server == "https://api.example:6443"
    assert cred.ca_path == str(tmp_path / "ca.pem")
    info = cred.connection_info()
    assert info["token"] == "t0k"
    assert info["scheme"] == "Bearer"
    assert info["default_namespace"] == "team"


def test_certificate_data_is_decoded_and_never_a_file(tmp_path):
    pem = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    data = base64.b64encode(pem).decode()
    path = write_kubeconfig(
        tmp_path / "config",
        {"client-certificate-data": data, "client-key-data": data},
        {"server": "https://h", "certificate-authority-data": data},
    )
    cred = apiclient.from_kubeconfig(str(path))
    assert cred.ca_data == pem
    assert cred.certificate_data == pem
    assert cred.private_key_data == pem
    assert cred.certificate_path is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_a_kubeconfig_without_the_current_context_is_a_config_error(tmp_path):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({"current-context": "gone", "contexts": []}))
    with pytest.raises(ConfigError, match="no context named 'gone'"):
        apiclient.from_kubeconfig(str(path))


def test_a_kubeconfig_with_an_exec_plugin_goes_to_the_kubernetes_loader(tmp_path, monkeypatch):
    path = write_kubeconfig(
        tmp_path / "config", {"exec": {"command": "aws"}}, {"server": "https://h"}
    )
    handed: list[str] = []
    monkeypatch.setattr(
        apiclient,
        "_from_kubernetes_loader",
        lambda p: handed.append(p) or Credentials(server="https://h"),
    )
    assert apiclient.from_kubeconfig(str(path)).server == "https://h"
    assert handed == [str(path)]


def test_the_service_account_is_read_where_the_kubelet_mounts_it(tmp_path):
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "namespace").write_text("podstore-system")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    cred = apiclient.in_cluster(env, str(tmp_path))
    assert cred.server == "https://[fd00::1]:443"
    assert cred.ca_path == str(tmp_path / "ca.crt")
    assert cred.connection_info()["token"] == "sa-token"
    assert cred.default_namespace == "podstore-system"


def test_outside_a_cluster_there_is_no_service_account(tmp_path):
    with pytest.raises(ConfigError):
        apiclient.in_cluster({}, str(tmp_path))


def test_an_api_error_says_the_status_and_the_servers_message():
    err = ApiError(
        409, "Conflict", json.dumps({"message": "the object has been modified"}).encode()
    )
    assert err.status == 409
    assert str(err) == "HTTP 409 Conflict: the object has been modified"
    assert (
        str(ApiError(500, "Internal Server Error", b"<html>")) == "HTTP 500 Internal Server Error"
    )


# -- against a server -----------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, dict(self.headers), body))

    def do_GET(self) -> None:
        self._record()
        if "watch=true" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            for i in range(2):
                event = {"type": "ADDED", "object": {"metadata": {"name": f"c{i}"}}}
                self.wfile.write(json.dumps(event).encode() + b"\n")
                self.wfile.flush()
            threading.Event().wait(5)  # then hangs, as a watch does, until stopped
            return
        if self.path.endswith("/missing"):
            self._answer(404, {"kind": "Status", "message": "not found"})
            return
        self._answer(200, {"items": [], "metadata": {"resourceVersion": "7"}})

    def do_PATCH(self) -> None:
        self._record()
        self._answer(200, {"ok": True})


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_requests_carry_the_token_and_a_merge_patch_says_so(server):
    api = ApiClient(Credentials(server=server, token="t0k"))
    found = api.request("GET", "/apis/g/v1/things", query={"labelSelector": "a=b", "x": ""})
    assert found["metadata"]["resourceVersion"] == "7"
    api.request(
        "PATCH",
        "/apis/g/v1/things/t",
        body={"spec": {}},
        content_type="application/merge-patch+json",
    )
    (get, patch) = Handler.seen
    assert get[1] == "/apis/g/v1/things?labelSelector=a%3Db"
    assert get[2]["Authorization"] == "Bearer t0k"
    assert patch[2]["Content-Type"] == "application/merge-patch+json"
    assert json.loads(patch[3]) == {"spec": {}}
    api.close()


def test_an_error_status_is_an_api_error_with_its_status(server):
    api = ApiClient(Credentials(server=server))
    with pytest.raises(ApiError) as caught:
        api.request("GET", "/apis/g/v1/things/missing")
    assert caught.value.status == 404
    # The connection is still good for the next request.
    assert api.request("GET", "/apis/g/v1/things")["items"] == []


def test_a_watch_yields_events_and_stops_from_another_thread(server):
    api = ApiClient(Credentials(server=server))
    events, stop = api.watch("/apis/g/v1/things", {"resourceVersion": "7"}, timeout=30)
    names = []
    for event in events:
        names.append(event["object"]["metadata"]["name"])
        if len(names) == 2:
            threading.Timer(0.2, stop).start()
    assert names == ["c0", "c1"]
    assert "watch=true" in Handler.seen[0][1]
    assert "resourceVersion=7" in Handler.seen[0][1]


def test_a_plugin_kubeconfig_without_the_kubernetes_package_names_the_extra(tmp_path, monkeypatch):
    path = write_kubeconfig(
        tmp_path / "config", {"exec": {"command": "aws"}}, {"server": "https://h"}
    )
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # import kubernetes: ImportError
    with pytest.raises(ConfigError, match=r"exec or auth-provider plugin.*podstore\[kubeconfig\]"):
        apiclient.from_kubeconfig(str(path))
