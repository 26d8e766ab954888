"""The agent's API calls, as the emulator saw them, against the RBAC it is given.

A lifecycle run that exercises every kind of call the agent makes (watching, child
objects created, patched and deleted, status, finalizers, Events, an image pull
secret, orphan collection) is made with a token of the agent's own; every
(apiGroup, resource, verb) it used must be granted by the ClusterRole that
``manifests/rbac.yaml`` installs, and declared by ``controller.handlers.access``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.handlers.rbac import required_rules
from tests.e2e.agent import (
    CONTAINERS,
    NAMESPACE,
    PODS,
    agent_kubeconfig,
    agent_settings,
    pull_secret,
    ready_pod,
    running_agent,
    storage_container,
    storage_pod,
    wait_for_phase,
    wait_for_status,
    wait_gone,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"
TOKEN = "podstore-agent"


def triples(rules):
    """Every (apiGroup, resource, verb) a list of PolicyRules grants (no wildcards used)."""
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((group, resource, verb))
    return out


def granted_by_manifests():
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert len(roles) == 1, "manifests/rbac.yaml has one ClusterRole"
    return triples(roles[0]["rules"])


def used_by_agent(kube):
    return {p for r in kube.requests if r.user == TOKEN and (p := r.permission) is not None}


async def test_every_call_the_agent_makes_is_granted_by_the_cluster_role(
    kube, store, images, auth_registry, tmp_path
):
    settings = agent_settings(
        kube,
        store,
        images,
        kubeconfig=str(agent_kubeconfig(kube, tmp_path / "agent.kubeconfig", token=TOKEN)),
        insecure_registries=(images.registry_host, auth_registry.host),
        resync_interval=1,
        orphan_grace=1,
    )
    app = {"name": "app", "image": auth_registry.ref("busybox:1")}
    async with running_agent(settings):
        await kube.aio.create(pull_secret("regcred", auth_registry))
        await ready_pod(
            kube, storage_pod("web", containers=[app], imagePullSecrets=[{"name": "regcred"}])
        )
        await kube.aio.create(storage_container("tool", "web", images.busybox))
        await wait_for_phase(kube, CONTAINERS, "web-app", "Started")
        await wait_for_phase(kube, CONTAINERS, "tool", "Started")
        # templates changed (child patched) then removed (child deleted)
        await kube.aio.patch(
            PODS, NAMESPACE, "web", {"spec": {"containers": [dict(app, state="Stopped")]}}
        )
        await wait_for_phase(kube, CONTAINERS, "web-app", "Stopped")
        await kube.aio.patch(PODS, NAMESPACE, "web", {"spec": {"containers": []}})
        await wait_gone(kube, CONTAINERS, "web-app")
        await wait_for_status(kube, PODS, "web", where=lambda s: len(s["containers"]) == 1)
        await kube.aio.delete(PODS, NAMESPACE, "web")
        await wait_gone(kube, PODS, "web")
        # A container that only names the pod stays, waiting for it; deleting it is a user's.
        await wait_for_status(
            kube, CONTAINERS, "tool", where=lambda s: s.get("reason") == "PodNotFound"
        )
        await kube.aio.delete(CONTAINERS, NAMESPACE, "tool")
        await wait_gone(kube, CONTAINERS, "tool")
        # an orphan pass (lists both kinds) has run by the time these were seen
        await wait_until(lambda: ("podstore.dev", PODS, "list") in used_by_agent(kube))

    used = used_by_agent(kube)
    assert used >= {
        ("podstore.dev", PODS, "watch"),
        ("podstore.dev", CONTAINERS, "watch"),
        ("podstore.dev", CONTAINERS, "create"),
        ("podstore.dev", CONTAINERS, "patch"),
        ("podstore.dev", CONTAINERS, "delete"),
        ("podstore.dev", f"{PODS}/status", "patch"),
        ("podstore.dev", f"{CONTAINERS}/status", "patch"),
        ("", "secrets", "get"),
        ("", "events", "create"),
    }, "the run exercised the agent's calls"
    granted = granted_by_manifests()
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    declared = triples(required_rules())
    assert used <= declared, f"used but not derived from the code: {sorted(used - declared)}"
