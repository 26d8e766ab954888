"""Deleting a StoragePod deletes only the containers it owns (the sync driver's rule).

The driver is fed plain objects and a recording sink; the reconciler below it is a
stand-in that records what it was asked (the real one is proven against a real store
by tests/e2e/test_agent_lifecycle.py and tests/cli).
"""

from __future__ import annotations

from typing import Any

from controller.reconcile import model
from controller.reconcile.plan import Outcome
from controller.sync.driver import Driver

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "default", "uid": "pod-uid"},
    "status": {"phase": "Ready"},
}


def member(name: str, owner_uid: str | None, **status: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"{name}-uid"}
    if owner_uid:
        meta["ownerReferences"] = [{"kind": "StoragePod", "uid": owner_uid, "name": "web"}]
    return {"metadata": meta, "spec": {"podName": "web"}, "status": status}


class View:
    def where(self, **labels: str) -> list[Any]:
        return []  # the pod's sandbox went with its members' storage


class Reconciler:
    def __init__(self) -> None:
        self.view = View()
        self.calls: list[tuple[str, str, Any]] = []

    def delete_pod(self, pod: Any) -> None:
        self.calls.append(("delete_pod", pod["metadata"]["name"], None))

    def reconcile_container(self, ctr: Any, pod: Any) -> Outcome:
        self.calls.append(("reconcile_container", ctr["metadata"]["name"], pod))
        return Outcome(
            {"phase": "Pending", "reason": "PodNotFound", "message": "create it"},
            retry_after=1.0,
        )


class Sink:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []

    def write_status(self, kind: str, obj: Any, patch: Any) -> None:
        self.statuses.append((kind, obj["metadata"]["name"], dict(patch)))

    def apply_children(self, pod: Any, plan: Any) -> None:
        raise AssertionError("no child plan while deleting")

    def delete_child(self, pod: Any, child: Any) -> None:
        self.deleted.append(child["metadata"]["name"])


def test_only_owned_members_are_deleted_and_standalone_ones_wait_for_the_pod() -> None:
    rec, sink = Reconciler(), Sink()
    started = {"phase": "Started", "containerID": "c" * 64, "mountPoint": "/m"}
    members = [
        member("web-app", "pod-uid"),
        member("mine", None, **started),
        member("old", "other-uid"),
    ]

    waiting = Driver(rec).remove_pod(POD, members, sink)  # type: ignore[arg-type]

    assert sink.deleted == ["web-app"]
    assert [m["metadata"]["name"] for m in waiting] == ["mine", "old"]
    # Handed back as written: whoever looks at them again compares with this status.
    assert waiting[0]["status"]["reason"] == "PodNotFound"
    assert "containerID" not in waiting[0]["status"]
    assert rec.calls == [
        ("delete_pod", "web", None),
        ("reconcile_container", "mine", None),
        ("reconcile_container", "old", None),
    ]
    assert sink.statuses[0] == (model.POD_KIND, "web", {"phase": "Terminating"})
    kind, name, mine = sink.statuses[1]
    assert (kind, name) == (model.CONTAINER_KIND, "mine")
    assert mine["phase"] == "Pending"
    assert mine["reason"] == "PodNotFound"
    # Its storage is gone: the status names none of it any more.
    assert mine["containerID"] is None
    assert mine["mountPoint"] is None


def test_the_members_are_a_snapshot_not_the_live_index() -> None:
    rec, sink = Reconciler(), Sink()
    live = {"a": member("web-app", "pod-uid")}

    class Growing(dict):  # another worker adds a member while the driver iterates
        def values(self):  # type: ignore[override]
            for value in list(super().values()):
                self["b"] = member("web-b", "pod-uid")
                yield value

    Driver(rec).remove_pod(POD, Growing(live).values(), sink)  # type: ignore[arg-type]
    assert sink.deleted == ["web-app"]
