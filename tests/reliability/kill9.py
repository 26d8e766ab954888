"""The kill -9 suite's moving parts: a seeded world of pods that changes one step at a
time, a way to kill a process at its N-th storage-changing command, and the checks
that a store converged after the restart.

Everything is read back from the store with ``containers-storage`` and from the files
containers/storage keeps (``<runroot>/<driver>-layers/mountpoints.json`` holds each
layer's mount count), never from podstore.

The world is a handful of StoragePods ``kN``, each with an ``app`` container (state
Started or Stopped, an image, an environment variable ``REV`` that each change bumps)
and sometimes a ``db`` container that stays Stopped. One step creates a pod, changes
one (``REV``, the app's state, or its image) or deletes one; the same seed gives the
same steps and the same kill points.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.support.stores import StorePaths, cs, paths_of

#: containers-storage verbs that change a store, and skopeo's copy: the kill points.
WRITING = frozenset(
    {
        "create-container",
        "delete-container",
        "mount",
        "unmount",
        "set-metadata",
        "add-names",
        "set-names",
        "delete-image",
        "create-layer",
        "delete-layer",
        "copy",
    }
)
_COMMAND = re.compile(r"run: (containers-storage|skopeo) (.*)$")
#: A container mounted more than once (issue 12, defect 3): a violation like any other,
#: counted apart in the figures.
MOUNT_LEAK = "extra mount"


def written_verb(line: str) -> str | None:
    """The storage-changing verb a DEBUG ``run: ...`` log line starts, if it is one."""
    match = _COMMAND.search(line)
    if not match:
        return None
    tool, rest = match.groups()
    words = rest.split()
    # skopeo VERB ...; containers-storage --graph R --run R --storage-driver D VERB ...
    at = 0 if tool == "skopeo" else 6
    verb = words[at] if len(words) > at else ""
    return verb if verb in WRITING else None


# -- the world --------------------------------------------------------------------------


@dataclass
class PodWant:
    """What one pod of the world should be."""

    name: str
    rev: int = 0
    app_state: str = "Started"
    image: str = "busybox"  # or "busybox2"
    db: bool = False

    def containers(self) -> dict[str, PodMember]:
        out = {f"{self.name}-app": PodMember(self.app_state, self.image, self.rev)}
        if self.db:
            out[f"{self.name}-db"] = PodMember("Stopped", "busybox", None)
        return out

    def templates(self, images: Mapping[str, str]) -> list[dict[str, Any]]:
        app = {
            "name": "app",
            "image": images[self.image],
            "env": [{"name": "REV", "value": str(self.rev)}],
            "state": self.app_state,
        }
        out = [app]
        if self.db:
            out.append({"name": "db", "image": images["busybox"], "state": "Stopped"})
        return out


@dataclass(frozen=True)
class PodMember:
    state: str
    image: str
    rev: int | None


@dataclass
class World:
    """The pods wanted now; :meth:`step` changes them as a user would, seeded."""

    rng: random.Random
    pods: dict[str, PodWant] = field(default_factory=dict)
    made: int = 0

    def step(self) -> tuple[str, str]:
        """Create, change or delete one pod; returns (operation, pod name)."""
        count = len(self.pods)
        if count < 2:
            op = "create"
        elif count >= 4:
            op = self.rng.choice(["change", "change", "delete"])
        else:
            op = self.rng.choice(["create", "change", "change", "delete"])
        if op == "create":
            name = f"k{self.made}"
            self.made += 1
            self.pods[name] = PodWant(
                name,
                app_state=self.rng.choice(["Started", "Started", "Stopped"]),
                image=self.rng.choice(["busybox", "busybox2"]),
                db=self.rng.random() < 0.5,
            )
            return op, name
        name = self.rng.choice(sorted(self.pods))
        if op == "delete":
            del self.pods[name]
            return op, name
        want = self.pods[name]
        what = self.rng.choice(["rev", "state", "image"])
        want.rev += 1
        if what == "state":
            want.app_state = "Stopped" if want.app_state == "Started" else "Started"
        elif what == "image":
            want.image = "busybox2" if want.image == "busybox" else "busybox"
        return f"change-{what}", name

    def expected(self) -> dict[tuple[str, str], PodMember | None]:
        """(kind, name) of every resource that must have storage; None for pods."""
        out: dict[tuple[str, str], PodMember | None] = {}
        for want in self.pods.values():
            out[("StoragePod", want.name)] = None
            for name, member in want.containers().items():
                out[("StorageContainer", name)] = member
        return out


# -- killing ----------------------------------------------------------------------------


class CommandWatch:
    """Counts the storage-changing commands a process logs at DEBUG, line by line.

    Feed it lines from a pipe (:meth:`follow_pipe`) or a growing log file
    (:meth:`follow_file`); :meth:`wait` returns once the N-th one was logged.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last_line = time.monotonic()
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False

    def feed(self, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            if written_verb(line):
                # Only changes: the agent's resync reads the store every few seconds.
                self.last_line = time.monotonic()
                self.count += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def follow_pipe(self, pipe: IO[str]) -> threading.Thread:
        def read() -> None:
            for line in pipe:
                self.feed(line)
            self.close()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def follow_file(self, path: Path, offset: int, alive: Callable[[], bool]) -> threading.Thread:
        def read() -> None:
            with open(path, errors="replace") as handle:
                handle.seek(offset)
                partial = ""
                while not self._done:
                    chunk = handle.readline()
                    if not chunk:
                        if not alive():
                            break
                        time.sleep(0.01)
                        continue
                    partial += chunk
                    if partial.endswith("\n"):
                        self.feed(partial)
                        partial = ""
            self.close()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def wait(self, nth: int, *, idle: float, timeout: float) -> bool:
        """True once ``nth`` writing commands were logged; False when the process went
        quiet for ``idle`` seconds (no change to the store: its work was done) or
        ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        self.last_line = max(self.last_line, time.monotonic())
        with self._cond:
            while self.count < nth:
                now = time.monotonic()
                if self._done or now > deadline or now - self.last_line > idle:
                    return False
                self._cond.wait(0.05)
            return True


@dataclass
class KillPoints:
    """Where to kill: after the N-th storage-changing command of a round, N drawn from
    1..limit, the limit learnt per operation (how many commands it took when the kill
    came too late), so that most kills land in the middle of the work."""

    rng: random.Random
    limits: dict[str, int] = field(default_factory=dict)

    def pick(self, op: str) -> int:
        return self.rng.randint(1, self.limits.get(op, 6))

    def saw(self, op: str, *, landed: bool, count: int) -> None:
        limit = self.limits.get(op, 6)
        self.limits[op] = min(limit + 1, 16) if landed else max(1, count)


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (read from /proc)."""
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def kill9(pid: int, *, with_children: bool) -> list[int]:
    """SIGKILL ``pid`` (and, as a node crash would, the storage commands it started)."""
    children = children_of(pid) if with_children else []
    for target in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGKILL)
    return children


