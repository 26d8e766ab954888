"""Fixtures of the command-line tests (the store, images and registries come from
``tests/conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.images import LocalImages


@dataclass(frozen=True)
class Refs:
    """Image references that need no registry: ``oci:`` paths into the test layout."""

    busybox: str
    busybox2: str
    pause: str


@pytest.fixture
def refs(image_layout: LocalImages) -> Refs:
    return Refs(image_layout.busybox_oci, image_layout.busybox2_oci, image_layout.pause_oci)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """An empty folder for the manifests that ``podstore run -f`` reads."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    return folder
