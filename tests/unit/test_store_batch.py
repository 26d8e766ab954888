"""Store's batch verbs and derived directories, fed with what containers-storage printed.

The ``*-many`` captures were recorded with several IDs in one process, one of them
unknown (``recorded/record.py``); the stub runner checks that Store builds the same
command line, so the batch forms are known to work with the real tool.
"""

from __future__ import annotations

import json

import pytest

from controller.storage.errors import (
    CommandError,
    ContainerNotKnown,
    InvalidContainerID,
    StorageError,
    StoreLocked,
)
from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.store import (
    TOOL,
    Store,
    match_containers,
    parse_delete_many,
    parse_mount_many,
    parse_unmount_many,
)
from tests.unit.test_store_parsing import (
    MEMBER_ID,
    MISSING_ID,
    POD_ID,
    RECORDED_STORE,
    answer,
    capture,
    synthetic,
)

ROOT, RUN_ROOT = RECORDED_STORE["root"], RECORDED_STORE["runroot"]


@pytest.fixture
def store() -> Store:
    return Store(ROOT, RUN_ROOT, RECORDED_STORE["driver"])


# -- mount, unmount, delete ----------------------------------------------------------------


def test_mount_many_mounts_each_id_and_gives_the_unknown_one_its_own_error(store):
    runner = answer(store, "mount-many")
    result = store.mount_many([POD_ID, MISSING_ID, MEMBER_ID])
    assert runner.calls == [("mount", "--json", POD_ID, MISSING_ID, MEMBER_ID)]
    assert isinstance(result[POD_ID], str)
    assert result[POD_ID].startswith(f"{ROOT}/overlay/")
    assert isinstance(result[MEMBER_ID], str)
    assert result[MEMBER_ID] != result[POD_ID]
    assert isinstance(result[MISSING_ID], ContainerNotKnown)
    assert MISSING_ID in str(result[MISSING_ID])


def test_mount_many_with_a_label_passes_it_once_for_the_batch(store):
    runner = answer(store, strict=False)
    runner.captures.append(
        synthetic(0, json.dumps([{"id": POD_ID, "mountpoint": "/m", "error": ""}]))
    )
    label = "system_u:object_r:container_file_t:s0"
    assert store.mount_many([POD_ID], label=label) == {POD_ID: "/m"}
    assert runner.calls == [("mount", "--json", "--label", label, POD_ID)]


def test_unmount_many_reads_the_json_after_the_text_lines_and_says_which_is_gone(store):
    assert "mountpoint unmounted" in capture("unmount-many")["stdout"]
    runner = answer(store, "unmount-many")
    result = store.unmount_many([POD_ID, MISSING_ID, MEMBER_ID])
    assert runner.calls == [("unmount", "--json", "--force", POD_ID, MISSING_ID, MEMBER_ID)]
    assert result == {POD_ID: True, MISSING_ID: False, MEMBER_ID: True}


def test_delete_many_deletes_each_and_says_which_were_already_gone(store):
    runner = answer(store, "delete-many")
    result = store.delete_many([POD_ID, MISSING_ID, MEMBER_ID])
    assert runner.calls == [("delete-container", "--json", POD_ID, MISSING_ID, MEMBER_ID)]
    assert result == {POD_ID: True, MISSING_ID: False, MEMBER_ID: False}


def test_an_invalid_id_gets_its_error_and_never_reaches_the_command_line(store):
    runner = answer(store, "delete-many")
    result = store.delete_many(["../../etc", POD_ID, MISSING_ID, "-rf", MEMBER_ID])
    assert runner.calls == [("delete-container", "--json", POD_ID, MISSING_ID, MEMBER_ID)]
    assert isinstance(result["../../etc"], InvalidContainerID)
    assert isinstance(result["-rf"], InvalidContainerID)
    assert result[POD_ID] is True


def test_an_id_given_twice_is_run_once(store):
    runner = answer(store, "mount-many")
    store.mount_many([POD_ID, MISSING_ID, POD_ID, MEMBER_ID, MEMBER_ID])
    assert runner.calls == [("mount", "--json", POD_ID, MISSING_ID, MEMBER_ID)]


