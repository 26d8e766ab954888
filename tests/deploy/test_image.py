"""The agent image's recipe stays pinned and in step with the package it ships.

The Containerfile cannot be built here (no base image, no registry); build-oci.sh
(`make image`) builds the same image offline and tests/e2e/test_agent_image.py runs it.
These checks keep both recipes honest: every input pinned, one Debian package list and
one requirements list shared by both, versions agreeing with pyproject.toml, the Chart
and the manifests.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .common import CHART, IMAGE, MANIFESTS, REPO, find, load_objects

pytestmark = pytest.mark.deploy

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONTAINERFILE = (IMAGE / "Containerfile").read_text()


def pins(name: str) -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for raw in (IMAGE / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert found, f"{name}: {line!r} is not pinned as name==version"
        pinned[canonicalize_name(found.group(1))] = Version(found.group(2))
    return pinned


def debian_packages() -> list[str]:
    """The name=version lines of debian-packages.txt, which both recipes install."""
    lines = (IMAGE / "debian-packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_both_recipes_install_the_one_list_of_debian_packages() -> None:
    assert "COPY manifests/image/debian-packages.txt /tmp/debian-packages.txt" in CONTAINERFILE
    assert "/tmp/debian-packages.txt" in CONTAINERFILE.split("| xargs apt-get install -y")[0]
    script = (IMAGE / "build-oci.sh").read_text()
    assert '"${here}/debian-packages.txt"' in script
    assert '--include="${packages}"' in script
    for line in debian_packages():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]*=[A-Za-z0-9.+~:-]+", line), line


def test_both_recipes_install_the_one_requirements_list() -> None:
    assert "-r /tmp/pins/requirements.txt" in CONTAINERFILE
    assert "-r /tmp/pins/build-requirements.txt" in CONTAINERFILE
    script = (IMAGE / "build-oci.sh").read_text()
    assert '-r "${here}/requirements.txt"' in script
    assert '-r "${here}/build-requirements.txt"' in script
    # Only the pinned list enters the image: every pip install or download is --no-deps.
    calls = re.findall(r"pip\[@\]}\" (?:install|wheel|download)[^\n]*", script)
    assert len(calls) == 3
    for line in calls:
        assert "--no-deps" in line, line


def test_every_runtime_dependency_is_pinned_to_a_version_it_accepts() -> None:
    pinned = pins("requirements.txt")
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in manifests/image/requirements.txt"
        assert pinned[name] in requirement.specifier, f"{name}=={pinned[name]} breaks {spec}"


def test_the_build_backend_is_pinned_to_a_version_it_accepts() -> None:
    pinned = pins("build-requirements.txt")
    for spec in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned
        assert pinned[name] in requirement.specifier


def test_the_base_image_is_pulled_by_digest_only() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", CONTAINERFILE, flags=re.MULTILINE)
    external = [f for f in froms if f not in {"debian", "build"}]
    assert external == ["${BASE_IMAGE}@${BASE_DIGEST}"]


def test_apt_reads_a_dated_snapshot_and_installs_pinned_packages() -> None:
    assert re.search(r"^ARG DEBIAN_SNAPSHOT=\d{8}T\d{6}Z$", CONTAINERFILE, flags=re.MULTILINE)
    assert "snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT}" in CONTAINERFILE
    assert "snapshot.debian.org/archive/debian-security/${DEBIAN_SNAPSHOT}" in CONTAINERFILE
    installs = re.findall(r"apt-get install -y((?:[^;])*);", CONTAINERFILE)
    packages = [word for chunk in installs for word in chunk.replace("\\", " ").split()]
    packages = [p for p in packages if p != "|" and not p.startswith("/")]
    # The runtime stage installs the shared list (xargs apt-get install -y < the list).
    assert "/tmp/debian-packages.txt" in CONTAINERFILE
    packages += debian_packages()
    assert packages
    assert [p for p in packages if "=" not in p] == []
    names = {p.split("=")[0] for p in packages}
    assert {"containers-storage", "skopeo", "runc", "python3"} <= names


def test_pip_installs_only_the_pinned_list() -> None:
    for line in re.findall(r"pip install[^;\n]*", CONTAINERFILE):
        assert "--no-deps" in line, line


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_build_script_refuses_the_placeholder_digest() -> None:
    result = subprocess.run(
        ["bash", str(IMAGE / "build.sh")],
        env={**os.environ, "BASE_DIGEST": "sha256:" + "0" * 64},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "BASE_DIGEST" in result.stderr


def test_the_build_script_stamps_every_file_with_the_commit_time() -> None:
    script = (IMAGE / "build.sh").read_text()
    assert '--timestamp "${SOURCE_DATE_EPOCH}"' in script
    assert "git log -1 --format=%ct" in script
    assert "git archive" in script


def test_pyproject_chart_and_manifests_agree_on_the_version() -> None:
    version = PYPROJECT["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    daemonset = find(load_objects(MANIFESTS / "daemonset.yaml"), "DaemonSet")
    image = daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"localhost/podstore:{version}"


def _customize_hook() -> str:
    script = (IMAGE / "build-oci.sh").read_text()
    return script.split('cat > "${work}/customize.sh" <<HOOK')[1].split("\nHOOK\n")[0]


def test_the_image_holds_no_path_of_the_build_folder() -> None:
    """Two builds into different folders give the same image (make image-check)."""
    hook = _customize_hook()
    # By name from a wheel folder: an install from a file path writes direct_url.json.
    assert '--find-links "${work}/wheels"' in hook
    assert '-r "${here}/requirements.txt" "podstore==${version}"' in hook
    assert ".whl" not in hook
    # The wheels' scripts (shebang: the build virtualenv) go, with their RECORD lines.
    assert 'rm -rf "\\$site/bin"' in hook
    assert "sed -i '\\#^\\.\\./\\.\\./bin/#d' \"\\$site\"/*.dist-info/RECORD" in hook
    # The wheel is built from a copy of the sources, not the checkout (stale build/).
    script = (IMAGE / "build-oci.sh").read_text()
    assert '--wheel-dir "${work}/wheels" "${work}/src"' in script


def test_the_image_holds_nothing_of_the_build_host() -> None:
    hook = _customize_hook()
    for name in ("resolv.conf", "hostname"):
        assert f'install -m 0644 /dev/null "\\$root/etc/{name}"' in hook


def test_make_image_check_builds_twice_and_compares_the_layouts() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "bash manifests/image/build-oci.sh --check" in makefile.split("\nimage-check:")[1]
    # Too slow for every run: the double build is not part of make test.
    assert "image-check" not in makefile.split("\ntest:")[1].split("\n")[0]
    script = (IMAGE / "build-oci.sh").read_text()
    assert '"${here}/oci_diff.py" "${scratch}/a/oci" "${scratch}/b/oci"' in script
