"""Names, IDs and image references are checked before they reach a command line."""

from __future__ import annotations

import pytest

from controller.storage import names
from controller.storage.errors import (
    InvalidContainerID,
    InvalidContainerName,
    InvalidImageName,
    InvalidName,
    InvalidPodName,
    InvalidSandboxID,
)

HEX64 = "0123456789abcdef" * 4

# -- pod and container names, IDs -------------------------------------------

GOOD_NAMES = [
    pytest.param("web", id="plain"),
    pytest.param("k8s_POD_web_default_uid_0", id="cri-o-style"),
    pytest.param("a", id="one-character"),
    pytest.param("9lives", id="leading-digit"),
    pytest.param("web-0.v1_x", id="dash-dot-underscore"),
    pytest.param("A" * 253, id="253-characters"),
]

BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("-rf", id="leading-dash-taken-for-an-option"),
    pytest.param(".hidden", id="leading-dot"),
    pytest.param("_x", id="leading-underscore"),
    pytest.param("a/b", id="slash"),
    pytest.param("../etc", id="parent-directory"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\x7fb", id="delete-character"),
    pytest.param("wéb", id="non-ascii"),
    pytest.param("a:b", id="colon"),
    pytest.param("A" * 254, id="254-characters"),
    pytest.param(None, id="none"),
    pytest.param(42, id="not-a-string"),
]


@pytest.mark.parametrize("value", GOOD_NAMES)
@pytest.mark.parametrize(
    "check",
    [
        pytest.param(names.pod_name, id="pod_name"),
        pytest.param(names.container_name, id="container_name"),
        pytest.param(names.id_or_name, id="id_or_name"),
    ],
)
def test_a_valid_name_is_returned_unchanged(check, value):
    assert check(value) == value


@pytest.mark.parametrize("value", BAD_NAMES)
@pytest.mark.parametrize(
    ("check", "error"),
    [
        pytest.param(names.pod_name, InvalidPodName, id="pod_name"),
        pytest.param(names.container_name, InvalidContainerName, id="container_name"),
        pytest.param(names.sandbox_id, InvalidSandboxID, id="sandbox_id"),
        pytest.param(names.container_id, InvalidContainerID, id="container_id"),
        pytest.param(names.id_or_name, InvalidContainerID, id="id_or_name"),
    ],
)
def test_an_invalid_name_raises_the_error_of_its_kind(check, error, value):
    with pytest.raises(error):
        check(value)


@pytest.mark.parametrize(
    "check",
    [
        pytest.param(names.pod_name, id="pod_name"),
        pytest.param(names.container_name, id="container_name"),
        pytest.param(names.sandbox_id, id="sandbox_id"),
        pytest.param(names.container_id, id="container_id"),
        pytest.param(names.id_or_name, id="id_or_name"),
    ],
)
def test_a_name_with_a_trailing_newline_is_rejected(check):
    with pytest.raises(InvalidName):
        check("web\n")


def test_every_name_error_belongs_to_the_invalid_name_family():
    for error in (InvalidPodName, InvalidContainerName, InvalidSandboxID, InvalidContainerID):
        assert issubclass(error, InvalidName)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(HEX64, id="full-hex"),
        pytest.param("podid-0", id="chosen-id"),
        pytest.param("x" * 128, id="128-characters"),
    ],
)
def test_a_valid_id_is_accepted_as_a_pod_id_and_a_container_id(value):
    assert names.sandbox_id(value) == value
    assert names.container_id(value) == value


def test_an_id_longer_than_128_characters_is_rejected():
    with pytest.raises(InvalidSandboxID):
        names.sandbox_id("x" * 129)
    with pytest.raises(InvalidContainerID):
        names.container_id("x" * 129)


def test_the_error_message_names_the_value_and_what_is_allowed():
    with pytest.raises(InvalidPodName, match=r"pod name '-rf' is not valid.*letters, digits"):
        names.pod_name("-rf")
    with pytest.raises(InvalidContainerName, match="container name is empty"):
        names.container_name("")


@pytest.mark.parametrize(
    ("value", "full"),
    [
        pytest.param(HEX64, True, id="64-hex"),
        pytest.param(HEX64[:63], False, id="63-hex"),
        pytest.param(HEX64.upper(), False, id="upper-case"),
        pytest.param("sha256:" + HEX64, False, id="with-algorithm"),
        pytest.param("web", False, id="a-name"),
    ],
)
def test_is_full_id_is_true_only_for_64_lower_hex_digits(value, full):
    assert names.is_full_id(value) is full


# -- free text -----------------------------------------------------------------


