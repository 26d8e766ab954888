"""The image-GC settings: the kubelet's flags, their PODSTORE_* variables, their checks;
and the parsers of the GC executor (store timestamps, containers' creation)."""

from __future__ import annotations

import pytest

from controller import cli, config
from controller.storage import StorageContainer
from controller.sync.imagegc import container_created, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2m", 120.0, id="minutes"),
        pytest.param("90s", 90.0, id="seconds"),
        pytest.param("1h30m", 5400.0, id="hours-and-minutes"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1.5h", 5400.0, id="a-fraction"),
        pytest.param("30", 30.0, id="a-bare-number-is-seconds"),
        pytest.param("0", 0.0, id="zero"),
    ],
)
def test_durations_are_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 m", "m", "2d", "-1", "1m-", "soon"])
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        config.parse_duration(text)


def settings(argv: list[str], env: dict[str, str] | None = None) -> config.Settings:
    parsed = cli.build_parser(env or {}).parse_args(["rmi", "--prune", *argv])
    assert config.check_arguments(parsed) is None
    return config.settings_from_args(parsed)


def test_the_defaults_are_the_kubelets() -> None:
    found = settings([])
    assert (found.image_gc_high_threshold, found.image_gc_low_threshold) == (85, 80)
    assert found.image_minimum_gc_age == 120.0
    assert found.pinned_images == ()
    assert not found.image_gc_all


def test_flags_win_over_the_environment() -> None:
    env = {
        "PODSTORE_IMAGE_GC_HIGH_THRESHOLD": "90",
        "PODSTORE_IMAGE_GC_LOW_THRESHOLD": "50",
        "PODSTORE_IMAGE_MINIMUM_GC_AGE": "1h",
        "PODSTORE_PINNED_IMAGES": "a/b:1,c/d:2",
        "PODSTORE_IMAGE_GC_ALL": "true",
    }
    found = settings([], env)
    assert found.image_gc_high_threshold == 90
    assert found.image_minimum_gc_age == 3600.0
    assert found.pinned_images == ("a/b:1", "c/d:2")
    assert found.image_gc_all
    assert settings(["--image-gc-high-threshold", "95"], env).image_gc_high_threshold == 95


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("IMAGE_GC_HIGH_THRESHOLD", "101", id="a-percentage-over-100"),
        pytest.param("IMAGE_GC_LOW_THRESHOLD", "x", id="not-a-number"),
        pytest.param("IMAGE_MINIMUM_GC_AGE", "later", id="not-a-duration"),
        pytest.param("IMAGE_GC_ALL", "maybe", id="not-a-boolean"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(SystemExit, match=f"PODSTORE_{name}"):
        cli.build_parser({f"PODSTORE_{name}": value})


def test_a_low_threshold_above_the_high_one_is_refused() -> None:
    parsed = cli.build_parser({}).parse_args(
        ["rmi", "--prune", "--image-gc-high-threshold", "50", "--image-gc-low-threshold", "60"]
    )
    assert "must not be above" in (config.check_arguments(parsed) or "")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("2026-12-02T18:38:41.118513165Z", 1796236721.118513165, id="nanoseconds"),
        pytest.param("2026-12-02T18:38:41Z", 1796236721.0, id="whole-seconds"),
        pytest.param("2026-12-02T19:38:41+01:00", 1796236721.0, id="an-offset"),
        pytest.param("", 0.0, id="empty"),
        pytest.param("yesterday", 0.0, id="not-a-time"),
        pytest.param("2026-13-02T18:38:41Z", 0.0, id="no-such-month"),
    ],
)
def test_store_timestamps_are_parsed(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("metadata", "created", "seconds"),
    [
        pytest.param('{"created-at": 1000}', "2026-12-02T18:38:41Z", 1000.0, id="podstores"),
        pytest.param("{}", "2026-12-02T18:38:41Z", 1796236721.0, id="another-tools"),
        pytest.param("not json", "2026-12-02T18:38:41Z", 1796236721.0, id="other-metadata"),
        pytest.param('{"created-at": true}', "", 0.0, id="nothing-usable"),
    ],
)
def test_a_containers_creation_is_podstores_created_at_else_the_stores(
    metadata: str, created: str, seconds: float
) -> None:
    container = StorageContainer("c" * 64, (), "i" * 64, "l", metadata, created)
    assert container_created(container) == seconds
