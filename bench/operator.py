"""The node agent under load: a burst, a steady stream, its memory, and a restart.

One agent (the real kopf operator of ``controller.handlers.operator``) runs
against the API emulator of ``tests/e2e/emulator.py`` and a real overlay
store in a temporary folder, holding a local busybox image (built with umoci,
copied in with skopeo) that every pod and container names with
``imagePullPolicy: IfNotPresent`` (and ``--infra-image``), so nothing is
pulled from a registry. The emulator runs in a process of its own, so that
its Python does not share a GIL with the agent; its CPU time is reported for
every phase.

- (a) burst: N StoragePods x 2 containers (``spec.containers``) applied at
  once. Total time from the first create to the last StorageContainer seen
  ``Started``, containers/s, and the ratio of that total to the same storage
  work done straight through ``controller.storage`` (per pod
  ``create_pod_sandbox`` + 2x (``create_container`` + ``write_config_template``
  + ``start_container``)) on a fresh store with the agent's 8 worker threads
  (the ratio's denominator) and sequentially (shown); and beside them the
  creates alone (3N bare ``create-container`` on 8 threads, the least any
  agent on the command line needs). Agent in this process (``serve()`` in an
  asyncio loop). The agent names the new layers after the burst (its layer
  namer): when the last name was given is shown.
- (b) steady: 2 StoragePods (x 2 containers) a second. Per container, the time
  from the pod's create request to the moment a watch on the emulator sees
  the container ``Started`` (monotonic clock, milliseconds; the status's own
  ``startedAt`` has 1 s resolution and is shown only as a cross-check).
  Same agent, after (a): its 3N objects are still there.
- (c) peak RSS (VmHWM) of an agent run as ``python -m controller agent`` in a
  subprocess, while it creates (d)'s containers and after its restart.
- (d) restart: M storage containers (M/2 pods x 1 container) made by that
  agent; it is stopped (SIGTERM) and started again. "Confirmed" is when the
  new process has handled every object and the API holds the answer: its
  ``podstore_reconciles_total`` (from /metrics) and kopf's "Resuming is
  processed" log lines have both reached the number of objects (each object's
  resume handler ran once), and what that handling wrote has landed (the last
  API write before 0.5 s of quiet counts); from the process's start. A
  restart that finds nothing changed writes no status at all, so "every
  object PATCHed" cannot be the signal. Storage writes are counted by a PATH
  shim that logs every ``containers-storage`` and ``skopeo`` command the
  restarted agent runs, over its whole life (handling plus 3 s).

Prints figures, goals and PASS/MISS; asserts nothing about time. Needs root,
containers-storage, skopeo, umoci and busybox. Run from the repository:
``.venv/bin/python bench/operator.py [--quick]`` (or ``-m bench.operator``).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Run as a script, sys.path[0] is bench/, where this file's name would hide
    # nothing important (the stdlib operator is imported already) but the
    # packages of the repository would be missing.
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path[0] = os.path.dirname(_here)

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import http.client
import json
import logging
import math
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402

IMAGE = "localhost/bench/busybox:1"
NODE = "bench-node"
NS = "default"
API = "/apis/podstore.dev/v1alpha1"
COMMAND = ["/bin/busybox", "sleep", "3600"]
AGENT_THREADS = 8  # settings.execution.max_workers in controller/handlers/operator.py
WRITE_VERBS = frozenset(
    {
        "create-container",
        "delete-container",
        "mount",
        "unmount",
        "set-metadata",
        "add-names",
        "set-names",
    }
)

log = logging.getLogger("bench.operator")


# --- small helpers ---------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f} ms"


def secs(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds:.2f} s"


def say(text: str = "") -> None:
    print(text, flush=True)


def rss_of(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) when it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm


def children_cpu() -> float:
    """User and system CPU of this process's children that have ended (the storage
    processes an in-process agent ran), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the emulator, in a process of its own ---------------------------------------------------