def test_text_without_control_characters_is_returned():
    assert names.text("kube-system", "namespace") == "kube-system"
    assert names.text("", "mount label") == ""
    assert names.text("système_u:object_r", "mount label") == "système_u:object_r"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a\nb", id="newline"),
        pytest.param("a\x00", id="nul"),
        pytest.param("\x1b[31m", id="escape"),
        pytest.param(3, id="not-a-string"),
    ],
)
def test_text_with_control_characters_or_of_another_type_is_rejected(value):
    with pytest.raises(InvalidName):
        names.text(value, "namespace")


def test_text_raises_the_error_the_caller_chose():
    with pytest.raises(InvalidPodName, match="pod UID"):
        names.text("x\n", "pod UID", InvalidPodName)


# -- image IDs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(HEX64, HEX64, id="bare"),
        pytest.param("sha256:" + HEX64, HEX64, id="algorithm-dropped"),
        pytest.param(HEX64[:12], HEX64[:12], id="short-12"),
    ],
)
def test_an_image_id_is_returned_without_its_algorithm(value, expected):
    assert names.image_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(HEX64[:11], id="11-hex"),
        pytest.param("sha512:" + HEX64, id="other-algorithm"),
        pytest.param(HEX64.upper(), id="upper-case"),
        pytest.param("busybox", id="a-name"),
        pytest.param(None, id="none"),
    ],
)
def test_a_malformed_image_id_is_an_invalid_image_name(value):
    with pytest.raises(InvalidImageName):
        names.image_id(value)


def test_an_image_id_with_a_trailing_newline_is_rejected():
    with pytest.raises(InvalidImageName):
        names.image_id(HEX64 + "\n")


# -- registry references -----------------------------------------------------------

NORMALIZED = [
    pytest.param("busybox", "docker.io/library/busybox:latest", id="short-name"),
    pytest.param("busybox:1.36", "docker.io/library/busybox:1.36", id="short-name-with-tag"),
    pytest.param("library/busybox", "docker.io/library/busybox:latest", id="library-path"),
    pytest.param("docker.io/busybox", "docker.io/library/busybox:latest", id="docker.io-one-part"),
    pytest.param("someone/tool:v2", "docker.io/someone/tool:v2", id="docker-hub-user"),
    pytest.param("docker://busybox", "docker.io/library/busybox:latest", id="docker-transport"),
    pytest.param("localhost/a", "localhost/a:latest", id="localhost"),
    pytest.param("localhost:5000/a/b:t", "localhost:5000/a/b:t", id="localhost-port-deep"),
    pytest.param("127.0.0.1:5000/busybox:1", "127.0.0.1:5000/busybox:1", id="ip-port"),
    pytest.param("[::1]:5000/a:t", "[::1]:5000/a:t", id="ipv6"),
    pytest.param("quay.io/org/app:v1.2-rc_3", "quay.io/org/app:v1.2-rc_3", id="dotted-domain"),
    pytest.param("registry:5000/x", "registry:5000/x:latest", id="host-with-port-no-dot"),
    pytest.param("a/b__c.d-e/f", "docker.io/a/b__c.d-e/f:latest", id="path-separators"),
    pytest.param(
        "busybox@sha256:" + HEX64, f"docker.io/library/busybox@sha256:{HEX64}", id="digest"
    ),
    pytest.param(
        "busybox:1@sha256:" + HEX64,
        f"docker.io/library/busybox@sha256:{HEX64}",
        id="tag-and-digest-stored-by-digest",
    ),
]


@pytest.mark.parametrize(("ref", "stored"), NORMALIZED)
def test_a_registry_reference_is_normalized_as_containers_image_does(ref, stored):
    parsed = names.image_reference(ref)
    assert parsed.transport == "docker"
    assert parsed.store_name() == stored
    assert str(parsed) == stored
    assert parsed.skopeo_source() == "docker://" + stored


def test_a_reference_is_split_into_domain_name_tag_and_digest():
    parsed = names.image_reference("localhost:5000/a/b:t")
    assert parsed.domain == "localhost:5000"
    assert parsed.name == "localhost:5000/a/b"
    assert parsed.tag == "t"
    assert parsed.digest == ""
    digested = names.image_reference("busybox@sha256:" + HEX64)
    assert digested.tag == ""
    assert digested.digest == "sha256:" + HEX64


def test_a_first_component_without_dot_or_port_is_part_of_the_path():
    parsed = names.image_reference("myregistry/app")
    assert parsed.domain == "docker.io"
    assert parsed.name == "docker.io/myregistry/app"


def test_the_legacy_docker_hub_domain_is_normalized_to_docker_io():
    parsed = names.image_reference("index.docker.io/busybox")
    assert parsed.store_name() == "docker.io/library/busybox:latest"


