"""Helpers shared by the benchmarks (and the script that records CLI output).

A benchmark needs an image without a registry and a store it can throw away.
:func:`build_busybox_image` makes a one-layer OCI layout holding busybox with
umoci; :func:`temp_store` gives a containers/storage store in a temporary
folder that is always shut down (``shutdown --force``), unmounted and removed,
however the benchmark ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CS = "containers-storage"
REPO = Path(__file__).resolve().parent.parent


def need(*tools: str) -> None:
    """Stop with a readable message when a tool is not installed."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (apt-get install them)")


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command without a shell; on failure say what it printed."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout}"
        )
    return done


def build_busybox_image(
    workdir: str | os.PathLike[str],
    *,
    tag: str = "t",
    cmd: Sequence[str] = ("/bin/busybox", "sh"),
    env: Sequence[str] = ("PATH=/bin",),
) -> Path:
    """An OCI layout ``workdir/layout`` with image ``tag``: busybox in /bin, a Cmd and an Env."""
    need("umoci", "busybox")
    base = Path(workdir)
    layout = base / "layout"
    bundle = base / "bundle"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    config = ["umoci", "config", "--image", f"{layout}:{tag}"]
    for arg in cmd:
        config += ["--config.cmd", arg]
    for item in env:
        config += ["--config.env", item]
    run(config)
    run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)])
    bindir = bundle / "rootfs" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    busybox = shutil.which("busybox")
    assert busybox is not None
    shutil.copy2(busybox, bindir / "busybox")
    etc = bundle / "rootfs" / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    run(["umoci", "repack", "--image", f"{layout}:{tag}", str(bundle)])
    shutil.rmtree(bundle)
    return layout


@dataclass(frozen=True)
class TempStore:
    """A throw-away store: its folders and the CLI's leading options for it."""

    base: Path
    root: str
    run_root: str
    driver: str = "overlay"

    @property
    def prefix(self) -> list[str]:
        return [CS, "--graph", self.root, "--run", self.run_root, "--storage-driver", self.driver]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.prefix, *args], check=check)

    def destination(self, name: str) -> str:
        return f"containers-storage:[{self.driver}@{self.root}+{self.run_root}]{name}"

    def load(self, layout: str | os.PathLike[str], tag: str, name: str) -> str:
        """Copy ``layout:tag`` into the store as ``name``; returns the image ID."""
        need("skopeo")
        run(["skopeo", "copy", "--quiet", f"oci:{layout}:{tag}", self.destination(name)])
        data = json.loads(self.cli("image", "--json", name).stdout)
        return str(data[0]["id"])


def _mounts_under(path: str) -> list[str]:
    found: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) > 1:
                target = parts[1].replace("\\040", " ")
                if target == path or target.startswith(path + "/"):
                    found.append(target)
    # Deepest first, so that nested mounts go before their parents.
    return sorted(found, key=len, reverse=True)


def unmount_all(store: TempStore) -> list[str]:
    """Unmount every mounted layer of the store, one by one; returns their IDs.

    ``shutdown --force`` of containers-storage 1.43 (Debian 12) never returns
    while a layer is mounted (it loops on a stale mount count), so layers are
    unmounted here first and shutdown only has to release the driver.
    """
    listed = store.cli("layers", "--json", check=False)
    try:
        layers = [str(item["id"]) for item in json.loads(listed.stdout or "[]")]
    except (ValueError, KeyError, TypeError):
        layers = []
    if not layers:
        return []
    done = store.cli("mounted", *layers, check=False)
    mounted = [line.split()[0] for line in done.stdout.splitlines() if line.endswith(" mounted")]
    for layer in mounted:
        store.cli("unmount", "--force", layer, check=False)
    return mounted


def cleanup_store(store: TempStore) -> None:
    """Unmount the store's layers, shut it down, unmount leftovers, remove it."""
    if shutil.which(CS) is not None and os.path.isdir(store.root):
        unmount_all(store)
        try:
            done = subprocess.run(
                [*store.prefix, "shutdown", "--force"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                print(f"warning: shutdown of {store.root} failed: {done.stderr.strip()}")
        except subprocess.TimeoutExpired:
            print(f"warning: shutdown --force of {store.root} hung; killed it")
    for target in _mounts_under(str(store.base)):
        run(["umount", "-l", target], check=False)
    shutil.rmtree(store.base, ignore_errors=True)


@contextlib.contextmanager
def temp_store(
    prefix: str = "podstore-bench-", *, base: str | os.PathLike[str] | None = None
) -> Iterator[TempStore]:
    """A fresh store in a temporary folder (or in ``base``), always cleaned up."""
    need(CS)
    if base is None:
        where = Path(tempfile.mkdtemp(prefix=prefix))
    else:
        where = Path(base)
        where.mkdir(parents=True, exist_ok=False)
    store = TempStore(where, str(where / "root"), str(where / "runroot"))
    try:
        yield store
    finally:
        cleanup_store(store)


@contextlib.contextmanager
def temp_dir(prefix: str = "podstore-bench-") -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield where
    finally:
        for target in _mounts_under(str(where)):
            run(["umount", "-l", target], check=False)
        shutil.rmtree(where, ignore_errors=True)
