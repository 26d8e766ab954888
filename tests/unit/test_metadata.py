"""A container's metadata field round-trips the contract's JSON keys."""

from __future__ import annotations

import json

import pytest

from controller.storage.metadata import MANAGED_BY, RuntimeContainerMetadata

# The contract's twelve keys, spelled as the contract spells them.
CONTRACT_KEYS = {
    "pod",
    "pod-name",
    "pod-id",
    "image-name",
    "image-id",
    "name",
    "metadata-name",
    "uid",
    "namespace",
    "attempt",
    "created-at",
    "mountlabel",
}

HEX = "ab" * 32


def infra_dict() -> dict[str, object]:
    return {
        "pod": True,
        "pod-name": "web",
        "pod-id": HEX,
        "image-name": "docker.io/library/busybox:latest",
        "image-id": "cd" * 32,
        "name": "k8s_POD_web_default_uid_0",
        "metadata-name": "web",
        "uid": "0d1e2f30-uid",
        "namespace": "default",
        "attempt": 2,
        "created-at": 1700000000,
        "mountlabel": "system_u:object_r:container_file_t:s0:c1,c2",
        "managed-by": "podstore",
    }


def test_the_json_carries_the_twelve_contract_keys_plus_podstores_two():
    keys = set(json.loads(RuntimeContainerMetadata().to_json()))
    assert keys >= CONTRACT_KEYS
    assert keys - CONTRACT_KEYS == {"managed-by", "labels"}


def test_every_contract_key_round_trips_with_its_value():
    data = infra_dict()
    meta = RuntimeContainerMetadata.from_json(json.dumps(data))
    assert meta is not None
    out = json.loads(meta.to_json())
    for key in CONTRACT_KEYS:
        assert out[key] == data[key], key
    assert out["managed-by"] == "podstore"


def test_the_json_keys_map_to_the_attributes():
    meta = RuntimeContainerMetadata.from_dict(infra_dict())
    assert meta.pod is True
    assert meta.pod_name == "web"
    assert meta.pod_id == HEX
    assert meta.image_name == "docker.io/library/busybox:latest"
    assert meta.image_id == "cd" * 32
    assert meta.name == "k8s_POD_web_default_uid_0"
    assert meta.metadata_name == "web"
    assert meta.uid == "0d1e2f30-uid"
    assert meta.namespace == "default"
    assert meta.attempt == 2
    assert meta.created_at == 1700000000
    assert meta.mount_label.startswith("system_u")


def test_a_dataclass_round_trips_through_json_unchanged():
    meta = RuntimeContainerMetadata(
        pod=False,
        pod_name="web",
        pod_id=HEX,
        name="web-app",
        attempt=1,
        created_at=5,
        labels={"podstore.dev/container": "app"},
    )
    assert RuntimeContainerMetadata.from_json(meta.to_json()) == meta


def test_the_json_is_compact_and_sorted_so_equal_metadata_is_equal_text():
    text = RuntimeContainerMetadata(pod_name="web").to_json()
    assert " " not in text
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_keys_this_version_does_not_know_are_kept_on_a_round_trip():
    data = {**infra_dict(), "future-key": {"nested": [1, 2]}, "io.crio.extra": "x"}
    meta = RuntimeContainerMetadata.from_json(json.dumps(data))
    assert meta is not None
    assert meta.extra == {"future-key": {"nested": [1, 2]}, "io.crio.extra": "x"}
    out = json.loads(meta.to_json())
    assert out["future-key"] == {"nested": [1, 2]}
    assert out["io.crio.extra"] == "x"


def test_an_unknown_key_cannot_shadow_a_known_one():
    meta = RuntimeContainerMetadata(pod_name="web", extra={"pod-name": "other"})
    assert json.loads(meta.to_json())["pod-name"] == "web"


def test_metadata_made_by_podstore_is_managed():
    assert RuntimeContainerMetadata().managed
    assert RuntimeContainerMetadata().managed_by == MANAGED_BY == "podstore"


def test_metadata_without_managed_by_is_not_managed():
    data = infra_dict()
    del data["managed-by"]  # as cri-o writes it
    meta = RuntimeContainerMetadata.from_json(json.dumps(data))
    assert meta is not None
    assert not meta.managed
    assert meta.pod_name == "web"


def test_metadata_managed_by_another_tool_is_not_managed():
    meta = RuntimeContainerMetadata.from_json(json.dumps({**infra_dict(), "managed-by": "crio"}))
    assert meta is not None
    assert not meta.managed


def test_missing_keys_take_their_defaults():
    meta = RuntimeContainerMetadata.from_json('{"managed-by": "podstore", "name": "x"}')
    assert meta is not None
    assert meta.pod is False
    assert meta.attempt == 0
    assert meta.created_at == 0
    assert meta.labels == {}
    assert meta.pod_id == ""


@pytest.mark.parametrize(
    ("field", "value", "attr", "expected"),
    [
        pytest.param("attempt", "3", "attempt", 3, id="attempt-as-text"),
        pytest.param("attempt", None, "attempt", 0, id="attempt-null"),
        pytest.param("created-at", 1700000000.75, "created_at", 1700000000, id="created-float"),
        pytest.param("pod", 1, "pod", True, id="pod-as-number"),
        pytest.param("pod", None, "pod", False, id="pod-null"),
        pytest.param("labels", {"a": 1}, "labels", {"a": "1"}, id="label-values-as-text"),
        pytest.param("labels", None, "labels", {}, id="labels-null"),
    ],
)
def test_loosely_typed_values_are_coerced(field, value, attr, expected):
    meta = RuntimeContainerMetadata.from_dict({"managed-by": "podstore", field: value})
    assert getattr(meta, attr) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("{not json", id="broken-json"),
        pytest.param('{"pod": true', id="truncated"),
        pytest.param("[1, 2]", id="a-list"),
        pytest.param('"text"', id="a-string"),
        pytest.param("null", id="null"),
        pytest.param('{"attempt": "many"}', id="attempt-not-a-number"),
        pytest.param('{"labels": [1, 2, 3]}', id="labels-not-a-mapping"),
    ],
)
def test_metadata_that_is_not_this_kind_of_json_parses_to_none(text):
    assert RuntimeContainerMetadata.from_json(text) is None


def test_same_identity_ignores_the_creation_time_labels_and_extra_keys():
    first = RuntimeContainerMetadata.from_dict(infra_dict())
    again = RuntimeContainerMetadata.from_dict(
        {**infra_dict(), "created-at": 1800000000, "labels": {"x": "y"}, "other": 1}
    )
    assert first.same_identity(again)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("pod", False, id="pod"),
        pytest.param("pod-name", "other", id="pod-name"),
        pytest.param("pod-id", "ef" * 32, id="pod-id"),
        pytest.param("image-id", "00" * 32, id="image-id"),
        pytest.param("name", "other", id="name"),
        pytest.param("uid", "other", id="uid"),
        pytest.param("namespace", "other", id="namespace"),
        pytest.param("attempt", 3, id="attempt"),
        pytest.param("mountlabel", "", id="mountlabel"),
        pytest.param("managed-by", "", id="managed-by"),
    ],
)
def test_same_identity_sees_a_difference_in_any_other_key(key, value):
    first = RuntimeContainerMetadata.from_dict(infra_dict())
    other = RuntimeContainerMetadata.from_dict({**infra_dict(), key: value})
    assert not first.same_identity(other)


def test_the_dataclass_is_frozen():
    meta = RuntimeContainerMetadata()
    with pytest.raises(AttributeError):
        meta.pod = True  # type: ignore[misc]
