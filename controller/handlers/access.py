"""Which API verbs the agent's own calls use: declared where each call is made.

Every function of :mod:`controller.handlers.kube` that calls the API declares
with :func:`uses` the verbs it calls; :mod:`controller.handlers.rbac` adds what
kopf does for the resources the agent watches and derives the ClusterRole from
both, so RBAC can neither lag behind the code nor grant what the code does not do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# (apiGroup, resource, verb) triples declared by API-calling functions.
_DECLARED: set[tuple[str, str, str]] = set()


def uses(group: str, resource: str, *verbs: str) -> Callable[[F], F]:
    """Declare that the decorated function calls ``verbs`` on ``group/resource``."""

    def mark(func: F) -> F:
        for verb in verbs:
            _DECLARED.add((group, resource, verb))
        func.__podstore_access__ = tuple((group, resource, v) for v in verbs)  # type: ignore[attr-defined]
        return func

    return mark


def declared() -> frozenset[tuple[str, str, str]]:
    """The triples declared so far (every module that calls the API imported)."""
    return frozenset(_DECLARED)
