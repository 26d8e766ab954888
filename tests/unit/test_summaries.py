"""The agent's coalesced pod summaries (issue 14, fresh status): one write for members
that change together, and a stale summary (kopf's patch of the pod's own reconcile,
computed from a lagging index) put right at the next flush instead of the next resync.

kopf's indexes are dicts here; the API is a recorder of ``patch_pod_status`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from controller.handlers import agent as agent_module
from controller.handlers.agent import SUMMARY_DELAY, Summaries
from controller.reconcile import model
from controller.reconcile.plan import Context, Object, pod_summary


class Reconciler:
    def reconcile_pod_summary(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        return pod_summary(Object.of(pod, model.POD_KIND), members, Context("node-a", now=1.0))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def member(name: str, phase: str, uid: str | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid or f"uid-{name}"},
        "spec": {"podName": "web", "state": "Started"},
        "status": {"phase": phase, "containerID": f"id-{name}" if phase != "Pending" else ""},
    }


def pod(rv: str, containers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Ready", "podID": "p"}
    if containers is not None:
        status["containers"] = containers
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "uid-web",
            "resourceVersion": rv,
        },
        "spec": {"nodeName": "node-a"},
        "status": status,
    }


class Api:
    """patch_pod_status: records the patch, returns the next resourceVersion."""

    def __init__(self) -> None:
        self.writes: list[dict[str, Any]] = []
        self.rv = 100

    def patch_pod_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> str:
        self.writes.append(dict(status))
        self.rv += 1
        return str(self.rv)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Api:
    fake = Api()
    monkeypatch.setattr(agent_module.kube, "patch_pod_status", fake.patch_pod_status)
    return fake


def summaries(pods: dict[Any, list[Any]], members: dict[Any, list[Any]]) -> tuple[Summaries, Clock]:
    clock = Clock()
    out = Summaries(Reconciler(), clock)  # type: ignore[arg-type]
    out.use_indexes(pods, members)
    return out, clock


def flush_later(s: Summaries, clock: Clock) -> int:
    clock.now += SUMMARY_DELAY
    return s.flush()


def phases(write: Mapping[str, Any]) -> list[str]:
    return [c["phase"] for c in write["containers"]]


KEY = ("default", "web")


def test_members_changing_together_cost_one_write(api: Api) -> None:
    a, b = member("web-a", "Pending"), member("web-b", "Pending")
    s, clock = summaries({KEY: [pod("10")]}, {KEY: [a, b]})
    for m in (a, b):  # the agent writes each member's status: the index learns it later
        s.written("default", m["metadata"]["name"], m, {"phase": "Started", "containerID": "x"})
    assert s.flush() == 0  # not before the delay
    assert flush_later(s, clock) == 1
    assert phases(api.writes[0]) == ["Started", "Started"]
    assert api.writes[0]["ready"] == "2/2"


def test_what_was_written_is_not_written_again_while_the_index_lags(api: Api) -> None:
    a = member("web-a", "Started")
    s, clock = summaries({KEY: [pod("10")]}, {KEY: [a]})
    s.due(*KEY)
    assert flush_later(s, clock) == 1
    s.due(*KEY)  # another member event, the index still at the version written on
    assert flush_later(s, clock) == 0
    assert len(api.writes) == 1


def test_a_stale_summary_written_by_the_pods_own_reconcile_is_put_right(api: Api) -> None:
    """The race: the summary writer wrote 'Started'; then kopf applied the pod handler's
    patch, computed earlier from the index, with 'Pending'. The pod's event (a new
    resourceVersion) makes it due; the flush compares with that, not with its own write."""
    a = member("web-a", "Started")
    pods = {KEY: [pod("10")]}
    s, clock = summaries(pods, {KEY: [a]})
    s.due(*KEY)
    assert flush_later(s, clock) == 1
    stale = [{"name": "web-a", "containerID": "", "phase": "Pending"}]
    pods[KEY] = [pod("102", stale)]  # kopf's patch, after ours
    s.due(*KEY)  # what the pods index function does for every event of the pod
    assert flush_later(s, clock) == 1
    assert phases(api.writes[-1]) == ["Started"]


def test_once_the_index_shows_the_write_nothing_more_is_written(api: Api) -> None:
    a = member("web-a", "Started")
    pods = {KEY: [pod("10")]}
    s, clock = summaries(pods, {KEY: [a]})
    s.due(*KEY)
    flush_later(s, clock)
    written = api.writes[-1]
    pods[KEY] = [pod("101", written["containers"])]
    pods[KEY][0]["status"].update(ready=written["ready"], conditions=written["conditions"])
    s.due(*KEY)
    assert flush_later(s, clock) == 0


def test_a_pod_that_is_not_ready_is_left_alone_until_it_is(api: Api) -> None:
    a = member("web-a", "Started")
    pending = pod("10")
    pending["status"]["phase"] = "Pending"
    pods = {KEY: [pending]}
    s, clock = summaries(pods, {KEY: [a]})
    s.due(*KEY)
    assert flush_later(s, clock) == 0
    pods[KEY] = [pod("11")]
    assert flush_later(s, clock) == 1  # still due: written once Ready


def test_a_failed_write_stays_due(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    a = member("web-a", "Started")
    s, clock = summaries({KEY: [pod("10")]}, {KEY: [a]})

    def refused(*_: Any) -> str:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(agent_module.kube, "patch_pod_status", refused)
    s.due(*KEY)
    with pytest.raises(ConnectionRefusedError):
        flush_later(s, clock)
    monkeypatch.setattr(agent_module.kube, "patch_pod_status", api.patch_pod_status)
    assert flush_later(s, clock) == 1


def test_the_pods_reconcile_is_given_the_members_as_the_writer_knows_them(api: Api) -> None:
    a = member("web-a", "Pending")
    s, _ = summaries({KEY: [pod("10")]}, {KEY: [a]})
    s.written("default", "web-a", a, {"phase": "Started"})
    (fresh,) = s.fresh(*KEY, [a])
    assert fresh["status"]["phase"] == "Started"


def test_two_writes_before_the_index_shows_the_first_are_not_followed_by_a_third(api: Api) -> None:
    """The index at 10; the writer writes 'a Started' (made 101), then 'b Started' (made
    102) before the index shows 101. When the index shows 101 it is older than the last
    write: compared with it, the summary would be written again, the same."""
    a, b = member("web-a", "Pending"), member("web-b", "Pending")
    pods = {KEY: [pod("10")]}
    s, clock = summaries(pods, {KEY: [a, b]})
    s.written("default", "web-a", a, {"phase": "Started", "containerID": "x"})
    assert flush_later(s, clock) == 1
    s.written("default", "web-b", b, {"phase": "Started", "containerID": "y"})
    assert flush_later(s, clock) == 1
    first = api.writes[0]
    pods[KEY] = [pod("101", first["containers"])]  # the index shows the first write only
    pods[KEY][0]["status"].update(ready=first["ready"], conditions=first["conditions"])
    s.due(*KEY)
    assert flush_later(s, clock) == 0
    assert [phases(w) for w in api.writes] == [["Started", "Pending"], ["Started", "Started"]]
    second = api.writes[1]
    pods[KEY] = [pod("102", second["containers"])]  # and then the second
    pods[KEY][0]["status"].update(ready=second["ready"], conditions=second["conditions"])
    s.due(*KEY)
    assert flush_later(s, clock) == 0


def test_a_write_by_someone_else_after_ours_is_compared_with(api: Api) -> None:
    a = member("web-a", "Started")
    pods = {KEY: [pod("10")]}
    s, clock = summaries(pods, {KEY: [a]})
    s.due(*KEY)
    assert flush_later(s, clock) == 1
    pods[KEY] = [pod("500", [])]  # not a version this writer knows: newer than its write
    s.due(*KEY)
    assert flush_later(s, clock) == 1
    assert phases(api.writes[-1]) == ["Started"]


def child(name: str) -> dict[str, Any]:
    """A child as the agent creates it: no uid, no status yet."""
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podName": "web", "state": "Started"},
    }


def test_children_made_count_as_pending_until_the_index_has_them(api: Api) -> None:
    """The pod's reconcile made two children and wrote '0/2' with them Pending; kopf's index
    of members has neither yet: the summary is not rewritten to '0/0'."""
    members: dict[Any, list[Any]] = {KEY: []}
    pending = [
        {"name": "web-a", "containerID": "", "phase": "Pending"},
        {"name": "web-b", "containerID": "", "phase": "Pending"},
    ]
    made = [child("web-a"), child("web-b")]
    written = pod_summary(Object.of(pod("9"), model.POD_KIND), made, Context("node-a", now=1.0))
    ready = pod("10", pending)
    ready["status"].update(ready=written["ready"], conditions=written["conditions"])
    s, clock = summaries({KEY: [ready]}, members)
    for name in ("web-a", "web-b"):
        s.made("default", "web", child(name))
    s.due(*KEY)
    assert flush_later(s, clock) == 0
    assert [m["metadata"]["name"] for m in s.fresh(*KEY, [])] == ["web-a", "web-b"]
    members[KEY] = [member("web-a", "Pending")]  # the index shows one: it is used, not ours
    fresh = s.fresh(*KEY, members[KEY])
    assert [m["metadata"].get("uid") for m in fresh] == ["uid-web-a", None]


def test_a_child_deleted_no_longer_counts_while_the_index_still_shows_it(api: Api) -> None:
    a, old = member("web-a", "Started"), member("web-old", "Started")
    s, clock = summaries({KEY: [pod("10")]}, {KEY: [a, old]})
    s.unmade("default", "web", "web-old")
    assert [m["metadata"]["name"] for m in s.fresh(*KEY, [a, old])] == ["web-a"]
    s.due(*KEY)
    assert flush_later(s, clock) == 1
    assert [c["name"] for c in api.writes[-1]["containers"]] == ["web-a"]
    assert [m["metadata"]["name"] for m in s.fresh(*KEY, [a])] == ["web-a"]  # caught up


def test_a_made_child_the_index_never_shows_is_dropped_after_the_patience(api: Api) -> None:
    s, clock = summaries({KEY: [pod("10")]}, {KEY: []})
    s.made("default", "web", child("web-a"))
    assert len(s.fresh(*KEY, [])) == 1
    clock.now += agent_module.SUMMARY_PATIENCE + 1
    assert s.fresh(*KEY, []) == []


def test_a_deleted_pod_leaves_nothing_kept(api: Api) -> None:
    s, _ = summaries({KEY: [pod("10")]}, {KEY: []})
    s.made("default", "web", child("web-a"))
    s.forget_pod(*KEY)
    assert s.fresh(*KEY, []) == []
