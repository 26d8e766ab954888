"""What to do for a StoragePod or StorageContainer: pure functions of spec and facts.

The kubelet's ``computePodActions`` in Python: :func:`plan_pod` and
:func:`plan_container` take the desired object, what was observed on the node
(:mod:`controller.reconcile.facts`), the time and the retry state, and return
a :class:`Plan`: the steps to run (:mod:`controller.reconcile.actions`) and,
when the decision needs no step's result, the outcome itself. After the steps
ran, :func:`pod_ready` and :func:`container_settled` give the status from the
facts and the steps' :class:`Results`; :func:`failed` and :func:`waiting` give
it when a step could not be done. No I/O here, no storage and no kopf: every
decision is a row in a table test (tests/unit/test_reconcile_plan.py).

Each plan is safe to repeat: storage IDs come from the object's UID, so a
second pass finds what the first made, and a pass over a node that matches
the spec has no steps and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from controller.reconcile import model
from controller.reconcile.actions import (
    Action,
    CreateContainer,
    CreateSandbox,
    Emit,
    Mount,
    NameLayer,
    PullImage,
    Remove,
    RenderConfig,
    Unmount,
    WriteTemplate,
)
from controller.reconcile.facts import Backoff, ContainerFacts, Dirs, PodFacts, Stored
from controller.reconcile.model import ContainerSpec, ObjectRef, PodSpec, SpecError
from controller.reconcile.status import Condition, merge_conditions, rfc3339

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
NEVER_PULL_RETRY = 30.0
STORAGE_RETRY = 10.0
# A pod usually becomes Ready within a pull; the agent asks the API again.
WAIT_FOR_POD = 1.0

# Reasons of a container that waits on its pod, not on anything of its own.
WAITING_ON_POD = frozenset({"PodNotReady", "PodNotFound"})


@dataclass(frozen=True)
class Context:
    """Who plans and when: the node, its defaults, the source label and the wall clock."""

    node_name: str
    infra_image: str = ""
    source: str = "agent"
    now: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What a reconcile found: the status to write, and when to look again."""

    status: dict[str, Any]
    retry_after: float | None = None
    failed: bool = False
    # An Event to post with the outcome (a first failure).
    event: Emit | None = None

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", ""))

    @property
    def reason(self) -> str:
        return str(self.status.get("reason") or "")


@dataclass(frozen=True)
class Plan:
    """The steps to run, then either ``outcome`` (decided already) or the settled status."""

    actions: tuple[Action, ...] = ()
    outcome: Outcome | None = None
    # For the status once the steps ran: whether this pass (re)mounts or unmounts,
    # and whether the container was made anew (its start and stop times restart).
    started_now: bool = False
    stopped_now: bool = False
    recreated: bool = False
    container_id: str = ""
    pod_id: str = ""
    spec: ContainerSpec | None = None


@dataclass(frozen=True)
class Created:
    """What a create step made: the container and where its directories are."""

    id: str
    dirs: Dirs
    image_name: str
    image_id: str
    created_at: int


@dataclass(frozen=True)
class Results:
    """What the executed steps returned, for the status."""

    created: Created | None = None
    mountpoint: str = ""


@dataclass(frozen=True)
class Object:
    """An API object as the plan reads it: its reference, generation and current status."""

    ref: ObjectRef
    generation: int = 0
    status: Mapping[str, Any] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Mapping[str, Any], kind: str) -> Object:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        return cls(
            ref=replace(ObjectRef.of(obj), kind=kind),
            generation=int(meta.get("generation") or 0),
            status=dict(obj.get("status") or {}),
            spec=spec if isinstance(spec, Mapping) else {},
        )


# -- labels ---------------------------------------------------------------------


def storage_labels(
    ref: ObjectRef, ctx: Context, user: Sequence[tuple[str, str]] = (), **extra: str
) -> dict[str, str]:
    """The labels in a storage container's metadata: the spec's (``user``), then the ones
    that tie it to its object (which win)."""
    labels = dict(user)
    labels |= {
        model.LABEL_KIND: ref.kind,
        model.LABEL_NAMESPACE: ref.namespace,
        model.LABEL_NAME: ref.name,
        model.LABEL_UID: ref.uid,
        model.LABEL_NODE: ctx.node_name,
        model.LABEL_SOURCE: ctx.source,
    }
    labels.update(extra)
    return labels