def serve_emulator(kubeconfig: str) -> int:
    """The child's side: serve the emulator, answer ``mark``/``stats``/``stop`` on stdin."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    import emulator as emu

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    lock = threading.Lock()

    class Stats:
        def __init__(self) -> None:
            self.reset()

        def reset(self) -> None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            self.cpu0 = usage.ru_utime + usage.ru_stime
            self.t0 = time.monotonic()
            self.by: collections.Counter[str] = collections.Counter()
            self.busy = 0.0
            self.handled = 0
            self.first_list: float | None = None
            self.last_write: float | None = None
            # resource/namespace/name -> [PATCHes, first, last]
            self.patched: dict[str, list[float]] = {}
            # a few bodies of the writes, by method and resource, to show what was written
            self.samples: dict[str, list[str]] = {}

    stats = Stats()

    class CountingEmulator(emu.PodstoreEmulator):  # type: ignore[misc]
        def _log(self, record: Any) -> None:
            super()._log(record)
            now = time.monotonic()
            resource_name = record.resource or "-"
            if record.subresource:
                resource_name += "/" + record.subresource
            with lock:
                stats.by[f"{record.method} {record.verb or '-'} {resource_name}"] += 1
                if record.verb == "list" and stats.first_list is None:
                    stats.first_list = now
                if record.method in ("POST", "PUT", "PATCH", "DELETE"):
                    stats.last_write = now
                if record.method == "PATCH" and record.group == "podstore.dev":
                    key = f"{record.resource}/{record.namespace}/{record.name}"
                    entry = stats.patched.get(key)
                    if entry is None:
                        stats.patched[key] = [1, now, now]
                    else:
                        entry[0] += 1
                        entry[2] = now

        async def __call__(self, raw: Any) -> Any:
            started = time.monotonic()
            if raw.method in ("PATCH", "POST", "PUT"):
                body = (await raw.read()).decode(errors="replace")  # aiohttp keeps it for later
                with lock:
                    kept = stats.samples.setdefault(_shape(raw.method, raw.path), [])
                    if len(kept) < 2:
                        kept.append(body[:8000])
            response = await super().__call__(raw)
            if raw.query.get("watch") not in ("true", "1"):
                with lock:
                    stats.busy += time.monotonic() - started
                    stats.handled += 1
            return response

    cluster = emu.EmulatedCluster(CountingEmulator(), kubeconfig=Path(kubeconfig))
    cluster.start()
    print(f"READY {cluster.port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                break
            if command == "mark":
                with lock:
                    stats.reset()
                print("{}", flush=True)
            elif command in ("stats", "stats full"):
                usage = resource.getrusage(resource.RUSAGE_SELF)
                with lock:
                    out = {
                        "seconds": time.monotonic() - stats.t0,
                        "cpu": usage.ru_utime + usage.ru_stime - stats.cpu0,
                        "busy": stats.busy,
                        "handled": stats.handled,
                        "by": dict(stats.by),
                        "first_list": stats.first_list,
                        "last_write": stats.last_write,
                        "patched_objects": len(stats.patched),
                        "errors": len(cluster.server_errors),
                    }
                    if command == "stats full":
                        out["patched"] = stats.patched
                        out["samples"] = stats.samples
                print(json.dumps(out), flush=True)
            elif command.startswith(("seed ", "churn ")):
                # bench/scale.py: other nodes' objects, made or changed inside this process.
                verb, count = command.split()[0], int(command.split()[1])
                print(json.dumps(_foreign(cluster, verb, count)), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    finally:
        cluster.stop()
    return 0


def _foreign(cluster: Any, verb: str, count: int) -> dict[str, Any]:
    """``seed K``: K objects of other nodes (1 pod : 2 containers, 100 pods a node);
    ``churn N``: N status changes of those containers."""
    pods = max(count // 3, 1) if count else 0
    started = time.monotonic()
    if verb == "seed":
        for i in range(pods):
            node, name = f"other-{i // 100}", f"far-{i}"
            pod = pod_manifest(name, [])
            pod["spec"]["nodeName"] = node
            cluster.create(pod)
            for c in ("app", "side"):
                if i * 2 + (c == "side") >= count - pods:
                    break
                cluster.create(
                    {
                        "apiVersion": "podstore.dev/v1alpha1",
                        "kind": "StorageContainer",
                        "metadata": {
                            "name": f"{name}-{c}",
                            "namespace": NS,
                            "labels": {"podstore.dev/pod": name, "podstore.dev/node": node},
                        },
                        "spec": {"podName": name, "image": IMAGE},
                    }
                )
    else:
        for i in range(count):
            name = f"far-{i % max(pods, 1)}-app"
            cluster.patch_status(
                "storagecontainers", NS, name, {"phase": "Started", "message": f"churn {i}"}
            )
    return {"seconds": time.monotonic() - started}


def _shape(method: str, path: str) -> str:
    """``PATCH storagepods/status``: a request's method and what it addresses, without names."""
    parts = [p for p in path.split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        del parts[i : i + 2]
    # /apis/GROUP/VERSION/PLURAL[/NAME[/SUB]] or /api/v1/PLURAL[/NAME[/SUB]]
    rest = parts[3:] if parts[:1] == ["apis"] else parts[2:]
    plural = rest[0] if rest else "?"
    sub = f"/{rest[2]}" if len(rest) > 2 else ""
    return f"{method} {plural}{sub}"


class EmulatorProcess:
    """The emulator in a child process; ``api`` talks to it over HTTP."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.kubeconfig = workdir / f"kubeconfig-{name}"
        self.stderr = open(workdir / f"emulator-{name}.log", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve-emulator",
                str(self.kubeconfig),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=REPO,
        )
        self._lock = threading.Lock()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the emulator did not start: {line!r} (see {self.stderr.name})")
        self.port = int(line.split()[1])
        self.api = Api("127.0.0.1", self.port)

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return dict(json.loads(self.proc.stdout.readline()))

    def mark(self) -> None:
        self._ask("mark")

    def stats(self, *, full: bool = False) -> dict[str, Any]:
        return self._ask("stats full" if full else "stats")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


# --- a small API client and a watch ------------------------------------------------------------


class Api:
    """Plain HTTP to the emulator, one keep-alive connection per thread."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._local = threading.local()

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "Authorization": "Bearer bench"}
        if payload is not None:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=60
                )
            try:
                conn.request(method, path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        data = json.loads(raw) if raw else None
        return response.status, data

    def create(self, plural: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        status, data = self.request("POST", f"{API}/namespaces/{NS}/{plural}", dict(obj))
        if status >= 300:
            raise RuntimeError(f"create {plural} failed: HTTP {status}: {data}")
        return dict(data)

    def list(self, plural: str) -> list[dict[str, Any]]:
        status, data = self.request("GET", f"{API}/{plural}")
        if status >= 300:
            raise RuntimeError(f"list {plural} failed: HTTP {status}: {data}")
        return list(data["items"])


class Watch(threading.Thread):
    """A watch on one kind, all namespaces, handing each event and its arrival time on."""

    def __init__(
        self, api: Api, plural: str, on_event: Callable[[str, dict[str, Any], float], None]
    ):
        super().__init__(name=f"watch-{plural}", daemon=True)
        self.api, self.plural, self.on_event = api, plural, on_event
        self._conn: http.client.HTTPConnection | None = None
        self._stopping = False
        self.connected = threading.Event()

    def run(self) -> None:
        while not self._stopping:
            try:
                self._watch_once()
            except (OSError, http.client.HTTPException, ValueError):
                if self._stopping:
                    return
                time.sleep(0.1)

    def _watch_once(self) -> None:
        conn = self._conn = http.client.HTTPConnection(self.api.host, self.api.port)
        query = urllib.parse.urlencode({"watch": "true", "timeoutSeconds": "3600"})
        conn.request("GET", f"{API}/{self.plural}?{query}", headers={"Accept": "application/json"})
        response = conn.getresponse()
        self.connected.set()
        while not self._stopping:
            line = response.readline()
            if not line:
                return
            now = time.monotonic()
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                self.on_event(event["type"], event["object"], now)

    def stop(self) -> None:
        self._stopping = True
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(5)


@dataclass
class Tracker:
    """When each pod was seen Ready and each container seen ADDED and Started."""

    pod_ready: dict[str, float] = field(default_factory=dict)
    # pods whose status.containers says every member is Started, now (and since when)
    pod_summary_started: dict[str, float] = field(default_factory=dict)
    # pods whose ContainersReady condition is True, now (and since when)
    pod_containers_ready: dict[str, float] = field(default_factory=dict)
    ctr_added: dict[str, float] = field(default_factory=dict)
    ctr_started: dict[str, float] = field(default_factory=dict)
    ctr_started_at: dict[str, str] = field(default_factory=dict)
    ctr_created_ts: dict[str, str] = field(default_factory=dict)
    ctr_failed: dict[str, str] = field(default_factory=dict)
    # (kind, phase, reason) of every status seen change to it, e.g. PodNotReady retries
    transitions: collections.Counter[tuple[str, str, str]] = field(
        default_factory=collections.Counter
    )
    _last: dict[str, tuple[str, str]] = field(default_factory=dict)
    # every (phase, reason) each object went through
    seen: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_pod(self, kind: str, obj: dict[str, Any], now: float) -> None:
        key = obj["metadata"]["name"]
        status = obj.get("status") or {}
        with self.cond:
            self._transition("pod", key, status)
            if status.get("phase") == "Ready":
                self.pod_ready.setdefault(key, now)
            members = status.get("containers") or []
            if members and all(m.get("phase") == "Started" for m in members):
                self.pod_summary_started.setdefault(key, now)
            else:
                self.pod_summary_started.pop(key, None)
            ready = any(
                c.get("type") == "ContainersReady" and c.get("status") == "True"
                for c in status.get("conditions") or ()
            )
            if ready:
                self.pod_containers_ready.setdefault(key, now)
            else:
                self.pod_containers_ready.pop(key, None)
            self.cond.notify_all()

    def on_container(self, kind: str, obj: dict[str, Any], now: float) -> None:
        key = obj["metadata"]["name"]
        status = obj.get("status") or {}
        with self.cond:
            self.ctr_added.setdefault(key, now)
            self.ctr_created_ts.setdefault(key, obj["metadata"].get("creationTimestamp", ""))
            self._transition("container", key, status)
            phase = status.get("phase")
            if phase == "Started" and key not in self.ctr_started:
                self.ctr_started[key] = now
                self.ctr_started_at[key] = str(status.get("startedAt") or "")
            elif phase == "Failed":
                self.ctr_failed[key] = f"{status.get('reason')}: {status.get('message')}"
            self.cond.notify_all()

    def _transition(self, kind: str, key: str, status: Mapping[str, Any]) -> None:
        now = (str(status.get("phase") or "-"), str(status.get("reason") or "-"))
        if self._last.get(f"{kind}/{key}") != now:
            self._last[f"{kind}/{key}"] = now
            self.transitions[(kind, *now)] += 1
            self.seen.setdefault(f"{kind}/{key}", set()).add(now)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def summaries_started(self, pods: Iterable[str]) -> int:
        with self.cond:
            return sum(1 for p in pods if p in self.pod_summary_started)

    def started(self, keys: Iterable[str]) -> int:
        with self.cond:
            return sum(1 for k in keys if k in self.ctr_started)


def watching(api: Api) -> tuple[Tracker, list[Watch]]:
    tracker = Tracker()
    watches = [
        Watch(api, "storagepods", tracker.on_pod),
        Watch(api, "storagecontainers", tracker.on_container),
    ]
    for w in watches:
        w.start()
    for w in watches:
        if not w.connected.wait(10):
            raise RuntimeError("the bench's watch on the emulator did not connect")
    return tracker, watches


def pod_manifest(name: str, containers: Sequence[str]) -> dict[str, Any]:
    return {
        "apiVersion": "podstore.dev/v1alpha1",
        "kind": "StoragePod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": NODE,
            "imagePullPolicy": "IfNotPresent",
            "containers": [
                {
                    "name": c,
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": COMMAND,
                }
                for c in containers
            ],
        },
    }


def create_pods(
    api: Api, names: Sequence[str], containers: Sequence[str], threads: int = 4
) -> dict[str, float]:
    """Create pods concurrently; returns each pod's time just before its create request."""
    sent: dict[str, float] = {}

    def one(name: str) -> None:
        sent[name] = time.monotonic()
        api.create("storagepods", pod_manifest(name, containers))

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    return sent


def wait_quiet(emu: EmulatorProcess, quiet: float, timeout: float) -> float:
    """Wait until the API has had no write for ``quiet`` seconds; returns the wait."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        last = emu.stats().get("last_write")
        if last is None or time.monotonic() - last >= quiet:
            break
        time.sleep(0.2)
    return time.monotonic() - started


# --- counting what the agent runs ----------------------------------------------------------------


class ProcessCount:
    """Every containers-storage/skopeo command run in this process (the in-process agent)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.verbs: collections.Counter[str] = collections.Counter()
        self.seconds = 0.0
        self.last: dict[str, float] = {}  # verb -> when (monotonic) its last process ended

    def __call__(self, event: Any) -> None:
        with self.lock:
            self.verbs[f"{event.tool} {event.verb}"] += 1
            self.seconds += event.seconds
            self.last[f"{event.tool} {event.verb}"] = time.monotonic()

    def wait_for(self, verb: str, count: int, timeout: float) -> float | None:
        """When the ``count``-th ``verb`` (since the last take) ended; None if not within
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.verbs[verb] >= count:
                    return self.last[verb]
            time.sleep(0.01)
        return None

    def take(self) -> tuple[collections.Counter[str], float]:
        with self.lock:
            verbs, seconds = self.verbs, self.seconds
            self.verbs, self.seconds = collections.Counter(), 0.0
        return verbs, seconds


def verb_of(argv: Sequence[str]) -> str:
    """``tool verb`` of a logged command line (skipping the store's leading options)."""
    tool = os.path.basename(argv[0]) if argv else "?"
    with_value = {"--graph", "--run", "--storage-driver", "--storage-opt", "--root", "--runroot"}
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg in with_value:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return f"{tool} {arg}"
    return f"{tool} ?"


def write_shims(shim_dir: Path, log_path: Path) -> None:
    """containers-storage and skopeo on PATH that log their argv, then exec the real tool."""
    shim_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("containers-storage", "skopeo"):
        real = shutil.which(tool)
        if real is None:
            raise SystemExit(f"{tool} is not installed")
        script = shim_dir / tool
        script.write_text(
            f"#!/bin/sh\nprintf '%s\\n' \"{tool} $*\" >> '{log_path}'\nexec {real} \"$@\"\n",
            encoding="utf-8",
        )
        script.chmod(0o755)


def read_shim_log(log_path: Path, offset: int = 0) -> tuple[collections.Counter[str], int]:
    """Verbs logged from byte ``offset`` on, and the new offset."""
    verbs: collections.Counter[str] = collections.Counter()
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return verbs, offset
    for line in data.decode(errors="replace").splitlines():
        verbs[verb_of(line.split(" "))] += 1
    return verbs, offset + len(data)


def wait_names(log_path: Path, count: int, timeout: float) -> float | None:
    """When (monotonic) the shim log held ``count`` ``add-names`` processes; None if not
    within ``timeout``. The log has a process when it starts: it may run a moment more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        verbs, _ = read_shim_log(log_path)
        if verbs["containers-storage add-names"] >= count:
            return time.monotonic()
        time.sleep(0.1)
    return None


def writes_of(verbs: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, count in verbs.items():
        tool, _, verb = key.partition(" ")
        if (tool == "containers-storage" and verb in WRITE_VERBS) or key == "skopeo copy":
            out[key] = count
    return out


def reconcile_figures() -> dict[str, float]:
    """The in-process agent's reconcile metrics: count and seconds by kind, count by result."""
    from controller.handlers import metrics

    out: dict[str, float] = {}
    for metric in metrics.REGISTRY.collect():
        for sample in metric.samples:
            kind = sample.labels.get("kind", "")
            if sample.name == "podstore_reconcile_duration_seconds_count":
                out[f"{kind} n"] = sample.value
            elif sample.name == "podstore_reconcile_duration_seconds_sum":
                out[f"{kind} s"] = sample.value
            elif sample.name == "podstore_reconciles_total":
                out[f"{kind} {sample.labels.get('result')}"] = sample.value
    return out


def reconcile_summary(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    diff = {k: v - before.get(k, 0.0) for k, v in after.items()}
    parts = []
    for kind in ("StoragePod", "StorageContainer"):
        n, total = diff.get(f"{kind} n", 0.0), diff.get(f"{kind} s", 0.0)
        if not n:
            continue
        results = ", ".join(
            f"{r} {diff[f'{kind} {r}']:.0f}"
            for r in ("ok", "retry", "failed")
            if diff.get(f"{kind} {r}")
        )
        parts.append(f"{kind} {n:.0f} ({results}), mean {total / n * 1000:.0f} ms")
    return "; ".join(parts)


def fmt_counts(counts: Mapping[str, float], per: float = 1.0, top: int = 12) -> str:
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    if per != 1.0:
        return ", ".join(f"{k} {v / per:.2f}" for k, v in items)
    return ", ".join(f"{k} {v:g}" for k, v in items)


def api_summary(stats: Mapping[str, Any], per: float = 1.0) -> str:
    by = {k: v for k, v in stats["by"].items() if not k.startswith("GET watch")}
    return fmt_counts(by, per)


# --- the store ----------------------------------------------------------------------------------


def _mounts_under(path: str) -> list[str]:
    found: list[str] = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) > 1:
                target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[1])
                if target == path or target.startswith(path + "/"):
                    found.append(target)
    return sorted(found, key=len, reverse=True)


def detach_mounts(path: str) -> int:
    """Lazily unmount everything mounted under ``path`` (umount2 MNT_DETACH); returns how many."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    mnt_detach = 2
    count = 0
    for target in _mounts_under(path):
        if libc.umount2(target.encode(), mnt_detach) == 0:
            count += 1
        else:
            common.run(["umount", "-l", target], check=False)
            count += 1
    return count


@contextlib.contextmanager
def image_store(layout: Path, prefix: str) -> Iterator[common.TempStore]:
    """A fresh temporary store holding the bench image, removed however the bench ends.

    bench/common.py's ``temp_store`` unmounts layer by layer through the CLI, which
    costs one ``containers-storage unmount`` per mounted layer (about 40 ms each at a
    thousand containers: most of a minute here). Nothing else uses these stores and
    no containers-storage process runs on them at teardown, so their mounts are
    detached directly and the folder removed.
    """
    common.need("containers-storage")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    store = common.TempStore(base, str(base / "root"), str(base / "runroot"))
    try:
        store.load(layout, "t", IMAGE)
        yield store
    finally:
        detach_mounts(str(base))
        shutil.rmtree(base, ignore_errors=True)
        left = _mounts_under(str(base))
        if left:
            say(f"warning: still mounted under {base}: {left[:3]}")


# --- (a) and (b): the agent in this process -----------------------------------------------------


@dataclass
class Result:
    name: str
    value: float
    shown: str
    goal: str
    ok: bool | None  # None: shown only


def direct_baseline(layout: Path, pods: int, threads: int) -> tuple[float, ProcessCount]:
    """The burst's storage work straight through controller.storage, on a fresh store."""
    from controller.storage import ImageService, ProcessSpec, RuntimeService, Store, build_template
    from controller.storage.command import add_observer, remove_observer

    counter = ProcessCount()
    with image_store(layout, "podstore-bench-direct-") as temp:
        store = Store(temp.root, temp.run_root, temp.driver)
        runtime = RuntimeService(ImageService(store))

        def one(i: int) -> None:
            pod = f"direct-{i:04d}"
            uid = str(uuid.uuid4())
            pod_id = uuid.uuid4().hex + uuid.uuid4().hex
            runtime.create_pod_sandbox(
                pod_name=pod,
                pod_id=pod_id,
                image_name=IMAGE,
                container_name=f"{pod}-infra",
                metadata_name=pod,
                uid=uid,
                namespace=NS,
                labels={"podstore.dev/uid": uid},
            )
            for c in ("a", "b"):
                cuid = str(uuid.uuid4())
                info = runtime.create_container(
                    pod_name=pod,
                    pod_id=pod_id,
                    image_name=IMAGE,
                    container_name=f"{pod}-{c}",
                    container_id=uuid.uuid4().hex + uuid.uuid4().hex,
                    metadata_name=f"{pod}-{c}",
                    uid=uid,
                    namespace=NS,
                    labels={"podstore.dev/uid": cuid},
                )
                template = build_template(
                    info.config,
                    ProcessSpec(command=COMMAND, args=None, env={}, working_dir=None),
                    hostname=pod,
                    annotations={"io.podstore.container.id": info.id},
                )
                runtime.write_config_template(info.id, template)
                runtime.start_container(info.id)

        add_observer(counter)
        try:
            started = time.monotonic()
            if threads <= 1:
                for i in range(pods):
                    one(i)
            else:
                with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                    list(pool.map(one, range(pods)))
            seconds = time.monotonic() - started
        finally:
            remove_observer(counter)
    return seconds, counter


def create_floor(layout: Path, pods: int, threads: int) -> float:
    """The burst's creates alone, with the bare CLI on ``threads`` threads on a fresh
    store: ``create-container`` for each sandbox and member (3 per pod), nothing else.
    ``create-container`` takes one container, so no agent on the command line makes the
    burst's containers in less (the mounts and layer names come on top)."""
    with image_store(layout, "podstore-bench-floor-") as temp:

        def one(i: int) -> None:
            for c in ("infra", "a", "b"):
                meta = json.dumps({"pod-name": f"floor-{i:04d}", "name": f"floor-{i:04d}-{c}"})
                temp.cli(
                    "create-container",
                    "--id",
                    uuid.uuid4().hex + uuid.uuid4().hex,
                    "--name",
                    f"floor-{i:04d}-{c}",
                    "--metadata",
                    meta,
                    IMAGE,
                )

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(pods)))
        return time.monotonic() - started


