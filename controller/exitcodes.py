"""The exit statuses of ``podstore``, in one place, and how a failure picks one.

A script (or a systemd unit, or a CI step) must tell "try again later" from "fix
something": a store another process holds locked is temporary (sysexits' TEMPFAIL),
a full disk needs space freed (sysexits' IOERR), a store the user may not write
needs root (NOPERM). Everything else that fails is 1, a flag error 2 (argparse).
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.storage.errors import NoSpace, StoreLocked

#: Something failed (bad input, a resource that ended Failed or Pending, ...).
EXIT_FAILURE = 1
#: A flag or argument the command does not take (argparse's own status).
EXIT_USAGE = 2
#: No space left on the filesystem of the store, its run root or the state (EX_IOERR).
EXIT_NO_SPACE = 74
#: The store is locked by another process; trying again later may work (EX_TEMPFAIL).
EXIT_STORE_LOCKED = 75
#: Permission denied on the store: run as root or as its owner (EX_NOPERM).
EXIT_NO_PERMISSION = 77

_BY_REASON = {NoSpace.reason: EXIT_NO_SPACE, StoreLocked.reason: EXIT_STORE_LOCKED}

#: The ``podstore --help`` epilog.
EPILOG = f"""\
exit status:
  0    success
  {EXIT_FAILURE}    failure (bad input; with run --once, a resource Failed or still Pending)
  {EXIT_USAGE}    a flag or argument error
  {EXIT_NO_SPACE}   no space left on the store's, run root's or state's filesystem: free space
  {EXIT_STORE_LOCKED}   the store is locked by another process: try again once it is done
  {EXIT_NO_PERMISSION}   permission denied on the store: run as root or as its owner
When several apply, {EXIT_NO_SPACE} wins over {EXIT_STORE_LOCKED}, and both over {EXIT_FAILURE}."""


def fault_of(text: str) -> str:
    """``NoSpace`` or ``StoreLocked`` when ``text`` (an error's message, a resource's
    status message) says so in the words those errors use; "" otherwise."""
    if NoSpace.SAYS in text:
        return NoSpace.reason
    if StoreLocked.SAYS in text:
        return StoreLocked.reason
    return ""


def for_reason(reason: str) -> int:
    """The status for a failure of this reason (an error's ``reason`` attribute)."""
    return _BY_REASON.get(reason, EXIT_FAILURE)


def for_error(err: BaseException) -> int:
    """The status of a command that stopped on ``err``."""
    reason = getattr(err, "reason", "")
    status = for_reason(reason if isinstance(reason, str) else "")
    return status if status != EXIT_FAILURE else for_reason(fault_of(str(err)))


def for_failures(messages: Iterable[str]) -> int:
    """The status of a command that failed for these reasons (messages): the most
    specific one, no space first, then a held lock, else 1."""
    faults = {fault_of(m) for m in messages}
    for reason in (NoSpace.reason, StoreLocked.reason):
        if reason in faults:
            return _BY_REASON[reason]
    return EXIT_FAILURE
