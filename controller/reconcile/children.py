"""A StoragePod's ``spec.containers``, as the StorageContainers it owns.

Pure functions: :func:`desired_children` builds the objects from the pod,
:func:`plan_children` compares them with the ones that exist and says what
to create, patch and delete, and :func:`planned_members` says what the pod's members
are once the plan is applied (what its member summary is computed from). The operator
applies the plan through the API; the manifest-file mode applies it to its own object set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.api import schema
from controller.reconcile import model
from controller.reconcile.status import merge_patch

# The fields of a container template that a StorageContainer's spec carries: all of them
# (the template's own name aside), as the API's one source lists them.
TEMPLATE_FIELDS = tuple(schema.CONTAINER_TEMPLATE)
# Fields the API server defaults: a template that drops one leaves the child's default.
_DEFAULTED = frozenset(k for k, v in schema.CONTAINER_TEMPLATE.items() if "default" in v)
OWNER_LABEL = "podstore.dev/pod"


def desired_children(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The StorageContainer objects a pod's container templates make."""
    meta = pod.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "default")
    spec = pod.get("spec") or {}
    out: list[dict[str, Any]] = []
    for template in spec.get("containers") or []:
        child_spec: dict[str, Any] = {"podName": name}
        for key in TEMPLATE_FIELDS:
            if key in template and template[key] is not None:
                child_spec[key] = template[key]
        child_meta: dict[str, Any] = {
            "name": model.child_name(name, str(template["name"])),
            "namespace": namespace,
            "labels": {OWNER_LABEL: name, "podstore.dev/container": str(template["name"])},
        }
        if meta.get("uid"):
            child_meta["ownerReferences"] = [
                {
                    "apiVersion": model.API_VERSION,
                    "kind": model.POD_KIND,
                    "name": name,
                    "uid": str(meta["uid"]),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        out.append(
            {
                "apiVersion": model.API_VERSION,
                "kind": model.CONTAINER_KIND,
                "metadata": child_meta,
                "spec": child_spec,
            }
        )
    return out


def owned_by(child: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether ``child`` was made from ``pod``'s templates (by owner UID or label)."""
    pod_meta = pod.get("metadata") or {}
    meta = child.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == model.POD_KIND and owner.get("uid") == pod_meta.get("uid"):
            return True
    labels = meta.get("labels") or {}
    return bool(labels.get(OWNER_LABEL) == pod_meta.get("name") and not pod_meta.get("uid"))


@dataclass(frozen=True)
class ChildPlan:
    create: list[dict[str, Any]] = field(default_factory=list)
    # (name, spec merge patch) for children whose spec differs
    update: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def plan_children(pod: Mapping[str, Any], existing: Sequence[Mapping[str, Any]]) -> ChildPlan:
    """What to do so that the pod's owned StorageContainers match its templates.

    ``existing`` are the StorageContainers in the pod's namespace that name
    it; only the ones the pod owns are changed or deleted.
    """
    wanted = {c["metadata"]["name"]: c for c in desired_children(pod)}
    owned = {str((c.get("metadata") or {}).get("name")): c for c in existing if owned_by(c, pod)}
    others = {str((c.get("metadata") or {}).get("name")) for c in existing} - set(owned)
    plan = ChildPlan()
    for name, child in wanted.items():
        have = owned.get(name)
        if have is None:
            if name not in others:  # never take over an object someone else made
                plan.create.append(child)
            continue
        patch = _spec_patch(have.get("spec") or {}, child["spec"])
        if patch:
            plan.update.append((name, patch))
    plan.delete.extend(sorted(name for name in owned if name not in wanted))
    return plan


def _spec_patch(have: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key in TEMPLATE_FIELDS:
        if key in want:
            if have.get(key) != want[key]:
                patch[key] = want[key]
        elif key in have and key not in _DEFAULTED:
            patch[key] = None  # removed from the template
    return patch


def planned_members(
    existing: Sequence[Mapping[str, Any]], plan: ChildPlan
) -> list[Mapping[str, Any]]:
    """The pod's members once ``plan`` is applied: the deleted ones gone, the patched ones
    with their new spec, the created ones there with no status yet (Pending)."""
    updates = dict(plan.update)
    gone = set(plan.delete)
    out: list[Mapping[str, Any]] = []
    for member in existing:
        name = str((member.get("metadata") or {}).get("name"))
        if name in gone:
            continue
        patch = updates.get(name)
        out.append(
            member
            if patch is None
            else dict(member, spec=merge_patch(member.get("spec") or {}, patch))
        )
    made = {str((m.get("metadata") or {}).get("name")) for m in out}
    out.extend(c for c in plan.create if c["metadata"]["name"] not in made)
    return out