async def run_in_process(args: argparse.Namespace, layout: Path, workdir: Path) -> list[Result]:
    """(a) and (b): one agent in this process's loop, one emulator process, one store."""
    from controller.config import Settings
    from controller.handlers import kube as kube_api
    from controller.handlers.operator import serve
    from controller.storage.command import add_observer, remove_observer

    results: list[Result] = []
    emu = EmulatorProcess(workdir, "ab")
    try:
        with image_store(layout, "podstore-bench-agent-") as store:
            settings = Settings(
                root=store.root,
                run_root=store.run_root,
                driver=store.driver,
                node_name=NODE,
                infra_image=IMAGE,
                health_port=0,
                metrics_port=0,
                kubeconfig=str(emu.kubeconfig),
            )
            counter = ProcessCount()
            add_observer(counter)
            kube_api.reset_client()
            stop, ready = asyncio.Event(), asyncio.Event()
            agent = asyncio.create_task(serve(settings, stop_flag=stop, ready_flag=ready))
            await asyncio.wait_for(ready.wait(), 30)
            tracker, watches = await asyncio.to_thread(watching, emu.api)
            try:
                results += await asyncio.to_thread(burst, args, emu, tracker, counter)
                if not args.burst_only:
                    results += await asyncio.to_thread(baseline, args, layout, results[0].value)
                    results += await asyncio.to_thread(steady, args, emu, tracker, counter)
            finally:
                for w in watches:
                    w.stop()
                stop.set()
                try:
                    await asyncio.wait_for(agent, 30)
                except TimeoutError:
                    agent.cancel()
                kube_api.reset_client()
                remove_observer(counter)
    finally:
        emu.stop()
    return results


