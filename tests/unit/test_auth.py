"""controller.storage.auth: credentials in a memory file, never on a filesystem."""

from __future__ import annotations

import json
import os
from pathlib import Path

from controller.storage import auth

CONFIG = {"auths": {"registry.example.com": {"auth": "dXNlcjpodW50ZXIy"}}}


def test_the_auth_file_is_a_private_memory_file_gone_after_the_block() -> None:
    with auth.temporary_auth_file([CONFIG]) as path:
        assert path is not None
        fd = auth.inherited_fd(path)
        assert fd is not None
        assert os.readlink(path).startswith("/memfd:podstore-auth")
        assert Path(path).stat().st_mode & 0o777 == 0o600
        assert json.loads(Path(path).read_text()) == CONFIG
        # Read twice, as skopeo may: a new open starts at the beginning.
        assert json.loads(Path(path).read_text()) == CONFIG
    assert not Path(path).exists()


def test_an_ordinary_path_needs_no_descriptor() -> None:
    assert auth.inherited_fd("/run/auth.json") is None
    assert auth.inherited_fd(None) is None
    assert auth.inherited_fd("/proc/self/fd/7") == 7


def test_directories_of_killed_pulls_are_swept_once_stale(tmp_path: Path) -> None:
    old = tmp_path / "podstore-auth-old"
    old.mkdir()
    (old / "auth.json").write_text("{}")
    fresh = tmp_path / "podstore-auth-fresh"
    fresh.mkdir()
    other = tmp_path / "something-else"
    other.mkdir()
    os.utime(old, (0, 0))
    assert auth.sweep_stale(str(tmp_path)) == [str(old)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["podstore-auth-fresh", "something-else"]
