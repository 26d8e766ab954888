from __future__ import annotations

from collections.abc import Iterator

import helm_python as helm
import pytest

from .common import CHART


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    """The chart, loaded once; schema checks and metadata read it."""
    with helm.Chart.load(CHART) as loaded:
        yield loaded
