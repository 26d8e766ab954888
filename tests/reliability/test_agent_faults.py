"""The agent under a store that another process keeps locked (issue 12, defect 7): it
says so in the object's status, naming the holder and the lock file, keeps trying,
and finishes by itself once the lock is released. The agent runs as ``python -m
controller agent`` against the API emulator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent import NAMESPACE, PODS, AgentProcess, storage_pod
from tests.reliability.test_store_lock import _hold

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


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