# -- images ----------------------------------------------------------------------


def pull_step(
    owner: ObjectRef,
    image: str,
    policy: str,
    present: bool | None,
    backoff: Backoff | None,
    secrets: Sequence[str],
    now: float,
) -> PullImage | Outcome | None:
    """Whether to pull: the step, None when the image is there as wanted, or a wait."""
    if policy == "Never":
        if not present:
            return _wait(
                "ErrImageNeverPull",
                f"image {image!r} is not on the node and imagePullPolicy is Never",
                NEVER_PULL_RETRY,
            )
        return None
    if present and policy == "IfNotPresent":
        return None
    if backoff is not None and now < backoff.until:
        return _wait(
            "ImagePullBackOff",
            f"Back-off pulling image {image!r}; retrying in {backoff.until - now:.0f}s",
            backoff.until - now,
        )
    return PullImage(owner, image, owner.namespace, tuple(secrets))


def next_backoff(previous: Backoff | None, now: float) -> Backoff:
    """The retry state after one more failed pull: 10 s, doubling, at most 5 minutes."""
    failures = (previous.failures if previous else 0) + 1
    delay = min(BACKOFF_INITIAL * 2 ** (failures - 1), BACKOFF_MAX)
    return Backoff(failures, now + delay)


def _wait(reason: str, message: str, delay: float) -> Outcome:
    """A marker outcome for "not yet": its status is filled in by :func:`waiting`."""
    return Outcome({"phase": "Pending", "reason": reason, "message": message}, retry_after=delay)


# -- pods --------------------------------------------------------------------------


def pod_spec(pod: Object, ctx: Context) -> PodSpec | Outcome:
    """The pod's typed spec, or the Failed outcome naming what is wrong."""
    try:
        return model.parse_pod_spec(pod.spec)
    except SpecError as err:
        return failed(pod, err.reason, str(err), ctx)


def plan_pod(
    pod: Object,
    facts: PodFacts,
    ctx: Context,
    backoff: Backoff | None = None,
    *,
    spec: PodSpec | None = None,
) -> Plan | None:
    """The steps that make the pod's sandbox exist; None when the pod is another node's."""
    if spec is None:
        parsed = pod_spec(pod, ctx)
        if isinstance(parsed, Outcome):
            return Plan(outcome=parsed)
        spec = parsed
    if spec.node_name != ctx.node_name:
        return None
    pod_id = model.pod_id_for(pod.ref.uid, spec.attempt)
    steps: list[Action] = []
    # A changed attempt makes a new sandbox; the old one goes.
    for old in facts.stored:
        if old.infra and old.id != pod_id:
            steps.append(Remove(old.id, sandbox=True))
            steps.append(
                Emit("Normal", "SandboxReplaced", f"attempt {spec.attempt}: old sandbox removed")
            )
    infra = _find(facts.stored, pod_id)
    if infra is None:
        image = spec.infra_image or ctx.infra_image
        problem = model.image_problem(image)
        if problem:
            where = "spec.infraImage" if spec.infra_image else "the agent's --infra-image"
            return Plan(outcome=failed(pod, "InvalidImageName", f"{where}: {problem}", ctx))
        pull = pull_step(
            pod.ref,
            image,
            spec.image_pull_policy,
            facts.image_present,
            backoff,
            spec.image_pull_secrets,
            ctx.now,
        )
        if isinstance(pull, Outcome):
            return Plan(tuple(steps), outcome=waiting(pod, pull, ctx), pod_id=pod_id)
        if pull is not None:
            steps.append(pull)
        steps.append(
            CreateSandbox(pod.ref, pod_id, image, spec.attempt, storage_labels(pod.ref, ctx))
        )
        steps.append(Emit("Normal", "SandboxCreated", f"infra container {pod_id[:12]}"))
    elif not infra.layer_named:
        steps.append(NameLayer(pod_id))
    return Plan(tuple(steps), pod_id=pod_id)


