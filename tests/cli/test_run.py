"""``podstore run --once``: manifests in a folder, made real in a store, and kept so.

Each test runs the real command on a real store and reads the store back with
``containers-storage``.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import pytest

from controller import crds
from tests.cli.common import (
    NODE,
    by_name,
    container,
    identity,
    ids,
    managed,
    metadata_of,
    pod,
    run_once,
    state_file,
    template,
    write,
    written_verbs,
)
from tests.cli.conftest import Refs
from tests.support.images import LocalImages
from tests.support.registry import DeadRegistry, Registry
from tests.support.runc import run_bundle
from tests.support.stores import StorePaths, cs, is_mounted

pytestmark = pytest.mark.cli


def _objects(done: object) -> dict[str, dict]:
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    return by_name(json.loads(done.stdout))  # type: ignore[attr-defined,return-value]


def _web(refs: Refs, args: str = "echo hello from $GREETING") -> dict:
    return pod(
        "web",
        refs.pause,
        template("app", refs.busybox, command=["/bin/sh", "-c"], args=[args]),
        template("idle", refs.busybox, state="Stopped"),
    )


def test_run_once_makes_every_resource_and_a_runnable_bundle(
    store_root: StorePaths, manifests: Path, refs: Refs, runc_root: Path
) -> None:
    write(
        manifests / "web.yaml",
        _web(refs),
        container("debug", "web", refs.busybox2, args=["cat /etc/podstore-version"]),
    )
    objects = _objects(run_once(store_root, manifests, "-o", "json"))

    assert set(objects) == {
        "StoragePod/web",
        "StorageContainer/web-app",
        "StorageContainer/web-idle",
        "StorageContainer/debug",
    }
    for obj in objects.values():
        assert crds.validate(obj) == [], obj  # the cluster's schema, status included
        assert uuid.UUID(obj["metadata"]["uid"])
        assert obj["metadata"]["generation"] == 1
        assert obj["status"]["observedGeneration"] == 1
    web = objects["StoragePod/web"]["status"]
    assert web["phase"] == "Ready"
    assert web["nodeName"] == NODE
    assert [(c["name"], c["phase"]) for c in web["containers"]] == [
        ("debug", "Started"),
        ("web-app", "Started"),
        ("web-idle", "Created"),
    ]
    app = objects["StorageContainer/web-app"]
    assert (
        app["metadata"]["ownerReferences"][0]["uid"] == objects["StoragePod/web"]["metadata"]["uid"]
    )
    assert app["status"]["phase"] == "Started"
    assert Path(app["status"]["configPath"]).is_file()
    assert objects["StorageContainer/web-idle"]["status"]["phase"] == "Created"

    # What the store says, not what podstore says.
    found = managed(store_root)
    assert set(found) == {"pod/web", "web-app", "web-idle", "debug"}
    assert found["pod/web"]["id"] == web["podID"]
    for name in ("web-app", "web-idle", "debug"):
        meta = found[name]["meta"]
        assert meta["pod-id"] == web["podID"]
        assert meta["namespace"] == "default"
        assert meta["labels"]["podstore.dev/source"] == "run"
        assert meta["labels"]["podstore.dev/node"] == NODE
        assert found[name]["id"] == objects[f"StorageContainer/{name}"]["status"]["containerID"]
    assert is_mounted(store_root, found["web-app"]["id"])
    assert is_mounted(store_root, found["debug"]["id"])
    assert not is_mounted(store_root, found["web-idle"]["id"])

    ran = run_bundle(app["status"]["runDir"], f"cli-{uuid.uuid4().hex[:8]}", runc_root=runc_root)
    assert (ran.returncode, ran.stdout) == (0, "hello from hello\n"), ran.stderr
    debug = objects["StorageContainer/debug"]["status"]
    ran = run_bundle(debug["runDir"], f"cli-{uuid.uuid4().hex[:8]}", runc_root=runc_root)
    assert (ran.returncode, ran.stdout) == (0, "2\n"), ran.stderr


def test_a_second_run_leaves_unchanged_resources_exactly_as_they_were(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", _web(refs))
    first = _objects(run_once(store_root, manifests, "-o", "json"))
    before = identity(store_root)
    state_before = state_file(store_root).read_bytes()
    template_path = Path(first["StorageContainer/web-app"]["status"]["workDir"]) / "config.json"
    template_mtime = template_path.stat().st_mtime_ns

    again = run_once(store_root, manifests, "-o", "json", "--log-level", "DEBUG")

    assert again.returncode == 0, again.stderr
    assert written_verbs(again.stderr) == []
    assert identity(store_root) == before
    assert template_path.stat().st_mtime_ns == template_mtime
    assert by_name(json.loads(again.stdout)) == first
    assert state_file(store_root).read_bytes() == state_before


def test_run_adopts_what_exists_when_its_state_is_lost(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", _web(refs))
    first = _objects(run_once(store_root, manifests, "-o", "json"))
    before = identity(store_root)
    state_file(store_root).unlink()

    again = run_once(store_root, manifests, "-o", "json", "--log-level", "DEBUG")

    objects = _objects(again)
    assert identity(store_root) == before  # same IDs, same layers: nothing re-created
    assert not {"create-container", "delete-container"} & set(written_verbs(again.stderr))
    for key, obj in objects.items():
        assert obj["metadata"]["uid"] == first[key]["metadata"]["uid"]
        assert obj["status"]["phase"] == first[key]["status"]["phase"]
    assert objects["StoragePod/web"]["status"]["podID"] == before["pod/web"][0]


def test_a_changed_spec_is_applied_as_the_operator_applies_it(
    store_root: StorePaths,
    manifests: Path,
    refs: Refs,
    image_layout: LocalImages,
    runc_root: Path,
) -> None:
    write(
        manifests / "web.yaml",
        _web(refs, args="echo first"),
        container("debug", "web", refs.busybox),
    )
    _objects(run_once(store_root, manifests, "-o", "json"))
    before = identity(store_root)

    # New args for a template, a new image and state for a container.
    write(
        manifests / "web.yaml",
        _web(refs, args="echo second"),
        container("debug", "web", refs.busybox2, state="Stopped"),
    )
    objects = _objects(run_once(store_root, manifests, "-o", "json"))

    app = objects["StorageContainer/web-app"]
    assert app["metadata"]["generation"] == 2
    assert app["status"]["observedGeneration"] == 2
    after = identity(store_root)
    assert after["web-app"] == before["web-app"]  # same container, config rewritten
    assert after["web-idle"] == before["web-idle"]
    assert objects["StorageContainer/web-idle"]["metadata"]["generation"] == 1
    ran = run_bundle(app["status"]["runDir"], f"cli-{uuid.uuid4().hex[:8]}", runc_root=runc_root)
    assert ran.stdout == "second\n", ran.stderr
    assert after["debug"][1] != before["debug"][1]  # a new layer from the new image
    assert metadata_of(store_root, "debug")["image-id"] == image_layout.busybox2_id
    assert not is_mounted(store_root, after["debug"][0])
    assert objects["StorageContainer/debug"]["status"]["phase"] == "Stopped"

    # A new attempt is a new sandbox: the old one and its members go.
    web = _web(refs, args="echo second")
    web["spec"]["attempt"] = 1
    write(manifests / "web.yaml", web, container("debug", "web", refs.busybox2, state="Stopped"))
    objects = _objects(run_once(store_root, manifests, "-o", "json"))
    final = ids(store_root)
    assert final["pod/web"] == objects["StoragePod/web"]["status"]["podID"] != before["pod/web"][0]
    assert not {before[name][0] for name in before} & set(final.values())
    assert {c["meta"]["pod-id"] for c in managed(store_root).values()} == {final["pod/web"]}


def test_a_resource_removed_from_the_folder_is_removed_from_the_store(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", _web(refs))
    write(
        manifests / "extra.yaml",
        container("extra", "web", refs.busybox),
        pod("other", refs.pause, template("app", refs.busybox)),
    )
    _objects(run_once(store_root, manifests, "-o", "json"))
    assert set(ids(store_root)) == {
        "pod/web",
        "web-app",
        "web-idle",
        "extra",
        "pod/other",
        "other-app",
    }
    web_before = {k: v for k, v in identity(store_root).items() if "web" in k}

    (manifests / "extra.yaml").unlink()
    objects = _objects(run_once(store_root, manifests, "-o", "json"))

    assert set(objects) == {
        "StoragePod/web",
        "StorageContainer/web-app",
        "StorageContainer/web-idle",
    }
    assert identity(store_root) == web_before

    # A template dropped from the pod takes its StorageContainer with it.
    web = _web(refs)
    web["spec"]["containers"] = web["spec"]["containers"][:1]
    write(manifests / "web.yaml", web)
    objects = _objects(run_once(store_root, manifests, "-o", "json"))
    assert set(objects) == {"StoragePod/web", "StorageContainer/web-app"}
    assert set(ids(store_root)) == {"pod/web", "web-app"}
    assert [c["name"] for c in objects["StoragePod/web"]["status"]["containers"]] == ["web-app"]


def test_only_containers_that_run_made_are_ever_removed(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", _web(refs))
    _objects(run_once(store_root, manifests, "-o", "json"))
    image = cs(store_root, "images", "--json")[0]["id"]
    foreign = cs(store_root, "create-container", "--json", "--name", "podman-thing", image)["id"]
    # The infra container of a pod that the agent made from the cluster.
    agent = uuid.uuid4().hex * 2
    agent_meta = {
        **metadata_of(store_root, "pod/web"),
        "pod-id": agent,
        "metadata-name": "from-the-cluster",
        "labels": {"podstore.dev/source": "agent", "podstore.dev/node": NODE},
    }
    cs(store_root, "create-container", "--id", agent, "--metadata", json.dumps(agent_meta), image)

    # The state is lost and the folder emptied: what is left of run's is an orphan.
    state_file(store_root).unlink()
    (manifests / "web.yaml").unlink()
    done = run_once(store_root, manifests, "-o", "json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    left = {c["id"] for c in cs(store_root, "containers", "--json")}
    assert left == {foreign, agent}


def test_a_resource_that_failed_makes_run_once_fail_and_the_others_still_run(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(
        manifests / "web.yaml",
        _web(refs),
        container("bad-ref", "web", "Not/A:Valid:Ref"),
        container("never", "web", "localhost/absent:1", imagePullPolicy="Never"),
        container("lost", "ghost", refs.busybox),
    )
    started = time.monotonic()
    done = run_once(store_root, manifests)
    elapsed = time.monotonic() - started

    assert done.returncode == 1
    assert elapsed < 15, "nothing here can succeed by waiting: run must not wait"
    rows = {line.split()[2]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["bad-ref"][3:5] == ["Failed", "InvalidImageName"]
    assert rows["never"][3:5] == ["Pending", "ErrImageNeverPull"]
    assert rows["lost"][3:5] == ["Pending", "PodNotFound"]
    assert rows["web-app"][3] == "Started"
    assert "StorageContainer default/bad-ref is Failed: InvalidImageName" in done.stderr
    assert set(ids(store_root)) == {"pod/web", "web-app", "web-idle"}


def test_a_pull_that_fails_is_retried_only_within_the_timeout(
    store_root: StorePaths, manifests: Path, refs: Refs, dead_registry: DeadRegistry
) -> None:
    write(
        manifests / "web.yaml",
        pod("web", dead_registry.ref("pause:1"), template("app", refs.busybox)),
    )
    started = time.monotonic()
    done = run_once(
        store_root, manifests, "-o", "json", "--timeout", "2", insecure=str(dead_registry)
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 1
    assert elapsed < 15
    objects = by_name(json.loads(done.stdout))
    status = objects["StoragePod/web"]["status"]
    assert (status["phase"], status["reason"]) == ("Pending", "ErrImagePull")
    assert dead_registry.host in status["message"]
    assert objects["StorageContainer/web-app"]["status"]["reason"] == "PodNotReady"
    assert managed(store_root) == {}


def test_images_come_from_a_registry_with_a_pull_secret_from_the_folder(
    store_root: StorePaths, manifests: Path, auth_registry: Registry
) -> None:
    image = auth_registry.ref("busybox:1")
    config = {"auths": {auth_registry.host: {"auth": base64.b64encode(
        f"{auth_registry.username}:{auth_registry.password}".encode()).decode()}}}  # fmt: skip
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
    web = pod("web", image, template("app", image), imagePullSecrets=[{"name": "regcred"}])
    write(manifests / "web.yaml", web)

    # Without the secret the registry says no.
    done = run_once(
        store_root, manifests, "-o", "json", "--timeout", "1", insecure=auth_registry.host
    )
    assert done.returncode == 1
    status = by_name(json.loads(done.stdout))["StoragePod/web"]["status"]
    assert status["reason"] == "ErrImagePull"

    write(manifests / "secret.yaml", secret)
    objects = _objects(run_once(store_root, manifests, "-o", "json", insecure=auth_registry.host))
    assert objects["StorageContainer/web-app"]["status"]["phase"] == "Started"
    assert "Secret/regcred" not in objects
    assert auth_registry.password not in state_file(store_root).read_text()
    assert set(ids(store_root)) == {"pod/web", "web-app"}
