"""spec.labels: copied into the storage container's metadata, read back from the store.

The field is the proof that a new optional container field takes three files
(controller/api/schema.py, controller/reconcile/model.py, controller/reconcile/plan.py):
both kinds get it from the one schema, the child plan carries it from a pod's
template to its StorageContainer, and the store holds it.
"""

from __future__ import annotations

import json

import pytest

from tests.cli.common import (
    by_name,
    container,
    metadata_of,
    pod,
    podstore,
    run_once,
    template,
    write,
)
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths

pytestmark = pytest.mark.cli


def test_spec_labels_reach_the_store_and_follow_a_change(
    store_root: StorePaths, manifests, refs: Refs
) -> None:
    write(
        manifests / "web.yaml",
        pod("web", refs.pause, template("app", refs.busybox, labels={"team": "web"})),
        container("tool", "web", refs.busybox, labels={"example.com/tier": "debug"}),
    )
    done = run_once(store_root, manifests, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert by_name(json.loads(done.stdout))["StorageContainer/web-app"]["spec"]["labels"] == {
        "team": "web"
    }
    app = metadata_of(store_root, "web-app")["labels"]
    assert app["team"] == "web"
    assert app["podstore.dev/name"] == "web-app"  # podstore's own labels are all there
    assert metadata_of(store_root, "tool")["labels"]["example.com/tier"] == "debug"

    listed = podstore(store_root, "ps", "--label", "team=web", "-o", "json")
    assert [c["metadata_name"] for c in json.loads(listed.stdout)] == ["web-app"]

    write(
        manifests / "web.yaml",
        pod("web", refs.pause, template("app", refs.busybox, labels={"team": "api"})),
        container("tool", "web", refs.busybox),
    )
    assert run_once(store_root, manifests).returncode == 0
    assert metadata_of(store_root, "web-app")["labels"]["team"] == "api"
    assert "example.com/tier" not in metadata_of(store_root, "tool")["labels"]


def test_a_podstore_label_in_spec_labels_is_refused_naming_the_field(
    store_root: StorePaths, manifests, refs: Refs
) -> None:
    write(
        manifests / "web.yaml",
        pod("web", refs.pause),
        container("tool", "web", refs.busybox, labels={"podstore.dev/uid": "x"}),
    )
    done = run_once(store_root, manifests, "-o", "json")
    tool = by_name(json.loads(done.stdout))["StorageContainer/tool"]
    assert tool["status"]["phase"] == "Failed"
    assert tool["status"]["reason"] == "InvalidSpec"
    assert tool["status"]["message"].startswith("spec.labels:")
    assert done.returncode != 0
