"""manifests/argocd/health.lua, the Argo CD health check of StoragePods and
StorageContainers, run with Lua 5.1 (Argo CD's gopher-lua speaks 5.1) against the statuses
the reconciler's own status builders write and against kstatus variants, and the kustomize
Component that puts it into argocd-cm."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.reconcile import plan
from controller.reconcile.facts import Dirs, PodFacts
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import Context, Object, Plan, Results
from controller.reconcile.status import Condition, merge_conditions

from .common import MANIFESTS, kubectl

lua51 = pytest.importorskip("lupa.lua51")

pytestmark = pytest.mark.deploy

ARGOCD = MANIFESTS / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
KEYS = (
    "resource.customizations.health.podstore.dev_StoragePod",
    "resource.customizations.health.podstore.dev_StorageContainer",
)
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
T0 = 1_700_000_000.0


def to_lua(runtime: Any, value: Any) -> Any:
    """JSON as Argo CD hands it to Lua: objects and arrays become tables, null is nil."""
    if isinstance(value, dict):
        return runtime.table_from(
            {k: to_lua(runtime, v) for k, v in value.items() if v is not None}
        )
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value if v is not None])
    return value


def run_health(obj: dict[str, Any]) -> dict[str, Any]:
    """Run the script as Argo CD does: `obj` global, the returned table is the health."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(SCRIPT)
    assert lua51.lua_type(result) == "table", f"health.lua returned {result!r}, not a table"
    health = dict(result.items())
    assert set(health) == {"status", "message"}, health
    assert health["status"] in ARGO_STATUSES
    assert isinstance(health["message"], str)
    return health


# -- the shapes the reconciler writes ------------------------------------------------------

CTX = Context("node-1", "pause", "agent", T0)


