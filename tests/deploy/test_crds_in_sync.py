"""controller/api/schema.py is the single source of the CRDs: crds/ and the chart's, the
manifests' and the Python package's copies (controller/crds/, shipped in the wheel) are
what it generates (`make crds`), byte for byte."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from controller.api import crdgen

from .common import CHART, CRD_FILES, CRDS, KUBE_VERSIONS, MANIFESTS, REPO, load_objects

pytestmark = pytest.mark.deploy

COPIES = [
    pytest.param(CHART / "crds", id="chart"),
    pytest.param(MANIFESTS / "crds", id="manifests"),
    pytest.param(REPO / "controller" / "crds", id="package"),
]
RESYNC = "make crds"


def yaml_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.yaml"))


def test_every_crd_file_is_what_the_schema_generates() -> None:
    assert crdgen.drift(REPO) == [], f"resync with: {RESYNC}"


def test_a_drifted_crd_is_named_by_the_check(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    edited = tmp_path / "manifests" / "crds" / crdgen.file_name("StoragePod")
    edited.write_text(edited.read_text().replace("maxItems: 64", "maxItems: 65"))
    (tmp_path / "crds" / "extra.yaml").write_text("---\n")

    assert crdgen.drift(tmp_path) == [
        "crds/extra.yaml (not generated)",
        f"manifests/crds/{edited.name}",
    ]
    assert crdgen.main(["--top", str(tmp_path), "--check"]) == 1
    crdgen.write(tmp_path)
    (tmp_path / "crds" / "extra.yaml").unlink()
    assert crdgen.main(["--top", str(tmp_path), "--check"]) == 0


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
