"""controller.manifest.resources: manifests made into API objects, as a server would.

Each test writes manifests to ``tmp_path``, reads them with the loader and builds
the resource set over what an earlier build left, as ``podstore run`` does pass
after pass. Pure logic: no store, no process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.manifest import loader
from controller.manifest.loader import Key
from controller.manifest.resources import Built, build
from controller.manifest.state import Entry, uid_for

NODE = "node-a"
API = "podstore.dev/v1alpha1"
IMAGE = "registry.example.com/busybox:1.36"
T1 = "2024-05-01T10:00:00Z"
T2 = "2024-05-01T11:00:00Z"


def pod(name: str = "web", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": API, "kind": "StoragePod", "metadata": meta, "spec": dict(spec)}


def container(name: str = "web-log", pod_name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "StorageContainer",
        "metadata": {"name": name},
        "spec": {"podName": pod_name, "image": IMAGE, **spec},
    }


def template(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, **fields}


def pod_key(name: str = "web", namespace: str = "default") -> Key:
    return Key("StoragePod", namespace, name)


def ctr_key(name: str, namespace: str = "default") -> Key:
    return Key("StorageContainer", namespace, name)


class Run:
    """``podstore run`` over one folder: each :meth:`apply` writes the manifests and
    builds over what the last one left."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries: dict[Key, Entry] = {}
        self.removed: list[Entry] = []

    def apply(
        self, *docs: Any, now: str = T1, node_name: str = NODE, name: str = "m.yaml"
    ) -> Built:
        path = self.folder / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        loaded = loader.load([str(path)], node_name=node_name)
        built = build(loaded, [*self.entries.values(), *self.removed], now=now)
        self.entries, self.removed = built.entries, built.removed
        return built

    def obj(self, key: Key) -> dict[str, Any]:
        return self.entries[key].obj


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def generation(built: Built, key: Key) -> int:
    return int(built.entries[key].obj["metadata"]["generation"])


def removed_keys(built: Built) -> list[Key]:
    return sorted((e.key for e in built.removed), key=str)


# --- UIDs -------------------------------------------------------------------------------


def test_a_uid_is_the_same_in_every_build_and_every_run(tmp_path: Path) -> None:
    first = Run(tmp_path / "a")
    second = Run(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    manifests = (pod("web", containers=[template("app")]), container("web-log"))
    one = first.apply(*manifests)
    again = first.apply(*manifests, now=T2)
    elsewhere = second.apply(*manifests)
    for key in (pod_key("web"), ctr_key("web-app"), ctr_key("web-log")):
        uid = one.entries[key].obj["metadata"]["uid"]
        assert uid == uid_for(key)
        assert uuid.UUID(uid).version == 5
        assert again.entries[key].obj["metadata"]["uid"] == uid
        assert elsewhere.entries[key].obj["metadata"]["uid"] == uid


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(pod_key("web"), ctr_key("web"), id="kind"),
        pytest.param(pod_key("web"), pod_key("web", "apps"), id="namespace"),
        pytest.param(pod_key("web"), pod_key("db"), id="name"),
        pytest.param(Key("StoragePod", "a", "b-c"), Key("StoragePod", "a-b", "c"), id="split"),
    ],
)
def test_uids_differ_when_kind_namespace_or_name_differ(a: Key, b: Key) -> None:
    assert uid_for(a) != uid_for(b)


# --- generation, creation time and status ----------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(pod("web"), pod("web"), 1, id="unchanged"),
        pytest.param(pod("web"), pod("web", attempt=1), 2, id="spec-changed"),
        pytest.param(
            pod("web"),
            {**pod("web"), "metadata": {"name": "web", "labels": {"tier": "front"}}},
            1,
            id="only-labels-changed",
        ),
        pytest.param(
            pod("web"), pod("web", imagePullPolicy="IfNotPresent"), 1, id="default-spelt-out"
        ),
        pytest.param(pod("web", nodeName=NODE), pod("web"), 1, id="node-name-given-then-omitted"),
        pytest.param(container("web-log"), container("web-log"), 1, id="container-unchanged"),
        pytest.param(
            container("web-log"), container("web-log", state="Stopped"), 2, id="container-stopped"
        ),
    ],
)
def test_the_generation_grows_only_when_the_spec_changes(
    run: Run, before: dict[str, Any], after: dict[str, Any], expected: int
) -> None:
    key = Key(before["kind"], "default", before["metadata"]["name"])
    assert generation(run.apply(before), key) == 1
    built = run.apply(after, now=T2)
    assert built.problems == []
    assert generation(built, key) == expected


