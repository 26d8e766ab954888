"""Conditions and status patches follow the Kubernetes API conventions.

A resync that finds nothing new must write nothing: these tests pin down
when ``lastTransitionTime`` moves, which keys a status patch carries, and how
a pod sums up its members in ``ContainersReady``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from controller.reconcile.plan import _same_conditions, member_summary
from controller.reconcile.status import (
    Condition,
    merge_conditions,
    merge_patch,
    rfc3339,
    status_patch,
)
from controller.sync import Reconciler

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
T1 = T0 + 60
T0_TEXT = "2023-11-14T22:13:20Z"
T1_TEXT = "2023-11-14T22:14:20Z"


def stored(
    type_: str,
    status: str,
    *,
    reason: str = "Old",
    message: str = "",
    at: str = T0_TEXT,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
        "observedGeneration": generation,
    }


# -- rfc3339 -------------------------------------------------------------------------

RFC3339 = [
    pytest.param(0, "1970-01-01T00:00:00Z", id="epoch"),
    pytest.param(T0, T0_TEXT, id="whole-seconds"),
    pytest.param(T0 + 0.999, T0_TEXT, id="fractions-dropped-not-rounded"),
    pytest.param(951_782_400, "2000-02-29T00:00:00Z", id="leap-day"),
]


@pytest.mark.parametrize(("seconds", "text"), RFC3339)
def test_rfc3339_formats_seconds_as_utc_with_a_z(seconds, text):
    assert rfc3339(seconds) == text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rfc3339(seconds))


# -- Condition -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        pytest.param(True, "True", id="true"),
        pytest.param(False, "False", id="false"),
        pytest.param(None, "Unknown", id="none-is-unknown"),
    ],
)
def test_a_condition_status_is_written_as_true_false_or_unknown(status, text):
    assert Condition("Ready", status, "R").status_text == text


# -- merge_conditions ----------------------------------------------------------------------


def test_new_conditions_get_the_current_time_and_generation():
    out = merge_conditions(None, [Condition("Ready", True, "Started", "ok")], generation=3, now=T1)

    assert out == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Started",
            "message": "ok",
            "lastTransitionTime": T1_TEXT,
            "observedGeneration": 3,
        }
    ]


def test_an_unchanged_status_keeps_its_transition_time_but_takes_the_new_reason():
    current = [stored("Ready", "True", reason="Old", message="m", generation=1)]

    (cond,) = merge_conditions(
        current, [Condition("Ready", True, "New", "n")], generation=2, now=T1
    )

    assert cond["lastTransitionTime"] == T0_TEXT
    assert cond["reason"] == "New"
    assert cond["message"] == "n"
    assert cond["observedGeneration"] == 2


TRANSITIONS = [
    pytest.param("True", False, id="true-to-false"),
    pytest.param("False", True, id="false-to-true"),
    pytest.param("Unknown", True, id="unknown-to-true"),
    pytest.param("True", None, id="true-to-unknown"),
]


@pytest.mark.parametrize(("old", "new"), TRANSITIONS)
def test_a_changed_status_sets_the_transition_time_to_now(old, new):
    (cond,) = merge_conditions(
        [stored("Ready", old)], [Condition("Ready", new, "R")], generation=1, now=T1
    )

    assert cond["lastTransitionTime"] == T1_TEXT
    assert cond["status"] == Condition("Ready", new, "R").status_text


def test_an_unchanged_condition_without_a_transition_time_gets_one():
    old = stored("Ready", "True")
    del old["lastTransitionTime"]

    (cond,) = merge_conditions([old], [Condition("Ready", True, "R")], generation=1, now=T1)

    assert cond["lastTransitionTime"] == T1_TEXT


def test_existing_conditions_keep_their_order_whatever_order_is_wanted():
    current = [stored("Ready", "True"), stored("Created", "True"), stored("Started", "True")]
    wanted = [
        Condition("Created", True, "C"),
        Condition("Started", True, "S"),
        Condition("Ready", True, "R"),
    ]

    out = merge_conditions(current, wanted, generation=1, now=T1)

    assert [c["type"] for c in out] == ["Ready", "Created", "Started"]


def test_new_condition_types_are_appended_in_the_order_wanted():
    current = [stored("Ready", "False")]
    wanted = [
        Condition("Zeta", True, "Z"),
        Condition("Ready", True, "R"),
        Condition("Alpha", False, "A"),
    ]

    out = merge_conditions(current, wanted, generation=1, now=T1)

    assert [c["type"] for c in out] == ["Ready", "Zeta", "Alpha"]


def test_conditions_someone_else_set_are_kept_as_they_are():
    theirs = stored("example.com/Checked", "True", reason="Theirs", generation=7)
    current = [theirs, stored("Ready", "False")]

    out = merge_conditions(current, [Condition("Ready", True, "R")], generation=9, now=T1)

    assert out[0] == theirs
    assert out[0] is not theirs
    assert out[1]["observedGeneration"] == 9


def test_entries_that_are_not_objects_are_dropped():
    current = [None, "Ready", stored("Ready", "True")]

    out = merge_conditions(current, [Condition("Ready", True, "R")], generation=1, now=T1)

    assert [c["type"] for c in out] == ["Ready"]


def test_merging_the_same_conditions_again_changes_nothing():
    wanted = [Condition("Created", True, "C", "c"), Condition("Ready", False, "R", "r")]
    first = merge_conditions(None, wanted, generation=4, now=T0)

    again = merge_conditions(first, wanted, generation=4, now=T1)

    assert again == first


def test_merge_conditions_does_not_change_the_current_list():
    current = [stored("Ready", "True"), stored("Other", "False")]
    before = copy.deepcopy(current)

    merge_conditions(current, [Condition("Ready", False, "R")], generation=2, now=T1)

    assert current == before


# -- status_patch ------------------------------------------------------------------------------

PATCHES = [
    pytest.param({"phase": "Ready"}, {"phase": "Ready"}, {}, id="equal-is-empty"),
    pytest.param(None, {}, {}, id="nothing-wanted-of-nothing"),
    pytest.param({"phase": "Pending"}, {"phase": "Ready"}, {"phase": "Ready"}, id="changed"),
    pytest.param(None, {"phase": "Ready"}, {"phase": "Ready"}, id="no-status-yet"),
    pytest.param(
        {"phase": "Ready", "podID": "x"},
        {"phase": "Ready", "podID": "y"},
        {"podID": "y"},
        id="only-the-changed-key",
    ),
    pytest.param(
        {"phase": "Failed", "reason": "Bad"},
        {"phase": "Ready", "reason": None},
        {"phase": "Ready", "reason": None},
        id="none-deletes-a-key",
    ),
    pytest.param(
        {"phase": "Ready"}, {"reason": None}, {}, id="none-for-an-absent-key-is-no-change"
    ),
    pytest.param(
        {"phase": "Ready", "kopf": {"progress": {}}},
        {"phase": "Ready"},
        {},
        id="keys-not-wanted-are-left-alone",
    ),
    pytest.param(
        {"containers": [{"name": "a"}]},
        {"containers": [{"name": "a"}, {"name": "b"}]},
        {"containers": [{"name": "a"}, {"name": "b"}]},
        id="a-changed-list-is-replaced-whole",
    ),
    pytest.param(
        {"observedGeneration": 1},
        {"observedGeneration": 2},
        {"observedGeneration": 2},
        id="generation",
    ),
]


@pytest.mark.parametrize(("current", "wanted", "patch"), PATCHES)
def test_a_status_patch_carries_only_what_changed(current, wanted, patch):
    assert status_patch(current, wanted) == patch


# -- member_summary (reconciler) ----------------------------------------------------------


def member(name: str, phase: str | None, state: str | None = None, cid: str = "") -> dict:
    obj: dict[str, Any] = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if state is not None:
        obj["spec"]["state"] = state
    if phase is not None:
        obj["status"]["phase"] = phase
    if cid:
        obj["status"]["containerID"] = cid
    return obj


def test_member_entries_are_sorted_by_name():
    members = [member("web-c", "Started"), member("web-a", "Started"), member("web-b", "Pending")]

    entries, _ = member_summary(members)

    assert [e["name"] for e in entries] == ["web-a", "web-b", "web-c"]


def test_a_member_entry_names_its_container_id_and_phase():
    entries, _ = member_summary([member("web-a", "Started", cid="c" * 64), member("web-b", None)])

    assert entries == [
        {"name": "web-a", "containerID": "c" * 64, "phase": "Started"},
        {"name": "web-b", "containerID": "", "phase": "Pending"},
    ]


SETTLED = [
    pytest.param("Started", "Started", True, id="started-wanted-started"),
    pytest.param(None, "Started", True, id="no-state-means-started"),
    pytest.param("Started", "Created", False, id="started-wanted-only-created"),
    pytest.param("Started", "Stopped", False, id="started-wanted-stopped"),
    pytest.param("Started", "Pending", False, id="started-wanted-pending"),
    pytest.param("Started", None, False, id="started-wanted-no-status"),
    pytest.param("Started", "Failed", False, id="started-wanted-failed"),
    pytest.param("Stopped", "Stopped", True, id="stopped-wanted-stopped"),
    pytest.param("Stopped", "Created", True, id="stopped-wanted-never-ran"),
    pytest.param("Stopped", "Started", False, id="stopped-wanted-still-started"),
    pytest.param("Stopped", "Pending", False, id="stopped-wanted-pending"),
    pytest.param("Stopped", "Failed", False, id="stopped-wanted-failed"),
    pytest.param("Paused", "Started", False, id="unknown-state-never-settles"),
]


@pytest.mark.parametrize(("state", "phase", "ready"), SETTLED)
def test_a_member_is_ready_only_in_the_phase_its_state_asks_for(state, phase, ready):
    _, cond = member_summary([member("web-a", phase, state)])

    assert cond.type == "ContainersReady"
    assert cond.status is ready
    assert cond.reason == ("AllContainersReady" if ready else "ContainersNotReady")
    assert cond.message == f"{int(ready)}/1 containers in their desired state"


def test_containers_ready_needs_every_member_in_its_desired_phase():
    members = [
        member("web-a", "Started", "Started"),
        member("web-b", "Created", "Stopped"),
        member("web-c", "Pending", "Started"),
    ]

    _, cond = member_summary(members)

    assert cond.status is False
    assert cond.message == "2/3 containers in their desired state"

    members[2]["status"]["phase"] = "Started"
    _, cond = member_summary(members)

    assert cond == Condition(
        "ContainersReady", True, "AllContainersReady", "3/3 containers in their desired state"
    )


def test_a_pod_without_members_has_all_its_containers_ready():
    entries, cond = member_summary([])

    assert entries == []
    assert cond.status is True
    assert cond.message == "0/0 containers in their desired state"


# -- the reconciler's pure helpers ---------------------------------------------------------


def test_same_conditions_ignores_order_times_and_generations():
    a = [stored("A", "True", at=T0_TEXT, generation=1), stored("B", "False")]
    b = [stored("B", "False", generation=5), stored("A", "True", at=T1_TEXT)]

    assert _same_conditions(a, b)
    assert _same_conditions(None, [])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"status": "False"}, id="status"),
        pytest.param({"reason": "Other"}, id="reason"),
        pytest.param({"message": "other"}, id="message"),
        pytest.param({"type": "C"}, id="type"),
    ],
)
def test_same_conditions_sees_a_changed_status_reason_message_or_type(change):
    a = [stored("A", "True")]
    b = [dict(stored("A", "True"), **change)]

    assert not _same_conditions(a, b)


def pod_with_status(status: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "team", "uid": "u", "generation": generation},
        "spec": {"nodeName": "node-1"},
        "status": status,
    }


def reconciler() -> Reconciler:
    # The summary never touches the store: a runtime that is never called will do.
    return Reconciler(object(), node_name="node-1", infra_image="pause", clock=lambda: T1)  # type: ignore[arg-type]


def test_a_pod_summary_already_up_to_date_is_an_empty_patch():
    members = [member("web-a", "Started", "Started", cid="c1")]
    entries, cond = member_summary(members)
    status = {
        "phase": "Ready",
        "containers": entries,
        "ready": "1/1",
        "conditions": merge_conditions(None, [cond], generation=1, now=T0),
    }

    assert reconciler().reconcile_pod_summary(pod_with_status(status, generation=2), members) == {}


def test_a_pod_summary_patch_carries_new_entries_and_the_condition_transition():
    old = [member("web-a", "Pending", "Started")]
    entries, cond = member_summary(old)
    status = {
        "phase": "Ready",
        "containers": entries,
        "ready": "0/1",
        "conditions": [
            stored("SandboxReady", "True"),
            *merge_conditions(None, [cond], generation=1, now=T0),
        ],
    }
    now = [member("web-a", "Started", "Started", cid="c1")]

    patch = reconciler().reconcile_pod_summary(pod_with_status(status), now)

    assert patch["containers"] == [{"name": "web-a", "containerID": "c1", "phase": "Started"}]
    assert [c["type"] for c in patch["conditions"]] == ["SandboxReady", "ContainersReady"]
    assert patch["conditions"][0] == stored("SandboxReady", "True")
    assert patch["conditions"][1]["status"] == "True"
    assert patch["conditions"][1]["lastTransitionTime"] == T1_TEXT
    assert set(patch) == {"containers", "ready", "conditions"}
    assert patch["ready"] == "1/1"


@pytest.mark.parametrize(
    ("pod", "owned"),
    [
        pytest.param({"spec": {"nodeName": "node-1"}}, True, id="this-node"),
        pytest.param({"spec": {"nodeName": "node-2"}}, False, id="another-node"),
        pytest.param({"spec": {}}, False, id="no-node"),
        pytest.param({}, False, id="no-spec"),
        pytest.param({"spec": "nodeName"}, False, id="spec-not-an-object"),
    ],
)
def test_a_reconciler_owns_only_the_pods_of_its_node(pod, owned):
    assert reconciler().owns_pod(pod) is owned


@pytest.mark.parametrize(
    ("patch", "want"),
    [
        pytest.param({"phase": "Started"}, {"phase": "Started", "reason": "R"}, id="sets"),
        pytest.param({"reason": None}, {"phase": "Pending"}, id="none-removes"),
        pytest.param({"gone": None}, {"phase": "Pending", "reason": "R"}, id="absent-none"),
    ],
)
def test_a_status_merge_patch_sets_and_removes_keys(patch, want):
    current = {"phase": "Pending", "reason": "R"}
    assert merge_patch(current, patch) == want
    assert current == {"phase": "Pending", "reason": "R"}
