"""The samples in manifests/samples fit the CRDs they are written for, and objects that
break the CRDs' rules are refused."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from .common import CRD_FILES, CRDS, SAMPLES, load_objects

pytestmark = pytest.mark.deploy

SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))


def schema_problems(obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse ``obj``; empty when it would accept it.

    controller.crds applies the CRDs as the API server does (defaults, nulls, list keys,
    unknown fields); without it the openAPIV3Schema is checked with jsonschema alone.
    """
    try:
        from controller import crds
    except ImportError:
        return _jsonschema_problems(obj)
    return [str(problem) for problem in crds.validate(obj, directory=CRDS)]


def _jsonschema_problems(obj: dict[str, Any]) -> list[str]:
    schemas = {}
    for name in CRD_FILES:
        for crd in load_objects(CRDS / name):
            group = crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                key = (f"{group}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    schema = schemas.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"no CRD for {obj.get('apiVersion')} {obj.get('kind')}"]
    validator = jsonschema.Draft7Validator(schema)
    return [error.message for error in validator.iter_errors(obj)]


def samples() -> list[Any]:
    return [
        pytest.param(obj, id=f"{path.name}:{obj['metadata']['name']}")
        for path in SAMPLE_FILES
        for obj in load_objects(path)
    ]


def sample_of(kind: str) -> dict[str, Any]:
    for path in SAMPLE_FILES:
        for obj in load_objects(path):
            if obj["kind"] == kind:
                return obj
    pytest.fail(f"manifests/samples has no {kind}")


def test_there_is_a_sample_of_each_kind_named_like_kubebuilder() -> None:
    names = {p.name for p in SAMPLE_FILES}
    assert names >= {
        "podstore.dev_v1alpha1_storagepod.yaml",
        "podstore.dev_v1alpha1_storagecontainer.yaml",
    }


@pytest.mark.parametrize("obj", samples())
def test_each_sample_fits_its_crd(obj: dict[str, Any]) -> None:
    assert schema_problems(obj) == []


def without(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return mutate


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        pytest.param("StoragePod", without("spec.nodeName"), id="pod-without-node"),
        pytest.param("StoragePod", without("spec"), id="pod-without-spec"),
        pytest.param(
            "StoragePod", setting("spec.imagePullPolicy", "Sometimes"), id="pod-bad-pull-policy"
        ),
        pytest.param("StoragePod", setting("spec.attempt", "first"), id="pod-attempt-not-a-number"),
        pytest.param(
            "StoragePod",
            setting("spec.imagePullSecrets", [{"secret": "x"}]),
            id="pod-pull-secret-without-name",
        ),
        pytest.param(
            "StoragePod",
            setting("spec.containers", [{"name": "app"}]),
            id="pod-container-without-image",
        ),
        pytest.param("StorageContainer", without("spec.podName"), id="container-without-pod"),
        pytest.param("StorageContainer", without("spec.image"), id="container-without-image"),
        pytest.param(
            "StorageContainer", setting("spec.state", "Running"), id="container-unknown-state"
        ),
        pytest.param(
            "StorageContainer", setting("spec.command", "/bin/sh"), id="container-command-string"
        ),
        pytest.param(
            "StorageContainer",
            setting("spec.env", [{"value": "no name"}]),
            id="container-env-without-name",
        ),
    ],
)
def test_objects_breaking_the_crd_rules_are_refused(
    kind: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    obj = copy.deepcopy(sample_of(kind))
    mutate(obj)
    assert schema_problems(obj) != []
