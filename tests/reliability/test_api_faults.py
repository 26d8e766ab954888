"""The agent while its API server restarts, loses its data or is away (issue 12, defect 8).

Each test runs ``python -m controller agent`` against the API emulator, takes the
emulator down under it and brings it back, and checks the end state through the
store and the API: one storage container per object, made for the object that
exists now (its UID), nothing removed and made again in a loop, the agent still
running, no traceback in its log and one WARNING line per failed attempt while the
API is away.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    AgentProcess,
    agent_kubeconfig,
    by_object,
    storage_container,
    storage_pod,
)
from tests.reliability.kill9 import mount_counts
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RESYNC = 2.0  # the test agent's --resync-interval and --orphan-grace


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    return wait_for(what, check, timeout, every=0.2)


def _objects(image: str) -> list[dict[str, Any]]:
    return [
        storage_pod("web", containers=[{"name": "app", "image": image}]),
        storage_container("web-tool", "web", image),
    ]


def _converged(kube: Any, store: Any) -> dict[tuple[str, str], str] | None:
    """{(kind, name): uid} once the objects are Ready/Started and the store holds exactly
    one container per object, made for the object's current UID; else None."""
    pod = kube.get(PODS, NAMESPACE, "web")
    if pod is None or (pod.get("status") or {}).get("phase") != "Ready":
        return None
    members = kube.list(CONTAINERS, NAMESPACE)["items"]
    if len(members) != 2 or any((m.get("status") or {}).get("phase") != "Started" for m in members):
        return None
    wanted = {("StoragePod", "web"): pod["metadata"]["uid"]}
    wanted.update(
        {("StorageContainer", m["metadata"]["name"]): m["metadata"]["uid"] for m in members}
    )
    stored = by_object(store)
    have = {
        key: [c["meta"]["labels"].get("podstore.dev/uid") for c in found]
        for key, found in stored.items()
    }
    if have != {key: [uid] for key, uid in wanted.items()}:
        return None
    return wanted


def _ids(store: Any) -> list[str]:
    return sorted(c["id"] for found in by_object(store).values() for c in found)


def _make(kube: Any, store: Any, images: Any) -> dict[tuple[str, str], str]:
    """Apply the objects and wait until the agent has made them; {(kind, name): uid}."""
    for obj in _objects(images.busybox):
        kube.create(obj)
    return _wait("the pod and its members", lambda: _converged(kube, store))  # type: ignore[no-any-return]


def _assert_steady(agent: AgentProcess, store: Any, wanted: dict[Any, str]) -> None:
    """Over several resync and orphan passes nothing is removed or made again."""
    ids = _ids(store)
    removed = agent.log().count("removed orphan")
    time.sleep(RESYNC * 5)
    assert _ids(store) == ids
    assert agent.log().count("removed orphan") == removed, agent.log()[-4000:]
    counts = {layer: count for layer, (count, _) in mount_counts(store).items()}
    assert sorted(counts.values()) == [1, 1], counts  # the two started members, once each


def _source(line: str) -> str:
    """What a WARNING line is about: its logger and, for a retried request, the call."""
    logger, message = line.split(" WARNING ", 1)[1].split(": ", 1)
    request = re.search(r"API request (\S+ \S+)", message)
    return f"{logger.strip()} {request[1] if request else message.split(' failed')[0]}"


def _assert_quiet_log(agent: AgentProcess) -> None:
    log = agent.log()
    assert agent.running(), log[-4000:]
    assert "Traceback" not in log, log[-6000:]
    assert not re.search(r"\bERROR\b", log), [
        line for line in log.splitlines() if re.search(r"\bERROR\b", line)
    ][:10]


@pytest.fixture
def agent(kube: Any, store: Any, images: Any, tmp_path: Path) -> Any:
    process = AgentProcess(kube, store, images, tmp_path / "agent.log")
    process.args += ["--orphan-grace", str(RESYNC)]
    process.start()
    yield process
    process.stop()


def test_an_api_server_restarted_with_its_data_changes_nothing(
    kube: Any, store: Any, images: Any, agent: AgentProcess
) -> None:
    before = _make(kube, store, images)
    kube.stop()
    time.sleep(RESYNC * 3)
    kube.start()
    # A change made after the restart is seen (the watches came back by themselves).
    kube.create(storage_container("late", "web", images.busybox, state="Stopped"))
    _wait(
        "the container made after the restart",
        lambda: (
            (kube.get(CONTAINERS, NAMESPACE, "late") or {}).get("status", {}).get("phase")
            in ("Created", "Stopped")
        ),
    )
    kube.delete(CONTAINERS, NAMESPACE, "late")
    after = _wait("the same state as before", lambda: _converged(kube, store))
    assert after == before
    _assert_steady(agent, store, after)
    _assert_quiet_log(agent)


