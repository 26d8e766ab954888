"""Fixtures shared by the storage layer's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.storage.command import CommandEvent, add_observer, remove_observer


@pytest.fixture
def skopeo_copies() -> Iterator[list[CommandEvent]]:
    """Every ``skopeo copy`` podstore runs while the test does."""
    seen: list[CommandEvent] = []

    def observe(event: CommandEvent) -> None:
        if event.tool == "skopeo" and event.verb == "copy":
            seen.append(event)

    add_observer(observe)
    yield seen
    remove_observer(observe)
