"""A StoragePod's container templates become the StorageContainers it owns.

``desired_children`` and ``plan_children`` are pure: the tests feed them plain
dicts as the API returns them and check the objects and the plan.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.children import (
    OWNER_LABEL,
    TEMPLATE_FIELDS,
    ChildPlan,
    desired_children,
    owned_by,
    plan_children,
    planned_members,
)

POD_UID = "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a"
OTHER_UID = "9b1c2d3e-0000-4000-8000-000000000000"
IMAGE_ID = "a" * 64

FULL_TEMPLATE: dict[str, Any] = {
    "name": "app",
    "image": "busybox:1",
    "imageID": IMAGE_ID,
    "imagePullPolicy": "Always",
    "command": ["/bin/sh"],
    "args": ["-c", "true"],
    "env": [{"name": "A", "value": "1"}],
    "workingDir": "/work",
    "mountLabel": "system_u:object_r:container_file_t:s0",
    "state": "Stopped",
    "labels": {"team": "web"},
}


def make_pod(*templates: dict[str, Any], uid: str | None = POD_UID, **meta: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web", "namespace": "team", **meta}
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.POD_KIND,
        "metadata": metadata,
        "spec": {"nodeName": "node-1", "containers": [dict(t) for t in templates]},
    }


def template(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1", **fields}


def existing_child(
    pod: dict[str, Any], name: str = "app", *, owner_uid: str | None = POD_UID, **spec: Any
) -> dict[str, Any]:
    """A StorageContainer as the API returns it: CRD defaults applied, maybe owned."""
    pod_name = pod["metadata"]["name"]
    meta: dict[str, Any] = {
        "name": f"{pod_name}-{name}",
        "namespace": pod["metadata"].get("namespace", "default"),
        "uid": f"child-{name}",
        "labels": {OWNER_LABEL: pod_name, "podstore.dev/container": name},
    }
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": model.API_VERSION,
                "kind": model.POD_KIND,
                "name": pod_name,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    full_spec = {
        "podName": pod_name,
        "image": "busybox:1",
        "imagePullPolicy": "IfNotPresent",
        "state": "Started",
        **spec,
    }
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.CONTAINER_KIND,
        "metadata": meta,
        "spec": full_spec,
    }


# -- desired_children -----------------------------------------------------------


def test_a_pod_without_templates_wants_no_children():
    assert desired_children(make_pod()) == []
    assert desired_children({"metadata": {"name": "web"}}) == []


def test_each_template_becomes_a_storage_container_named_after_pod_and_template():
    children = desired_children(make_pod(template("app"), template("sidecar")))

    assert [c["metadata"]["name"] for c in children] == ["web-app", "web-sidecar"]
    for child in children:
        assert child["apiVersion"] == "podstore.dev/v1alpha1"
        assert child["kind"] == "StorageContainer"
        assert child["metadata"]["namespace"] == "team"
        assert child["spec"]["podName"] == "web"


def test_a_child_name_is_the_pod_name_a_dash_and_the_template_name():
    assert model.child_name("web", "app") == "web-app"


def test_a_child_carries_the_template_fields_and_nothing_else():
    extra = dict(FULL_TEMPLATE, ports=[80], resources={"limits": {}}, name="app")

    (child,) = desired_children(make_pod(extra))

    expected = {k: v for k, v in FULL_TEMPLATE.items() if k != "name"}
    assert child["spec"] == {"podName": "web", **expected}
    assert set(child["spec"]) == {"podName", *TEMPLATE_FIELDS}


def test_a_template_field_set_to_null_is_left_out_of_the_child():
    (child,) = desired_children(make_pod(template(command=None, workingDir=None)))

    assert child["spec"] == {"podName": "web", "image": "busybox:1"}


def test_a_child_is_labelled_with_its_pod_and_template():
    (child,) = desired_children(make_pod(template("app")))

    assert child["metadata"]["labels"] == {
        "podstore.dev/pod": "web",
        "podstore.dev/container": "app",
    }


def test_a_child_of_a_pod_with_a_uid_has_a_controller_owner_reference():
    (child,) = desired_children(make_pod(template()))

    assert child["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "podstore.dev/v1alpha1",
            "kind": "StoragePod",
            "name": "web",
            "uid": POD_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


@pytest.mark.parametrize(
    "uid",
    [pytest.param(None, id="no-uid"), pytest.param("", id="empty-uid")],
)
def test_a_child_of_a_pod_without_a_uid_has_no_owner_reference(uid):
    pod = make_pod(template(), uid=None)
    if uid is not None:
        pod["metadata"]["uid"] = uid

    (child,) = desired_children(pod)

    assert "ownerReferences" not in child["metadata"]


def test_a_pod_without_a_namespace_makes_children_in_default():
    pod = make_pod(template())
    del pod["metadata"]["namespace"]

    (child,) = desired_children(pod)

    assert child["metadata"]["namespace"] == "default"


def test_desired_children_does_not_change_the_pod():
    pod = make_pod(dict(FULL_TEMPLATE))
    before = copy.deepcopy(pod)

    desired_children(pod)

    assert pod == before


# -- owned_by -----------------------------------------------------------------------

OWNERSHIP = [
    pytest.param(
        {"ownerReferences": [{"kind": "StoragePod", "uid": POD_UID}]},
        POD_UID,
        True,
        id="owner-reference-with-the-pod-uid",
    ),
    pytest.param(
        {
            "ownerReferences": [
                {"kind": "Deployment", "uid": "x"},
                {"kind": "StoragePod", "uid": POD_UID},
            ]
        },
        POD_UID,
        True,
        id="one-of-several-owner-references",
    ),
    pytest.param(
        {"ownerReferences": [{"kind": "StoragePod", "uid": OTHER_UID}]},
        POD_UID,
        False,
        id="owner-reference-to-another-pod-of-the-same-name",
    ),
    pytest.param(
        {"ownerReferences": [{"kind": "Deployment", "uid": POD_UID}]},
        POD_UID,
        False,
        id="owner-reference-of-another-kind",
    ),
    pytest.param(
        {"labels": {OWNER_LABEL: "web"}},
        POD_UID,
        False,
        id="label-only-while-the-pod-has-a-uid",
    ),
    pytest.param({}, POD_UID, False, id="no-owner-no-label"),
    pytest.param({"labels": {OWNER_LABEL: "web"}}, None, True, id="label-when-the-pod-has-no-uid"),
    pytest.param(
        {"labels": {OWNER_LABEL: "other"}}, None, False, id="label-of-another-pod-without-uid"
    ),
    pytest.param({}, None, False, id="nothing-when-the-pod-has-no-uid"),
]


@pytest.mark.parametrize(("child_meta", "pod_uid", "expected"), OWNERSHIP)
def test_a_child_is_owned_by_owner_uid_or_by_label_when_the_pod_has_no_uid(
    child_meta, pod_uid, expected
):
    child = {"metadata": {"name": "web-app", **child_meta}}

    assert owned_by(child, make_pod(uid=pod_uid)) is expected


def test_every_desired_child_is_owned_by_its_pod():
    for uid in (POD_UID, None):
        pod = make_pod(template("a"), template("b"), uid=uid)
        assert all(owned_by(child, pod) for child in desired_children(pod))


# -- plan_children --------------------------------------------------------------------


def names(plan: ChildPlan) -> list[str]:
    return [c["metadata"]["name"] for c in plan.create]


def test_a_new_pod_creates_every_child():
    pod = make_pod(template("a"), template("b"))

    plan = plan_children(pod, [])

    assert names(plan) == ["web-a", "web-b"]
    assert plan.create == desired_children(pod)
    assert plan.update == []
    assert plan.delete == []
    assert not plan.empty


def test_only_the_missing_children_are_created():
    pod = make_pod(template("a"), template("b"))

    plan = plan_children(pod, [existing_child(pod, "a")])

    assert names(plan) == ["web-b"]
    assert plan.update == []
    assert plan.delete == []


IN_STEP = [
    pytest.param(template(), {}, id="defaults-filled-in-by-the-api"),
    pytest.param(
        dict(FULL_TEMPLATE),
        {k: v for k, v in FULL_TEMPLATE.items() if k != "name"},
        id="every-field-set",
    ),
    pytest.param(
        template(imagePullPolicy="IfNotPresent", state="Started"),
        {},
        id="defaults-spelled-out-in-the-template",
    ),
]


@pytest.mark.parametrize(("tmpl", "child_spec"), IN_STEP)
def test_a_pod_whose_children_match_its_templates_has_an_empty_plan(tmpl, child_spec):
    pod = make_pod(tmpl)

    plan = plan_children(pod, [existing_child(pod, tmpl["name"], **child_spec)])

    assert plan == ChildPlan()
    assert plan.empty


def test_a_child_status_and_extra_metadata_do_not_make_a_plan():
    pod = make_pod(template())
    child = existing_child(pod)
    child["status"] = {"phase": "Started"}
    child["metadata"]["resourceVersion"] = "42"
    child["metadata"]["finalizers"] = ["podstore.dev/storage-node-1"]

    assert plan_children(pod, [child]).empty


CHANGES = [
    pytest.param({"image": "busybox:2"}, {}, {"image": "busybox:2"}, id="image"),
    pytest.param({"imageID": IMAGE_ID}, {}, {"imageID": IMAGE_ID}, id="image-id-added"),
    pytest.param({"imagePullPolicy": "Never"}, {}, {"imagePullPolicy": "Never"}, id="pull-policy"),
    pytest.param({"command": ["/x"]}, {"command": ["/y"]}, {"command": ["/x"]}, id="command"),
    pytest.param({"args": ["b"]}, {"args": ["a"]}, {"args": ["b"]}, id="args"),
    pytest.param(
        {"env": [{"name": "A", "value": "2"}]},
        {"env": [{"name": "A", "value": "1"}]},
        {"env": [{"name": "A", "value": "2"}]},
        id="env-value",
    ),
    pytest.param({"workingDir": "/b"}, {"workingDir": "/a"}, {"workingDir": "/b"}, id="workdir"),
    pytest.param({"mountLabel": "l2"}, {"mountLabel": "l1"}, {"mountLabel": "l2"}, id="label"),
    pytest.param({"state": "Stopped"}, {}, {"state": "Stopped"}, id="state-stopped"),
    pytest.param({"state": "Started"}, {"state": "Stopped"}, {"state": "Started"}, id="started"),
    pytest.param({}, {"command": ["/x"]}, {"command": None}, id="command-removed"),
    pytest.param({}, {"args": []}, {"args": None}, id="empty-args-removed"),
    pytest.param({}, {"env": [{"name": "A"}]}, {"env": None}, id="env-removed"),
    pytest.param({}, {"imageID": IMAGE_ID}, {"imageID": None}, id="image-id-removed"),
    pytest.param({}, {"workingDir": "/w"}, {"workingDir": None}, id="workdir-removed"),
    pytest.param({}, {"mountLabel": "l"}, {"mountLabel": None}, id="mount-label-removed"),
    pytest.param(
        {},
        {"imagePullPolicy": "Always", "state": "Stopped"},
        {},
        id="pull-policy-and-state-are-defaults-never-nulled",
    ),
    pytest.param(
        {"image": "busybox:2", "args": ["x"]},
        {"workingDir": "/w", "args": ["x"]},
        {"image": "busybox:2", "workingDir": None},
        id="several-fields-only-the-changed-ones",
    ),
]


@pytest.mark.parametrize(("tmpl_fields", "child_spec", "patch"), CHANGES)
def test_a_changed_template_patches_only_the_changed_spec_fields(tmpl_fields, child_spec, patch):
    pod = make_pod(template(**tmpl_fields))
    child = existing_child(pod, **child_spec)

    plan = plan_children(pod, [child])

    assert plan.create == []
    assert plan.delete == []
    assert plan.update == ([("web-app", patch)] if patch else [])


def test_a_spec_patch_never_touches_pod_name():
    pod = make_pod(template())
    child = existing_child(pod)
    child["spec"]["podName"] = "somebody-else"

    assert plan_children(pod, [child]).empty


def test_a_patch_is_applied_by_name_to_each_changed_child():
    pod = make_pod(template("a", image="busybox:2"), template("b"), template("c", args=["x"]))
    existing = [existing_child(pod, "a"), existing_child(pod, "b"), existing_child(pod, "c")]

    plan = plan_children(pod, existing)

    assert plan.update == [("web-a", {"image": "busybox:2"}), ("web-c", {"args": ["x"]})]


def test_an_owned_child_whose_template_is_gone_is_deleted():
    pod = make_pod(template("a"))
    existing = [existing_child(pod, "a"), existing_child(pod, "z"), existing_child(pod, "b")]

    plan = plan_children(pod, existing)

    assert plan.delete == ["web-b", "web-z"]
    assert plan.create == []
    assert plan.update == []


def test_a_pod_with_no_templates_left_deletes_all_it_owns():
    pod = make_pod()
    existing = [existing_child(pod, "a"), existing_child(pod, "b")]

    assert plan_children(pod, existing) == ChildPlan(delete=["web-a", "web-b"])


FOREIGN = [
    pytest.param(None, id="no-owner-reference"),
    pytest.param(OTHER_UID, id="owned-by-an-earlier-pod-of-the-same-name"),
]


@pytest.mark.parametrize("owner_uid", FOREIGN)
def test_an_object_of_the_same_name_someone_else_made_is_never_taken_over(owner_uid):
    pod = make_pod(template("app", image="busybox:2"))
    theirs = existing_child(pod, "app", owner_uid=owner_uid, image="other:1")

    plan = plan_children(pod, [theirs])

    assert plan.empty


@pytest.mark.parametrize("owner_uid", FOREIGN)
def test_an_object_someone_else_made_is_never_deleted(owner_uid):
    pod = make_pod(template("app"))
    theirs = existing_child(pod, "stray", owner_uid=owner_uid)

    plan = plan_children(pod, [existing_child(pod, "app"), theirs])

    assert plan.empty


def test_a_pod_without_a_uid_owns_children_by_label():
    pod = make_pod(template("a", image="busybox:2"), uid=None)
    existing = [existing_child(pod, "a", owner_uid=None), existing_child(pod, "b", owner_uid=None)]

    plan = plan_children(pod, existing)

    assert plan == ChildPlan(update=[("web-a", {"image": "busybox:2"})], delete=["web-b"])


def test_creating_updating_and_deleting_together():
    pod = make_pod(template("keep"), template("change", args=["1"]), template("new"))
    existing = [
        existing_child(pod, "keep"),
        existing_child(pod, "change"),
        existing_child(pod, "old"),
        existing_child(pod, "new-elsewhere", owner_uid=None),
    ]

    plan = plan_children(pod, existing)

    assert names(plan) == ["web-new"]
    assert plan.update == [("web-change", {"args": ["1"]})]
    assert plan.delete == ["web-old"]


def test_applying_the_plan_leaves_nothing_to_do():
    pod = make_pod(dict(FULL_TEMPLATE), template("b", command=["/x"]), template("c"))
    existing = [
        existing_child(pod, "app"),
        existing_child(pod, "b", workingDir="/w"),
        existing_child(pod, "gone"),
    ]
    plan = plan_children(pod, existing)

    after = planned_members(existing, plan)

    assert plan_children(pod, after).empty
    assert sorted(c["metadata"]["name"] for c in after) == ["web-app", "web-b", "web-c"]


# -- planned_members: what the pod's member summary counts once the plan is applied --------

STARTED = {"phase": "Started", "containerID": "c" * 64}

PLANNED = [
    # (templates, existing children as (name, spec, status), members after as (name, state, phase))
    pytest.param(
        [template("a"), template("b")],
        [],
        [("web-a", "Started", None), ("web-b", "Started", None)],
        id="new pod: both children counted, with no status (Pending)",
    ),
    pytest.param(
        [template("a"), template("b")],
        [("a", {}, STARTED)],
        [("web-a", "Started", "Started"), ("web-b", "Started", None)],
        id="one made earlier keeps its status, the new one is added",
    ),
    pytest.param(
        [template("a")],
        [("a", {}, STARTED), ("old", {}, STARTED)],
        [("web-a", "Started", "Started")],
        id="a deleted child no longer counts",
    ),
    pytest.param(
        [template("a", state="Stopped")],
        [("a", {}, STARTED)],
        [("web-a", "Stopped", "Started")],
        id="a patched child counts with its new spec (not yet in its desired state)",
    ),
    pytest.param(
        [],
        [("a", {}, STARTED)],
        [],
        id="no templates left: no members",
    ),
]


@pytest.mark.parametrize(("templates", "children", "expected"), PLANNED)
def test_planned_members_are_the_members_once_the_plan_is_applied(templates, children, expected):
    pod = make_pod(*templates)
    existing = []
    for name, spec, status in children:
        child = existing_child(pod, name, **spec)
        existing.append(dict(child, status=status))
    before = copy.deepcopy(existing)

    after = planned_members(existing, plan_children(pod, existing))

    got = [
        (
            m["metadata"]["name"],
            m["spec"].get("state", "Started"),
            (m.get("status") or {}).get("phase"),
        )
        for m in after
    ]
    assert sorted(got) == sorted(expected)
    assert existing == before


def test_a_member_that_only_names_the_pod_still_counts():
    pod = make_pod(template("a"))
    standalone = existing_child(pod, "tool", owner_uid=OTHER_UID)
    after = planned_members([standalone], plan_children(pod, [standalone]))
    assert sorted(m["metadata"]["name"] for m in after) == ["web-a", "web-tool"]


def test_plan_children_does_not_change_its_arguments():
    pod = make_pod(template("a", image="busybox:2"))
    existing = [existing_child(pod, "a"), existing_child(pod, "b")]
    before = copy.deepcopy((pod, existing))

    plan_children(pod, existing)

    assert (pod, existing) == before


def test_an_empty_plan_is_empty_and_any_action_is_not():
    assert ChildPlan().empty
    assert not ChildPlan(create=[{}]).empty
    assert not ChildPlan(update=[("x", {})]).empty
    assert not ChildPlan(delete=["x"]).empty
