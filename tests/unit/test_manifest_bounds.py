"""What one manifest may cost: each case reproduces a crash found by fuzzing
``podstore run`` (issue 12, defect 1), now a located problem beside good resources."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.manifest import loader
from tests.reliability.fuzz import GOOD_DOCS, _alias_bomb

NODE = "node-a"


def _load(folder: Path, name: str, text: str) -> tuple[list[str], list[str]]:
    (folder / "good.yaml").write_text(yaml.safe_dump_all(GOOD_DOCS))
    (folder / name).write_text(text)
    loaded = loader.load([str(folder)], node_name=NODE)
    return [str(p) for p in loaded.problems], [d.key.name for d in loaded.documents]


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("bomb.yaml", _alias_bomb(10), "bomb.yaml, document 1: not valid YAML: stands for more"),
        ("deep.yaml", "[" * 1000 + "]" * 1000, "deep.yaml, document 1: not valid YAML: nested"),
        ("deep.json", "[" * 1000 + "]" * 1000, "deep.json, document 1: nested 1000 levels deep"),
        ("loop.yaml", "a: &x [*x]\n", "loop.yaml, document 1: not valid YAML: an alias refers"),
        ("map.yaml", "kind: {a: 1}\nmetadata: {name: x}\n", "map.yaml, document 1: kind: Invalid"),
        ("list.yaml", "kind: [StoragePod]\n", "list.yaml, document 1: kind: Invalid value: a list"),
        ("twice.yaml", "kind: Secret\nkind: Secret\n", "twice.yaml, document 1: not valid YAML:"),
        ("date.yaml", "when: 2024-13-45\n", "date.yaml, document 1: not valid YAML: month must"),
        ("digits.yaml", "n: " + "9" * 5000 + "\n", "digits.yaml, document 1: "),
    ],
)
def test_a_costly_or_mistyped_manifest_is_a_problem_and_the_good_ones_load(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    problems, names = _load(tmp_path, name, text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(tmp_path / said)), problems
    assert names == ["good", "good-side"]


def test_a_file_larger_than_the_limit_is_not_read(tmp_path: Path) -> None:
    problems, names = _load(tmp_path, "big.yaml", "# " + "x" * loader.MAX_FILE_BYTES + "\n")
    assert problems == [f"{tmp_path / 'big.yaml'}: larger than 3 MiB, not read: split it into "
                        "smaller files"]  # fmt: skip
    assert names == ["good", "good-side"]


def test_within_the_limits_anchors_and_depth_still_work(tmp_path: Path) -> None:
    text = (
        "apiVersion: podstore.dev/v1alpha1\nkind: StorageContainer\n"
        "metadata: {name: anchored}\n"
        "spec: &s {podName: good, image: registry.example.com/busybox:1.36}\n"
    )
    problems, names = _load(tmp_path, "ok.yaml", text)
    assert problems == []
    assert sorted(names) == ["anchored", "good", "good-side"]
