"""The storage layer's one exception family.

Everything that goes wrong below ``controller.storage`` surfaces as a
:class:`StorageError`; callers (the reconcile layer) map the subclasses to
Kubernetes-style reasons. Each message names the object and what to do.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error raised by ``controller.storage``."""

    reason = "StorageError"


class InvalidName(StorageError):
    """A name or ID that may not reach the filesystem or a command line."""

    reason = "InvalidName"


class InvalidPodName(InvalidName):
    reason = "InvalidPodName"


class InvalidImageName(InvalidName):
    reason = "InvalidImageName"


class InvalidContainerName(InvalidName):
    reason = "InvalidContainerName"


class InvalidSandboxID(InvalidName):
    reason = "InvalidSandboxID"


class InvalidContainerID(InvalidName):
    """Malformed, or unknown to the store (the seed's ErrInvalidContainerID)."""

    reason = "InvalidContainerID"


class ContainerNotKnown(InvalidContainerID):
    """The store has no container by that ID or name."""

    reason = "ContainerNotFound"


class NameConflict(StorageError):
    """A name or ID is already held by a different container."""

    reason = "NameConflict"


class ImageNotFound(StorageError):
    """The image is not in the store (and was not to be pulled)."""

    reason = "ImageNotFound"


class ImagePullError(StorageError):
    """A pull failed; says which reference and what the registry answered."""

    reason = "ErrImagePull"

    def __init__(self, reference: str, detail: str) -> None:
        self.reference = reference
        self.detail = detail
        super().__init__(f"pulling image {reference!r} failed: {detail}")


class ImageInUse(StorageError):
    """An image still backs containers and cannot be removed."""

    reason = "ImageInUse"


class NotOurs(StorageError):
    """The container exists but podstore did not make it: it is never touched."""

    reason = "NotManaged"


class CommandError(StorageError):
    """A storage tool failed in a way no narrower error describes."""

    def __init__(self, tool: str, verb: str, returncode: int | None, stderr: str) -> None:
        self.tool = tool
        self.verb = verb
        self.returncode = returncode
        self.stderr = stderr.strip()
        what = "timed out" if returncode is None else f"exited {returncode}"
        super().__init__(f"{tool} {verb} {what}: {self.stderr or 'no output'}")


class CommandTimeout(CommandError):
    """A storage tool ran past its timeout and was killed."""


class ToolMissing(StorageError):
    """A tool podstore drives is not installed."""

    reason = "ToolMissing"


class StoreLocked(CommandError):
    """A storage tool waited too long for a lock of the store that another process holds."""

    reason = "StoreLocked"
    #: What every message of a held lock says (``controller.exitcodes`` looks for it).
    SAYS = "the store is locked by another process"

    def __init__(self, tool: str, verb: str, path: str, holder: str, seconds: float) -> None:
        self.path = path
        self.holder = holder
        super().__init__(tool, verb, None, "")
        self.args = (
            f"{self.SAYS}: {holder} holds {path}; {tool} {verb} "
            f"waited {seconds:.0f}s for it and was stopped. Wait for that process to finish "
            "or stop it, then try again",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class NoSpace(CommandError):
    """A storage tool failed because a filesystem it writes to is full."""

    reason = "NoSpace"
    #: What every message of a full filesystem says (``controller.exitcodes`` looks for it).
    SAYS = "no space left on "

    def __init__(self, tool: str, verb: str, returncode: int | None, path: str) -> None:
        self.path = path
        super().__init__(tool, verb, returncode, "")
        self.args = (
            f"{self.SAYS}{path} ({tool} {verb} failed): free some space there; "
            "nothing is lost and the next attempt continues",
        )

    def __str__(self) -> str:
        return str(self.args[0])
