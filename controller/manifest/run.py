"""``podstore run -f PATH``: the operator's reconciler, driven by manifest files.

With ``--once``, the manifests are read, every resource is reconciled pass
after pass until a pass changes nothing (resources that asked to retry are
retried while they still can succeed before ``--timeout``), and the resources
are printed with their status. Without it, the folder is watched (its files'
sizes and times, every ``--poll-interval`` seconds; a changed folder is read
once it stopped changing for a moment) and the store kept in step with it until
SIGINT or SIGTERM, which end the loop between two storage steps.

Output goes to stdout (a table, or JSON with ``-o json``); problems with the
input and what the reconciler did go to stderr, as log lines.

``run`` never removes silently: the state file records the ``-f`` paths of
each run, and a resource the last run kept that these manifests no longer name
is announced at WARNING before it goes (naming both runs' paths when they
differ), and its removal is logged at WARNING again once done. ``--dry-run``
reads the manifests and the last run's state, prints what would be created,
updated, started, stopped and removed, and changes nothing: it takes no lock,
runs no storage command and writes no state.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TextIO

from controller import exitcodes
from controller.config import Settings
from controller.manifest import output
from controller.manifest.imagegc import RunImageGC
from controller.manifest.loader import Key, load, snapshot
from controller.manifest.session import FileSecrets, LogEvents, Session, settled_ok
from controller.manifest.state import Entry, StateError, StateFile
from controller.reconcile import model
from controller.storage import ImageService, RuntimeService, Store
from controller.storage.errors import StorageError
from controller.sync import NodeView, Reconciler

log = logging.getLogger(__name__)

HEADERS = ("KIND", "NAMESPACE", "NAME", "PHASE", "REASON", "ID", "AGE")
RESYNC_INTERVAL = 30.0
# Watch mode: a changed folder is read once it stayed the same this long...
SETTLE_TIME = 0.3
# ...or after this many looks.
SETTLE_LOOKS = 10


@dataclass(frozen=True)
class RunOptions:
    paths: tuple[str, ...]
    once: bool = False
    output: str = "table"
    # --once: how long retries may go on before the resources are printed as they are.
    timeout: float = 120.0
    # Watch mode: seconds between two looks at the files.
    poll_interval: float = 1.0
    # Watch mode: seconds between two passes when nothing changed (to heal drift).
    resync_interval: float = RESYNC_INTERVAL
    # Print the plan only; change nothing.
    dry_run: bool = False


class StopFlag:
    """Set by SIGINT/SIGTERM; read between two storage steps."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            log.info("%s received: stopping after the current step", signal.Signals(signum).name)
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def make_session(settings: Settings, stop: Callable[[], bool]) -> Session:
    """The storage services, the reconciler (``source="run"``) and a session on them."""
    store = Store(
        settings.root, settings.run_root, settings.driver, timeout=settings.command_timeout
    )
    images = ImageService(
        store, insecure_registries=settings.insecure_registries, pull_timeout=settings.pull_timeout
    )
    runtime = RuntimeService(images)
    secrets = FileSecrets()
    reconciler = Reconciler(
        runtime,
        node_name=settings.node_name,
        infra_image=settings.infra_image,
        source="run",
        secrets=secrets,
        events=LogEvents(),
        view=NodeView(runtime, max_age=RESYNC_INTERVAL),
        # Nothing else can name these containers: what no manifest names goes at once.
        orphan_grace=0.0,
    )
    return Session(reconciler, StateFile(store.run_root), secrets=secrets, should_stop=stop)


def run(
    settings: Settings,
    options: RunOptions,
    *,
    stop: StopFlag | None = None,
    out: TextIO | None = None,
) -> int:
    """The ``run`` command; returns its exit status."""
    stop = stop or StopFlag()
    out = out or sys.stdout
    try:
        session = make_session(settings, stop)
        session.state.paths = tuple(os.path.abspath(p) for p in options.paths)
        if options.dry_run:
            session.restore()
            return _dry_run(session, options, out)
        gc = RunImageGC(session.reconciler.runtime.images, settings)
        with session.state.locked():
            session.restore()
            if options.once:
                return _once(session, options, stop, out, gc)
            return _watch(session, options, stop, out, gc)
    except (StateError, StorageError) as err:
        log.error("%s", err)
        return exitcodes.for_error(err)


# -- --once -------------------------------------------------------------------------


