"""Which watch events tell an agent that a StorageContainer was moved off its node."""

from __future__ import annotations

import pytest

from controller.handlers.release import moved_away

OURS = "podstore.dev/storage-node-a"


def body(label, finalizers):
    labels = {} if label is None else {"podstore.dev/node": label}
    return {"metadata": {"name": "c", "labels": labels, "finalizers": finalizers}}


@pytest.mark.parametrize(
    ("event_type", "obj", "moved"),
    [
        pytest.param("DELETED", body("node-b", [OURS]), True, id="relabelled-to-another-node"),
        pytest.param("DELETED", body(None, [OURS]), True, id="label-removed"),
        pytest.param("DELETED", body("node-a", [OURS]), False, id="really-deleted"),
        pytest.param("DELETED", body("node-b", []), False, id="not-holding-our-finalizer"),
        pytest.param(
            "DELETED", body("node-b", ["podstore.dev/storage-node-b"]), False, id="others-only"
        ),
        pytest.param("MODIFIED", body("node-b", [OURS]), False, id="not-a-deleted-event"),
        pytest.param(None, body("node-b", [OURS]), False, id="listing"),
    ],
)
def test_only_an_object_leaving_the_nodes_selector_with_its_finalizer_is_moved(
    event_type, obj, moved
):
    assert moved_away(event_type, obj, "node-a") is moved
