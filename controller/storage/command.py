"""The one place in podstore that runs processes.

Every call into containers/storage (``containers-storage``) and
containers/image (``skopeo``) goes through :class:`Runner`: an argument list,
never a shell; a timeout on every process, after which the child is killed;
a log line with the command (arguments that could carry secrets are redacted);
and a typed error when the tool fails. Observers (the metrics of the agent)
are told about every command without this module knowing about them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from controller.storage.errors import (
    CommandError,
    CommandTimeout,
    NoSpace,
    StoreLocked,
    ToolMissing,
)

log = logging.getLogger(__name__)

# Options whose value must never reach a log line.
_SECRET_OPTIONS = frozenset(
    {
        "--creds",
        "--src-creds",
        "--dest-creds",
        "--password",
        "--src-password",
        "--dest-password",
        "--registry-token",
        "--src-registry-token",
        "--dest-registry-token",
    }
)


@dataclass(frozen=True)
class Completed:
    """What a finished command said."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class CommandEvent:
    """One finished (or failed) command, as observers see it."""

    tool: str
    verb: str
    seconds: float
    ok: bool


Observer = Callable[[CommandEvent], None]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


def add_observer(observer: Observer) -> None:
    """Be told about every command podstore runs (used for metrics)."""
    with _observers_lock:
        if observer not in _observers:
            _observers.append(observer)


def remove_observer(observer: Observer) -> None:
    with _observers_lock:
        if observer in _observers:
            _observers.remove(observer)


def _notify(event: CommandEvent) -> None:
    for observer in list(_observers):
        try:
            observer(event)
        except Exception:  # an observer must never break a storage call
            log.exception("command observer failed")


def redact(argv: Sequence[str]) -> list[str]:
    """The command line with the values of secret-bearing options blanked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name in _SECRET_OPTIONS:
            if eq:
                out.append(f"{name}=<redacted>")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(arg)
    return out


# Seconds a command may wait for a lock that another process holds (a store's
# containers.lock or layers.lock) before it is stopped and the holder named.
LOCK_WAIT = 30.0
# How often a running command is looked at (is it waiting for a lock?).
_LOOK_EVERY = 0.5
# Less free space than this on a store's filesystem counts as full.
_FULL_BYTES = 1 << 20
_NO_SPACE = re.compile(r"(/[^\s:\"]*)\S*: no space left on device", re.IGNORECASE)


def _mount_point(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def full_filesystem(stderr: str, paths: Sequence[str]) -> str | None:
    """The filesystem (its mount point) that a failure ran out of space on, if it did:
    named by the tool's message, or one of ``paths`` with (almost) no space left."""
    match = _NO_SPACE.search(stderr)
    if match:
        return _mount_point(match.group(1))
    for path in paths:
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        if st.f_bavail * st.f_frsize < _FULL_BYTES or (st.f_files and st.f_favail == 0):
            return _mount_point(path)
    if "no space left on device" in stderr.lower():
        return paths[0] if paths else "the device"
    return None


@dataclass(frozen=True)
class LockWait:
    """A command blocked on a POSIX lock that another process holds."""

    path: str
    holder_pid: int | None
    holder: str


def _proc_locks() -> list[tuple[bool, int, str]]:
    """(blocked, pid, device:inode) for every POSIX lock in /proc/locks."""
    out = []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    for line in lines:
        parts = line.split()
        blocked = len(parts) > 1 and parts[1] == "->"
        if blocked:
            parts = [parts[0], *parts[2:]]
        if len(parts) < 6 or parts[1] not in ("POSIX", "OFDLCK", "FLOCK"):
            continue
        with contextlib.suppress(ValueError):
            out.append((blocked, int(parts[4]), parts[5]))
    return out


