"""One way for test helpers to run a tool.

Every helper runs its tool through :func:`run`: an argument list (never a shell), a
timeout, and on failure a :class:`CommandFailed` that carries the command, its exit
status and both outputs, so that a failing fixture says what the tool said.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence
from os import PathLike

log = logging.getLogger("tests.support")

Arg = str | PathLike[str]


class CommandFailed(RuntimeError):
    """A tool exited non-zero or ran past its timeout."""

    def __init__(
        self, args: Sequence[str], returncode: int | None, stdout: str, stderr: str
    ) -> None:
        self.args_list = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(
            f"{shlex.join(self.args_list)} {status}\n"
            f"--- stderr ---\n{stderr.strip()}\n--- stdout ---\n{stdout.strip()[:4000]}"
        )


def run(
    args: Sequence[Arg],
    *,
    timeout: float = 120,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` to completion and return what it printed.

    ``check`` raises :class:`CommandFailed` on a non-zero exit; a timeout always raises
    (the child is killed by :func:`subprocess.run`).
    """
    argv = [str(a) for a in args]
    log.debug("run: %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise CommandFailed(argv, None, _text(err.stdout), _text(err.stderr)) from err
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout, proc.stderr)
    return proc


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data
