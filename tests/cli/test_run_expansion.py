"""``podstore run`` expands ``$(VAR)`` in command and args from the container's env, as the
kubelet does, and the bundle it leaves runs with the expanded values."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.cli.common import by_name, container, pod, run_once, write
from tests.cli.conftest import Refs
from tests.support.runc import run_bundle
from tests.support.stores import StorePaths

pytestmark = pytest.mark.cli


def test_run_expands_var_references_in_args_from_env_and_the_bundle_prints_them(
    store_root: StorePaths, manifests: Path, refs: Refs, runc_root: Path
) -> None:
    env = [
        {"name": "HOST", "value": "db"},
        {"name": "URL", "value": "http://$(HOST):5432"},
    ]
    write(
        manifests / "app.yaml",
        pod("app", refs.pause),
        container(
            "client",
            "app",
            refs.busybox,
            command=["/bin/echo"],
            args=["$(URL)", "$$(URL)", "$(UNSET)", "$(HOST"],
            env=env,
        ),
    )
    done = run_once(store_root, manifests, "-o", "json")
    assert done.returncode == 0, done.stderr
    client = by_name(json.loads(done.stdout))["StorageContainer/client"]["status"]

    config = json.loads(Path(client["configPath"]).read_text())
    assert config["process"]["args"] == [
        "/bin/echo",
        "http://db:5432",
        "$(URL)",
        "$(UNSET)",
        "$(HOST",
    ]
    assert "URL=http://db:5432" in config["process"]["env"]
    ran = run_bundle(client["runDir"], f"cli-{uuid.uuid4().hex[:8]}", runc_root=runc_root)
    assert (ran.returncode, ran.stdout) == (0, "http://db:5432 $(URL) $(UNSET) $(HOST\n"), (
        ran.stderr
    )
