"""Every decision of the reconcile core, as tables: spec + facts + clock -> steps + status.

``controller.reconcile.plan`` is pure, so these tests build the facts by hand
(what the observer would have read from the store) and check the steps the
plan asks for, in order, and the status it gives — the kubelet's
``TestComputePodActions`` for podstore. The real-store tests (tests/cli,
tests/e2e) prove that the executor does what the steps say.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.actions import (
    CreateContainer,
    CreateSandbox,
    Emit,
    Mount,
    NameLayer,
    PullImage,
    Remove,
    RenderConfig,
    Unmount,
    WriteTemplate,
)
from controller.reconcile.facts import Backoff, ContainerFacts, Dirs, PodFacts, Stored
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import (
    BACKOFF_MAX,
    NEVER_PULL_RETRY,
    STORAGE_RETRY,
    WAIT_FOR_POD,
    Context,
    Created,
    Object,
    Outcome,
    Plan,
    PodView,
    Results,
    container_settled,
    failed,
    kstatus,
    next_backoff,
    plan_container,
    plan_orphans,
    plan_pod,
    plan_removal,
    pod_ready,
    pod_summary,
    pull_step,
    same_image,
    sandbox_of,
    storage_trouble,
    waiting,
)

T0 = 1_700_000_000.0
CTX = Context("node-1", "registry.test/pause:3", "agent", T0)
POD_UID = "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a"
CTR_UID = "5e1f0c2a-1111-4222-8333-444455556666"
POD_REF = ObjectRef(model.POD_KIND, "team", "web", POD_UID)
CTR_REF = ObjectRef(model.CONTAINER_KIND, "team", "web-app", CTR_UID)
POD_ID = model.pod_id_for(POD_UID, 0)
CID = model.container_id_for(CTR_UID, POD_ID)
IMAGE_ID = "b" * 64
DIRS = Dirs(f"/s/overlay-containers/{CID}/userdata", f"/r/overlay-containers/{CID}/userdata")


def pod_obj(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> Object:
    return Object(POD_REF, 1, status or {}, {"nodeName": "node-1", **(spec or {})})


def ctr_obj(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> Object:
    base = {"podName": "web", "image": "busybox:1"}
    return Object(CTR_REF, 2, status or {}, {**base, **(spec or {})})


READY_POD = PodView(POD_REF, {"nodeName": "node-1"}, {"phase": "Ready", "podID": POD_ID})


def infra(pod_id: str = POD_ID, **kw: Any) -> Stored:
    return Stored(pod_id, infra=True, pod_id=pod_id, **kw)


def member(cid: str = CID, **kw: Any) -> Stored:
    base: dict[str, Any] = {
        "pod_id": POD_ID,
        "image_name": "busybox:1",
        "image_id": IMAGE_ID,
        "created_at": int(T0) - 60,
        "labels": {
            model.LABEL_UID: CTR_UID,
            model.LABEL_TEMPLATE: model.parse_container_spec({"image": "busybox:1"}).process_hash(),
        },
    }
    base.update(kw)
    return Stored(cid, **base)


def kinds(plan: Plan | None) -> list[str]:
    assert plan is not None
    return [type(step).__name__ for step in plan.actions]


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


# -- pulls -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "present", "backoff", "want"),
    [
        pytest.param("Never", False, None, "ErrImageNeverPull", id="never-absent-waits"),
        pytest.param("Never", True, None, None, id="never-present-uses-it"),
        pytest.param("IfNotPresent", True, None, None, id="if-not-present-present"),
        pytest.param("IfNotPresent", False, None, "pull", id="if-not-present-absent-pulls"),
        pytest.param("Always", True, None, "pull", id="always-pulls-even-when-present"),
        pytest.param(
            "Always", False, Backoff(2, T0 + 5), "ImagePullBackOff", id="backing-off-waits"
        ),
        pytest.param("Always", False, Backoff(2, T0 - 1), "pull", id="back-off-over-pulls"),
    ],
)
def test_the_pull_decision_follows_the_policy_and_the_back_off(policy, present, backoff, want):
    step = pull_step(CTR_REF, "busybox:1", policy, present, backoff, ("creds",), T0)

    if want is None:
        assert step is None
    elif want == "pull":
        assert step == PullImage(CTR_REF, "busybox:1", "team", ("creds",))
    else:
        assert isinstance(step, Outcome)
        assert step.reason == want
        assert step.retry_after == (NEVER_PULL_RETRY if want == "ErrImageNeverPull" else 5.0)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(0, 10.0, id="first-failure-10s"),
        pytest.param(1, 20.0, id="second-doubles"),
        pytest.param(3, 80.0, id="fourth"),
        pytest.param(10, BACKOFF_MAX, id="capped-at-5-minutes"),
    ],
)
def test_a_failed_pull_backs_off_doubling_up_to_five_minutes(failures, delay):
    previous = Backoff(failures, 0.0) if failures else None
    state = next_backoff(previous, T0)
    assert state == Backoff(failures + 1, T0 + delay)


# -- pods ------------------------------------------------------------------------------------


def test_a_pod_with_a_bad_spec_fails_naming_the_field_with_an_event():
    plan = plan_pod(pod_obj({"attempt": -1}), PodFacts(), CTX)

    assert plan is not None
    assert plan.actions == ()
    assert plan.outcome is not None
    assert plan.outcome.failed
    assert plan.outcome.phase == "Failed"
    assert plan.outcome.status["message"].startswith("spec.attempt:")
    assert plan.outcome.status["nodeName"] == "node-1"
    assert plan.outcome.event == Emit("Warning", "InvalidSpec", plan.outcome.status["message"])


def test_a_pod_of_another_node_is_left_alone():
    assert plan_pod(pod_obj({"nodeName": "node-2"}), PodFacts(), CTX) is None


@pytest.mark.parametrize(
    ("facts", "spec", "backoff", "steps", "waits"),
    [
        pytest.param(
            PodFacts(image_present=True),
            {},
            None,
            ["CreateSandbox", "Emit"],
            None,
            id="new-pod-image-present",
        ),
        pytest.param(
            PodFacts(image_present=False),
            {},
            None,
            ["PullImage", "CreateSandbox", "Emit"],
            None,
            id="new-pod-pulls-first",
        ),
        pytest.param(
            PodFacts(image_present=False),
            {"imagePullPolicy": "Never"},
            None,
            [],
            "ErrImageNeverPull",
            id="never-pull-absent-waits",
        ),
        pytest.param(
            PodFacts(image_present=False),
            {},
            Backoff(1, T0 + 9),
            [],
            "ImagePullBackOff",
            id="backing-off",
        ),
        pytest.param(PodFacts(stored=(infra(),), dirs=DIRS), {}, None, [], None, id="in-step"),
        pytest.param(
            PodFacts(stored=(infra(layer_named=False),), dirs=DIRS),
            {},
            None,
            ["NameLayer"],
            None,
            id="killed-create-layer-named",
        ),
        pytest.param(
            PodFacts(stored=(infra(model.pod_id_for(POD_UID, 1)),), image_present=True),
            {},
            None,
            ["Remove", "Emit", "CreateSandbox", "Emit"],
            None,
            id="new-attempt-replaces-the-sandbox",
        ),
    ],
)
def test_a_pods_steps_make_its_sandbox_exist(facts, spec, backoff, steps, waits):
    plan = plan_pod(pod_obj(spec), facts, CTX, backoff)

    assert kinds(plan) == steps
    assert plan is not None
    assert plan.pod_id == POD_ID
    if waits:
        assert plan.outcome is not None
        assert plan.outcome.reason == waits
        assert plan.outcome.phase == "Pending"
        assert not plan.outcome.failed
    else:
        assert plan.outcome is None


def test_a_new_sandbox_is_made_from_the_agents_infra_image_with_the_objects_labels():
    plan = plan_pod(pod_obj(), PodFacts(image_present=True), CTX)

    assert plan is not None
    create = plan.actions[0]
    assert create == CreateSandbox(POD_REF, POD_ID, "registry.test/pause:3", 0, create.labels)
    assert create.labels[model.LABEL_UID] == POD_UID
    assert create.labels[model.LABEL_NODE] == "node-1"
    assert create.labels[model.LABEL_SOURCE] == "agent"
    assert plan.actions[1] == Emit("Normal", "SandboxCreated", f"infra container {POD_ID[:12]}")


def test_a_pods_own_infra_image_and_secrets_win():
    spec = {"infraImage": "registry.test/other:1", "imagePullSecrets": [{"name": "creds"}]}
    plan = plan_pod(pod_obj(spec), PodFacts(image_present=False), CTX)

    assert plan is not None
    assert plan.actions[0] == PullImage(POD_REF, "registry.test/other:1", "team", ("creds",))


def test_a_ready_pod_reports_its_sandbox_dirs_members_and_kstatus():
    plan = Plan(pod_id=POD_ID)
    members = [
        {"metadata": {"name": "web-a"}, "spec": {}, "status": {"phase": "Started"}},
        {"metadata": {"name": "web-b"}, "spec": {"state": "Stopped"}, "status": {}},
    ]
    out = pod_ready(pod_obj(), plan, PodFacts(dirs=DIRS), Results(), members, CTX)

    assert out.phase == "Ready"
    assert out.retry_after is None
    assert out.status["workDir"] == DIRS.work
    assert out.status["runDir"] == DIRS.run
    assert out.status["ready"] == "1/2"
    assert [e["name"] for e in out.status["containers"]] == ["web-a", "web-b"]
    assert cond(out.status, "ContainersReady")["status"] == "False"
    assert cond(out.status, "Reconciling")["status"] == "False"
    assert cond(out.status, "Stalled")["status"] == "False"
    assert out.status["reason"] is None
    assert out.status["observedGeneration"] == 1


def test_a_just_made_sandbox_reports_the_dirs_the_create_returned():
    made = Created(POD_ID, DIRS, "pause", IMAGE_ID, int(T0))
    out = pod_ready(pod_obj(), Plan(pod_id=POD_ID), PodFacts(), Results(made), [], CTX)
    assert out.status["workDir"] == DIRS.work
    assert out.status["ready"] == "0/0"


def test_a_ready_pod_without_dirs_reports_empty_ones():
    out = pod_ready(pod_obj(), Plan(pod_id=POD_ID), PodFacts(), Results(), [], CTX)
    assert out.status["workDir"] == ""
    assert out.status["runDir"] == ""


def test_a_pod_summary_in_step_is_an_empty_patch_and_a_change_patches_it():
    members = [{"metadata": {"name": "web-a"}, "spec": {}, "status": {"phase": "Started"}}]
    first = pod_summary(pod_obj(status={"phase": "Ready"}), members, CTX)
    assert first["ready"] == "1/1"
    assert first["containers"][0]["phase"] == "Started"

    settled = pod_obj(status={"phase": "Ready", **first})
    assert pod_summary(settled, members, replace(CTX, now=T0 + 100)) == {}

    members[0]["status"]["phase"] = "Pending"
    again = pod_summary(settled, members, CTX)
    assert again["ready"] == "0/1"


# -- containers: before converging --------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason", "field"),
    [
        pytest.param({"podName": ""}, "InvalidSpec", "spec.podName", id="no-pod-name"),
        pytest.param({"image": "Bad Image"}, "InvalidImageName", "spec.image", id="bad-image"),
        pytest.param({"state": "Paused"}, "InvalidSpec", "spec.state", id="bad-state"),
    ],
)
def test_a_container_with_a_bad_spec_fails_naming_the_field(spec, reason, field):
    plan = plan_container(ctr_obj(spec), READY_POD, ContainerFacts(), CTX)

    assert plan is not None
    assert plan.outcome is not None
    assert plan.actions == ()
    assert plan.outcome.failed
    assert plan.outcome.reason == reason
    assert plan.outcome.status["message"].startswith(f"{field}:")
    assert plan.outcome.event is not None
    assert plan.outcome.event.reason == reason
    assert cond(plan.outcome.status, "Stalled")["status"] == "True"


def test_a_container_already_failed_gets_no_second_event():
    plan = plan_container(
        ctr_obj({"state": "Paused"}, {"phase": "Failed"}), READY_POD, ContainerFacts(), CTX
    )
    assert plan is not None
    assert plan.outcome is not None
    assert plan.outcome.event is None


@pytest.mark.parametrize(
    ("status", "mine"),
    [
        pytest.param({}, True, id="never-claimed"),
        pytest.param({"nodeName": "node-1"}, True, id="claimed-by-this-node"),
        pytest.param({"nodeName": "node-2"}, False, id="claimed-by-another-node"),
    ],
)
def test_a_container_whose_pod_is_missing_waits_unless_another_node_has_it(status, mine):
    plan = plan_container(ctr_obj(status=status), None, ContainerFacts(), CTX)

    if not mine:
        assert plan is None
        return
    assert plan is not None
    assert plan.outcome is not None
    assert plan.outcome.reason == "PodNotFound"
    assert plan.outcome.retry_after == WAIT_FOR_POD
    assert "create it" in plan.outcome.status["message"]
    # Waiting on a pod someone may still create is Reconciling, not Stalled.
    assert cond(plan.outcome.status, "Reconciling")["status"] == "True"
    assert cond(plan.outcome.status, "Stalled")["status"] == "False"


def test_a_container_of_another_nodes_pod_is_left_alone():
    pod = replace(READY_POD, spec={"nodeName": "node-2"})
    assert plan_container(ctr_obj(), pod, ContainerFacts(), CTX) is None


@pytest.mark.parametrize(
    ("pod", "present", "want"),
    [
        pytest.param(READY_POD, False, POD_ID, id="ready-pod-names-its-sandbox"),
        pytest.param(
            replace(READY_POD, status={"phase": "Pending"}), True, POD_ID, id="status-lags"
        ),
        pytest.param(replace(READY_POD, status={}), False, "", id="not-made-yet"),
        pytest.param(
            replace(READY_POD, spec={"nodeName": "node-1", "attempt": "x"}, status={}),
            True,
            "",
            id="pod-spec-invalid",
        ),
    ],
)
def test_the_sandbox_a_container_joins(pod, present, want):
    assert sandbox_of(pod, present) == want


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        pytest.param(replace(READY_POD, status={}), "no status", id="no-status"),
        pytest.param(replace(READY_POD, status={"phase": "Pending"}), "Pending", id="pending-pod"),
        pytest.param(
            replace(READY_POD, spec={"nodeName": "node-1", "attempt": -1}),
            "its spec is not valid",
            id="pod-spec-invalid",
        ),
    ],
)
def test_a_container_waits_for_its_pod_to_be_ready(pod, why):
    plan = plan_container(ctr_obj(), pod, ContainerFacts(), CTX)

    assert plan is not None
    assert plan.outcome is not None
    assert plan.actions == ()
    assert plan.outcome.reason == "PodNotReady"
    assert plan.outcome.phase == "Pending"
    assert why in plan.outcome.status["message"]
    assert cond(plan.outcome.status, "Reconciling")["status"] == "True"
    assert cond(plan.outcome.status, "Stalled")["status"] == "False"


# -- containers: converging -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "facts", "steps"),
    [
        pytest.param(
            {},
            {},
            ContainerFacts(image_present=True),
            ["CreateContainer", "WriteTemplate", "Emit", "Mount", "Emit"],
            id="new-started-container",
        ),
        pytest.param(
            {"state": "Stopped"},
            {},
            ContainerFacts(image_present=False),
            ["PullImage", "CreateContainer", "WriteTemplate", "Emit"],
            id="new-stopped-container-pulls",
        ),
        pytest.param(
            {},
            {"phase": "Started", "mountPoint": "/m"},
            ContainerFacts(
                stored=(member(mounted=True),),
                dirs=DIRS,
                template_present=True,
                rendered_root="/m",
            ),
            [],
            id="in-step",
        ),
        pytest.param(
            {},
            {"phase": "Started", "mountPoint": "/m"},
            ContainerFacts(stored=(member(mounted=True),), dirs=DIRS, template_present=True),
            ["RenderConfig", "Emit"],
            id="rendered-config-gone",
        ),
        pytest.param(
            {},
            {"phase": "Started"},
            ContainerFacts(stored=(member(mounted=False),), dirs=DIRS, template_present=True),
            ["Mount", "Emit"],
            id="unmounted-behind-its-back",
        ),
        pytest.param(
            {},
            {},
            ContainerFacts(stored=(member(mounted=True),), dirs=DIRS, template_present=True),
            ["Mount", "Emit"],
            id="mounted-but-mountpoint-unknown",
        ),
        pytest.param(
            {"state": "Stopped"},
            {"phase": "Started", "mountPoint": "/m"},
            ContainerFacts(
                stored=(member(mounted=True),),
                dirs=DIRS,
                template_present=True,
                rendered_root="/m",
            ),
            ["Unmount", "Emit"],
            id="stop",
        ),
        pytest.param(
            {"state": "Stopped"},
            {"phase": "Stopped"},
            ContainerFacts(stored=(member(),), dirs=DIRS, template_present=True),
            [],
            id="stopped-in-step",
        ),
        pytest.param(
            {"args": ["-c", "echo"]},
            {"phase": "Started", "mountPoint": "/m"},
            ContainerFacts(
                stored=(member(mounted=True),),
                dirs=DIRS,
                template_present=True,
                rendered_root="/m",
            ),
            ["WriteTemplate", "RenderConfig", "Emit"],
            id="new-args-rewrite-and-render",
        ),
        pytest.param(
            {},
            {"phase": "Stopped"},
            ContainerFacts(stored=(member(),), dirs=DIRS, template_present=False),
            ["WriteTemplate", "Emit", "Mount", "Emit"],
            id="template-gone-rewritten-then-started",
        ),
        pytest.param(
            {},
            {"phase": "Started", "mountPoint": "/m"},
            ContainerFacts(
                stored=(member(mounted=True, layer_named=False),),
                dirs=DIRS,
                template_present=True,
                rendered_root="/m",
            ),
            ["NameLayer"],
            id="killed-create-layer-named",
        ),
        pytest.param(
            {"image": "busybox:2"},
            {"phase": "Started", "startedAt": "x"},
            ContainerFacts(stored=(member(mounted=True),), image_present=True),
            ["Remove", "Emit", "CreateContainer", "WriteTemplate", "Emit", "Mount", "Emit"],
            id="image-changed-recreates",
        ),
        pytest.param(
            {},
            {},
            ContainerFacts(stored=(member("c" * 64, pod_id="d" * 64),), image_present=True),
            ["Remove", "CreateContainer", "WriteTemplate", "Emit", "Mount", "Emit"],
            id="old-sandboxes-container-goes",
        ),
        pytest.param(
            {"imagePullPolicy": "Never"},
            {},
            ContainerFacts(stored=(member("c" * 64, pod_id="d" * 64),), image_present=False),
            ["Remove"],
            id="never-pull-absent-removes-then-waits",
        ),
    ],
)
def test_a_containers_steps_bring_it_to_its_spec(spec, status, facts, steps):
    plan = plan_container(ctr_obj(spec, status), READY_POD, facts, CTX)
    assert kinds(plan) == steps


def test_a_new_container_is_made_in_its_pods_sandbox_with_its_template_hash():
    spec = {"mountLabel": "l", "imageID": IMAGE_ID}
    plan = plan_container(ctr_obj(spec), READY_POD, ContainerFacts(image_present=True), CTX)

    assert plan is not None
    assert plan.container_id == CID
    assert plan.pod_id == POD_ID
    create = plan.actions[0]
    assert isinstance(create, CreateContainer)
    assert (create.container, create.pod, create.container_id, create.pod_id) == (
        CTR_REF,
        POD_REF,
        CID,
        POD_ID,
    )
    assert create.spec.image_id == IMAGE_ID
    assert create.spec.mount_label == "l"
    assert create.labels[model.LABEL_TEMPLATE] == create.spec.process_hash()
    assert plan.actions[1] == WriteTemplate(CID, create.spec, POD_REF, create.labels)
    assert plan.actions[2] == Emit("Normal", "Created", f"storage container {CID[:12]}")
    assert plan.actions[3] == Mount(CID)
    assert plan.actions[4] == Emit("Normal", "Started", "mounted at {mountpoint}")
    assert plan.started_now
    assert not plan.stopped_now


def test_a_remount_of_a_started_container_is_a_warning():
    facts = ContainerFacts(stored=(member(),), dirs=DIRS, template_present=True)
    plan = plan_container(ctr_obj(status={"phase": "Started"}), READY_POD, facts, CTX)
    assert plan is not None
    assert plan.actions[-1] == Emit("Warning", "Remounted", "was not mounted; mounted again")


def test_a_rendered_config_gone_is_rendered_at_the_known_mountpoint():
    facts = ContainerFacts(stored=(member(mounted=True),), dirs=DIRS, template_present=True)
    plan = plan_container(ctr_obj(status={"mountPoint": "/m"}), READY_POD, facts, CTX)
    assert plan is not None
    assert plan.actions[0] == RenderConfig(CID, "/m")


def test_a_rewritten_template_of_an_existing_container_updates_its_label():
    facts = ContainerFacts(stored=(member(),), dirs=DIRS, template_present=True)
    plan = plan_container(ctr_obj({"args": ["x"], "state": "Stopped"}), READY_POD, facts, CTX)
    assert plan is not None
    step = plan.actions[0]
    assert isinstance(step, WriteTemplate)
    assert step.update_labels
    assert step.labels[model.LABEL_TEMPLATE] == step.spec.process_hash()
    assert step.labels[model.LABEL_UID] == CTR_UID
    assert plan.actions[1] == Emit("Normal", "ConfigUpdated", "runtime config template rewritten")


def test_the_steps_of_a_stop_and_a_layer_fix_are_exact():
    facts = ContainerFacts(
        stored=(member(mounted=True, layer_named=False),), dirs=DIRS, template_present=True
    )
    plan = plan_container(ctr_obj({"state": "Stopped"}), READY_POD, facts, CTX)
    assert plan is not None
    assert plan.actions == (NameLayer(CID), Unmount(CID), Emit("Normal", "Stopped", "unmounted"))
    assert plan.stopped_now


def test_a_containers_pull_uses_its_pods_secrets():
    pod = replace(READY_POD, spec={"nodeName": "node-1", "imagePullSecrets": [{"name": "s"}]})
    plan = plan_container(ctr_obj(), pod, ContainerFacts(image_present=False), CTX)
    assert plan is not None
    assert plan.actions[0] == PullImage(CTR_REF, "busybox:1", "team", ("s",))


def test_a_container_backing_off_its_pull_waits_with_the_remaining_delay():
    plan = plan_container(
        ctr_obj(), READY_POD, ContainerFacts(image_present=False), CTX, Backoff(1, T0 + 7)
    )
    assert plan is not None
    assert plan.outcome is not None
    assert plan.outcome.reason == "ImagePullBackOff"
    assert plan.outcome.retry_after == 7.0


def test_a_plan_with_the_spec_parsed_already_does_not_parse_it_again():
    spec = model.parse_container_spec({"podName": "web", "image": "busybox:9"})
    plan = plan_container(ctr_obj(), READY_POD, ContainerFacts(image_present=True), CTX, spec=spec)
    assert plan is not None
    assert plan.spec is spec


def test_a_pod_plan_with_the_spec_parsed_already_uses_it():
    spec = model.parse_pod_spec({"nodeName": "node-1", "attempt": 3})
    plan = plan_pod(pod_obj(), PodFacts(image_present=True), CTX, spec=spec)
    assert plan is not None
    assert plan.pod_id == model.pod_id_for(POD_UID, 3)


# -- containers: the settled status ---------------------------------------------------------


def settled(spec: dict[str, Any], status: dict[str, Any], facts: ContainerFacts, results: Results):
    obj = ctr_obj(spec, status)
    plan = plan_container(obj, READY_POD, facts, CTX)
    assert plan is not None
    assert plan.outcome is None
    return container_settled(obj, plan, facts, results, CTX).status


def test_a_just_started_container_reports_its_mount_config_and_times():
    made = Created(CID, DIRS, "docker.io/library/busybox:1", IMAGE_ID, int(T0) - 5)
    status = settled({}, {}, ContainerFacts(image_present=True), Results(made, "/m"))

    assert status["phase"] == "Started"
    assert status["mountPoint"] == "/m"
    assert status["configPath"] == f"{DIRS.run}/config.json"
    assert status["imageID"] == IMAGE_ID
    assert status["imageName"].endswith("busybox:1")
    assert status["startedAt"] == "2023-11-14T22:13:20Z"
    assert status["createdAt"] == "2023-11-14T22:13:15Z"
    assert status["stoppedAt"] is None
    assert status["reason"] is None
    assert [c["type"] for c in status["conditions"]] == [
        "Created",
        "Started",
        "Ready",
        "Reconciling",
        "Stalled",
    ]


def test_a_started_container_in_step_keeps_its_start_time_and_mountpoint():
    facts = ContainerFacts(
        stored=(member(mounted=True),), dirs=DIRS, template_present=True, rendered_root="/m"
    )
    status = settled({}, {"phase": "Started", "startedAt": "then"}, facts, Results())
    assert status["startedAt"] == "then"
    assert status["mountPoint"] == "/m"
    assert status["createdAt"] == "2023-11-14T22:12:20Z"


@pytest.mark.parametrize(
    ("current", "phase", "stopped"),
    [
        pytest.param({}, "Created", None, id="never-started-is-created"),
        pytest.param({"startedAt": "then"}, "Stopped", "2023-11-14T22:13:20Z", id="ran-once"),
        pytest.param(
            {"phase": "Stopped", "stoppedAt": "then"}, "Stopped", "then", id="keeps-stop-time"
        ),
    ],
)
def test_a_container_asked_to_stop_is_created_or_stopped(current, phase, stopped):
    facts = ContainerFacts(stored=(member(),), dirs=DIRS, template_present=True)
    status = settled({"state": "Stopped"}, current, facts, Results())
    assert status["phase"] == phase
    assert status["stoppedAt"] == stopped
    assert status["mountPoint"] is None
    assert status["configPath"] is None


def test_a_stop_in_this_pass_takes_a_new_stop_time():
    facts = ContainerFacts(stored=(member(mounted=True),), dirs=DIRS, template_present=True)
    current = {"phase": "Started", "startedAt": "then", "stoppedAt": "long-ago"}
    status = settled({"state": "Stopped"}, current, facts, Results())
    assert status["phase"] == "Stopped"
    assert status["stoppedAt"] == "2023-11-14T22:13:20Z"


def test_a_recreated_container_starts_its_times_afresh():
    facts = ContainerFacts(stored=(member(mounted=True),), image_present=True)
    made = Created(CID, DIRS, "busybox:2", "c" * 64, int(T0))
    status = settled(
        {"image": "busybox:2"},
        {"phase": "Started", "startedAt": "then"},
        facts,
        Results(made, "/n"),
    )
    assert status["startedAt"] == "2023-11-14T22:13:20Z"
    assert status["imageID"] == "c" * 64


def test_a_container_with_nothing_known_reports_the_spec_image_and_now():
    obj = ctr_obj()
    plan = Plan(container_id=CID, pod_id=POD_ID)
    status = container_settled(obj, plan, ContainerFacts(), Results(), CTX).status
    assert status["imageName"] == "busybox:1"
    assert status["imageID"] == ""
    assert status["createdAt"] == "2023-11-14T22:13:20Z"
    assert status["workDir"] == ""


# -- not ready ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ready", "stalled", "want"),
    [
        pytest.param(True, False, ("False", "False"), id="ready-is-current"),
        pytest.param(False, False, ("True", "False"), id="on-its-way-is-reconciling"),
        pytest.param(False, True, ("False", "True"), id="stuck-is-stalled"),
    ],
)
def test_kstatus_conditions(ready, stalled, want):
    got = kstatus(ready=ready, stalled=stalled, reason="R", message="m")
    assert [c.type for c in got] == ["Reconciling", "Stalled"]
    assert tuple(c.status_text for c in got) == want


def test_a_storage_error_is_pending_and_retried():
    out = storage_trouble(ctr_obj(), "mount exited 1: busy", CTX)
    assert out.phase == "Pending"
    assert out.reason == "StorageError"
    assert out.retry_after == STORAGE_RETRY
    assert not out.failed
    assert out.event is None


def test_a_waiting_pod_keeps_its_node_and_both_pod_conditions():
    wait = Outcome({"phase": "Pending", "reason": "ErrImagePull", "message": "m"}, retry_after=3)
    out = waiting(pod_obj(), wait, CTX)
    assert out.status["nodeName"] == "node-1"
    assert out.retry_after == 3
    assert cond(out.status, "SandboxReady")["reason"] == "ErrImagePull"
    assert cond(out.status, "Ready")["status"] == "False"


def test_a_failure_of_a_container_has_no_node_name():
    out = failed(ctr_obj(), "NameConflict", "taken", CTX)
    assert "nodeName" not in out.status
    assert out.failed


# -- removal, orphans, images ----------------------------------------------------------------


def test_a_removal_takes_every_stored_container_and_the_one_the_status_names():
    stored = (infra(), member())
    assert plan_removal(stored) == (Remove(POD_ID, sandbox=True), Remove(CID))
    assert plan_removal(stored, "e" * 64)[-1] == Remove("e" * 64)
    assert plan_removal(stored, CID) == (Remove(POD_ID, sandbox=True), Remove(CID))


def test_an_orphan_goes_only_after_its_grace_period():
    gone = member("f" * 64, labels={model.LABEL_UID: "gone"})
    live = member(labels={model.LABEL_UID: CTR_UID})

    first = plan_orphans([gone, live], {CTR_UID}, {}, T0, 60)
    assert first.removals == ()
    assert first.seen == {gone.id: T0}

    later = plan_orphans([gone, live], {CTR_UID}, first.seen, T0 + 61, 60)
    assert later.removals == (gone,)
    assert later.seen == {}

    back = plan_orphans([gone], {"gone"}, first.seen, T0 + 61, 60)
    assert back.removals == ()
    assert back.seen == {}


@pytest.mark.parametrize(
    ("stored", "spec", "same"),
    [
        pytest.param("busybox:1", {}, True, id="same-text"),
        pytest.param("docker.io/library/busybox:1", {}, True, id="same-once-normalized"),
        pytest.param("busybox:2", {}, False, id="other-tag"),
        pytest.param("not a ref", {}, False, id="unparsable-stored-name"),
        pytest.param("busybox:1", {"imageID": "c" * 64}, False, id="other-image-id"),
        pytest.param("busybox:1", {"imageID": IMAGE_ID}, True, id="same-image-id"),
    ],
)
def test_same_image_compares_normalized_references_and_ids(stored, spec, same):
    parsed = model.parse_container_spec({"image": "busybox:1", **spec})
    assert same_image(member(image_name=stored), parsed) is same


@pytest.mark.parametrize(
    ("spec", "ctx", "where"),
    [
        pytest.param({"infraImage": "UPPER/case:1"}, CTX, "spec.infraImage", id="pods-own"),
        pytest.param({}, replace(CTX, infra_image="bad tag:x"), "--infra-image", id="agents"),
    ],
)
def test_a_malformed_infra_image_fails_the_pod_naming_where_it_came_from(spec, ctx, where):
    plan = plan_pod(pod_obj(spec), PodFacts(), ctx)
    assert plan is not None
    assert plan.outcome is not None
    assert plan.outcome.reason == "InvalidImageName"
    assert where in plan.outcome.status["message"]
    assert plan.actions == ()


def test_spec_labels_go_into_the_storage_metadata_and_podstores_own_win():
    spec = {"labels": {"team": "web", "example.com/tier": "db"}}
    plan = plan_container(ctr_obj(spec), READY_POD, ContainerFacts(image_present=True), CTX)
    assert plan is not None
    create = plan.actions[0]
    assert isinstance(create, CreateContainer)
    assert create.labels["team"] == "web"
    assert create.labels["example.com/tier"] == "db"
    assert create.labels[model.LABEL_UID] == CTR_UID


def test_changed_spec_labels_rewrite_the_metadata_labels():
    facts = ContainerFacts(stored=(member(),), dirs=DIRS, template_present=True)
    plan = plan_container(
        ctr_obj({"labels": {"team": "api"}, "state": "Stopped"}), READY_POD, facts, CTX
    )
    assert plan is not None
    step = plan.actions[0]
    assert isinstance(step, WriteTemplate)
    assert step.update_labels
    assert step.labels["team"] == "api"
