"""Helpers of the command-line tests: run ``podstore`` for real, write manifests.

Every test drives ``python -m controller`` as a subprocess on a real store and reads
the store back with ``containers-storage`` (``tests.support.stores``), never through
podstore itself.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.stores import StorePaths, container_metadata, containers_json

REPO = Path(__file__).resolve().parent.parent.parent
NODE = "testnode"
API_VERSION = "podstore.dev/v1alpha1"
# containers-storage verbs that change a store; a run that should change nothing
# must run none of them.
WRITING_VERBS = frozenset(
    {
        "create-container",
        "delete-container",
        "mount",
        "unmount",
        "set-metadata",
        "add-names",
        "set-names",
        "delete-image",
        "create-layer",
        "delete-layer",
    }
)
_COMMAND_LINE = re.compile(r"run: (containers-storage|skopeo) (.*)$")


def argv(store: StorePaths, command: str, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "controller", command,
        "--root", str(store.root), "--runroot", str(store.run_root), "--driver", store.driver,
        *args,
    ]  # fmt: skip


def podstore(
    store: StorePaths, command: str, *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``podstore COMMAND --root ... ARGS`` to the end; returns what it printed."""
    return subprocess.run(
        argv(store, command, *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def run_once(
    store: StorePaths, folder: Path, *args: str, insecure: str = "", timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``podstore run --once -f FOLDER --node-name testnode ARGS``."""
    extra = ["--insecure-registry", insecure] if insecure else []
    return podstore(
        store, "run", "--once", "-f", str(folder), "--node-name", NODE, *extra, *args,
        timeout=timeout,
    )  # fmt: skip


def start_watch(store: StorePaths, folder: Path, *args: str) -> subprocess.Popen[str]:
    """``podstore run -f FOLDER`` in the background, polling the folder every 0.1 s."""
    return subprocess.Popen(
        argv(store, "run", "-f", str(folder), "--node-name", NODE, "--poll-interval", "0.1", *args),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def stop_watch(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Signal a background ``run`` and wait for it; returns (status, stdout, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"podstore run ignored signal {sig}:\n{err}") from None
    return proc.returncode, out, err


def written_verbs(stderr: str) -> list[str]:
    """The storage-changing commands a ``--log-level DEBUG`` run logged."""
    found = []
    for line in stderr.splitlines():
        match = _COMMAND_LINE.search(line)
        if not match:
            continue
        tool, rest = match.groups()
        if tool == "skopeo":
            found.append("skopeo " + rest.split()[0])
            continue
        words = rest.split()
        # containers-storage --graph R --run R --storage-driver D VERB ...
        verb = words[6] if len(words) > 6 else ""
        if verb in WRITING_VERBS:
            found.append(verb)
    return found


# -- manifests ---------------------------------------------------------------------------


def pod(name: str, infra: str, *containers: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    """A StoragePod (no nodeName: ``run`` gives it its node's)."""
    body: dict[str, Any] = {"infraImage": infra, **spec}
    if containers:
        body["containers"] = [dict(c) for c in containers]
    return {
        "apiVersion": API_VERSION,
        "kind": "StoragePod",
        "metadata": {"name": name},
        "spec": body,
    }


def template(name: str, image: str, **spec: Any) -> dict[str, Any]:
    """One entry of a StoragePod's ``spec.containers``."""
    return {"name": name, "image": image, **spec}


def container(name: str, pod_name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "StorageContainer",
        "metadata": {"name": name},
        "spec": {"podName": pod_name, "image": image, **spec},
    }


def write(path: Path, *docs: Mapping[str, Any]) -> Path:
    """Write documents as one multi-document YAML file (atomically, as editors do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False))
    tmp.replace(path)
    return path


# -- reading the store back -----------------------------------------------------------


def managed(store: StorePaths) -> dict[str, dict[str, Any]]:
    """podstore's containers by resource name (``metadata-name``), from the store.

    Infra containers are keyed ``pod/<name>``.
    """
    out: dict[str, dict[str, Any]] = {}
    for record in containers_json(store):
        meta = json.loads(record.get("metadata") or "{}")
        if meta.get("managed-by") != "podstore":
            continue
        key = ("pod/" if meta.get("pod") else "") + str(meta.get("metadata-name"))
        out[key] = {**record, "meta": meta}
    return out


def ids(store: StorePaths) -> dict[str, str]:
    """Resource name -> container ID, for podstore's containers."""
    return {name: c["id"] for name, c in managed(store).items()}


def identity(store: StorePaths) -> dict[str, tuple[str, str, int]]:
    """What must stay the same when nothing changed: ID, layer and created-at."""
    return {
        name: (c["id"], c["layer"], int(c["meta"]["created-at"]))
        for name, c in managed(store).items()
    }


def metadata_of(store: StorePaths, name: str) -> dict[str, Any]:
    return container_metadata(store, ids(store)[name])


def by_name(objects: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``run -o json`` output keyed ``Kind/name``."""
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def state_file(store: StorePaths) -> Path:
    return store.run_root / "podstore-run" / "state.json"
