"""A registry that is down for a while, or hangs (issue 12): ``podstore run`` recovers
by itself once the registry is back, and a pull that hangs is stopped by
``--pull-timeout`` with a status that says so. The registry sits behind
:class:`tests.support.faulty.FaultyProxy`, which keeps its address throughout."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.common import REPO, argv, by_name, managed, pod, run_once, template, write
from tests.support.faulty import FaultyProxy
from tests.support.stores import StorePaths, is_mounted
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.cli, pytest.mark.integration]


@pytest.fixture
def proxy(images: Any) -> Iterator[FaultyProxy]:
    with FaultyProxy(images.registry_host) as faulty:
        yield faulty


def test_a_registry_down_then_back_is_pulled_from_without_help(
    store_root: StorePaths, manifests: Path, images: Any, proxy: FaultyProxy, tmp_path: Path
) -> None:
    proxy.set("down")
    write(
        manifests / "web.yaml",
        pod("web", proxy.ref(images.pause), template("app", proxy.ref(images.busybox))),
    )
    log = tmp_path / "run.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv(store_root, "run", "-f", str(manifests), "--node-name", "testnode",
                 "--poll-interval", "0.1", "--insecure-registry", proxy.host),
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        wait_for("a failed pull", lambda: "ErrImagePull" in log.read_text(), timeout=60)
        assert managed(store_root) == {}
        proxy.set("up")

        def running() -> bool:
            made = managed(store_root)
            return "web-app" in made and is_mounted(store_root, made["web-app"]["id"])

        # The kubelet's back-off: the next pull comes 10 s after the first failure.
        wait_for("the pod to be made once the registry is back", running, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, text
    assert proc.returncode == 0, text


def test_a_hanging_registry_is_given_up_on_at_the_pull_timeout(
    store_root: StorePaths, manifests: Path, images: Any, proxy: FaultyProxy
) -> None:
    proxy.set("hang")
    write(manifests / "web.yaml", pod("web", proxy.ref(images.pause)))

    done = run_once(
        store_root, manifests, "-o", "json", "--pull-timeout", "3", "--timeout", "5",
        insecure=proxy.host,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    status = by_name(json.loads(done.stdout))["StoragePod/web"]["status"]
    assert status["phase"] == "Pending", status
    assert status["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    assert "timed out after 3s (--pull-timeout)" in status["message"], status
    assert proxy.ref(images.pause) in status["message"], status
    assert managed(store_root) == {}
