"""The resync pass over kopf's indexes (controller.handlers.operator): which objects it
looks at again, with what, and that one failure does not stop the others.

kopf's indexes are dicts of lists here (a kopf Index is a mapping of keys to
collections); the agent is a recorder of the sync calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.handlers.known import KnownObjects
from controller.handlers.operator import resync, resync_candidates
from controller.reconcile import model
from controller.storage.errors import StorageError


def pod(name: str, uid: str, **meta: Any) -> dict[str, Any]:
    return {
        "kind": model.POD_KIND,
        "metadata": {"name": name, "namespace": "ns", "uid": uid, **meta},
        "spec": {"nodeName": "node-a"},
        "status": {"phase": "Ready", "observedGeneration": 1},
    }


def ctr(name: str, pod_name: str, uid: str, **meta: Any) -> dict[str, Any]:
    return {
        "kind": model.CONTAINER_KIND,
        "metadata": {"name": name, "namespace": "ns", "uid": uid, **meta},
        "spec": {"podName": pod_name},
        "status": {"phase": "Started", "observedGeneration": 1},
    }


@dataclass
class Summaries:
    pods_index: Any = None
    members_index: Any = None


@dataclass
class Agent:
    summaries: Summaries = field(default_factory=Summaries)
    known: KnownObjects = field(default_factory=lambda: KnownObjects(lambda: 0.0))
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    def sync_pod(self, body, members, patch, *, raise_errors=True):
        self._call("pod", body, [m["metadata"]["name"] for m in members], patch, raise_errors)

    def sync_container(self, body, pod, siblings, patch, *, raise_errors=True):
        pod_name = pod["metadata"]["name"] if pod else None
        self._call("ctr", body, pod_name, patch, raise_errors)

    def _call(self, kind, body, other, patch, raise_errors):
        name = body["metadata"]["name"]
        self.calls.append((kind, name, other, patch, raise_errors))
        if name in self.fail:
            raise (StorageError if name.startswith("s") else RuntimeError)(f"{name} broke")


def indexed(pods: list[dict[str, Any]], ctrs: list[dict[str, Any]]) -> Agent:
    agent = Agent()
    agent.summaries.pods_index = {("ns", p["metadata"]["name"]): [p] for p in pods}
    members: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in ctrs:
        members.setdefault(("ns", c["spec"]["podName"]), []).append(c)
    agent.summaries.members_index = members
    return agent


CANDIDATE_CASES = [
    ("no handler has run: no indexes, nothing", None, None, []),
    (
        "every pod and every member, pods first",
        [pod("web", "p1")],
        [ctr("a", "web", "c1"), ctr("b", "web", "c2")],
        [
            ("p1", "StoragePod", "web"),
            ("c1", "StorageContainer", "a"),
            ("c2", "StorageContainer", "b"),
        ],
    ),
    (
        "one being deleted is its deletion handler's",
        [pod("web", "p1", deletionTimestamp="2026-12-03T00:00:00Z")],
        [ctr("a", "web", "c1", deletionTimestamp="2026-12-03T00:00:00Z"), ctr("b", "web", "c2")],
        [("c2", "StorageContainer", "b")],
    ),
    ("one without a UID is left out", [pod("web", "")], [], []),
    (
        "a member whose pod is not indexed is still looked at",
        [],
        [ctr("a", "gone", "c1")],
        [("c1", "StorageContainer", "a")],
    ),
]


@pytest.mark.parametrize(
    ("what", "pods", "ctrs", "expected"), CANDIDATE_CASES, ids=[c[0] for c in CANDIDATE_CASES]
)
def test_the_candidates_are_the_indexed_objects_not_being_deleted(what, pods, ctrs, expected):
    agent = Agent() if pods is None else indexed(pods, ctrs)
    found = resync_candidates(agent)  # type: ignore[arg-type]
    assert [(uid, kind, name) for uid, kind, _key, name in found] == expected


def test_each_due_object_is_synced_from_the_index_as_it_is_now_with_no_kopf_patch():
    agent = indexed([pod("web", "p1")], [ctr("a", "web", "c1"), ctr("b", "web", "c2")])
    due = resync_candidates(agent)  # type: ignore[arg-type]
    assert resync(agent, due) == 3  # type: ignore[arg-type]
    assert agent.calls == [
        ("pod", "web", ["a", "b"], None, False),
        ("ctr", "a", "web", None, False),
        ("ctr", "b", "web", None, False),
    ]


def test_an_object_replaced_or_gone_since_it_was_found_is_not_synced():
    agent = indexed([pod("web", "p1")], [ctr("a", "web", "c1")])
    due = resync_candidates(agent)  # type: ignore[arg-type]
    # The pod was re-created under a new UID; the member left the index.
    agent.summaries.pods_index[("ns", "web")] = [pod("web", "p2")]
    agent.summaries.members_index[("ns", "web")] = []
    assert resync(agent, due) == 0  # type: ignore[arg-type]
    assert agent.calls == []


def test_an_object_the_agent_knows_gone_is_not_synced():
    agent = indexed([pod("web", "p1")], [ctr("a", "web", "c1")])
    agent.known.seen(model.POD_KIND, pod("web", "p1"))
    agent.known.seen(model.POD_KIND, pod("web", "p9"))  # the name now holds another UID
    assert resync(agent, resync_candidates(agent)) == 1  # type: ignore[arg-type]
    assert [c[1] for c in agent.calls] == ["a"]
    assert agent.calls[0][2] is None  # its pod is gone too


def test_one_failure_is_one_line_and_the_others_are_still_synced(caplog):
    agent = indexed(
        [pod("web", "p1")], [ctr("store-full", "web", "c1"), ctr("api-away", "web", "c2")]
    )
    agent.fail = {"store-full", "api-away"}
    done = resync(agent, resync_candidates(agent))  # type: ignore[arg-type]
    assert [c[1] for c in agent.calls] == ["web", "store-full", "api-away"]
    assert done == 2  # the pod, and the storage error (said by next_pass_retries)
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("resync of ns/store-full skipped until the next pass" in m for m in lines), lines
    assert any(
        "resync of StorageContainer ns/api-away failed (api-away broke)" in m for m in lines
    ), lines
    assert all(r.exc_info is None for r in caplog.records)