def test_the_generation_keeps_counting_over_several_changes(run: Run) -> None:
    for attempt in range(4):
        built = run.apply(pod("web", attempt=attempt))
    assert generation(built, pod_key()) == 4
    built = run.apply(pod("web", attempt=3))
    assert generation(built, pod_key()) == 4


def test_the_creation_time_is_the_first_builds_and_the_status_is_kept(run: Run) -> None:
    run.apply(pod("web"), now=T1)
    run.entries[pod_key()].obj["status"] = {"phase": "Ready", "podID": "abc"}
    built = run.apply(pod("web", attempt=1), now=T2)
    obj = built.entries[pod_key()].obj
    assert obj["metadata"]["creationTimestamp"] == T1
    assert obj["status"] == {"phase": "Ready", "podID": "abc"}


def test_a_resource_made_again_after_removal_starts_over(run: Run) -> None:
    run.apply(pod("web", attempt=1), pod("db"), now=T1)
    run.apply(pod("web", attempt=2), pod("db"), now=T1)
    run.removed = []  # the store removed it
    gone = run.apply(pod("db"), now=T1)
    assert removed_keys(gone) == [pod_key("web")]
    run.removed = []
    built = run.apply(pod("web", attempt=2), pod("db"), now=T2)
    meta = built.entries[pod_key()].obj["metadata"]
    assert (meta["generation"], meta["creationTimestamp"]) == (1, T2)


# --- defaults ---------------------------------------------------------------------------


def test_defaults_are_applied_to_pods_containers_and_templates(run: Run) -> None:
    built = run.apply(pod("web", containers=[template("app")]), container("web-log"))
    web = built.entries[pod_key()].obj
    assert web["metadata"]["namespace"] == "default"
    assert web["spec"]["nodeName"] == NODE
    assert web["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert web["spec"]["attempt"] == 0
    for key in (ctr_key("web-log"), ctr_key("web-app")):
        spec = built.entries[key].obj["spec"]
        assert (spec["imagePullPolicy"], spec["state"]) == ("IfNotPresent", "Started")


# --- a pod's container templates --------------------------------------------------------


def test_a_pods_templates_become_storage_containers_it_owns(run: Run, tmp_path: Path) -> None:
    web = pod(
        "web",
        namespace="apps",
        containers=[template("app", args=["serve"]), template("log", state="Stopped")],
    )
    built = run.apply(pod("other"), web)
    assert built.problems == []
    pod_uid = built.entries[pod_key("web", "apps")].obj["metadata"]["uid"]
    for name, extra in (("app", {"args": ["serve"]}), ("log", {"state": "Stopped"})):
        entry = built.entries[ctr_key(f"web-{name}", "apps")]
        assert entry.owner == pod_key("web", "apps")
        assert (entry.file, entry.document) == (str(tmp_path / "m.yaml"), 2)
        obj = entry.obj
        assert obj["metadata"]["uid"] == uid_for(ctr_key(f"web-{name}", "apps"))
        assert obj["metadata"]["generation"] == 1
        assert obj["metadata"]["labels"]["podstore.dev/pod"] == "web"
        (ref,) = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "StoragePod",
            "web",
            pod_uid,
            True,
        )
        assert obj["spec"] == {
            "podName": "web",
            "image": IMAGE,
            "imagePullPolicy": "IfNotPresent",
            "state": "Started",
            **extra,
        }


