"""The CRDs in crds/ are valid, structural and enforced by controller.crds like the server."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from controller import crds

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("podstore.dev_*.yaml"))


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def storage_pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StoragePod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": "node-a", **spec},
    }


def storage_container(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StorageContainer",
        "metadata": {"name": "web-app", "namespace": "default"},
        "spec": {"podName": "web", "image": "registry.example.com/busybox:1.36", **spec},
    }


def paths(problems: list[crds.SchemaProblem]) -> list[str]:
    return [problem.path for problem in problems]


# --- the files --------------------------------------------------------------------------


def test_there_is_one_crd_file_per_kind_named_as_kubebuilder_names_them() -> None:
    names = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert names == [
        "podstore.dev_storagecontainers.yaml",
        "podstore.dev_storageimages.yaml",
        "podstore.dev_storagepods.yaml",
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_each_crd_is_a_valid_custom_resource_definition(path: Path) -> None:
    for doc in load_yaml(path):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_catalog_knows_the_contract_kinds() -> None:
    catalog = crds.load()
    assert catalog.kinds == dict(crds.KINDS)
    for definition in catalog.definitions:
        assert definition.group == crds.GROUP
        assert definition.version == crds.VERSION
        assert definition.api_version == crds.API_VERSION
        # StorageImage asks nodes, not a namespace, to hold an image.
        assert definition.namespaced == (definition.kind != "StorageImage")
        assert definition.subresources == ("status",)
        assert definition.categories == ("podstore",)


@pytest.mark.parametrize(
    ("kind", "short_name", "selectable"),
    [
        pytest.param("StoragePod", "spod", ".spec.nodeName", id="pods"),
        pytest.param("StorageContainer", "sctr", ".spec.podName", id="containers"),
    ],
)
def test_each_kind_has_its_short_name_selectable_field_and_printer_columns(
    kind: str, short_name: str, selectable: str
) -> None:
    definition = crds.load().definition(kind)
    assert definition.short_names == (short_name,)
    assert crds.load().definition(short_name) is definition
    assert definition.selectable_fields == (selectable,)
    columns = {c.name: c for c in definition.printer_columns}
    assert columns["Phase"].json_path == ".status.phase"
    assert columns["Node"].json_path in (".spec.nodeName", ".status.nodeName")
    assert columns["Age"].json_path == ".metadata.creationTimestamp"
    assert columns["Age"].type == "date"
    if kind == "StorageContainer":
        assert columns["Image"].json_path == ".spec.image"
        assert columns["Container ID"].json_path == ".status.containerID"
    else:
        assert columns["Pod ID"].json_path == ".status.podID"


# --- structural schemas -----------------------------------------------------------------------


def structural_problems(node: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """What makes a schema non-structural, after the apiextensions rules."""
    int_or_string = node.get("x-kubernetes-int-or-string")
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if "type" not in node and not (int_or_string or preserve):
        yield f"{path or '<root>'}: no type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: both properties and additionalProperties"
    if node.get("type") == "array" and "items" not in node:
        yield f"{path}: an array without items"
    for forbidden in ("$ref", "definitions", "dependencies", "uniqueItems"):
        if forbidden in node:
            yield f"{path}: {forbidden} is not allowed"
    if node.get("x-kubernetes-list-type") == "map":
        items = node.get("items", {})
        for key in node.get("x-kubernetes-list-map-keys", []):
            key_schema = items.get("properties", {}).get(key)
            if key_schema is None:
                yield f"{path}: list-map key {key} is not a property of the items"
            elif key not in items.get("required", []) and "default" not in key_schema:
                yield f"{path}: list-map key {key} is neither required nor defaulted"
    for name, sub in (node.get("properties") or {}).items():
        yield from structural_problems(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), Mapping):
        yield from structural_problems(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from structural_problems(node["additionalProperties"], f"{path}{{*}}")


@pytest.mark.parametrize("kind", sorted(crds.KINDS))
def test_each_schema_is_structural(kind: str) -> None:
    schema = crds.schema_for(kind)
    assert list(structural_problems(schema)) == []
    # metadata may only restrict name and generateName.
    assert set(schema["properties"]["metadata"].get("properties", {})) <= {"name", "generateName"}


def test_the_structural_check_catches_a_typeless_node() -> None:
    bad = {"type": "object", "properties": {"spec": {"properties": {"x": {"type": "string"}}}}}
    assert list(structural_problems(bad)) == ["spec: no type"]


@pytest.mark.parametrize("kind", sorted(crds.KINDS))
def test_each_schema_is_a_valid_json_schema(kind: str) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(crds.schema_for(kind))


def test_schema_for_returns_a_copy() -> None:
    schema = crds.schema_for("StoragePod")
    schema["properties"].clear()
    assert crds.schema_for("StoragePod")["properties"]


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_samples_validate(path: Path) -> None:
    docs = load_yaml(path)
    assert docs
    for doc in docs:
        assert crds.validate(doc) == []


def test_the_pod_sample_has_two_containers() -> None:
    (pod,) = load_yaml(ROOT / "manifests/samples/podstore.dev_v1alpha1_storagepod.yaml")
    assert len(pod["spec"]["containers"]) == 2


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        pytest.param(
            {**storage_pod(), "spec": {}}, "spec.nodeName", "FieldValueRequired", id="no-node"
        ),
        pytest.param(
            {k: v for k, v in storage_pod().items() if k != "spec"},
            "spec",
            "FieldValueRequired",
            id="no-spec",
        ),
        pytest.param(
            storage_pod(imagePullPolicy="Sometimes"),
            "spec.imagePullPolicy",
            "FieldValueNotSupported",
            id="bad-pull-policy",
        ),
        pytest.param(
            storage_pod(
                containers=[
                    {"name": "app", "image": "registry.example.com/a:1"},
                    {"name": "App_1", "image": "registry.example.com/b:1"},
                ]
            ),
            "spec.containers[1].name",
            "FieldValueInvalid",
            id="bad-container-name",
        ),
        pytest.param(
            storage_pod(containers=[{"name": "a" * 64, "image": "registry.example.com/a:1"}]),
            "spec.containers[0].name",
            "FieldValueTooLong",
            id="long-container-name",
        ),
        pytest.param(
            storage_pod(containers=[{"name": "app"}]),
            "spec.containers[0].image",
            "FieldValueRequired",
            id="template-without-image",
        ),
        pytest.param(
            storage_pod(speck=1), "spec.speck", "FieldValueUnknown", id="unknown-spec-field"
        ),
        pytest.param(
            storage_pod(attempt=-1), "spec.attempt", "FieldValueInvalid", id="negative-attempt"
        ),
        pytest.param(
            storage_pod(imagePullSecrets=[{"name": "a"}, {"name": "a"}]),
            "spec.imagePullSecrets[1]",
            "FieldValueDuplicate",
            id="duplicate-secret",
        ),
        pytest.param(
            {**storage_pod(), "metadata": {"name": "Web"}},
            "metadata.name",
            "FieldValueInvalid",
            id="bad-object-name",
        ),
        pytest.param(
            {**storage_pod(), "metadata": {}},
            "metadata.name",
            "FieldValueRequired",
            id="no-object-name",
        ),
        pytest.param(
            {**storage_container(), "spec": {"image": "x"}},
            "spec.podName",
            "FieldValueRequired",
            id="no-pod-name",
        ),
        pytest.param(
            storage_container(state="Running"),
            "spec.state",
            "FieldValueNotSupported",
            id="bad-state",
        ),
        pytest.param(
            storage_container(imageID="sha256:1234"),
            "spec.imageID",
            "FieldValueInvalid",
            id="short-image-id",
        ),
        pytest.param(
            storage_container(env=[{"name": "1ABC"}]),
            "spec.env[0].name",
            "FieldValueInvalid",
            id="bad-env-name",
        ),
        pytest.param(
            storage_container(env=[{"name": "A", "value": 1}]),
            "spec.env[0].value",
            "FieldValueTypeInvalid",
            id="env-value-not-a-string",
        ),
        pytest.param(
            storage_container(workingDir="relative/dir"),
            "spec.workingDir",
            "FieldValueInvalid",
            id="relative-working-dir",
        ),
        pytest.param(
            {**storage_container(), "status": {"phase": "Running"}},
            "status.phase",
            "FieldValueNotSupported",
            id="bad-phase",
        ),
        pytest.param(
            {
                **storage_container(),
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "Yes",
                            "reason": "Mounted",
                            "message": "",
                            "lastTransitionTime": "2025-01-01T00:00:00Z",
                        }
                    ]
                },
            },
            "status.conditions[0].status",
            "FieldValueNotSupported",
            id="bad-condition-status",
        ),
        pytest.param(
            {**storage_container(), "status": {"startedAt": "yesterday"}},
            "status.startedAt",
            "FieldValueInvalid",
            id="bad-date-time",
        ),
        pytest.param(
            {**storage_container(), "kind": "StorageThing"},
            "kind",
            "FieldValueNotSupported",
            id="unknown-kind",
        ),
        pytest.param(
            {**storage_container(), "apiVersion": "podstore.dev/v1"},
            "apiVersion",
            "FieldValueNotSupported",
            id="unknown-version",
        ),
    ],
)
def test_an_invalid_object_is_rejected_with_the_field_path_named(
    obj: dict[str, Any], path: str, reason: str
) -> None:
    problems = crds.validate(obj)
    assert path in paths(problems), problems
    assert reason in [p.reason for p in problems if p.path == path]
    assert any(str(p).startswith(f"{path}: ") for p in problems)


def test_unknown_fields_are_accepted_when_not_strict() -> None:
    assert crds.validate(storage_pod(speck=1), strict=False) == []


def test_a_valid_condition_passes() -> None:
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "InfraContainerCreated",
        "message": "",
        "lastTransitionTime": "2025-01-01T12:00:00.123456+00:00",
        "observedGeneration": 3,
    }
    obj = {**storage_pod(), "status": {"phase": "Ready", "conditions": [condition]}}
    assert crds.validate(obj) == []


def test_null_fields_are_pruned_as_the_server_does() -> None:
    assert crds.validate(storage_pod(infraImage=None)) == []
    assert "infraImage" not in crds.apply_defaults(storage_pod(infraImage=None))["spec"]


@pytest.mark.parametrize(
    ("kind_obj", "field", "new_value"),
    [
        pytest.param(storage_pod(), "nodeName", "node-b", id="node-name"),
        pytest.param(storage_container(), "podName", "db", id="pod-name"),
    ],
)
def test_the_immutable_fields_cannot_change(
    kind_obj: dict[str, Any], field: str, new_value: str
) -> None:
    new = copy.deepcopy(kind_obj)
    new["spec"][field] = new_value
    problems = crds.validate_update(kind_obj, new)
    assert paths(problems) == [f"spec.{field}"]
    assert "immutable" in problems[0].message
    assert crds.validate_update(kind_obj, copy.deepcopy(kind_obj)) == []


# --- defaults -----------------------------------------------------------------------------


def test_defaults_are_applied_recursively() -> None:
    pod = crds.apply_defaults(
        storage_pod(containers=[{"name": "app", "image": "registry.example.com/a:1"}])
    )
    assert pod["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["attempt"] == 0
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["containers"][0]["state"] == "Started"
    container = crds.apply_defaults(storage_container())
    assert container["spec"]["state"] == "Started"
    assert container["spec"]["imagePullPolicy"] == "IfNotPresent"


def test_given_values_win_over_defaults_and_the_input_is_not_changed() -> None:
    obj = storage_container(state="Stopped", imagePullPolicy="Never")
    before = copy.deepcopy(obj)
    result = crds.apply_defaults(obj)
    assert result["spec"]["state"] == "Stopped"
    assert result["spec"]["imagePullPolicy"] == "Never"
    assert obj == before


def test_prune_removes_and_names_unknown_fields() -> None:
    obj = storage_pod(speck=1, containers=[{"name": "a", "image": "i", "extra": True}])
    obj["metadata"]["bogus"] = "x"
    obj["metadata"]["labels"] = {"a": "b"}
    pruned, removed = crds.load().prune(obj)
    assert sorted(removed) == ["metadata.bogus", "spec.containers[0].extra", "spec.speck"]
    assert pruned["metadata"]["labels"] == {"a": "b"}
    assert "speck" not in pruned["spec"]


# --- loading ------------------------------------------------------------------------------


def test_the_crd_folder_can_be_given(tmp_path: Path) -> None:
    shutil.copy(ROOT / "crds" / "podstore.dev_storagepods.yaml", tmp_path)
    catalog = crds.load(tmp_path)
    assert catalog.kinds == {"StoragePod": "storagepods"}
    assert crds.validate(storage_pod(), directory=tmp_path) == []
    assert paths(crds.validate(storage_container(), directory=tmp_path)) == ["kind"]


def test_a_missing_crd_folder_is_a_crd_error(tmp_path: Path) -> None:
    with pytest.raises(crds.CRDError, match="no CRD folder"):
        crds.Catalog.load(tmp_path / "nowhere")
    with pytest.raises(crds.CRDError, match="no CustomResourceDefinition"):
        crds.Catalog.load(tmp_path)


def test_an_unknown_kind_is_a_crd_error() -> None:
    with pytest.raises(crds.CRDError, match="unknown kind"):
        crds.schema_for("Pod")


def test_openapi_nullable_and_int_or_string_are_understood() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "port": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True},
                                        "free": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    catalog = crds.Catalog.from_documents([crd])
    thing = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}}
    for spec in ({"port": 80}, {"port": "http"}, {"note": None}, {"free": {"any": [1]}}):
        assert catalog.validate({**thing, "spec": spec}) == [], spec
    assert paths(catalog.validate({**thing, "spec": {"port": 1.5}})) == ["spec.port"]


@pytest.mark.parametrize(
    ("kind", "labels", "ok"),
    [
        pytest.param("StorageContainer", {"team": "web"}, True, id="container"),
        pytest.param("StorageContainer", {"team": 1}, False, id="container-non-string"),
        pytest.param("StoragePod", {"team": "web"}, True, id="pod-template"),
        pytest.param("StoragePod", {"team": "x" * 64}, False, id="pod-template-too-long"),
    ],
)
def test_both_kinds_take_spec_labels_from_the_one_schema(kind, labels, ok) -> None:
    if kind == "StorageContainer":
        spec: dict[str, Any] = {"podName": "web", "image": "busybox:1", "labels": labels}
    else:
        spec = {"nodeName": "n", "containers": [{"name": "app", "image": "b:1", "labels": labels}]}
    obj = {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
    }
    assert (crds.validate(obj) == []) is ok