def _inode_key(st: os.stat_result) -> str:
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def lock_wait(pid: int) -> LockWait | None:
    """What lock process ``pid`` waits for, and who holds it; None if it waits for none."""
    locks = _proc_locks()
    waiting = {ident for blocked, p, ident in locks if blocked and p == pid}
    if not waiting:
        return None
    path = "a lock file"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        fds = []
    for fd in fds:
        link = f"/proc/{pid}/fd/{fd}"
        with contextlib.suppress(OSError):
            if _inode_key(os.stat(link)) in waiting:
                path = os.readlink(link)
                break
    holders = [p for blocked, p, ident in locks if not blocked and ident in waiting and p != pid]
    if not holders:
        return LockWait(path, None, "another process")
    holder = holders[0]
    try:
        with open(f"/proc/{holder}/comm", encoding="utf-8", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        name = ""
    return LockWait(path, holder, f"pid {holder}" + (f" ({name})" if name else ""))


class Runner:
    """Runs one tool with fixed leading options, e.g. the store's flags."""

    def __init__(
        self,
        tool: str,
        *,
        prefix: Sequence[str] = (),
        timeout: float = 120.0,
        lock_wait: float = LOCK_WAIT,
        space_paths: Sequence[str] = (),
        env: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.tool = tool
        self.prefix = tuple(prefix)
        self.timeout = timeout
        self.lock_wait = lock_wait
        # Where the tool writes: a failure there with no space left says so.
        self.space_paths = tuple(space_paths)
        # Variables the child gets besides podstore's own environment, asked for at each
        # command; podstore's environment wins, so an operator's own setting is kept.
        self.env = env

    def run(
        self,
        verb: str,
        *args: str,
        timeout: float | None = None,
        check: bool = True,
        pass_fds: Sequence[int] = (),
    ) -> Completed:
        """Run ``tool PREFIX... verb ARGS...``; raise CommandError on failure when ``check``.

        ``pass_fds`` are descriptors the child inherits (a memory file of credentials).
        """
        argv = (self.tool, *self.prefix, verb, *args)
        limit = self.timeout if timeout is None else timeout
        if log.isEnabledFor(logging.DEBUG):
            log.debug("run: %s", " ".join(redact(argv)))
        extra = self.env() if self.env is not None else {}
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
                env={**extra, **os.environ} if extra else None,
                pass_fds=tuple(pass_fds),
                # A process group of its own: Ctrl-C at a terminal signals podstore,
                # which stops between steps, and never kills a storage step midway.
                process_group=0,
            )
        except FileNotFoundError as err:
            raise ToolMissing(
                f"{self.tool} is not installed or not on PATH; install the Debian package "
                f"{self.tool!r}"
            ) from err
        with proc:
            stdout, stderr = self._wait(proc, verb, started, limit)
        proc_returncode = proc.returncode
        seconds = time.monotonic() - started
        done = Completed(argv, proc_returncode, stdout, stderr, seconds)
        _notify(CommandEvent(self.tool, verb, seconds, ok=proc_returncode == 0))
        if check and proc_returncode != 0:
            full = full_filesystem(stderr or stdout, self.space_paths)
            if full is not None:
                raise NoSpace(self.tool, verb, proc_returncode, full)
            raise CommandError(self.tool, verb, proc_returncode, stderr or stdout)
        return done

    def _wait(
        self, proc: subprocess.Popen[str], verb: str, started: float, limit: float
    ) -> tuple[str, str]:
        """The child's output once it ends; killed at ``limit``, or sooner when it
        waits longer than ``lock_wait`` for a lock another process holds."""
        blocked_since: float | None = None
        while True:
            now = time.monotonic()
            step = min(_LOOK_EVERY, max(0.0, started + limit - now))
            try:
                return proc.communicate(timeout=step)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            waiting = lock_wait(proc.pid)
            if waiting is None:
                blocked_since = None
            elif blocked_since is None:
                blocked_since = now
            timed_out = now - started >= limit
            if (
                waiting is not None
                and blocked_since is not None
                and (timed_out or now - blocked_since >= min(self.lock_wait, limit))
            ):
                self._kill(proc)
                _notify(CommandEvent(self.tool, verb, now - started, ok=False))
                raise StoreLocked(self.tool, verb, waiting.path, waiting.holder, now - started)
            if timed_out:
                _, stderr = self._kill(proc)
                _notify(CommandEvent(self.tool, verb, now - started, ok=False))
                raise CommandTimeout(
                    self.tool, verb, None, f"killed after {limit:g}s. {stderr}".strip()
                )

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> tuple[str, str]:
        proc.kill()
        return proc.communicate()
