"""Every RuntimeService call is safe to repeat and to interrupt.

A crashed agent retries what it was doing; the retry must find what the first attempt
made instead of making a second one, and a create that failed part-way must leave
nothing behind for the retry to trip over. The failures here are real: a registry
that does not answer, a name another container holds, the store refusing to write its
layer list (the file made immutable between two steps), an interrupt arriving between
two commands, and a container left as a killed agent would leave it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.storage import (
    ImageService,
    RuntimeContainerMetadata,
    RuntimeService,
    new_id,
)
from controller.storage.command import CommandEvent, add_observer, remove_observer
from controller.storage.errors import (
    ImagePullError,
    InvalidContainerID,
    NameConflict,
    StorageError,
)
from tests.support.commands import run
from tests.support.images import RegistryImages
from tests.support.registry import DeadRegistry, Registry
from tests.support.stores import (
    container_json,
    container_metadata,
    containers_json,
    copy_image,
    cs,
    each_driver,
    images_json,
    is_mounted,
    layer_names,
)

pytestmark = pytest.mark.integration

NOW = 1_700_000_000


def service(store: Any, registry: Registry, *extra: str, now: int = NOW) -> RuntimeService:
    hosts = (registry.host, *extra)
    return RuntimeService(ImageService(store, insecure_registries=hosts), clock=lambda: now)


@pytest.fixture
def seeded(store: Any, images: RegistryImages) -> RegistryImages:
    """busybox:1 and pause:1 in the store under their registry names, copied, not pulled."""
    copy_image(store, images.busybox_oci, images.busybox)
    copy_image(store, images.pause_oci, images.pause)
    return images


@pytest.fixture
def runtime(store: Any, registry: Registry) -> RuntimeService:
    return service(store, registry)


@pytest.fixture
def pod_id() -> str:
    return new_id()


def sandbox_args(images: RegistryImages, pod_id: str, **changes: Any) -> dict[str, Any]:
    args = {
        "pod_name": "web",
        "pod_id": pod_id,
        "image_name": images.pause,
        "container_name": "web-infra",
        "metadata_name": "web",
        "uid": "uid-web",
        "namespace": "default",
    }
    return {**args, **changes}


def member_args(images: RegistryImages, pod_id: str, **changes: Any) -> dict[str, Any]:
    args = {
        "pod_name": "web",
        "pod_id": pod_id,
        "image_name": images.busybox,
        "container_name": "web-app",
        "metadata_name": "app",
        "uid": "uid-web",
        "namespace": "default",
    }
    return {**args, **changes}


def create(runtime: RuntimeService, kind: str, args: dict[str, Any]) -> Any:
    if kind == "sandbox":
        return runtime.create_pod_sandbox(**args)
    return runtime.create_container(**args)


def store_state(store: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """What a failed call must not change: every container and every image ID."""
    return containers_json(store), sorted(i["id"] for i in images_json(store))


@contextlib.contextmanager
def on_command(action: Callable[[CommandEvent], None]) -> Iterator[None]:
    """Call ``action`` right after each ``containers-storage`` command podstore runs."""

    def observe(event: CommandEvent) -> None:
        if event.tool == "containers-storage":
            action(event)

    add_observer(observe)
    try:
        yield
    finally:
        remove_observer(observe)


# -- repeating a create ------------------------------------------------------------


REPEATS = [
    pytest.param("sandbox", {}, False, id="pod-sandbox-same-agent"),
    pytest.param("sandbox", {}, True, id="pod-sandbox-restarted-agent"),
    pytest.param("member", {}, True, id="member-without-id-restarted-agent"),
    pytest.param("member", {"container_id": "c0ffee" * 10 + "c0de"}, False, id="member-with-id"),
    pytest.param(
        "member", {"image_name": "", "image_id": "busybox"}, True, id="member-by-image-id"
    ),
]


@pytest.mark.parametrize(("kind", "changes", "restarted"), REPEATS)
def test_a_repeated_create_returns_the_container_the_first_one_made(
    store: Any,
    registry: Registry,
    seeded: RegistryImages,
    pod_id: str,
    kind: str,
    changes: dict[str, Any],
    restarted: bool,
) -> None:
    if changes.get("image_id") == "busybox":
        changes = {**changes, "image_id": seeded.busybox_id}
    args = {**(sandbox_args if kind == "sandbox" else member_args)(seeded, pod_id), **changes}
    first_agent = service(store, registry, now=NOW)
    first = create(first_agent, kind, args)
    # A restarted agent has no memory and a later clock.
    again_agent = service(store, registry, now=NOW + 60) if restarted else first_agent

    again = create(again_agent, kind, args)

    assert again.id == first.id
    assert (again.dir, again.run_dir, again.config) == (first.dir, first.run_dir, first.config)
    assert [c["id"] for c in containers_json(store)] == [first.id]
    assert container_metadata(store, first.id)["created-at"] == NOW
    assert again.metadata.created_at == NOW
    layer = container_json(store, first.id)["layer"]
    assert layer_names(store, layer) == [f"{args['container_name']}-layer"]


def test_a_repeated_create_of_a_started_container_leaves_it_mounted(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    info = runtime.create_container(**member_args(seeded, pod_id))
    runtime.start_container(info.id)
    assert runtime.create_container(**member_args(seeded, pod_id)).id == info.id
    assert is_mounted(store, info.id)


@pytest.mark.parametrize("kind", ["sandbox", "member"])
def test_concurrent_identical_creates_make_one_container(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str, kind: str
) -> None:
    """Two workers of one agent (a handler and a timer) may create the same thing at once."""
    args = (sandbox_args if kind == "sandbox" else member_args)(seeded, pod_id)
    threads = 3
    start = threading.Barrier(threads)
    outcomes: list[Any] = []
    lock = threading.Lock()

    def make() -> None:
        start.wait()
        try:
            outcome: Any = create(runtime, kind, args).id
        except Exception as err:  # handed to the test thread
            outcome = err
        with lock:
            outcomes.append(outcome)

    workers = [threading.Thread(target=make) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    made = containers_json(store)
    assert [c["id"] for c in made] == outcomes[:1]
    assert outcomes == outcomes[:1] * threads
    assert layer_names(store, made[0]["layer"]) == [f"{args['container_name']}-layer"]


# -- names and IDs held by a different container -------------------------------------


CONFLICTS = [
    pytest.param("member", {"pod_id": "other-pod"}, id="member-name-in-another-pod"),
    pytest.param("member", {"image_name": "pause"}, id="member-name-with-another-image"),
    pytest.param("member", {"attempt": 1}, id="member-name-with-another-attempt"),
    pytest.param("member", {"metadata_name": "other"}, id="member-name-for-another-object"),
    pytest.param(
        "member", {"container_name": "web-db", "container_id": "app-id"}, id="member-id-taken"
    ),
    pytest.param("member", {"container_name": "web"}, id="member-named-like-a-pod"),
    pytest.param("member", {"container_name": "web-db", "container_id": "pod-id"}, id="pod-id"),
    pytest.param("member", {"container_name": "foreign"}, id="name-of-a-foreign-container"),
    pytest.param("sandbox", {"pod_id": "new"}, id="pod-name-with-another-pod-id"),
    pytest.param(
        "sandbox", {"pod_name": "db", "container_name": "db-infra"}, id="pod-id-of-another-pod"
    ),
    pytest.param(
        "sandbox", {"container_name": "web-app", "pod_id": "new"}, id="infra-named-as-a-member"
    ),
]


@pytest.mark.parametrize(("kind", "changes"), CONFLICTS)
def test_a_create_whose_name_or_id_is_held_by_another_container_changes_nothing(
    store: Any,
    runtime: RuntimeService,
    seeded: RegistryImages,
    pod_id: str,
    kind: str,
    changes: dict[str, Any],
) -> None:
    runtime.create_pod_sandbox(**sandbox_args(seeded, pod_id))
    app = runtime.create_container(**member_args(seeded, pod_id, container_id=new_id()))
    cs(store, "create-container", "--name", "foreign", seeded.busybox_id)
    placeholders = {
        "other-pod": new_id(),
        "pause": seeded.pause,
        "app-id": app.id,
        "pod-id": pod_id,
        "new": new_id(),
    }
    changes = {k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    args = {**(sandbox_args if kind == "sandbox" else member_args)(seeded, pod_id), **changes}
    before = store_state(store)

    with pytest.raises(NameConflict, match=r"in use|held by"):
        create(runtime, kind, args)

    assert store_state(store) == before


# -- removing and stopping what is gone ------------------------------------------------


GONE_CALLS = [
    pytest.param(lambda rt, ref: rt.delete_container(ref), id="delete-container"),
    pytest.param(lambda rt, ref: rt.remove_pod_sandbox(ref), id="remove-pod-sandbox"),
    pytest.param(lambda rt, ref: rt.stop_container(ref), id="stop-container"),
]


@pytest.mark.parametrize("call", GONE_CALLS)
def test_removing_or_stopping_a_container_that_is_already_gone_succeeds(
    store: Any,
    runtime: RuntimeService,
    registry: Registry,
    seeded: RegistryImages,
    pod_id: str,
    call: Callable[[RuntimeService, str], None],
) -> None:
    runtime.create_pod_sandbox(**sandbox_args(seeded, pod_id))
    runtime.remove_pod_sandbox(pod_id)
    assert containers_json(store) == []

    for ref in (pod_id, "web"):
        call(runtime, ref)  # this process removed it
        call(service(store, registry), ref)  # a restarted agent never saw it
    call(runtime, new_id())  # it never existed

    assert containers_json(store) == []


@pytest.mark.parametrize("call", GONE_CALLS)
def test_removing_or_stopping_a_container_deleted_behind_podstores_back_succeeds(
    store: Any,
    runtime: RuntimeService,
    seeded: RegistryImages,
    pod_id: str,
    call: Callable[[RuntimeService, str], None],
) -> None:
    """This process made (and knows) the container; podman or a person deleted it."""
    runtime.create_pod_sandbox(**sandbox_args(seeded, pod_id))
    runtime.start_container(pod_id)
    cs(store, "delete-container", pod_id)

    call(runtime, pod_id)

    assert containers_json(store) == []


def test_stopping_a_container_that_was_never_started_succeeds(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    info = runtime.create_container(**member_args(seeded, pod_id))
    runtime.stop_container(info.id)
    runtime.stop_container("web-app")
    assert not is_mounted(store, info.id)
    assert container_json(store, info.id) is not None


def test_a_removal_interrupted_after_some_members_is_finished_by_the_next(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    runtime.create_pod_sandbox(**sandbox_args(seeded, pod_id))
    one = runtime.create_container(**member_args(seeded, pod_id, container_name="web-one"))
    runtime.create_container(**member_args(seeded, pod_id, container_name="web-two"))
    cs(store, "delete-container", one.id)  # what the interrupted removal got done

    runtime.remove_pod_sandbox("web")

    assert containers_json(store) == []


UNKNOWN_CALLS = [
    pytest.param(lambda rt, ref: rt.start_container(ref), id="start-container"),
    pytest.param(lambda rt, ref: rt.get_container_metadata(ref), id="get-container-metadata"),
    pytest.param(
        lambda rt, ref: rt.set_container_metadata(ref, RuntimeContainerMetadata(name="x")),
        id="set-container-metadata",
    ),
    pytest.param(lambda rt, ref: rt.get_work_dir(ref), id="get-work-dir"),
    pytest.param(lambda rt, ref: rt.get_run_dir(ref), id="get-run-dir"),
    pytest.param(lambda rt, ref: rt.write_config_template(ref, {}), id="write-config-template"),
    pytest.param(lambda rt, ref: rt.read_config_template(ref), id="read-config-template"),
]


@pytest.mark.parametrize("call", UNKNOWN_CALLS)
def test_calls_that_need_a_container_refuse_an_unknown_id(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str, call: Any
) -> None:
    info = runtime.create_container(**member_args(seeded, pod_id))
    runtime.get_work_dir(info.id)  # cached in this process...
    runtime.delete_container(info.id)  # ...and gone from the store
    other = runtime.create_container(**member_args(seeded, pod_id, container_name="web-other"))
    runtime.get_run_dir(other.id)
    cs(store, "delete-container", other.id)  # behind podstore's back
    before = store_state(store)
    for ref in (info.id, other.id, new_id(), "no-such-container"):
        with pytest.raises(InvalidContainerID, match="not in the store"):
            call(runtime, ref)
    assert store_state(store) == before


# -- a create that fails part-way -------------------------------------------------------


def test_a_create_whose_pull_fails_leaves_no_container_and_no_image(
    store: Any, registry: Registry, seeded: RegistryImages, dead_registry: DeadRegistry
) -> None:
    runtime = service(store, registry, dead_registry.host)
    pod = runtime.create_pod_sandbox(**sandbox_args(seeded, new_id()))
    before = store_state(store)
    ref = dead_registry.ref("busybox:1")

    with pytest.raises(ImagePullError) as caught:
        runtime.create_container(**member_args(seeded, pod.id, image_name=ref))

    assert caught.value.reference == ref
    assert ref in str(caught.value)
    assert "connection refused" in caught.value.detail
    assert store_state(store) == before


def test_a_create_whose_name_is_taken_adds_nothing(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    runtime.create_container(**member_args(seeded, pod_id))
    before = store_state(store)
    with pytest.raises(NameConflict):
        runtime.create_container(**member_args(seeded, new_id()))
    assert store_state(store) == before
    assert [c.metadata.pod_id for c in runtime.list_containers()] == [pod_id]


@contextlib.contextmanager
def layer_list_frozen_after_create_container(store: Any) -> Iterator[list[str]]:
    """Make the store unable to write its layer list between create-container and the
    next command (the file immutable: even root cannot replace it), and able again once
    that next command has failed. Yields the verbs run while it was frozen."""
    layers_json = Path(store.root) / f"{store.driver}-layers" / "layers.json"
    probe = run(["chattr", "+i", layers_json], check=False)
    run(["chattr", "-i", layers_json], check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make {layers_json} immutable here: {probe.stderr.strip()}")
    frozen_during: list[str] = []
    state = {"frozen": False}

    def freeze(event: CommandEvent) -> None:
        if state["frozen"]:
            frozen_during.append(event.verb)
            run(["chattr", "-i", layers_json])
            state["frozen"] = False
        elif event.verb == "create-container" and event.ok:
            run(["chattr", "+i", layers_json])
            state["frozen"] = True

    try:
        with on_command(freeze):
            yield frozen_during
    finally:
        run(["chattr", "-i", layers_json], check=False)


@each_driver
def test_a_create_whose_layer_naming_fails_deletes_the_new_container_again(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    first = runtime.create_container(**member_args(seeded, pod_id, container_name="x"))
    before = store_state(store)
    args = member_args(seeded, pod_id, container_name="y")

    with (
        layer_list_frozen_after_create_container(store) as frozen_during,
        pytest.raises(StorageError, match=r"add-names.*operation not permitted"),
    ):
        runtime.create_container(**args)

    assert frozen_during == ["add-names"]
    assert store_state(store) == before
    assert layer_names(store, container_json(store, first.id)["layer"]) == ["x-layer"]
    # The retry now goes through.
    retried = runtime.create_container(**args)
    assert layer_names(store, container_json(store, retried.id)["layer"]) == ["y-layer"]


def test_a_layer_name_another_layer_held_moves_to_the_new_containers_layer(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str
) -> None:
    """containers/storage moves a layer name rather than refusing it (1.43), so naming
    the layer of container ``y`` cannot fail on a name another layer holds."""
    x = runtime.create_container(**member_args(seeded, pod_id, container_name="x"))
    x_layer = container_json(store, x.id)["layer"]
    cs(store, "add-names", "-n", "y-layer", x_layer)

    y = runtime.create_container(**member_args(seeded, pod_id, container_name="y"))

    assert layer_names(store, x_layer) == ["x-layer"]
    assert layer_names(store, container_json(store, y.id)["layer"]) == ["y-layer"]


@pytest.mark.parametrize("after", ["create-container", "add-names", "get-container-dir"])
def test_a_create_interrupted_between_two_commands_leaves_nothing_or_is_adopted(
    store: Any, runtime: RuntimeService, seeded: RegistryImages, pod_id: str, after: str
) -> None:
    """An interrupt (KeyboardInterrupt, a cancelled worker) arrives right after a command.

    Before the container exists podstore cannot clean up in the same call; the retry
    adopts what is there. Once it exists, the failing call deletes it itself.
    """
    before = store_state(store)
    args = member_args(seeded, pod_id)

    def interrupt(event: CommandEvent) -> None:
        if event.verb == after:
            raise KeyboardInterrupt(f"interrupted after {after}")

    with on_command(interrupt), pytest.raises(KeyboardInterrupt):
        runtime.create_container(**args)

    left = containers_json(store)
    if after == "create-container":
        # Killed before podstore could react: as a crashed agent leaves it.
        assert len(left) == 1
        info = runtime.create_container(**args)
        assert info.id == left[0]["id"]
        assert layer_names(store, left[0]["layer"]) == ["web-app-layer"]
    else:
        assert store_state(store) == before


CRASH_LEFTOVERS = [
    pytest.param("sandbox", id="infra-container"),
    pytest.param("member", id="member-container"),
]


@each_driver
@pytest.mark.parametrize("kind", CRASH_LEFTOVERS)
def test_a_repeated_create_adopts_a_container_a_killed_agent_left_without_its_layer_name(
    store: Any,
    registry: Registry,
    seeded: RegistryImages,
    pod_id: str,
    kind: str,
) -> None:
    args = (sandbox_args if kind == "sandbox" else member_args)(seeded, pod_id)
    image_id = seeded.pause_id if kind == "sandbox" else seeded.busybox_id
    metadata = RuntimeContainerMetadata(
        pod=kind == "sandbox",
        pod_name="web",
        pod_id=pod_id,
        image_name=args["image_name"],
        image_id=image_id,
        name=args["container_name"],
        metadata_name=args["metadata_name"],
        uid="uid-web",
        namespace="default",
        created_at=NOW - 3600,
    )
    hand = ["create-container", "--json", "--metadata", metadata.to_json()]
    if kind == "sandbox":
        hand += ["--id", pod_id, "--name", "web-infra", "--name", "web"]
    else:
        hand += ["--name", "web-app"]
    left = cs(store, *hand, image_id)
    assert layer_names(store, left["layer"]) == []

    info = create(service(store, registry), kind, args)

    assert info.id == left["id"]
    assert [c["id"] for c in containers_json(store)] == [left["id"]]
    assert layer_names(store, left["layer"]) == [f"{args['container_name']}-layer"]
    assert container_metadata(store, info.id) == metadata.to_dict()
    assert info.metadata.created_at == NOW - 3600
