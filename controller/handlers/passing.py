"""Passing storage problems of the agent's periodic work, said in one line.

A resync timer that meets a store locked by another process, or a full disk, has
nothing to report that the next pass cannot do: the object's status already says
what its reconcile met, and the timer runs again at the next interval. Without this,
kopf logs such an error with a full traceback and waits 60 s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from controller.storage.errors import StorageError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def next_pass_retries(what: str, namespace: str | None, name: str) -> Iterator[None]:
    """Turn a StorageError of ``what`` (e.g. "resync") into one WARNING line."""
    try:
        yield
    except StorageError as err:
        log.warning("%s of %s/%s skipped until the next pass: %s", what, namespace, name, err)
