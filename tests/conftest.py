"""Fixtures shared by every test folder: registries, test images, stores, runc.

Session-scoped (made once, torn down at the end):

- ``registry``: a plain-HTTP ``docker-registry`` on 127.0.0.1 (``.host``, ``.url``,
  ``.ref("busybox:1")``).
- ``auth_registry``: a second one requiring basic auth (``.username``, ``.password``,
  ``.write_auth_file(path)``), holding ``auth_registry.ref("busybox:1")``.
- ``image_layout``: the busybox test images as an OCI layout plus archives
  (:class:`tests.support.images.LocalImages`), no registry needed.
- ``images``: the same pushed to ``registry`` (:class:`tests.support.images.RegistryImages`):
  ``images.busybox``, ``images.busybox2``, ``images.pause``, ``images.busybox_id``, ...

Per test:

- ``dead_registry``: ``host:port`` where nothing listens.
- ``auth_file``: a containers-auth.json for ``auth_registry``.
- ``driver``: ``"overlay"`` unless parametrized (see ``each_driver``).
- ``store_root``: a fresh :class:`tests.support.stores.StorePaths` (``root``,
  ``run_root``, ``driver``; unpacks as ``root, run_root``), always shut down and removed.
- ``store``: ``controller.storage.Store`` on ``store_root``; ``vfs_store``: one on vfs.
- ``image_service`` / ``runtime_service``: the contract's services on ``store``, with the
  test registry as insecure.
- ``runc_root``: a runc state folder for :func:`tests.support.runc.run_bundle`.

To run a test on both drivers::

    from tests.support.stores import each_driver

    @each_driver
    def test_something(store): ...
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# tests.support is imported as a package of the repository (pytest puts tests/ itself on
# sys.path, not the repository); harmless when the root is there already.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support.images import LocalImages, RegistryImages, build_images, push_images  # noqa: E402
from tests.support.registry import DeadRegistry, Registry, dead_address, push, start_registry  # noqa: E402
from tests.support.stores import DEFAULT_DRIVER, StorePaths, temporary_store  # noqa: E402

# -- registries --------------------------------------------------------------


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-HTTP docker-registry on 127.0.0.1, empty until ``images`` pushes to it."""
    with start_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory, image_layout: LocalImages
) -> Iterator[Registry]:
    """A registry that needs basic auth, holding ``auth_registry.ref("busybox:1")``."""
    credentials = ("podstore", "pw-" + secrets.token_hex(8))
    with start_registry(tmp_path_factory.mktemp("auth-registry"), credentials=credentials) as reg:
        push(image_layout.busybox_oci, reg, "busybox:1")
        yield reg


@pytest.fixture
def auth_file(auth_registry: Registry, tmp_path: Path) -> Path:
    """A containers-auth.json granting access to ``auth_registry``."""
    return auth_registry.write_auth_file(tmp_path / "auth.json")


@pytest.fixture
def dead_registry() -> DeadRegistry:
    """``127.0.0.1:PORT`` with nothing listening (``str()`` and ``.host`` give it)."""
    return DeadRegistry(dead_address())


# -- images ------------------------------------------------------------------


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> LocalImages:
    """The test images as an OCI layout, an oci-archive, a docker-archive and a dir."""
    return build_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def images(image_layout: LocalImages, registry: Registry) -> RegistryImages:
    """The test images, also pushed to ``registry`` under ``podstore-test/``."""
    return push_images(image_layout, registry)


# -- stores ------------------------------------------------------------------


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> str:
    """The storage driver of ``store_root``/``store``: overlay unless parametrized."""
    return str(getattr(request, "param", DEFAULT_DRIVER))


@pytest.fixture
def store_root(tmp_path: Path, driver: str) -> Iterator[StorePaths]:
    """A fresh, empty store location; unmounted, shut down and removed afterwards."""
    with temporary_store(tmp_path / "store", driver) as paths:
        yield paths


@pytest.fixture
def store(store_root: StorePaths) -> Any:
    """``controller.storage.Store`` on ``store_root`` (driver from ``driver``)."""
    from controller.storage import Store  # lazily: collection must not need it

    return Store(store_root.root, store_root.run_root, store_root.driver)


@pytest.fixture
def vfs_store(tmp_path: Path) -> Iterator[Any]:
    """A ``controller.storage.Store`` on the vfs driver, beside any ``store``."""
    from controller.storage import Store

    with temporary_store(tmp_path / "vfs-store", "vfs") as paths:
        yield Store(paths.root, paths.run_root, paths.driver)


@pytest.fixture
def image_service(store: Any, registry: Registry) -> Any:
    """``ImageService`` on ``store``, reaching the test registry over plain HTTP."""
    from controller.storage import ImageService

    return ImageService(store, insecure_registries=(registry.host,))


@pytest.fixture
def runtime_service(image_service: Any) -> Any:
    """``RuntimeService`` over ``image_service``."""
    from controller.storage import RuntimeService

    return RuntimeService(image_service)


# -- runc --------------------------------------------------------------------


@pytest.fixture
def runc_root(tmp_path: Path) -> Path:
    """A runc ``--root`` of this test's own, for ``run_bundle(..., runc_root=runc_root)``."""
    path = tmp_path / "runc"
    path.mkdir()
    return path
