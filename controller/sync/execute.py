"""The execute step: a plan's actions run through ``controller.storage``.

:class:`Executor` runs the steps of one plan in order and stops at the first
that fails; it keeps the pass's :class:`NodeView` true as it goes, and turns
each storage error into the outcome the plan functions give for it: a pull
that fails backs off (``ErrImagePull``), a name or config that can never work
fails the object (``Failed`` with the error's reason), anything else is a
passing ``StorageError`` tried again later. One place, one family of errors.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller.reconcile import model
from controller.reconcile import plan as planning
from controller.reconcile.actions import (
    Action,
    CreateContainer,
    CreateSandbox,
    Emit,
    Mount,
    NameLayer,
    PullImage,
    Remove,
    RenderConfig,
    Unmount,
    WriteTemplate,
)
from controller.reconcile.facts import Backoff, Dirs
from controller.reconcile.model import ObjectRef
from controller.reconcile.plan import Created, Object, Outcome, Results
from controller.storage import (
    ContainerInfo,
    ContainerRequest,
    ImageConfig,
    ManagedContainer,
    ProcessSpec,
    RuntimeService,
    build_template,
)
from controller.storage.auth import temporary_auth_file
from controller.storage.errors import (
    ImagePullError,
    InvalidContainerID,
    InvalidName,
    NameConflict,
    StorageError,
)
from controller.storage.ocispec import InvalidRuntimeConfig
from controller.sync.background import LULL, QuietQueue
from controller.sync.view import NodeView

log = logging.getLogger(__name__)


class SecretSource(Protocol):
    """Where image pull secrets come from (the API, or manifest files)."""

    def docker_config(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


class EventSink(Protocol):
    """Where Kubernetes-style events go."""

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


class LogEvents:
    """Events as log lines, when nothing else takes them."""

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        log.info("%s %s: %s", ObjectRef.of(obj), reason, message)


class MountBatcher:
    """Mounts that concurrent reconciles ask for at about the same time, run together.

    ``containers-storage mount`` takes several IDs in one process; the agent's handler
    threads each start their own container. One ``mount`` process runs at a time (they
    would wait for each other on the store's lock anyway): the first start waits
    :attr:`window` seconds, then starts every container asked for meanwhile with one
    :meth:`~controller.storage.RuntimeService.start_many`, and the starts asked for
    while that runs go together in the next (group commit: the busier the store, the
    larger the batch). Each caller gets its own container's mountpoint or error.
    """

    def __init__(
        self,
        runtime: RuntimeService,
        *,
        window: float = 0.01,
        gather: Callable[[MountBatcher], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.window = window
        # How the first start of a burst waits for the others (tests wait on a count).
        self.gather = gather or (lambda _batcher: time.sleep(self.window))
        self._cond = threading.Condition()
        self._pending: dict[str, Future[str]] = {}
        self._busy = False  # a batch is being gathered or run
        # The sizes of the last batches run (for the tests): bounded, the agent runs for months.
        self.batches: collections.deque[int] = collections.deque(maxlen=256)

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def start(self, container_id: str) -> str:
        with self._cond:
            waiting = self._pending.get(container_id)
            if waiting is None:
                waiting = self._pending[container_id] = Future()
            while self._busy and not waiting.done():
                self._cond.wait()
            lead = not waiting.done()
            if lead:
                self._busy = True
                # A batch gathered while the last one ran goes at once.
                alone = len(self._pending) == 1
        if lead:
            self._lead(gather=alone)
        return waiting.result()

    def _lead(self, *, gather: bool) -> None:
        batch: dict[str, Future[str]] = {}
        try:
            if gather:
                self.gather(self)
            with self._cond:
                batch, self._pending = self._pending, {}
            self.batches.append(len(batch))
            try:
                # Only containers the pass's listing shows unmounted are sent here.
                results: Mapping[str, str | StorageError] = self.runtime.start_many(
                    list(batch), mounted=()
                )
            except StorageError as err:
                results = dict.fromkeys(batch, err)
            for cid, future in batch.items():
                result = results.get(cid, StorageError(f"container {cid!r} was not started"))
                if isinstance(result, StorageError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as err:  # no caller may wait for ever on a failed leader
            for future in batch.values():
                if not future.done():
                    future.set_exception(err)
            raise
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Naming:
    """The ``<name>-layer`` name a new container's layer is to get."""

    container_id: str
    layer: str
    container_name: str


class LayerNamer(QuietQueue[Naming]):
    """The agent's layer names, given after the run that made the container.

    A create is ``create-container`` and then ``add-names`` on the new layer, and only
    the first is on the container's way to its start. With a namer, the executor makes
    a container with its layer unnamed and hands the naming over when the run ends. The
    namer's thread then gives the names, one process each (``add-names`` takes one
    layer), when :func:`~controller.sync.background.quiet_wait` says: a burst of creates
    starts its containers first and names their layers once it is over. While
    :attr:`backlog` names wait (about 40 s of ``add-names`` at a thousand containers), a
    create names its own layer as before. :meth:`close` gives the waiting names at once,
    for as long as its ``timeout``.

    A name that is lost (the agent killed first) or fails is found missing by the next
    listing of the store, and the container's next pass gives it
    (:class:`~controller.reconcile.actions.NameLayer`).
    """

    def __init__(
        self,
        runtime: RuntimeService,
        view: NodeView,
        *,
        idle: Callable[[], bool] = lambda: True,
        delay: float = 0.05,
        max_delay: float = 10.0,
        backlog: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            name="podstore-layer-names", idle=idle, delay=delay, max_delay=max_delay, clock=clock
        )
        self.runtime = runtime
        self.view = view
        self.backlog = backlog
        self._giving: str | None = None  # the container whose layer is being named now
        self._cancelled: set[str] = set()  # ... and was removed meanwhile
        self.named = 0  # names given (for the benchmarks and tests)

    def accepts(self) -> bool:
        """Whether a create now may leave its layer's name to the namer."""
        with self._cond:
            return not self._closing and len(self._queue) < self.backlog

    def hand(self, names: Iterable[Naming]) -> None:
        """Take these names over (given inline once the namer is closing)."""
        self._put(names)

    def cancel(self, container_ids: Iterable[str]) -> None:
        """The containers are being removed: their layers need no name."""
        gone = set(container_ids)
        with self._cond:  # one step: a name is either still waiting or being given
            if self._giving is not None and self._giving in gone:
                self._cancelled.add(self._giving)
            self._drop(lambda naming: naming.container_id in gone)

    def _taken(self, item: Naming) -> None:
        self._giving = item.container_id

    def give(self, item: Naming) -> None:
        """Name one layer now; on failure the container's next pass names it."""
        try:
            self.runtime.name_new_layer(item.layer, item.container_name)
        except Exception as err:  # the thread must go on with the others
            with self._cond:
                removed = item.container_id in self._cancelled
            if removed:
                log.debug("layer of %s not named: it was removed", item.container_id)
            else:
                self.view.set_layer_unnamed(item.container_id)
                if isinstance(err, StorageError):
                    log.warning(
                        "could not name the layer of %s (%s); its next pass names it",
                        item.container_id,
                        err,
                    )
                else:
                    log.exception("naming the layer of %s failed", item.container_id)
        else:
            self.view.set_layer_named(item.container_id)
            with self._cond:
                self.named += 1
        finally:
            with self._cond:
                self._giving = None
                self._cancelled.clear()


class _PullWait(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.reason)


@dataclass
class Run:
    """What running one plan gave: the steps' results, or the outcome of the failing step."""

    results: Results
    outcome: Outcome | None = None


class Executor:
    """Runs plans for one node's store; keeps the pull back-off between passes."""

    def __init__(
        self,
        runtime: RuntimeService,
        view: NodeView,
        *,
        events: EventSink,
        secrets: SecretSource | None,
        clock: Callable[[], float],
    ) -> None:
        self.runtime = runtime
        self.view = view
        self.events = events
        self.secrets = secrets
        self.clock = clock
        self._lock = threading.Lock()
        # Set by the agent, whose handlers run side by side: their mounts go together, and
        # new layers get their names after the runs that made them.
        self.mounts: MountBatcher | None = None
        self.namer: LayerNamer | None = None
        self._running = 0
        self._idle_since: float | None = time.monotonic()  # None while a run is under way
        # (object UID, image) -> the retry state of its pulls.
        self.backoff: MutableMapping[tuple[str, str], Backoff] = {}

    # -- back-off -------------------------------------------------------------------

    def backoff_of(self, uid: str, image: str) -> Backoff | None:
        with self._lock:
            return self.backoff.get((uid, image))

    def forget(self, uid: str) -> None:
        with self._lock:
            for key in [k for k in self.backoff if k[0] == uid]:
                del self.backoff[key]

    # -- running ----------------------------------------------------------------------

    def run(
        self,
        obj: Mapping[str, Any],
        target: Object,
        steps: Sequence[Action],
        ctx: planning.Context,
    ) -> Run:
        """Run ``steps`` for ``obj``; the first failure ends the run with its outcome."""
        names: list[Naming] = []
        with self._lock:
            self._running += 1
            self._idle_since = None
        try:
            return self._run(obj, target, steps, ctx, names)
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._idle_since = time.monotonic()
            if names and self.namer is not None:
                self.namer.hand(names)

    @property
    def running(self) -> int:
        """How many runs are under way."""
        with self._lock:
            return self._running

    def quiet_for(self, now: float | None = None) -> float:
        """Seconds since the last run ended with no other under way; 0 while one is.

        Between two reconciles of a burst there are instants with none under way; work
        that waits for the burst to end (layer names, Events) waits for a lull instead."""
        with self._lock:
            since = self._idle_since
        if since is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - since)

    def quiet(self, now: float | None = None) -> bool:
        """Whether this is a quiet moment for the work that waits for one: a lull."""
        return self.quiet_for(now) >= LULL

    def _run(
        self,
        obj: Mapping[str, Any],
        target: Object,
        steps: Sequence[Action],
        ctx: planning.Context,
        names: list[Naming],
    ) -> Run:
        created: Created | None = None
        config: ImageConfig | None = None
        mountpoint = ""
        try:
            for step in steps:
                if isinstance(step, Emit):
                    message = step.message.replace("{mountpoint}", mountpoint)
                    self.events.emit(obj, step.type, step.reason, message)
                elif isinstance(step, PullImage):
                    self._pull(obj, step, ctx)
                elif isinstance(step, CreateSandbox):
                    created = self._adopted(self._create(sandbox_request(step), names))
                elif isinstance(step, CreateContainer):
                    info = self._create(container_request(step), names)
                    created, config = self._adopted(info), info.config
                elif isinstance(step, WriteTemplate):
                    self._write_template(step, config)
                elif isinstance(step, NameLayer):
                    self.runtime.name_layer(step.container_id)
                    self.view.set_layer_named(step.container_id)
                    log.info(
                        "named the layer of %s, which a killed create had left unnamed",
                        step.container_id,
                    )
                elif isinstance(step, Mount):
                    mounted = self.view.is_mounted(step.container_id)
                    if self.mounts is not None and not mounted:
                        mountpoint = self.mounts.start(step.container_id)
                    else:
                        known = self.view.get(step.container_id)
                        mountpoint = self.runtime.start_container(
                            step.container_id,
                            mounted=mounted,
                            layer=known.layer if known else "",
                        )
                    self.view.set_mounted(step.container_id, True)
                elif isinstance(step, RenderConfig):
                    self.runtime.render_config(step.container_id, step.mountpoint or mountpoint)
                elif isinstance(step, Unmount):
                    self.runtime.stop_container(step.container_id)
                    self.view.set_mounted(step.container_id, False)
                elif isinstance(step, Remove):
                    self.remove(step)
        except _PullWait as wait:
            return Run(Results(created, mountpoint), planning.waiting(target, wait.outcome, ctx))
        except (InvalidName, InvalidRuntimeConfig, NameConflict) as err:
            outcome = planning.failed(target, err.reason, str(err), ctx)
            return Run(Results(created, mountpoint), outcome)
        except StorageError as err:
            self.view.invalidate()
            if target.ref.kind == model.CONTAINER_KIND:
                self.events.emit(obj, "Warning", "StorageError", str(err))
            return Run(
                Results(created, mountpoint), planning.storage_trouble(target, str(err), ctx)
            )
        return Run(Results(created, mountpoint))

    def _create(self, request: ContainerRequest, names: list[Naming]) -> ContainerInfo:
        """Create; with a namer that has room, the layer's name is given after the run."""
        later = self.namer is not None and self.namer.accepts()
        info = self.runtime.create(request, name_layer=not later)
        if info.layer_unnamed:
            self.view.set_layer_naming(info.id)
            names.append(Naming(info.id, info.layer, request.container_name))
        return info

    def remove(self, step: Remove, *, gone_ok: bool = False) -> None:
        """Remove one storage container (a sandbox with its members) and forget it."""
        if step.sandbox:
            members = [
                c.id for c in self.view.containers() if c.metadata.pod_id == step.container_id
            ]
            if self.namer is not None:
                self.namer.cancel([*members, step.container_id])
            self.runtime.remove_pod_sandbox(step.container_id)
            self.view.forget([*members, step.container_id])
            return
        if self.namer is not None:
            self.namer.cancel([step.container_id])
        if gone_ok:
            with contextlib.suppress(InvalidContainerID):
                self.runtime.delete_container(step.container_id)
        else:
            self.runtime.delete_container(step.container_id)
        self.view.forget([step.container_id])

    # -- steps ----------------------------------------------------------------------------

    def _pull(self, obj: Mapping[str, Any], step: PullImage, ctx: planning.Context) -> None:
        key = (step.owner.uid, step.image)
        configs = self._pull_secrets(step.namespace, step.secrets)
        try:
            with temporary_auth_file(configs) as auth_file:
                self.runtime.images.pull_image(step.image, auth_file=auth_file)
        except ImagePullError as err:
            with self._lock:
                state = planning.next_backoff(self.backoff.get(key), ctx.now)
                self.backoff[key] = state
            self.events.emit(obj, "Warning", "ErrImagePull", str(err))
            raise _PullWait(
                Outcome(
                    {"phase": "Pending", "reason": "ErrImagePull", "message": str(err)},
                    retry_after=state.until - ctx.now,
                )
            ) from err
        with self._lock:
            self.backoff.pop(key, None)
        self.events.emit(obj, "Normal", "Pulled", f"image {step.image!r} pulled")

    def _pull_secrets(self, namespace: str, names: Sequence[str]) -> list[Mapping[str, Any]]:
        configs: list[Mapping[str, Any]] = []
        if not names or self.secrets is None:
            return configs
        for name in names:
            config = self.secrets.docker_config(namespace, name)
            if config is None:
                log.warning(
                    "image pull secret %s/%s not found or not a docker config", namespace, name
                )
                continue
            configs.append(config)
        return configs

    def _write_template(self, step: WriteTemplate, config: ImageConfig | None) -> None:
        existing = self.view.get(step.container_id) if step.update_labels else None
        if step.update_labels:
            config = self.runtime.images.config(existing.metadata.image_id) if existing else None
        spec = step.spec
        template = build_template(
            config,
            ProcessSpec(
                command=spec.command,
                args=spec.args,
                env=dict(spec.env),
                working_dir=spec.working_dir or None,
            ),
            hostname=step.pod.name,
            mount_label=spec.mount_label,
            annotations={
                "io.podstore.pod.name": step.pod.name,
                "io.podstore.pod.namespace": step.pod.namespace,
                "io.podstore.container.id": step.container_id,
            },
        )
        self.runtime.write_config_template(step.container_id, template)
        if existing is not None:
            meta = replace(existing.metadata, labels=dict(step.labels))
            self.runtime.set_container_metadata(step.container_id, meta)
            self.view.put_metadata(step.container_id, meta)

    def _adopted(self, info: ContainerInfo) -> Created:
        meta = info.metadata or self.runtime.get_container_metadata(info.id)
        self.view.put(ManagedContainer(info.id, (meta.name,), meta.image_id, info.layer, "", meta))
        return Created(
            id=info.id,
            dirs=Dirs(info.dir, info.run_dir),
            image_name=meta.image_name,
            image_id=meta.image_id,
            created_at=meta.created_at,
        )


def sandbox_request(step: CreateSandbox) -> ContainerRequest:
    """The store's create of a pod's infra container, with cri-o's names."""
    return ContainerRequest(
        sandbox=True,
        pod_name=model.sandbox_name(step.pod, step.attempt),
        pod_id=step.pod_id,
        container_name=model.infra_name(step.pod, step.attempt),
        container_id=step.pod_id,
        metadata_name=step.pod.name,
        image_name=step.image,
        uid=step.pod.uid,
        namespace=step.pod.namespace,
        attempt=step.attempt,
        labels=dict(step.labels),
    )


def container_request(step: CreateContainer) -> ContainerRequest:
    """The store's create of a pod's member, with cri-o's names."""
    return ContainerRequest(
        pod_name=model.sandbox_name(step.pod, step.attempt),
        pod_id=step.pod_id,
        container_name=model.container_name(step.container, step.pod, step.attempt),
        container_id=step.container_id,
        metadata_name=step.container.name,
        image_name=step.spec.image,
        image_id=step.spec.image_id,
        uid=step.pod.uid,
        namespace=step.container.namespace,
        attempt=step.attempt,
        mount_label=step.spec.mount_label,
        labels=dict(step.labels),
    )