def pod_ready(
    pod: Object,
    plan: Plan,
    facts: PodFacts,
    results: Results,
    members: Sequence[Mapping[str, Any]],
    ctx: Context,
) -> Outcome:
    """The status of a pod whose sandbox exists, with its members' summary."""
    dirs = results.created.dirs if results.created else facts.dirs
    entries, containers_ready = member_summary(members)
    conditions = [
        Condition("SandboxReady", True, "SandboxCreated", f"infra container {plan.pod_id[:12]}"),
        containers_ready,
        Condition("Ready", True, "SandboxReady", ""),
        *kstatus(ready=True),
    ]
    status: dict[str, Any] = {
        "phase": "Ready",
        "podID": plan.pod_id,
        "nodeName": ctx.node_name,
        "workDir": dirs.work if dirs else "",
        "runDir": dirs.run if dirs else "",
        "containers": entries,
        "ready": containers_ready.message.split(" ", 1)[0],
        "conditions": merge_conditions(
            pod.status.get("conditions"), conditions, generation=pod.generation, now=ctx.now
        ),
        "observedGeneration": pod.generation,
        "reason": None,
        "message": None,
    }
    return Outcome(status)


def pod_summary(pod: Object, members: Sequence[Mapping[str, Any]], ctx: Context) -> dict[str, Any]:
    """The status patch that brings a Ready pod's member summary up to date ({} if none)."""
    entries, containers_ready = member_summary(members)
    wanted = {
        "containers": entries,
        "ready": containers_ready.message.split(" ", 1)[0],
        "conditions": merge_conditions(
            pod.status.get("conditions"),
            [containers_ready],
            generation=pod.generation,
            now=ctx.now,
        ),
    }
    patch = {k: v for k, v in wanted.items() if pod.status.get(k) != v}
    if list(patch) == ["conditions"] and _same_conditions(
        pod.status.get("conditions"), wanted["conditions"]
    ):
        return {}
    return patch


# The phases in which a member is in its desired state. A container asked to be
# Stopped that never ran is Created: it exists and is not mounted, as wanted.
SETTLED: Mapping[str, tuple[str, ...]] = {
    "Started": ("Started",),
    "Stopped": ("Stopped", "Created"),
}


def member_summary(
    members: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, str]], Condition]:
    """A pod's ``status.containers`` entries and its ContainersReady condition."""
    entries: list[dict[str, str]] = []
    ready = 0
    for member in sorted(members, key=lambda m: str((m.get("metadata") or {}).get("name"))):
        mstatus = member.get("status") or {}
        mspec = member.get("spec") or {}
        phase = str(mstatus.get("phase") or "Pending")
        entries.append(
            {
                "name": str((member.get("metadata") or {}).get("name")),
                "containerID": str(mstatus.get("containerID") or ""),
                "phase": phase,
            }
        )
        if phase in SETTLED.get(str(mspec.get("state") or "Started"), ()):
            ready += 1
    all_ready = ready == len(entries)
    return entries, Condition(
        "ContainersReady",
        all_ready,
        "AllContainersReady" if all_ready else "ContainersNotReady",
        f"{ready}/{len(entries)} containers in their desired state",
    )


# -- containers ----------------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """What a container's plan reads of its pod."""

    ref: ObjectRef
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodView:
        spec = pod.get("spec")
        return cls(
            replace(ObjectRef.of(pod), kind=model.POD_KIND),
            spec if isinstance(spec, Mapping) else {},
            pod.get("status") or {},
        )


def container_spec(ctr: Object, ctx: Context) -> ContainerSpec | Outcome:
    """The container's typed spec, or the Failed outcome naming what is wrong."""
    try:
        spec = model.parse_container_spec(ctr.spec)
        if not spec.pod_name:
            raise SpecError("spec.podName", "is required")
    except SpecError as err:
        return failed(ctr, err.reason, str(err), ctx)
    return spec


def sandbox_of(pod: PodView, sandbox_present: bool) -> str:
    """The pod's sandbox ID when it is made: from its status, or from the store."""
    pod_id = str(pod.status.get("podID") or "")
    if pod.status.get("phase") == "Ready" and pod_id:
        return pod_id
    # The pod's status may lag behind the store: its sandbox may be made already.
    try:
        attempt = model.parse_pod_spec(pod.spec).attempt
    except SpecError:
        return ""
    return model.pod_id_for(pod.ref.uid, attempt) if sandbox_present else ""