def burst(
    args: argparse.Namespace,
    emu: EmulatorProcess,
    tracker: Tracker,
    counter: ProcessCount,
) -> list[Result]:
    n = args.pods
    say(
        f"\n(a) burst: {n} StoragePods x 2 containers applied at once"
        f" (load average {os.getloadavg()[0]:.2f})"
    )
    pods = [f"burst-{i:04d}" for i in range(n)]
    keys = [f"{p}-{c}" for p in pods for c in ("a", "b")]
    emu.mark()
    counter.take()
    figures = reconcile_figures()
    cpu0 = time.process_time()
    children0 = children_cpu()
    t0 = time.monotonic()
    sent = create_pods(emu.api, pods, ("a", "b"))
    applied = time.monotonic() - t0
    done = tracker.wait(lambda: tracker.started(keys) == len(keys), args.timeout)
    t_end = max((tracker.ctr_started[k] for k in keys if k in tracker.ctr_started), default=t0)
    total = t_end - t0
    cpu = time.process_time() - cpu0
    storage_cpu = children_cpu() - children0
    stats = emu.stats()
    # The agent names new layers after the runs that made them (its LayerNamer): one
    # add-names per container and sandbox, the last of them after the last start.
    named = counter.wait_for("containers-storage add-names", 3 * n, timeout=60)
    verbs, proc_seconds = counter.take()
    started = tracker.started(keys)
    if not done:
        say(f"  only {started}/{len(keys)} containers Started within {args.timeout:.0f}s")
        failed = {k: v for k, v in tracker.ctr_failed.items() if k in keys}
        if failed:
            say(f"  failed: {list(failed.items())[:3]}")
    ready = [tracker.pod_ready[p] - sent[p] for p in pods if p in tracker.pod_ready]
    added = [tracker.ctr_added[k] - sent[k[:-2]] for k in keys if k in tracker.ctr_added]
    to_start = [
        tracker.ctr_started[k] - tracker.ctr_added[k] for k in keys if k in tracker.ctr_started
    ]
    say(f"  all {len(keys)} creates sent in {secs(applied)}")
    say(
        f"  last container Started after {secs(total)}: {started / total:.1f} containers/s"
        if total > 0
        else "  nothing started"
    )
    if named is None:
        say(f"  layers: not all {3 * n} named within 60 s of the last start")
    elif named > t_end:
        say(f"  layers: all {3 * n} named {ms(named - t_end)} after the last container Started")
    else:
        say(f"  layers: all {3 * n} named before the last container Started")
    say(
        f"  pod create -> pod Ready: p50 {ms(pct(ready, 0.5))},"
        f" max {ms(max(ready, default=math.nan))};"
        f" -> container object created: p50 {ms(pct(added, 0.5))}; container created -> Started:"
        f" p50 {ms(pct(to_start, 0.5))}, max {ms(max(to_start, default=math.nan))}"
    )
    say(
        "  status changes seen: "
        + fmt_counts({f"{k}:{p}/{r}": v for (k, p, r), v in tracker.transitions.items()})
    )
    say(
        f"  agent: {sum(verbs.values())} storage processes ({proc_seconds:.2f} s waited on them,"
        f" summed over threads), per pod: {fmt_counts(verbs, per=n)}"
    )
    say(f"  reconciles: {reconcile_summary(figures, reconcile_figures())}")
    say(f"  bench process CPU (agent + watch + client): {cpu:.2f} s of {total:.2f} s")
    say(
        f"  emulator: {stats['cpu']:.2f} s CPU ({stats['cpu'] / max(total, 1e-9):.0%} of one core),"
        f" {stats['handled']} requests, {stats['busy'] / max(stats['handled'], 1) * 1000:.1f} ms"
        f" mean in handler; per pod: {api_summary(stats, per=n)}"
    )
    # CPU moves less with the machine's hour than the wall clock does (a slow disk or
    # another guest's load lengthens the burst, not the work): the work per container.
    per_container = (cpu + storage_cpu + stats["cpu"]) / max(started, 1)
    say(
        f"  CPU until the last Started: {ms(per_container)} per container (bench process"
        f" {cpu:.2f} s, storage processes {storage_cpu:.2f} s, emulator {stats['cpu']:.2f} s)"
    )
    return [
        Result("(a) burst total", total, secs(total), "-", None),
        Result("(a) burst CPU per container", per_container, ms(per_container), "-", None),
        Result(
            "(a) burst containers/s",
            started / total if total else 0.0,
            f"{started / total:.1f}/s" if total else "n/a",
            "-",
            None,
        ),
    ]


