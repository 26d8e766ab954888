"""``podstore run -f FOLDER`` without ``--once``: the store follows the folder.

The command runs in the background while the test adds, changes and removes files,
and stops it with a signal; the store is read back with ``containers-storage``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from controller.exitcodes import EXIT_STORE_LOCKED
from tests.cli.common import (
    by_name,
    container,
    identity,
    ids,
    managed,
    metadata_of,
    pod,
    run_once,
    start_watch,
    stop_watch,
    template,
    write,
    written_verbs,
)
from tests.cli.conftest import Refs
from tests.support.images import LocalImages
from tests.support.stores import StorePaths, is_mounted
from tests.support.waiting import wait_for

pytestmark = pytest.mark.cli


def test_the_store_follows_files_added_changed_and_removed(
    store_root: StorePaths, manifests: Path, refs: Refs, image_layout: LocalImages
) -> None:
    proc = start_watch(store_root, manifests, "-o", "json")
    try:
        write(manifests / "web.yaml", pod("web", refs.pause, template("app", refs.busybox)))
        wait_for("pod web and web-app", lambda: set(ids(store_root)) == {"pod/web", "web-app"})
        app_id = wait_for(
            "web-app mounted",
            lambda: (i := ids(store_root).get("web-app")) and is_mounted(store_root, i) and i,
        )

        # A second file, then a change to the first.
        write(manifests / "debug.yaml", container("debug", "web", refs.busybox2))
        wait_for("debug", lambda: "debug" in ids(store_root))
        web_before = identity(store_root)["pod/web"]
        write(
            manifests / "web.yaml",
            pod("web", refs.pause, template("app", refs.busybox, state="Stopped")),
        )
        wait_for("web-app unmounted", lambda: not is_mounted(store_root, app_id))
        assert identity(store_root)["pod/web"] == web_before
        assert ids(store_root)["web-app"] == app_id

        # Removing a file removes what it held, and only that.
        (manifests / "debug.yaml").unlink()
        wait_for("debug removed", lambda: "debug" not in ids(store_root))
        assert set(ids(store_root)) == {"pod/web", "web-app"}
        assert metadata_of(store_root, "web-app")["image-id"] == image_layout.busybox_id
    finally:
        status, out, err = stop_watch(proc)

    assert status == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    seen = {(e["type"], e["object"]["metadata"]["name"]) for e in events}
    assert {("ADDED", "web"), ("ADDED", "debug"), ("DELETED", "debug")} <= seen
    assert ("MODIFIED", "web-app") in seen
    assert "Traceback" not in err


def test_a_signal_stops_run_cleanly_and_the_next_run_continues_where_it_stopped(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    write(manifests / "web.yaml", pod("web", refs.pause, template("app", refs.busybox)))
    proc = start_watch(store_root, manifests)
    try:
        wait_for("web-app", lambda: "web-app" in ids(store_root))
        # While it runs, a second run on the same store is refused.
        second = run_once(store_root, manifests)
        assert second.returncode == EXIT_STORE_LOCKED
        assert "another `podstore run`" in second.stderr
    finally:
        status, out, err = stop_watch(proc, signal.SIGINT)
    assert status == 0, err
    assert out.splitlines()[0].split() == [
        "KIND",
        "NAMESPACE",
        "NAME",
        "PHASE",
        "REASON",
        "ID",
        "AGE",
    ]
    before = identity(store_root)

    again = run_once(store_root, manifests, "-o", "json", "--log-level", "DEBUG")

    assert again.returncode == 0, again.stderr
    assert written_verbs(again.stderr) == []
    assert identity(store_root) == before
    assert by_name(json.loads(again.stdout))["StorageContainer/web-app"]["status"]["phase"] == (
        "Started"
    )


def test_a_file_being_written_or_broken_never_removes_what_it_held(
    store_root: StorePaths, manifests: Path, refs: Refs
) -> None:
    proc = start_watch(store_root, manifests)
    try:
        write(manifests / "web.yaml", pod("web", refs.pause, template("app", refs.busybox)))
        wait_for("web-app", lambda: "web-app" in ids(store_root))
        before = identity(store_root)
        (manifests / "web.yaml").write_text("apiVersion: podstore.dev/v1alpha1\nkind: [Stor")
        wait_for("the problem reported", lambda: _stderr_has(proc, "not valid YAML"))
        assert identity(store_root) == before
        assert all(
            c["meta"]["labels"]["podstore.dev/source"] == "run"
            for c in managed(store_root).values()
        )
    finally:
        status, _, err = stop_watch(proc)
    assert status == 0, err


def _stderr_has(proc: object, text: str) -> bool:
    """Read what the background run logged so far (non-blocking) and look for ``text``."""
    import os
    import select

    stream = proc.stderr  # type: ignore[attr-defined]
    buffer = getattr(proc, "_seen", "")
    while select.select([stream], [], [], 0)[0]:
        chunk = os.read(stream.fileno(), 65536).decode(errors="replace")
        if not chunk:
            break
        buffer += chunk
    proc._seen = buffer  # type: ignore[attr-defined]
    return text in buffer
