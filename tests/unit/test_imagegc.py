"""The image-GC plan, pinned decision by decision (the kubelet's image GC, podstore's terms)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from controller.reconcile import imagegc
from controller.reconcile.imagegc import FsUsage, GCInput, GCPolicy, ImageRecord, plan

MB = 1_000_000
NOW = 1_000_000.0
OLD = NOW - 3600


def image(
    name: str,
    *,
    mb: int = 10,
    last_used: float = 0.0,
    created: float = OLD,
    pulled: bool = True,
    layers: tuple[tuple[str, int], ...] | None = None,
) -> ImageRecord:
    return ImageRecord(
        id=name * 8 if len(name) < 8 else name,
        names=(f"localhost/{name}:1",),
        layers=layers if layers is not None else ((f"layer-{name}", mb * MB),),
        last_used=last_used,
        created=created,
        pulled=pulled,
    )


A = image("a", last_used=NOW - 300)
B = image("b", last_used=NOW - 200)
C = image("c", last_used=NOW - 100)


def gc_input(
    images: tuple[ImageRecord, ...] = (A, B, C),
    *,
    used_mb: int = 90,
    total_mb: int = 100,
    in_use: tuple[str, ...] = (),
    pinned: tuple[str, ...] = (),
    wanted: tuple[str, ...] = (),
    **policy: object,
) -> GCInput:
    return GCInput(
        images=images,
        in_use=frozenset(in_use),
        pinned=frozenset(pinned),
        wanted=frozenset(wanted),
        usage=FsUsage(used=used_mb * MB, total=total_mb * MB),
        policy=replace(GCPolicy(), **policy),  # type: ignore[arg-type]
        now=NOW,
    )


def removed(gc: GCInput) -> list[str]:
    return [r.names[0].split("/")[1].split(":")[0] for r in plan(gc).removals]


def kept_why(gc: GCInput) -> dict[str, str]:
    return {k.names[0].split("/")[1].split(":")[0]: k.why for k in plan(gc).kept}


@pytest.mark.parametrize(
    ("gc", "gone"),
    [
        pytest.param(gc_input(used_mb=84), [], id="under-the-high-threshold-nothing-goes"),
        pytest.param(gc_input(used_mb=85), ["a"], id="at-the-high-threshold-a-pass-is-due"),
        pytest.param(gc_input(used_mb=90), ["a"], id="least-recently-used-first-until-under-low"),
        pytest.param(gc_input(used_mb=95), ["a", "b"], id="more-over-more-removed"),
        pytest.param(
            gc_input(used_mb=100, low_threshold=75), ["a", "b", "c"], id="everything-removable-goes"
        ),
        pytest.param(
            gc_input((C, A, B), used_mb=95), ["a", "b"], id="order-of-input-is-irrelevant"
        ),
        pytest.param(gc_input(in_use=(A.id,)), ["b"], id="an-image-in-use-stays"),
        pytest.param(gc_input(pinned=(A.id,)), ["b"], id="a-pinned-id-stays"),
        pytest.param(gc_input(pinned=("localhost/a:1",)), ["b"], id="a-pinned-name-stays"),
        pytest.param(
            gc_input(wanted=("localhost/a:1",)), ["b"], id="an-image-about-to-be-used-stays"
        ),
        pytest.param(
            gc_input((replace(A, pulled=False), B, C)), ["b"], id="another-tools-image-stays"
        ),
        pytest.param(
            gc_input((replace(A, pulled=False), B, C), gc_all=True),
            ["a"],
            id="gc-all-removes-another-tools-image",
        ),
        pytest.param(
            gc_input((replace(A, created=NOW - 60), B, C)), ["b"], id="a-young-image-stays"
        ),
        pytest.param(
            gc_input((replace(A, created=NOW - 60),), minimum_age=30.0),
            ["a"],
            id="the-minimum-age-is-a-setting",
        ),
        pytest.param(gc_input((replace(A, created=NOW - 60),)), [], id="by-default-two-minutes"),
        pytest.param(
            gc_input((image("a", last_used=0, created=NOW - 7200), B, C)),
            ["a"],
            id="never-used-counts-from-its-arrival",
        ),
        pytest.param(
            gc_input((image("a", last_used=NOW - 300, created=OLD), image("z", created=OLD - 1))),
            ["z"],
            id="never-used-and-older-goes-before-used",
        ),
        pytest.param(
            gc_input(used_mb=90, high_threshold=100), [], id="high-threshold-100-disables"
        ),
        pytest.param(
            gc_input(used_mb=50, high_threshold=0, low_threshold=0),
            ["a", "b", "c"],
            id="thresholds-0-remove-all",
        ),
    ],
)
def test_which_images_a_pass_removes(gc: GCInput, gone: list[str]) -> None:
    assert removed(gc) == gone


@pytest.mark.parametrize(
    ("gc", "why"),
    [
        pytest.param(
            gc_input(used_mb=50),
            {"a": imagegc.NOT_NEEDED, "b": imagegc.NOT_NEEDED, "c": imagegc.NOT_NEEDED},
            id="not-needed-below-the-threshold",
        ),
        pytest.param(
            gc_input(
                (A, B, C, replace(image("d"), pulled=False), image("e", created=NOW)),
                in_use=(A.id,),
                pinned=(B.id,),
                wanted=("localhost/c:1",),
            ),
            {
                "a": imagegc.IN_USE,
                "b": imagegc.PINNED,
                "c": imagegc.WANTED,
                "d": imagegc.FOREIGN,
                "e": imagegc.TOO_YOUNG,
            },
            id="each-reason-to-stay",
        ),
        pytest.param(
            gc_input(used_mb=90),
            {"b": imagegc.NOT_NEEDED, "c": imagegc.NOT_NEEDED},
            id="candidates-left-once-enough-is-freed",
        ),
    ],
)
def test_why_images_stay(gc: GCInput, why: dict[str, str]) -> None:
    assert kept_why(gc) == why


def test_shared_layers_are_freed_only_with_the_last_image_holding_them() -> None:
    base = ("layer-base", 20 * MB)
    one = image("one", last_used=NOW - 300, layers=(("layer-one", 2 * MB), base))
    two = image("two", last_used=NOW - 200, layers=(("layer-two", 2 * MB), base))
    result = plan(gc_input((one, two), used_mb=95))
    assert [(r.names[0], r.bytes) for r in result.removals] == [
        ("localhost/one:1", 2 * MB),
        ("localhost/two:1", 22 * MB),
    ]
    assert result.bytes_freed == 24 * MB
    assert not result.low_unreachable


def test_a_layer_shared_with_an_image_in_use_is_never_counted_as_freed() -> None:
    base = ("layer-base", 20 * MB)
    one = image("one", layers=(("layer-one", 2 * MB), base))
    kept = image("kept", layers=(("layer-kept", 1 * MB), base))
    result = plan(gc_input((one, kept), used_mb=90, in_use=(kept.id,)))
    assert [r.bytes for r in result.removals] == [2 * MB]
    assert result.low_unreachable


def test_the_plan_says_how_much_to_free_and_what_usage_it_reaches() -> None:
    result = plan(gc_input(used_mb=90))
    assert result.needed
    assert result.bytes_to_free == 10 * MB
    assert result.bytes_freed == 10 * MB
    assert result.usage_percent == pytest.approx(90.0)
    assert result.projected_percent == pytest.approx(80.0)
    assert not result.low_unreachable
    assert result.problem == ""


def test_a_low_threshold_out_of_reach_is_reported() -> None:
    result = plan(gc_input(used_mb=99, in_use=(A.id, B.id)))
    assert [r.image_id for r in result.removals] == [C.id]
    assert result.low_unreachable


def test_nothing_removable_over_the_threshold_is_out_of_reach() -> None:
    result = plan(gc_input((), used_mb=99))
    assert result.removals == ()
    assert result.low_unreachable


def test_a_filesystem_without_capacity_gives_no_plan_and_says_why() -> None:
    result = plan(gc_input(used_mb=0, total_mb=0))
    assert result.removals == ()
    assert not result.needed
    assert "capacity of 0 bytes" in result.problem
    assert result.usage.percent() == 100.0


def test_an_image_record_knows_its_size_and_recency() -> None:
    record = image("x", mb=3, last_used=0.0, created=5.0)
    assert record.size == 3 * MB
    assert record.recency == 5.0
    assert replace(record, last_used=9.0).recency == 9.0


def test_matching_is_by_id_or_by_name() -> None:
    assert imagegc.matches(A, frozenset({A.id}))
    assert imagegc.matches(A, frozenset({"localhost/a:1"}))
    assert not imagegc.matches(A, frozenset({"localhost/b:1"}))
