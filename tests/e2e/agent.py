"""The podstore agent run for a test, the objects it serves, and what to read back.

Two ways to run the real agent against the emulator:

- :func:`running_agent`: ``serve(settings)`` as a task in the test's own event loop
  (fast; in-process metrics, logs visible to ``caplog``);
- :class:`AgentProcess`: ``python -m controller agent ...`` as a child process, for the
  tests that kill it with SIGKILL and start it again.

Everything a test checks is read from the API (``kube``) or from the store through the
``containers-storage`` command line, never from the agent itself. Store reads run in a
thread (:func:`in_thread`) so that polling never blocks the agent sharing the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from controller.config import Settings
from controller.handlers import kube as kube_api
from controller.handlers.operator import serve
from controller.reconcile.model import finalizer_for
from tests.support.stores import containers_json, paths_of

T = TypeVar("T")

API_VERSION = "podstore.dev/v1alpha1"
PODS = "storagepods"
CONTAINERS = "storagecontainers"
NAMESPACE = "default"
#: The finalizer of the default node's agent (each node has its own).
FINALIZER = finalizer_for("node-a")
#: How long a test waits for the agent to converge (pulls included) before failing.
SETTLE = 60.0
#: Condition keys the Kubernetes API conventions require.
CONDITION_KEYS = {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
REPO = Path(__file__).resolve().parents[2]

# -- running the agent ----------------------------------------------------------------


def agent_settings(
    kube: Any, store: Any, images: Any, *, node: str = "node-a", **overrides: Any
) -> Settings:
    """Settings of an agent for ``node`` on ``store``, reaching the test registry.

    No endpoints unless asked (``health_port``/``metrics_port``), short intervals.
    """
    values: dict[str, Any] = {
        "root": str(store.root),
        "run_root": str(store.run_root),
        "driver": store.driver,
        "node_name": node,
        "infra_image": images.pause,
        "insecure_registries": (images.registry_host,),
        "health_port": 0,
        "metrics_port": 0,
        "listen_address": "127.0.0.1",
        "resync_interval": 30.0,
        "orphan_grace": 60.0,
        "kubeconfig": str(kube.kubeconfig),
    }
    values.update(overrides)
    return Settings(**values)


def agent_kubeconfig(kube: Any, path: Path, *, token: str) -> Path:
    """A kubeconfig for the emulator with a token of its own, so that the requests the
    agent makes can be told from the test's (``request.user == token``)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
        "users": [{"name": "agent", "user": {"token": token}}],
        "contexts": [{"name": "agent", "context": {"cluster": "emulator", "user": "agent"}}],
        "current-context": "agent",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running_agent(*all_settings: Settings) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run one agent per settings (``serve``) in this loop until the block ends.

    Fails fast when an agent ends before it is ready (its exception is raised).
    """
    kube_api.reset_client()
    flags = [(asyncio.Event(), asyncio.Event()) for _ in all_settings]
    tasks = [
        asyncio.create_task(serve(s, stop_flag=stop, ready_flag=ready), name=f"agent-{s.node_name}")
        for s, (stop, ready) in zip(all_settings, flags, strict=True)
    ]
    try:
        for task, (_, ready) in zip(tasks, flags, strict=True):
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when="FIRST_COMPLETED")
            waiter.cancel()
            if task in done:
                task.result()
                raise RuntimeError(f"agent {task.get_name()} ended before it was ready")
            if not done:
                raise TimeoutError(f"agent {task.get_name()} was not ready in 20s")
        yield tasks
    finally:
        for stop, _ in flags:
            stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 30)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        kube_api.reset_client()


class AgentProcess:
    """``python -m controller agent`` for one node, as a child process of the test.

    Its output goes to ``log_path`` (read it with :meth:`log`). :meth:`kill` sends
    SIGKILL to the agent alone, the way a node's OOM killer or a crash would.
    """

    def __init__(
        self,
        kube: Any,
        store: Any,
        images: Any,
        log_path: Path,
        *,
        node: str = "node-a",
        kubeconfig: Path | None = None,
    ) -> None:
        paths = paths_of(store)
        self.args = [
            sys.executable, "-m", "controller", "agent",
            "--node-name", node,
            "--root", str(paths.root),
            "--runroot", str(paths.run_root),
            "--driver", paths.driver,
            "--kubeconfig", str(kubeconfig or kube.kubeconfig),
            "--infra-image", images.pause,
            "--insecure-registry", images.registry_host,
            "--health-port", "0",
            "--metrics-port", "0",
            "--resync-interval", "2",
            "--orphan-grace", "2",
        ]  # fmt: skip
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTORE_")}
        env["PYTHONPATH"] = str(REPO)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start #{self.starts + 1}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL, no chance to clean up; waits until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM and wait; SIGKILL if it does not end in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the objects ----------------------------------------------------------------------


def storage_pod(
    name: str,
    node: str = "node-a",
    *,
    containers: Iterable[Mapping[str, Any]] = (),
    namespace: str = NAMESPACE,
    **spec: Any,
) -> dict[str, Any]:
    """A StoragePod manifest; ``spec`` keys are the CRD's (``imagePullSecrets=...``)."""
    body: dict[str, Any] = {"nodeName": node, **spec}
    if containers:
        body["containers"] = [dict(c) for c in containers]
    return {
        "apiVersion": API_VERSION,
        "kind": "StoragePod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def pull_secret(name: str, registry: Any, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A ``kubernetes.io/dockerconfigjson`` Secret with ``registry``'s credentials."""
    auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    config = {"auths": {registry.host: {"auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }


def storage_container(
    name: str, pod: str, image: str, *, namespace: str = NAMESPACE, **spec: Any
) -> dict[str, Any]:
    """A standalone StorageContainer manifest naming ``pod``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "StorageContainer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podName": pod, "image": image, **spec},
    }


# -- waiting --------------------------------------------------------------------------


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call (a store command, runc) without blocking the agent's loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float = SETTLE, interval: float = 0.1
) -> Any:
    """Poll a sync or async ``predicate`` until it is true; return its value."""
    deadline = asyncio.get_running_loop().time() + timeout
    value: Any = None
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() >= deadline:
            raise TimeoutError(f"not true within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def wait_for_status(
    kube: Any,
    plural: str,
    name: str,
    *,
    namespace: str = NAMESPACE,
    timeout: float = SETTLE,
    where: Callable[[dict[str, Any]], bool] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Wait until the object's status has these field values (and ``where(status)`` is
    true); return the object.

    The last status seen is in the timeout's message, so a failure says what was there.
    """
    last: dict[str, Any] = {}

    async def matches() -> dict[str, Any] | None:
        nonlocal last
        obj = await kube.aio.get(plural, namespace, name)
        if obj is None:
            last = {"<object>": "absent"}
            return None
        status = obj.get("status") or {}
        last = {k: v for k, v in status.items() if k != "kopf"}
        wanted = all(status.get(k) == v for k, v in fields.items())
        return obj if wanted and (where is None or where(status)) else None

    try:
        return await wait_until(matches, timeout=timeout)  # type: ignore[no-any-return]
    except TimeoutError:
        raise TimeoutError(
            f"{plural}/{name} never had {fields} in {timeout}s; last: {last}"
        ) from None


async def wait_for_phase(
    kube: Any, plural: str, name: str, phase: str, **kw: Any
) -> dict[str, Any]:
    return await wait_for_status(kube, plural, name, phase=phase, **kw)


async def ready_pod(kube: Any, pod: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    """Create a StoragePod and wait until it is Ready (so members need not wait for it)."""
    await kube.aio.create(pod)
    meta = pod["metadata"]
    return await wait_for_phase(
        kube, PODS, meta["name"], "Ready", namespace=meta.get("namespace", NAMESPACE), **kw
    )


async def wait_gone(
    kube: Any, plural: str, name: str, *, namespace: str = NAMESPACE, timeout: float = SETTLE
) -> None:
    last: Any = None

    async def gone() -> bool:
        nonlocal last
        last = await kube.aio.get(plural, namespace, name)
        return last is None

    try:
        await wait_until(gone, timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"{plural}/{name} still there after {timeout}s: {last}") from None


# -- reading back ---------------------------------------------------------------------


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The condition of this type in the object's status (fails the test if missing)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")


def assert_conditions_follow_conventions(obj: Mapping[str, Any]) -> None:
    """Every condition has the six keys, RFC 3339 times and the object's generation;
    ``status.observedGeneration`` is the object's generation too."""
    status = obj.get("status") or {}
    generation = obj["metadata"]["generation"]
    assert status.get("observedGeneration") == generation, status
    conditions = status.get("conditions") or []
    assert conditions, f"no conditions in {status}"
    for cond in conditions:
        assert set(cond) >= CONDITION_KEYS, cond
        assert cond["status"] in ("True", "False", "Unknown"), cond
        assert cond["reason"], cond
        assert cond["observedGeneration"] == generation, cond
        dt.datetime.strptime(cond["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")


def events_of(kube: Any, name: str, reason: str | None = None, namespace: str = NAMESPACE) -> list:
    """Core Events about the object ``name`` (and with ``reason``), oldest first."""
    selector = f"involvedObject.name={name}"
    if reason:
        selector += f",reason={reason}"
    items = kube.list("events", namespace, field_selector=selector).get("items") or []
    return sorted(items, key=lambda e: e.get("metadata", {}).get("resourceVersion", "0"))


async def wait_for_event(kube: Any, name: str, reason: str, **kw: Any) -> dict[str, Any]:
    """Wait for an Event with this reason about ``name``; return the first one."""

    async def found() -> list[Any]:
        return await in_thread(events_of, kube, name, reason)

    return (await wait_until(found, **kw))[0]  # type: ignore[no-any-return]


def podstore_containers(store: Any) -> list[dict[str, Any]]:
    """The containers in the store that podstore made (``managed-by: podstore``)."""
    out = []
    for c in containers_json(store):
        try:
            meta = json.loads(c.get("metadata") or "{}")
        except ValueError:
            continue
        if isinstance(meta, dict) and meta.get("managed-by") == "podstore":
            out.append(dict(c, meta=meta))
    return out


def by_object(store: Any) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """podstore's containers grouped by the (kind, name) of the object they belong to."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in podstore_containers(store):
        labels = c["meta"].get("labels") or {}
        key = (labels.get("podstore.dev/kind", ""), labels.get("podstore.dev/name", ""))
        out.setdefault(key, []).append(c)
    return out
