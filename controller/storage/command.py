"""The one place in podstore that runs processes.

Every call into containers/storage (``containers-storage``) and
containers/image (``skopeo``) goes through :class:`Runner`: an argument list,
never a shell; a timeout on every process, after which the child is killed;
a log line with the command (arguments that could carry secrets are redacted);
and a typed error when the tool fails. Observers (the metrics of the agent)
are told about every command without this module knowing about them.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.storage.errors import CommandError, CommandTimeout, ToolMissing

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


class Runner:
    """Runs one tool with fixed leading options, e.g. the store's flags."""

    def __init__(self, tool: str, *, prefix: Sequence[str] = (), timeout: float = 120.0) -> None:
        self.tool = tool
        self.prefix = tuple(prefix)
        self.timeout = timeout

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
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
                stdin=subprocess.DEVNULL,
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
        except subprocess.TimeoutExpired as err:
            # subprocess.run has already killed and reaped the child.
            seconds = time.monotonic() - started
            _notify(CommandEvent(self.tool, verb, seconds, ok=False))
            stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
            raise CommandTimeout(
                self.tool, verb, None, f"killed after {limit:g}s. {stderr}".strip()
            ) from err
        seconds = time.monotonic() - started
        done = Completed(argv, proc.returncode, proc.stdout, proc.stderr, seconds)
        _notify(CommandEvent(self.tool, verb, seconds, ok=proc.returncode == 0))
        if check and proc.returncode != 0:
            raise CommandError(self.tool, verb, proc.returncode, proc.stderr or proc.stdout)
        return done