def test_nothing_to_do_runs_no_process(store):
    runner = answer(store)
    assert store.mount_many([]) == {}
    assert store.unmount_many([]) == {}
    assert store.delete_many([]) == {}
    assert store.containers_many([]) == {}
    assert runner.calls == []


def test_a_batch_whose_process_fails_as_a_whole_gives_every_id_that_error(store):
    def locked(verb: str, *args: str, **kw: object) -> None:
        raise StoreLocked(TOOL, verb, f"{ROOT}/overlay-layers/layers.lock", "pid 7 (podman)", 30)

    store.runner.run = locked  # type: ignore[method-assign]
    result = store.mount_many([POD_ID, MEMBER_ID])
    assert set(result) == {POD_ID, MEMBER_ID}
    assert all(isinstance(v, StoreLocked) for v in result.values())
    assert result[POD_ID] is result[MEMBER_ID]


def test_an_id_the_answer_leaves_out_is_retried_on_its_own(store):
    runner = answer(store, "mount", strict=False)
    runner.captures.insert(0, synthetic(1, "[]\n", "something odd"))
    result = store.mount_many([POD_ID])
    assert runner.calls == [("mount", "--json", POD_ID), ("mount", "--json", POD_ID)]
    assert isinstance(result[POD_ID], str)


def test_a_per_id_error_other_than_unknown_is_a_command_error_naming_the_id(store):
    refused = "creating overlay mount to /x/merged, mount_data=...: invalid argument"
    answer(store, strict=False).captures.append(
        synthetic(
            1,
            json.dumps(
                [
                    {"id": POD_ID, "mountpoint": "", "error": refused},
                    {"id": MEMBER_ID, "mountpoint": "/m", "error": ""},
                ]
            ),
        )
    )
    result = store.mount_many([POD_ID, MEMBER_ID])
    assert isinstance(result[POD_ID], CommandError)
    assert not isinstance(result[POD_ID], ContainerNotKnown)
    assert POD_ID in str(result[POD_ID])
    assert "invalid argument" in str(result[POD_ID])
    assert result[MEMBER_ID] == "/m"


# -- lookups ----------------------------------------------------------------------------------


def test_containers_many_matches_ids_and_names_and_gives_none_for_the_unknown(store):
    runner = answer(store, "container-many")
    found = store.containers_many([POD_ID, MISSING_ID, "web-app"])
    assert runner.calls == [("container", "--json", POD_ID, MISSING_ID, "web-app")]
    assert found[POD_ID] is not None
    assert found[POD_ID].id == POD_ID
    assert found[MISSING_ID] is None
    member = found["web-app"]
    assert member is not None
    assert member.id == MEMBER_ID
    meta = RuntimeContainerMetadata.from_json(member.metadata)
    assert meta is not None
    assert meta.pod_id == POD_ID


def test_containers_many_raises_when_the_store_cannot_be_read(store):
    answer(store, strict=False).captures.append(synthetic(1, "", "permission denied"))
    with pytest.raises(CommandError, match="permission denied"):
        store.containers_many([POD_ID])


def test_metadata_many_gives_each_metadata_and_none_for_the_unknown(store):
    runner = answer(store, "metadata-many")
    found = store.metadata_many([POD_ID, MISSING_ID, MEMBER_ID])
    assert runner.calls == [("metadata", "--json", POD_ID, MISSING_ID, MEMBER_ID)]
    assert found[MISSING_ID] is None
    pod = RuntimeContainerMetadata.from_json(found[POD_ID] or "")
    member = RuntimeContainerMetadata.from_json(found[MEMBER_ID] or "")
    assert pod is not None
    assert pod.pod
    assert member is not None
    assert not member.pod


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(POD_ID, POD_ID, id="full-id"),
        pytest.param(POD_ID[:12], POD_ID, id="unique-prefix"),
        pytest.param("web", POD_ID, id="name"),
        pytest.param("web-app", MEMBER_ID, id="other-name"),
        pytest.param("nosuch", None, id="unknown"),
    ],
)
def test_match_containers_looks_keys_up_as_containers_storage_does(key, expected):
    records = json.loads(capture("containers")["stdout"])
    hit = match_containers(records, [key])[key]
    assert (hit.id if hit else None) == expected