@pytest.mark.parametrize("when", ["while-away", "once-back"])
def test_an_api_server_restarted_empty_then_given_its_objects_again(
    kube: Any, store: Any, images: Any, agent: AgentProcess, when: str
) -> None:
    """Defect 8 as found: the objects come back with new UIDs (a GitOps tool re-applies
    them), before the agent is back in touch (it lists them at once: the names now
    hold other UIDs) or after (its orphan pass finds the old UIDs missing). The storage
    made for the old UIDs is removed once, the new made once, and the agent does not
    go on making and removing storage for the objects it had."""
    old = _make(kube, store, images)
    kube.stop()
    kube.emulator.wipe()
    time.sleep(RESYNC * 2)
    if when == "while-away":
        for obj in _objects(images.busybox):
            kube.emulator.seed(obj)
    kube.start()
    if when == "once-back":
        time.sleep(RESYNC)  # the agent finds the API server empty: its storage is orphaned
        for obj in _objects(images.busybox):
            kube.create(obj)
    new = _wait("the re-created objects", lambda: _converged(kube, store), timeout=90)
    assert set(new) == set(old)
    assert not set(new.values()) & set(old.values())
    # The old storage is gone from the store; each removal's log line follows it (the
    # orphan pass logs after each removal): exactly one per old object, none made again.
    _wait("a log line per removed orphan", lambda: agent.log().count("removed orphan") >= len(old))
    assert agent.log().count("removed orphan") == len(old), agent.log()[-6000:]
    _assert_steady(agent, store, new)
    _assert_quiet_log(agent)


def test_an_api_server_away_for_a_minute(
    kube: Any, store: Any, images: Any, agent: AgentProcess
) -> None:
    before = _make(kube, store, images)
    start = len(agent.log().splitlines())
    kube.stop()
    time.sleep(60)
    during = agent.log().splitlines()[start:]
    kube.start()
    warnings = [line for line in during if " WARNING " in line]
    assert warnings, during[-20:]
    # One line per attempt, with backoff (1, 2, 4 ... 30 s): a handful of lines a minute
    # for each thing retried, where a loop retrying each second would write 60.
    per_source = Counter(_source(line) for line in warnings)
    assert max(per_source.values()) <= 9, per_source
    after = _wait("the state of before", lambda: _converged(kube, store))
    assert after == before
    kube.patch(CONTAINERS, NAMESPACE, "web-tool", {"spec": {"state": "Stopped"}})
    _wait(
        "a change after the outage",
        lambda: kube.get(CONTAINERS, NAMESPACE, "web-tool")["status"].get("phase") == "Stopped",
    )
    _assert_quiet_log(agent)


AGENT_TOKEN = "agent-of-node-a"


def _kopf_watches(kube: Any, resource: str) -> int:
    """The agent's kopf watches of this node's objects (not its unassigned-claims watch)."""
    selected = {PODS: "fieldSelector", CONTAINERS: "labelSelector"}[resource]
    return sum(
        1
        for r in kube.requests
        if r.verb == "watch"
        and r.resource == resource
        and r.user == AGENT_TOKEN
        and "node-a" in r.query.get(selected, "")
        and "!" not in r.query.get(selected, "")
    )


@pytest.mark.parametrize("delay", [0.0, 0.5, 1.0])
def test_a_pod_made_as_the_agent_starts_is_handled_without_waiting_on_a_watch(
    kube: Any, store: Any, images: Any, tmp_path: Path, delay: float, request: Any
) -> None:
    """Defect 9: a pod made while the restarted agent makes its first LIST and WATCH is
    handled from the events of its first watch, whatever their order. Found: Ready after
    64-71 s, once kopf's watch went inactive (70 s) and was opened again; so the
    agent's first watch of each kind must be its only one here."""
    config = agent_kubeconfig(kube, tmp_path / "agent.kubeconfig", token=AGENT_TOKEN)
    agent = AgentProcess(kube, store, images, tmp_path / "agent.log", kubeconfig=config)
    agent.start()
    request.addfinalizer(agent.stop)
    _make(kube, store, images)
    agent.kill()
    kube.emulator.clear_request_log()
    agent.start()
    time.sleep(delay)
    kube.create(storage_pod("late", containers=[{"name": "app", "image": images.busybox}]))
    _wait(
        "the pod made as the agent started",
        lambda: (
            ((kube.get(PODS, NAMESPACE, "late") or {}).get("status") or {}).get("phase") == "Ready"
        ),
        timeout=60,  # under kopf's 70 s: a pod waiting on a reconnect fails here
    )
    assert _kopf_watches(kube, PODS) == 1
    assert _kopf_watches(kube, CONTAINERS) == 1
    _assert_quiet_log(agent)
