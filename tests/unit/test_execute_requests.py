"""The executor's create steps as the store's one typed request (cri-o's names)."""

from __future__ import annotations

from controller.reconcile import model
from controller.reconcile.actions import CreateContainer, CreateSandbox
from controller.reconcile.model import ObjectRef
from controller.storage import ContainerRequest
from controller.sync.execute import container_request, sandbox_request

POD = ObjectRef(model.POD_KIND, "team", "web", "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a")
CTR = ObjectRef(model.CONTAINER_KIND, "team", "web-app", "5e1f0c2a-1111-4222-8333-444455556666")
POD_ID = model.pod_id_for(POD.uid, 2)


def test_a_sandbox_request_is_the_infra_container_named_and_identified_by_the_pod():
    request = sandbox_request(CreateSandbox(POD, POD_ID, "pause:3", 2, {"a": "b"}))
    assert request == ContainerRequest(
        sandbox=True,
        pod_name=model.sandbox_name(POD, 2),
        pod_id=POD_ID,
        container_name=model.infra_name(POD, 2),
        container_id=POD_ID,
        metadata_name="web",
        image_name="pause:3",
        uid=POD.uid,
        namespace="team",
        attempt=2,
        labels={"a": "b"},
    )


def test_a_container_request_carries_the_spec_image_and_the_pods_identity():
    spec = model.parse_container_spec(
        {"image": "busybox:1", "imageID": "a" * 64, "mountLabel": "l"}
    )
    cid = model.container_id_for(CTR.uid, POD_ID)
    request = container_request(CreateContainer(CTR, POD, cid, POD_ID, 2, spec, {"x": "y"}))
    assert request.sandbox is False
    assert request.container_id == cid
    assert request.container_name == model.container_name(CTR, POD, 2)
    assert (request.image_name, request.image_id, request.mount_label) == (
        "busybox:1",
        "a" * 64,
        "l",
    )
    assert (request.uid, request.namespace, request.metadata_name) == (POD.uid, "team", "web-app")
    assert request.labels == {"x": "y"}