@pytest.mark.parametrize(
    ("parse", "stdout"),
    [
        pytest.param(parse_mount_many, "", id="mount-empty"),
        pytest.param(parse_mount_many, "panic: runtime error", id="mount-garbage"),
        pytest.param(parse_unmount_many, "x mountpoint unmounted\n", id="unmount-no-json"),
        pytest.param(parse_delete_many, "[]", id="delete-wrong-shape"),
    ],
)
def test_output_that_answers_for_no_id_parses_to_nothing(parse, stdout):
    assert parse(stdout, [POD_ID]) == {}


def test_an_answer_for_an_id_not_asked_about_is_ignored():
    stdout = json.dumps([{"id": MISSING_ID, "mountpoint": "/m", "error": ""}])
    assert parse_mount_many(stdout, [POD_ID]) == {}


def test_a_full_filesystem_in_one_entry_is_no_space():
    stdout = json.dumps({POD_ID: "write /srv/x: no space left on device"})
    (err,) = parse_delete_many(stdout, [POD_ID], ("/",)).values()
    assert isinstance(err, StorageError)
    assert err.reason == "NoSpace"


# -- derived directories -------------------------------------------------------------------


def test_derived_directories_are_those_containers_storage_prints(store):
    assert store.derived_dirs(POD_ID) == (
        capture("get-container-dir")["stdout"].strip(),
        capture("get-container-run-dir")["stdout"].strip(),
    )


def test_the_first_lookup_asks_the_cli_and_later_ones_are_derived(store):
    runner = answer(store, "get-container-dir", "get-container-run-dir")
    first = store.container_dirs(POD_ID)
    assert runner.calls == [("get-container-dir", POD_ID), ("get-container-run-dir", POD_ID)]
    assert first == store.derived_dirs(POD_ID)
    assert store.container_dirs(MEMBER_ID) == (
        f"{ROOT}/overlay-containers/{MEMBER_ID}/userdata",
        f"{RUN_ROOT}/overlay-containers/{MEMBER_ID}/userdata",
    )
    assert len(runner.calls) == 2


def test_directories_found_elsewhere_in_the_same_shape_are_derived_from_there(store):
    runner = answer(store, strict=False)
    runner.captures += [
        synthetic(0, f"/elsewhere/g/{POD_ID}/userdata\n"),
        synthetic(0, f"/elsewhere/r/{POD_ID}/userdata\n"),
    ]
    store.container_dirs(POD_ID)
    assert store.container_dirs(MEMBER_ID) == (
        f"/elsewhere/g/{MEMBER_ID}/userdata",
        f"/elsewhere/r/{MEMBER_ID}/userdata",
    )
    assert len(runner.calls) == 2


def test_directories_of_another_shape_are_always_asked_for(store):
    runner = answer(store, strict=False)
    runner.captures += [
        synthetic(0, "/odd/a\n"),
        synthetic(0, "/odd/b\n"),
        synthetic(0, "/odd/c\n"),
        synthetic(0, "/odd/d\n"),
    ]
    assert store.container_dirs(POD_ID) == ("/odd/a", "/odd/b")
    assert store.container_dirs(MEMBER_ID) == ("/odd/c", "/odd/d")
    assert len(runner.calls) == 4


def test_a_container_not_known_to_exist_is_asked_about_when_its_folder_is_missing(store):
    runner = answer(
        store, "get-container-dir", "get-container-run-dir", "get-container-dir-unknown"
    )
    store.container_dirs(POD_ID)
    # The recorded store is gone from disk: the derived folder is not there.
    with pytest.raises(ContainerNotKnown):
        store.container_dirs(MISSING_ID, known=False)
    assert runner.calls[-1] == ("get-container-dir", MISSING_ID)


@pytest.mark.parametrize("bad", ["../x", "", "a/b", "-x", "a" * 200])
def test_no_directory_is_derived_from_an_invalid_id(store, bad):
    with pytest.raises(InvalidContainerID):
        store.derived_dirs(bad)
    with pytest.raises(InvalidContainerID):
        store.container_dirs(bad)
