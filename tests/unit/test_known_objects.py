"""Which objects kopf holds are gone from the API server (issue 12, defect 8): the two
pure decisions, table-driven, then :class:`KnownObjects` through an outage."""

from __future__ import annotations

from typing import Any

import pytest

from controller.handlers.known import KnownObjects, missing_from_list, superseded


def obj(name: str, uid: str, namespace: str = "default") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid}}


POD = ("StoragePod", "default", "web")


@pytest.mark.parametrize(
    ("names", "name", "uid", "expected"),
    [
        ({}, POD, "u1", None),  # first sighting
        ({POD: "u1"}, POD, "u1", None),  # the same object again
        ({POD: "u1"}, POD, "u2", "u1"),  # re-created: the old one was deleted
        ({POD: "u1"}, ("StorageContainer", "default", "web"), "u2", None),  # another kind
        ({POD: "u1"}, ("StoragePod", "other", "web"), "u2", None),  # another namespace
        ({POD: "u1"}, POD, "", None),  # no UID: nothing can be said
    ],
)
def test_a_name_with_another_uid_supersedes_the_old_one(
    names: dict[Any, str], name: Any, uid: str, expected: str | None
) -> None:
    assert superseded(names, name, uid) == expected


@pytest.mark.parametrize(
    ("first_seen", "listed", "began", "expected"),
    [
        ({"a": 1.0, "b": 2.0}, {"a", "b"}, 5.0, set()),  # all there
        ({"a": 1.0, "b": 2.0}, {"a"}, 5.0, {"b"}),  # b deleted unseen
        ({"a": 1.0, "b": 6.0}, {"a"}, 5.0, set()),  # b seen after the LIST began: not known
        ({"a": 5.0}, set(), 5.0, set()),  # seen as the LIST began: not known either
        ({}, {"x"}, 5.0, set()),  # listed but never seen: not ours to judge
        ({"a": 1.0, "b": 2.0}, set(), 5.0, {"a", "b"}),  # the API server came back empty
    ],
)
def test_what_a_complete_list_did_not_return_is_gone(
    first_seen: dict[str, float], listed: set[str], began: float, expected: set[str]
) -> None:
    assert missing_from_list(first_seen, listed, began) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_api_server_back_empty_then_given_the_objects_again() -> None:
    clock = Clock()
    known = KnownObjects(clock)
    old_pod, old_member = obj("web", "u1"), obj("web-app", "u2")
    known.seen("StoragePod", old_pod)
    known.seen("StorageContainer", old_member)
    clock.now += 10
    # The orphan pass lists from the API server, which came back empty.
    assert known.listed(set(), began=clock()) == {"u1", "u2"}
    assert known.is_gone(old_pod)
    assert known.is_gone(old_member)
    assert known.live([old_pod, old_member]) == []
    # The objects are applied again: new UIDs, live; the old stay gone.
    new_pod = obj("web", "u3")
    assert known.seen("StoragePod", new_pod) is None
    assert known.live([old_pod, new_pod]) == [new_pod]
    assert known.gone_count() == 2


def test_an_object_seen_under_its_name_with_a_new_uid() -> None:
    known = KnownObjects(Clock())
    old, new = obj("web", "u1"), obj("web", "u2")
    known.seen("StoragePod", old)
    assert known.seen("StoragePod", new) == "u1"
    assert known.is_gone(old)
    assert not known.is_gone(new)
    assert known.live([old, new]) == [new]


def test_an_object_back_in_the_selection_is_live_again() -> None:
    clock = Clock()
    known = KnownObjects(clock)
    moved = obj("tool", "u1")
    known.seen("StorageContainer", moved)
    clock.now += 1
    known.listed(set(), began=clock())  # labelled for another node: not in this node's LIST
    assert known.is_gone(moved)
    known.seen("StorageContainer", moved)  # labelled back: a watch event shows it again
    assert not known.is_gone(moved)


def test_an_object_deleted_as_kopf_saw_it_is_forgotten() -> None:
    clock = Clock()
    known = KnownObjects(clock)
    pod = obj("web", "u1")
    known.seen("StoragePod", pod)
    known.deleted(pod)
    clock.now += 1
    assert known.listed(set(), began=clock()) == set()  # nothing left to find gone
    assert known.seen("StoragePod", obj("web", "u2")) is None  # nor a name to supersede
    assert known.gone_count() == 0


def test_an_object_first_seen_during_the_list_is_not_judged_by_it() -> None:
    clock = Clock()
    known = KnownObjects(clock)
    began = clock()
    clock.now += 0.5
    known.seen("StoragePod", obj("new", "u1"))  # created while the LIST was being served
    assert known.listed(set(), began=began) == set()
    assert known.live([obj("new", "u1")]) == [obj("new", "u1")]