def pod(status: dict[str, Any] | None, *, generation: int = 1, **meta: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StoragePod",
        "metadata": {"name": "web", "namespace": "default", "generation": generation, **meta},
        "spec": {"nodeName": "node-1"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def container(status: dict[str, Any] | None, *, generation: int = 1, **meta: Any) -> dict[str, Any]:
    obj = pod(status, generation=generation, **meta)
    obj["kind"] = "StorageContainer"
    obj["spec"] = {"podName": "web", "image": "localhost/busybox:1"}
    return obj


def _obj(kind: str, generation: int) -> Object:
    return Object(ObjectRef(kind, "default", "web", "u"), generation, {}, {})


def pod_ready(generation: int = 1) -> dict[str, Any]:
    obj = _obj("StoragePod", generation)
    facts = PodFacts(dirs=Dirs("/w", "/r"))
    return plan.pod_ready(obj, Plan(pod_id="a" * 64), facts, Results(), [], CTX).status


def _not_ready(kind: str, phase: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    obj = _obj(kind, generation)
    if phase == "Failed":
        return plan.failed(obj, reason, message, CTX).status
    wait = plan.Outcome({"phase": phase, "reason": reason, "message": message}, retry_after=1.0)
    return plan.waiting(obj, wait, CTX).status


def pod_not_ready(phase: str, reason: str, message: str, generation: int = 1) -> dict[str, Any]:
    return _not_ready("StoragePod", phase, reason, message, generation)


def ctr_not_ready(phase: str, reason: str, message: str, generation: int = 1) -> dict[str, Any]:
    return _not_ready("StorageContainer", phase, reason, message, generation)


def ctr_started(generation: int = 1) -> dict[str, Any]:
    """A Started container, with the conditions the reconciler's converge step sets."""
    conditions = [
        Condition("Created", True, "Created", "storage container " + "c" * 12),
        Condition("Started", True, "Started", ""),
        Condition("Ready", True, "Started", "container is Started"),
    ]
    return {
        "phase": "Started",
        "containerID": "c" * 64,
        "podID": "a" * 64,
        "nodeName": "node-1",
        "mountPoint": "/var/lib/containers/storage/overlay/x/merged",
        "conditions": merge_conditions(None, conditions, generation=generation, now=T0),
        "observedGeneration": generation,
        "reason": None,
        "message": None,
    }


def with_kstatus(
    status: dict[str, Any],
    *,
    reconciling: tuple[bool, str, str] | None = None,
    stalled: tuple[bool, str, str] | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """The status with the kstatus conditions added as the contract describes them."""
    wanted = []
    if reconciling is not None:
        wanted.append(Condition("Reconciling", *reconciling))
    if stalled is not None:
        wanted.append(Condition("Stalled", *stalled))
    gen = status["observedGeneration"] if generation is None else generation
    return status | {
        "conditions": merge_conditions(status["conditions"], wanted, generation=gen, now=T0)
    }


CASES = [
    pytest.param(pod(pod_ready()), "Healthy", "Ready", id="pod-ready"),
    pytest.param(container(ctr_started()), "Healthy", "container is Started", id="ctr-started"),
    pytest.param(
        pod(
            with_kstatus(
                pod_ready(),
                reconciling=(False, "Reconciled", ""),
                stalled=(False, "Reconciled", ""),
            )
        ),
        "Healthy",
        "Ready",
        id="pod-ready-kstatus-false",
    ),
    pytest.param(
        pod(pod_ready(generation=1), generation=2),
        "Progressing",
        "Waiting for the podstore agent to observe generation 2 (observed 1)",
        id="pod-ready-for-an-older-generation",
    ),
    pytest.param(
        container({"phase": "Started", "conditions": ctr_started()["conditions"]}),
        "Progressing",
        "Waiting for the podstore agent to observe generation 1 (observed none)",
        id="ctr-without-observed-generation",
    ),
    pytest.param(
        pod(
            pod_not_ready("Pending", "ErrImagePull", "pulling registry.k8s.io/pause:3.10: timeout")
        ),
        "Progressing",
        "ErrImagePull: pulling registry.k8s.io/pause:3.10: timeout",
        id="pod-pending-err-image-pull",
    ),
    pytest.param(
        container(
            ctr_not_ready(
                "Pending", "ImagePullBackOff", "Back-off pulling image 'x'; retrying in 20s"
            )
        ),
        "Progressing",
        "ImagePullBackOff: Back-off pulling image 'x'; retrying in 20s",
        id="ctr-pending-image-pull-back-off",
    ),
    pytest.param(
        container(ctr_not_ready("Pending", "PodNotReady", "StoragePod 'web' is not Ready yet")),
        "Progressing",
        "PodNotReady: StoragePod 'web' is not Ready yet",
        id="ctr-pending-pod-not-ready",
    ),
    pytest.param(
        container(ctr_not_ready("Pending", "PodNotFound", "StoragePod 'web' does not exist")),
        "Progressing",
        "PodNotFound: StoragePod 'web' does not exist",
        id="ctr-pending-pod-not-found",
    ),
    pytest.param(
        pod(pod_not_ready("Failed", "InvalidImageName", "'UPPER:case' is not an image name")),
        "Degraded",
        "InvalidImageName: 'UPPER:case' is not an image name",
        id="pod-failed-invalid-image",
    ),
    pytest.param(
        container(ctr_not_ready("Failed", "InvalidImageName", "bad reference")),
        "Degraded",
        "InvalidImageName: bad reference",
        id="ctr-failed",
    ),
    pytest.param(
        pod(pod_not_ready("Failed", "NameConflict", "name taken"), generation=3),
        "Progressing",
        "Waiting for the podstore agent to observe generation 3 (observed 1)",
        id="pod-failed-for-an-older-generation-waits-for-the-new-one",
    ),
    pytest.param(
        pod(
            with_kstatus(
                pod_not_ready("Pending", "StorageError", "disk full"),
                reconciling=(True, "StorageError", "retrying in 10s"),
                stalled=(False, "StorageError", ""),
            )
        ),
        "Progressing",
        "StorageError: retrying in 10s",
        id="pod-reconciling",
    ),
    pytest.param(
        container(
            with_kstatus(
                ctr_not_ready("Pending", "ErrImageNeverPull", "not on the node"),
                reconciling=(False, "ErrImageNeverPull", ""),
                stalled=(
                    True,
                    "ErrImageNeverPull",
                    "image 'x' is not on the node and imagePullPolicy is Never",
                ),
            )
        ),
        "Degraded",
        "ErrImageNeverPull: image 'x' is not on the node and imagePullPolicy is Never",
        id="ctr-stalled",
    ),
    pytest.param(
        pod(with_kstatus(pod_ready(), reconciling=(True, "Progressing", "creating members"))),
        "Progressing",
        "Progressing: creating members",
        id="pod-ready-but-reconciling",
    ),
    pytest.param(
        pod(
            with_kstatus(pod_ready(generation=2), stalled=(True, "Old", "was stuck"), generation=1),
            generation=2,
        ),
        "Healthy",
        "Ready",
        id="stalled-of-an-older-generation-is-ignored",
    ),
    pytest.param(
        pod({"phase": "Terminating"}),
        "Progressing",
        "Terminating: the podstore agent is removing the storage containers",
        id="pod-terminating",
    ),
    pytest.param(
        container(ctr_started(), deletionTimestamp="2026-12-02T10:00:00Z"),
        "Progressing",
        "Terminating: the podstore agent is removing the storage containers",
        id="ctr-being-deleted",
    ),
    pytest.param(
        pod(pod_not_ready("Failed", "InvalidImageName", "bad") | {"phase": "Terminating"}),
        "Progressing",
        "Terminating: the podstore agent is removing the storage containers",
        id="pod-terminating-after-failing-shows-no-old-reason",
    ),
    pytest.param(
        pod(None),
        "Progressing",
        "Waiting for the podstore agent of the node to report a status",
        id="no-status",
    ),
    pytest.param(
        pod({}),
        "Progressing",
        "Waiting for the podstore agent of the node to report a status",
        id="empty-status",
    ),
    pytest.param(
        container(
            {
                "phase": "Created",
                "observedGeneration": 1,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "Unknown",
                        "reason": "Probing",
                        "message": "looking",
                    }
                ],
            }
        ),
        "Progressing",
        "Probing: looking",
        id="ready-unknown",
    ),
]


@pytest.mark.parametrize(("obj", "status", "message"), CASES)
def test_the_health_of_podstore_objects(obj: dict[str, Any], status: str, message: str) -> None:
    assert run_health(obj) == {"status": status, "message": message}


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param({}, id="nothing-at-all"),
        pytest.param({"metadata": {}}, id="no-generation-no-status"),
        pytest.param({"metadata": {"generation": 1}, "status": {"conditions": "junk"}}, id="junk"),
        pytest.param(
            {"metadata": {"generation": 1}, "status": {"conditions": [{"type": "Ready"}, "x"]}},
            id="half-conditions",
        ),
    ],
)
def test_the_script_keeps_argo_cds_contract_for_odd_objects(obj: dict[str, Any]) -> None:
    assert run_health(obj)["status"] == "Progressing"


def test_the_kustomize_component_puts_the_script_into_argocd_cm(tmp_path: Path) -> None:
    (tmp_path / "argocd-cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "argocd-cm"},
                "data": {"url": "https://argocd.example.com"},
            }
        )
    )
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": "argocd",
                "resources": ["argocd-cm.yaml"],
                # kustomize takes components by relative path only.
                "components": [os.path.relpath(ARGOCD, tmp_path)],
            }
        )
    )
    result = subprocess.run(
        [kubectl(), "kustomize", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (config_map,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert config_map["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    assert config_map["data"]["url"] == "https://argocd.example.com"
    for key in KEYS:
        assert config_map["data"][key] == SCRIPT


def test_the_readme_shows_the_argocd_cm_keys_and_the_component() -> None:
    readme = (MANIFESTS.parent / "README.md").read_text()
    for key in KEYS:
        assert key in readme
    assert "manifests/argocd" in readme


def test_the_agents_kustomization_does_not_touch_argocd_cm() -> None:
    # The Component belongs to Argo CD's own installation, not to podstore's.
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert not any("argocd" in entry for entry in kustomization.get("resources", []))
    assert not kustomization.get("components")
