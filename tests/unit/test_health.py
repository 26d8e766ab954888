"""What /healthz says, from the outcomes of the agent's API calls (controller.handlers.health)."""

from __future__ import annotations

import pytest

from controller.handlers.health import ApiHealth, ApiUnreachable, check, describe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Calls:
    def __init__(self, error: Exception | None = None) -> None:
        self.count = 0
        self.error = error

    def __call__(self) -> None:
        self.count += 1
        if self.error is not None:
            raise self.error


class HttpError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"({status})\nReason: {reason}\nHTTP response headers: ...")
        self.status, self.reason = status, reason


class RetriesExhausted(Exception):
    def __init__(self, reason: Exception) -> None:
        super().__init__("HTTPConnectionPool(host='api', port=6443): Max retries exceeded ...")
        self.reason = reason


def test_nothing_known_yet_makes_the_probe_call_the_api_once():
    health, call = ApiHealth(), Calls()
    assert check(health, call) == "ok"
    assert check(health, call) == "ok"
    assert call.count == 1


def test_a_recent_success_answers_without_any_call():
    health, call = ApiHealth(), Calls(RuntimeError("never called"))
    health.ok()
    assert check(health, call) == "ok"
    assert call.count == 0


def test_the_last_failure_makes_the_probe_fail_naming_the_call_and_why():
    health = ApiHealth()
    health.ok()
    health.failed("watching StorageContainers", HttpError(401, "Unauthorized"))
    with pytest.raises(ApiUnreachable, match="watching StorageContainers failed: HTTP 401"):
        check(health, Calls())


def test_a_success_after_a_failure_makes_it_healthy_again():
    health = ApiHealth()
    health.failed("login", ValueError("no kubeconfig"))
    health.ok()
    assert check(health, Calls()) == "ok"


def test_when_nothing_was_recorded_for_long_the_probe_asks_the_api_itself():
    clock = Clock()
    health = ApiHealth(stale_after=90, clock=clock)
    health.ok()
    clock.now = 91
    refused = Calls(RetriesExhausted(ConnectionRefusedError("[Errno 111] Connection refused")))
    with pytest.raises(ApiUnreachable, match=r"listing StoragePods failed: .*Connection refused"):
        check(health, refused)
    assert refused.count == 1


@pytest.mark.parametrize(
    ("error", "line"),
    [
        pytest.param(HttpError(403, "Forbidden"), "HTTP 403 Forbidden", id="http-status"),
        pytest.param(
            RetriesExhausted(OSError("Connection refused")), "Connection refused", id="cause"
        ),
        pytest.param(TimeoutError(), "TimeoutError", id="no-message"),
        pytest.param(ValueError("a\n  b"), "a b", id="one-line"),
    ],
)
def test_a_failure_is_described_in_one_line(error, line):
    assert describe(error) == line


# -- an API server that is away: one WARNING line per attempt, with backoff -----------------


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_a_success():
    from controller.handlers.health import Backoff

    backoff = Backoff(initial=1.0, cap=8.0)
    assert [backoff.failed() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    backoff.ok()
    assert backoff.failed() == 1.0


KOPF_URL = (
    "http://127.0.0.1:43477/apis/podstore.dev/v1alpha1/storagepods?watch=true"
    "&fieldSelector=spec.nodeName%3Dnode-a&resourceVersion=1024"
)
REFUSED = (
    "ClientConnectorError(ConnectionKey(host='127.0.0.1', port=43477, is_ssl=False), "
    "ConnectionRefusedError(111, \"Connect call failed ('127.0.0.1', 43477)\"))"
)


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            f"Request attempt #2/9 failed; will retry: GET {KOPF_URL} -> {REFUSED}",
            "API request GET /apis/podstore.dev/v1alpha1/storagepods failed "
            "(connection refused), attempt #2/9; will retry",
        ),
        (
            f"Request attempt #9/9 failed; escalating: GET {KOPF_URL} -> {REFUSED}",
            "API request GET /apis/podstore.dev/v1alpha1/storagepods failed "
            "(connection refused), attempt #9/9; giving up on this call",
        ),
        (
            "Request attempt #1/9 failed; will retry: PATCH http://h:1/apis/x/status "
            "-> ServerDisconnectedError('Server disconnected')",
            "API request PATCH /apis/x/status failed (ServerDisconnectedError), "
            "attempt #1/9; will retry",
        ),
        ("Handler 'reconcile' failed permanently: boom", None),
        ("Request attempt #1: GET http://h/x", None),
    ],
)
def test_kopfs_retried_requests_become_one_short_line(message, line):
    from controller.handlers.health import retry_line

    assert retry_line(message) == line


def test_kopfs_retried_requests_are_logged_as_warnings(caplog):
    import logging

    from controller.handlers.health import _OneLineApiRetries

    record = logging.LogRecord(
        "kopf._cogs.clients.watching",
        logging.ERROR,
        __file__,
        1,
        "Request attempt %s failed; will retry: GET %s -> %s",
        ("#1/9", KOPF_URL, REFUSED),
        None,
    )
    assert _OneLineApiRetries().filter(record)
    assert record.levelname == "WARNING"
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("API request GET /apis/podstore.dev/")
    assert "resourceVersion" not in record.getMessage()


def test_a_record_that_cannot_be_formatted_passes_the_filter_untouched():
    import logging

    from controller.handlers.health import _OneLineApiRetries

    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, "%d", ("x",), None)
    assert _OneLineApiRetries().filter(record)
    assert record.levelno == logging.ERROR


@pytest.mark.parametrize(
    ("message", "is_routine"),
    [
        ("Indexer 'pods' succeeded.", True),
        ("Indexer 'members' succeeded.", True),
        ("Timer 'resync' succeeded.", True),
        ("Handler 'reconcile' succeeded.", False),  # a change was handled: stays INFO
        ("Creation is processed: 1 succeeded; 0 failed.", False),
        ("Resuming is processed: 1 succeeded; 0 failed.", False),
        ("Timer 'resync' failed with an exception. Will retry.", False),
        ("Indexer 'pods' succeeded. And more", False),
    ],
)
def test_kopfs_routine_successes_are_told_apart(message, is_routine):
    from controller.handlers.health import routine

    assert routine(message) is is_routine


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
def test_kopfs_routine_successes_are_logged_at_debug(level, shown):
    import logging

    from controller.handlers.health import _RoutineAtDebug

    logger = logging.getLogger(f"test-kopf-objects-{level}")
    logger.setLevel(level)
    logger.propagate = False
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.addFilter(_RoutineAtDebug(logger))
    try:
        logger.info("Indexer 'pods' succeeded.")
        logger.info("Handler 'reconcile' succeeded.")
    finally:
        logger.removeHandler(handler)
    got = [(r.levelname, r.getMessage()) for r in records]
    routine_line = ("DEBUG", "Indexer 'pods' succeeded.")
    assert (routine_line in got) is shown
    assert ("INFO", "Handler 'reconcile' succeeded.") in got
