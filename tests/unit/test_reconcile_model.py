"""Specs are parsed into typed values, and store names and IDs are derived from them.

A spec that can never work raises :class:`SpecError` naming the field; the
names and IDs are deterministic so that a retry finds what a first try made.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.model import (
    ContainerSpec,
    ObjectRef,
    PodSpec,
    SpecError,
    container_id_for,
    container_name,
    finalizer_for,
    infra_name,
    parse_container_spec,
    parse_pod_spec,
    pod_id_for,
    sandbox_name,
)
from controller.reconcile.plan import storage_labels
from controller.storage import names
from controller.storage.names import ImageReference
from controller.sync import Reconciler

HEX64 = re.compile(r"[0-9a-f]{64}")
IMAGE_ID = "0123456789abcdef" * 4
POD = ObjectRef("StoragePod", "team", "web", "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a")
CTR = ObjectRef("StorageContainer", "team", "web-app", "5e1f0c2a-1111-4222-8333-444455556666")

# -- parse_container_spec ------------------------------------------------------------


def test_a_container_spec_with_only_an_image_gets_the_defaults():
    assert parse_container_spec({"image": "busybox:1"}) == ContainerSpec(
        pod_name="",
        image="busybox:1",
        image_id="",
        image_pull_policy="IfNotPresent",
        command=None,
        args=None,
        env=(),
        working_dir="",
        mount_label="",
        state="Started",
        image_ref=ImageReference("docker", "docker.io/library/busybox", "1"),
    )


def test_a_full_container_spec_is_parsed_field_by_field():
    spec = parse_container_spec(
        {
            "podName": "web",
            "image": "busybox:1",
            "imageID": f"sha256:{IMAGE_ID}",
            "imagePullPolicy": "Never",
            "command": ["/bin/sh"],
            "args": ["-c", "true"],
            "env": [{"name": "B", "value": "2"}, {"name": "A"}, {"name": "_x.y-z", "value": ""}],
            "workingDir": "/work",
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "state": "Stopped",
        }
    )

    assert spec == ContainerSpec(
        pod_name="web",
        image="busybox:1",
        image_id=IMAGE_ID,
        image_pull_policy="Never",
        command=("/bin/sh",),
        args=("-c", "true"),
        env=(("B", "2"), ("A", ""), ("_x.y-z", "")),
        working_dir="/work",
        mount_label="system_u:object_r:container_file_t:s0",
        state="Stopped",
        image_ref=ImageReference("docker", "docker.io/library/busybox", "1"),
    )


DEFAULTED = [
    pytest.param({"imageID": IMAGE_ID}, "image_id", IMAGE_ID, id="bare-image-id-kept"),
    pytest.param({"imageID": f"sha256:{IMAGE_ID}"}, "image_id", IMAGE_ID, id="sha256-prefix-cut"),
    pytest.param({"imageID": ""}, "image_id", "", id="empty-image-id"),
    pytest.param({"imagePullPolicy": None}, "image_pull_policy", "IfNotPresent", id="null-policy"),
    pytest.param({"imagePullPolicy": ""}, "image_pull_policy", "IfNotPresent", id="empty-policy"),
    pytest.param({"state": None}, "state", "Started", id="null-state"),
    pytest.param({"command": []}, "command", (), id="empty-command-is-not-none"),
    pytest.param({"args": None}, "args", None, id="null-args"),
    pytest.param({"env": None}, "env", (), id="null-env"),
    pytest.param({"env": []}, "env", (), id="empty-env"),
    pytest.param({"workingDir": None}, "working_dir", "", id="null-working-dir"),
    pytest.param({"podName": None}, "pod_name", "", id="null-pod-name"),
]


@pytest.mark.parametrize(("fields", "attr", "value"), DEFAULTED)
def test_a_container_spec_field_left_empty_takes_its_default(fields, attr, value):
    spec = parse_container_spec({"image": "busybox:1", **fields})

    assert getattr(spec, attr) == value


CONTAINER_ERRORS = [
    pytest.param([], "spec", id="not-an-object"),
    pytest.param({}, "spec.image", id="image-missing"),
    pytest.param({"image": ""}, "spec.image", id="image-empty"),
    pytest.param({"image": 5}, "spec.image", id="image-not-a-string"),
    pytest.param({"image": "b", "podName": ["web"]}, "spec.podName", id="pod-name-not-a-string"),
    pytest.param({"image": "b", "env": {"A": "1"}}, "spec.env", id="env-not-a-list"),
    pytest.param({"image": "b", "env": ["A=1"]}, "spec.env[0].name", id="env-item-not-an-object"),
    pytest.param({"image": "b", "env": [{"value": "1"}]}, "spec.env[0].name", id="env-no-name"),
    pytest.param({"image": "b", "env": [{"name": 1}]}, "spec.env[0].name", id="env-name-int"),
    pytest.param({"image": "b", "env": [{"name": ""}]}, "spec.env[0].name", id="env-name-empty"),
    pytest.param(
        {"image": "b", "env": [{"name": "OK"}, {"name": "1ST"}]},
        "spec.env[1].name",
        id="env-name-leading-digit",
    ),
    pytest.param({"image": "b", "env": [{"name": "A B"}]}, "spec.env[0].name", id="env-space"),
    pytest.param({"image": "b", "env": [{"name": "A=B"}]}, "spec.env[0].name", id="env-equals"),
    pytest.param({"image": "b", "env": [{"name": "ÄÖ"}]}, "spec.env[0].name", id="env-non-ascii"),
    pytest.param(
        {"image": "b", "env": [{"name": "A"}, {"name": "B"}, {"name": "A", "value": "2"}]},
        "spec.env[2].name",
        id="env-name-twice",
    ),
    pytest.param(
        {"image": "b", "env": [{"name": "A", "value": 1}]},
        "spec.env[0].value",
        id="env-value-not-a-string",
    ),
    pytest.param(
        {"image": "b", "env": [{"name": "A", "value": None}]},
        "spec.env[0].value",
        id="env-value-null",
    ),
    pytest.param({"image": "b", "workingDir": "work"}, "spec.workingDir", id="relative-workdir"),
    pytest.param({"image": "b", "workingDir": "./w"}, "spec.workingDir", id="dot-workdir"),
    pytest.param({"image": "b", "workingDir": 1}, "spec.workingDir", id="workdir-not-a-string"),
    pytest.param({"image": "b", "imageID": "abc"}, "spec.imageID", id="image-id-short"),
    pytest.param(
        {"image": "b", "imageID": IMAGE_ID.upper()}, "spec.imageID", id="image-id-upper-case"
    ),
    pytest.param(
        {"image": "b", "imageID": f"sha512:{IMAGE_ID}"}, "spec.imageID", id="image-id-sha512"
    ),
    pytest.param(
        {"image": "b", "imageID": IMAGE_ID + "0"}, "spec.imageID", id="image-id-65-digits"
    ),
    pytest.param(
        {"image": "b", "imageID": f"busybox@sha256:{IMAGE_ID}"},
        "spec.imageID",
        id="image-id-a-reference",
    ),
    pytest.param(
        {"image": "b", "imagePullPolicy": "always"},
        "spec.imagePullPolicy",
        id="pull-policy-lower-case",
    ),
    pytest.param(
        {"image": "b", "imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy", id="pull-policy"
    ),
    pytest.param({"image": "b", "state": "Running"}, "spec.state", id="state-running"),
    pytest.param({"image": "b", "state": "started"}, "spec.state", id="state-lower-case"),
    pytest.param({"image": "b", "state": 1}, "spec.state", id="state-not-a-string"),
    pytest.param({"image": "b", "command": "/bin/sh"}, "spec.command", id="command-a-string"),
    pytest.param({"image": "b", "args": ["a", 1]}, "spec.args", id="args-with-an-int"),
    pytest.param({"image": "b", "mountLabel": 0}, "spec.mountLabel", id="mount-label-int"),
]


@pytest.mark.parametrize(("spec", "field"), CONTAINER_ERRORS)
def test_a_bad_container_spec_raises_a_spec_error_naming_the_field(spec, field):
    with pytest.raises(SpecError) as err:
        parse_container_spec(spec)

    assert err.value.field == field
    assert err.value.reason == "InvalidSpec"
    assert str(err.value).startswith(f"{field}: ")
    assert isinstance(err.value, ValueError)


def test_a_container_spec_error_uses_the_path_it_is_given():
    with pytest.raises(SpecError) as err:
        parse_container_spec({"image": "b", "state": "x"}, path="spec.containers[3]")

    assert err.value.field == "spec.containers[3].state"


TRAILING_NEWLINE = [
    pytest.param(
        {"image": "b", "env": [{"name": "FOO\n"}]},
        "spec.env[0].name",
        id="env-name",
    ),
    pytest.param(
        {"image": "b", "imageID": IMAGE_ID + "\n"},
        "spec.imageID",
        id="image-id",
    ),
]


@pytest.mark.parametrize(("spec", "field"), TRAILING_NEWLINE)
def test_a_value_with_a_trailing_newline_is_refused(spec, field):
    with pytest.raises(SpecError) as err:
        parse_container_spec(spec)

    assert err.value.field == field


# -- parse_pod_spec -----------------------------------------------------------------------


def test_a_pod_spec_with_only_a_node_gets_the_defaults():
    assert parse_pod_spec({"nodeName": "node-1"}) == PodSpec(
        node_name="node-1",
        infra_image="",
        image_pull_policy="IfNotPresent",
        image_pull_secrets=(),
        attempt=0,
        containers=(),
    )


def test_a_full_pod_spec_is_parsed_field_by_field():
    templates = [{"name": "app", "image": "busybox:1"}, {"name": "side-car", "image": "b"}]

    spec = parse_pod_spec(
        {
            "nodeName": "node-1",
            "infraImage": "pause:3",
            "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "one"}, {"name": "two"}],
            "attempt": 2,
            "containers": templates,
        }
    )

    assert spec == PodSpec(
        node_name="node-1",
        infra_image="pause:3",
        image_pull_policy="Always",
        image_pull_secrets=("one", "two"),
        attempt=2,
        containers=tuple(templates),
    )


@pytest.mark.parametrize(
    "attempt",
    [pytest.param(None, id="null"), pytest.param(0, id="zero")],
)
def test_a_pod_attempt_left_out_is_zero(attempt):
    assert parse_pod_spec({"nodeName": "n", "attempt": attempt}).attempt == 0


def test_a_template_name_of_63_characters_is_accepted():
    name = "a" * 63

    spec = parse_pod_spec({"nodeName": "n", "containers": [{"name": name, "image": "b"}]})

    assert spec.containers[0]["name"] == name


def tmpl(name: Any = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "b", **fields}


POD_ERRORS = [
    pytest.param([], "spec", id="not-an-object"),
    pytest.param({}, "spec.nodeName", id="node-missing"),
    pytest.param({"nodeName": ""}, "spec.nodeName", id="node-empty"),
    pytest.param({"nodeName": None}, "spec.nodeName", id="node-null"),
    pytest.param({"nodeName": 7}, "spec.nodeName", id="node-not-a-string"),
    pytest.param({"nodeName": "n", "infraImage": 1}, "spec.infraImage", id="infra-image-int"),
    pytest.param(
        {"nodeName": "n", "imagePullPolicy": "Maybe"}, "spec.imagePullPolicy", id="pull-policy"
    ),
    pytest.param(
        {"nodeName": "n", "imagePullSecrets": [{"name": "a"}, {}]},
        "spec.imagePullSecrets[1].name",
        id="pull-secret-without-name",
    ),
    pytest.param(
        {"nodeName": "n", "imagePullSecrets": ["a"]},
        "spec.imagePullSecrets[0].name",
        id="pull-secret-a-string",
    ),
    pytest.param({"nodeName": "n", "attempt": -1}, "spec.attempt", id="negative-attempt"),
    pytest.param({"nodeName": "n", "attempt": "1"}, "spec.attempt", id="attempt-a-string"),
    pytest.param({"nodeName": "n", "attempt": 1.5}, "spec.attempt", id="attempt-a-float"),
    pytest.param({"nodeName": "n", "attempt": True}, "spec.attempt", id="attempt-a-bool"),
    pytest.param(
        {"nodeName": "n", "containers": {"app": {}}}, "spec.containers", id="containers-object"
    ),
    pytest.param(
        {"nodeName": "n", "containers": ["app"]}, "spec.containers[0]", id="template-a-string"
    ),
    pytest.param(
        {"nodeName": "n", "containers": [{"image": "b"}]},
        "spec.containers[0].name",
        id="template-name-missing",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl(""), tmpl("b")]},
        "spec.containers[0].name",
        id="template-name-empty",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("App")]},
        "spec.containers[0].name",
        id="template-name-upper-case",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("my_app")]},
        "spec.containers[0].name",
        id="template-name-underscore",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("a.b")]},
        "spec.containers[0].name",
        id="template-name-dot",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("-app")]},
        "spec.containers[0].name",
        id="template-name-leading-dash",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("app-")]},
        "spec.containers[0].name",
        id="template-name-trailing-dash",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("a" * 64)]},
        "spec.containers[0].name",
        id="template-name-64-characters",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl(3)]},
        "spec.containers[0].name",
        id="template-name-int",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("a"), tmpl("b"), tmpl("a")]},
        "spec.containers[2].name",
        id="template-name-twice",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("a"), {"name": "b"}]},
        "spec.containers[1].image",
        id="template-without-image",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl(env=[{"name": "A"}, {"name": "A"}])]},
        "spec.containers[0].env[1].name",
        id="template-env-twice",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl(workingDir="rel")]},
        "spec.containers[0].workingDir",
        id="template-relative-workdir",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl(state="Paused")]},
        "spec.containers[0].state",
        id="template-bad-state",
    ),
    pytest.param(
        {"nodeName": "n", "containers": [tmpl("app\n")]},
        "spec.containers[0].name",
        id="template-name-trailing-newline",
    ),
]


@pytest.mark.parametrize(("spec", "field"), POD_ERRORS)
def test_a_bad_pod_spec_raises_a_spec_error_naming_the_field(spec, field):
    with pytest.raises(SpecError) as err:
        parse_pod_spec(spec)

    assert err.value.field == field
    assert err.value.reason == "InvalidSpec"
    assert str(err.value).startswith(f"{field}: ")


# -- object references ----------------------------------------------------------------------


def test_an_object_ref_reads_kind_namespace_name_and_uid():
    obj = {"kind": "StoragePod", "metadata": {"namespace": "team", "name": "web", "uid": "u"}}

    assert ObjectRef.of(obj) == ObjectRef("StoragePod", "team", "web", "u")
    assert str(ObjectRef.of(obj)) == "StoragePod team/web"


def test_an_object_ref_of_an_object_without_metadata_is_in_default():
    assert ObjectRef.of({}) == ObjectRef("", "default", "", "")


# -- deterministic IDs -----------------------------------------------------------------------


def test_a_pod_id_is_the_same_for_the_same_uid_and_attempt():
    assert pod_id_for(POD.uid, 1) == pod_id_for(POD.uid, 1)
    assert HEX64.fullmatch(pod_id_for(POD.uid, 1))


@pytest.mark.parametrize(
    ("uid", "attempt"),
    [
        pytest.param("other-uid", 0, id="another-uid"),
        pytest.param(POD.uid, 1, id="another-attempt"),
    ],
)
def test_a_pod_id_differs_for_another_uid_or_attempt(uid, attempt):
    assert pod_id_for(uid, attempt) != pod_id_for(POD.uid, 0)


def test_a_container_id_is_the_same_for_the_same_uid_and_pod_id():
    pod_id = pod_id_for(POD.uid, 0)

    assert container_id_for(CTR.uid, pod_id) == container_id_for(CTR.uid, pod_id)
    assert HEX64.fullmatch(container_id_for(CTR.uid, pod_id))


@pytest.mark.parametrize(
    ("uid", "attempt"),
    [
        pytest.param("other-uid", 0, id="another-container-uid"),
        pytest.param(CTR.uid, 1, id="the-pod-sandbox-of-another-attempt"),
    ],
)
def test_a_container_id_differs_for_another_uid_or_sandbox(uid, attempt):
    assert container_id_for(uid, pod_id_for(POD.uid, attempt)) != container_id_for(
        CTR.uid, pod_id_for(POD.uid, 0)
    )


def test_a_pod_and_a_container_with_the_same_uid_get_different_ids():
    assert pod_id_for("same", 0) != container_id_for("same", pod_id_for("same", 0))


def test_ids_are_stable_across_releases():
    # A changed derivation would orphan every container an earlier release made.
    pod_id = pod_id_for("u", 0)

    assert pod_id == "a78f62c18b8747345e8817e01f65d1dc52240f24567ff196d10a1b9bfd153227"
    assert (
        container_id_for("c", pod_id)
        == "c805134acbb3260c04b323f7ce586d54ec5a22063e6cda531881653535a6f57d"
    )


# -- storage names ---------------------------------------------------------------------------


def test_a_sandbox_infra_and_container_are_named_the_cri_o_way():
    uid = POD.uid

    assert sandbox_name(POD, 0) == f"k8s_web_team_{uid}_0"
    assert infra_name(POD, 3) == f"k8s_POD_web_team_{uid}_3"
    assert container_name(CTR, POD, 2) == f"k8s_web-app_web_team_{uid}_2"


PARTS = [
    pytest.param("a_b", "a-b", id="underscore-replaced"),
    pytest.param("a/b c:d", "a-b-c-d", id="unsafe-characters-replaced"),
    pytest.param("Web.v1", "Web.v1", id="dots-and-case-kept"),
    pytest.param("_x_", "x", id="separators-at-the-ends-stripped"),
    pytest.param("-.a.-", "a", id="dashes-and-dots-at-the-ends-stripped"),
    pytest.param("___", "x", id="nothing-left-is-x"),
    pytest.param("", "x", id="empty-is-x"),
    pytest.param("wéb", "w-b", id="non-ascii-replaced"),
    pytest.param("a" * 100, "a" * 63, id="cut-to-63"),
    pytest.param("a" * 62 + "_b", "a" * 62, id="cut-then-stripped"),
]


@pytest.mark.parametrize(("value", "part"), PARTS)
def test_every_name_part_is_made_safe_for_the_store(value, part):
    pod = ObjectRef("StoragePod", value, value, value)
    ctr = ObjectRef("StorageContainer", "team", value, "u")

    assert sandbox_name(pod, 0) == f"k8s_{part}_{part}_{part}_0"
    assert infra_name(pod, 0) == f"k8s_POD_{part}_{part}_{part}_0"
    assert container_name(ctr, pod, 0) == f"k8s_{part}_{part}_{part}_{part}_0"


def test_a_store_name_always_has_its_cri_o_fields_and_parts_of_at_most_63():
    ugly = ObjectRef("StoragePod", "n_s" * 50, "p_o_d" * 50, "u_i_d" * 50)
    ctr = ObjectRef("StorageContainer", "n_s", "c_t_r" * 50, "u")

    for name, fields in (
        (sandbox_name(ugly, 7), 5),
        (infra_name(ugly, 7), 6),
        (container_name(ctr, ugly, 7), 6),
    ):
        parts = name.split("_")
        assert len(parts) == fields
        assert all(0 < len(part) <= 63 for part in parts)


def test_the_longest_kubernetes_names_make_store_names_the_store_accepts():
    # Names up to 253 characters, a 63-character namespace, a UUID and the CRD's largest
    # attempt: every part is cut to 63, so the name stays within the store's 253.
    pod = ObjectRef("StoragePod", "n" * 63, "p" * 253, POD.uid)
    ctr = ObjectRef("StorageContainer", "n" * 63, "c" * 253, CTR.uid)
    attempt = 4_294_967_295

    for name in (
        sandbox_name(pod, attempt),
        infra_name(pod, attempt),
        container_name(ctr, pod, attempt),
    ):
        assert len(name) <= 243
        assert names.pod_name(name) == name
        assert names.container_name(name) == name


# -- finalizers -------------------------------------------------------------------------------

QUALIFIED = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


@pytest.mark.parametrize(
    "node",
    [
        pytest.param("node-1", id="short"),
        pytest.param("ip-10-0-0-1.ec2.internal", id="dotted"),
        pytest.param("n" * 55, id="55-characters-fit-exactly"),
    ],
)
def test_a_finalizer_names_a_node_that_fits(node):
    assert finalizer_for(node) == f"podstore.dev/storage-{node}"
    assert len(finalizer_for(node).split("/", 1)[1]) <= 63


@pytest.mark.parametrize(
    "node",
    [
        pytest.param("n" * 56, id="56-characters"),
        pytest.param("n" * 253, id="253-characters"),
        pytest.param("node 1", id="space"),
        pytest.param("node/1", id="slash"),
        pytest.param("node-", id="trailing-dash"),
        pytest.param("nøde", id="non-ascii"),
        pytest.param("node\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_a_finalizer_hashes_a_node_name_that_does_not_fit(node):
    finalizer = finalizer_for(node)
    prefix, name = finalizer.split("/", 1)

    assert prefix == "podstore.dev"
    assert name.startswith("storage-")
    assert len(name) <= 63
    assert re.fullmatch(r"storage-[0-9a-f]{32}", name)
    assert QUALIFIED.fullmatch(name)
    assert finalizer == finalizer_for(node)


def test_two_long_node_names_get_two_finalizers():
    assert finalizer_for("a" * 60 + "1") != finalizer_for("a" * 60 + "2")


def test_every_finalizer_starts_with_the_shared_prefix():
    for node in ("node-1", "x" * 80, "bad name"):
        assert finalizer_for(node).startswith(model.FINALIZER_PREFIX)


# -- process_hash --------------------------------------------------------------------------------

BASE = ContainerSpec(
    pod_name="web",
    image="busybox:1",
    image_id=IMAGE_ID,
    command=("/bin/sh",),
    args=("-c", "true"),
    env=(("A", "1"),),
    working_dir="/work",
    mount_label="label-1",
)

PROCESS_CHANGES = [
    pytest.param({"command": ("/bin/bash",)}, id="command"),
    pytest.param({"command": None}, id="command-removed"),
    pytest.param({"args": ("-c", "false")}, id="args"),
    pytest.param({"args": None}, id="args-removed"),
    pytest.param({"env": (("A", "2"),)}, id="env-value"),
    pytest.param({"env": (("B", "1"),)}, id="env-name"),
    pytest.param({"env": (("A", "1"), ("B", "2"))}, id="env-added"),
    pytest.param({"env": ()}, id="env-removed"),
    pytest.param({"working_dir": "/other"}, id="working-dir"),
    pytest.param({"mount_label": "label-2"}, id="mount-label"),
]


@pytest.mark.parametrize("change", PROCESS_CHANGES)
def test_the_process_hash_changes_with_the_process(change):
    assert dataclasses.replace(BASE, **change).process_hash() != BASE.process_hash()


PROCESS_SAME = [
    pytest.param({"image": "busybox:2"}, id="image"),
    pytest.param({"image_id": ""}, id="image-id"),
    pytest.param({"image_pull_policy": "Always"}, id="pull-policy"),
    pytest.param({"state": "Stopped"}, id="state"),
    pytest.param({"pod_name": "other"}, id="pod-name"),
]


@pytest.mark.parametrize("change", PROCESS_SAME)
def test_the_process_hash_ignores_what_is_not_the_process(change):
    assert dataclasses.replace(BASE, **change).process_hash() == BASE.process_hash()


def test_the_process_hash_is_short_hex_and_deterministic():
    again = parse_container_spec(
        {
            "podName": "web",
            "image": "busybox:1",
            "imageID": IMAGE_ID,
            "command": ["/bin/sh"],
            "args": ["-c", "true"],
            "env": [{"name": "A", "value": "1"}],
            "workingDir": "/work",
            "mountLabel": "label-1",
        }
    )

    assert again.process_hash() == BASE.process_hash()
    assert re.fullmatch(r"[0-9a-f]{16}", BASE.process_hash())


# -- labels a reconciler puts on what it makes ---------------------------------------------------


def test_a_reconciler_labels_containers_with_their_object_node_and_source():
    ctx = Reconciler(object(), node_name="node-1", infra_image="pause", source="files").context()  # type: ignore[arg-type]

    assert storage_labels(POD, ctx, extra="1") == {
        model.LABEL_KIND: "StoragePod",
        model.LABEL_NAMESPACE: "team",
        model.LABEL_NAME: "web",
        model.LABEL_UID: POD.uid,
        model.LABEL_NODE: "node-1",
        model.LABEL_SOURCE: "files",
        "extra": "1",
    }


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        pytest.param(
            {"team": "web", "example.com/tier": ""}, None, id="keys-with-and-without-prefix"
        ),
        pytest.param({"-bad": "x"}, "is not a label key", id="bad-name"),
        pytest.param({"Bad_Prefix/x": "y"}, "is not a label key", id="bad-prefix"),
        pytest.param({"podstore.dev/uid": "x"}, "podstore's own", id="podstore-key"),
        pytest.param({"node.podstore.dev/x": "y"}, "podstore's own", id="podstore-subdomain"),
        pytest.param({"team": "no spaces"}, "is not a label value", id="bad-value"),
        pytest.param({"team": 1}, "is not a label value", id="not-a-string"),
        pytest.param(["team"], "must be a map", id="not-a-map"),
    ],
)
def test_spec_labels_are_kubernetes_labels_and_never_podstores(labels, problem):
    spec = {"image": "busybox:1", "labels": labels}
    if problem is None:
        assert dict(parse_container_spec(spec).labels) == labels
        return
    with pytest.raises(SpecError, match=problem) as caught:
        parse_container_spec(spec)
    assert caught.value.field.startswith("spec.labels")


def test_labels_change_the_template_hash_only_when_used():
    plain = parse_container_spec({"image": "busybox:1"})
    labelled = parse_container_spec({"image": "busybox:1", "labels": {"a": "b"}})
    assert plain.process_hash() != labelled.process_hash()
    assert plain.process_hash() == ContainerSpec(pod_name="", image="x").process_hash()
