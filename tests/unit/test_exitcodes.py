"""Which exit status a failure gives (``controller.exitcodes``)."""

from __future__ import annotations

import pytest

from controller import exitcodes
from controller.cli import build_parser
from controller.manifest.state import StateError
from controller.storage.errors import CommandError, ImagePullError, NoSpace, StoreLocked

LOCKED = StoreLocked("containers-storage", "mount", "/s/overlay-containers/containers.lock",
                     "pid 7 (podman)", 30.0)  # fmt: skip
FULL = NoSpace("containers-storage", "create-container", 1, "/var/lib/containers")


@pytest.mark.parametrize(
    ("err", "status"),
    [
        pytest.param(LOCKED, 75, id="a-held-store-lock-is-tempfail"),
        pytest.param(FULL, 74, id="no-space-is-ioerr"),
        pytest.param(ImagePullError("x:1", str(FULL)), 74, id="a-pull-that-ran-out-of-space"),
        pytest.param(StateError("another run holds it", "StoreLocked"), 75, id="a-held-state"),
        pytest.param(StateError("no space left on /run/x", "NoSpace"), 74, id="a-full-state"),
        pytest.param(CommandError("skopeo", "copy", 1, "manifest unknown"), 1, id="other"),
        pytest.param(ValueError("nothing to see"), 1, id="not-ours"),
    ],
)
def test_each_failure_maps_to_its_exit_status(err: BaseException, status: int) -> None:
    assert exitcodes.for_error(err) == status


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        pytest.param([], 1, id="nothing-known"),
        pytest.param(["bad", str(LOCKED)], 75, id="a-lock"),
        pytest.param([str(LOCKED), str(FULL), "bad"], 74, id="no-space-wins-over-a-lock"),
    ],
)
def test_the_most_specific_failure_gives_the_status(messages: list[str], status: int) -> None:
    assert exitcodes.for_failures(messages) == status


def test_the_statuses_are_distinct_and_listed_in_the_help() -> None:
    codes = [exitcodes.EXIT_FAILURE, exitcodes.EXIT_USAGE, exitcodes.EXIT_NO_SPACE,
             exitcodes.EXIT_STORE_LOCKED, exitcodes.EXIT_NO_PERMISSION]  # fmt: skip
    assert len(set(codes)) == len(codes)
    text = build_parser({}).format_help()
    for code in codes:
        assert f"\n  {code} " in text
    assert "locked by another process" in text
    assert "no space left" in text
