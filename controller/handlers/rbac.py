"""The ClusterRole the agent needs, derived from its code.

Two sources: the resources the operator's handlers watch
(:data:`controller.handlers.operator.WATCHED`: kopf lists, watches and patches
each, patches its status and posts Events about it; ``EVENTS_ONLY``: raw event
handlers, which kopf only lists and watches) and the verbs each API
call of :mod:`controller.handlers.kube` declares. The Helm chart's and the plain
manifests' ClusterRole are checked against :func:`required_rules`.
"""

from __future__ import annotations

from controller.handlers import kube  # noqa: F401 - its decorators declare the verbs
from controller.handlers.access import declared
from controller.handlers.operator import EVENTS_ONLY, WATCHED


def kopf_access() -> set[tuple[str, str, str]]:
    """What kopf itself does for the resources that have handlers."""
    triples: set[tuple[str, str, str]] = set()
    for group, _version, plural in EVENTS_ONLY:
        # Raw event handlers: kopf lists and watches, and writes nothing.
        triples.add((group, plural, "list"))
        triples.add((group, plural, "watch"))
    for group, _version, plural in WATCHED:
        for verb in ("list", "watch"):
            triples.add((group, plural, verb))
        # Finalizers and kopf's own progress bookkeeping are patches of the object;
        # status is patched through the status subresource.
        triples.add((group, plural, "patch"))
        triples.add((group, f"{plural}/status", "patch"))
    # kopf posts an Event for handler successes and failures.
    triples.add(("", "events", "create"))
    return triples


def required_triples() -> set[tuple[str, str, str]]:
    return kopf_access() | set(declared())


def required_rules() -> list[dict[str, list[str]]]:
    """The ClusterRole rules the agent needs: one rule per (group, resource)."""
    grouped: dict[tuple[str, str], set[str]] = {}
    for group, resource, verb in required_triples():
        grouped.setdefault((group, resource), set()).add(verb)
    return [
        {"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs)}
        for (group, resource), verbs in sorted(grouped.items())
    ]
