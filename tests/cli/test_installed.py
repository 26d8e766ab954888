"""podstore as users install it: the wheel built from this tree, installed (not editable)
into a fresh virtualenv, run from outside the repository.

This is what catches package data left out of the wheel (the CRDs are read from the
installed package, not from the checkout) and a broken console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.common import NODE, REPO, managed, pod, template, write
from tests.cli.conftest import Refs
from tests.support.stores import StorePaths

pytestmark = pytest.mark.cli


def _env() -> dict[str, str]:
    """The environment without anything that would let the checkout be imported."""
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv holding podstore's wheel."""
    base = tmp_path_factory.mktemp("installed")
    wheels, venv = base / "wheels", base / "venv"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(wheels),
         str(REPO)],
        check=True, env=_env(), cwd=base, timeout=600,
    )  # fmt: skip
    (wheel,) = wheels.glob("podstore-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True, env=_env(), cwd=base, timeout=600,
    )  # fmt: skip
    return venv / "bin"


def _podstore(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "podstore"), *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import controller; print(controller.__file__)"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert not Path(where.stdout.strip()).is_relative_to(REPO)
    assert "site-packages" in where.stdout


def test_the_wheel_ships_the_crds_of_crds_folder(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "from controller import crds; print(crds.CRD_DIR)"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    shipped = Path(where.stdout.strip())
    for source in sorted((REPO / "crds").glob("*.yaml")):
        assert (shipped / source.name).read_bytes() == source.read_bytes()


def test_installed_run_once_makes_a_pod_in_a_real_store(
    installed: Path, store_root: StorePaths, manifests: Path, refs: Refs, tmp_path: Path
) -> None:
    write(
        manifests / "web.yaml",
        pod("web", refs.pause, template("app", refs.busybox, command=["/bin/true"])),
    )
    done = _podstore(
        installed, "run", "--once", "-f", str(manifests), "--node-name", NODE,
        "--root", str(store_root.root), "--runroot", str(store_root.run_root),
        "--driver", store_root.driver,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert set(managed(store_root)) == {"pod/web", "web-app"}


def test_installed_agent_help_and_version(installed: Path, tmp_path: Path) -> None:
    helped = _podstore(installed, "agent", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "usage: podstore agent" in helped.stdout
    version = _podstore(installed, "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("podstore ")


def test_installed_without_the_kubeconfig_extra_a_plugin_kubeconfig_is_one_line(
    installed: Path, tmp_path: Path
) -> None:
    """The wheel does not pull the kubernetes package; what needs it says which extra to add."""
    absent = subprocess.run(
        [str(installed / "python"), "-c", "import kubernetes"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert absent.returncode != 0
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1,"
        " command: aws}}}]\n"
    )
    done = _podstore(
        installed, "agent", "--node-name", NODE, "--kubeconfig", str(kubeconfig), cwd=tmp_path
    )
    assert done.returncode == 78, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "podstore[kubeconfig]" in line
