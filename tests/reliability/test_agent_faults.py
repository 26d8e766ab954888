"""The agent under a store that another process keeps locked (issue 12, defect 7), or
on a full disk (defect 6): it says so in the object's status (naming the holder and
the lock file, or the full filesystem), keeps trying, and finishes by itself once the
lock is released or space freed. The agent runs as ``python -m controller agent``
against the API emulator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent import NAMESPACE, PODS, AgentProcess, storage_pod
from tests.reliability.test_disk_full import _fill, small_fs
from tests.reliability.test_store_lock import _hold
from tests.support.stores import temporary_store
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
__all__ = ["small_fs"]  # a fixture: a tmpfs of 64 MiB


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    return wait_for(what, check, timeout, every=0.2)


def _status(kube: Any, name: str) -> dict[str, Any]:
    obj = kube.get(PODS, NAMESPACE, name) or {}
    return dict(obj.get("status") or {})


def test_an_agent_on_a_locked_store_says_so_keeps_trying_and_recovers(
    kube: Any, store: Any, images: Any, tmp_path: Path
) -> None:
    agent = AgentProcess(kube, store, images, tmp_path / "agent.log")
    agent.args += ["--command-timeout", "2"]
    agent.start()
    try:
        kube.create(storage_pod("first"))
        _wait("the first pod", lambda: _status(kube, "first").get("phase") == "Ready")
        (path,) = Path(store.root).glob("*-containers/containers.lock")
        holder = _hold(path)
        proc = next(holder)
        try:
            kube.create(storage_pod("second"))

            def told() -> dict[str, Any] | None:
                status = _status(kube, "second")
                return status if "locked by another process" in status.get("message", "") else None

            status = _wait("a status naming the lock", told)
            assert status["phase"] == "Pending", status
            assert f"pid {proc.pid}" in status["message"], status
            assert str(path) in status["message"], status
            # It keeps trying (the reconciler's retry, 10 s) rather than giving up.
            _wait(
                "a second attempt",
                lambda: agent.log().count("locked by another process") >= 2,
                timeout=60,
            )
            assert agent.running()
        finally:
            holder.close()
        _wait(
            "the second pod once the lock is gone",
            lambda: _status(kube, "second").get("phase") == "Ready",
            timeout=60,
        )
        assert "Traceback" not in agent.log(), agent.log()[-4000:]
    finally:
        agent.stop()


def test_an_agent_on_a_full_disk_says_so_and_recovers_once_space_is_freed(
    kube: Any, small_fs: Path, images: Any, tmp_path: Path
) -> None:
    with temporary_store(small_fs / "store", "vfs") as store:
        agent = AgentProcess(kube, store, images, tmp_path / "agent.log")
        agent.start()
        try:
            kube.create(storage_pod("good"))
            _wait("the first pod", lambda: _status(kube, "good").get("phase") == "Ready")
            filler = _fill(small_fs)
            kube.create(storage_pod("more", containers=[{"name": "app", "image": images.busybox}]))

            def told() -> dict[str, Any] | None:
                status = _status(kube, "more")
                return status if "no space left on" in status.get("message", "") else None

            status = _wait("a status saying the disk is full", told)
            assert status["phase"] == "Pending", status
            assert str(small_fs) in status["message"], status
            assert _status(kube, "good")["phase"] == "Ready"
            filler.unlink()
            _wait(
                "the pod once space is freed",
                lambda: _status(kube, "more").get("phase") == "Ready",
                timeout=90,
            )
            assert agent.running()
            assert "Traceback" not in agent.log(), agent.log()[-4000:]
        finally:
            agent.stop()
