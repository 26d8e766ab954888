"""The claims watch keeps the unassigned containers by pod: a new pod finds its waiting
containers without a request while the watch is in step, and LISTs them when it is not.

The API is a recorder of the kube calls the claims make; ``consider`` is the real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from controller.handlers import claims as claims_module
from controller.handlers.claims import Claims


class Api:
    def __init__(self) -> None:
        self.listed: list[tuple[str | None, str | None]] = []
        self.labelled: list[tuple[str, str, str]] = []
        self.items: list[Mapping[str, Any]] = []

    def list_unassigned(
        self, namespace: str | None = None, pod_name: str | None = None
    ) -> tuple[list[Mapping[str, Any]], str]:
        self.listed.append((namespace, pod_name))
        found = [i for i in self.items if i["spec"]["podName"] == pod_name or pod_name is None]
        return found, "1"

    def label_container(self, namespace: str, name: str, rv: str, node: str) -> bool:
        self.labelled.append((namespace, name, rv))
        return True


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    fake = Api()
    monkeypatch.setattr(claims_module.kube, "list_unassigned", fake.list_unassigned)
    monkeypatch.setattr(claims_module.kube, "label_container", fake.label_container)
    return fake


def ctr(name: str, pod: str, rv: str = "5", namespace: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv},
        "spec": {"podName": pod},
        "status": {"phase": "Pending", "reason": "PodNotFound"},
    }


def claims(*own: tuple[str, str]) -> Claims:
    return Claims("node-a", reconciler=None, own_pods=set(own))  # type: ignore[arg-type]


def test_before_the_watch_has_listed_a_new_pod_lists_its_own(api: Api) -> None:
    api.items = [ctr("tool", "web")]
    c = claims(("default", "web"))
    assert c.claim_for_pod("default", "web") == ["claimed"]
    assert api.listed == [("default", "web")]


def test_in_step_a_new_pod_takes_its_containers_from_the_watch(api: Api) -> None:
    c = claims(("default", "web"))
    c._relisted([ctr("tool", "web"), ctr("other", "db")])
    c._seen("ADDED", ctr("late", "web", rv="7"))
    assert sorted(c.claim_for_pod("default", "web")) == ["claimed", "claimed"]
    assert api.listed == []
    assert sorted(api.labelled) == [("default", "late", "7"), ("default", "tool", "5")]


@pytest.mark.parametrize(
    ("events", "kept"),
    [
        pytest.param([("MODIFIED", ctr("tool", "web", rv="9"))], [("tool", "9")], id="newest kept"),
        pytest.param([("DELETED", ctr("tool", "web"))], [], id="deleted or labelled: dropped"),
        pytest.param([("MODIFIED", ctr("tool", "db"))], [], id="moved to another pod"),
        pytest.param(
            [("MODIFIED", ctr("tool", "web", namespace="team"))],
            [("tool", "5")],
            id="same name in another namespace is another object",
        ),
    ],
)
def test_watch_events_keep_the_newest_of_each_container(
    api: Api, events: list[tuple[str, dict[str, Any]]], kept: list[tuple[str, str]]
) -> None:
    c = claims(("default", "web"))
    c._relisted([ctr("tool", "web")])
    for type_, obj in events:
        c._seen(type_, obj)
    c.claim_for_pod("default", "web")
    assert [(n, rv) for _, n, rv in api.labelled] == kept
    assert api.listed == []


def test_out_of_step_a_new_pod_lists_again_and_a_relist_replaces_what_was_kept(api: Api) -> None:
    c = claims(("default", "web"))
    c._relisted([ctr("gone", "web")])
    c._out_of_step()  # the watch failed, or its position expired
    api.items = [ctr("tool", "web")]
    c.claim_for_pod("default", "web")
    assert api.listed == [("default", "web")]
    c._relisted([ctr("tool", "web", rv="8")])
    api.labelled.clear()
    c.claim_for_pod("default", "web")
    assert api.labelled == [("default", "tool", "8")]
    assert len(api.listed) == 1
