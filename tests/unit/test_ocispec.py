"""The runtime config template: image config overlaid with the container spec."""

from __future__ import annotations

import copy
import json

import pytest

from controller.storage.images import ImageConfig
from controller.storage.ocispec import (
    DEFAULT_PATH,
    ROOT_PLACEHOLDER,
    InvalidRuntimeConfig,
    ProcessSpec,
    build_template,
    merge_env,
    parse_user,
    process_args,
    render,
    resolve_user,
)

IMAGE = ImageConfig(
    entrypoint=("/entry",),
    cmd=("serve", "--port=80"),
    env=("PATH=/image/bin", "MODE=image", "KEEP=1"),
    working_dir="/srv",
    user="",
)
NO_ENTRYPOINT = ImageConfig(cmd=("sh",))
EMPTY = ImageConfig()


# -- command and args (Kubernetes' rules) ----------------------------------------

ARGV = [
    pytest.param(IMAGE, ProcessSpec(), ["/entry", "serve", "--port=80"], id="neither-entry+cmd"),
    pytest.param(
        IMAGE, ProcessSpec(command=["/bin/sh"]), ["/bin/sh"], id="command-only-drops-image-cmd"
    ),
    pytest.param(
        IMAGE, ProcessSpec(args=["debug"]), ["/entry", "debug"], id="args-only-entry+args"
    ),
    pytest.param(
        IMAGE,
        ProcessSpec(command=["/bin/sh"], args=["-c", "true"]),
        ["/bin/sh", "-c", "true"],
        id="command-and-args",
    ),
    pytest.param(
        NO_ENTRYPOINT, ProcessSpec(args=["-c", "true"]), ["-c", "true"], id="args-no-entrypoint"
    ),
    pytest.param(NO_ENTRYPOINT, ProcessSpec(), ["sh"], id="cmd-only-image"),
    pytest.param(
        IMAGE,
        ProcessSpec(command=[], args=[]),
        IMAGE.entrypoint + IMAGE.cmd,
        id="empty-lists-mean-unset",
    ),
    pytest.param(None, ProcessSpec(command=["/pause"]), ["/pause"], id="no-image-config"),
]


@pytest.mark.parametrize(("image", "spec", "argv"), ARGV)
def test_the_process_args_follow_kubernetes_command_and_args_rules(image, spec, argv):
    assert process_args(image, spec) == list(argv)


@pytest.mark.parametrize(
    ("image", "spec"),
    [
        pytest.param(EMPTY, ProcessSpec(), id="empty-image-empty-spec"),
        pytest.param(None, ProcessSpec(), id="no-image-config"),
        pytest.param(EMPTY, ProcessSpec(command=[], args=[]), id="empty-lists"),
    ],
)
def test_a_container_without_any_command_is_an_error(image, spec):
    with pytest.raises(InvalidRuntimeConfig, match=r"set spec\.command"):
        process_args(image, spec)


def test_args_alone_over_an_image_without_entrypoint_or_cmd_are_the_command():
    assert process_args(EMPTY, ProcessSpec(args=["/bin/true"])) == ["/bin/true"]


# -- environment --------------------------------------------------------------------


def test_the_spec_env_overrides_the_image_env_in_place_and_appends_new_names():
    env = merge_env(IMAGE.env, {"MODE": "spec", "NEW": "x"})
    assert env == ["PATH=/image/bin", "MODE=spec", "KEEP=1", "NEW=x"]


def test_path_gets_the_default_when_neither_image_nor_spec_sets_it():
    assert merge_env(["A=1"], {}) == ["A=1", f"PATH={DEFAULT_PATH}"]


def test_a_path_from_the_spec_wins_over_the_image_and_the_default():
    env = merge_env(["PATH=/image"], {"PATH": "/spec"})
    assert env == ["PATH=/spec"]


def test_env_values_keep_their_equals_signs_and_may_be_empty():
    env = merge_env(["OPTS=a=b=c", "EMPTY="], {"SPEC": "x=y"})
    assert env[:2] == ["OPTS=a=b=c", "EMPTY="]
    assert "SPEC=x=y" in env


def test_a_later_duplicate_in_the_image_env_wins():
    assert merge_env(["A=1", "A=2"], {})[0] == "A=2"


