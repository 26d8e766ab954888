"""Whether the agent is in touch with the API server: what ``/healthz`` reports.

An agent that cannot log in to or list from the API server does nothing for its node,
however alive its process is, so kopf's liveness endpoint must say so. The agent's own
API calls record their outcome here (:meth:`ApiHealth.ok`, :meth:`ApiHealth.failed`):
the watch of unassigned StorageContainers reconnects at least once a minute and lists
again after every failure, so its outcomes follow the API server without extra calls.
Only when nothing was recorded for a while (a connection that hangs instead of failing,
or none made yet) does the probe make one small call itself (:func:`check`), so an
agent's health costs the API server nothing in the usual case.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds without a recorded outcome after which the probe calls the API itself.
STALE_AFTER = 90.0


class ApiUnreachable(Exception):
    """The agent's last call to the API server failed; the message says which and why."""


class ApiHealth:
    """The outcome of the agent's latest API calls (thread-safe)."""

    def __init__(
        self, *, stale_after: float = STALE_AFTER, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._at: float | None = None  # when the latest outcome was recorded
        self._problem: str | None = None  # None: the latest call succeeded

    def ok(self) -> None:
        with self._lock:
            self._at, self._problem = self._clock(), None

    def failed(self, what: str, err: BaseException) -> None:
        with self._lock:
            self._at, self._problem = self._clock(), f"{what} failed: {describe(err)}"

    def stale(self) -> bool:
        with self._lock:
            return self._at is None or self._clock() - self._at >= self.stale_after

    def problem(self) -> str | None:
        """None while in touch with the API server, else what failed last."""
        with self._lock:
            return self._problem


def describe(err: BaseException) -> str:
    """One line for an API call's failure (an HTTP status, or the connection's error)."""
    status = getattr(err, "status", None)
    if isinstance(status, int) and status:
        return f"HTTP {status} {getattr(err, 'reason', '') or ''}".strip()
    cause = getattr(err, "reason", None)  # urllib3's MaxRetryError: the connection's error
    if isinstance(cause, BaseException):
        return describe(cause)
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:300]


def check(health: ApiHealth, call: Callable[[], object]) -> str:
    """The probe: "ok", or :class:`ApiUnreachable` naming the failed call.

    ``call`` is made (and its outcome recorded) only when nothing recent is known.
    """
    if health.stale():
        try:
            call()
        except Exception as err:  # any failure to reach the API is the answer, not a crash
            health.failed("listing StoragePods", err)
        else:
            health.ok()
    problem = health.problem()
    if problem is not None:
        raise ApiUnreachable(f"the API server is out of reach: {problem}")
    return "ok"


class _OneLineProbeFailures(logging.Filter):
    """aiohttp logs a failed probe's traceback; kopf has logged its one line already."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and type(exc).__name__ == "ActivityError")


def quiet_probe_failures() -> None:
    """Keep the tracebacks of failed health probes out of the agent's log."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _OneLineProbeFailures) for f in server.filters):
        server.addFilter(_OneLineProbeFailures())


# kopf's INFO line for an index updated, two per watch event, saying nothing changed (and
# a timer's run: podstore's resync is its own loop now, but any kopf timer's routine line
# is as empty). The agent's INFO lines are about what changed; these are DEBUG.
_KOPF_ROUTINE = re.compile(r"^(?:Indexer|Timer) '[^']*' succeeded\.$")


def routine(message: str) -> bool:
    """Whether a kopf line is one of its routine successes (an index, a timer)."""
    return _KOPF_ROUTINE.match(message) is not None


class _RoutineAtDebug(logging.Filter):
    """kopf's routine successes at DEBUG: shown with ``--log-level=DEBUG``, not at INFO."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not isinstance(record.msg, str) or record.args:
            return True
        if not routine(record.msg):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.logger.isEnabledFor(logging.DEBUG)


def quiet_routine_successes() -> None:
    """Log kopf's per-event index updates (and any timer's routine runs) at DEBUG."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, _RoutineAtDebug) for f in objects.filters):
        objects.addFilter(_RoutineAtDebug(objects))


@dataclass
class Backoff:
    """Delays between attempts at something that keeps failing: doubling, capped.

    A loop that talks to the API logs one line per failed attempt and waits
    :meth:`failed`'s delay; :meth:`ok` starts again from ``initial``.
    """

    initial: float = 1.0
    cap: float = 30.0
    _next: float = 0.0

    def failed(self) -> float:
        delay = self._next or self.initial
        self._next = min(delay * 2, self.cap)
        return delay

    def ok(self) -> None:
        self._next = 0.0


# kopf's own retries of a failed API request: "Request attempt #2/9 failed; will retry:
# GET http://host/path?query -> ClientConnectorError(ConnectionKey(...), ...)".
_KOPF_RETRY = re.compile(
    r"^Request attempt (?P<attempt>#\d+/\d+) failed; (?P<then>[^:]+): "
    r"(?P<method>[A-Z]+) (?P<url>\S+)(?: -> (?P<error>.*))?$",
    re.DOTALL,
)


def retry_line(message: str) -> str | None:
    """kopf's line for a failed API request, as one short line; None if it is not one."""
    found = _KOPF_RETRY.match(message)
    if found is None:
        return None
    path = re.sub(r"^[a-z]+://[^/]+", "", found["url"]).split("?", 1)[0]
    error = found["error"] or ""
    name = error.split("(", 1)[0].strip() or "error"
    refused = "Connect call failed" in error or "ConnectionRefused" in error
    cause = "connection refused" if refused else name
    then = "giving up on this call" if found["then"].startswith("escalating") else found["then"]
    return (
        f"API request {found['method']} {path} failed ({cause}), attempt {found['attempt']}; {then}"
    )


class _OneLineApiRetries(logging.Filter):
    """kopf logs each retried API request at ERROR with the whole exception; the API
    server being away is a WARNING, in one short line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kopf") and record.levelno == logging.ERROR:
            try:
                message = record.getMessage()
            except Exception:  # a record that cannot be formatted: logging reports it itself
                return True
            line = retry_line(message)
            if line is not None:
                record.msg, record.args = line, ()
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_api_retries() -> None:
    """Make kopf's retried API requests one WARNING line each (on every root handler)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OneLineApiRetries) for f in handler.filters):
            handler.addFilter(_OneLineApiRetries())
