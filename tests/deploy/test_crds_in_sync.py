"""crds/ is the single source of the CRDs: the chart's, the manifests' and the Python
package's copies (controller/crds/, shipped in the wheel) are byte-identical to it."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from .common import CHART, CRD_FILES, CRDS, KUBE_VERSIONS, MANIFESTS, REPO, load_objects

pytestmark = pytest.mark.deploy

COPIES = [
    pytest.param(CHART / "crds", id="chart"),
    pytest.param(MANIFESTS / "crds", id="manifests"),
    pytest.param(REPO / "controller" / "crds", id="package"),
]
RESYNC = (
    "cp crds/*.yaml charts/podstore/crds/ && cp crds/*.yaml manifests/crds/"
    " && cp crds/*.yaml controller/crds/"
)


def yaml_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.yaml"))


def test_crds_holds_one_file_per_kind() -> None:
    assert yaml_files(CRDS) == sorted(CRD_FILES)


@pytest.mark.parametrize("copy", COPIES)
def test_the_copy_holds_the_same_files_as_crds(copy: Path) -> None:
    assert yaml_files(copy) == yaml_files(CRDS), f"resync with: {RESYNC}"


@pytest.mark.parametrize("copy", COPIES)
@pytest.mark.parametrize("name", CRD_FILES)
def test_the_copy_is_byte_identical_to_crds(copy: Path, name: str) -> None:
    source, copied = CRDS / name, copy / name
    assert copied.exists(), f"{copied} is missing; resync with: {RESYNC}"
    assert copied.read_bytes() == source.read_bytes(), (
        f"{copied} has drifted from {source}; resync with: {RESYNC}"
    )


def test_helm_installs_both_crds(chart: helm.Chart) -> None:
    assert sorted(c["filename"].rsplit("/", 1)[-1] for c in chart.crds) == sorted(CRD_FILES)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", CRD_FILES)
def test_the_crds_are_valid_kubernetes(name: str, version: str) -> None:
    for crd in load_objects(CRDS / name):
        kubernetes_validate.validate(crd, version, strict=True)
