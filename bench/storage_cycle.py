"""Time one pod cycle through ``controller.storage`` against the bare CLI (and podman).

A pod cycle is an infra container and two member containers: create,
start (mount), stop (unmount) and delete. It is run four ways, alternating in
one run, on a store with 0 and with 1,000 other containers:

- ``bare``: only the ``containers-storage`` commands the seed's steps need
  (per container ``create-container --id --name --metadata`` + ``add-names``
  on the layer + ``get-container-dir`` + ``get-container-run-dir``; start =
  ``metadata`` + ``mount``; stop = ``unmount``; delete = ``delete-container``);
- ``podstore``: one long-lived ``RuntimeService``, as the agent keeps it
  (``create_pod_sandbox``, 2x ``create_container``, 3x ``start_container``,
  3x ``stop_container``, ``remove_pod_sandbox``);
- ``podstore-batch``: the same long-lived service through the batch calls a
  reconcile pass's executor makes (``create_many`` of the members side by side,
  ``start_many``, ``stop_many``, ``delete_many``
  of the members then the infra in one process), with the container directories
  derived (asked once per store) and the mount state known to the caller (it just
  made the containers; the executor has it from its pass's one ``mounted``);
- ``podstore-cold``: the same with a new ``ImageService`` and ``RuntimeService``
  each round (an agent that just started);
- ``podman``: ``pod create --infra-image``, 2x ``create --pod``, 3x ``mount``,
  one ``umount`` of the three, ``pod rm``, with a private containers.conf and
  storage.conf so that podman touches nothing outside the temporary store.

It prints medians, the ratios to the bare CLI (goals: podstore <= 1.3x,
podstore-batch <= 0.5x)
and the processes each way runs per cycle and per step. It asserts nothing
about time. Run as root: ``.venv/bin/python bench/storage_cycle.py [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from controller.storage import ImageService, RuntimeService, Store, new_id
from controller.storage.command import CommandEvent, add_observer, remove_observer

IMAGE_NAME = "localhost/busybox:bench"
STEPS = ("create infra", "create 2 containers", "start 3", "stop 3", "remove pod")
VARIANTS = ("bare", "podstore", "podstore-batch", "podstore-cold", "podman")


@dataclass
class Cycle:
    """One timed cycle: total seconds, and per step its seconds and its processes."""

    seconds: float = 0.0
    # Wall time spent waiting for child processes (the rest is Python).
    process_seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    step_procs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def procs(self) -> int:
        return sum(len(v) for v in self.step_procs.values())


class Recorder:
    """Times the steps of one cycle and notes each process started in them."""

    def __init__(self) -> None:
        self.cycle = Cycle()
        self._step: str | None = None

    def process(self, what: str, seconds: float = 0.0) -> None:
        if self._step is not None:
            self.cycle.step_procs[self._step].append(what)
            self.cycle.process_seconds += seconds

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._step = name
        self.cycle.step_procs.setdefault(name, [])
        started = time.perf_counter()
        try:
            yield
        finally:
            self.cycle.step_seconds[name] = time.perf_counter() - started
            self._step = None


@contextlib.contextmanager
def timed(recorder: Recorder) -> Iterator[Recorder]:
    started = time.perf_counter()
    yield recorder
    recorder.cycle.seconds = time.perf_counter() - started


# -- the four ways ------------------------------------------------------------------------


def metadata_json(*, pod: bool, pod_id: str, pod_name: str, name: str, image_id: str) -> str:
    """Metadata of the same size and keys as podstore writes."""
    return json.dumps(
        {
            "attempt": 0,
            "created-at": int(time.time()),
            "image-id": image_id,
            "image-name": IMAGE_NAME,
            "labels": {},
            "managed-by": "podstore",
            "metadata-name": name,
            "mountlabel": "",
            "name": name,
            "namespace": "bench",
            "pod": pod,
            "pod-id": pod_id,
            "pod-name": pod_name,
            "uid": "bench-uid",
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def bare_cycle(store: common.TempStore, image_id: str, tag: str) -> Cycle:
    rec = Recorder()

    def cs(*args: str) -> str:
        started = time.perf_counter()
        done = subprocess.run(
            [*store.prefix, *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        rec.process(args[0], time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"containers-storage {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    pod_name = f"bare-{tag}"
    pod_id = new_id()

    def create(container_id: str, name: str, names: list[str], pod: bool) -> None:
        meta = metadata_json(
            pod=pod, pod_id=pod_id, pod_name=pod_name, name=name, image_id=image_id
        )
        args = ["create-container", "--json", "--id", container_id, "--metadata", meta]
        for n in names:
            args += ["--name", n]
        created = json.loads(cs(*args, image_id))
        cs("add-names", "--name", f"{name}-layer", created["layer"])
        cs("get-container-dir", container_id)
        cs("get-container-run-dir", container_id)

    ids = [pod_id, new_id(), new_id()]
    with timed(rec):
        with rec.step("create infra"):
            create(pod_id, f"k8s_POD_{pod_name}", [f"k8s_POD_{pod_name}", pod_name], True)
        with rec.step("create 2 containers"):
            for i, cid in enumerate(ids[1:], 1):
                create(cid, f"{pod_name}-c{i}", [f"{pod_name}-c{i}"], False)
        with rec.step("start 3"):
            for cid in ids:
                cs("metadata", cid)
                cs("mount", cid)
        with rec.step("stop 3"):
            for cid in ids:
                cs("unmount", cid)
        with rec.step("remove pod"):
            for cid in reversed(ids):
                cs("delete-container", cid)
    return rec.cycle


def podstore_cycle(runtime: RuntimeService, tag: str) -> Cycle:
    rec = Recorder()

    def observe(event: CommandEvent) -> None:
        rec.process(event.verb if event.ok else f"{event.verb}(failed)", event.seconds)

    pod_name = f"podstore-{tag}"
    pod_id = new_id()
    add_observer(observe)
    try:
        with timed(rec):
            with rec.step("create infra"):
                runtime.create_pod_sandbox(
                    pod_name=pod_name,
                    pod_id=pod_id,
                    image_name=IMAGE_NAME,
                    container_name=f"k8s_POD_{pod_name}",
                    metadata_name=pod_name,
                    uid="bench-uid",
                    namespace="bench",
                )
            ids = [pod_id]
            with rec.step("create 2 containers"):
                for i in (1, 2):
                    info = runtime.create_container(
                        pod_name=pod_name,
                        pod_id=pod_id,
                        image_name=IMAGE_NAME,
                        container_name=f"{pod_name}-c{i}",
                        container_id=new_id(),
                        metadata_name=f"c{i}",
                    )
                    ids.append(info.id)
            with rec.step("start 3"):
                for cid in ids:
                    runtime.start_container(cid)
            with rec.step("stop 3"):
                for cid in ids:
                    runtime.stop_container(cid)
            with rec.step("remove pod"):
                runtime.remove_pod_sandbox(pod_id)
    finally:
        remove_observer(observe)
    return rec.cycle


def batch_cycle(runtime: RuntimeService, tag: str) -> Cycle:
    """The pod cycle through the batch calls: what the plan/execute executor runs."""
    rec = Recorder()

    def observe(event: CommandEvent) -> None:
        rec.process(event.verb if event.ok else f"{event.verb}(failed)", event.seconds)

    pod_name = f"batch-{tag}"
    pod_id = new_id()
    add_observer(observe)
    try:
        with timed(rec):
            with rec.step("create infra"):
                runtime.create_pod_sandbox(
                    pod_name=pod_name,
                    pod_id=pod_id,
                    image_name=IMAGE_NAME,
                    container_name=f"k8s_POD_{pod_name}",
                    metadata_name=pod_name,
                    uid="bench-uid",
                    namespace="bench",
                )
            ids = [pod_id]
            with rec.step("create 2 containers"):
                made = runtime.create_many(
                    [
                        {
                            "pod_name": pod_name,
                            "pod_id": pod_id,
                            "image_name": IMAGE_NAME,
                            "container_name": f"{pod_name}-c{i}",
                            "container_id": new_id(),
                            "metadata_name": f"c{i}",
                        }
                        for i in (1, 2)
                    ]
                )
                for info in made:
                    if isinstance(info, Exception):
                        raise RuntimeError(f"batch create failed: {info}")
                    ids.append(info.id)
            with rec.step("start 3"):
                started = runtime.start_many(ids, mounted=())
            with rec.step("stop 3"):
                stopped = runtime.stop_many(ids)
            with rec.step("remove pod"):
                removed = runtime.delete_many([*ids[1:], pod_id])
    finally:
        remove_observer(observe)
    failed = [
        f"{cid[:12]}: {result}"
        for results in (started, stopped, removed)
        for cid, result in results.items()
        if isinstance(result, Exception)
    ]
    if failed:
        raise RuntimeError(f"batch cycle failed: {'; '.join(failed)}")
    return rec.cycle


@dataclass(frozen=True)
class Podman:
    """podman confined to the temporary store by its own config files."""

    store: common.TempStore
    env: dict[str, str]

    @classmethod
    def configure(cls, store: common.TempStore) -> Podman:
        base = store.base
        (base / "podman-tmp").mkdir(exist_ok=True)
        (base / "podman-networks").mkdir(exist_ok=True)
        conf = base / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'netns = "none"\n'
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            'log_driver = "k8s-file"\n'
            "\n[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{base}/podman-events.log"\n'
            f'tmp_dir = "{base}/podman-tmp"\n'
            f'static_dir = "{store.root}/libpod"\n'
            f'volume_path = "{store.root}/volumes"\n'
            "\n[network]\n"
            f'network_config_dir = "{base}/podman-networks"\n'
        )
        storage = base / "storage.conf"
        storage.write_text(
            "[storage]\n"
            f'driver = "{store.driver}"\n'
            f'graphroot = "{store.root}"\n'
            f'runroot = "{store.run_root}"\n'
        )
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(conf)
        env["CONTAINERS_STORAGE_CONF"] = str(storage)
        return cls(store, env)

    def argv(self, *args: str) -> list[str]:
        s = self.store
        flags = ["--root", s.root, "--runroot", s.run_root, "--storage-driver", s.driver]
        return ["podman", *flags, *args]

    def run(self, rec: Recorder | None, *args: str) -> str:
        started = time.perf_counter()
        done = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        if rec is not None:
            what = " ".join(args[:2]) if args[0] == "pod" else args[0]
            rec.process(what, time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()}")
        return done.stdout


def podman_cycle(podman: Podman, tag: str) -> Cycle:
    rec = Recorder()
    pod = f"podman-{tag}"
    names = [f"{pod}-infra", f"{pod}-c1", f"{pod}-c2"]
    with timed(rec):
        with rec.step("create infra"):
            podman.run(
                rec,
                "pod",
                "create",
                "--name",
                pod,
                "--infra-name",
                names[0],
                "--infra-image",
                IMAGE_NAME,
            )
        with rec.step("create 2 containers"):
            for name in names[1:]:
                podman.run(rec, "create", "--pod", pod, "--name", name, IMAGE_NAME)
        with rec.step("start 3"):
            for name in names:
                podman.run(rec, "mount", name)
        with rec.step("stop 3"):
            podman.run(rec, "umount", *names)
        with rec.step("remove pod"):
            podman.run(rec, "pod", "rm", pod)
    return rec.cycle


# -- the run ------------------------------------------------------------------------------


def make_fillers(store: common.TempStore, image_id: str, count: int) -> float:
    """``count`` containers podstore did not make, with the bare CLI; returns seconds."""
    started = time.perf_counter()
    for i in range(count):
        store.cli("create-container", "--name", f"filler-{i}", image_id)
    return time.perf_counter() - started


def var_lib_containers_state() -> dict[str, float]:
    """Modification times under /var/lib/containers/storage (to show podman left it alone)."""
    top = Path("/var/lib/containers/storage")
    if not top.is_dir():
        return {}
    state: dict[str, float] = {}
    for path in [top, *top.iterdir()]:
        with contextlib.suppress(OSError):
            state[str(path)] = path.stat().st_mtime
    return state


def run_size(
    layout: Path, size: int, rounds: int, with_podman: bool
) -> tuple[dict[str, list[Cycle]], str]:
    """All rounds at one store size; returns the cycles of each way and a note."""
    results: dict[str, list[Cycle]] = defaultdict(list)
    note = ""
    with common.temp_store(f"podstore-bench-{size}-") as tmp:
        image_id = tmp.load(layout, "bench", IMAGE_NAME)
        filled = make_fillers(tmp, image_id, size)
        if size:
            print(f"  {size} filler containers made with the bare CLI in {filled:.1f}s")
        store = Store(tmp.root, tmp.run_root, tmp.driver)
        warm = RuntimeService(ImageService(store))
        batch = RuntimeService(ImageService(store))

        def cold(tag: str) -> Cycle:
            return podstore_cycle(RuntimeService(ImageService(store)), tag)

        ways: dict[str, Callable[[str], Cycle]] = {
            "bare": lambda tag: bare_cycle(tmp, image_id, tag),
            "podstore": lambda tag: podstore_cycle(warm, tag),
            "podstore-batch": lambda tag: batch_cycle(batch, tag),
            "podstore-cold": cold,
        }
        podman: Podman | None = None
        if with_podman:
            if shutil.which("podman") is None:
                note = "podman is not installed"
            else:
                podman = Podman.configure(tmp)
                before = var_lib_containers_state()
                try:
                    podman_cycle(podman, "warmup")
                except RuntimeError as err:
                    note = f"podman skipped: {err}"
                    podman = None
                else:
                    ways["podman"] = lambda tag: podman_cycle(podman, tag)  # type: ignore[arg-type]
        # One untimed cycle each: imports, page cache, the warm service's caches.
        for name, way in ways.items():
            if name != "podman":
                way("warmup")
        order = list(ways)
        for r in range(rounds):
            # Alternate the order so that no way always runs right after another.
            for name in order if r % 2 == 0 else reversed(order):
                results[name].append(ways[name](f"r{r}"))
        if podman is not None:
            after = var_lib_containers_state()
            changed = sorted(p for p in after if before.get(p) != after[p])
            if changed:
                note = f"/var/lib/containers/storage changed during the run: {changed}"
            else:
                note = "podman left /var/lib/containers/storage untouched"
        leftovers = [c for c in store.containers() if not c.names[0].startswith("filler-")]
        if leftovers:
            note += f"; {len(leftovers)} containers left behind: {[c.names for c in leftovers]}"
    return results, note


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(results: dict[str, list[Cycle]], a: str, b: str) -> str:
    """``a/b`` as the ratio of the medians and, in brackets, the median per-round ratio."""
    of_medians = median([c.seconds for c in results[a]]) / median([c.seconds for c in results[b]])
    paired = [x.seconds / y.seconds for x, y in zip(results[a], results[b], strict=True)]
    return f"{a}/{b} {of_medians:.2f}x [{median(paired):.2f}x]"


def report(all_results: dict[int, dict[str, list[Cycle]]], rounds: int) -> None:
    print()
    print(f"Pod cycle (infra + 2 containers: create, start, stop, delete), {rounds} rounds")
    print("(in procs: median ms spent waiting for child processes; procs: processes per cycle)")
    print()
    header = (
        f"{'other ctrs':>10}  {'way':<14} {'median ms':>10} {'min ms':>8} {'max ms':>8} "
        f"{'in procs':>9} {'procs':>6}  {'vs bare':>8}"
    )
    print(header)
    print("-" * len(header))
    for size, results in all_results.items():
        bare = median([c.seconds for c in results.get("bare", [])])
        for name in VARIANTS:
            cycles = results.get(name)
            if not cycles:
                continue
            times = [c.seconds for c in cycles]
            m = median(times)
            procs = Counter(c.procs for c in cycles).most_common(1)[0][0]
            in_procs = median([c.process_seconds for c in cycles])
            print(
                f"{size:>10}  {name:<14} {m * 1000:>10.1f} {min(times) * 1000:>8.1f} "
                f"{max(times) * 1000:>8.1f} {in_procs * 1000:>9.1f} {procs:>6}  {m / bare:>7.2f}x"
            )
    print()
    print("Ratios (goals: podstore/bare <= 1.30x, podstore-batch/bare <= 0.50x, at both")
    print("sizes). First the ratio of the medians, then in brackets the median of the")
    print("per-round ratios: each round runs every way back to back, so pairing them")
    print("cancels drift in the machine's load.")
    for size, results in all_results.items():
        parts = [
            ratio(results, "podstore", "bare"),
            ratio(results, "podstore-batch", "bare"),
            ratio(results, "podstore-cold", "bare"),
        ]
        if "podman" in results:
            parts += [ratio(results, "podman", "bare"), ratio(results, "podstore", "podman")]
        med = {n: median([c.seconds for c in results[n]]) for n in results}
        verdict = "met" if med["podstore"] / med["bare"] <= 1.3 else "NOT met"
        batch = "met" if med["podstore-batch"] / med["bare"] <= 0.5 else "NOT met"
        print(f"  {size:>4} other containers: {', '.join(parts)}")
        print(f"       goals: podstore {verdict}, podstore-batch {batch}")
    print()
    print("Per step: median ms and processes (podstore's commands by verb)")
    for size, results in all_results.items():
        print(f"  {size} other containers:")
        for step in STEPS:
            cells = []
            for name in VARIANTS:
                cycles = results.get(name)
                if not cycles:
                    continue
                ms = median([c.step_seconds[step] for c in cycles]) * 1000
                cells.append(f"{name} {ms:6.1f}ms/{len(cycles[-1].step_procs[step]):>2}p")
            print(f"    {step:<20} " + "  ".join(cells))
        for name in ("podstore", "podstore-batch", "podstore-cold"):
            last = results[name][-1]
            print(f"    {name} commands in one cycle:")
            for step in STEPS:
                verbs = Counter(last.step_procs[step])
                listed = ", ".join(f"{v} x{n}" if n > 1 else v for v, n in verbs.items())
                print(f"      {step:<20} {listed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 0 and 20 containers")
    parser.add_argument("--rounds", type=int, help="rounds per size (default 20, quick 3)")
    parser.add_argument(
        "--sizes", help="comma-separated numbers of other containers (default 0,1000)"
    )
    parser.add_argument("--no-podman", action="store_true", help="do not time podman")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 20)
    sizes = [int(s) for s in (args.sizes or ("0,20" if args.quick else "0,1000")).split(",")]
    if os.geteuid() != 0:
        raise SystemExit("run as root: containers-storage mounts layers")
    common.need(common.CS, "skopeo", "umoci", "busybox")

    started = time.perf_counter()
    all_results: dict[int, dict[str, list[Cycle]]] = {}
    notes: list[str] = []
    with common.temp_dir("podstore-bench-image-") as workdir:
        layout = common.build_busybox_image(workdir, tag="bench")
        for size in sizes:
            print(f"store with {size} other containers: {rounds} rounds of each way ...")
            all_results[size], note = run_size(layout, size, rounds, not args.no_podman)
            if note:
                notes.append(f"{size} other containers: {note}")
    report(all_results, rounds)
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")
    print(f"\nwhole run: {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