BAD_REFERENCES = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("-busybox", id="leading-dash"),
    pytest.param("busy\nbox", id="newline"),
    pytest.param("busybox\x00", id="nul"),
    pytest.param("BusyBox", id="upper-case-path"),
    pytest.param("busybox:", id="empty-tag"),
    pytest.param("busybox:" + "t" * 129, id="tag-of-129"),
    pytest.param("busybox:-x", id="tag-leading-dash"),
    pytest.param("busybox@sha256:abc", id="short-digest"),
    pytest.param("busybox@" + HEX64, id="digest-without-algorithm"),
    pytest.param("a//b", id="empty-path-component"),
    pytest.param("a/b/", id="trailing-slash"),
    pytest.param("x" * 300, id="name-over-255"),
    pytest.param("docker-daemon:busybox:latest", id="docker-daemon-transport"),
    pytest.param("containers-storage:busybox", id="containers-storage-transport"),
    pytest.param("http://example.test/busybox", id="url"),
    pytest.param("x" * 4097, id="over-4096"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("ref", BAD_REFERENCES)
def test_an_invalid_image_reference_is_an_invalid_image_name(ref):
    with pytest.raises(InvalidImageName):
        names.image_reference(ref)


def test_an_unsupported_transport_is_named_in_the_message():
    with pytest.raises(InvalidImageName, match="transport podstore does not pull from"):
        names.image_reference("docker-daemon:busybox:latest")


def test_a_tag_of_128_characters_is_accepted():
    assert names.image_reference("busybox:" + "t" * 128).tag == "t" * 128


def test_a_tag_with_non_ascii_letters_is_rejected():
    with pytest.raises(InvalidImageName):
        names.image_reference("busybox:tägé")


# -- local transports ----------------------------------------------------------------

LOCAL = [
    pytest.param("oci:/abs:tag", "oci", "/abs", "tag", "localhost/abs:tag", id="oci-with-tag"),
    pytest.param("oci:/abs", "oci", "/abs", "", "localhost/abs:latest", id="oci-without-tag"),
    pytest.param(
        "oci:/images/Busy Box:v1",
        "oci",
        "/images/Busy Box",
        "v1",
        "localhost/busy-box:v1",
        id="oci-name-sanitized",
    ),
    pytest.param(
        "oci-archive:/tmp/img.tar",
        "oci-archive",
        "/tmp/img.tar",
        "",
        "localhost/img:latest",
        id="oci-archive",
    ),
    pytest.param(
        "docker-archive:/tmp/img.tar.gz:foo/bar:1",
        "docker-archive",
        "/tmp/img.tar.gz",
        "foo/bar:1",
        "localhost/img:1",
        id="docker-archive-with-reference",
    ),
    pytest.param("dir:/srv/img:x", "dir", "/srv/img:x", "", "localhost/img-x:latest", id="dir"),
]


@pytest.mark.parametrize(("ref", "transport", "path", "tag", "stored"), LOCAL)
def test_a_local_reference_keeps_its_path_and_is_stored_under_localhost(
    ref, transport, path, tag, stored
):
    parsed = names.image_reference(ref)
    assert (parsed.transport, parsed.name, parsed.tag) == (transport, path, tag)
    assert parsed.store_name() == stored
    assert parsed.domain == ""
    assert parsed.skopeo_source() == ref
    assert str(parsed) == ref


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param("oci:relative/layout:tag", id="oci-relative"),
        pytest.param("oci:./layout", id="oci-dot-relative"),
        pytest.param("oci-archive:img.tar", id="oci-archive-relative"),
        pytest.param("dir:img", id="dir-relative"),
        pytest.param("oci:", id="no-path"),
        pytest.param("oci:/a/../etc:t", id="parent-in-path"),
        pytest.param("dir:/a/..", id="trailing-parent"),
    ],
)
def test_a_local_reference_needs_a_safe_absolute_path(ref):
    with pytest.raises(InvalidImageName):
        names.image_reference(ref)


def test_a_relative_oci_path_is_explained():
    with pytest.raises(InvalidImageName, match=r"absolute path \(oci:/path"):
        names.image_reference("oci:layout:t")


# -- registries ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:5000", "127.0.0.1:5000", "registry.example.test", "[::1]:5000"],
)
def test_a_registry_host_with_or_without_port_is_accepted(host):
    assert names.registry_host(host) == host


@pytest.mark.parametrize(
    "host",
    ["", "http://localhost:5000", "localhost:5000/path", "host:port", "-x", "a b", None],
)
def test_a_registry_that_is_not_host_or_host_port_is_rejected(host):
    with pytest.raises(InvalidName):
        names.registry_host(host)
