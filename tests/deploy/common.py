"""What the deployment tests share: where things are, the chart rendered offline, the
manifests built with kustomize, and the value sets the chart is checked under.

Everything here is offline: helm_python renders and lints without a cluster or a helm
binary, kubernetes-validate carries the API schemas, and `kubectl kustomize` builds
without a cluster.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "podstore"
MANIFESTS = REPO / "manifests"
CRDS = REPO / "crds"
SAMPLES = MANIFESTS / "samples"
IMAGE = MANIFESTS / "image"

RELEASE = "podstore"
NAMESPACE = "podstore-system"
CRD_FILES = (
    "podstore.dev_storagepods.yaml",
    "podstore.dev_storagecontainers.yaml",
    "podstore.dev_storageimages.yaml",
)

# The value sets the chart is rendered, linted and validated under. Each one moves a
# different part of the chart away from its defaults.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "vfs-custom-paths-insecure-registries": {
        "image": {"repository": "registry.example.com/podstore", "tag": "0.1.0-rc1"},
        "agent": {
            "storage": {
                "root": "/srv/podstore/storage",
                "runroot": "/run/podstore",
                "driver": "vfs",
            },
            "infraImage": "registry.example.com/pause:3.10",
            "insecureRegistries": ["registry.local:5000", "10.0.0.7"],
            "resyncInterval": 7.5,
            "logLevel": "DEBUG",
            "logFormat": "text",
            "healthPort": 18080,
            "metricsPort": 19090,
        },
        "metrics": {"service": {"port": 19191, "annotations": {"prometheus.io/scrape": "true"}}},
        "daemonset": {"maxUnavailable": "25%", "podAnnotations": {"example.com/team": "storage"}},
    },
    "no-metrics-service-node-selector-extra-env": {
        "image": {
            "digest": "sha256:" + "ab" * 32,
            "pullSecrets": [{"name": "podstore-pull"}],
        },
        "agent": {
            "extraEnv": [
                {"name": "PODSTORE_ORPHAN_GRACE", "value": "120"},
                {
                    "name": "HTTPS_PROXY",
                    "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}},
                },
            ],
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"memory": "1Gi"},
            },
        },
        "daemonset": {
            "nodeSelector": {"kubernetes.io/os": "linux", "podstore.dev/store": "true"},
            "tolerations": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
            ],
            "priorityClassName": "podstore-critical",
            "podLabels": {"example.com/tier": "node"},
        },
        "metrics": {"service": {"enabled": False}},
    },
    "kubernetes-extras-monitors-common-labels": {
        "namespaceOverride": "monitoring-agents",
        "commonLabels": {"example.com/team": "storage", "example.com/cost-center": "42"},
        "agent": {
            "extraArgs": ["--orphan-grace=120", "--pull-timeout=600"],
            "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/pki/podstore/ca.pem"}],
            "extraVolumes": [
                {
                    "name": "registries-conf",
                    "hostPath": {"path": "/etc/containers/registries.conf", "type": "File"},
                },
                {
                    "name": "certs-d",
                    "hostPath": {"path": "/etc/containers/certs.d", "type": "DirectoryOrCreate"},
                },
                {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}},
            ],
            "extraVolumeMounts": [
                {
                    "name": "registries-conf",
                    "mountPath": "/etc/containers/registries.conf",
                    "readOnly": True,
                },
                {"name": "certs-d", "mountPath": "/etc/containers/certs.d", "readOnly": True},
                {"name": "ca-bundle", "mountPath": "/etc/pki/podstore", "readOnly": True},
            ],
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "resources": None,
        },
        "daemonset": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "podstore.dev/store",
                                        "operator": "NotIn",
                                        "values": ["false"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "podSecurityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": None,
            "podAnnotations": None,
        },
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "annotations": {"example.com/owner": "storage"},
                "interval": "30s",
                "scrapeTimeout": "10s",
                "honorLabels": True,
                "relabelings": [
                    {
                        "action": "replace",
                        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                        "targetLabel": "node",
                    }
                ],
                "metricRelabelings": [
                    {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
                ],
            },
            "podMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"release": "kube-prometheus-stack"},
                "interval": "1m",
            },
        },
    },
    "existing-service-account-without-rbac": {
        "fullnameOverride": "store-agent",
        "serviceAccount": {"create": False, "name": "node-agents"},
        "rbac": {"create": False},
        "tests": {"enabled": False},
    },
}


def _kube_floor() -> str:
    """The oldest Kubernetes the chart declares (Chart.yaml kubeVersion), as "1.31"."""
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    found = re.search(r">=\s*v?(\d+\.\d+)", chart_yaml["kubeVersion"])
    assert found, f"Chart.yaml kubeVersion {chart_yaml['kubeVersion']!r} names no floor"
    return found.group(1)


# Every object is validated against the oldest Kubernetes the chart supports and against
# the newest one kubernetes-validate knows.
KUBE_FLOOR = _kube_floor()
KUBE_LATEST = ".".join(kubernetes_validate.utils.latest_version().split(".")[:2])
KUBE_VERSIONS = sorted({KUBE_FLOOR, KUBE_LATEST}, key=lambda v: tuple(map(int, v.split("."))))


# ServiceMonitor and PodMonitor are custom resources that kubernetes-validate has no schema
# for. Their structure, as prometheus-operator's API reference (monitoring.coreos.com/v1)
# documents it, for the fields the chart writes: every level closed, so that a misspelt or
# misplaced field fails here as the CRD's structural schema would prune or refuse it.
_STR: dict[str, Any] = {"type": "string"}
_LABEL_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION: dict[str, Any] = {"type": "string", "pattern": "^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}
_RELABELINGS: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "sourceLabels": {"type": "array", "items": _STR},
            "separator": _STR,
            "targetLabel": _STR,
            "regex": _STR,
            "modulus": {"type": "integer", "minimum": 0},
            "replacement": _STR,
            "action": {"type": "string"},
        },
    },
}
_ENDPOINT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": _STR,
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "relabelings": _RELABELINGS,
        "metricRelabelings": _RELABELINGS,
    },
}


def _monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "namespace"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"},
                    "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                    "labels": _LABEL_MAP,
                    "annotations": _LABEL_MAP,
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {
                    "jobLabel": _STR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": _STR, "minItems": 1},
                        },
                    },
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "minProperties": 1,
                        "properties": {"matchLabels": _LABEL_MAP},
                    },
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


MONITOR_SCHEMAS = {
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
}


def validate_object(obj: dict[str, Any], version: str) -> None:
    """Validate one rendered object: Kubernetes kinds with kubernetes-validate (strict, as
    `kubectl apply --validate=strict`), prometheus-operator kinds with MONITOR_SCHEMAS."""
    if obj.get("apiVersion") == "monitoring.coreos.com/v1":
        jsonschema.validate(obj, MONITOR_SCHEMAS[obj["kind"]])
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@cache
def _render(values_json: str, name: str, namespace: str) -> dict[str, str]:
    with helm.Chart.load(CHART) as loaded:
        return loaded.render(json.loads(values_json), name=name, namespace=namespace)


def render(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """The chart's templates rendered offline: template path -> text (NOTES.txt included)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), name, namespace))


def render_objects(
    values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (templates only; CRDs are separate)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render(values, name=name, namespace=namespace).items()):
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def load_objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def agent_container(daemonset: dict[str, Any]) -> dict[str, Any]:
    return find_by_name(daemonset["spec"]["template"]["spec"]["containers"], "agent")


def find_by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [item for item in items if item["name"] == name]
    assert len(matches) == 1, f"expected one item named {name!r} in {items!r}"
    return matches[0]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize manifests/` cannot be checked")
    return found


@cache
def _kustomize_output() -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize manifests/ failed:\n{result.stderr}"
    return result.stdout


def kustomize_objects() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k manifests/` would send."""
    return [doc for doc in yaml.safe_load_all(_kustomize_output()) if doc]