# -- reading the store back -------------------------------------------------------------


def mount_counts(store: Any) -> dict[str, tuple[int, str]]:
    """Layer ID -> (mount count, mountpoint), from the store's ``mountpoints.json``."""
    paths = paths_of(store)
    path = paths.run_root / f"{paths.driver}-layers" / "mountpoints.json"
    try:
        entries = json.loads(path.read_text() or "[]") or []
    except FileNotFoundError:
        return {}
    return {
        str(e["id"]): (int(e.get("count") or 0), str(e.get("path") or ""))
        for e in entries
        if isinstance(e, dict) and "id" in e
    }


def _strip(config: Mapping[str, Any]) -> dict[str, Any]:
    """A runtime config without what rendering fills in (root.path, the resolved user)
    or drops where SELinux is off (linux.mountLabel)."""
    out = json.loads(json.dumps(config))
    out.get("root", {}).pop("path", None)
    out.get("process", {}).pop("user", None)
    out.get("linux", {}).pop("mountLabel", None)
    return dict(out)


def check_store(
    store: StorePaths | Any,
    expected: Mapping[tuple[str, str], PodMember | None],
    images: Mapping[str, str],
) -> list[str]:
    """Everything that differs from ``expected`` in the store, one line each.

    One storage container per resource (no duplicate, none missing), none for anything
    else (no orphan), its layer named ``<container name>-layer``, each container
    mounted once if Started and not at all if
    Stopped, and a Started container's rendered run config equal to its template with
    the mountpoint as ``root.path`` and the wanted ``REV``.
    """
    problems: list[str] = []
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in cs(store, "containers", "--json") or []:
        try:
            meta = json.loads(record.get("metadata") or "{}")
        except ValueError:
            continue
        if not isinstance(meta, dict) or meta.get("managed-by") != "podstore":
            continue
        labels = meta.get("labels") or {}
        key = (str(labels.get("podstore.dev/kind")), str(labels.get("podstore.dev/name")))
        found.setdefault(key, []).append(dict(record, meta=meta))
    counts = mount_counts(store)
    layer_names = {
        str(layer.get("id")): layer.get("names") or []
        for layer in cs(store, "layers", "--json") or []
    }
    for key in sorted(set(found) - set(expected)):
        ids = ", ".join(c["id"][:12] for c in found[key])
        problems.append(f"orphan: {key[0]}/{key[1]} has storage ({ids}) but no resource")
    for key, member in sorted(expected.items()):
        records = found.get(key, [])
        if not records:
            problems.append(f"missing: {key[0]}/{key[1]} has no storage container")
            continue
        if len(records) > 1:
            ids = ", ".join(c["id"][:12] for c in records)
            problems.append(f"duplicate: {key[0]}/{key[1]} has {len(records)} ({ids})")
        record = records[0]
        # The agent names a new layer after the start; a kill may come first.
        layer_name = f"{record['meta'].get('name')}-layer"
        if layer_name not in layer_names.get(record["layer"], []):
            problems.append(f"layer name: {key[0]}/{key[1]} has no layer named {layer_name}")
        count, mountpoint = counts.get(record["layer"], (0, ""))
        want = 0 if member is None or member.state == "Stopped" else 1
        if member is None:
            want = min(count, 1)  # an infra container may or may not be mounted
        if count > 1:
            problems.append(f"{MOUNT_LEAK}: {key[0]}/{key[1]} mount count {count}, want {want}")
        elif count != want:
            problems.append(f"mount: {key[0]}/{key[1]} mount count {count}, want {want}")
        if member is None:
            continue
        if record["meta"].get("image-name") != images[member.image]:
            problems.append(
                f"image: {key[1]} has {record['meta'].get('image-name')}, want {member.image}"
            )
        if member.state == "Started" and count >= 1:
            problems += _check_rendered(store, key[1], record["id"], mountpoint, member)
    return problems


