"""Why a StoragePod or StorageContainer cannot (yet) be reconciled, as its status says.

Each failure reason of the contract, caused for real: a malformed reference, a
registry where nothing listens, ``imagePullPolicy: Never`` with the image absent, a
pod that does not exist or is not Ready, and a registry that needs the credentials of
an image pull secret, which must then never show anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    agent_settings,
    assert_conditions_follow_conventions,
    condition,
    events_of,
    in_thread,
    podstore_containers,
    pull_secret,
    ready_pod,
    running_agent,
    storage_container,
    storage_pod,
    wait_for_event,
    wait_for_phase,
    wait_for_status,
    wait_until,
)
from tests.support.registry import basic_auth
from tests.support.stores import containers_json, images_json

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
def settings(kube, store, images):
    return agent_settings(kube, store, images, resync_interval=2)


def assert_waiting(obj, phase, reason):
    """``phase`` with ``reason`` in the status and in a False Ready condition."""
    status = obj["status"]
    assert (status["phase"], status["reason"]) == (phase, reason), status
    assert status["message"], status
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        reason,
        status["message"],
    )
    assert_conditions_follow_conventions(obj)


async def test_a_container_with_a_malformed_image_reference_fails_with_invalid_image_name(
    kube, store, images, settings
):
    async with running_agent(settings):
        await ready_pod(kube, storage_pod("web"))
        await kube.aio.create(storage_container("bad", "web", "Not/A:Valid Image"))
        ctr = await wait_for_phase(kube, CONTAINERS, "bad", "Failed")
        event = await wait_for_event(kube, "bad", "InvalidImageName")

    assert_waiting(ctr, "Failed", "InvalidImageName")
    assert "Not/A:Valid Image" in ctr["status"]["message"]
    assert "containerID" not in ctr["status"]
    assert event["type"] == "Warning"
    assert [c["meta"]["metadata-name"] for c in podstore_containers(store)] == ["web"]


@pytest.mark.parametrize(
    "infra_image",
    [
        pytest.param("pause:bad tag", id="space-in-tag"),
        pytest.param("UPPER/case:1", id="upper-case-repository"),
    ],
)
async def test_a_pod_with_a_malformed_infra_image_fails_with_invalid_image_name(
    kube, store, images, settings, infra_image
):
    async def reason_given():
        obj = await kube.aio.get(PODS, NAMESPACE, "web")
        return obj if (obj.get("status") or {}).get("reason") else None

    async with running_agent(settings):
        await kube.aio.create(storage_pod("web", infraImage=infra_image))
        pod = await wait_until(reason_given)

    assert_waiting(pod, "Failed", "InvalidImageName")
    assert infra_image in pod["status"]["message"]
    assert condition(pod, "SandboxReady")["status"] == "False"
    assert "podID" not in pod["status"]
    assert containers_json(store) == []


async def test_an_image_from_a_dead_registry_is_err_image_pull_then_image_pull_back_off(
    kube, store, images, settings, dead_registry
):
    ref = dead_registry.ref("busybox:1")
    seen: list[str] = []

    async def backing_off():
        obj = await kube.aio.get(CONTAINERS, NAMESPACE, "app")
        reason = ((obj or {}).get("status") or {}).get("reason")
        if reason and (not seen or seen[-1] != reason):
            seen.append(reason)
        return obj if reason == "ImagePullBackOff" else None

    async with running_agent(settings):
        await ready_pod(kube, storage_pod("web"))
        await kube.aio.create(storage_container("app", "web", ref))
        ctr = await wait_until(backing_off, interval=0.05, timeout=30)
        event = await wait_for_event(kube, "app", "ErrImagePull")

    assert seen[:2] == ["ErrImagePull", "ImagePullBackOff"], seen
    assert_waiting(ctr, "Pending", "ImagePullBackOff")
    assert ref in ctr["status"]["message"]
    assert event["type"] == "Warning"
    assert ref in event["message"]
    assert [c["meta"]["metadata-name"] for c in podstore_containers(store)] == ["web"]


async def test_an_absent_image_with_pull_policy_never_is_err_image_never_pull(
    kube, store, images, settings
):
    async with running_agent(settings):
        await ready_pod(kube, storage_pod("web"))
        await kube.aio.create(
            storage_container("app", "web", images.busybox2, imagePullPolicy="Never")
        )
        ctr = await wait_for_status(kube, CONTAINERS, "app", reason="ErrImageNeverPull")

    assert_waiting(ctr, "Pending", "ErrImageNeverPull")
    assert images.busybox2 in ctr["status"]["message"]
    assert images.busybox2_id not in {i["id"] for i in images_json(store)}, "nothing was pulled"


async def test_a_container_whose_pod_does_not_exist_waits_and_proceeds_once_it_is_created(
    kube, store, images, settings
):
    async with running_agent(settings):
        await kube.aio.create(storage_container("app", "later", images.busybox))
        waiting = await wait_for_status(kube, CONTAINERS, "app", reason="PodNotFound")
        assert_waiting(waiting, "Pending", "PodNotFound")
        assert "later" in waiting["status"]["message"]
        assert await in_thread(containers_json, store) == []

        pod = await ready_pod(kube, storage_pod("later"))
        ctr = await wait_for_phase(kube, CONTAINERS, "app", "Started")

    assert ctr["status"]["podID"] == pod["status"]["podID"]
    assert "reason" not in ctr["status"]
    assert condition(ctr, "Ready")["status"] == "True"
    # The pod found its waiting container in what the claims watch keeps: no LIST of its own.
    assert not [
        r
        for r in kube.requests
        if r.verb == "list" and r.query.get("fieldSelector") == "spec.podName=later"
    ]


async def test_a_container_whose_pod_is_not_ready_waits_for_it(
    kube, store, images, settings, dead_registry
):
    async with running_agent(settings):
        await kube.aio.create(storage_pod("web", infraImage=dead_registry.ref("pause:1")))
        pod = await wait_for_status(kube, PODS, "web", reason="ErrImagePull")
        assert_waiting(pod, "Pending", "ErrImagePull")
        await kube.aio.create(storage_container("app", "web", images.busybox))
        waiting = await wait_for_status(kube, CONTAINERS, "app", reason="PodNotReady")
        assert_waiting(waiting, "Pending", "PodNotReady")
        assert "web" in waiting["status"]["message"]

        await kube.aio.patch(PODS, NAMESPACE, "web", {"spec": {"infraImage": images.pause}})
        await wait_for_phase(kube, PODS, "web", "Ready")
        ctr = await wait_for_phase(kube, CONTAINERS, "app", "Started")

    assert container_ids(store) == {ctr["status"]["podID"], ctr["status"]["containerID"]}


def container_ids(store):
    return {c["id"] for c in containers_json(store)}


# -- image pull secrets ---------------------------------------------------------------


async def test_an_image_pull_secret_lets_the_pull_through_and_never_shows(
    kube, store, images, auth_registry, caplog
):
    caplog.set_level(logging.DEBUG)
    settings = agent_settings(
        kube,
        store,
        images,
        insecure_registries=(images.registry_host, auth_registry.host),
        resync_interval=2,
    )
    secret = pull_secret("regcred", auth_registry)
    private = auth_registry.ref("busybox:1")
    auth_dirs_before = set(os.listdir(tempfile.gettempdir()))
    async with running_agent(settings):
        await kube.aio.create(secret)
        await ready_pod(kube, storage_pod("without"))
        await ready_pod(kube, storage_pod("with", imagePullSecrets=[{"name": "regcred"}]))
        # Always: the allowed container's pull must not put the image there for it first.
        denied_spec = storage_container("denied", "without", private)
        denied_spec["spec"]["imagePullPolicy"] = "Always"
        await kube.aio.create(denied_spec)
        await kube.aio.create(storage_container("allowed", "with", private))
        ctr = await wait_for_phase(kube, CONTAINERS, "allowed", "Started")
        denied = await wait_for_status(kube, CONTAINERS, "denied", reason="ErrImagePull")
        await wait_for_event(kube, "allowed", "Pulled")

    assert ctr["status"]["imageName"] == private
    assert ctr["status"]["imageID"] == images.busybox_id
    assert private in denied["status"]["message"]

    # The credentials, in every form they took, are nowhere to be seen.
    secrets = {
        auth_registry.password,
        auth_registry.creds(),
        basic_auth(auth_registry.username, auth_registry.password),
        secret["data"][".dockerconfigjson"],
    }
    places = {
        "objects": json.dumps(
            [
                *kube.list(PODS)["items"],
                *kube.list(CONTAINERS)["items"],
            ]
        ),
        "events": json.dumps(events_of(kube, "allowed") + events_of(kube, "denied")),
        "all events": json.dumps(kube.list("events")["items"]),
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "log args": repr([r.args for r in caplog.records]),
        "store": json.dumps(containers_json(store)) + json.dumps(images_json(store)),
    }
    assert caplog.records, "the logs were captured"
    for where, text in places.items():
        for secret_text in secrets:
            assert secret_text not in text, f"a credential shows in the {where}"
    leftovers = {
        d for d in set(os.listdir(tempfile.gettempdir())) - auth_dirs_before if "auth" in d
    }
    assert not leftovers, f"auth files left behind: {leftovers}"
