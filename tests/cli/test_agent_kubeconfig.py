"""``podstore agent`` without a usable kubeconfig: one line naming the cause, an exit status
of its own, no traceback, and nothing made on the node (the store is not touched).

Each case runs the real command as a subprocess, as a DaemonSet's container would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.common import REPO

pytestmark = pytest.mark.cli

EXIT_UNAVAILABLE, EXIT_CONFIG = 69, 78


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubeconfig(server: str, *, current: str | None = "ctx", cluster: str = "c") -> dict:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "ctx", "context": {"cluster": cluster, "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "never-printed-token"}}],
    }
    if current is not None:
        config["current-context"] = current
    return config


def agent(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    environ.pop("KUBERNETES_SERVICE_HOST", None)
    environ["HOME"] = str(tmp_path / "home")  # no ~/.kube/config to fall back on
    environ.update(env or {})
    store = tmp_path / "store"
    command = [
        sys.executable, "-m", "controller", "agent", "--node-name", "node-a",
        "--root", str(store / "root"), "--runroot", str(store / "run"), "--driver", "vfs",
        "--health-port", "0", "--metrics-port", "0", *args,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
        stdin=subprocess.DEVNULL,
    )
    assert not store.exists(), "the agent touched the store before it could reach the API"
    return done


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CASES = [
    pytest.param(
        lambda tmp: ["--kubeconfig", str(tmp / "missing.yaml")],
        EXIT_CONFIG,
        ["missing.yaml does not exist", "--kubeconfig"],
        id="missing-file",
    ),
    pytest.param(
        lambda tmp: ["--kubeconfig", str(write(tmp, "bad.yaml", "clusters: [\n  - {name: c\n"))],
        EXIT_CONFIG,
        ["bad.yaml is not valid YAML (line", "fix the file"],
        id="bad-yaml",
    ),
    pytest.param(
        lambda tmp: ["--kubeconfig", str(write(tmp, "list.yaml", "- just\n- a list\n"))],
        EXIT_CONFIG,
        ["list.yaml is not a kubeconfig"],
        id="not-a-mapping",
    ),
    pytest.param(
        lambda tmp: [
            "--kubeconfig",
            str(write(tmp, "k.yaml", yaml.safe_dump(kubeconfig("http://x", current=None)))),
        ],
        EXIT_CONFIG,
        ["has no current-context", "kubectl config use-context"],
        id="no-current-context",
    ),
    pytest.param(
        lambda tmp: [
            "--kubeconfig",
            str(write(tmp, "k.yaml", yaml.safe_dump(kubeconfig("http://x", current="gone")))),
        ],
        EXIT_CONFIG,
        ["current-context 'gone' is not among its contexts"],
        id="unknown-current-context",
    ),
    pytest.param(
        lambda tmp: [
            "--kubeconfig",
            str(write(tmp, "k.yaml", yaml.safe_dump(kubeconfig("http://x", cluster="nope")))),
        ],
        EXIT_CONFIG,
        ["names cluster 'nope', which it does not define"],
        id="context-without-cluster",
    ),
    pytest.param(
        lambda tmp: [],
        EXIT_CONFIG,
        ["no kubeconfig", "--kubeconfig FILE or set KUBECONFIG"],
        id="none-at-all",
    ),
]


@pytest.mark.parametrize(("make_args", "status", "says"), CASES)
def test_an_agent_without_a_usable_kubeconfig_fails_with_one_line(
    tmp_path, make_args, status, says
):
    done = agent(tmp_path, *make_args(tmp_path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("podstore agent: "), lines
    for text in says:
        assert text in lines[0], lines[0]
    assert "never-printed-token" not in done.stderr + done.stdout


def test_an_agent_whose_api_server_does_not_answer_says_where_it_tried(tmp_path):
    server = f"http://127.0.0.1:{unused_port()}"
    path = write(tmp_path, "k.yaml", yaml.safe_dump(kubeconfig(server)))
    done = agent(tmp_path, env={"KUBECONFIG": str(path)})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == EXIT_UNAVAILABLE, done.stderr
    assert len(lines) == 1, done.stderr
    assert f"cannot reach the API server at {server}" in lines[0]
    assert "Connection refused" in lines[0]
    assert "Traceback" not in done.stderr
