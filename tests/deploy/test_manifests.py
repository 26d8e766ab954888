"""manifests/ builds with `kubectl kustomize`, every object is valid Kubernetes, and what it
installs is what the chart installs with its default values."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .common import (
    CRD_FILES,
    CRDS,
    KUBE_VERSIONS,
    MANIFESTS,
    NAMESPACE,
    REPO,
    find,
    kinds,
    kustomize_objects,
    load_objects,
    render,
    render_objects,
)

pytestmark = pytest.mark.deploy

# What makes two agent DaemonSets behave the same; labels and Helm bookkeeping are left out.
POD_FIELDS = [
    "serviceAccountName",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "hostPID",
    "hostIPC",
    "hostNetwork",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "nodeSelector",
    "tolerations",
    "volumes",
]
CONTAINER_FIELDS = [
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "ports",
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
    "resources",
    "securityContext",
    "volumeMounts",
]


def important(daemonset: dict[str, Any]) -> dict[str, Any]:
    pod = daemonset["spec"]["template"]["spec"]
    return {
        "name": daemonset["metadata"]["name"],
        "namespace": daemonset["metadata"]["namespace"],
        "selector": daemonset["spec"]["selector"],
        "updateStrategy": daemonset["spec"]["updateStrategy"],
        "pod": {field: pod.get(field) for field in POD_FIELDS},
        "containers": [
            {field: c.get(field) for field in CONTAINER_FIELDS} for c in pod["containers"]
        ],
    }


def test_kustomize_builds_the_namespace_crds_rbac_service_and_daemonset() -> None:
    assert kinds(kustomize_objects()) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "DaemonSet",
        "Namespace",
        "Service",
        "ServiceAccount",
    ]


def test_every_namespaced_object_lands_in_podstore_system() -> None:
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in kustomize_objects():
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
    binding = find(kustomize_objects(), "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podstore", "namespace": NAMESPACE}
    ]


def test_the_namespace_admits_the_privileged_agent() -> None:
    labels = find(kustomize_objects(), "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


def test_kustomize_installs_the_crds_of_crds_folder() -> None:
    built = {o["metadata"]["name"]: o for o in kustomize_objects() if o["kind"].startswith("Cust")}
    for name in CRD_FILES:
        (source,) = load_objects(CRDS / name)
        assert built[source["metadata"]["name"]] == source


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_built_object_is_valid_kubernetes(version: str) -> None:
    for obj in kustomize_objects():
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(path, id=str(path.relative_to(MANIFESTS)))
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if path.name != "kustomization.yaml"
    ],
)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_plain_manifest_file_is_valid_kubernetes(path: Any, version: str) -> None:
    for obj in load_objects(path):
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_daemonset_is_the_charts_default_daemonset() -> None:
    from_chart = find(render_objects(), "DaemonSet")
    from_manifests = find(kustomize_objects(), "DaemonSet")
    assert important(from_manifests) == important(from_chart)


def test_the_service_account_and_metrics_service_are_the_charts_defaults() -> None:
    chart, built = render_objects(), kustomize_objects()
    for kind in ("ServiceAccount", "Service"):
        expected, actual = find(chart, kind), find(built, kind)
        assert actual["metadata"]["name"] == expected["metadata"]["name"]
        assert actual.get("spec") == expected.get("spec")
        assert actual.get("automountServiceAccountToken") == expected.get(
            "automountServiceAccountToken"
        )


def test_the_cluster_role_is_the_charts_default_cluster_role() -> None:
    expected = find(render_objects(), "ClusterRole")["rules"]
    assert find(kustomize_objects(), "ClusterRole")["rules"] == expected


def test_the_image_can_be_overridden_with_kustomize_images() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    image = find(kustomize_objects(), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == f"{entry['name']}:{entry['newTag']}"


def test_the_samples_are_not_applied_with_the_agent() -> None:
    # Samples name nodes of an example cluster; users apply them on purpose.
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any("samples" in resource for resource in kustomization["resources"])


def test_the_install_snippet_names_commands_and_files_that_exist() -> None:
    snippet = (REPO / "tests" / "deploy" / "INSTALL_SNIPPET.md").read_text()
    notes = render()["podstore/templates/NOTES.txt"]
    check = "kubectl -n podstore-system rollout status ds/podstore"
    assert check in snippet
    assert check in notes
    assert "helm install podstore charts/podstore -n podstore-system --create-namespace" in (
        snippet.replace("\\\n  ", "")
    )
    assert "kubectl apply -k manifests/" in snippet
    for path in re.findall(r"(?:manifests|charts)/[\w./-]+\.(?:yaml|md)", snippet):
        assert (REPO / path).exists(), path