def _apply(session: Session, options: RunOptions) -> list[Any]:
    """Apply the manifests; announce (WARNING) each resource that will be removed."""
    before = set(session.removing)
    problems = session.apply(load(options.paths, node_name=session.reconciler.node_name))
    going = [
        e
        for k, e in sorted(session.removing.items(), key=lambda kv: _plan_order(kv[0]))
        if k not in before
    ]
    last = session.state.last_paths
    if going and last and tuple(last) != session.state.paths:
        log.warning(
            "this store was last run with -f %s, now with -f %s: %d resource(s) that "
            "only the other manifests named will be removed: %s",
            " -f ".join(last),
            " -f ".join(session.state.paths),
            len(going),
            ", ".join(str(e.key) for e in going),
        )
    for entry in going:
        log.warning("%s will be removed from the store: %s", entry.key, _ids(entry))
    return list(problems)


def _ids(entry: Entry) -> str:
    status = entry.status
    ident = status.get("containerID") or status.get("podID") or ""
    return f"ID {ident}" if ident else "no storage ID recorded"


def _log_removed(removed: Sequence[Entry]) -> None:
    for entry in removed:
        log.warning("removed %s from the store (%s)", entry.key, _ids(entry))


def _once(
    session: Session, options: RunOptions, stop: StopFlag, out: TextIO, gc: RunImageGC
) -> int:
    problems = _apply(session, options)
    for problem in problems:
        log.error("%s", problem)
    deadline = session.clock() + options.timeout
    changed = False
    while True:
        report = session.sync()
        session.save()
        _log_removed(report.removed)
        changed = changed or not report.quiet
        if report.interrupted:
            return 128 + (stop.signum or signal.SIGINT)
        now = session.clock()
        if not report.quiet:
            if now < deadline:
                continue
            log.warning("--timeout of %gs reached while resources still changed", options.timeout)
            break
        due = session.next_retry(can_change=False)
        if due is None or due > deadline:
            break
        log.info("waiting %.0fs to retry", due - now)
        if not _sleep_until(due, session.clock, stop):
            return 128 + (stop.signum or signal.SIGINT)
    if changed:  # image GC once the store settled, after the creates of the run
        gc.after_change(e.obj for e in session.entries.values())
    entries = _listed(session)
    if options.output == "json":
        out.write(output.to_json([e.obj for e in entries]) + "\n")
    else:
        out.write(output.table(HEADERS, [_row(e, time.time()) for e in entries]) + "\n")
    out.flush()
    bad = [e for e in entries if not settled_ok(e)]
    for entry in bad:
        status = entry.status
        log.error(
            "%s is %s: %s: %s",
            entry.key,
            status.get("phase") or "Pending",
            status.get("reason") or "NotReconciled",
            status.get("message") or "",
        )
    # A state that could not be saved (a full disk) was said once; it fails the run too.
    if not (bad or problems or session.state.failure):
        return 0
    why = [str(e.status.get("message") or "") for e in bad]
    return exitcodes.for_failures([*why, session.state.failure or ""])


# -- --dry-run -------------------------------------------------------------------------

PLAN_HEADERS = ("ACTION", "KIND", "NAMESPACE", "NAME", "ID")


def _dry_run(session: Session, options: RunOptions, out: TextIO) -> int:
    """Print what a run would do to the resources of the last one; change nothing."""
    previous = dict(session.entries)
    problems = _apply(session, options)
    for problem in problems:
        log.error("%s", problem)
    plan: list[tuple[str, Entry]] = []
    for key, entry in sorted(session.entries.items(), key=lambda kv: _plan_order(kv[0])):
        plan.append((_action(previous.get(key), entry), entry))
    for _key, entry in sorted(session.removing.items(), key=lambda kv: _plan_order(kv[0])):
        plan.append(("remove", entry))
    rows = [
        {
            "action": action,
            "kind": e.key.kind,
            "namespace": e.key.namespace,
            "name": e.key.name,
            "id": e.status.get("containerID") or e.status.get("podID") or "",
        }
        for action, e in plan
    ]
    if options.output == "json":
        out.write(output.to_json(rows) + "\n")
    else:
        table = [
            [r["action"], r["kind"], r["namespace"], r["name"], output.short_id(r["id"])]
            for r in rows
        ]
        out.write(output.table(PLAN_HEADERS, table) + "\n")
    out.flush()
    return 1 if problems else 0


def _plan_order(key: Key) -> tuple[int, str, str]:
    return (0 if key.kind == model.POD_KIND else 1, key.namespace, key.name)


def _action(old: Entry | None, new: Entry) -> str:
    """create, update, start, stop or keep: what a run would do to one resource."""
    if old is None or not (old.status.get("containerID") or old.status.get("podID")):
        return "create"
    if new.key.kind != model.POD_KIND:
        want = str((new.obj.get("spec") or {}).get("state") or "Started")
        have = str(old.status.get("phase") or "")
        if want != have and want in ("Started", "Stopped"):
            return "start" if want == "Started" else "stop"
    return "update" if old.spec_hash != new.spec_hash else "keep"


# -- watching -------------------------------------------------------------------------


