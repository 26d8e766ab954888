"""values.yaml is documented key by key, and values.schema.json refuses every value the
chart does not know or cannot use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from .common import CHART, VALUE_SETS, render

pytestmark = pytest.mark.deploy

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
DEFAULTS = yaml.safe_load(VALUES_TEXT)

# Keys whose value is a Kubernetes object or a free map, passed through as a whole: the key
# itself is documented, the keys inside it are Kubernetes' or the user's.
PASS_THROUGH = {
    "commonLabels",
    "agent.resources",
    "agent.securityContext",
    "daemonset.affinity",
    "daemonset.podSecurityContext",
    "daemonset.nodeSelector",
    "daemonset.podAnnotations",
    "daemonset.podLabels",
    "serviceAccount.annotations",
    "metrics.service.annotations",
}
# Closed objects of Kubernetes types whose fields are themselves Kubernetes objects (a
# volume's configMap, an affinity's nodeAffinity, a seccompProfile): the schema knows each
# field by name, and kubernetes-validate checks the insides wherever the chart is rendered
# with them (test_chart.py, the "kubernetes-extras" value set).
KUBERNETES_TYPED = {
    "agent.extraVolumes[]",
    "agent.securityContext",
    "daemonset.affinity",
    "daemonset.podSecurityContext",
}
KUBERNETES_OBJECT = (
    "A Kubernetes object of its own type, validated against the API schema when rendered."
)
# Helm's reserved key for the globals of a parent chart: podstore reads none, but an
# umbrella chart must be able to pass them.
HELM_RESERVED = {"global"}


def schema_nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with its dotted path (items as "[]")."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{key}" if path else key)
    if isinstance(node.get("items"), dict):
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}{{}}")
    for keyword in ("oneOf", "anyOf", "allOf"):
        for child in node.get(keyword, []):
            yield from schema_nodes(child, path)


def test_the_schema_refuses_unknown_keys_at_every_level() -> None:
    open_objects = []
    for path, node in schema_nodes(SCHEMA):
        if node.get("type") != "object" or path in HELM_RESERVED:
            continue
        extra = node.get("additionalProperties")
        # A map is closed too: its values must be strings.
        if extra is False or extra == {"type": "string"}:
            continue
        parent = path.rpartition(".")[0]
        if parent in KUBERNETES_TYPED and node.get("description") == KUBERNETES_OBJECT:
            continue
        open_objects.append(path or "<root>")
    assert open_objects == []


def test_the_defaults_satisfy_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema({})
    chart.validate_schema(DEFAULTS)


@pytest.mark.parametrize("values", [pytest.param(v, id=k) for k, v in VALUE_SETS.items()])
def test_the_alternative_value_sets_satisfy_the_schema(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        pytest.param({"replicaCount": 2}, "replicaCount", id="unknown-top-level-key"),
        pytest.param(
            {"agent": {"storage": {"graphRoot": "/x"}}}, "graphRoot", id="unknown-nested-key"
        ),
        pytest.param({"agent": {"healthPort": "8080"}}, "healthPort", id="port-as-string"),
        pytest.param({"agent": {"metricsPort": 70000}}, "metricsPort", id="port-out-of-range"),
        pytest.param({"agent": {"storage": {"driver": "btrfs"}}}, "driver", id="unknown-driver"),
        pytest.param({"agent": {"storage": {"root": "var/lib"}}}, "root", id="relative-root"),
        pytest.param({"agent": {"logLevel": "TRACE"}}, "logLevel", id="unknown-log-level"),
        pytest.param({"agent": {"logFormat": "xml"}}, "logFormat", id="unknown-log-format"),
        pytest.param({"agent": {"resyncInterval": 0}}, "resyncInterval", id="zero-resync"),
        pytest.param({"agent": {"resyncInterval": "30s"}}, "resyncInterval", id="resync-with-unit"),
        pytest.param(
            {"agent": {"insecureRegistries": "registry.local:5000"}},
            "insecureRegistries",
            id="registries-not-a-list",
        ),
        pytest.param(
            {"agent": {"insecureRegistries": ["http://registry.local:5000"]}},
            "insecureRegistries",
            id="registry-with-scheme",
        ),
        pytest.param(
            {"agent": {"extraEnv": [{"name": "PODSTORE_ROOT", "value": "/x"}]}},
            "extraEnv",
            id="extra-env-shadowing-a-flag",
        ),
        pytest.param(
            {"agent": {"extraEnv": [{"name": "A", "value": "1", "valueFrom": {}}]}},
            "extraEnv",
            id="extra-env-value-and-value-from",
        ),
        pytest.param(
            {"agent": {"extraEnv": [{"name": "A", "valeu": "1"}]}}, "valeu", id="extra-env-typo"
        ),
        pytest.param(
            {"agent": {"resources": {"requests": {"cpu": "lots"}}}}, "cpu", id="bad-quantity"
        ),
        pytest.param(
            {"daemonset": {"tolerations": [{"operator": "Matches"}]}},
            "operator",
            id="unknown-toleration-operator",
        ),
        pytest.param(
            {"daemonset": {"nodeSelector": {"podstore.dev/store": True}}},
            "podstore.dev~1store",
            id="node-selector-value-not-a-string",
        ),
        pytest.param(
            {"daemonset": {"podLabels": {"app.kubernetes.io/component": "x"}}},
            "app.kubernetes.io/component",
            id="pod-label-replacing-a-selector-label",
        ),
        pytest.param({"daemonset": {"maxUnavailable": 0}}, "maxUnavailable", id="zero-unavailable"),
        pytest.param({"image": {"digest": "sha256:abc"}}, "digest", id="short-digest"),
        pytest.param({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy", id="bad-pull-policy"),
        pytest.param({"metrics": {"service": {"enabled": "yes"}}}, "enabled", id="bool-as-string"),
        pytest.param({"rbac": {"create": True, "rules": []}}, "rules", id="extra-rbac-rules"),
    ],
)
def test_the_schema_refuses_unknown_and_wrongly_typed_values(
    chart: helm.Chart, values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
        chart.validate_schema(chart.merge_values(values))
    # An install refuses them the same way: rendering validates before templating.
    with pytest.raises(helm.HelmValuesError):
        render(values)


def test_every_schema_key_has_a_default_in_values_yaml() -> None:
    def walk(node: dict[str, Any], values: Any, path: str) -> Iterator[str]:
        for key, child in node.get("properties", {}).items():
            here = f"{path}.{key}" if path else key
            if here in HELM_RESERVED:
                continue
            if not isinstance(values, dict) or key not in values:
                yield here
            elif here not in PASS_THROUGH:
                yield from walk(child, values[key], here)

    assert list(walk(SCHEMA, DEFAULTS, "")) == []


def key_lines() -> Iterator[tuple[str, int]]:
    """(dotted key, line index) of every mapping key in values.yaml outside lists."""
    lines = VALUES_TEXT.splitlines()
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        found = re.match(r"^( *)([A-Za-z][A-Za-z0-9_./-]*):(\s|$)", line)
        if not found:
            continue
        indent, key = len(found.group(1)), found.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        yield ".".join(k for _, k in stack), index


def test_every_values_key_is_documented_by_a_comment_above_it() -> None:
    lines = VALUES_TEXT.splitlines()
    undocumented = []
    for path, index in key_lines():
        if any(path.startswith(prefix + ".") for prefix in PASS_THROUGH):
            continue
        above = lines[index - 1].strip() if index else ""
        if not above.startswith("#"):
            undocumented.append(path)
    assert undocumented == []
