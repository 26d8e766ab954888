"""Fixtures of the reliability suite: those of the command-line tests and the API
emulator of the e2e tests, reused; and the figures of each run in pytest's summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The e2e conftest imports the emulator as a top-level module, as pytest does there.
_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from tests.cli.conftest import manifests, refs  # noqa: E402
from tests.e2e.conftest import kube  # noqa: E402
from tests.reliability.kill9 import REPORT  # noqa: E402

__all__ = ["kube", "manifests", "refs"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("reliability figures")
        for line in REPORT:
            terminalreporter.write_line(line)
