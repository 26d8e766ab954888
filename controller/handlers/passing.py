"""Passing storage problems of the agent's periodic work, said in one line.

A resync that meets a store locked by another process, or a full disk, has
nothing to report that the next pass cannot do: the object's status already says
what its reconcile met, and the object comes due again at the next interval. Without
this, the error would be a full traceback.
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
