"""The chart's optional parts: prometheus-operator monitors, common labels, a namespace
override, extra arguments, volumes and mounts, affinity and security contexts, maps nulled
out, and schema errors that name the value to set instead."""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python as helm
import jsonschema
import pytest

from .common import (
    CHART,
    KUBE_FLOOR,
    MONITOR_SCHEMAS,
    NAMESPACE,
    VALUE_SETS,
    agent_container,
    find,
    find_by_name,
    kinds,
    render,
    render_objects,
)

pytestmark = pytest.mark.deploy

EXTRAS = VALUE_SETS["kubernetes-extras-monitors-common-labels"]
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}


def objects() -> list[dict[str, Any]]:
    return render_objects(EXTRAS)


def test_the_monitors_are_off_by_default() -> None:
    assert not {"ServiceMonitor", "PodMonitor"} & set(kinds(render_objects()))


def test_the_service_monitor_scrapes_the_metrics_service_by_its_labels_and_port_name() -> None:
    monitor, service = find(objects(), "ServiceMonitor"), find(objects(), "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["monitoring-agents"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint == {
        "port": "metrics",
        "path": "/metrics",
        "scheme": "http",
        "interval": "30s",
        "scrapeTimeout": "10s",
        "honorLabels": True,
        "relabelings": EXTRAS["metrics"]["serviceMonitor"]["relabelings"],
        "metricRelabelings": EXTRAS["metrics"]["serviceMonitor"]["metricRelabelings"],
    }
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["annotations"] == {"example.com/owner": "storage"}


def test_the_pod_monitor_scrapes_every_agent_pod_on_its_metrics_port() -> None:
    monitor, ds = find(objects(), "PodMonitor"), find(objects(), "DaemonSet")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["monitoring-agents"]}
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {port["name"] for port in agent_container(ds)["ports"]}
    assert endpoint["port"] in ports
    assert endpoint["interval"] == "1m"
    assert "scrapeTimeout" not in endpoint


