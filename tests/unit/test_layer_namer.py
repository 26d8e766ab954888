"""The agent names a new container's layer after the run that made it (issue 14).

``create-container`` and then ``add-names`` on the new layer is a create; only the first
is on the container's way to Started. The agent's executor makes the container with its
layer unnamed and hands the name to :class:`LayerNamer`, which gives it when no run is
under way (or after ``max_delay``). What these tests hold it to: when a name waits, that
a name lost or failed is left for the container's next pass (the node view says the
layer is unnamed), that a removed container's name is dropped, that a full backlog or a
closing namer makes creates name their own layers, and that closing gives every name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from controller.reconcile import model
from controller.reconcile.actions import CreateSandbox
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import Context, Object
from controller.storage import ContainerInfo
from controller.storage.errors import StorageError
from controller.storage.metadata import RuntimeContainerMetadata
from controller.storage.runtime import ManagedContainer
from controller.sync.background import quiet_wait
from controller.sync.execute import Executor, LayerNamer, LogEvents, Naming
from controller.sync.view import NodeView

LAYER = "c" * 64


@pytest.mark.parametrize(
    ("now", "idle", "closing", "wait"),
    [
        (10.00, True, False, 0.05),  # just asked: waits out the delay, idle or not
        (10.02, False, False, 0.03),
        (10.05, True, False, 0.0),  # delay over and nothing running: now
        (10.05, False, False, 0.1),  # a run is under way: looks again (or is woken)
        (10.995, False, False, 0.005),  # ... never past max_delay
        (11.00, False, False, 0.0),  # max_delay reached: now, busy or not
        (12.00, False, False, 0.0),
        (10.00, False, True, 0.0),  # closing: every name now
    ],
)
def test_when_a_name_is_given(now: float, idle: bool, closing: bool, wait: float) -> None:
    got = quiet_wait(now=now, asked=10.0, idle=idle, closing=closing, delay=0.05, max_delay=1.0)
    assert got == pytest.approx(wait)


class Runtime:
    def __init__(self, fail: dict[str, BaseException] | None = None) -> None:
        self.named: list[tuple[str, str]] = []
        self.fail = fail or {}
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def name_new_layer(self, layer: str, container_name: str) -> None:
        self.entered.set()
        self.gate.wait(10)
        if container_name in self.fail:
            raise self.fail[container_name]
        self.named.append((layer, container_name))


class View:
    def __init__(self) -> None:
        self.named: list[str] = []
        self.unnamed: list[str] = []

    def set_layer_named(self, cid: str) -> None:
        self.named.append(cid)

    def set_layer_unnamed(self, cid: str) -> None:
        self.unnamed.append(cid)


def naming(i: int) -> Naming:
    return Naming(f"id{i}", f"{i:064x}", f"k8s_c{i}")


def namer_of(runtime: Runtime, view: View, **kw: Any) -> LayerNamer:
    return LayerNamer(runtime, view, **kw)  # type: ignore[arg-type]


def test_names_handed_over_are_given_in_order_and_the_view_told() -> None:
    runtime, view = Runtime(), View()
    namer = namer_of(runtime, view, delay=0.0)
    namer.hand([naming(1), naming(2)])
    namer.hand([naming(3)])
    namer.close()
    assert runtime.named == [(f"{i:064x}", f"k8s_c{i}") for i in (1, 2, 3)]
    assert view.named == ["id1", "id2", "id3"]
    assert (namer.named, namer.pending, view.unnamed) == (3, 0, [])


def test_no_name_is_given_while_a_run_is_under_way_until_max_delay() -> None:
    runtime, view = Runtime(), View()
    busy = threading.Event()
    busy.set()
    namer = namer_of(runtime, view, delay=0.0, max_delay=60.0, idle=lambda: not busy.is_set())
    namer.hand([naming(1)])
    assert not runtime.entered.wait(0.2)  # a run is under way: the name waits
    assert namer.pending == 1
    busy.clear()  # the runs are done
    assert runtime.entered.wait(10)
    namer.close()
    assert runtime.named == [(f"{1:064x}", "k8s_c1")]


def test_a_name_that_waits_past_max_delay_is_given_though_runs_go_on() -> None:
    runtime, view = Runtime(), View()
    namer = namer_of(runtime, view, delay=0.0, max_delay=0.05, idle=lambda: False)
    namer.hand([naming(1)])
    assert runtime.entered.wait(10)
    namer.close()
    assert view.named == ["id1"]


def test_closing_gives_the_waiting_names_at_once_and_later_ones_inline() -> None:
    runtime, view = Runtime(), View()
    namer = namer_of(runtime, view, delay=3600.0, idle=lambda: False)
    namer.hand([naming(1), naming(2)])
    assert namer.accepts()
    namer.close()
    assert view.named == ["id1", "id2"]
    assert not namer.accepts()  # creates now name their own layers
    namer.hand([naming(3)])  # a run that ended after close
    assert view.named == ["id1", "id2", "id3"]


def test_a_full_backlog_makes_creates_name_their_own_layers() -> None:
    runtime, view = Runtime(), View()
    namer = namer_of(runtime, view, delay=3600.0, backlog=2)
    namer.hand([naming(1)])
    assert namer.accepts()
    namer.hand([naming(2)])
    assert not namer.accepts()
    namer.close()
    assert namer.accepts() is False
    assert namer.pending == 0


def test_a_removed_containers_name_is_dropped_waiting_or_under_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, view = Runtime(fail={"k8s_c1": StorageError("layer not known")}), View()
    runtime.gate.clear()
    namer = namer_of(runtime, view, delay=0.0)
    namer.hand([naming(1), naming(2), naming(3)])
    assert runtime.entered.wait(10)  # id1 is being named
    namer.cancel(["id1", "id2"])  # both removed: id2 still waits, id1 is under way
    runtime.gate.set()
    with caplog.at_level(logging.DEBUG, logger="controller.sync.execute"):
        namer.close()
    assert runtime.named == [(f"{3:064x}", "k8s_c3")]
    assert view.named == ["id3"]
    assert view.unnamed == []  # a removed container's failed name is no trouble
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_name_that_fails_is_left_to_the_containers_next_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"k8s_c1": StorageError("add-names exited 1: disk full"), "k8s_c2": OSError("x")}
    runtime, view = Runtime(fail=broken), View()
    namer = namer_of(runtime, view, delay=0.0)
    with caplog.at_level(logging.WARNING, logger="controller.sync.execute"):
        namer.hand([naming(1), naming(2), naming(3)])
        namer.close()
    assert view.unnamed == ["id1", "id2"]
    assert view.named == ["id3"]  # the thread went on after both failures
    warnings = [r.getMessage() for r in caplog.records]
    assert any("id1" in m and "disk full" in m and "next pass" in m for m in warnings)
    assert any("id2" in m for m in warnings)


# -- the node view while a name is on its way --------------------------------------


class Listing:
    """A store whose listing shows container ``new`` with its layer unnamed."""

    def list_containers(self) -> list[ManagedContainer]:
        meta = RuntimeContainerMetadata(name="k8s_new")
        return [ManagedContainer("new", ("k8s_new",), "img", LAYER, "", meta)]

    def mounted(self, ids: Sequence[str]) -> set[str]:
        return set()

    def layer_names(self) -> dict[str, list[str]]:
        return {LAYER: []}


def test_the_view_does_not_ask_a_pass_to_name_a_layer_the_namer_is_naming() -> None:
    view = NodeView(Listing(), max_age=1000.0)  # type: ignore[arg-type]
    view.set_layer_naming("new")
    view.refresh()  # listed between the create and the name: unnamed in the store
    assert view.layer_unnamed("new") is False
    view.set_layer_unnamed("new")  # the name failed: the next pass gives it
    assert view.layer_unnamed("new") is True
    view.set_layer_naming("new")
    view.set_layer_named("new")
    assert view.layer_unnamed("new") is False
    view.refresh()  # the store still shows it unnamed (this fake never changes)
    assert view.layer_unnamed("new") is True
    view.forget(["new"])
    assert view.layer_unnamed("new") is False


# -- the executor hands its creates' names over when the run ends ------------------

POD = ObjectRef(model.POD_KIND, "team", "web", "0d6f9a38-7d4e-4b8e-9a3c-1f2e3d4c5b6a")
POD_ID = model.pod_id_for(POD.uid, 0)


class CreatingRuntime:
    def __init__(self) -> None:
        self.asked: list[bool] = []
        self.images = None

    def create(self, request: Any, *, name_layer: bool = True) -> ContainerInfo:
        self.asked.append(name_layer)
        meta = RuntimeContainerMetadata(pod=True, name=request.container_name)
        return ContainerInfo(
            request.container_id, "/w", "/r", None, meta, layer=LAYER, layer_unnamed=not name_layer
        )


class Recorder:
    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.handed: list[tuple[list[Naming], int]] = []

    def accepts(self) -> bool:
        return True

    def hand(self, names: list[Naming]) -> None:
        self.handed.append((list(names), self.executor.running))

    def cancel(self, ids: Any) -> None:
        pass


def test_the_executor_leaves_a_new_layers_name_to_the_namer_until_its_run_ends() -> None:
    runtime = CreatingRuntime()
    view = NodeView(Listing(), max_age=1000.0)  # type: ignore[arg-type]
    executor = Executor(
        runtime,  # type: ignore[arg-type]
        view,
        events=LogEvents(),
        secrets=None,
        clock=lambda: 0.0,
    )
    recorder = Recorder(executor)
    obj = {"metadata": {"name": "web", "namespace": "team", "uid": POD.uid}}
    target = Object.of(obj, model.POD_KIND)
    ctx = Context("node-a", "pause:3", "agent", 0.0)
    step = CreateSandbox(POD, POD_ID, "pause:3", 0)

    executor.run(obj, target, [step], ctx)  # no namer: the create names its layer
    assert runtime.asked == [True]

    executor.namer = recorder  # type: ignore[assignment]
    executor.run(obj, target, [step], ctx)
    assert runtime.asked == [True, False]
    [(names, running)] = recorder.handed
    assert names == [Naming(POD_ID, LAYER, model.infra_name(POD, 0))]
    assert running == 0  # handed over once the run was done
    assert view.layer_unnamed(POD_ID) is False  # being named: no pass names it again
