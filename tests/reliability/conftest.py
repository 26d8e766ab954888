"""Fixtures of the reliability suite: those of the command-line tests, reused."""

from __future__ import annotations

from tests.cli.conftest import manifests, refs

__all__ = ["manifests", "refs"]
