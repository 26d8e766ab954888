"""The Helm chart renders, lints clean and produces valid, least-privileged objects under
its defaults and under alternative value sets."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from .common import (
    CHART,
    KUBE_FLOOR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    agent_container,
    find,
    find_by_name,
    kinds,
    render,
    render_objects,
    validate_object,
)

pytestmark = pytest.mark.deploy

VALUE_SET_PARAMS = [pytest.param(values, id=name) for name, values in VALUE_SETS.items()]


def daemonset(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return find(render_objects(values), "DaemonSet")


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


@pytest.mark.parametrize("values", VALUE_SET_PARAMS)
def test_the_chart_lints_clean(values: dict[str, Any]) -> None:
    report = helm.lint(
        CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_FLOOR}.0"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []
    assert report["errors"] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SET_PARAMS)
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any], version: str) -> None:
    objects = render_objects(values)
    assert objects
    for obj in objects:
        # strict: unknown fields are errors, as with `kubectl apply --validate=strict`;
        # ServiceMonitor and PodMonitor against their prometheus-operator structure.
        validate_object(obj, version)


def test_the_defaults_render_the_agent_its_identity_access_and_metrics() -> None:
    assert kinds(render_objects()) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Pod",
        "Service",
        "ServiceAccount",
    ]


def test_the_daemonset_is_named_after_the_release_so_rollout_status_finds_it() -> None:
    assert daemonset()["metadata"]["name"] == RELEASE
    assert daemonset()["metadata"]["namespace"] == NAMESPACE


def test_the_agent_runs_podstore_agent_with_every_setting_as_a_flag() -> None:
    container = agent_container(daemonset())
    assert container["command"] == ["podstore"]
    assert container["args"] == [
        "agent",
        "--node-name=$(PODSTORE_NODE_NAME)",
        "--root=/var/lib/containers/storage",
        "--runroot=/run/containers/storage",
        "--driver=overlay",
        "--infra-image=registry.k8s.io/pause:3.10",
        "--resync-interval=30",
        "--health-port=8080",
        "--metrics-port=9090",
        "--image-gc-high-threshold=85",
        "--image-gc-low-threshold=80",
        "--image-minimum-gc-age=2m",
        "--image-gc-interval=5m",
        "--log-level=INFO",
        "--log-format=json",
    ]


def test_the_agent_learns_its_node_from_the_downward_api() -> None:
    env = env_of(agent_container(daemonset()))
    assert env["PODSTORE_NODE_NAME"] == {
        "name": "PODSTORE_NODE_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
    }


def test_the_chart_defaults_are_the_agents_own_defaults() -> None:
    from controller import config

    agent = render_objects()  # the defaults, rendered
    args = agent_container(find(agent, "DaemonSet"))["args"]
    assert f"--root={config.DEFAULT_ROOT}" in args
    assert f"--runroot={config.DEFAULT_RUNROOT}" in args
    assert f"--driver={config.DEFAULT_DRIVER}" in args
    assert f"--infra-image={config.DEFAULT_INFRA_IMAGE}" in args
    assert f"--health-port={config.DEFAULT_HEALTH_PORT}" in args
    assert f"--metrics-port={config.DEFAULT_METRICS_PORT}" in args


def test_the_store_is_mounted_from_the_host_at_its_own_paths_with_bidirectional_propagation() -> (
    None
):
    ds = daemonset()
    mounts = {m["name"]: m for m in agent_container(ds)["volumeMounts"]}
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    for name, path in [
        ("store-root", "/var/lib/containers/storage"),
        ("store-runroot", "/run/containers/storage"),
    ]:
        assert mounts[name]["mountPath"] == path
        assert mounts[name]["mountPropagation"] == "Bidirectional"
        assert volumes[name]["hostPath"] == {"path": path, "type": "DirectoryOrCreate"}


def test_the_agent_has_the_privileges_it_needs_and_no_more() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    container = agent_container(daemonset())
    # Bidirectional propagation is refused by the API server without privileged: true.
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["hostPID"] is False
    assert pod["hostNetwork"] is False
    assert pod["hostIPC"] is False
    # Only the two store folders come from the host; the rest is pod-local.
    host_paths = [v for v in pod["volumes"] if "hostPath" in v]
    assert {v["name"] for v in host_paths} == {"store-root", "store-runroot"}
    assert all("hostPort" not in port for port in container["ports"])


def test_the_agent_talks_to_the_api_and_gets_no_service_link_variables() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == RELEASE
    # Service links would define PODSTORE_METRICS_PORT=tcp://... from the
    # podstore-metrics Service, which podstore would read as its metrics port.
    assert pod["enableServiceLinks"] is False


def test_the_probes_call_the_agents_health_endpoint() -> None:
    container = agent_container(daemonset())
    health_port = find_by_name(container["ports"], "health")
    assert health_port["containerPort"] == 8080
    assert find_by_name(container["ports"], "metrics")["containerPort"] == 9090
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_the_agent_is_node_critical_tolerates_every_taint_and_rolls_one_node_at_a_time() -> None:
    spec = daemonset()["spec"]
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }


def test_the_vfs_value_set_moves_the_store_and_trusts_the_insecure_registries() -> None:
    values = VALUE_SETS["vfs-custom-paths-insecure-registries"]
    ds = daemonset(values)
    container = agent_container(ds)
    assert container["image"] == "registry.example.com/podstore:0.1.0-rc1"
    args = container["args"]
    for expected in [
        "--root=/srv/podstore/storage",
        "--runroot=/run/podstore",
        "--driver=vfs",
        "--infra-image=registry.example.com/pause:3.10",
        "--insecure-registry=registry.local:5000",
        "--insecure-registry=10.0.0.7",
        "--resync-interval=7.5",
        "--health-port=18080",
        "--metrics-port=19090",
        "--log-level=DEBUG",
        "--log-format=text",
    ]:
        assert expected in args
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["store-root"] == "/srv/podstore/storage"
    assert mounts["store-runroot"] == "/run/podstore"
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["store-root"]["hostPath"]["path"] == "/srv/podstore/storage"
    assert volumes["store-runroot"]["hostPath"]["path"] == "/run/podstore"
    assert find_by_name(container["ports"], "health")["containerPort"] == 18080
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "25%"
    service = find(render_objects(values), "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 19191, "targetPort": "metrics", "protocol": "TCP"}
    ]
    notes = render(values)["podstore/templates/NOTES.txt"]
    assert "registry.local:5000, 10.0.0.7" in notes


def test_without_the_metrics_service_there_is_no_service_and_no_test_pod() -> None:
    objects = render_objects(VALUE_SETS["no-metrics-service-node-selector-extra-env"])
    assert "Service" not in kinds(objects)
    assert "Pod" not in kinds(objects)
    # The agent still serves /metrics on its pod IP.
    container = agent_container(find(objects, "DaemonSet"))
    assert find_by_name(container["ports"], "metrics")["containerPort"] == 9090


def test_node_selector_tolerations_extra_env_and_digest_reach_the_pod() -> None:
    values = VALUE_SETS["no-metrics-service-node-selector-extra-env"]
    ds = daemonset(values)
    pod = ds["spec"]["template"]["spec"]
    container = agent_container(ds)
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "podstore.dev/store": "true"}
    assert pod["tolerations"] == values["daemonset"]["tolerations"]
    assert pod["priorityClassName"] == "podstore-critical"
    assert pod["imagePullSecrets"] == [{"name": "podstore-pull"}]
    assert container["image"] == "localhost/podstore@sha256:" + "ab" * 32
    env = env_of(container)
    assert list(env) == [
        "PODSTORE_NODE_NAME",
        "MALLOC_ARENA_MAX",
        "PODSTORE_ORPHAN_GRACE",
        "HTTPS_PROXY",
    ]
    assert env["HTTPS_PROXY"]["valueFrom"] == {"secretKeyRef": {"name": "proxy", "key": "url"}}
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert labels["example.com/tier"] == "node"
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_an_existing_service_account_is_used_and_no_rbac_is_made() -> None:
    objects = render_objects(VALUE_SETS["existing-service-account-without-rbac"])
    assert kinds(objects) == ["DaemonSet", "Service"]
    ds = find(objects, "DaemonSet", "store-agent")
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "node-agents"


def test_an_existing_service_account_must_be_named() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})


def test_the_role_binding_binds_the_account_the_agent_runs_as() -> None:
    objects = render_objects(name="ps", namespace="agents")
    binding = find(objects, "ClusterRoleBinding")
    account = find(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == find(objects, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "agents"}
    ]
    pod = find(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"] == "ps-podstore"


def test_the_metrics_service_selects_only_the_agents() -> None:
    objects = render_objects()
    service = find(objects, "Service")
    ds = find(objects, "DaemonSet")
    assert service["spec"]["selector"] == ds["spec"]["selector"]["matchLabels"]
    test_pod = find(objects, "Pod")
    assert not service["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()


def test_the_helm_test_pod_fetches_metrics_through_the_service_without_privileges() -> None:
    pod = find(render_objects(), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    env = env_of(container)
    assert env["METRICS_URL"]["value"] == (
        "http://podstore-metrics.podstore-system.svc:9090/metrics"
    )
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_the_notes_give_one_command_that_checks_the_install() -> None:
    notes = render()["podstore/templates/NOTES.txt"]
    assert "kubectl -n podstore-system rollout status ds/podstore" in notes
    assert "kubectl get spod,sctr -A" in notes
    assert "helm test podstore -n podstore-system" in notes


@pytest.mark.parametrize("values", VALUE_SET_PARAMS)
def test_the_agent_command_line_is_one_that_podstore_accepts(
    chart: helm.Chart, values: dict[str, Any]
) -> None:
    from controller import cli, config

    container = agent_container(daemonset(values))
    # What the kubelet hands the process: literal env values, $(VAR) expanded in args.
    environ = {"PODSTORE_NODE_NAME": "node-1"}
    environ |= {e["name"]: e["value"] for e in container["env"] if "value" in e}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: environ[m.group(1)], a) for a in container["args"]]
    args = cli.build_parser(environ).parse_args(argv)
    settings = config.settings_from_args(args)

    agent = chart.merge_values(values)["agent"]
    assert args.command == "agent"
    assert settings.node_name == "node-1"
    assert settings.root == agent["storage"]["root"]
    assert settings.run_root == agent["storage"]["runroot"]
    assert settings.driver == agent["storage"]["driver"]
    assert settings.infra_image == agent["infraImage"]
    assert settings.insecure_registries == tuple(agent["insecureRegistries"])
    assert settings.resync_interval == agent["resyncInterval"]
    assert settings.health_port == agent["healthPort"]
    assert settings.metrics_port == agent["metricsPort"]
    assert settings.log_level == agent["logLevel"]
    assert settings.log_format == agent["logFormat"]


def test_image_gc_values_become_the_agents_flags() -> None:
    values = {
        "agent": {
            "imageGC": {
                "highThreshold": 90,
                "lowThreshold": 70,
                "minimumAge": "10m",
                "interval": "1m",
                "pinnedImages": ["registry.example.com/keep:1"],
                "all": True,
            }
        }
    }
    args = agent_container(find(render_objects(values), "DaemonSet"))["args"]
    for expected in [
        "--image-gc-high-threshold=90",
        "--image-gc-low-threshold=70",
        "--image-minimum-gc-age=10m",
        "--image-gc-interval=1m",
        "--pinned-image=registry.example.com/keep:1",
        "--image-gc-all",
    ]:
        assert expected in args
    from controller import cli, config

    parsed = cli.build_parser({}).parse_args([*args, "--kubeconfig", "/dev/null"])
    settings = config.settings_from_args(parsed)
    assert settings.image_gc_high_threshold == 90
    assert settings.image_minimum_gc_age == 600.0
    assert settings.pinned_images == ("registry.example.com/keep:1",)
    assert settings.image_gc_all