def test_a_changed_template_bumps_only_its_own_containers_generation(run: Run) -> None:
    run.apply(pod("web", containers=[template("app"), template("log")]))
    built = run.apply(
        pod(
            "web",
            containers=[template("app", image="registry.example.com/nginx:1"), template("log")],
        ),
        now=T2,
    )
    assert built.problems == []
    assert generation(built, ctr_key("web-app")) == 2
    assert built.entries[ctr_key("web-app")].obj["spec"]["image"] == "registry.example.com/nginx:1"
    assert built.entries[ctr_key("web-app")].obj["metadata"]["creationTimestamp"] == T1
    assert generation(built, ctr_key("web-log")) == 1
    assert generation(built, pod_key()) == 2


def test_a_field_removed_from_a_template_is_removed_from_its_container(run: Run) -> None:
    run.apply(pod("web", containers=[template("app", args=["serve"])]))
    built = run.apply(pod("web", containers=[template("app")]), now=T2)
    spec = built.entries[ctr_key("web-app")].obj["spec"]
    assert "args" not in spec
    assert generation(built, ctr_key("web-app")) == 2


@pytest.mark.parametrize(
    ("after", "gone"),
    [
        pytest.param(
            [pod("web", containers=[template("app")]), pod("db")],
            [ctr_key("web-log")],
            id="template-removed",
        ),
        pytest.param(
            [pod("db")],
            [pod_key("web"), ctr_key("web-app"), ctr_key("web-log")],
            id="pod-removed",
        ),
    ],
)
def test_owned_containers_go_with_their_template_or_their_pod(
    run: Run, after: list[dict[str, Any]], gone: list[Key]
) -> None:
    run.apply(pod("web", containers=[template("app"), template("log")]), pod("db"))
    built = run.apply(*after, now=T2)
    assert removed_keys(built) == sorted(gone, key=str)
    assert not set(gone) & set(built.entries)


def test_a_template_clashing_with_a_standalone_container_is_reported_on_the_pod(
    run: Run, tmp_path: Path
) -> None:
    standalone = container("web-app", args=["mine"])
    built = run.apply(standalone, pod("web", containers=[template("log"), template("app")]))
    path = str(tmp_path / "m.yaml")
    assert [(p.file, p.document, p.field) for p in built.problems] == [
        (path, 2, "spec.containers[1].name")
    ]
    message = built.problems[0].message
    assert "StorageContainer default/web-app" in message
    assert f"{path}, document 1" in message
    kept = built.entries[ctr_key("web-app")]
    assert kept.owner is None
    assert kept.obj["spec"]["args"] == ["mine"]
    assert "ownerReferences" not in kept.obj["metadata"]
    assert built.entries[ctr_key("web-log")].owner == pod_key()


