"""Node-scoped agents: what one agent costs as the rest of the cluster grows.

One agent (``python -m controller agent`` in a subprocess, the real kopf operator) runs
against the API emulator of ``tests/e2e/emulator.py`` (in a process of its own, as in
``bench/operator.py``, whose harness this reuses) with a real overlay store holding a
local busybox image. The agent reaches the emulator through a counting TCP proxy in this
process, so "bytes received" is every byte the API sent to the agent, on every
connection (lists, watches, GETs, patch answers).

- For K = 0, 1,000, 10,000 (``--k``) objects of other nodes (1 StoragePod : 2
  StorageContainers, 100 pods a node, the containers labelled for their node as their
  agents would have made them), seeded inside the emulator's process before the agent
  starts: the agent's own 10 pods x 2 containers (``spec.containers``) are created, and
  "done" is when all 20 containers are ``Started`` and the 10 pods ``Ready`` with both
  members in their summary. Printed: bytes received until done, the agent's CPU
  (utime + stime from /proc at done), its peak RSS (VmHWM) and the time from its start to
  done, and each figure's ratio to K = 0. Then 1,000 status changes of other nodes'
  containers: the watch events (``{"type":`` lines) and bytes the agent received
  during them and 2 s after.
- N = 1, 3, 6 agents on one emulator, nodes ``node-1``..``node-N``, 2 pods x 2 containers
  each: every object's status names its own node, each object carries exactly one
  podstore finalizer (its node's), and each agent's store holds only its node's objects.

Prints figures and PASS/MISS against the goals (ratios <= 1.1 at K = 10,000, 0 events
from other nodes' churn); asserts nothing about time. Needs root, containers-storage,
skopeo, umoci and busybox: ``.venv/bin/python bench/scale.py [--k 0,1000,10000]``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    _here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
        sys.path[0] = os.path.dirname(_here)

import argparse
import contextlib
import json
import shutil
import socket
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common
from bench import operator as harness

OWN_PODS = 10
CONTAINERS = ("app", "side")
CHURN = 1000


# --- a counting proxy ----------------------------------------------------------------------


class CountingProxy:
    """127.0.0.1:<port> -> the emulator; counts what the emulator sends back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received = 0
        self.events = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.received, self.events

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    seen = tail + data
                    with self._lock:
                        self.received += len(data)
                        self.events += seen.count(b'{"type":') - tail.count(b'{"type":')
                    tail = data[-16:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def proxied_kubeconfig(original: Path, port: int, path: Path) -> Path:
    text = original.read_text()
    config = json.loads(text) if text.lstrip().startswith("{") else None
    if config is None:
        import yaml

        config = yaml.safe_load(text)
    for cluster in config["clusters"]:
        url = urllib.parse.urlsplit(cluster["cluster"]["server"])
        cluster["cluster"]["server"] = url._replace(netloc=f"127.0.0.1:{port}").geturl()
    path.write_text(json.dumps(config))
    return path


@dataclass
class Endpoint:
    """What AgentProcess reads of an emulator: where its kubeconfig is."""

    kubeconfig: Path


# --- the agent, its pods, and done ---------------------------------------------------------


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_pod(name: str, node: str) -> dict[str, Any]:
    pod = harness.pod_manifest(name, CONTAINERS)
    pod["spec"]["nodeName"] = node
    return pod


def done(api: harness.Api, node: str, pods: Sequence[str]) -> bool:
    sel = urllib.parse.quote(f"spec.nodeName={node}")
    status, found = api.request("GET", f"{harness.API}/storagepods?fieldSelector={sel}")
    if status != 200:
        return False
    mine = {p["metadata"]["name"]: p.get("status") or {} for p in found["items"]}
    for name in pods:
        st = mine.get(name) or {}
        members = st.get("containers") or []
        if st.get("phase") != "Ready" or len(members) < len(CONTAINERS):
            return False
        if not all(m.get("phase") == "Started" for m in members):
            return False
    return True


def wait_done(api: harness.Api, node: str, pods: Sequence[str], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if done(api, node, pods):
            return time.monotonic()
        time.sleep(0.25)
    raise TimeoutError(f"{node}'s pods not done within {timeout:.0f} s")


@contextlib.contextmanager
def emulator(workdir: Path, name: str) -> Iterator[harness.EmulatorProcess]:
    emu = harness.EmulatorProcess(workdir, name)
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class Run:
    k: int
    seeded: float
    received: int
    cpu: float
    hwm: int
    seconds: float
    churn_events: int
    churn_bytes: int


def one_k(k: int, layout: Path, workdir: Path, timeout: float) -> Run:
    node = harness.NODE
    with emulator(workdir, f"k{k}") as emu, harness.image_store(layout, "podstore-scale-") as st:
        seeded = emu._ask(f"seed {k}")["seconds"] if k else 0.0
        proxy = CountingProxy(emu.port)
        kubeconfig = proxied_kubeconfig(emu.kubeconfig, proxy.port, workdir / f"proxy-k{k}")
        agent = harness.AgentProcess(st, Endpoint(kubeconfig), workdir, f"k{k}")  # type: ignore[arg-type]
        try:
            pods = [f"own-{i}" for i in range(OWN_PODS)]
            for name in pods:
                emu.api.create("storagepods", own_pod(name, node))
            finished = wait_done(emu.api, node, pods, timeout)
            seconds = finished - agent.started
            cpu, hwm = cpu_of(agent.proc.pid), agent.hwm() * 1024  # kB
            received, _ = proxy.snapshot()
            time.sleep(2.0)  # let the agent's own last writes settle before the churn
            before_bytes, before_events = proxy.snapshot()
            emu._ask(f"churn {CHURN}" if k else "churn 0")
            time.sleep(2.0)
            after_bytes, after_events = proxy.snapshot()
        finally:
            agent.stop()
            proxy.close()
    return Run(
        k,
        seeded,
        received,
        cpu,
        hwm,
        seconds,
        after_events - before_events,
        after_bytes - before_bytes,
    )


# --- N agents on one emulator --------------------------------------------------------------


def n_agents(n: int, layout: Path, workdir: Path, timeout: float) -> list[str]:
    """Problems found (empty: each agent kept only its node's objects, in its own store)."""
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(emulator(workdir, f"n{n}"))
        nodes = [f"node-{i + 1}" for i in range(n)]
        stores, agents = {}, {}
        for node in nodes:
            stores[node] = stack.enter_context(harness.image_store(layout, f"podstore-{node}-"))
            agent = harness.AgentProcess(
                stores[node], Endpoint(emu.kubeconfig), workdir, f"n{n}-{node}", node=node
            )
            agents[node] = agent
            stack.callback(agent.stop)  # before its store is removed (LIFO)
        pods = {node: [f"{node}-p{i}" for i in range(2)] for node in nodes}
        # One container applied by a user, naming only its pod, on every node.
        for node in nodes:
            for name in pods[node]:
                emu.api.create("storagepods", own_pod(name, node))
            emu.api.create(
                "storagecontainers",
                {
                    "apiVersion": "podstore.dev/v1alpha1",
                    "kind": "StorageContainer",
                    "metadata": {"name": f"{node}-tool", "namespace": harness.NS},
                    "spec": {"podName": pods[node][0], "image": harness.IMAGE},
                },
            )
        for node in nodes:
            wait_done(emu.api, node, pods[node], timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tools = [
                c
                for c in emu.api.list("storagecontainers")
                if c["metadata"]["name"].endswith("-tool")
            ]
            if len(tools) == n and all(
                (c.get("status") or {}).get("phase") == "Started" for c in tools
            ):
                break
            time.sleep(0.25)
        objects = emu.api.list("storagepods") + emu.api.list("storagecontainers")
        for obj in objects:
            name = obj["metadata"]["name"]
            node = name.split("-p")[0].split("-tool")[0]
            got = (obj.get("status") or {}).get("nodeName")
            fins = [f for f in obj["metadata"].get("finalizers") or [] if "podstore" in f]
            if got != node:
                problems.append(f"{name}: status.nodeName {got!r}, not {node!r}")
            if len(fins) != 1 or node not in fins[0]:
                problems.append(f"{name}: finalizers {fins}")
        for node in nodes:
            names = store_names(stores[node])
            strangers = {x for x in names if x and not x.startswith(node)}
            if strangers:
                problems.append(f"{node}'s store holds {sorted(strangers)}")
            if not names:
                problems.append(f"{node}'s store is empty")
    return problems


def store_names(st: common.TempStore) -> set[str]:
    """The object names podstore's containers in a store are for (their metadata)."""
    names = set()
    for c in json.loads(st.cli("containers", "--json").stdout or "[]") or []:
        with contextlib.suppress(ValueError, TypeError):
            meta = json.loads(c.get("metadata") or "{}")
            if meta.get("managed-by") == "podstore":
                names.add(str(meta.get("metadata-name") or ""))
    return names


# --- main ----------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", default="0,1000,10000", help="other nodes' objects, per run")
    parser.add_argument("--n", default="1,3,6", help="agents on one emulator, per run")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root: overlay stores and mounts need it")
    common.need("containers-storage", "skopeo", "umoci", "busybox")
    workdir = Path(tempfile.mkdtemp(prefix="podstore-bench-scale-"))
    ks = [int(x) for x in args.k.split(",") if x]
    ns = [int(x) for x in args.n.split(",") if x]
    harness.say(f"node-scoped agent benchmark; logs in {workdir}; load {os.getloadavg()[0]:.2f}")
    runs: list[Run] = []
    verdicts: list[tuple[str, bool]] = []
    try:
        with common.temp_dir("podstore-bench-image-") as image_dir:
            layout = common.build_busybox_image(image_dir)
            for k in ks:
                run = one_k(k, layout, workdir, args.timeout)
                runs.append(run)
                harness.say(
                    f"K={k:>6}: seeded in {run.seeded:.0f} s; received {mb(run.received)},"
                    f" CPU {run.cpu:.2f} s, VmHWM {run.hwm / 1e6:.0f} MB,"
                    f" done in {run.seconds:.1f} s; {CHURN if k else 0} foreign status"
                    f" changes: {run.churn_events} events, {run.churn_bytes} bytes"
                )
            for n in ns:
                problems = n_agents(n, layout, workdir, args.timeout)
                verdicts.append((f"N={n} agents keep only their own node", not problems))
                harness.say(f"N={n}: " + ("; ".join(problems[:5]) if problems else "clean"))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    base = next((r for r in runs if r.k == 0), None)
    harness.say(
        f"\n{'K':>6} {'received':>11} {'CPU s':>7} {'VmHWM MB':>9} {'done s':>7}"
        f"   ratios to K=0 (bytes, CPU, RSS, time)   churn events"
    )
    for r in runs:
        ratios = ""
        if base is not None:
            values = (
                r.received / base.received,
                r.cpu / base.cpu,
                r.hwm / base.hwm,
                r.seconds / base.seconds,
            )
            ratios = "  ".join(f"{v:5.2f}" for v in values)
            if r.k >= 10000:
                verdicts.append((f"K={r.k}: every ratio <= 1.1", max(values) <= 1.1))
        if r.k:
            verdicts.append((f"K={r.k}: 0 events from {CHURN} foreign changes", not r.churn_events))
        harness.say(
            f"{r.k:>6} {mb(r.received):>11} {r.cpu:>7.2f} {r.hwm / 1e6:>9.0f}"
            f" {r.seconds:>7.1f}   {ratios:<38} {r.churn_events:>6}"
        )
    if base is not None:
        per = [r for r in runs if r.k]
        for r in per:
            harness.say(
                f"per other node's object at K={r.k}: "
                f"{(r.received - base.received) / r.k:+.1f} bytes,"
                f" {(r.hwm - base.hwm) / r.k:+.1f} bytes RSS,"
                f" {(r.cpu - base.cpu) / r.k * 1e6:+.0f} us CPU"
            )
    harness.say("")
    for name, ok in verdicts:
        harness.say(f"{name:<52} {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