def baseline(args: argparse.Namespace, layout: Path, agent_total: float) -> list[Result]:
    n = args.pods
    say(f"\n(a') the same storage work straight through controller.storage ({n} pods)")
    threaded, tcount = direct_baseline(layout, n, AGENT_THREADS)
    verbs, waited = tcount.take()
    say(
        f"  {AGENT_THREADS} threads: {secs(threaded)} ({2 * n / threaded:.1f} containers/s);"
        f" {sum(verbs.values())} processes ({waited:.2f} s waited on them, summed over threads);"
        f" per pod: {fmt_counts(verbs, per=n)}"
    )
    sequential, _ = direct_baseline(layout, n, 1)
    say(f"  sequential: {secs(sequential)} ({2 * n / sequential:.1f} containers/s)")
    floor = create_floor(layout, n, AGENT_THREADS)
    say(
        f"  the creates alone ({3 * n} bare create-container, {AGENT_THREADS} threads):"
        f" {secs(floor)}, the least any agent on the CLI needs"
    )
    ratio = agent_total / threaded
    say(
        f"  agent burst / direct ({AGENT_THREADS} threads) = {ratio:.2f}x;"
        f" / direct (sequential) = {agent_total / sequential:.2f}x;"
        f" / the creates alone = {agent_total / floor:.2f}x"
    )
    return [
        Result("(a) direct, 8 threads", threaded, secs(threaded), "-", None),
        Result("(a) direct, sequential", sequential, secs(sequential), "-", None),
        Result("(a) creates alone, 8 threads", floor, secs(floor), "-", None),
        Result(
            "(a) burst / creates alone",
            agent_total / floor,
            f"{agent_total / floor:.2f}x",
            "-",
            None,
        ),
        Result("(a) burst / direct (8 threads)", ratio, f"{ratio:.2f}x", "<= 1.3x", ratio <= 1.3),
    ]