def _check_rendered(
    store: Any, name: str, container_id: str, mountpoint: str, member: PodMember
) -> list[str]:
    work = Path(cs(store, "get-container-dir", container_id))
    run = Path(cs(store, "get-container-run-dir", container_id))
    try:
        template = json.loads((work / "config.json").read_text())
        rendered = json.loads((run / "config.json").read_text())
    except (OSError, ValueError) as err:
        return [f"config: {name}: template or rendered config unreadable: {err}"]
    problems = []
    if rendered.get("root", {}).get("path") != mountpoint:
        problems.append(
            f"config: {name}: root.path {rendered.get('root', {}).get('path')!r}, "
            f"mounted at {mountpoint!r}"
        )
    if _strip(rendered) != _strip(template):
        problems.append(f"config: {name}: the rendered config is stale: not its template's")
    env = rendered.get("process", {}).get("env") or []
    if f"REV={member.rev}" not in env:
        problems.append(
            f"config: {name}: env has {[e for e in env if 'REV' in e]}, want {member.rev}"
        )
    return problems


# -- figures ----------------------------------------------------------------------------


@dataclass
class Figures:
    """What one kill -9 run did, printed at its end."""

    what: str
    seed: int
    kills: int = 0
    mid_work: int = 0  # kills that landed right after a storage-changing command started
    with_children: int = 0  # kills that took the running storage command down too
    converged: int = 0
    violations: int = 0
    mount_leaks: int = 0
    ops: dict[str, int] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def note(self, kill: int, op: str, problems: Iterable[str]) -> None:
        for problem in problems:
            self.violations += 1
            if problem.startswith(MOUNT_LEAK):
                self.mount_leaks += 1
            self.details.append(f"kill {kill} ({op}): {problem}")

    def line(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.ops.items()))
        return (
            f"kill -9 of {self.what} (seed {self.seed}): {self.kills} kills "
            f"({self.mid_work} mid-command, {self.with_children} with the command), "
            f"{self.converged} converged, {self.violations} violations, "
            f"({self.mount_leaks} of them extra mounts); ops: {ops}"
        )


#: The figures lines of this session's runs, printed in pytest's terminal summary.
REPORT: list[str] = []


def report(line: str) -> None:
    """Print a figures line now (seen with ``-s``), keep it for the terminal summary and,
    with ``RELIABILITY_FIGURES=FILE``, append it to FILE."""
    print("\n" + line, flush=True)
    REPORT.append(line)
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