def _watch(
    session: Session, options: RunOptions, stop: StopFlag, out: TextIO, gc: RunImageGC
) -> int:
    printer = _WatchPrinter(out, options.output)
    last_files: Any = object()
    last_problems: list[str] = []
    last_pass = float("-inf")
    pending = True
    first = True
    changed_since_gc = False
    log.info(
        "keeping the store in step with %s; stop with Ctrl-C or SIGTERM", ", ".join(options.paths)
    )
    while not stop():
        files = snapshot(options.paths)
        if files != last_files:
            files = _settled_files(options, files, session.clock, stop)
            if stop():
                break
            last_files = files
            problems = [str(p) for p in _apply(session, options)]
            for problem in problems:
                if problem not in last_problems:
                    log.error("%s", problem)
            last_problems = problems
            pending = True
        now = session.clock()
        due = session.next_retry(can_change=True)
        resync = now - last_pass >= options.resync_interval
        if pending or resync or (due is not None and due <= now):
            try:
                report = session.sync()
                session.save()
                _log_removed(report.removed)
            except Exception:  # a daemon outlives one bad pass; the next one tries again
                log.exception("a pass failed; trying again in %gs", options.resync_interval)
                pending, last_pass = False, now
                continue
            last_pass = now
            if report.interrupted:
                break
            if first:
                printer.show(_listed(session))
                first = False
            else:
                changed = [session.entries[k] for k in report.changed if k in session.entries]
                printer.show(changed, deleted=report.removed)
            pending = not report.quiet
            changed_since_gc = changed_since_gc or pending
            if pending:
                continue
            if changed_since_gc:  # image GC once the store settled after a change
                gc.after_change(e.obj for e in session.entries.values())
            changed_since_gc = False
        _sleep_until(session.clock() + options.poll_interval, session.clock, stop)
    log.info("stopped; the store is left as it is")
    return 0


class _WatchPrinter:
    """Rows as resources change (``kubectl get -w``), or watch events with ``-o json``."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        self.out = out
        self.fmt = fmt
        self.header = False
        self.known: set[Key] = set()

    def show(self, entries: Sequence[Entry], deleted: Sequence[Entry] = ()) -> None:
        if not entries and not deleted:
            return
        now = time.time()
        if self.fmt == "json":
            for entry in entries:
                kind = "MODIFIED" if entry.key in self.known else "ADDED"
                self.out.write(json.dumps({"type": kind, "object": entry.obj}) + "\n")
            for entry in deleted:
                self.out.write(json.dumps({"type": "DELETED", "object": entry.obj}) + "\n")
        else:
            rows = [_row(e, now) for e in entries]
            rows += [[*_row(e, now)[:3], "Deleted", "", *_row(e, now)[5:]] for e in deleted]
            text = output.table(HEADERS, rows)
            lines = text.splitlines()
            if self.header:
                lines = lines[1:]
            self.header = True
            self.out.write("\n".join(lines) + "\n")
        self.known.update(e.key for e in entries)
        self.known.difference_update(e.key for e in deleted)
        self.out.flush()


# -- helpers ----------------------------------------------------------------------------


def _listed(session: Session) -> list[Entry]:
    """Every resource, pods first, then containers, then those being removed."""
    return [*session.pods(), *session.containers(), *session.removing.values()]


def _row(entry: Entry, now: float) -> list[str]:
    status = entry.status
    ident = status.get("podID") if entry.key.kind == model.POD_KIND else status.get("containerID")
    meta = entry.obj.get("metadata") or {}
    return [
        entry.key.kind,
        entry.key.namespace,
        entry.key.name,
        str(status.get("phase") or "Pending"),
        str(status.get("reason") or ""),
        output.short_id(str(ident or "")),
        output.age_since(meta.get("creationTimestamp"), now),
    ]


def _settled_files(
    options: RunOptions, files: Any, clock: Callable[[], float], stop: StopFlag
) -> Any:
    """The folder's snapshot once it stopped changing for a moment.

    An editor or a copy may be half-way through a file; read then, a document
    missing from its end would look like a deletion. A few short looks make
    that unlikely (a file that never stops changing is read anyway).
    """
    settle = min(options.poll_interval, SETTLE_TIME)
    for _ in range(SETTLE_LOOKS):
        if not _sleep_until(clock() + settle, clock, stop):
            break
        again = snapshot(options.paths)
        if again == files:
            break
        files = again
    return files


def _sleep_until(deadline: float, clock: Callable[[], float], stop: StopFlag) -> bool:
    """Sleep until ``deadline`` (monotonic) unless stopped first; False when stopped."""
    while not stop():
        left = deadline - clock()
        if left <= 0:
            return True
        time.sleep(min(left, 0.1))
    return False
