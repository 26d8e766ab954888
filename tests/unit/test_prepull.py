"""Which nodes a StorageImage selects, and which images it pins on a node."""

from __future__ import annotations

from typing import Any

import pytest

from controller.handlers.prepull import PrePulls, selects


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        pytest.param(None, {}, True, id="no-selector-every-node"),
        pytest.param({}, {"a": "1"}, True, id="empty-selector-every-node"),
        pytest.param({"a": "1"}, {"a": "1", "b": "2"}, True, id="every-label-matches"),
        pytest.param({"a": "1"}, {"a": "2"}, False, id="a-value-differs"),
        pytest.param({"a": "1", "b": "2"}, {"a": "1"}, False, id="a-label-is-missing"),
    ],
)
def test_a_node_selector_selects_nodes_with_all_its_labels(
    selector: Any, labels: dict[str, str], selected: bool
) -> None:
    assert selects(selector, labels) is selected


def obj(name: str, image: str, **selector: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"image": image, "nodeSelector": selector}}


def test_the_images_of_the_objects_selecting_the_node_are_pinned() -> None:
    prepulls = PrePulls(None, "node-a", labels=lambda _: {"disk": "ssd"})  # type: ignore[arg-type]
    prepulls.seen(obj("one", "r/one:1"))
    prepulls.seen(obj("two", "r/two:1", disk="ssd"))
    prepulls.seen(obj("three", "r/three:1", disk="hdd"))
    assert sorted(prepulls.pinned()) == ["r/one:1", "r/two:1"]
    prepulls.gone("two")
    assert prepulls.pinned() == ("r/one:1",)


def test_with_the_nodes_labels_unknown_every_object_pins() -> None:
    def broken(_: str) -> dict[str, str]:
        raise OSError("API down")

    prepulls = PrePulls(None, "node-a", labels=broken)  # type: ignore[arg-type]
    prepulls.seen(obj("three", "r/three:1", disk="hdd"))
    assert prepulls.pinned() == ("r/three:1",)
