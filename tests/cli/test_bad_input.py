"""Bad input to ``podstore run``: every mistake is reported with its file, document and
field, every good resource is still reconciled, and nothing in the store is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.common import (
    by_name,
    container,
    identity,
    ids,
    pod,
    run_once,
    template,
    write,
)
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths

pytestmark = pytest.mark.cli

GOOD = "StorageContainer/good-app"


def _docs(*docs: object) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def _bad_cases(refs: Refs) -> dict[str, tuple[str, str, list[str]]]:
    """id -> (file name, content, what stderr must say about it)."""
    ok = container("fine", "good", refs.busybox)
    twin = pod("twin", refs.pause, template("app", refs.busybox))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    no_image = {**container("noimage", "good", "x"), "spec": {"podName": "good"}}
    return {
        "malformed YAML": (
            "bad.yaml",
            _docs(ok) + "---\nkind: StorageContainer\nmetadata: {name: [oops\n",
            ["bad.yaml, document 2: not valid YAML"],
        ),
        "malformed JSON": (
            "bad.json",
            '{"kind": "StorageContainer",',
            ["bad.json, document 1: not valid JSON"],
        ),
        "unknown kind": (
            "bad.yaml",
            _docs(ok, deployment),
            ['bad.yaml, document 2: kind: Unsupported value: "Deployment"'],
        ),
        "required field missing": (
            "bad.yaml",
            _docs(ok, no_image),
            ["bad.yaml, document 2: spec.image: Required value"],
        ),
        "value not in the enum": (
            "bad.yaml",
            _docs(ok, container("running", "good", refs.busybox, state="Running")),
            ['bad.yaml, document 2: spec.state: Unsupported value: "Running"'],
        ),
        "misspelt field": (
            "bad.yaml",
            _docs(ok, container("typo", "good", refs.busybox, imagePulPolicy="Never")),
            ["bad.yaml, document 2: spec.imagePulPolicy: unknown field"],
        ),
        "invalid name": (
            "bad.yaml",
            _docs(ok, container("Not_A_Name", "good", refs.busybox)),
            ["bad.yaml, document 2: metadata.name"],
        ),
        "another node": (
            "bad.yaml",
            _docs(ok, pod("elsewhere", refs.pause, nodeName="other-node")),
            ['bad.yaml, document 2: spec.nodeName: "other-node" is not this node'],
        ),
        "not an object": (
            "bad.yaml",
            _docs(ok, ["a", "list"]),
            ["bad.yaml, document 2: must be an object"],
        ),
        "duplicate names": (
            "bad.yaml",
            _docs(
                ok,
                container("good-extra", "good", refs.busybox),
                container("good-extra", "good", refs.busybox2),
            ),
            [
                "bad.yaml, document 2: metadata.name: StorageContainer default/good-extra is also "
                "defined in",
                "bad.yaml, document 3: metadata.name:",
            ],
        ),
        "template and container of one name": (
            "bad.yaml",
            _docs(ok, twin, container("twin-app", "twin", refs.busybox)),
            [
                "bad.yaml, document 2: spec.containers[0].name: makes StorageContainer "
                "default/twin-app"
            ],
        ),
        "secret of another type": (
            "bad.yaml",
            _docs(ok, secret),
            ['bad.yaml, document 2: type: Unsupported value: "Opaque"'],
        ),
    }


CASES = [
    "malformed YAML",
    "malformed JSON",
    "unknown kind",
    "required field missing",
    "value not in the enum",
    "misspelt field",
    "invalid name",
    "another node",
    "not an object",
    "duplicate names",
    "template and container of one name",
    "secret of another type",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_reported_where_it_is_and_good_resources_still_run(
    store_root: StorePaths, manifests: Path, refs: Refs, case: str
) -> None:
    name, content, expected = _bad_cases(refs)[case]
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    (manifests / name).write_text(content)

    done = run_once(store_root, manifests, "-o", "json")

    assert done.returncode == 1
    for text in expected:
        assert f"{manifests / text}" in done.stderr or text in done.stderr, done.stderr
        assert str(manifests / name) in done.stderr
    objects = by_name(json.loads(done.stdout))
    assert objects[GOOD]["status"]["phase"] == "Started"
    assert objects["StoragePod/good"]["status"]["phase"] == "Ready"
    made = set(ids(store_root))
    assert {"pod/good", "good-app"} <= made
    # Whatever was wrong made nothing; the good documents of a broken file still did.
    assert made - {"pod/good", "good-app", "fine", "pod/twin", "twin-app"} == set()
    if case == "template and container of one name":
        # As in the cluster, the agent never takes over a StorageContainer it did not make.
        assert objects["StorageContainer/twin-app"]["metadata"].get("ownerReferences") is None


def test_a_resource_whose_manifest_breaks_keeps_what_it_had(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    write(
        manifests / "more.yaml",
        container("one", "good", refs.busybox),
        container("two", "good", refs.busybox),
    )
    assert run_once(store_root, manifests).returncode == 0
    before = identity(store_root)

    # One document fails the schema, the other file is no longer YAML at all.
    write(
        manifests / "more.yaml",
        container("one", "good", refs.busybox, state="Sleeping"),
        container("two", "good", refs.busybox),
    )
    (manifests / "good.yaml").write_text("kind: StoragePod\nspec: [unterminated\n")
    done = run_once(store_root, manifests, "-o", "json")

    assert done.returncode == 1
    assert "good.yaml, document 1: not valid YAML" in done.stderr
    assert "more.yaml, document 1: spec.state" in done.stderr
    assert identity(store_root) == before
    objects = by_name(json.loads(done.stdout))
    assert objects["StorageContainer/one"]["spec"]["state"] == "Started"  # the last good spec
    assert objects["StorageContainer/good-app"]["status"]["phase"] == "Started"

    # Once fixed, the change goes through.
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    write(
        manifests / "more.yaml",
        container("one", "good", refs.busybox, state="Stopped"),
        container("two", "good", refs.busybox),
    )
    objects = by_name(json.loads(run_once(store_root, manifests, "-o", "json").stdout))
    assert objects["StorageContainer/one"]["status"]["phase"] == "Stopped"
    assert identity(store_root) == before


def test_a_path_that_does_not_exist_is_an_error_that_removes_nothing(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "good.yaml", pod("good", refs.pause, template("app", refs.busybox)))
    assert run_once(store_root, manifests).returncode == 0
    before = identity(store_root)

    done = run_once(store_root, manifests / "missing")

    assert done.returncode == 1
    assert "missing: no such file or folder" in done.stderr
    assert identity(store_root) == before
