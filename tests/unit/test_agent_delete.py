"""Deleting a StoragePod deletes only the containers it owns."""

from __future__ import annotations

from typing import Any

from controller.handlers.agent import owned_members

POD: dict[str, Any] = {"metadata": {"name": "web", "namespace": "default", "uid": "pod-uid"}}


def member(name: str, owner_uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if owner_uid:
        meta["ownerReferences"] = [{"kind": "StoragePod", "uid": owner_uid, "name": "web"}]
    return {"metadata": meta, "spec": {"podName": "web"}}


def test_standalone_and_foreign_containers_are_not_owned() -> None:
    members = [member("web-app", "pod-uid"), member("mine", None), member("old", "other")]
    assert [m["metadata"]["name"] for m in owned_members(POD, members)] == ["web-app"]


def test_the_members_are_a_snapshot_not_the_live_index() -> None:
    live = {"a": member("web-app", "pod-uid")}
    owned = owned_members(POD, live.values())
    live["b"] = member("web-b", "pod-uid")  # another worker adds one meanwhile
    assert len(owned) == 1
