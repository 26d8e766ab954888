"""The store checks of every command (no store made by a read-only one, one line
as non-root), ``version``/``info`` and the removal verbs ``rm``, ``rmp``, ``rmi``,
checked against what ``containers-storage`` says."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli.common import REPO, argv, managed, pod, podstore, run_once, template, write
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths, containers_json, cs, images_json

pytestmark = pytest.mark.cli

READ_ONLY = (("ps",), ("pods",), ("images",), ("info",), ("inspect", "abcdef"))


def _mounts_mentioning(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        return [line for line in handle if str(path) in line]


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: a[0])
def test_read_only_commands_refuse_a_missing_store_and_make_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = StorePaths(tmp_path / "no" / "such", tmp_path / "no" / "run", "overlay")
    done = podstore(missing, *args)
    assert done.returncode == 1
    line = _one_line(done)
    assert line.startswith(f"podstore {args[0]}: no store at {missing.root}")
    assert not (tmp_path / "no").exists()
    assert _mounts_mentioning(tmp_path) == []


def test_a_driver_other_than_the_stores_is_refused_and_nothing_is_made(
    store_root: StorePaths,
) -> None:
    cs(store_root, "containers", "--json")  # an empty overlay store
    before = sorted(p.name for p in store_root.root.iterdir())
    mounts = _mounts_mentioning(store_root.root)
    vfs = StorePaths(store_root.root, store_root.run_root, "vfs")
    for args in READ_ONLY:
        done = podstore(vfs, *args)
        assert done.returncode == 1
        assert "uses the overlay driver, not 'vfs': give --driver overlay" in _one_line(done)
    assert sorted(p.name for p in store_root.root.iterdir()) == before
    assert not list(store_root.run_root.glob("vfs*"))
    assert _mounts_mentioning(store_root.root) == mounts


def test_version_and_info(store_root: StorePaths) -> None:
    done = podstore(store_root, "version", "-o", "json")
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert set(versions) == {"podstore", "containers-storage", "skopeo", "runc"}
    assert versions["skopeo"].startswith("skopeo version ")
    assert versions["runc"].startswith("runc version ")

    cs(store_root, "containers", "--json")
    done = podstore(store_root, "info", "-o", "json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["store"]["graph_root"]["path"] == str(store_root.root)
    assert info["store"]["run_root"]["path"] == str(store_root.run_root)
    assert info["store"]["driver"] == "overlay"
    assert info["store"]["graph_root"]["total"] > 0
    assert (info["store"]["containers"], info["store"]["images"]) == (0, 0)
    assert info["versions"] == versions


def _as_nobody(store: StorePaths, *args: str) -> subprocess.CompletedProcess[str]:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed"
    return subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv(store, *args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": "/nonexistent"},
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to nobody")
@pytest.mark.parametrize(
    "args",
    [*READ_ONLY, ("run", "--once", "-f", "/dev/null"), ("rm", "abcdef"), ("rmp", "abc")],
    ids=lambda a: a[0],
)
def test_as_non_root_every_command_fails_with_one_line(
    store_root: StorePaths, args: tuple[str, ...]
) -> None:
    cs(store_root, "containers", "--json")  # a store that root owns
    for path in (store_root.root.parent.parent, store_root.root.parent):
        path.chmod(0o755)  # nobody may reach the store, not write to it
    before = containers_json(store_root)
    done = _as_nobody(store_root, *args)
    line = _one_line(done)
    assert done.returncode == 77, done.stderr
    assert line.startswith(f"podstore {args[0]}: permission denied on ")
    assert "run podstore as root" in line
    assert containers_json(store_root) == before


# -- rm, rmp, rmi ------------------------------------------------------------------------


@pytest.fixture
def web(store_root: StorePaths, manifests: Path, refs: Refs) -> dict[str, str]:
    """default/web: app started, idle stopped; resource name -> ID."""
    write(
        manifests / "web.yaml",
        pod(
            "web",
            refs.pause,
            template("app", refs.busybox),
            template("idle", refs.busybox, state="Stopped"),
        ),
    )
    done = run_once(store_root, manifests)
    assert done.returncode == 0, done.stderr
    return {name: c["id"] for name, c in managed(store_root).items()}


def test_rm_removes_a_container_refuses_infra_and_started_ones(
    store_root: StorePaths, web: dict[str, str]
) -> None:
    infra = podstore(store_root, "rm", web["pod/web"])
    assert infra.returncode == 1
    assert "is a pod's infra container: remove the pod with `podstore rmp`" in _one_line(infra)
    started = podstore(store_root, "rm", "web-app")
    assert started.returncode == 1
    assert "is started: give -f to stop it first" in _one_line(started)
    assert set(managed(store_root)) == {"pod/web", "web-app", "web-idle"}

    done = podstore(store_root, "rm", web["web-idle"][:8])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [web["web-idle"]]
    assert f"removing container {web['web-idle'][:12]} (default/web-idle)" in done.stderr
    assert set(managed(store_root)) == {"pod/web", "web-app"}

    forced = podstore(store_root, "rm", "-f", "web-app")
    assert forced.returncode == 0, forced.stderr
    assert set(managed(store_root)) == {"pod/web"}

    again = podstore(store_root, "rm", web["web-idle"])
    assert again.returncode == 0
    assert "(nothing to do)" in _one_line(again)


def test_rm_leaves_containers_podstore_did_not_make(
    store_root: StorePaths, web: dict[str, str]
) -> None:
    image = images_json(store_root)[0]["id"]
    cs(store_root, "create-container", "--name", "not-podstores", image)
    done = podstore(store_root, "rm", "-f", "not-podstores")
    assert done.returncode == 1
    assert "was not made by podstore" in _one_line(done)
    assert "not-podstores" in {n for c in containers_json(store_root) for n in c.get("names", [])}


def test_rmp_removes_members_then_infra_and_rmi_refuses_images_in_use(
    store_root: StorePaths, web: dict[str, str], refs: Refs
) -> None:
    images = {i["id"]: i for i in images_json(store_root)}
    used: dict[str, Any] = next(i for i in images.values() if i["id"] == _image_of(store_root))
    refused = podstore(store_root, "rmi", used["id"][:12])
    assert refused.returncode == 1
    line = _one_line(refused)
    assert f"image {used['id'][:12]} is in use by " in line
    assert web["web-app"][:12] in line
    assert {i["id"] for i in images_json(store_root)} == set(images)

    started = podstore(store_root, "rmp", "web")
    assert started.returncode == 1
    assert "has started containers" in _one_line(started)
    done = podstore(store_root, "rmp", "-f", "web")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [web["pod/web"]]
    assert managed(store_root) == {}
    log = done.stderr
    assert log.index("removing container") < log.index(f"removing pod {web['pod/web'][:12]}")
    again = podstore(store_root, "rmp", "web")
    assert again.returncode == 0
    assert "(nothing to do)" in _one_line(again)

    removed = podstore(store_root, "rmi", used["id"])
    assert removed.returncode == 0, removed.stderr
    assert used["id"] not in {i["id"] for i in images_json(store_root)}
    gone = podstore(store_root, "rmi", used["id"])
    assert gone.returncode == 0
    assert "(nothing to do)" in _one_line(gone)


def _image_of(store: StorePaths) -> str:
    return str(managed(store)["web-app"]["image"])