def test_the_template_env_is_the_merged_env():
    template = build_template(IMAGE, ProcessSpec(env={"MODE": "spec"}))
    assert template["process"]["env"] == ["PATH=/image/bin", "MODE=spec", "KEEP=1"]


# -- working directory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "spec", "cwd"),
    [
        pytest.param(IMAGE, ProcessSpec(), "/srv", id="image-workdir"),
        pytest.param(IMAGE, ProcessSpec(working_dir="/data"), "/data", id="spec-overrides"),
        pytest.param(NO_ENTRYPOINT, ProcessSpec(), "/", id="default-root"),
        pytest.param(None, ProcessSpec(command=["/pause"]), "/", id="no-image-config"),
    ],
)
def test_the_working_directory_comes_from_spec_then_image_then_root(image, spec, cwd):
    assert build_template(image, spec)["process"]["cwd"] == cwd


def test_a_relative_working_directory_is_rejected():
    with pytest.raises(InvalidRuntimeConfig, match="absolute path"):
        build_template(IMAGE, ProcessSpec(working_dir="data"))


def test_a_relative_image_working_directory_is_rejected_too():
    image = ImageConfig(cmd=("sh",), working_dir="srv")
    with pytest.raises(InvalidRuntimeConfig):
        build_template(image, ProcessSpec())


# -- users ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param("", (0, 0), id="unset-is-root"),
        pytest.param("0", (0, 0), id="zero"),
        pytest.param("1000:1000", (1000, 1000), id="uid-gid"),
        pytest.param("1000:0", (1000, 0), id="uid-root-group"),
        pytest.param("65534:65533", (65534, 65533), id="nobody"),
        pytest.param("nobody", None, id="named"),
        pytest.param("1000:staff", None, id="numeric-uid-named-group"),
        pytest.param("app:100", None, id="named-uid-numeric-group"),
    ],
)
def test_parse_user_reads_numeric_users_and_leaves_names_for_later(user, expected):
    assert parse_user(user) == expected


def test_a_numeric_user_is_fixed_in_the_template_without_an_annotation():
    image = ImageConfig(cmd=("sh",), user="1000:2000")
    template = build_template(image, ProcessSpec())
    assert template["process"]["user"] == {"uid": 1000, "gid": 2000}
    assert "io.podstore.user" not in template["annotations"]


def test_a_named_user_is_left_to_render_as_an_annotation():
    image = ImageConfig(cmd=("sh",), user="nobody")
    template = build_template(image, ProcessSpec())
    assert template["process"]["user"] == {"uid": 0, "gid": 0}
    assert template["annotations"]["io.podstore.user"] == "nobody"


@pytest.fixture
def rootfs(tmp_path):
    """A container root file system with its own /etc/passwd and /etc/group."""
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text(
        "# comment line\n"
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:50:App:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/:/bin/false\n"
        "broken-line\n"
    )
    (etc / "group").write_text("root:x:0:\nstaff:x:50:app\nwheel:x:10:\n")
    return tmp_path / "rootfs"


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        pytest.param("app", (1000, 50), id="name-gets-its-primary-group"),
        pytest.param("nobody", (65534, 65534), id="nobody"),
        pytest.param("app:wheel", (1000, 10), id="name-and-group-name"),
        pytest.param("app:7", (1000, 7), id="name-and-numeric-group"),
        pytest.param("root", (0, 0), id="root"),
    ],
)
def test_a_named_user_is_resolved_from_the_containers_own_passwd(rootfs, user, expected):
    assert resolve_user(str(rootfs), user) == expected


def test_a_user_missing_from_the_containers_passwd_is_an_error(rootfs):
    with pytest.raises(InvalidRuntimeConfig, match=r"'ghost'.*/etc/passwd"):
        resolve_user(str(rootfs), "ghost")


def test_a_group_missing_from_the_containers_group_file_is_an_error(rootfs):
    with pytest.raises(InvalidRuntimeConfig, match=r"'ghosts'.*/etc/group"):
        resolve_user(str(rootfs), "app:ghosts")


def test_a_named_user_in_a_rootfs_without_passwd_is_an_error(tmp_path):
    with pytest.raises(InvalidRuntimeConfig):
        resolve_user(str(tmp_path), "app")


