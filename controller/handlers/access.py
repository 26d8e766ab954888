"""Which Kubernetes API access the agent needs, derived from its code.

Two sources, both in the code itself: the kopf registry (every resource
with handlers is listed, watched and patched by kopf, and events are
posted about it) and the functions of :mod:`controller.handlers.kube`,
each of which declares with :func:`uses` the one API verb it calls. The
Helm chart's and the plain manifests' ClusterRole are checked against
:func:`required_rules`, so RBAC can neither lag behind the code nor grant
what the code does not do.
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


def kopf_access(registry: Any) -> set[tuple[str, str, str]]:
    """What kopf itself does for the resources that have handlers in ``registry``."""
    triples: set[tuple[str, str, str]] = set()
    watched: set[tuple[str, str]] = set()
    kept: set[tuple[str, str]] = set()  # with kopf's bookkeeping (finalizer, progress)
    for handlers, bookkeeping in (
        (registry._indexing, True),
        (registry._watching, False),  # raw event handlers: kopf writes nothing
        (registry._spawning, True),
        (registry._changing, True),
    ):
        for handler in handlers.get_all_handlers():
            selector = handler.selector
            if selector is not None:
                resource = (selector.group or "", selector.plural or selector.any_name or "")
                watched.add(resource)
                if bookkeeping:
                    kept.add(resource)
    for group, plural in watched:
        for verb in ("list", "watch"):
            triples.add((group, plural, verb))
    for group, plural in kept:
        # Finalizers and kopf's own progress bookkeeping are patches of the object;
        # status is patched through the status subresource.
        triples.add((group, plural, "patch"))
        triples.add((group, f"{plural}/status", "patch"))
    # kopf posts an Event for handler successes and failures.
    triples.add(("", "events", "create"))
    return triples


def required_triples() -> set[tuple[str, str, str]]:
    from controller.handlers import kube  # noqa: F401 - its decorators fill _DECLARED
    from controller.handlers.operator import registry

    return kopf_access(registry) | _DECLARED


def required_rules() -> list[dict[str, list[str]]]:
    """The ClusterRole rules the agent needs: one rule per (group, resource)."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in required_triples():
        grouped.setdefault((group, resource), set()).add(verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(grouped.items())
    ]
