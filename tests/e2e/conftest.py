"""Fixtures of the e2e tests: a Kubernetes API emulator per test, with a kubeconfig.

``kube`` is an :class:`emulator.EmulatedCluster` served on 127.0.0.1 in its own thread
(so that sync tests, async tests, an operator task and an agent subprocess all reach
it), holding the CRDs of ``crds/`` and the namespaces default, kube-system,
kube-public and kube-node-lease. A test fails at teardown if the emulator itself
broke on a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator import EmulatedCluster


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """A fresh emulated cluster; its kubeconfig is ``kube.kubeconfig``."""
    with EmulatedCluster(kubeconfig=tmp_path / "kubeconfig") as cluster:
        yield cluster
    if cluster.server_errors:
        pytest.fail("the API emulator failed on requests:\n" + "\n".join(cluster.server_errors))


@pytest.fixture
def kube_env(kube: EmulatedCluster, monkeypatch: pytest.MonkeyPatch) -> EmulatedCluster:
    """``kube``, with ``KUBECONFIG`` pointing at it (for kopf's and the agent's login)."""
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    return kube