def plan_container(
    ctr: Object,
    pod: PodView | None,
    facts: ContainerFacts,
    ctx: Context,
    backoff: Backoff | None = None,
    *,
    spec: ContainerSpec | None = None,
) -> Plan | None:
    """The steps that bring the container to its spec; None when it is another node's."""
    if spec is None:
        parsed = container_spec(ctr, ctx)
        if isinstance(parsed, Outcome):
            return Plan(outcome=parsed)
        spec = parsed
    if pod is None:
        if ctr.status.get("nodeName") not in (None, "", ctx.node_name):
            return None
        return Plan(
            outcome=waiting(
                ctr,
                _wait(
                    "PodNotFound",
                    f"StoragePod {spec.pod_name!r} does not exist in namespace "
                    f"{ctr.ref.namespace!r}; create it",
                    WAIT_FOR_POD,
                ),
                ctx,
            )
        )
    if pod.spec.get("nodeName") != ctx.node_name:
        return None
    pod_id = sandbox_of(pod, facts.sandbox_present)
    try:
        pod_spec = model.parse_pod_spec(pod.spec)
    except SpecError as err:
        pod_spec, pod_id = None, ""
        why = f"its spec is not valid ({err})"
    else:
        why = f"{pod.status.get('phase') or 'no status'}"
    if not pod_id or pod_spec is None:
        return Plan(
            outcome=waiting(
                ctr,
                _wait(
                    "PodNotReady",
                    f"StoragePod {pod.ref.name!r} is not Ready yet ({why})",
                    WAIT_FOR_POD,
                ),
                ctx,
            )
        )
    return _converge(ctr, spec, pod, pod_spec, pod_id, facts, ctx, backoff)


def _converge(
    ctr: Object,
    spec: ContainerSpec,
    pod: PodView,
    pod_spec: PodSpec,
    pod_id: str,
    facts: ContainerFacts,
    ctx: Context,
    backoff: Backoff | None,
) -> Plan:
    cid = model.container_id_for(ctr.ref.uid, pod_id)
    steps: list[Action] = []
    # A container of this object under an older sandbox (pod re-created) goes.
    steps.extend(Remove(old.id) for old in facts.stored if old.id != cid)
    existing = _find(facts.stored, cid)
    recreated = False
    if existing is not None and not existing.layer_named:
        steps.append(NameLayer(cid))
    wanted_hash = spec.process_hash()
    labels = storage_labels(ctr.ref, ctx, spec.labels, **{model.LABEL_TEMPLATE: wanted_hash})
    if existing is not None and not same_image(existing, spec):
        steps.append(Remove(cid))
        steps.append(
            Emit(
                "Normal",
                "ImageChanged",
                f"image changed to {spec.image}: the container was re-created and its "
                "writable layer replaced",
            )
        )
        existing, recreated = None, True
    mounted = existing is not None and existing.mounted
    rendered = facts.rendered_root if existing is not None else ""
    if existing is None:
        pull = pull_step(
            ctr.ref,
            spec.image,
            spec.image_pull_policy,
            facts.image_present,
            backoff,
            pod_spec.image_pull_secrets,
            ctx.now,
        )
        if isinstance(pull, Outcome):
            return Plan(tuple(steps), outcome=waiting(ctr, pull, ctx), container_id=cid)
        if pull is not None:
            steps.append(pull)
        steps.append(CreateContainer(ctr.ref, pod.ref, cid, pod_id, pod_spec.attempt, spec, labels))
        steps.append(WriteTemplate(cid, spec, pod.ref, labels))
        steps.append(Emit("Normal", "Created", f"storage container {cid[:12]}"))
    elif existing.labels.get(model.LABEL_TEMPLATE) != wanted_hash or not facts.template_present:
        steps.append(WriteTemplate(cid, spec, pod.ref, labels, update_labels=True))
        mountpoint = rendered or str(ctr.status.get("mountPoint") or "")
        if mounted and mountpoint:
            # Without a known mountpoint the start below mounts and renders.
            steps.append(RenderConfig(cid, mountpoint))
        steps.append(Emit("Normal", "ConfigUpdated", "runtime config template rewritten"))
    started_now = stopped_now = False
    if spec.state == "Started":
        mountpoint = rendered or str(ctr.status.get("mountPoint") or "")
        if mounted and rendered:
            pass  # in step with the spec, whatever the status says yet
        elif mounted and mountpoint:
            # Only the rendered run config is gone: render it again, keep the mount.
            steps.append(RenderConfig(cid, mountpoint))
            steps.append(
                Emit("Warning", "ConfigRendered", "run config was missing; rendered again")
            )
        else:
            steps.append(Mount(cid))
            if ctr.status.get("phase") == "Started":
                steps.append(Emit("Warning", "Remounted", "was not mounted; mounted again"))
            else:
                steps.append(Emit("Normal", "Started", "mounted at {mountpoint}"))
            started_now = True
    elif mounted:
        steps.append(Unmount(cid))
        steps.append(Emit("Normal", "Stopped", "unmounted"))
        stopped_now = True
    return Plan(
        tuple(steps),
        started_now=started_now,
        stopped_now=stopped_now,
        recreated=recreated,
        container_id=cid,
        pod_id=pod_id,
        spec=spec,
    )


