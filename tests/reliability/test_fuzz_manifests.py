"""The manifest fuzzer: seeded, mutated manifests beside a good file.

Each case writes ``good.yaml`` (a pod with an inline container, and a standalone
container) and one mutated ``bad.yaml`` or ``bad.json``, reads the folder with the
loader and builds the resource set over the good file's previous one, as
``podstore run`` does. Every case must end without an exception and within its
budget, every problem must name the bad file (and the field, for a document's
field), and the good resources must come out exactly as they were.

``FUZZ_CASES`` sets the number of cases (200 by default, ``make soak`` runs more),
``FUZZ_SEED`` the seed. The figures are printed at the end.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from controller.manifest import loader
from controller.manifest.loader import Loaded
from controller.manifest.resources import build
from tests.reliability import fuzz
from tests.reliability.kill9 import report

SEED = int(os.environ.get("FUZZ_SEED", "12"))
CASES = int(os.environ.get("FUZZ_CASES", "200"))
NODE = "node-a"
NOW = "2026-01-01T00:00:00Z"
# Not a measure of speed: a case that has not ended after this long is hung.
HANG_SECONDS = 60
# Problems about a whole file or document rather than one field.
DOCUMENT_LEVEL = ("not valid YAML", "not valid JSON", "nested ", "larger than", "cannot read")


class Hung(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hung


def _write_case(folder: Path, case: fuzz.Case) -> Path:
    path = folder / case.file_name
    if isinstance(case.text, bytes):
        path.write_bytes(case.text)
    else:
        path.write_text(case.text, encoding="utf-8", errors="surrogatepass")
    return path


def _previous(folder: Path) -> tuple[Any, ...]:
    """The good file alone, built once: what the store held before the bad file came."""
    (folder / "good.yaml").write_text(yaml.safe_dump_all(fuzz.GOOD_DOCS, sort_keys=False))
    loaded = loader.load([str(folder)], node_name=NODE)
    assert not loaded.problems, loaded.problems
    return tuple(build(loaded, [], now=NOW).entries.values())


def _check(folder: Path, case: fuzz.Case, previous: tuple[Any, ...]) -> tuple[list[str], int]:
    """Run one case; return the violations (none when it went right) and the problems."""
    bad = _write_case(folder, case)
    try:
        loaded: Loaded = loader.load([str(folder)], node_name=NODE)
        built = build(loaded, list(previous), now=NOW)
        json.dumps([e.obj for e in built.entries.values()])  # what the state file holds
    finally:
        bad.unlink()
    violations = []
    for problem in [*loaded.problems, *built.problems]:
        text = str(problem)
        if problem.file != str(bad):
            violations.append(f"a problem not about the bad file: {text}")
        elif (
            not problem.field
            and not problem.message.startswith(DOCUMENT_LEVEL)
            and problem.document is not None
            and "must be an object" not in problem.message
        ):
            violations.append(f"a problem naming no field: {text}")
    for entry in previous:
        now = built.entries.get(entry.key)
        if now is None or now.obj != entry.obj:
            violations.append(f"the good resource {entry.key} changed")
    return violations, len(loaded.problems) + len(built.problems)


def test_fuzzed_manifests_never_crash_and_leave_good_resources_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = {"cases": 0, "crashes": 0, "hangs": 0, "violations": 0, "errors": 0}
    folder = tmp_path / "manifests"
    folder.mkdir()
    previous = _previous(folder)
    failures: list[str] = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in fuzz.cases(SEED, CASES):
            figures["cases"] += 1
            signal.alarm(HANG_SECONDS)
            try:
                violations, errors = _check(folder, case, previous)
                loaded = loader.load([str(folder)], node_name=NODE)
                assert not loaded.problems  # the bad file is gone again
            except Hung:
                figures["hangs"] += 1
                failures.append(f"case {case.number} ({case.what}): hung")
                continue
            except BaseException as err:
                if isinstance(err, KeyboardInterrupt):
                    raise
                figures["crashes"] += 1
                failures.append(f"case {case.number} ({case.what}): {type(err).__name__}: {err}")
                continue
            finally:
                signal.alarm(0)
                for leftover in folder.glob("bad.*"):
                    leftover.unlink()
            figures["violations"] += len(violations)
            failures += [f"case {case.number} ({case.what}): {v}" for v in violations]
            figures["errors"] += errors
    finally:
        signal.signal(signal.SIGALRM, old)
    with capsys.disabled():
        report(
            f"manifest fuzzer (seed {SEED}): {figures['cases']} cases, "
            f"{figures['crashes']} crashes, {figures['hangs']} hangs, "
            f"{figures['violations']} violations, {figures['errors']} input errors reported"
        )
    assert not failures, "\n".join(failures[:20])