def test_the_monitor_structure_check_is_not_vacuous() -> None:
    monitor = copy.deepcopy(find(objects(), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(monitor, MONITOR_SCHEMAS["ServiceMonitor"])
    del monitor["spec"]["selector"]
    with pytest.raises(jsonschema.ValidationError, match="selector"):
        jsonschema.validate(monitor, MONITOR_SCHEMAS["ServiceMonitor"])


def test_a_service_monitor_without_the_metrics_service_names_both_values() -> None:
    values = {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmError, match=re.escape("needs metrics.service.enabled")):
        render(values)


def test_common_labels_are_on_every_object_and_the_agent_pods() -> None:
    for obj in objects():
        assert obj["metadata"]["labels"]["example.com/team"] == "storage", obj["kind"]
        assert obj["metadata"]["labels"]["example.com/cost-center"] == "42", obj["kind"]
    ds = find(objects(), "DaemonSet")
    assert ds["spec"]["template"]["metadata"]["labels"]["example.com/team"] == "storage"
    # The selector stays the chart's own, so an upgrade that adds labels can roll.
    assert "example.com/team" not in ds["spec"]["selector"]["matchLabels"]


def test_the_namespace_override_moves_every_namespaced_object_and_the_binding() -> None:
    for obj in objects():
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"]
        elif obj["kind"] != "PodMonitor":  # its own metrics.podMonitor.namespace
            assert obj["metadata"]["namespace"] == "monitoring-agents", obj["kind"]
    (subject,) = find(objects(), "ClusterRoleBinding")["subjects"]
    assert subject["namespace"] == "monitoring-agents"
    test_pod = render(EXTRAS)["podstore/templates/tests/test-metrics.yaml"]
    assert "podstore-metrics.monitoring-agents.svc" in test_pod
    assert (
        "kubectl -n monitoring-agents rollout status"
        in render(EXTRAS)["podstore/templates/NOTES.txt"]
    )


def test_extra_args_come_after_the_charts_own_flags() -> None:
    args = agent_container(find(objects(), "DaemonSet"))["args"]
    assert args[-2:] == ["--orphan-grace=120", "--pull-timeout=600"]
    assert args[0] == "agent"


def test_extra_volumes_and_mounts_reach_the_pod_beside_the_stores_own() -> None:
    ds = find(objects(), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    volumes = [v["name"] for v in pod["volumes"]]
    assert volumes == [
        "store-root",
        "store-runroot",
        "tmp",
        "var-tmp",
        "registries-conf",
        "certs-d",
        "ca-bundle",
    ]
    mount = find_by_name(agent_container(ds)["volumeMounts"], "registries-conf")
    assert mount == {
        "name": "registries-conf",
        "mountPath": "/etc/containers/registries.conf",
        "readOnly": True,
    }
    assert find_by_name(pod["volumes"], "ca-bundle") == {
        "name": "ca-bundle",
        "configMap": {"name": "corporate-ca"},
    }


def test_affinity_and_security_contexts_reach_the_pod_and_privileged_stays() -> None:
    ds = find(objects(), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["affinity"] == EXTRAS["daemonset"]["affinity"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    # A user's securityContext is merged over the defaults (Helm merges maps).
    assert agent_container(ds)["securityContext"] == {
        "privileged": True,
        "runAsUser": 0,
        "runAsGroup": 0,
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "Unconfined"},
    }
    defaults = find(render_objects(), "DaemonSet")["spec"]["template"]["spec"]
    assert "affinity" not in defaults
    assert "securityContext" not in defaults


def test_maps_set_to_null_are_dropped_and_empty_maps_keep_the_defaults() -> None:
    nulled = agent_container(find(objects(), "DaemonSet"))
    assert "resources" not in nulled
    pod = find(objects(), "DaemonSet")["spec"]["template"]["spec"]
    assert "tolerations" not in pod
    assert "annotations" not in find(objects(), "DaemonSet")["spec"]["template"]["metadata"]
    # {} merges with the defaults, as everywhere in Helm: the default requests stay.
    empty = agent_container(find(render_objects({"agent": {"resources": {}}}), "DaemonSet"))
    default = agent_container(find(render_objects(), "DaemonSet"))
    assert empty["resources"] == default["resources"]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"agent": {"resources": None}}, id="resources-null"),
        pytest.param({"agent": {"resources": {}}}, id="resources-empty"),
        pytest.param({"agent": {"extraEnv": None, "extraArgs": None}}, id="lists-null"),
        pytest.param({"commonLabels": None}, id="common-labels-null"),
        pytest.param(
            {"daemonset": {"nodeSelector": None, "podLabels": None, "affinity": None}},
            id="placement-null",
        ),
        pytest.param({"daemonset": {"podSecurityContext": None}}, id="pod-security-null"),
        pytest.param(
            {
                "serviceAccount": {"annotations": None},
                "metrics": {"service": {"annotations": None}},
            },
            id="annotations-null",
        ),
        pytest.param({"image": {"pullSecrets": None}}, id="pull-secrets-null"),
    ],
)
def test_maps_and_lists_users_null_out_are_accepted(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    chart.validate_schema(chart.merge_values(values))
    assert find(render_objects(values), "DaemonSet")
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_FLOOR}.0"
    )
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# The PODSTORE_* settings and flags the chart owns, each with the value that sets it.
OWNED = {
    "PODSTORE_ROOT": ("--root", "agent.storage.root"),
    "PODSTORE_RUNROOT": ("--runroot", "agent.storage.runroot"),
    "PODSTORE_DRIVER": ("--driver", "agent.storage.driver"),
    "PODSTORE_INFRA_IMAGE": ("--infra-image", "agent.infraImage"),
    "PODSTORE_INSECURE_REGISTRIES": ("--insecure-registry", "agent.insecureRegistries"),
    "PODSTORE_RESYNC_INTERVAL": ("--resync-interval", "agent.resyncInterval"),
    "PODSTORE_HEALTH_PORT": ("--health-port", "agent.healthPort"),
    "PODSTORE_METRICS_PORT": ("--metrics-port", "agent.metricsPort"),
    "PODSTORE_LOG_LEVEL": ("--log-level", "agent.logLevel"),
    "PODSTORE_LOG_FORMAT": ("--log-format", "agent.logFormat"),
    "PODSTORE_NODE_NAME": ("--node-name", "spec.nodeName"),
    "PODSTORE_IMAGE_GC_HIGH_THRESHOLD": (
        "--image-gc-high-threshold",
        "agent.imageGC.highThreshold",
    ),
    "PODSTORE_IMAGE_GC_LOW_THRESHOLD": ("--image-gc-low-threshold", "agent.imageGC.lowThreshold"),
    "PODSTORE_IMAGE_MINIMUM_GC_AGE": ("--image-minimum-gc-age", "agent.imageGC.minimumAge"),
    "PODSTORE_IMAGE_GC_INTERVAL": ("--image-gc-interval", "agent.imageGC.interval"),
    "PODSTORE_PINNED_IMAGES": ("--pinned-image", "agent.imageGC.pinnedImages"),
    "PODSTORE_IMAGE_GC_ALL": ("--image-gc-all", "agent.imageGC.all"),
}


