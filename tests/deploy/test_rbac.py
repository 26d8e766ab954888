"""The agent's ClusterRole, in the chart and in manifests/, grants exactly what the code
calls: the rules controller.handlers.rbac.required_rules() derives from the kopf
registry and from the functions that call the API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from .common import MANIFESTS, find, load_objects, render_objects

pytestmark = pytest.mark.deploy

Triple = tuple[str, str, str]


def triples(rules: Iterable[dict[str, Any]]) -> set[Triple]:
    """A rule list as (apiGroup, resource, verb) triples: equal sets grant the same access."""
    found: set[Triple] = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    found.add((group, resource, verb))
    return found


def chart_rules() -> list[dict[str, Any]]:
    return list(find(render_objects(), "ClusterRole")["rules"])


def manifest_rules() -> list[dict[str, Any]]:
    return list(find(load_objects(MANIFESTS / "rbac.yaml"), "ClusterRole")["rules"])


ROLES = [
    pytest.param(chart_rules, id="chart"),
    pytest.param(manifest_rules, id="manifests"),
]


def test_the_chart_and_the_manifests_grant_the_same_access() -> None:
    assert triples(chart_rules()) == triples(manifest_rules())


@pytest.mark.parametrize("rules", ROLES)
def test_no_rule_uses_a_wildcard(rules: Any) -> None:
    wildcards = {t for t in triples(rules()) if "*" in t}
    assert wildcards == set()


@pytest.mark.parametrize("rules", ROLES)
def test_secrets_are_only_read_one_by_one(rules: Any) -> None:
    # get by name for a StoragePod's imagePullSecrets; list or watch would expose every
    # Secret of the cluster to every node.
    on_secrets = {t for t in triples(rules()) if t[1] == "secrets"}
    assert on_secrets == {("", "secrets", "get")}


@pytest.mark.parametrize("rules", ROLES)
def test_the_spec_is_never_replaced_only_patched(rules: Any) -> None:
    # GitOps: the agent writes status and its own finalizer (a metadata patch), never a
    # whole object, so it needs no update on the main resources.
    granted = triples(rules())
    for resource in ("storagepods", "storagecontainers"):
        assert ("podstore.dev", resource, "update") not in granted
        assert ("podstore.dev", resource, "deletecollection") not in granted


def test_the_rules_are_exactly_what_the_agent_needs() -> None:
    # Fails with ImportError until the handlers provide required_rules(): that is the point.
    from controller.handlers.rbac import required_rules

    needed = triples(required_rules())
    assert not {t for t in needed if "*" in t}
    for name, rules in [("chart", chart_rules()), ("manifests", manifest_rules())]:
        granted = triples(rules)
        assert (name, sorted(granted - needed), sorted(needed - granted)) == (name, [], []), (
            "(role, granted but not declared by the code, needed but not granted)"
        )


def test_every_resource_with_handlers_is_one_the_rbac_derivation_knows() -> None:
    # kopf has no public listing of a registry's handlers: the test reads its registries
    # (the product does not), so a handler added for a new resource fails here until
    # WATCHED (and so the ClusterRole) names it.
    from controller.config import Settings
    from controller.handlers.operator import EVENTS_ONLY, WATCHED, build_registry

    registry = build_registry(Settings(node_name="rbac-check"))

    def targets(*kinds: str) -> set[tuple[str, str, str]]:
        found = set()
        for kind in kinds:
            for handler in getattr(registry, kind).get_all_handlers():
                sel = handler.selector
                found.add((sel.group, sel.version, sel.plural or sel.any_name))
        return found

    # kopf's bookkeeping (finalizer, progress in status) for every resource with those
    assert targets("_indexing", "_spawning", "_changing") == set(WATCHED)
    assert targets("_watching") <= set(WATCHED) | set(EVENTS_ONLY)
    assert set(EVENTS_ONLY) <= targets("_watching")
