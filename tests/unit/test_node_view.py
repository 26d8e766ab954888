"""NodeView: podstore's own changes stay true across a listing taken meanwhile.

A listing of the store takes tens of milliseconds at a thousand containers; a handler
thread may create a pod's sandbox (and put it into the view) while another thread's
refresh is reading the store. Replacing the view with that listing would drop the
sandbox until the next listing, and the pod's members would wait on it (issue 14:
no container waiting on PodNotReady). The runtime here is a fake whose listing lets
a change happen in the middle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.runtime import ManagedContainer
from controller.sync.view import NodeView


def ctr(
    ident: str, *, infra: bool = False, labels: dict[str, str] | None = None
) -> ManagedContainer:
    return ManagedContainer(
        id=ident,
        names=(ident,),
        image="img",
        layer=f"layer-{ident}",
        created="",
        metadata=RuntimeContainerMetadata(pod=infra, name=ident, labels=labels or {}),
    )


class Runtime:
    """What the store lists; ``during`` runs while the listing is being read."""

    def __init__(self, listed: Sequence[ManagedContainer], mounted: set[str]) -> None:
        self.listed = list(listed)
        self.mounted_ids = set(mounted)
        self.during: Callable[[], None] = lambda: None

    def list_containers(self) -> list[ManagedContainer]:
        out = list(self.listed)  # read before the change below
        self.during()
        self.during = lambda: None
        return out

    def mounted(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.mounted_ids}

    def layer_names(self) -> dict[str, list[str]]:
        return {c.layer: [f"{c.metadata.name}-layer"] for c in self.listed}


def view_of(runtime: Runtime) -> NodeView:
    view = NodeView(runtime, max_age=1000.0)  # type: ignore[arg-type]
    view.refresh()
    return view


CHANGES: list[tuple[str, Callable[[NodeView], None], Callable[[NodeView], Any], Any]] = [
    ("a sandbox made", lambda v: v.put(ctr("infra", infra=True)), lambda v: v.get("infra"), True),
    ("a container removed", lambda v: v.forget(["old"]), lambda v: v.get("old"), None),
    (
        "a container mounted",
        lambda v: v.set_mounted("old", True),
        lambda v: v.is_mounted("old"),
        True,
    ),
    (
        "a container unmounted",
        lambda v: v.set_mounted("up", False),
        lambda v: v.is_mounted("up"),
        False,
    ),
]


@pytest.mark.parametrize(
    ("what", "change", "read", "expected"), CHANGES, ids=[c[0] for c in CHANGES]
)
def test_a_change_made_during_a_listing_survives_it(
    what: str, change: Callable[[NodeView], None], read: Callable[[NodeView], Any], expected: Any
) -> None:
    runtime = Runtime([ctr("old"), ctr("up")], mounted={"up"})
    view = view_of(runtime)
    runtime.during = lambda: change(view)
    view.refresh()
    value = read(view)
    if expected is True and not isinstance(value, bool):
        assert value is not None, what
    else:
        assert value == expected, what


def test_a_listing_after_the_change_is_the_truth_again() -> None:
    runtime = Runtime([ctr("old")], mounted=set())
    view = view_of(runtime)
    view.put(ctr("mine"))
    runtime.listed = []  # someone else removed both since
    view.refresh()
    assert view.get("mine") is None
    assert view.get("old") is None


def test_a_failed_listing_keeps_the_view_and_records_nothing_more() -> None:
    runtime = Runtime([ctr("old")], mounted=set())
    view = view_of(runtime)

    def fail() -> list[ManagedContainer]:
        raise OSError("store locked")

    runtime.list_containers = fail  # type: ignore[method-assign]
    with pytest.raises(OSError, match="store locked"):
        view.refresh()
    view.put(ctr("later"))
    assert view.get("old") is not None
    assert view.get("later") is not None


# -- the UID index: a reconcile's lookup is the scan's answer, in listing order ----------

UID = "podstore.dev/uid"


def labelled(ident: str, uid: str | None) -> ManagedContainer:
    return ctr(ident, labels={UID: uid} if uid is not None else None)


def scan(view: NodeView, uid: str) -> list[str]:
    return [c.id for c in view.containers() if c.metadata.labels.get(UID) == uid]


INDEX_CHANGES: list[tuple[str, Callable[[NodeView], None]]] = [
    ("nothing", lambda v: None),
    ("a container put", lambda v: v.put(labelled("c", "u1"))),
    ("a container put again", lambda v: v.put(labelled("a", "u1"))),
    ("a container forgotten", lambda v: v.forget(["a"])),
    ("the last of a UID forgotten", lambda v: v.forget(["b"])),
    (
        "metadata with another UID",
        lambda v: v.put_metadata("a", RuntimeContainerMetadata(name="a", labels={UID: "u2"})),
    ),
    (
        "metadata with no UID",
        lambda v: v.put_metadata("a", RuntimeContainerMetadata(name="a", labels={})),
    ),
    (
        "metadata of an unknown container",
        lambda v: v.put_metadata("zz", RuntimeContainerMetadata()),
    ),
]


@pytest.mark.parametrize("change", [c[1] for c in INDEX_CHANGES], ids=[c[0] for c in INDEX_CHANGES])
def test_the_uid_index_answers_as_a_scan_would(change: Callable[[NodeView], None]) -> None:
    runtime = Runtime(
        [labelled("a", "u1"), labelled("b", "u2"), labelled("n", None), labelled("d", "u1")],
        mounted=set(),
    )
    view = view_of(runtime)
    change(view)
    for uid in ("u1", "u2", "u3"):
        assert [c.id for c in view.where(**{UID: uid})] == scan(view, uid), uid
        assert [c.id for c in view.where(**{UID: uid, "other": "x"})] == [], uid
    runtime.listed = [labelled("e", "u3")]
    view.refresh()
    assert [c.id for c in view.where(**{UID: "u3"})] == ["e"]
    assert view.where(**{UID: "u1"}) == []