def container_settled(
    ctr: Object,
    plan: Plan,
    facts: ContainerFacts,
    results: Results,
    ctx: Context,
) -> Outcome:
    """The status of a container whose steps all ran: Started, Stopped or Created."""
    spec = plan.spec or model.parse_container_spec(ctr.spec)
    current = dict(ctr.status)
    if plan.recreated:
        current = {k: v for k, v in current.items() if k not in ("startedAt", "stoppedAt")}
    known = _find(facts.stored, plan.container_id) if not plan.recreated else None
    created = results.created
    dirs = created.dirs if created else facts.dirs
    if created is not None:
        image_name, image_id, created_at = created.image_name, created.image_id, created.created_at
    elif known is not None:
        image_name, image_id, created_at = known.image_name, known.image_id, known.created_at
    else:
        image_name, image_id, created_at = spec.image, "", 0
    status: dict[str, Any] = {
        "containerID": plan.container_id,
        "podID": plan.pod_id,
        "imageName": image_name,
        "imageID": image_id,
        "nodeName": ctx.node_name,
        "workDir": dirs.work if dirs else "",
        "runDir": dirs.run if dirs else "",
        "createdAt": rfc3339(created_at) if created_at else rfc3339(ctx.now),
    }
    run_dir = dirs.run if dirs else ""
    if spec.state == "Started":
        mountpoint = (
            results.mountpoint
            or (facts.rendered_root if known is not None else "")
            or str(current.get("mountPoint") or "")
        )
        started = None if plan.started_now else current.get("startedAt")
        status.update(
            phase="Started",
            mountPoint=mountpoint,
            configPath=f"{run_dir}/config.json",
            startedAt=started or rfc3339(ctx.now),
            stoppedAt=None,
        )
    else:
        stopped = None if plan.stopped_now else current.get("stoppedAt")
        was_started = bool(current.get("startedAt")) or current.get("phase") in (
            "Started",
            "Stopped",
        )
        status.update(
            # Never started yet: Created, as a container that exists but never ran.
            phase="Stopped" if was_started else "Created",
            mountPoint=None,
            configPath=None,
            stoppedAt=stopped or (rfc3339(ctx.now) if was_started else None),
        )
    ok_reason = "Started" if spec.state == "Started" else "Stopped"
    conditions = [
        Condition("Created", True, "Created", f"storage container {plan.container_id[:12]}"),
        Condition("Started", spec.state == "Started", ok_reason, ""),
        Condition("Ready", True, ok_reason, f"container is {ok_reason}"),
        *kstatus(ready=True),
    ]
    status["conditions"] = merge_conditions(
        current.get("conditions"), conditions, generation=ctr.generation, now=ctx.now
    )
    status["observedGeneration"] = ctr.generation
    status["reason"] = None
    status["message"] = None
    return Outcome(status)


# -- not ready: waiting or failed ----------------------------------------------------------


def kstatus(
    *, ready: bool, stalled: bool = False, reason: str = "", message: str = ""
) -> list[Condition]:
    """kstatus's abnormal-true conditions: Reconciling while on the way, Stalled when stuck.

    Flux, Argo CD's generic rules and ``kstatus`` read an object as current when
    neither is True (and ``observedGeneration`` matches).
    """
    if ready:
        return [
            Condition("Reconciling", False, "Reconciled", ""),
            Condition("Stalled", False, "Reconciled", ""),
        ]
    if stalled:
        return [
            Condition("Reconciling", False, reason, message),
            Condition("Stalled", True, reason, message),
        ]
    return [
        Condition("Reconciling", True, reason, message),
        Condition("Stalled", False, reason, ""),
    ]