def schema_error(values: dict[str, Any]) -> str:
    """What `helm install`/`template` prints for these values (rendering validates first)."""
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    return str(caught.value)


@pytest.mark.parametrize(("env", "value"), [(k, v[1]) for k, v in OWNED.items()])
def test_a_podstore_setting_in_extra_env_is_refused_naming_the_value_to_use(
    env: str, value: str
) -> None:
    message = schema_error({"agent": {"extraEnv": [{"name": env, "value": "x"}]}})
    assert "at '/agent/extraEnv/0/name'" in message
    assert f"{env} is set by the chart: " in message
    assert value in message
    assert "not agent.extraEnv" in message


@pytest.mark.parametrize(("flag", "value"), list(OWNED.values()))
def test_a_flag_the_chart_sets_in_extra_args_is_refused_naming_the_value_to_use(
    flag: str, value: str
) -> None:
    for arg in (flag, f"{flag}=x"):
        message = schema_error({"agent": {"extraArgs": [arg]}})
        assert "at '/agent/extraArgs/0'" in message
        assert f"{flag} is set by the chart: " in message
        assert value in message


def test_helm_lint_prints_the_same_message() -> None:
    values = {"agent": {"extraEnv": [{"name": "PODSTORE_ROOT", "value": "/srv"}]}}
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    errors = "\n".join(m["error"] for m in report["messages"] if m["severity"] >= 2)
    assert (
        "value must be 'PODSTORE_ROOT is set by the chart: use agent.storage.root, "
        "not agent.extraEnv'" in errors
    )


def test_settings_the_chart_does_not_own_stay_allowed_in_extra_env_and_args(
    chart: helm.Chart,
) -> None:
    values = {
        "agent": {
            "extraEnv": [{"name": "PODSTORE_ORPHAN_GRACE", "value": "5"}],
            "extraArgs": ["--orphan-grace=5", "--rootless-nothing"],
        }
    }
    chart.validate_schema(chart.merge_values(values))


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        pytest.param(
            {"agent": {"securityContext": {"privileged": False}}},
            "agent.securityContext.privileged must stay true",
            id="unprivileged-agent",
        ),
        pytest.param(
            {"commonLabels": {"app.kubernetes.io/name": "x"}},
            "commonLabels cannot set the selector labels of the chart",
            id="common-label-replacing-a-selector-label",
        ),
        pytest.param(
            {"commonLabels": {"team": 1}}, "at '/commonLabels/team'", id="label-not-a-string"
        ),
        pytest.param(
            {"namespaceOverride": "Podstore_System"}, "namespaceOverride", id="bad-namespace"
        ),
        pytest.param(
            {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
            "at '/metrics/serviceMonitor/interval'",
            id="interval-not-a-duration",
        ),
        pytest.param(
            {"metrics": {"podMonitor": {"relabelings": [{"action": "replace", "target": "x"}]}}},
            "'target'",
            id="relabeling-typo",
        ),
        pytest.param(
            {"metrics": {"serviceMonitor": {"enable": True}}}, "'enable'", id="monitor-typo"
        ),
        pytest.param(
            {"agent": {"extraVolumes": [{"name": "ca"}]}},
            "at '/agent/extraVolumes/0'",
            id="volume-without-source",
        ),
        pytest.param(
            {"agent": {"extraVolumes": [{"name": "ca", "hostpath": {"path": "/x"}}]}},
            "'hostpath'",
            id="volume-source-typo",
        ),
        pytest.param(
            {"agent": {"extraVolumeMounts": [{"name": "ca", "mountPath": "etc/ca"}]}},
            "at '/agent/extraVolumeMounts/0/mountPath'",
            id="relative-mount-path",
        ),
        pytest.param(
            {"daemonset": {"affinity": {"nodeAfinity": {}}}}, "'nodeAfinity'", id="affinity-typo"
        ),
        pytest.param(
            {"daemonset": {"podSecurityContext": {"fsGroup": -1}}},
            "at '/daemonset/podSecurityContext/fsGroup'",
            id="negative-fs-group",
        ),
    ],
)
def test_the_schema_errors_name_the_value_and_the_problem(
    values: dict[str, Any], complaint: str
) -> None:
    assert complaint in schema_error(values)