def test_render_resolves_a_named_user_against_the_mounted_rootfs(rootfs):
    image = ImageConfig(cmd=("sh",), user="app:wheel")
    config = render(build_template(image, ProcessSpec()), str(rootfs))
    assert config["process"]["user"] == {"uid": 1000, "gid": 10}


def test_a_bare_numeric_user_gets_the_primary_group_of_its_passwd_entry(rootfs):
    image = ImageConfig(cmd=("sh",), user="1000")
    config = render(build_template(image, ProcessSpec()), str(rootfs))
    assert config["process"]["user"] == {"uid": 1000, "gid": 50}


def test_a_bare_numeric_user_without_a_passwd_entry_gets_group_zero(rootfs):
    image = ImageConfig(cmd=("sh",), user="4242")
    config = render(build_template(image, ProcessSpec()), str(rootfs))
    assert config["process"]["user"] == {"uid": 4242, "gid": 0}


# -- the template and render -------------------------------------------------------------


def test_the_template_is_a_complete_oci_spec_with_a_placeholder_root():
    template = build_template(IMAGE, ProcessSpec(), hostname="web")
    assert template["ociVersion"].startswith("1.")
    assert template["root"] == {"path": ROOT_PLACEHOLDER, "readonly": False}
    assert template["process"]["args"] == ["/entry", "serve", "--port=80"]
    assert template["hostname"] == "web"
    assert {m["destination"] for m in template["mounts"]} >= {"/proc", "/dev", "/sys"}
    assert {ns["type"] for ns in template["linux"]["namespaces"]} >= {"pid", "mount"}
    json.dumps(template)  # it is plain JSON


def test_the_template_carries_mount_label_annotations_and_readonly_root():
    template = build_template(
        IMAGE,
        ProcessSpec(),
        mount_label="system_u:object_r:container_file_t:s0",
        annotations={"io.kubernetes.pod.name": "web"},
        readonly_rootfs=True,
    )
    assert template["linux"]["mountLabel"] == "system_u:object_r:container_file_t:s0"
    assert template["annotations"] == {"io.kubernetes.pod.name": "web"}
    assert template["root"]["readonly"] is True


def test_the_hostname_is_cut_to_63_characters():
    assert len(build_template(IMAGE, ProcessSpec(), hostname="h" * 80)["hostname"]) == 63


def test_building_a_template_does_not_change_the_callers_annotations():
    annotations = {"a": "b"}
    build_template(ImageConfig(cmd=("sh",), user="nobody"), ProcessSpec(), annotations=annotations)
    assert annotations == {"a": "b"}


def test_render_replaces_root_path_only_and_leaves_the_template_untouched():
    template = build_template(IMAGE, ProcessSpec(), hostname="web")
    before = copy.deepcopy(template)
    config = render(template, "/var/lib/containers/storage/overlay/abc/merged")
    assert template == before
    assert config["root"]["path"] == "/var/lib/containers/storage/overlay/abc/merged"
    config["root"]["path"] = ROOT_PLACEHOLDER
    assert config == before


def test_render_shares_no_mutable_parts_with_the_template():
    template = build_template(IMAGE, ProcessSpec())
    config = render(template, "/m")
    config["process"]["env"].append("X=1")
    config["mounts"].clear()
    assert "X=1" not in template["process"]["env"]
    assert template["mounts"]


def test_render_keeps_fields_it_does_not_know():
    template = {"root": {"path": "rootfs", "readonly": True}, "process": {}, "x-extra": [1]}
    config = render(template, "/m")
    assert config == {"root": {"path": "/m", "readonly": True}, "process": {}, "x-extra": [1]}


def test_render_refuses_a_relative_mountpoint():
    with pytest.raises(InvalidRuntimeConfig, match="not an absolute path"):
        render(build_template(IMAGE, ProcessSpec()), "merged")


@pytest.mark.parametrize(
    "template",
    [
        pytest.param({}, id="empty"),
        pytest.param({"process": {}}, id="no-root"),
        pytest.param({"root": {"path": "x"}}, id="no-process"),
        pytest.param({"root": "x", "process": {}}, id="root-not-a-mapping"),
    ],
)
def test_render_refuses_a_template_without_root_or_process(template):
    with pytest.raises(InvalidRuntimeConfig):
        render(template, "/m")