# Waiting reasons that kstatus reads as Stalled: nothing podstore retries can cure.
# (A missing pod is Reconciling: it may be created, and the container comes with it.)
STALLED = frozenset({"ErrImageNeverPull"})


def waiting(obj: Object, wait: Outcome, ctx: Context) -> Outcome:
    """A resource that is not ready yet and may be later: Pending, with when to retry."""
    return _not_ready(
        obj,
        "Pending",
        wait.reason,
        str(wait.status.get("message") or ""),
        ctx,
        retry=wait.retry_after,
    )


def failed(obj: Object, reason: str, message: str, ctx: Context) -> Outcome:
    """A resource whose spec can never work as it is: Failed, and an Event the first time."""
    return _not_ready(obj, "Failed", reason, message, ctx)


def storage_trouble(obj: Object, message: str, ctx: Context) -> Outcome:
    """A storage step failed for a passing reason: Pending, tried again in a while."""
    return _not_ready(obj, "Pending", "StorageError", message, ctx, retry=STORAGE_RETRY)


def _not_ready(
    obj: Object,
    phase: str,
    reason: str,
    message: str,
    ctx: Context,
    *,
    retry: float | None = None,
) -> Outcome:
    now = ctx.now
    stuck = phase == "Failed" or reason in STALLED
    if obj.ref.kind == model.POD_KIND:
        conditions = [
            Condition("SandboxReady", False, reason, message),
            Condition("Ready", False, reason, message),
        ]
    else:
        conditions = [Condition("Ready", False, reason, message)]
    conditions += kstatus(ready=False, stalled=stuck, reason=reason, message=message)
    status: dict[str, Any] = {
        "phase": phase,
        "reason": reason,
        "message": message,
        "conditions": merge_conditions(
            obj.status.get("conditions"), conditions, generation=obj.generation, now=now
        ),
        "observedGeneration": obj.generation,
    }
    if obj.ref.kind == model.POD_KIND:
        status["nodeName"] = ctx.node_name
    first = phase == "Failed" and obj.status.get("phase") != "Failed"
    return Outcome(
        status,
        retry_after=retry,
        failed=phase == "Failed",
        event=Emit("Warning", reason, message) if first else None,
    )


# -- removal and orphans ---------------------------------------------------------------


def plan_removal(stored: Sequence[Stored], status_id: str = "") -> tuple[Remove, ...]:
    """Remove every storage container of a deleted object (sandboxes with their members)."""
    ids = [s.id for s in stored]
    steps = [Remove(s.id, sandbox=s.infra) for s in stored]
    if status_id and status_id not in ids:
        steps.append(Remove(status_id))
    return tuple(steps)


@dataclass(frozen=True)
class OrphanPlan:
    removals: tuple[Stored, ...]
    # When each orphan still in its grace period was first seen.
    seen: Mapping[str, float]


def plan_orphans(
    stored: Sequence[Stored],
    live_uids: frozenset[str] | set[str],
    first_seen: Mapping[str, float],
    now: float,
    grace: float,
) -> OrphanPlan:
    """This source's containers whose object is gone for longer than ``grace``."""
    removals: list[Stored] = []
    seen: dict[str, float] = {}
    for s in stored:
        if s.labels.get(model.LABEL_UID, "") in live_uids:
            continue
        first = first_seen.get(s.id, now)
        if now - first < grace:
            seen[s.id] = first
            continue
        removals.append(s)
    return OrphanPlan(tuple(removals), seen)


# -- helpers ----------------------------------------------------------------------------


def _find(stored: Sequence[Stored], container_id: str) -> Stored | None:
    return next((s for s in stored if s.id == container_id), None)


def same_image(existing: Stored, spec: ContainerSpec) -> bool:
    """Whether the stored container was made from the image the spec names."""
    if spec.image_id and not existing.image_id.startswith(spec.image_id):
        return False
    if existing.image_name == spec.image:
        return True
    have = model.parse_image(existing.image_name)
    return have is not None and have == spec.image_ref


def _same_conditions(a: Any, b: Any) -> bool:
    def key(items: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in items or ()
        )

    return key(a) == key(b)