def steady(
    args: argparse.Namespace, emu: EmulatorProcess, tracker: Tracker, counter: ProcessCount
) -> list[Result]:
    rate, duration = args.rate, args.duration
    total_pods = round(rate * duration)
    say(
        f"\n(b) steady: {rate:g} StoragePods x 2 containers a second for {duration:g} s"
        f" ({total_pods} pods, on top of the {args.pods} burst pods;"
        f" load average {os.getloadavg()[0]:.2f})"
    )
    pods = [f"steady-{i:04d}" for i in range(total_pods)]
    keys = [f"{p}-{c}" for p in pods for c in ("a", "b")]
    emu.mark()
    counter.take()
    figures = reconcile_figures()
    cpu0 = time.process_time()
    sent: dict[str, float] = {}
    lag: list[float] = []
    t0 = time.monotonic()
    for i, pod in enumerate(pods):
        due = t0 + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            lag.append(-wait)
        sent[pod] = time.monotonic()
        emu.api.create("storagepods", pod_manifest(pod, ("a", "b")))
    sending = time.monotonic() - t0
    tracker.wait(lambda: tracker.started(keys) == len(keys), 30)
    # The pods' summaries follow their members by themselves (no resync within the phase).
    tracker.wait(lambda: tracker.summaries_started(pods) == len(pods), 10)
    elapsed = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    stats = emu.stats()
    verbs, _ = counter.take()
    lat = [tracker.ctr_started[k] - sent[k[:-2]] for k in keys if k in tracker.ctr_started]
    missing = len(keys) - len(lat)
    to_obj = [tracker.ctr_added[k] - sent[k[:-2]] for k in keys if k in tracker.ctr_added]
    obj_to_start = [
        tracker.ctr_started[k] - tracker.ctr_added[k] for k in keys if k in tracker.ctr_started
    ]
    to_ready = [tracker.pod_ready[p] - sent[p] for p in pods if p in tracker.pod_ready]
    coarse = []
    for k in keys:
        a, b = tracker.ctr_started_at.get(k), tracker.ctr_created_ts.get(k)
        if a and b:
            coarse.append(_rfc3339(a) - _rfc3339(b))
    p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
    retried = {
        k
        for k in keys
        if any(r == "PodNotReady" for _, r in tracker.seen.get(f"container/{k}", ()))
    }
    slow = [tracker.ctr_started[k] - sent[k[:-2]] for k in retried if k in tracker.ctr_started]
    clean = [
        tracker.ctr_started[k] - sent[k[:-2]]
        for k in keys
        if k in tracker.ctr_started and k not in retried
    ]
    fresh, fresh_ready, stale = [], [], 0
    for p in pods:
        times = [tracker.ctr_started.get(f"{p}-{c}") for c in ("a", "b")]
        if None in times:
            continue
        last = max(t for t in times if t is not None)
        if p in tracker.pod_summary_started:
            fresh.append(max(tracker.pod_summary_started[p] - last, 0.0))
        else:
            stale += 1
        if p in tracker.pod_containers_ready:
            fresh_ready.append(max(tracker.pod_containers_ready[p] - last, 0.0))
    say(f"  sent in {secs(sending)} (late sends: {len(lag)}, worst {ms(max(lag, default=0.0))})")
    say(
        f"  create -> container Started: p50 {ms(p50)}, p99 {ms(p99)},"
        f" max {ms(max(lat, default=math.nan))}"
        + (f"; {missing} not Started after 30 s" if missing else "")
    )
    say(
        f"    {len(retried)} of {len(keys)} containers went through Pending/PodNotReady (and a"
        f" retry): p50 {ms(pct(slow, 0.5))}, max {ms(max(slow, default=math.nan))}; the others:"
        f" p50 {ms(pct(clean, 0.5))}, p99 {ms(pct(clean, 0.99))}"
    )
    say(f"    create -> pod Ready: p50 {ms(pct(to_ready, 0.5))}, p99 {ms(pct(to_ready, 0.99))}")
    say(f"    create -> container object: p50 {ms(pct(to_obj, 0.5))}, p99 {ms(pct(to_obj, 0.99))}")
    say(
        f"    container object -> Started: p50 {ms(pct(obj_to_start, 0.5))},"
        f" p99 {ms(pct(obj_to_start, 0.99))}"
    )
    say(
        f"    cross-check, status.startedAt - container creationTimestamp (1 s resolution):"
        f" p50 {pct(coarse, 0.5):.0f} s, p99 {pct(coarse, 0.99):.0f} s"
    )
    say(
        f"  status freshness, last member Started -> pod's status.containers all Started:"
        f" p50 {ms(pct(fresh, 0.5))}, p99 {ms(pct(fresh, 0.99))}"
        f"; -> ContainersReady True: p99 {ms(pct(fresh_ready, 0.99))}"
        + (f"; {stale} pods' summaries still stale 10 s later" if stale else "")
    )
    say(f"  agent: per pod {fmt_counts(verbs, per=total_pods)}")
    say(f"  reconciles: {reconcile_summary(figures, reconcile_figures())}")
    say(f"  bench process CPU (agent + watch + client): {cpu:.2f} s of {elapsed:.2f} s")
    say(
        f"  emulator: {stats['cpu']:.2f} s CPU ({stats['cpu'] / elapsed:.0%} of one core),"
        f" {stats['handled']} requests, {stats['busy'] / max(stats['handled'], 1) * 1000:.1f} ms"
        f" mean in handler; per pod: {api_summary(stats, per=total_pods)}"
    )
    fresh99 = pct(fresh, 0.99)
    return [
        Result("(b) steady p50", p50, ms(p50), "-", None),
        Result("(b) steady p99", p99, ms(p99), "<= 500 ms", (p99 <= 0.5) and not missing),
        Result(
            "(b) PodNotReady retries",
            len(retried),
            f"{len(retried)} of {len(keys)}",
            "0",
            not retried,
        ),
        Result(
            "(b) status freshness p99",
            fresh99,
            ms(fresh99),
            "<= 1 s",
            fresh99 <= 1.0 and not stale,
        ),
    ]


def _rfc3339(text: str) -> float:
    import datetime

    return (
        datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )


# --- (c) and (d): the agent as a subprocess -----------------------------------------------------


def daemonset_env() -> dict[str, str]:
    """The literal environment variables the agent's DaemonSet sets (manifests/)."""
    import yaml

    path = Path(__file__).resolve().parent.parent / "manifests" / "daemonset.yaml"
    env: dict[str, str] = {}
    for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
        if not isinstance(doc, dict) or doc.get("kind") != "DaemonSet":
            continue
        for ctr in doc["spec"]["template"]["spec"]["containers"]:
            for var in ctr.get("env") or ():
                if "value" in var and not var["name"].startswith("PODSTORE_"):
                    env[var["name"]] = str(var["value"])
    return env


DAEMONSET_ENV = daemonset_env()