def test_a_new_standalone_container_never_takes_the_place_of_a_pods_own(
    tmp_path: Path,
) -> None:
    """Issue 12, defect 2: a file added later clashing with a pod's template container."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(pod("good", containers=[template("app")])))
    first = build(loader.load([str(folder)], node_name=NODE), [], now=T1)
    owned = first.entries[ctr_key("good-app")]
    assert owned.owner == pod_key("good")
    (folder / "b.yaml").write_text(yaml.safe_dump(container("good-app", "good", state="Stopped")))
    second = build(loader.load([str(folder)], node_name=NODE), list(first.entries.values()), now=T2)
    assert [(p.file, p.document, p.field) for p in second.problems] == [
        (str(folder / "b.yaml"), 1, "metadata.name")
    ]
    assert "StoragePod default/good" in second.problems[0].message
    assert second.entries[ctr_key("good-app")] is owned
    assert second.removed == []
    # Once the pod's template is gone, the standalone container is what is left.
    (folder / "a.yaml").write_text(yaml.safe_dump(pod("good")))
    third = build(loader.load([str(folder)], node_name=NODE), list(second.entries.values()), now=T2)
    assert third.problems == []
    assert third.entries[ctr_key("good-app")].owner is None


def test_a_standalone_container_naming_the_pod_is_not_owned_by_it(run: Run) -> None:
    built = run.apply(pod("web", containers=[template("app")]), container("web-log"))
    assert built.problems == []
    assert built.entries[ctr_key("web-log")].owner is None
    assert built.entries[ctr_key("web-app")].owner == pod_key()
    built = run.apply(pod("web"), container("web-log"), now=T2)
    assert removed_keys(built) == [ctr_key("web-app")]


# --- immutable fields -------------------------------------------------------------------


def test_moving_a_pod_to_another_node_is_refused_and_the_old_pod_kept(
    run: Run, tmp_path: Path
) -> None:
    first = run.apply(container("web-log"), pod("web", attempt=1), node_name="node-a")
    old = first.entries[pod_key()].obj
    built = run.apply(container("web-log"), pod("web", attempt=2), node_name="node-b", now=T2)
    assert [(p.file, p.document, p.field) for p in built.problems] == [
        (str(tmp_path / "m.yaml"), 2, "spec.nodeName")
    ]
    assert "immutable" in built.problems[0].message
    assert built.entries[pod_key()].obj is old
    assert built.entries[pod_key()].obj["spec"]["nodeName"] == "node-a"
    assert generation(built, pod_key()) == 1
    assert pod_key() not in removed_keys(built)


def test_moving_a_container_to_another_pod_is_refused_and_the_old_container_kept(
    run: Run, tmp_path: Path
) -> None:
    run.apply(pod("web"), pod("db"), container("log", pod_name="web"))
    built = run.apply(pod("web"), pod("db"), container("log", pod_name="db"), now=T2)
    assert [(p.file, p.document, p.field) for p in built.problems] == [
        (str(tmp_path / "m.yaml"), 3, "spec.podName")
    ]
    assert "immutable" in built.problems[0].message
    assert built.entries[ctr_key("log")].obj["spec"]["podName"] == "web"
    assert generation(built, ctr_key("log")) == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(pod("web", nodeName=NODE), pod("web", attempt=1), id="pod"),
        pytest.param(container("log"), container("log", args=["-f"]), id="container"),
    ],
)
def test_changing_a_mutable_field_is_no_problem(
    run: Run, before: dict[str, Any], after: dict[str, Any]
) -> None:
    run.apply(before)
    assert run.apply(after, now=T2).problems == []


# --- what is removed and what is kept --------------------------------------------------


def test_a_resource_gone_from_the_manifests_is_removed(run: Run) -> None:
    run.apply(pod("web"), container("web-log"))
    built = run.apply(pod("web"), now=T2)
    assert removed_keys(built) == [ctr_key("web-log")]
    assert list(built.entries) == [pod_key()]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(pod("web", imagePullPolicy="Sometimes"), id="schema-error"),
        pytest.param({**pod("web"), "kind": "StoragePodd"}, id="misspelt-kind"),
        pytest.param({**pod("web"), "metadata": {}}, id="no-name"),
    ],
)
def test_a_resource_whose_manifest_is_now_rejected_is_kept_as_it_was(
    run: Run, bad: dict[str, Any]
) -> None:
    first = run.apply(pod("web", containers=[template("app")]))
    kept = first.entries[pod_key()].obj
    built = run.apply(bad, now=T2)
    assert built.entries[pod_key()].obj is kept
    assert ctr_key("web-app") in built.entries
    assert built.removed == []


def test_a_resource_named_twice_keeps_its_previous_self(run: Run) -> None:
    run.apply(pod("web"))
    built = run.apply(pod("web", attempt=1), pod("web", attempt=2), now=T2)
    assert built.entries[pod_key()].obj["spec"]["attempt"] == 0
    assert built.removed == []


def test_nothing_is_removed_when_a_path_given_is_missing(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(pod("web")))
    first = build(loader.load([str(tmp_path)], node_name=NODE), [], now=T1)
    (tmp_path / "m.yaml").unlink()
    loaded = loader.load([str(tmp_path / "gone")], node_name=NODE)
    previous: Sequence[Entry] = list(first.entries.values())
    built = build(loaded, previous, now=T2)
    assert list(built.entries) == [pod_key()]
    assert built.removed == []
