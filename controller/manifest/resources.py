"""The resources of ``podstore run``: manifests made into API objects.

:func:`build` is what the API server and the garbage collector would do with a
folder of manifests applied again and again: give each object its UID
(:func:`~controller.manifest.state.uid_for`, stable across runs), a
``metadata.generation`` that grows when its spec changes, a creation time, and
its last status; check updates against the CRDs' transition rules (an
immutable field stays as it was); make a StoragePod's ``spec.containers`` into
the StorageContainers it owns with the operator's own
:func:`~controller.reconcile.plan_children`; and say which resources are gone.

A pure function of what was read and what was there before: it touches no
storage, so every rule here is tested without a store.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller import crds
from controller.manifest.loader import Document, Key, Loaded, Problem
from controller.manifest.state import Entry, key_of, spec_hash, uid_for
from controller.reconcile import desired_children, model, plan_children


@dataclass
class Built:
    """The resources that exist now, those to remove, and what was wrong."""

    entries: dict[Key, Entry] = field(default_factory=dict)
    removed: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def build(loaded: Loaded, previous: Sequence[Entry], *, now: str) -> Built:
    """The resource set after applying ``loaded`` over ``previous`` at time ``now``."""
    before = {e.key: e for e in previous}
    out = Built()
    for doc in loaded.documents:
        old = before.get(doc.key)
        if old is not None and not old.deleting:
            transition = _transition_problems(old.obj, doc.obj)
            if transition:
                out.problems.extend(
                    Problem(doc.file, doc.document, p.path, p.message) for p in transition
                )
                out.entries[doc.key] = old
                continue
        out.entries[doc.key] = _entry(doc, old, now)
    for key, old in before.items():
        if key in out.entries or old.owner is not None:
            continue
        if not old.deleting and loaded.keeps(key, old.file):
            out.entries[key] = old
        else:
            out.removed.append(old)
    _keep_first_child(out, loaded, before)
    explicit = {k for k, e in out.entries.items() if k.kind == model.CONTAINER_KIND}
    for pod_key in [k for k in list(out.entries) if k.kind == model.POD_KIND]:
        _children(out, out.entries[pod_key], before, explicit, now)
    removed = {e.key for e in out.removed}
    for key, old in before.items():
        if key not in out.entries and key not in removed:
            out.removed.append(old)  # owned by a pod that is gone
    return out


def _keep_first_child(out: Built, loaded: Loaded, before: Mapping[Key, Entry]) -> None:
    """A standalone StorageContainer named like a container its pod's template made
    before is the newcomer: the pod's keeps its place and the newcomer is reported."""
    for doc in loaded.documents:
        old = before.get(doc.key)
        if doc.key.kind != model.CONTAINER_KIND or old is None or old.owner is None:
            continue
        if old.deleting:
            continue
        pod = out.entries.get(old.owner)
        if pod is None or doc.key not in {key_of(c) for c in desired_children(pod.obj)}:
            continue  # the template that made it is gone: the standalone one takes over
        out.entries.pop(doc.key, None)
        out.problems.append(
            Problem(
                doc.file,
                doc.document,
                "metadata.name",
                f"{doc.key} is already made by {old.owner}'s spec.containers"
                f"{' in ' + pod.where if pod.where else ''}; that one is kept and this "
                "document is not applied: rename one of them",
            )
        )


def _entry(doc: Document, old: Entry | None, now: str) -> Entry:
    obj = copy.deepcopy(doc.obj)
    _identify(obj, doc.key, spec_hash(obj.get("spec")), old, now)
    return Entry(obj, spec_hash(obj.get("spec")), doc.file, doc.document)


def _identify(obj: dict[str, Any], key: Key, digest: str, old: Entry | None, now: str) -> None:
    """Give an object its UID, generation, creation time and last status."""
    meta = obj.setdefault("metadata", {})
    meta["uid"] = uid_for(key)
    if old is not None and not old.deleting:
        old_meta = old.obj.get("metadata") or {}
        generation = int(old_meta.get("generation") or 1)
        meta["generation"] = generation + (1 if digest != old.spec_hash else 0)
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or now
        if old.status:
            obj["status"] = copy.deepcopy(old.status)
    else:
        meta["generation"] = 1
        meta["creationTimestamp"] = now


def _transition_problems(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[crds.SchemaProblem]:
    """What the API server would refuse in this update (immutable fields)."""
    before = {k: v for k, v in old.items() if k != "status"}
    return crds.validate_update(before, new)


def _children(
    out: Built, pod: Entry, before: Mapping[Key, Entry], explicit: set[Key], now: str
) -> None:
    """Apply the pod's child plan to the resource set, as the agent applies it to the API."""
    pod_key = pod.key
    wanted = desired_children(pod.obj)
    for i, child in enumerate(wanted):
        key = key_of(child)
        if key in explicit:
            other = out.entries[key]
            out.problems.append(
                Problem(
                    pod.file,
                    pod.document,
                    f"spec.containers[{i}].name",
                    f"makes {key}, which {other.where or 'another manifest'} defines as well; "
                    "that one is kept and this template is not applied: rename one of them",
                )
            )
    owned = [e for e in before.values() if e.owner == pod_key and e.key not in explicit]
    members = [
        e.obj
        for k, e in out.entries.items()
        if k in explicit
        and k.namespace == pod_key.namespace
        and (e.obj.get("spec") or {}).get("podName") == pod_key.name
    ]
    plan = plan_children(pod.obj, [e.obj for e in owned] + members)
    updates = dict(plan.update)
    for old in owned:
        name = old.key.name
        if name in plan.delete:
            out.removed.append(old)
            continue
        if old.deleting:
            continue  # was being removed; made again below if the pod wants it
        if name in updates:
            obj = copy.deepcopy(old.obj)
            spec = obj.setdefault("spec", {})
            for field_name, value in updates[name].items():
                if value is None:
                    spec.pop(field_name, None)
                else:
                    spec[field_name] = value
            obj = crds.apply_defaults(obj)
            digest = spec_hash(obj.get("spec"))
            _identify(obj, old.key, digest, old, now)
            out.entries[old.key] = Entry(obj, digest, pod.file, pod.document, owner=pod_key)
        else:
            old.file, old.document = pod.file, pod.document
            out.entries[old.key] = old
    creates = list(plan.create)
    # A child still being removed is not in `owned` as a live one: make it again.
    live_owned = {e.key for e in owned if not e.deleting}
    creates += [c for c in wanted if key_of(c) not in live_owned and c not in creates]
    for child in creates:
        key = key_of(child)
        if key in explicit or key in out.entries:
            continue
        obj = crds.apply_defaults(child)
        _identify(obj, key, spec_hash(obj.get("spec")), before.get(key), now)
        out.entries[key] = Entry(
            obj, spec_hash(obj.get("spec")), pod.file, pod.document, owner=pod_key
        )
