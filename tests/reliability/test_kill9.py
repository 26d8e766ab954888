"""kill -9 at seeded random points of ``podstore run`` and of ``podstore agent``, during
create, change and delete; after each kill a restart must converge (issue 12).

Each round changes the world one step (a pod created, changed or deleted), lets the
process start on it and kills it with SIGKILL right after its N-th storage-changing
command began (N seeded; in a quarter of the kills the running ``containers-storage``
or ``skopeo`` dies too, as in a node crash). Then the process starts again and must
converge by itself: exactly one storage container per resource, no orphan, no
duplicate, each container mounted once if Started and never if Stopped (mount counts
read from the store's ``mountpoints.json``), rendered configs equal to their
templates, and (agent) every finalizer of a deleted object released.

``KILLS`` (10 by default; ``make soak`` runs 100) is split between the two modes,
``KILL_SEED`` picks the seed. The figures are printed at the end of each run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.common import REPO, argv, run_once, write
from tests.cli.conftest import Refs
from tests.e2e.agent import CONTAINERS, FINALIZER, NAMESPACE, PODS, AgentProcess, storage_pod
from tests.reliability.kill9 import (
    CommandWatch,
    Figures,
    KillPoints,
    World,
    check_store,
    kill9,
    report,
)
from tests.support.stores import StorePaths

KILLS = int(os.environ.get("KILLS", "10"))
SEED = int(os.environ.get("KILL_SEED", "9"))


def _finish(figures: Figures) -> None:
    report(figures.line())
    for line in figures.details[:40]:
        print("  " + line)
    assert figures.violations == 0, "\n".join(figures.details[:40])


# -- podstore run -----------------------------------------------------------------------


def _write_world(world: World, folder: Path, images: dict[str, str], pause: str) -> None:
    for path in folder.glob("*.yaml"):
        if path.stem not in world.pods:
            path.unlink()
    for name, want in world.pods.items():
        body = {
            "apiVersion": "podstore.dev/v1alpha1",
            "kind": "StoragePod",
            "metadata": {"name": name},
            "spec": {"infraImage": pause, "containers": want.templates(images)},
        }
        write(folder / f"{name}.yaml", body)


def _settled(objects: list[dict[str, Any]], world: World) -> list[str]:
    """What ``run --once -o json`` says is not as wanted."""
    problems = []
    seen = {(o["kind"], o["metadata"]["name"]): o.get("status") or {} for o in objects}
    expected = world.expected()
    if set(seen) != set(expected):
        problems.append(f"status: resources {sorted(set(seen) ^ set(expected))} differ")
    for key, member in expected.items():
        phase = seen.get(key, {}).get("phase")
        want = {"Ready"} if member is None else {"Started"}
        if member is not None and member.state == "Stopped":
            want = {"Created", "Stopped"}
        if phase not in want:
            problems.append(f"status: {key[0]}/{key[1]} is {phase}, want {'/'.join(want)}")
    return problems


@pytest.mark.cli
def test_run_killed_at_random_points_converges_on_the_next_run(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a seed, not a secret
    world = World(rng)
    images = {"busybox": refs.busybox, "busybox2": refs.busybox2}
    figures = Figures("podstore run", SEED)
    points = KillPoints(rng)
    for kill in range(1, KILLS - KILLS // 2 + 1):
        op, _ = world.step()
        figures.ops[op] = figures.ops.get(op, 0) + 1
        _write_world(world, manifests, images, refs.pause)
        proc = subprocess.Popen(
            argv(store_root, "run", "-f", str(manifests), "--node-name", "testnode",
                 "--poll-interval", "0.1", "--log-level", "DEBUG"),
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        watch = CommandWatch()
        assert proc.stderr is not None
        watch.follow_pipe(proc.stderr)
        nth = points.pick(op)
        with_children = rng.random() < 0.25
        landed = watch.wait(nth, idle=3.0, timeout=60)
        points.saw(op, landed=landed, count=watch.count)
        time.sleep(rng.uniform(0, 0.03))
        kill9(proc.pid, with_children=with_children)
        proc.wait(timeout=30)
        figures.kills += 1
        figures.mid_work += landed
        figures.with_children += with_children and landed

        done = run_once(store_root, manifests, "-o", "json", timeout=180)
        problems = []
        if done.returncode != 0 or "Traceback" in done.stderr:
            problems.append(f"restart: exit {done.returncode}: {done.stderr.strip()[-600:]}")
        else:
            problems += _settled(json.loads(done.stdout), world)
        problems += check_store(store_root, world.expected(), images)
        state = json.loads((store_root.run_root / "podstore-run" / "state.json").read_text())
        deleting = [r for r in state.get("resources") or () if r.get("deleting")]
        if deleting:
            problems.append(f"state: {len(deleting)} resources still being deleted")
        figures.note(kill, f"{op}, kill at write {nth}", problems)
        figures.converged += not [p for p in problems if not p.startswith("extra mount")]
    _finish(figures)


# -- podstore agent ---------------------------------------------------------------------


def _apply_to_api(kube: Any, world: World, op: str, name: str, images: dict[str, str]) -> None:
    if op == "delete":
        kube.delete(PODS, NAMESPACE, name)
        return
    want = world.pods[name]
    if op == "create":
        kube.create(storage_pod(name, containers=want.templates(images)))
        return
    kube.patch(PODS, NAMESPACE, name, {"spec": {"containers": want.templates(images)}})


def _api_problems(kube: Any, world: World) -> list[str]:
    """What the API shows that is not converged (statuses, finalizers, leftovers)."""
    problems = []
    pods = {p["metadata"]["name"]: p for p in kube.list(PODS, NAMESPACE)["items"]}
    ctrs = {c["metadata"]["name"]: c for c in kube.list(CONTAINERS, NAMESPACE)["items"]}
    expected = world.expected()
    for name, obj in [*pods.items(), *ctrs.items()]:
        kind = obj["kind"]
        meta = obj["metadata"]
        if (kind, name) not in expected:
            why = "finalizer not released" if meta.get("deletionTimestamp") else "left over"
            problems.append(f"api: {kind}/{name} {why} ({meta.get('finalizers')})")
        elif FINALIZER not in (meta.get("finalizers") or ()):
            problems.append(f"api: {kind}/{name} has no finalizer {FINALIZER}")
    for (kind, name), member in expected.items():
        obj = (pods if kind == "StoragePod" else ctrs).get(name)
        if obj is None:
            problems.append(f"api: {kind}/{name} missing")
            continue
        status = obj.get("status") or {}
        if member is None:
            want = {"Ready"}
        elif member.state == "Started":
            want = {"Started"}
        else:
            want = {"Created", "Stopped"}
        if status.get("phase") not in want or (
            status.get("observedGeneration") != obj["metadata"].get("generation")
        ):
            problems.append(f"status: {kind}/{name} is {status.get('phase')}, want {want}")
    return problems


@pytest.mark.e2e
@pytest.mark.integration
def test_agent_killed_at_random_points_converges_after_a_restart(
    kube: Any, store: Any, images: Any, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)  # noqa: S311
    world = World(rng)
    pictures = {"busybox": images.busybox, "busybox2": images.busybox2}
    figures = Figures("podstore agent", SEED + 1)
    points = KillPoints(rng)
    log_path = tmp_path / "agent.log"
    agent = AgentProcess(kube, store, images, log_path)
    agent.args += ["--log-level", "DEBUG"]
    agent.start()
    try:
        for kill in range(1, KILLS // 2 + 1):
            op, name = world.step()
            figures.ops[op] = figures.ops.get(op, 0) + 1
            offset = log_path.stat().st_size
            watch = CommandWatch()
            watch.follow_file(log_path, offset, agent.running)
            _apply_to_api(kube, world, op, name, pictures)
            nth = points.pick(op)
            with_children = rng.random() < 0.25
            landed = watch.wait(nth, idle=3.0, timeout=60)
            points.saw(op, landed=landed, count=watch.count)
            time.sleep(rng.uniform(0, 0.03))
            assert agent.proc is not None
            kill9(agent.proc.pid, with_children=with_children)
            agent.proc.wait(10)
            watch.close()
            figures.kills += 1
            figures.mid_work += landed
            figures.with_children += with_children and landed

            agent.start()
            started = time.monotonic()
            problems = _converge(kube, store, world, pictures)
            took = time.monotonic() - started
            # The store may have been right before the restart did anything: look again
            # once the new agent had time for its first pass and a resync (2 s).
            time.sleep(max(0.0, 4.0 - took))
            if not problems:
                problems = check_store(store, world.expected(), pictures)
            if not agent.running():
                problems.append("restart: the agent ended")
            figures.note(kill, f"{op} {name}, kill at write {nth}", problems)
            figures.converged += not [p for p in problems if not p.startswith("extra mount")]
            if problems and not all(p.startswith("extra mount") for p in problems):
                said = [line for line in agent.log().splitlines() if " WARNING " in line
                        or " ERROR " in line]  # fmt: skip
                print(f"kill {kill}: {problems}; the agent's last warnings:", *said[-10:], sep="\n")
    finally:
        agent.stop()
    _finish(figures)


def _converge(kube: Any, store: Any, world: World, images: dict[str, str]) -> list[str]:
    """Wait (at most 45 s: a restart converges in a few) until the API and the store show
    the world; what is left."""
    deadline = time.monotonic() + 45
    while True:
        problems = _api_problems(kube, world)
        if not problems:
            problems = check_store(store, world.expected(), images)
            if all(p.startswith("extra mount") for p in problems):
                return problems
        if time.monotonic() > deadline:
            return problems
        time.sleep(0.3)
