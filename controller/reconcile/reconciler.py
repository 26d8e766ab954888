"""What to do for a StoragePod or StorageContainer: move the store toward the spec.

This is the lifecycle, once, for both the operator and the manifest-file
mode; neither kopf nor any API client is imported here. Callers hand in the
object (a dict as the API returns it) and what it refers to, and get back the
status it should have and whether to come back later. Everything the
reconciler does to the node goes through ``controller.storage``; what it
learns about the node comes from a :class:`NodeView`, so a pass over many
objects lists the store once.

Each call is safe to repeat and to interrupt: storage IDs are derived from
the object's UID, so a second try finds what the first one made, and
nothing is written when the node already matches the spec.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from controller.reconcile import model
from controller.reconcile.model import ContainerSpec, ObjectRef, SpecError
from controller.reconcile.status import Condition, merge_conditions, rfc3339, status_patch
from controller.reconcile.view import NodeView
from controller.storage import (
    ContainerInfo,
    ManagedContainer,
    ProcessSpec,
    RuntimeContainerMetadata,
    RuntimeService,
    build_template,
)
from controller.storage.auth import temporary_auth_file
from controller.storage.errors import (
    ImagePullError,
    InvalidContainerID,
    InvalidName,
    NameConflict,
    StorageError,
)
from controller.storage.names import image_reference
from controller.storage.ocispec import InvalidRuntimeConfig
from controller.storage.runtime import rendered_root

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
NEVER_PULL_RETRY = 30.0
WAIT_FOR_POD = 1.0  # a pod usually becomes Ready within a pull; the agent asks the API again


class SecretSource(Protocol):
    """Where image pull secrets come from (the API, or manifest files)."""

    def docker_config(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


class EventSink(Protocol):
    """Where Kubernetes-style events go."""

    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


class _NoEvents:
    def emit(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        log.info("%s %s: %s", ObjectRef.of(obj), reason, message)


@dataclass(frozen=True)
class Outcome:
    """What a reconcile found: the status to write, and when to look again."""

    status: dict[str, Any]
    retry_after: float | None = None
    failed: bool = False

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", ""))


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class Reconciler:
    def __init__(
        self,
        runtime: RuntimeService,
        *,
        node_name: str,
        infra_image: str,
        source: str = "agent",
        secrets: SecretSource | None = None,
        events: EventSink | None = None,
        view: NodeView | None = None,
        clock: Callable[[], float] = time.time,
        orphan_grace: float = 60.0,
    ) -> None:
        self.runtime = runtime
        self.node_name = node_name
        self.infra_image = infra_image
        self.source = source
        self.secrets = secrets
        self.events: EventSink = events or _NoEvents()
        self.view = view or NodeView(runtime)
        self.clock = clock
        self.orphan_grace = orphan_grace
        self._lock = threading.Lock()
        self._backoff: dict[tuple[str, str], _Backoff] = {}
        self._orphans_seen: dict[str, float] = {}

    # -- ownership ------------------------------------------------------------

    def owns_pod(self, pod: Mapping[str, Any]) -> bool:
        spec = pod.get("spec") or {}
        return isinstance(spec, Mapping) and spec.get("nodeName") == self.node_name

    def _labels(self, ref: ObjectRef, **extra: str) -> dict[str, str]:
        labels = {
            model.LABEL_KIND: ref.kind,
            model.LABEL_NAMESPACE: ref.namespace,
            model.LABEL_NAME: ref.name,
            model.LABEL_UID: ref.uid,
            model.LABEL_NODE: self.node_name,
            model.LABEL_SOURCE: self.source,
        }
        labels.update(extra)
        return labels

    # -- pods -----------------------------------------------------------------

    def reconcile_pod(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]] = ()
    ) -> Outcome | None:
        """Make the pod's sandbox exist; None when the pod belongs to another node."""
        ref = ObjectRef.of(pod)
        ref = replace(ref, kind=model.POD_KIND)
        current = dict(pod.get("status") or {})
        generation = int((pod.get("metadata") or {}).get("generation") or 0)
        try:
            spec = model.parse_pod_spec(pod.get("spec") or {})
        except SpecError as err:
            return self._pod_outcome(current, generation, "Failed", err.reason, str(err))
        if spec.node_name != self.node_name:
            return None
        pod_id = model.pod_id_for(ref.uid, spec.attempt)
        # A changed attempt makes a new sandbox; the old one goes.
        for old in self.view.where(**{model.LABEL_UID: ref.uid}):
            if old.infra and old.id != pod_id:
                self._remove_sandbox(old.id)
                self.events.emit(
                    pod, "Normal", "SandboxReplaced", f"attempt {spec.attempt}: old sandbox removed"
                )
        infra = self.view.get(pod_id)
        if infra is None:
            image = spec.infra_image or self.infra_image
            try:
                self._pull_if_needed(
                    pod, ref, image, spec.image_pull_policy, spec.image_pull_secrets
                )
                info = self.runtime.create_pod_sandbox(
                    pod_name=model.sandbox_name(ref, spec.attempt),
                    pod_id=pod_id,
                    image_name=image,
                    container_name=model.infra_name(ref, spec.attempt),
                    metadata_name=ref.name,
                    uid=ref.uid,
                    namespace=ref.namespace,
                    attempt=spec.attempt,
                    labels=self._labels(ref),
                )
            except _Waiting as wait:
                return self._pod_outcome(
                    current, generation, "Pending", wait.reason, wait.message, retry=wait.delay
                )
            except (InvalidName, InvalidRuntimeConfig) as err:
                self.events.emit(pod, "Warning", err.reason, str(err))
                return self._pod_outcome(current, generation, "Failed", err.reason, str(err))
            except NameConflict as err:
                return self._pod_outcome(current, generation, "Failed", "NameConflict", str(err))
            except StorageError as err:
                self.view.invalidate()
                return self._pod_outcome(
                    current, generation, "Pending", "StorageError", str(err), retry=10.0
                )
            self._adopted(info)
            self.events.emit(pod, "Normal", "SandboxCreated", f"infra container {info.id[:12]}")
            work_dir, run_dir = info.dir, info.run_dir
        else:
            self._finish_layer_name(infra)
            work_dir, run_dir = self._dirs(infra.id, current)
        return self._pod_ready(pod, current, generation, pod_id, work_dir, run_dir, members)

    def _pod_ready(
        self,
        pod: Mapping[str, Any],
        current: Mapping[str, Any],
        generation: int,
        pod_id: str,
        work_dir: str,
        run_dir: str,
        members: Sequence[Mapping[str, Any]],
    ) -> Outcome:
        entries, containers_ready = member_summary(members)
        now = self.clock()
        conditions = [
            Condition("SandboxReady", True, "SandboxCreated", f"infra container {pod_id[:12]}"),
            containers_ready,
            Condition("Ready", True, "SandboxReady", ""),
        ]
        status = {
            "phase": "Ready",
            "podID": pod_id,
            "nodeName": self.node_name,
            "workDir": work_dir,
            "runDir": run_dir,
            "containers": entries,
            "conditions": merge_conditions(
                current.get("conditions"), conditions, generation=generation, now=now
            ),
            "observedGeneration": generation,
            "reason": None,
            "message": None,
        }
        return Outcome(status)

    def reconcile_pod_summary(
        self, pod: Mapping[str, Any], members: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """The status patch that brings a Ready pod's member summary up to date."""
        current = pod.get("status") or {}
        generation = int((pod.get("metadata") or {}).get("generation") or 0)
        entries, containers_ready = member_summary(members)
        wanted = {
            "containers": entries,
            "conditions": merge_conditions(
                current.get("conditions"),
                [containers_ready],
                generation=generation,
                now=self.clock(),
            ),
        }
        patch = status_patch(current, wanted)
        if list(patch) == ["conditions"] and _same_conditions(
            current.get("conditions"), wanted["conditions"]
        ):
            return {}
        return patch

    def _pod_outcome(
        self,
        current: Mapping[str, Any],
        generation: int,
        phase: str,
        reason: str,
        message: str,
        *,
        retry: float | None = None,
    ) -> Outcome:
        """A pod that is not Ready: Pending while it may still succeed, else Failed."""
        conditions = [
            Condition("SandboxReady", False, reason, message),
            Condition("Ready", False, reason, message),
        ]
        return Outcome(
            {
                "phase": phase,
                "nodeName": self.node_name,
                "reason": reason,
                "message": message,
                "conditions": merge_conditions(
                    current.get("conditions"), conditions, generation=generation, now=self.clock()
                ),
                "observedGeneration": generation,
            },
            retry_after=retry,
            failed=phase == "Failed",
        )

    def delete_pod(self, pod: Mapping[str, Any]) -> None:
        """Remove every storage container of the pod: members first, then infra."""
        ref = ObjectRef.of(pod)
        self.view.refresh()
        sandboxes = [c for c in self.view.where(**{model.LABEL_UID: ref.uid}) if c.infra]
        for infra in sandboxes:
            self._remove_sandbox(infra.id)
        with self._lock:
            self._backoff = {k: v for k, v in self._backoff.items() if k[0] != ref.uid}

    def _remove_sandbox(self, pod_id: str) -> None:
        members = [c.id for c in self.view.containers() if c.metadata.pod_id == pod_id]
        self.runtime.remove_pod_sandbox(pod_id)
        self.view.forget([*members, pod_id])

    # -- containers -----------------------------------------------------------

    def reconcile_container(
        self, ctr: Mapping[str, Any], pod: Mapping[str, Any] | None
    ) -> Outcome | None:
        """Make the container exist, mounted or not per ``state``; None if not this node's."""
        ref = replace(ObjectRef.of(ctr), kind=model.CONTAINER_KIND)
        current = dict(ctr.get("status") or {})
        generation = int((ctr.get("metadata") or {}).get("generation") or 0)
        try:
            spec = model.parse_container_spec(ctr.get("spec") or {})
            if not spec.pod_name:
                raise SpecError("spec.podName", "is required")
            image_reference(spec.image)
        except SpecError as err:
            return self._ctr_outcome(ctr, current, generation, "Failed", err.reason, str(err))
        except InvalidName as err:
            return self._ctr_outcome(
                ctr, current, generation, "Failed", "InvalidImageName", str(err)
            )
        if pod is None:
            if current.get("nodeName") not in (None, "", self.node_name):
                return None
            return self._ctr_outcome(
                ctr,
                current,
                generation,
                "Pending",
                "PodNotFound",
                f"StoragePod {spec.pod_name!r} does not exist in namespace {ref.namespace!r}; "
                "create it",
                retry=WAIT_FOR_POD,
            )
        if not self.owns_pod(pod):
            return None
        pod_ref = replace(ObjectRef.of(pod), kind=model.POD_KIND)
        pod_status = pod.get("status") or {}
        pod_id = str(pod_status.get("podID") or "")
        if pod_status.get("phase") != "Ready" or not pod_id:
            # The pod's status may lag behind the store: its sandbox may be made already.
            pod_id = self._sandbox_made(pod, pod_ref) or ""
        if not pod_id:
            return self._ctr_outcome(
                ctr,
                current,
                generation,
                "Pending",
                "PodNotReady",
                f"StoragePod {pod_ref.name!r} is not Ready yet "
                f"({pod_status.get('phase') or 'no status'})",
                retry=WAIT_FOR_POD,
            )
        try:
            return self._converge_container(
                ctr, ref, spec, pod, pod_ref, pod_id, current, generation
            )
        except _Waiting as wait:
            return self._ctr_outcome(
                ctr, current, generation, "Pending", wait.reason, wait.message, retry=wait.delay
            )
        except (InvalidName, InvalidRuntimeConfig, NameConflict) as err:
            self.events.emit(ctr, "Warning", err.reason, str(err))
            return self._ctr_outcome(ctr, current, generation, "Failed", err.reason, str(err))
        except StorageError as err:
            self.view.invalidate()
            self.events.emit(ctr, "Warning", "StorageError", str(err))
            return self._ctr_outcome(
                ctr, current, generation, "Pending", "StorageError", str(err), retry=10.0
            )

    def _converge_container(
        self,
        ctr: Mapping[str, Any],
        ref: ObjectRef,
        spec: ContainerSpec,
        pod: Mapping[str, Any],
        pod_ref: ObjectRef,
        pod_id: str,
        current: dict[str, Any],
        generation: int,
    ) -> Outcome:
        pod_spec = model.parse_pod_spec(pod.get("spec") or {})
        cid = model.container_id_for(ref.uid, pod_id)
        # A container of this object under an older sandbox (pod re-created) goes.
        for old in self.view.where(**{model.LABEL_UID: ref.uid}):
            if old.id != cid:
                self.runtime.delete_container(old.id)
                self.view.forget([old.id])
        existing = self.view.get(cid)
        if existing is not None:
            self._finish_layer_name(existing)
        wanted_hash = spec.process_hash()
        if existing is not None and not _same_image(existing, spec):
            self.runtime.delete_container(cid)
            self.view.forget([cid])
            self.events.emit(
                ctr,
                "Normal",
                "ImageChanged",
                f"image changed to {spec.image}: the container was re-created and its "
                "writable layer replaced",
            )
            existing = None
            current = {k: v for k, v in current.items() if k not in ("startedAt", "stoppedAt")}
        if existing is None:
            self._pull_if_needed(
                ctr, ref, spec.image, spec.image_pull_policy, pod_spec.image_pull_secrets
            )
            info = self.runtime.create_container(
                pod_name=model.sandbox_name(pod_ref, pod_spec.attempt),
                pod_id=pod_id,
                image_name=spec.image,
                image_id=spec.image_id,
                container_name=model.container_name(ref, pod_ref, pod_spec.attempt),
                container_id=cid,
                metadata_name=ref.name,
                attempt=pod_spec.attempt,
                mount_label=spec.mount_label,
                uid=pod_ref.uid,
                namespace=ref.namespace,
                labels=self._labels(ref, **{model.LABEL_TEMPLATE: wanted_hash}),
            )
            self._write_template(cid, info.config, spec, pod_ref)
            existing = self._adopted(info)
            work_dir, run_dir = info.dir, info.run_dir
            self.events.emit(ctr, "Normal", "Created", f"storage container {cid[:12]}")
        else:
            work_dir, run_dir = self._dirs(cid, current)
            template_path = os.path.join(work_dir, "config.json")
            if existing.metadata.labels.get(
                model.LABEL_TEMPLATE
            ) != wanted_hash or not os.path.exists(template_path):
                config = self.runtime.images.config(existing.metadata.image_id)
                self._write_template(cid, config, spec, pod_ref)
                labels = dict(existing.metadata.labels, **{model.LABEL_TEMPLATE: wanted_hash})
                meta = replace(existing.metadata, labels=labels)
                self.runtime.set_container_metadata(cid, meta)
                self.view.put_metadata(cid, meta)
                mountpoint = rendered_root(run_dir) or str(current.get("mountPoint") or "")
                if self.view.is_mounted(cid) and mountpoint:
                    # Without a known mountpoint the start below mounts and renders.
                    self.runtime.render_config(cid, mountpoint)
                self.events.emit(
                    ctr, "Normal", "ConfigUpdated", "runtime config template rewritten"
                )
        known = existing.metadata if existing else None
        now = self.clock()
        status: dict[str, Any] = {
            "containerID": cid,
            "podID": pod_id,
            "imageName": known.image_name if known else spec.image,
            "imageID": known.image_id if known else "",
            "nodeName": self.node_name,
            "workDir": work_dir,
            "runDir": run_dir,
            "createdAt": rfc3339(known.created_at) if known and known.created_at else rfc3339(now),
        }
        config_path = os.path.join(run_dir, "config.json")
        if spec.state == "Started":
            mounted = self.view.is_mounted(cid)
            rendered = rendered_root(run_dir)
            mountpoint = rendered or str(current.get("mountPoint") or "")
            if mounted and rendered:
                pass  # in step with the spec, whatever the status says yet
            elif mounted and mountpoint:
                # Only the rendered run config is gone: render it again, keep the mount.
                self.runtime.render_config(cid, mountpoint)
                self.events.emit(
                    ctr, "Warning", "ConfigRendered", "run config was missing; rendered again"
                )
            else:
                healing = current.get("phase") == "Started"
                mountpoint = self.runtime.start_container(cid)
                self.view.set_mounted(cid, True)
                if healing:
                    self.events.emit(ctr, "Warning", "Remounted", "was not mounted; mounted again")
                else:
                    self.events.emit(ctr, "Normal", "Started", f"mounted at {mountpoint}")
                current.pop("startedAt", None)
            status.update(
                phase="Started",
                mountPoint=mountpoint,
                configPath=config_path,
                startedAt=current.get("startedAt") or rfc3339(now),
                stoppedAt=None,
            )
        else:
            if self.view.is_mounted(cid):
                self.runtime.stop_container(cid)
                self.view.set_mounted(cid, False)
                self.events.emit(ctr, "Normal", "Stopped", "unmounted")
                current.pop("stoppedAt", None)
            was_started = bool(current.get("startedAt")) or current.get("phase") in (
                "Started",
                "Stopped",
            )
            status.update(
                # Never started yet: Created, as a container that exists but never ran.
                phase="Stopped" if was_started else "Created",
                mountPoint=None,
                configPath=None,
                stoppedAt=current.get("stoppedAt") or (rfc3339(now) if was_started else None),
            )
        ok_reason = "Started" if spec.state == "Started" else "Stopped"
        conditions = [
            Condition("Created", True, "Created", f"storage container {cid[:12]}"),
            Condition("Started", spec.state == "Started", ok_reason, ""),
            Condition("Ready", True, ok_reason, f"container is {ok_reason}"),
        ]
        status["conditions"] = merge_conditions(
            current.get("conditions"), conditions, generation=generation, now=now
        )
        status["observedGeneration"] = generation
        status["reason"] = None
        status["message"] = None
        return Outcome(status)

    def _ctr_outcome(
        self,
        ctr: Mapping[str, Any],
        current: Mapping[str, Any],
        generation: int,
        phase: str,
        reason: str,
        message: str,
        *,
        retry: float | None = None,
    ) -> Outcome:
        conditions = [Condition("Ready", False, reason, message)]
        status = {
            "phase": phase,
            "reason": reason,
            "message": message,
            "conditions": merge_conditions(
                current.get("conditions"), conditions, generation=generation, now=self.clock()
            ),
            "observedGeneration": generation,
        }
        if phase == "Failed" and current.get("phase") != "Failed":
            self.events.emit(ctr, "Warning", reason, message)
        return Outcome(status, retry_after=retry, failed=phase == "Failed")

    def delete_container(self, ctr: Mapping[str, Any]) -> None:
        """Stop and remove the object's storage container(s); gone already is fine."""
        ref = ObjectRef.of(ctr)
        self.view.refresh()
        ids = [c.id for c in self.view.where(**{model.LABEL_UID: ref.uid})]
        status_id = str((ctr.get("status") or {}).get("containerID") or "")
        if status_id and status_id not in ids:
            ids.append(status_id)
        for cid in ids:
            with contextlib.suppress(InvalidContainerID):
                self.runtime.delete_container(cid)
        self.view.forget(ids)
        with self._lock:
            self._backoff = {k: v for k, v in self._backoff.items() if k[0] != ref.uid}

    # -- orphans --------------------------------------------------------------

    def collect_orphans(self, live_uids: set[str]) -> list[str]:
        """Remove this source's containers whose object is gone, after the grace period.

        ``live_uids`` are the UIDs of every object that exists now. Returns
        the IDs removed in this pass.
        """
        now = self.clock()
        self.view.refresh()
        mine = self.view.where(
            **{model.LABEL_SOURCE: self.source, model.LABEL_NODE: self.node_name}
        )
        removed: list[str] = []
        seen_now: set[str] = set()
        for c in mine:
            uid = c.metadata.labels.get(model.LABEL_UID, "")
            if uid in live_uids:
                continue
            seen_now.add(c.id)
            with self._lock:
                first = self._orphans_seen.setdefault(c.id, now)
            if now - first < self.orphan_grace:
                continue
            if c.infra:
                self._remove_sandbox(c.id)
            else:
                self.runtime.delete_container(c.id)
                self.view.forget([c.id])
            removed.append(c.id)
            log.info(
                "removed orphan %s (%s %s/%s is gone)",
                c.id[:12],
                c.metadata.labels.get(model.LABEL_KIND),
                c.metadata.labels.get(model.LABEL_NAMESPACE),
                c.metadata.labels.get(model.LABEL_NAME),
            )
        with self._lock:
            self._orphans_seen = {
                k: v for k, v in self._orphans_seen.items() if k in seen_now and k not in removed
            }
        return removed

    # -- helpers --------------------------------------------------------------

    def _finish_layer_name(self, container: ManagedContainer) -> None:
        """A create killed between making the container and naming its layer is finished."""
        if self.view.layer_unnamed(container.id):
            self.runtime.name_layer(container.id)
            self.view.set_layer_named(container.id)
            log.info("named the layer of %s, which a killed create had left unnamed", container.id)

    def _sandbox_made(self, pod: Mapping[str, Any], pod_ref: ObjectRef) -> str | None:
        """The pod's sandbox ID when its infra container is in the store now."""
        try:
            attempt = model.parse_pod_spec(pod.get("spec") or {}).attempt
        except SpecError:
            return None
        pod_id = model.pod_id_for(pod_ref.uid, attempt)
        found = self.view.get(pod_id)
        return pod_id if found is not None and found.infra else None

    def _adopted(self, info: ContainerInfo) -> ManagedContainer:
        meta = info.metadata or self.runtime.get_container_metadata(info.id)
        found = ManagedContainer(info.id, (meta.name,), meta.image_id, "", "", meta)
        self.view.put(found)
        return found

    def _dirs(self, container_id: str, current: Mapping[str, Any]) -> tuple[str, str]:
        """The work and run dirs: from the status when they are this container's."""
        work, run = str(current.get("workDir") or ""), str(current.get("runDir") or "")
        if container_id in work and container_id in run:
            return work, run
        return self.runtime.get_work_dir(container_id), self.runtime.get_run_dir(container_id)

    def _write_template(
        self, cid: str, config: Any, spec: ContainerSpec, pod_ref: ObjectRef
    ) -> None:
        template = build_template(
            config,
            ProcessSpec(
                command=spec.command,
                args=spec.args,
                env=dict(spec.env),
                working_dir=spec.working_dir or None,
            ),
            hostname=pod_ref.name,
            mount_label=spec.mount_label,
            annotations={
                "io.podstore.pod.name": pod_ref.name,
                "io.podstore.pod.namespace": pod_ref.namespace,
                "io.podstore.container.id": cid,
            },
        )
        self.runtime.write_config_template(cid, template)

    def _pull_if_needed(
        self,
        obj: Mapping[str, Any],
        ref: ObjectRef,
        image: str,
        policy: str,
        secret_names: Sequence[str],
    ) -> None:
        images = self.runtime.images
        present = images.resolve(image) is not None
        if policy == "Never":
            if not present:
                raise _Waiting(
                    "ErrImageNeverPull",
                    f"image {image!r} is not on the node and imagePullPolicy is Never",
                    NEVER_PULL_RETRY,
                )
            return
        if present and policy == "IfNotPresent":
            return
        key = (ref.uid, image)
        now = self.clock()
        with self._lock:
            state = self._backoff.get(key)
        if state is not None and now < state.until:
            raise _Waiting(
                "ImagePullBackOff",
                f"Back-off pulling image {image!r}; retrying in {state.until - now:.0f}s",
                state.until - now,
            )
        configs = self._pull_secrets(ref.namespace, secret_names)
        try:
            with temporary_auth_file(configs) as auth_file:
                images.pull_image(image, auth_file=auth_file)
        except ImagePullError as err:
            with self._lock:
                state = self._backoff.setdefault(key, _Backoff())
                state.failures += 1
                delay = min(BACKOFF_INITIAL * 2 ** (state.failures - 1), BACKOFF_MAX)
                state.until = now + delay
            self.events.emit(obj, "Warning", "ErrImagePull", str(err))
            raise _Waiting("ErrImagePull", str(err), delay) from err
        with self._lock:
            self._backoff.pop(key, None)
        self.events.emit(obj, "Normal", "Pulled", f"image {image!r} pulled")

    def _pull_secrets(self, namespace: str, names: Sequence[str]) -> list[Mapping[str, Any]]:
        configs: list[Mapping[str, Any]] = []
        if not names or self.secrets is None:
            return configs
        for name in names:
            config = self.secrets.docker_config(namespace, name)
            if config is None:
                log.warning(
                    "image pull secret %s/%s not found or not a docker config", namespace, name
                )
                continue
            configs.append(config)
        return configs


# The phases in which a member is in its desired state. A container asked to be
# Stopped that never ran is Created: it exists and is not mounted, as wanted.
_SETTLED: dict[str, tuple[str, ...]] = {
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
        if phase in _SETTLED.get(str(mspec.get("state") or "Started"), ()):
            ready += 1
    all_ready = ready == len(entries)
    return entries, Condition(
        "ContainersReady",
        all_ready,
        "AllContainersReady" if all_ready else "ContainersNotReady",
        f"{ready}/{len(entries)} containers in their desired state",
    )


def _same_conditions(a: Any, b: Any) -> bool:
    def key(items: Any) -> list[tuple[Any, ...]]:
        return sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in items or ()
        )

    return key(a) == key(b)


class _Waiting(Exception):
    """A container or pod that cannot go on yet, but may later."""

    def __init__(self, reason: str, message: str, delay: float) -> None:
        self.reason = reason
        self.message = message
        self.delay = delay
        super().__init__(message)


def _same_image(existing: ManagedContainer, spec: ContainerSpec) -> bool:
    if spec.image_id and not existing.metadata.image_id.startswith(spec.image_id):
        return False
    try:
        wanted = image_reference(spec.image)
    except InvalidName:
        return False
    have = existing.metadata.image_name
    if have == spec.image:
        return True
    try:
        return image_reference(have) == wanted
    except InvalidName:
        return False


__all__ = [
    "EventSink",
    "NodeView",
    "Outcome",
    "Reconciler",
    "RuntimeContainerMetadata",
    "SecretSource",
]
