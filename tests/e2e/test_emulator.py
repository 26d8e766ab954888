"""The API emulator behaves like kube-apiserver where kopf and the podstore agent look.

First a real kopf operator (standalone, cluster-wide, its own registry) runs a
StoragePod through create → status → delete → finalizer removed → gone; then each
server behaviour the agent relies on is checked over plain HTTP.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from typing import Any

import kmock
import kopf
import pytest
from emulator import ApiResponseError, EmulatedCluster, kopf_operator

pytestmark = pytest.mark.e2e

POD_API = "podstore.dev/v1alpha1"


def storage_pod(name: str, node: str = "node-a", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": POD_API,
        "kind": "StoragePod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, **spec},
    }


def storage_container(name: str, pod: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": POD_API,
        "kind": "StorageContainer",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podName": pod, "image": "registry.example.com/busybox:1.36", **spec},
    }


def fast_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="podstore.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="podstore.dev")
    settings.watching.server_timeout = 30
    return settings


# --- a real kopf operator --------------------------------------------------------------


async def test_kopf_operator_handles_create_and_delete_with_a_finalizer(
    kube: EmulatedCluster,
) -> None:
    registry = kopf.OperatorRegistry()
    deleted = asyncio.Event()

    @kopf.on.create(POD_API, "storagepods", registry=registry)
    def created(body: Any, spec: Any, patch: Any, **_: Any) -> None:
        patch.status["phase"] = "Ready"
        patch.status["nodeName"] = spec["nodeName"]
        kopf.info(body, reason="Created", message="the pod is in the store")

    @kopf.on.delete(POD_API, "storagepods", registry=registry)
    def removed(**_: Any) -> None:
        deleted.set()

    async with kopf_operator(kube, registry, settings=fast_settings()):
        kube.create(storage_pod("web"))

        pod = await kube.aio.wait_for(
            lambda: (
                (p := kube.get("storagepods", "default", "web"))
                and p.get("status", {}).get("phase") == "Ready"
                and p
            )
        )
        assert pod["status"]["nodeName"] == "node-a"
        assert pod["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        assert pod["metadata"]["generation"] == 1  # finalizers and status leave it alone

        events = await kube.aio.wait_for(lambda: kube.list("events", "default")["items"])
        assert events[0]["reason"] == "Created"
        assert events[0]["involvedObject"]["name"] == "web"
        assert events[0]["metadata"]["name"].startswith("kopf-event-")

        marked = kube.delete("storagepods", "default", "web")
        assert marked is not None
        assert marked["metadata"]["deletionTimestamp"]
        await asyncio.wait_for(deleted.wait(), 10)
        await kube.aio.wait_for(lambda: kube.get("storagepods", "default", "web") is None)

    permissions = kube.permissions_used()
    assert ("podstore.dev", "storagepods", "watch") in permissions
    assert ("podstore.dev", "storagepods/status", "patch") in permissions
    assert ("", "events", "create") in permissions


async def test_kopf_operator_sees_objects_that_exist_before_it_starts(
    kube: EmulatedCluster,
) -> None:
    kube.create(storage_pod("early"))
    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.resume(POD_API, "storagepods", registry=registry)
    @kopf.on.create(POD_API, "storagepods", registry=registry)
    def handle(name: str, **_: Any) -> None:
        seen.append(name)

    async with kopf_operator(kube, registry, settings=fast_settings()):
        await kube.aio.wait_for(lambda: seen)
    assert seen == ["early"]


async def test_kopf_operator_with_a_node_field_selector_sees_only_its_node(
    kube: EmulatedCluster,
) -> None:
    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.create(POD_API, "storagepods", registry=registry)
    def handle(name: str, **_: Any) -> None:
        seen.append(name)

    settings = fast_settings()
    settings.watching.field_selectors[POD_API, "storagepods"] = "spec.nodeName=node-a"
    async with kopf_operator(kube, registry, settings=settings):
        kube.create(storage_pod("other", node="node-b"))
        kube.create(storage_pod("mine", node="node-a"))
        await kube.aio.wait_for(lambda: seen)
        await asyncio.sleep(0.1)  # room for a wrong delivery of "other"
    assert seen == ["mine"]
    watches = [r for r in kube.requests if r.verb == "watch" and r.resource == "storagepods"]
    assert watches
    assert all(r.query.get("fieldSelector") == "spec.nodeName=node-a" for r in watches)


# --- resource versions ---------------------------------------------------------------


def test_every_write_bumps_the_resource_version(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    patched = kube.patch("storagepods", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    status = kube.patch_status("storagepods", "default", "web", {"phase": "Pending"})
    versions = [int(o["metadata"]["resourceVersion"]) for o in (created, patched, status)]
    assert versions == sorted(set(versions))


def test_a_no_op_patch_keeps_the_resource_version(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    same = kube.patch("storagepods", "default", "web", {"spec": {"nodeName": "node-a"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_a_stale_resource_version_in_an_update_is_a_conflict(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    kube.patch("storagepods", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiResponseError) as caught:
        kube.replace(created)
    assert caught.value.status == 409
    assert caught.value.reason == "Conflict"


def test_a_stale_resource_version_in_a_merge_patch_is_a_conflict(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    kube.patch("storagepods", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(ApiResponseError) as caught:
        kube.patch("storagepods", "default", "web", stale)
    assert caught.value.status == 409


def test_a_failed_json_patch_test_is_unprocessable_as_kopf_expects(
    kube: EmulatedCluster,
) -> None:
    # kube-apiserver answers a failed "test" op with 422 and kopf retries on exactly that.
    created = kube.create(storage_pod("web"))
    kube.patch("storagepods", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": created["metadata"]["resourceVersion"],
        },
        {"op": "add", "path": "/metadata/finalizers", "value": ["podstore.dev/storage"]},
    ]
    with pytest.raises(ApiResponseError) as caught:
        kube.patch("storagepods", "default", "web", ops, patch_type="json")
    assert caught.value.status == 422
    current = kube.get("storagepods", "default", "web")
    assert current is not None
    assert "finalizers" not in current["metadata"]


def test_an_update_without_a_resource_version_is_refused_for_custom_resources(
    kube: EmulatedCluster,
) -> None:
    created = kube.create(storage_pod("web"))
    del created["metadata"]["resourceVersion"]
    with pytest.raises(ApiResponseError) as caught:
        kube.replace(created)
    assert caught.value.status == 422
    assert caught.value.causes[0]["field"] == "metadata.resourceVersion"


# --- validation and defaults ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        pytest.param({**storage_pod("web"), "spec": {}}, "spec.nodeName", id="missing-node-name"),
        pytest.param(
            storage_pod("web", imagePullPolicy="Sometimes"),
            "spec.imagePullPolicy",
            id="bad-pull-policy",
        ),
        pytest.param(
            storage_pod(
                "web",
                containers=[
                    {"name": "app", "image": "registry.example.com/a:1"},
                    {"name": "Bad_Name", "image": "registry.example.com/b:1"},
                ],
            ),
            "spec.containers[1].name",
            id="bad-container-name",
        ),
        pytest.param(storage_container("web-app", state="Paused"), "spec.state", id="bad-state"),
        pytest.param(
            storage_container("web-app", imageID="sha256:abc"), "spec.imageID", id="bad-image-id"
        ),
        pytest.param(
            storage_container("web-app", env=[{"name": "1X", "value": "y"}]),
            "spec.env[0].name",
            id="bad-env-name",
        ),
    ],
)
def test_an_invalid_object_is_refused_with_422_naming_the_field(
    kube: EmulatedCluster, obj: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiResponseError) as caught:
        kube.create(obj)
    assert caught.value.status == 422
    assert caught.value.reason == "Invalid"
    assert field in [cause["field"] for cause in caught.value.causes]
    assert field in caught.value.body["message"]


def test_schema_defaults_are_applied_on_create(kube: EmulatedCluster) -> None:
    pod = kube.create(
        storage_pod("web", containers=[{"name": "app", "image": "registry.example.com/a:1"}])
    )
    assert pod["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert pod["spec"]["attempt"] == 0
    assert pod["spec"]["containers"][0]["state"] == "Started"
    container = kube.create(storage_container("web-app"))
    assert container["spec"]["state"] == "Started"
    assert container["spec"]["imagePullPolicy"] == "IfNotPresent"


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(
    kube: EmulatedCluster,
) -> None:
    pod = kube.create(storage_pod("web", bogus=True))
    assert "bogus" not in pod["spec"]
    with pytest.raises(ApiResponseError) as caught:
        kube.create(storage_pod("other", bogus=True), fieldValidation="Strict")
    assert caught.value.status == 400
    assert "spec.bogus" in caught.value.body["message"]


def test_node_name_is_immutable(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    with pytest.raises(ApiResponseError) as caught:
        kube.patch("storagepods", "default", "web", {"spec": {"nodeName": "node-b"}})
    assert caught.value.status == 422
    assert caught.value.causes[0]["field"] == "spec.nodeName"


def test_a_duplicate_container_name_is_refused(kube: EmulatedCluster) -> None:
    containers = [
        {"name": "app", "image": "registry.example.com/a:1"},
        {"name": "app", "image": "registry.example.com/b:1"},
    ]
    with pytest.raises(ApiResponseError) as caught:
        kube.create(storage_pod("web", containers=containers))
    assert caught.value.causes[0]["reason"] == "FieldValueDuplicate"


def test_a_status_not_in_the_schema_is_refused(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    with pytest.raises(ApiResponseError) as caught:
        kube.patch_status("storagepods", "default", "web", {"phase": "Running"})
    assert caught.value.status == 422
    assert caught.value.causes[0]["field"] == "status.phase"


# --- the status subresource and the generation ---------------------------------------------


def test_a_status_write_changes_only_the_status(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    patch = {
        "spec": {"attempt": 5},
        "metadata": {"labels": {"x": "y"}},
        "status": {"phase": "Ready"},
    }
    result = kube.patch("storagepods", "default", "web", patch, subresource="status")
    assert result["status"] == {"phase": "Ready"}
    assert result["spec"]["attempt"] == 0
    assert "labels" not in result["metadata"]


def test_a_main_resource_write_ignores_the_status(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    kube.patch_status("storagepods", "default", "web", {"phase": "Ready"})
    result = kube.patch(
        "storagepods", "default", "web", {"spec": {"attempt": 1}, "status": {"phase": "Failed"}}
    )
    assert result["status"] == {"phase": "Ready"}
    assert result["spec"]["attempt"] == 1


def test_a_status_given_on_create_is_dropped(kube: EmulatedCluster) -> None:
    pod = kube.create({**storage_pod("web"), "status": {"phase": "Ready"}})
    assert "status" not in pod


def test_the_generation_moves_with_the_spec_only(kube: EmulatedCluster) -> None:
    assert kube.create(storage_pod("web"))["metadata"]["generation"] == 1
    labelled = kube.patch("storagepods", "default", "web", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    status = kube.patch_status("storagepods", "default", "web", {"phase": "Ready"})
    assert status["metadata"]["generation"] == 1
    changed = kube.patch("storagepods", "default", "web", {"spec": {"attempt": 2}})
    assert changed["metadata"]["generation"] == 2


# --- deletion and finalizers ------------------------------------------------------------------


def test_a_finalizer_holds_a_deleted_object_until_it_is_removed(kube: EmulatedCluster) -> None:
    kube.create(
        {**storage_pod("web"), "metadata": {"name": "web", "finalizers": ["podstore.dev/storage"]}}
    )
    marked = kube.delete("storagepods", "default", "web")
    assert marked is not None
    assert marked["metadata"]["deletionTimestamp"]
    assert kube.get("storagepods", "default", "web") is not None
    with pytest.raises(ApiResponseError) as caught:
        kube.patch(
            "storagepods",
            "default",
            "web",
            {"metadata": {"finalizers": ["podstore.dev/storage", "other.dev/x"]}},
        )
    assert caught.value.status == 422
    kube.patch("storagepods", "default", "web", {"metadata": {"finalizers": None}})
    assert kube.get("storagepods", "default", "web") is None


def test_deleting_an_owner_leaves_its_owned_objects_alone(kube: EmulatedCluster) -> None:
    pod = kube.create(storage_pod("web"))
    owner = {
        "apiVersion": POD_API,
        "kind": "StoragePod",
        "name": "web",
        "uid": pod["metadata"]["uid"],
        "controller": True,
    }
    child = storage_container("web-app")
    child["metadata"]["ownerReferences"] = [owner]
    kube.create(child)
    kube.delete("storagepods", "default", "web")
    assert kube.get("storagecontainers", "default", "web-app") is not None  # no GC here


# --- names, selectors and lists ---------------------------------------------------------------


def test_generate_name_makes_a_unique_name(kube: EmulatedCluster) -> None:
    obj = storage_pod("")
    obj["metadata"] = {"generateName": "web-"}
    first, second = kube.create(obj), kube.create(obj)
    assert first["metadata"]["name"].startswith("web-")
    assert len(first["metadata"]["name"]) == len("web-") + 5
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_a_field_selector_on_the_node_name_filters_lists(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("a1", node="node-a"))
    kube.create(storage_pod("b1", node="node-b"))
    found = kube.list("storagepods", field_selector="spec.nodeName=node-b")
    assert [i["metadata"]["name"] for i in found["items"]] == ["b1"]
    other = kube.list("storagepods", field_selector="spec.nodeName!=node-b")
    assert [i["metadata"]["name"] for i in other["items"]] == ["a1"]


def test_an_unselectable_field_is_refused(kube: EmulatedCluster) -> None:
    with pytest.raises(ApiResponseError) as caught:
        kube.list("storagepods", field_selector="spec.attempt=0")
    assert caught.value.status == 400
    assert caught.value.body["kind"] == "Status"
    assert caught.value.body["reason"] == "BadRequest"
    assert caught.value.body["message"] == "field label not supported: spec.attempt"


def test_field_selectors_take_every_operator_and_the_metadata_fields(
    kube: EmulatedCluster,
) -> None:
    kube.create(storage_pod("a1", node="node-a"))
    kube.create(storage_pod("b1", node="node-b"))

    def names(selector: str) -> list[str]:
        found = kube.list("storagepods", field_selector=selector)
        return [i["metadata"]["name"] for i in found["items"]]

    assert names("spec.nodeName==node-a") == ["a1"]
    assert names("metadata.name=b1") == ["b1"]
    assert names("metadata.name!=b1,metadata.namespace=default") == ["a1"]
    assert names("metadata.namespace=elsewhere") == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_selects_as_against_a_real_api_server(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("a1", node="node-a"))
    kube.create(storage_pod("b1", node="node-b"))
    b2 = storage_pod("b2", node="node-b")
    b2["metadata"]["labels"] = {"tier": "db"}
    kube.create(b2)

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", "--kubeconfig", str(kube.kubeconfig), "get", "storagepods"]
        return subprocess.run(
            [*argv, "-o", "name", *args], capture_output=True, text=True, timeout=60, check=False
        )

    def names(*args: str) -> list[str]:
        done = kubectl(*args)
        assert done.returncode == 0, done.stderr
        return [line.rsplit("/", 1)[1] for line in done.stdout.split()]

    assert names("--field-selector", "spec.nodeName=node-b") == ["b1", "b2"]
    assert names("--field-selector", "spec.nodeName!=node-b") == ["a1"]
    assert names("-l", "tier in (db)") == ["b2"]
    assert names("-l", "!tier") == ["a1", "b1"]
    refused = kubectl("--field-selector", "spec.attempt=0")
    assert refused.returncode != 0
    assert "(BadRequest)" in refused.stderr
    assert "field label not supported: spec.attempt" in refused.stderr


def test_a_watch_with_a_node_selector_gets_no_other_nodes_events(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("a1", node="node-a"))
    rv = kube.list("storagepods")["metadata"]["resourceVersion"]
    kube.create(storage_pod("b1", node="node-b"))
    kube.create(storage_pod("a2", node="node-a"))
    path = (
        kube.path("storagepods")
        + f"?watch=true&resourceVersion={rv}&fieldSelector=spec.nodeName%3Dnode-a"
        + "&timeoutSeconds=1"
    )
    events = watch_events(kube, path, 10)
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    assert seen == [("ADDED", "a2")]


def test_a_field_selector_on_the_pod_name_filters_containers(kube: EmulatedCluster) -> None:
    kube.create(storage_container("web-app", pod="web"))
    kube.create(storage_container("db-app", pod="db"))
    found = kube.list("storagecontainers", "default", field_selector="spec.podName=db")
    assert [i["metadata"]["name"] for i in found["items"]] == ["db-app"]


def test_label_selectors_filter_lists(kube: EmulatedCluster) -> None:
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}), ("c", {})]:
        obj = storage_pod(name)
        obj["metadata"]["labels"] = labels
        kube.create(obj)

    def names(selector: str) -> list[str]:
        found = kube.list("storagepods", label_selector=selector)
        return [i["metadata"]["name"] for i in found["items"]]

    assert names("tier=web") == ["a"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("tier notin (web)") == ["b", "c"]
    assert names("env") == ["a"]
    assert names("!env") == ["b", "c"]
    assert names("tier,!env") == ["b"]


def test_lists_have_their_kind_and_resource_version(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    found = kube.list("storagepods", "default")
    assert found["kind"] == "StoragePodList"
    assert found["apiVersion"] == POD_API
    assert int(found["metadata"]["resourceVersion"]) >= 1
    assert kube.list("namespaces")["kind"] == "NamespaceList"


def test_lists_come_in_chunks_with_limit_and_continue(kube: EmulatedCluster) -> None:
    for index in range(5):
        kube.create(storage_pod(f"p{index}"))
    first = kube.list("storagepods", limit="2")
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    rest = kube.list("storagepods", limit="10", **{"continue": first["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p2", "p3", "p4"]
    assert not rest["metadata"].get("continue")


def test_namespaces_are_served_and_an_unknown_namespace_is_refused(kube: EmulatedCluster) -> None:
    assert kube.get("namespaces", None, "default") is not None
    obj = storage_pod("web")
    obj["metadata"]["namespace"] = "nowhere"
    with pytest.raises(ApiResponseError) as caught:
        kube.create(obj)
    assert caught.value.status == 404


def test_secret_string_data_is_stored_as_data(kube: EmulatedCluster) -> None:
    secret = kube.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": '{"auths": {}}'},
        }
    )
    assert secret["data"] == {".dockerconfigjson": "eyJhdXRocyI6IHt9fQ=="}
    assert "stringData" not in secret


# --- discovery ---------------------------------------------------------------------------


def test_discovery_serves_the_crds_with_status_short_names_and_categories(
    kube: EmulatedCluster,
) -> None:
    resources = kube.request("GET", "/apis/podstore.dev/v1alpha1")[1]["resources"]
    by_name = {r["name"]: r for r in resources}
    assert set(by_name) == {
        "storagepods",
        "storagepods/status",
        "storagecontainers",
        "storagecontainers/status",
        "storageimages",
        "storageimages/status",
    }
    assert by_name["storageimages"]["namespaced"] is False
    assert by_name["storageimages"]["shortNames"] == ["simg"]
    assert by_name["storagepods"]["shortNames"] == ["spod"]
    assert by_name["storagecontainers"]["shortNames"] == ["sctr"]
    assert by_name["storagepods"]["categories"] == ["podstore"]
    assert "watch" in by_name["storagepods"]["verbs"]
    core = {r["name"] for r in kube.request("GET", "/api/v1")[1]["resources"]}
    assert {"namespaces", "secrets", "events"} <= core
    groups = {g["name"] for g in kube.request("GET", "/apis")[1]["groups"]}
    assert {"podstore.dev", "events.k8s.io", "apiextensions.k8s.io"} <= groups
    crd = kube.get("customresourcedefinitions", None, "storagepods.podstore.dev")
    assert crd is not None


# --- watches -----------------------------------------------------------------------------


def watch_events(kube: EmulatedCluster, path: str, count: int, timeout: float = 5.0) -> list[Any]:
    """Read ``count`` events of a watch in a thread; stop at the server timeout otherwise."""
    import http.client

    events: list[Any] = []
    connection = http.client.HTTPConnection(kube.host, kube.port, timeout=timeout)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    for line in response:
        if line.strip():
            events.append(json.loads(line))
        if len(events) >= count:
            break
    connection.close()
    return events


def test_a_watch_resumes_from_a_resource_version(kube: EmulatedCluster) -> None:
    first = kube.create(storage_pod("a"))
    kube.create(storage_pod("b"))
    kube.patch("storagepods", "default", "a", {"metadata": {"labels": {"x": "y"}}})
    kube.delete("storagepods", "default", "b")
    rv = first["metadata"]["resourceVersion"]
    path = kube.path("storagepods") + f"?watch=true&resourceVersion={rv}&timeoutSeconds=5"
    events = watch_events(kube, path, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)
    assert versions[0] > int(rv)


def test_a_watch_without_a_version_starts_with_the_current_state(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("a"))
    result: list[Any] = []
    path = kube.path("storagepods", "default") + "?watch=true&timeoutSeconds=5"
    reader = threading.Thread(target=lambda: result.extend(watch_events(kube, path, 2)))
    reader.start()
    kube.wait_for(
        lambda: any(r.verb == "watch" and r.resource == "storagepods" for r in kube.requests)
    )
    kube.create(storage_pod("b"))
    reader.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in result] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]


def test_a_watch_with_a_selector_sees_objects_leave_it(kube: EmulatedCluster) -> None:
    obj = storage_pod("a")
    obj["metadata"]["labels"] = {"keep": "yes"}
    created = kube.create(obj)
    kube.patch("storagepods", "default", "a", {"metadata": {"labels": {"keep": "no"}}})
    rv = created["metadata"]["resourceVersion"]
    path = (
        kube.path("storagepods")
        + f"?watch=true&resourceVersion={rv}&labelSelector=keep%3Dyes&timeoutSeconds=5"
    )
    events = watch_events(kube, path, 1)
    assert events[0]["type"] == "DELETED"


def test_a_watch_ends_at_its_timeout(kube: EmulatedCluster) -> None:
    path = kube.path("storagepods") + "?watch=true&timeoutSeconds=1"
    assert watch_events(kube, path, 1, timeout=5) == []


def test_a_watch_from_a_compacted_version_is_gone(tmp_path: Any) -> None:
    from emulator import PodstoreEmulator

    with EmulatedCluster(PodstoreEmulator(history=2)) as kube:
        first = kube.create(storage_pod("a"))
        for index in range(3):
            kube.patch("storagepods", "default", "a", {"spec": {"attempt": index + 1}})
        rv = first["metadata"]["resourceVersion"]
        path = kube.path("storagepods") + f"?watch=true&resourceVersion={rv}"
        events = watch_events(kube, path, 1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410


def test_a_watch_begun_during_writes_sends_each_event_once(kube: EmulatedCluster) -> None:
    """Issue 12, defect 9: as kube-apiserver, a watch from a LIST's resourceVersion
    sends every change after it once, in order, however the writes and the watch's
    start interleave (kopf lists, then watches; writers do not wait for it)."""
    for index in range(3):
        kube.create(storage_pod(f"p{index}"))
    rv = kube.list("storagepods")["metadata"]["resourceVersion"]
    written: list[int] = []

    def write() -> None:
        for index in range(30):
            done = kube.patch(
                "storagepods", "default", f"p{index % 3}", {"spec": {"attempt": index + 1}}
            )
            written.append(int(done["metadata"]["resourceVersion"]))
            done = kube.create(storage_pod(f"n{index}"))
            written.append(int(done["metadata"]["resourceVersion"]))

    writer = threading.Thread(target=write)
    writer.start()
    path = kube.path("storagepods") + f"?watch=true&resourceVersion={rv}&timeoutSeconds=10"
    events = watch_events(kube, path, 60, timeout=15)
    writer.join(10)
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(written)  # each once, in order, none left out
    assert [e["type"] for e in events].count("ADDED") == 30


def test_a_restart_keeps_the_objects_and_the_watch_positions(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("a"))
    kube.stop()
    kube.start()
    assert kube.get("storagepods", "default", "a")["metadata"]["uid"] == created["metadata"]["uid"]
    kube.patch("storagepods", "default", "a", {"metadata": {"labels": {"x": "y"}}})
    rv = created["metadata"]["resourceVersion"]
    path = kube.path("storagepods") + f"?watch=true&resourceVersion={rv}&timeoutSeconds=5"
    assert [e["type"] for e in watch_events(kube, path, 1)] == ["MODIFIED"]


def test_a_wiped_api_server_forgets_its_objects_and_compacts_every_watch(
    kube: EmulatedCluster,
) -> None:
    created = kube.create(storage_pod("a"))
    kube.stop()
    kube.emulator.wipe()
    kube.start()
    assert kube.get("storagepods", "default", "a") is None
    assert kube.get("namespaces", None, "default") is not None  # the bootstrap stays
    again = kube.create(storage_pod("a"))
    assert again["metadata"]["uid"] != created["metadata"]["uid"]
    assert int(again["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    # As kube-apiserver after a compaction: resuming from before it is 410 Gone.
    rv = created["metadata"]["resourceVersion"]
    path = kube.path("storagepods") + f"?watch=true&resourceVersion={rv}"
    events = watch_events(kube, path, 1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410


def test_initial_events_end_with_a_bookmark(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("a"))
    path = (
        kube.path("storagepods")
        + "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        + "&allowWatchBookmarks=true&timeoutSeconds=5"
    )
    events = watch_events(kube, path, 2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    annotations = events[1]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}


# --- the request log and fault injection ---------------------------------------------------


def test_the_request_log_is_bounded_and_names_verbs(tmp_path: Any) -> None:
    from emulator import PodstoreEmulator

    with EmulatedCluster(PodstoreEmulator(log_size=5)) as kube:
        for _ in range(10):
            kube.list("storagepods")
        kube.get("storagepods", "default", "missing")
        assert len(kube.requests) == 5
        last = kube.requests[-1]
        assert (last.method, last.verb, last.resource, last.status) == (
            "GET",
            "get",
            "storagepods",
            404,
        )
        assert last.user == kube.token


def test_a_kmock_reaction_injects_a_fault(kube: EmulatedCluster) -> None:
    kube.emulator["post", kmock.resource(POD_API + "/storagepods")][:1] << 503
    with pytest.raises(ApiResponseError) as caught:
        kube.create(storage_pod("web"))
    assert caught.value.status == 503
    assert kube.create(storage_pod("web"))["metadata"]["name"] == "web"


def test_the_kubeconfig_points_at_the_emulator(kube: EmulatedCluster) -> None:
    import yaml

    config = yaml.safe_load(kube.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert config["current-context"] == "emulator"


def test_bookmarks_come_on_an_idle_watch(tmp_path: Any) -> None:
    from emulator import PodstoreEmulator

    with EmulatedCluster(PodstoreEmulator(bookmark_interval=0.1)) as kube:
        created = kube.create(storage_pod("a"))
        rv = created["metadata"]["resourceVersion"]
        path = (
            kube.path("storagepods")
            + f"?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=5"
        )
        events = watch_events(kube, path, 1)
    assert events[0]["type"] == "BOOKMARK"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_serving_many_requests_keeps_no_growing_history(kube: EmulatedCluster) -> None:
    kube.emulator["get", "/nowhere"] << 418  # a reaction makes kmock match requests again
    for _ in range(300):
        kube.request("GET", "/version")
    assert len(kube.emulator._requests) <= 256


# --- more of the server ---------------------------------------------------------------------


def test_deleting_a_namespace_deletes_its_content_then_itself(kube: EmulatedCluster) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    held = storage_pod("held")
    held["metadata"] = {"name": "held", "namespace": "team", "finalizers": ["podstore.dev/x"]}
    kube.create(held)
    free = storage_pod("free")
    free["metadata"]["namespace"] = "team"
    kube.create(free)
    marked = kube.delete("namespaces", None, "team")
    assert marked is not None
    assert marked["status"]["phase"] == "Terminating"
    assert kube.get("storagepods", "team", "free") is None
    with pytest.raises(ApiResponseError) as caught:
        kube.create({**storage_pod("late"), "metadata": {"name": "late", "namespace": "team"}})
    assert caught.value.status == 403
    kube.patch("storagepods", "team", "held", {"metadata": {"finalizers": None}})
    assert kube.get("namespaces", None, "team") is None


def test_a_crd_created_through_the_api_is_served(kube: EmulatedCluster) -> None:
    crd = kube.get("customresourcedefinitions", None, "storagepods.podstore.dev")
    assert crd is not None
    crd = json.loads(
        json.dumps(crd).replace("storagepod", "widget").replace("StoragePod", "Widget")
    )
    crd["spec"]["names"]["shortNames"] = ["wdg"]
    crd["metadata"] = {"name": "widgets.podstore.dev"}
    kube.create(crd)
    widget = kube.create({**storage_pod("w"), "kind": "Widget"})
    assert widget["spec"]["imagePullPolicy"] == "IfNotPresent"
    with pytest.raises(ApiResponseError):
        kube.create({**storage_pod("bad"), "kind": "Widget", "spec": {}})
    kube.delete("customresourcedefinitions", None, "widgets.podstore.dev")
    with pytest.raises(ApiResponseError) as caught:
        kube.request("GET", "/apis/podstore.dev/v1alpha1/widgets")
    assert caught.value.status == 404


def test_a_dry_run_changes_nothing(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"), dryRun="All")
    assert kube.get("storagepods", "default", "web") is None


def test_creating_with_a_resource_version_is_an_error(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    kube.delete("storagepods", "default", "web")
    with pytest.raises(ApiResponseError) as caught:
        kube.create(created)
    assert caught.value.status == 500


def test_a_status_put_replaces_only_the_status(kube: EmulatedCluster) -> None:
    created = kube.create(storage_pod("web"))
    created["status"] = {"phase": "Ready"}
    created["spec"]["attempt"] = 9
    result = kube.replace(created, subresource="status")
    assert result["status"] == {"phase": "Ready"}
    assert result["spec"]["attempt"] == 0


def test_kmock_objects_mirror_the_current_state(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    kube.patch_status("storagepods", "default", "web", {"phase": "Ready"})
    key = (kmock.resource(POD_API + "/storagepods"), "default", "web")
    assert kube.emulator.objects[key] >= {"status": {"phase": "Ready"}}
    kube.delete("storagepods", "default", "web")
    assert key not in kube.emulator.objects


def test_strategic_merge_patches_are_refused_for_custom_resources(kube: EmulatedCluster) -> None:
    kube.create(storage_pod("web"))
    with pytest.raises(ApiResponseError) as caught:
        kube.patch("storagepods", "default", "web", {"spec": {}}, patch_type="strategic")
    assert caught.value.status == 415
