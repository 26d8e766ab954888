"""Polling for an outcome in tests that drive a process from outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true and return that; fail naming ``what``.

    A bound on a wait, not a measurement: it only ends a test that would hang.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