class AgentProcess:
    """``python -m controller agent`` against the emulator, with PATH shims and /metrics;
    run with the environment its DaemonSet gives it (:data:`DAEMONSET_ENV`)."""

    def __init__(
        self,
        store: common.TempStore,
        emu: EmulatorProcess,
        workdir: Path,
        name: str,
        log_level: str = "INFO",
        node: str = NODE,
    ):
        self.metrics_port = free_port()
        shim_dir = workdir / "shims"
        env = dict(os.environ)
        env.update(DAEMONSET_ENV)  # as the DaemonSet runs it (MALLOC_ARENA_MAX among them)
        env["PATH"] = f"{shim_dir}:{env.get('PATH', '/usr/bin:/bin')}"
        self.log_path = workdir / f"agent-{name}.log"
        self.stderr = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "agent",
                "--root",
                store.root,
                "--runroot",
                store.run_root,
                "--driver",
                store.driver,
                "--node-name",
                node,
                "--infra-image",
                IMAGE,
                "--kubeconfig",
                str(emu.kubeconfig),
                "--health-port",
                "0",
                "--metrics-port",
                str(self.metrics_port),
                "--listen-address",
                "127.0.0.1",
                "--log-level",
                log_level,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.stderr,
            stderr=self.stderr,
        )
        self.peak_rss = 0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while self._sampling and self.proc.poll() is None:
            rss, _ = rss_of(self.proc.pid)
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.2)

    def hwm(self) -> int:
        return rss_of(self.proc.pid)[1]

    def log_count(self, text: str) -> int:
        """How many lines of the agent's log so far contain ``text``."""
        self.stderr.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if text in line)

    def reconciles(self) -> float:
        """The agent's podstore_reconciles_total, all kinds and results; NaN if unreachable."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return math.nan
        return sum(
            float(m.group(1))
            for m in re.finditer(r"^podstore_reconciles_total\{[^}]*\} (\S+)$", text, re.M)
        )

    def stop(self) -> tuple[float, int]:
        """SIGTERM, wait; returns (seconds to exit, exit code)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sampling = False
        self.stderr.close()
        return time.monotonic() - started, int(self.proc.returncode)


def describe_patch(body: str) -> str:
    """A status patch in a line: its keys, and the order of the conditions it writes."""
    try:
        status = json.loads(body).get("status") or {}
    except (ValueError, AttributeError):
        return body[:200]
    parts = []
    for key, value in status.items():
        if key == "conditions" and isinstance(value, list):
            parts.append(
                "conditions ["
                + ", ".join(f"{c.get('type')}={c.get('status')}" for c in value)
                + "]"
            )
        elif key == "containers" and isinstance(value, list):
            parts.append("containers [" + ", ".join(str(c.get("phase")) for c in value) + "]")
        else:
            parts.append(f"{key}={json.dumps(value)[:60]}")
    return "status: " + "; ".join(parts)


def transient_costs(store: common.TempStore, emu: EmulatorProcess) -> str:
    """What two periodic passes of the agent allocate in Python, measured in this process.

    The orphan pass lists every StoragePod and StorageContainer through the API client
    (for their UIDs); the NodeView refresh lists the store (``containers --json``) and
    asks ``mounted`` about all of podstore's containers. Their peaks are what an agent's
    RSS must have room for on top of what it keeps.
    """
    import tracemalloc

    from controller.handlers import kube
    from controller.storage import ImageService, RuntimeService, Store
    from controller.sync import NodeView

    out = []
    kube.configure(str(emu.kubeconfig))
    try:
        tracemalloc.start()
        started = time.monotonic()
        uids = kube.list_pod_uids(NODE) | kube.list_container_uids(NODE)
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out.append(
            f"orphan pass LISTs ({len(uids)} UIDs): {seconds:.2f} s, {peak / 1e6:.0f} MB peak"
        )
    finally:
        kube.reset_client()
    view = NodeView(RuntimeService(ImageService(Store(store.root, store.run_root, store.driver))))
    tracemalloc.start()
    started = time.monotonic()
    view.refresh()
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    out.append(
        f"NodeView refresh ({len(view.containers())} containers): {seconds:.2f} s,"
        f" {peak / 1e6:.0f} MB peak, {kept / 1e6:.0f} MB kept"
    )
    return "; ".join(out)


