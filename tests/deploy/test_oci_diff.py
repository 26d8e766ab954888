"""oci_diff.py, which `make image-check` uses, names what differs between two images.

The layouts here are tiny ones written by the tests (a config and one gzip layer): what
matters is that each kind of difference a real build could bring (a file's bytes, its
mtime, its mode, a file only in one build, the entry order, the compression, the config)
is found and named, and that equal layouts pass.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from .common import IMAGE

pytestmark = pytest.mark.deploy

TAG = "0.1.0"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("oci_diff", IMAGE / "oci_diff.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["oci_diff"] = module
    spec.loader.exec_module(module)
    return module


oci_diff = _load()


@dataclass
class File:
    name: str
    data: bytes = b"content\n"
    mtime: int = 1_700_000_000
    mode: int = 0o644


@dataclass
class Image:
    files: list[File] = field(default_factory=lambda: [File("etc/"), File("etc/os-release")])
    created: str = "2026-01-01T00:00:00Z"
    gzip_mtime: int = 0


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def write_layout(layout: Path, image: Image) -> Path:
    """An OCI image layout holding `image`, tagged TAG."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for file in image.files:
            info = tarfile.TarInfo(file.name.rstrip("/"))
            info.mtime, info.mode = file.mtime, file.mode
            if file.name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(file.data)
                tar.addfile(info, io.BytesIO(file.data))
    layer = gzip.compress(raw.getvalue(), mtime=image.gzip_mtime)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = json.dumps(
        {"created": image.created, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {"digest": _blob(layout, config), "size": len(config)},
            "layers": [{"digest": _blob(layout, layer), "size": len(layer)}],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "digest": _blob(layout, manifest),
                "size": len(manifest),
                "annotations": {oci_diff.REF_NAME: TAG},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def differences(tmp_path: Path, a: Image, b: Image) -> list[str]:
    layout_a = write_layout(tmp_path / "a", a)
    layout_b = write_layout(tmp_path / "b", b)
    found: list[str] = oci_diff.compare_layouts(
        oci_diff.Layout(layout_a), oci_diff.Layout(layout_b), TAG
    )
    return found


def test_two_equal_layouts_have_no_differences(tmp_path: Path) -> None:
    assert differences(tmp_path, Image(), Image()) == []


def test_a_file_whose_bytes_differ_is_named_with_its_hashes(tmp_path: Path) -> None:
    changed = Image(files=[File("etc/"), File("etc/os-release", data=b"other\n")])
    found = differences(tmp_path, Image(), changed)
    assert found[0].startswith("manifest: sha256:")
    assert any(line.startswith("config: sha256:") for line in found)
    files = [line for line in found if line.startswith("layer 0 ")]
    assert len(files) == 1
    assert files[0].startswith("layer 0 etc/os-release: ")
    assert "sha256: " in files[0]
    assert "size: 8 != 6" in files[0]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        pytest.param(File("etc/os-release", mtime=1), "mtime: 1700000000 != 1", id="mtime"),
        pytest.param(File("etc/os-release", mode=0o755), "mode: 420 != 493", id="mode"),
    ],
)
def test_a_file_whose_metadata_differs_is_named_with_the_field(
    tmp_path: Path, changed: File, expected: str
) -> None:
    found = differences(tmp_path, Image(), Image(files=[File("etc/"), changed]))
    assert f"layer 0 etc/os-release: {expected}" in found


def test_files_in_only_one_build_are_named_with_the_side(tmp_path: Path) -> None:
    a = Image(files=[File("etc/"), File("etc/os-release"), File("etc/machine-id")])
    b = Image(files=[File("etc/"), File("etc/os-release"), File("var/log/dpkg.log")])
    found = differences(tmp_path, a, b)
    assert "layer 0 etc/machine-id: only in A" in found
    assert "layer 0 var/log/dpkg.log: only in B" in found


def test_the_first_difference_in_tar_order_comes_first(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    a = Image(files=[File(name) for name in names])
    b = Image(files=[File("a"), File("b", data=b"x"), File("c", data=b"y")])
    files = [line for line in differences(tmp_path, a, b) if line.startswith("layer 0 ")]
    assert [line.split(":")[0] for line in files] == ["layer 0 b", "layer 0 c"]


def test_the_same_files_in_another_order_are_reported_as_an_order_difference(
    tmp_path: Path,
) -> None:
    a = Image(files=[File("a"), File("b")])
    b = Image(files=[File("b"), File("a")])
    assert "layer 0 entry order differs at #0: a vs b" in differences(tmp_path, a, b)


def test_the_same_tar_compressed_differently_is_reported_as_compression(
    tmp_path: Path,
) -> None:
    found = differences(tmp_path, Image(), Image(gzip_mtime=1_700_000_000))
    # The uncompressed layer, and so the config (its diff_ids), is the same.
    assert not any(line.startswith("config") for line in found)
    assert found[-1] == ("layer 0 same files, same metadata, same order: the compression differs")


def test_a_config_that_differs_is_named_by_key(tmp_path: Path) -> None:
    found = differences(tmp_path, Image(), Image(created="2026-06-01T00:00:00Z"))
    assert "config created: '2026-01-01T00:00:00Z' != '2026-06-01T00:00:00Z'" in found
    assert not any(line.startswith("layer") for line in found)


def test_many_differing_files_are_cut_short_with_a_count(tmp_path: Path) -> None:
    count = oci_diff.MAX_SHOWN + 5
    a = Image(files=[File(f"f{i:03}") for i in range(count)])
    b = Image(files=[File(f"f{i:03}", data=b"x") for i in range(count)])
    found = differences(tmp_path, a, b)
    assert found[-1] == "layer 0: ... and 5 more"
    assert len([line for line in found if line.startswith("layer 0 f")]) == oci_diff.MAX_SHOWN


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(IMAGE / "oci_diff.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_passes_on_equal_layouts_and_prints_the_digest(tmp_path: Path) -> None:
    a = write_layout(tmp_path / "a", Image())
    b = write_layout(tmp_path / "b", Image())
    result = run(a, b, TAG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("same image: sha256:")


def test_the_command_fails_naming_the_differing_file(tmp_path: Path) -> None:
    a = write_layout(tmp_path / "a", Image())
    b = write_layout(tmp_path / "b", Image(files=[File("etc/"), File("etc/os-release", b"x")]))
    result = run(a, b, TAG)
    assert result.returncode == 1
    assert "layer 0 etc/os-release: " in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        pytest.param("missing", "no readable index.json", id="no-layout"),
        pytest.param("untagged", "no image tagged 'other'", id="unknown-tag"),
    ],
)
def test_the_command_says_in_one_line_why_it_cannot_compare(
    tmp_path: Path, setup: str, message: str
) -> None:
    a = write_layout(tmp_path / "a", Image())
    b = tmp_path / "missing" if setup == "missing" else write_layout(tmp_path / "b", Image())
    result = run(a, b, "other" if setup == "untagged" else TAG)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_build_script_refuses_unknown_arguments_before_building() -> None:
    result = subprocess.run(
        ["bash", str(IMAGE / "build-oci.sh"), "--check", "a", "b"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "usage: build-oci.sh" in result.stderr
