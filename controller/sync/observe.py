"""The observe step: what the store holds for one object, as facts the plan reads.

Everything comes from the pass's :class:`NodeView` (one listing of the store)
and, for the container the plan will look at, two file checks in its
directories; a directory is asked of the store only when the object's status
does not name it already. Nothing here decides anything.
"""

from __future__ import annotations

import os

from controller.reconcile import model
from controller.reconcile.facts import ContainerFacts, Dirs, PodFacts, Stored
from controller.reconcile.model import ContainerSpec, PodSpec
from controller.reconcile.plan import Object, PodView, same_image, sandbox_of
from controller.storage import ManagedContainer
from controller.storage.runtime import CONFIG_FILE, rendered_root
from controller.sync.view import NodeView


def stored(view: NodeView, container: ManagedContainer) -> Stored:
    meta = container.metadata
    return Stored(
        id=container.id,
        infra=container.infra,
        pod_id=meta.pod_id,
        mounted=view.is_mounted(container.id),
        layer_named=not view.layer_unnamed(container.id),
        image_name=meta.image_name,
        image_id=meta.image_id,
        created_at=meta.created_at,
        labels=dict(meta.labels),
    )


def of_uid(view: NodeView, uid: str) -> tuple[Stored, ...]:
    """podstore's storage containers of the object with this UID."""
    return tuple(stored(view, c) for c in view.where(**{model.LABEL_UID: uid}))


def dirs(view: NodeView, container_id: str, status: Object) -> Dirs:
    """The work and run dirs: from the status when they are this container's."""
    work = str(status.status.get("workDir") or "")
    run = str(status.status.get("runDir") or "")
    if container_id in work and container_id in run:
        return Dirs(work, run)
    runtime = view.runtime
    return Dirs(runtime.get_work_dir(container_id), runtime.get_run_dir(container_id))


def pod(view: NodeView, obj: Object, spec: PodSpec, infra_image: str) -> PodFacts:
    mine = of_uid(view, obj.ref.uid)
    pod_id = model.pod_id_for(obj.ref.uid, spec.attempt)
    if any(s.id == pod_id for s in mine):
        return PodFacts(stored=mine, dirs=dirs(view, pod_id, obj))
    image = spec.infra_image or infra_image
    if model.parse_image(image) is None:
        return PodFacts(stored=mine)  # the plan fails it, naming the reference
    return PodFacts(stored=mine, image_present=view.runtime.images.resolve(image) is not None)


def container(
    view: NodeView, obj: Object, spec: ContainerSpec, pod_view: PodView | None
) -> ContainerFacts:
    mine = of_uid(view, obj.ref.uid)
    if pod_view is None:
        return ContainerFacts(stored=mine)
    sandbox_present = False
    if not (pod_view.status.get("phase") == "Ready" and pod_view.status.get("podID")):
        try:
            attempt = model.parse_pod_spec(pod_view.spec).attempt
        except model.SpecError:
            return ContainerFacts(stored=mine)
        found = view.get(model.pod_id_for(pod_view.ref.uid, attempt))
        sandbox_present = found is not None and found.infra
    pod_id = sandbox_of(pod_view, sandbox_present)
    if not pod_id:
        return ContainerFacts(stored=mine)
    cid = model.container_id_for(obj.ref.uid, pod_id)
    target = next((s for s in mine if s.id == cid), None)
    if target is not None and same_image(target, spec):
        where = dirs(view, cid, obj)
        return ContainerFacts(
            stored=mine,
            dirs=where,
            template_present=os.path.exists(os.path.join(where.work, CONFIG_FILE)),
            rendered_root=rendered_root(where.run),
            sandbox_present=sandbox_present,
        )
    present = view.runtime.images.resolve(spec.image) is not None
    return ContainerFacts(stored=mine, image_present=present, sandbox_present=sandbox_present)