def run_restart(args: argparse.Namespace, layout: Path, workdir: Path) -> list[Result]:
    m = args.restart_containers
    pods = m // 2
    say(
        f"\n(c)+(d) agent subprocess: {pods} StoragePods x 1 container = {m} storage containers"
        f" ({2 * pods} API objects), then a restart (load average {os.getloadavg()[0]:.2f})"
    )
    results: list[Result] = []
    cmd_log = workdir / "commands.log"
    write_shims(workdir / "shims", cmd_log)
    emu = EmulatorProcess(workdir, "cd")
    try:
        with image_store(layout, "podstore-bench-restart-") as store:
            tracker, watches = watching(emu.api)
            try:
                emu.mark()
                first = AgentProcess(store, emu, workdir, "first", args.log_level)
                # Its RSS with nothing to do yet: once it has listed both kinds, and a second.
                deadline = time.monotonic() + 30
                while emu.stats()["by"].get("GET list storagecontainers", 0) < 1:
                    if time.monotonic() > deadline or first.proc.poll() is not None:
                        raise RuntimeError(f"the agent did not start; see {first.log_path}")
                    time.sleep(0.1)
                time.sleep(1.0)
                idle_rss = rss_of(first.proc.pid)[0]
                say(f"  first agent idle (no objects yet): RSS {idle_rss / 1024:.0f} MB")
                names = [f"many-{i:04d}" for i in range(pods)]
                keys = [f"{p}-a" for p in names]
                emu.mark()
                t0 = time.monotonic()
                create_pods(emu.api, names, ("a",))
                ok = tracker.wait(lambda: tracker.started(keys) == len(keys), args.timeout * 3)
                setup = max(tracker.ctr_started.values(), default=t0) - t0
                say(
                    f"  setup: {tracker.started(keys)}/{len(keys)} containers Started in"
                    f" {secs(setup)} ({tracker.started(keys) / max(setup, 1e-9):.1f}/s)"
                    + ("" if ok else " (timed out)")
                )
                # Each pod's status.containers should say Started too; the pods' resync
                # timers (30 s) bring stale summaries up to date.
                summarized = tracker.wait(
                    lambda: tracker.summaries_started(names) == pods, args.summary_timeout
                )
                stale = pods - tracker.summaries_started(names)
                after_setup = time.monotonic() - t0 - setup
                say(
                    f"  pods whose status.containers says Started: {pods - stale}/{pods}"
                    + (
                        f" {after_setup:.1f} s after the last container Started"
                        if summarized
                        else f" after waiting {args.summary_timeout:.0f} s more (stale: {stale})"
                    )
                )
                # The agent names new layers once the burst is over (its LayerNamer): the
                # first agent is stopped when it has, so that the restart finds nothing owed.
                named_after = wait_names(cmd_log, 2 * pods, timeout=120)
                say(
                    f"  layers: all {2 * pods} named {named_after - t0 - setup:.1f} s after the"
                    " last container Started"
                    if named_after is not None
                    else f"  layers: not all {2 * pods} named within 120 s"
                )
                quiet = wait_quiet(emu, 2.0, 30)
                setup_stats = emu.stats()
                say(
                    f"  settled {quiet:.1f} s later; emulator {setup_stats['cpu']:.1f} s CPU in"
                    f" {setup_stats['seconds']:.1f} s; API per pod:"
                    f" {api_summary(setup_stats, per=pods)}"
                )
                first_rss, first_hwm = first.peak_rss, first.hwm()
                first_reconciles = first.reconciles()
                stop_seconds, code = first.stop()
                setup_verbs, offset = read_shim_log(cmd_log)
                say(
                    f"  first agent: peak RSS {first_hwm / 1024:.0f} MB (VmHWM),"
                    f" {first_reconciles:.0f}"
                    f" reconciles; stopped by SIGTERM in {stop_seconds:.1f} s (exit {code})"
                )
                say(f"  its storage commands per pod: {fmt_counts(setup_verbs, per=pods)}")
                say(f"  Python allocations of periodic passes: {transient_costs(store, emu)}")

                # -- the restart --------------------------------------------------------------
                objects = 2 * pods
                emu.mark()
                second = AgentProcess(store, emu, workdir, "second", args.log_level)
                t0 = second.started
                deadline = t0 + args.restart_timeout
                count = resumed = 0.0
                handled_at = math.nan
                while time.monotonic() < deadline and second.proc.poll() is None:
                    got = second.reconciles()
                    count = count if math.isnan(got) else got
                    resumed = second.log_count("Resuming is processed")
                    if count >= objects and resumed >= objects:
                        handled_at = time.monotonic()
                        break
                    time.sleep(0.05)
                # What the handling wrote (kopf patches after it logs) has landed once
                # the API has been quiet for a while.
                wait_quiet(emu, 0.5, 10)
                full = emu.stats(full=True)
                last_write = full.get("last_write") or 0.0
                confirmed = (
                    max(handled_at, last_write) - t0 if not math.isnan(handled_at) else math.nan
                )
                connected = (full["first_list"] - t0) if full.get("first_list") else math.nan
                # Let it run a little longer: writes that come late count too.
                time.sleep(args.restart_linger)
                second_hwm = second.hwm()
                second_rss = second.peak_rss
                lifetime = time.monotonic() - t0
                after = emu.stats()
                stop2, code2 = second.stop()
                verbs, _ = read_shim_log(cmd_log, offset)
                writes = writes_of(verbs)
                n_writes = sum(writes.values())
                patched = full.get("patched") or {}
                say(
                    f"  restart: process start -> first LIST {secs(connected)};"
                    f" -> every object handled {secs(handled_at - t0)} ({count:.0f} reconciles,"
                    f" {resumed:.0f} 'Resuming is processed' for {objects} objects); -> API quiet"
                    f" {secs(confirmed)}"
                )
                say(
                    f"  API writes of the restart: {len(patched)} objects PATCHed"
                    f" ({sum(v[0] for v in patched.values()):.0f} PATCHes); all requests over the"
                    f" restarted agent's {lifetime:.1f} s: {api_summary(after)}"
                )
                for shape, bodies in sorted((full.get("samples") or {}).items()):
                    say(f"    {shape}, e.g.: {describe_patch(bodies[0])}")
                say(f"  emulator: {after['cpu']:.2f} s CPU over those {after['seconds']:.1f} s")
                say(
                    f"  storage commands of the restarted agent ({lifetime:.1f} s):"
                    f" {fmt_counts(verbs) or 'none'}"
                )
                say(f"  storage writes: {n_writes} ({fmt_counts(writes) or 'none'})")
                say(
                    f"  second agent: peak RSS {second_hwm / 1024:.0f} MB; stopped in"
                    f" {stop2:.1f} s (exit {code2})"
                )
                peak = max(first_hwm, second_hwm, first_rss, second_rss) / 1024
                results += [
                    Result("(c) agent peak RSS", peak, f"{peak:.0f} MB", "<= 120 MB", peak <= 120),
                    Result(
                        "(c) agent idle RSS",
                        idle_rss / 1024,
                        f"{idle_rss / 1024:.0f} MB",
                        "<= 60 MB",
                        idle_rss / 1024 <= 60,
                    ),
                    Result(
                        f"(d) restart, {m} containers",
                        confirmed,
                        secs(confirmed),
                        "<= 10 s",
                        (not math.isnan(confirmed)) and confirmed <= 10,
                    ),
                    Result(
                        "(d) storage writes in restart",
                        n_writes,
                        str(n_writes),
                        "0",
                        n_writes == 0,
                    ),
                ]
            finally:
                for w in watches:
                    w.stop()
    finally:
        emu.stop()
    return results


# --- main ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--pods", type=int, help="(a) pods in the burst (100; quick 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="(b) pods a second (2)")
    parser.add_argument("--duration", type=float, help="(b) seconds (60; quick 10)")
    parser.add_argument(
        "--restart-containers", type=int, help="(d) storage containers (1000; quick 100)"
    )
    parser.add_argument(
        "--only",
        default="ab,cd",
        help="phases: ab, cd or both (ab,cd); a: the burst alone, for runs side by side",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a burst")
    parser.add_argument("--restart-timeout", type=float, default=60.0)
    parser.add_argument(
        "--summary-timeout",
        type=float,
        default=40.0,
        help="(d) seconds to wait for the pods' member summaries before the restart",
    )
    parser.add_argument(
        "--restart-linger", type=float, default=3.0, help="seconds the restarted agent runs on"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="log level of the agents (their logs are in the work folder)",
    )
    parser.add_argument("--serve-emulator", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_emulator:
        return serve_emulator(args.serve_emulator)
    args.pods = args.pods or (10 if args.quick else 100)
    args.duration = args.duration or (10.0 if args.quick else 60.0)
    args.restart_containers = args.restart_containers or (100 if args.quick else 1000)
    phases = set(args.only.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root: overlay stores and mounts need it")
    common.need("containers-storage", "skopeo", "umoci", "busybox")

    workdir = Path(tempfile.mkdtemp(prefix="podstore-bench-operator-"))
    logging.basicConfig(
        filename=workdir / "agent-in-process.log",
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s",
    )
    say(f"podstore agent benchmark ({'quick' if args.quick else 'full'}); logs in {workdir}")
    say(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (others' work on this"
        " machine shows in the times); emulator in its own process; overlay stores in /tmp"
    )
    results: list[Result] = []
    started = time.monotonic()
    try:
        with common.temp_dir("podstore-bench-image-") as image_dir:
            layout = common.build_busybox_image(image_dir)
            if "ab" in phases or "a" in phases:
                args.burst_only = "ab" not in phases
                results += asyncio.run(run_in_process(args, layout, workdir))
            if "cd" in phases:
                results += run_restart(args, layout, workdir)
    finally:
        if not args.keep:
            logging.shutdown()
            shutil.rmtree(workdir, ignore_errors=True)

    say(f"\n{'figure':<34} {'value':>12}  {'goal':<10} result")
    for r in results:
        verdict = "" if r.ok is None else ("PASS" if r.ok else "MISS")
        say(f"{r.name:<34} {r.shown:>12}  {r.goal:<10} {verdict}")
    say(
        f"\nwhole run: {time.monotonic() - started:.0f} s;"
        f" load average at the end {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
