"""The agent's liveness endpoint and Prometheus metrics, over HTTP.

``serve`` is started with both ports set; after a short lifecycle the metrics name
the reconciles, the storage commands and the image pulls it made.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.agent import (
    CONTAINERS,
    agent_settings,
    in_thread,
    ready_pod,
    running_agent,
    storage_container,
    storage_pod,
    wait_for_phase,
)
from tests.support.registry import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1 only
        return response.status, response.read().decode()


def samples(text, name):
    """The sample lines of one metric family in the text exposition format."""
    return [line for line in text.splitlines() if line.startswith(name)]


async def test_healthz_answers_and_metrics_count_reconciles_storage_commands_and_pulls(
    kube, store, images
):
    health, metrics = free_port(), free_port()
    settings = agent_settings(kube, store, images, health_port=health, metrics_port=metrics)
    async with running_agent(settings):
        await ready_pod(kube, storage_pod("web"))
        await kube.aio.create(storage_container("tool", "web", images.busybox))
        await wait_for_phase(kube, CONTAINERS, "tool", "Started")

        status, body = await in_thread(http_get, f"http://127.0.0.1:{health}/healthz")
        assert status == 200, body
        status, text = await in_thread(http_get, f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200

    reconciles = samples(text, "podstore_reconciles_total")
    assert any('kind="StoragePod"' in s and 'result="ok"' in s for s in reconciles), reconciles
    assert any('kind="StorageContainer"' in s and 'result="ok"' in s for s in reconciles)
    operations = samples(text, "podstore_storage_operations_total")
    assert any('verb="create-container"' in s and 'result="ok"' in s for s in operations)
    assert any('verb="mount"' in s for s in operations), operations
    pulls = samples(text, "podstore_image_pulls_total")
    assert any('result="ok"' in s and float(s.rsplit(" ", 1)[1]) >= 2 for s in pulls), pulls
    # busybox-static alone is about a megabyte compressed: two pulls move at least that.
    (pulled,) = samples(text, "podstore_image_pull_bytes_total")
    assert float(pulled.rsplit(" ", 1)[1]) > 1_000_000, pulled


def health_of(url):
    """(HTTP status, body) of the health endpoint; a refused connection is (None, why)."""
    try:
        return http_get(url)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return None, str(err)


async def wait_for_health(url, wanted, timeout=60.0):
    deadline = asyncio.get_running_loop().time() + timeout
    seen = []
    while asyncio.get_running_loop().time() < deadline:
        status, body = await in_thread(health_of, url)
        seen.append(status)
        if status == wanted:
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"/healthz never answered {wanted} in {timeout}s: {seen[-5:]}")


async def test_healthz_fails_while_the_api_server_is_out_of_reach_and_recovers_after(
    kube, store, images
):
    health = free_port()
    url = f"http://127.0.0.1:{health}/healthz"
    settings = agent_settings(kube, store, images, health_port=health)
    async with running_agent(settings):
        body = await wait_for_health(url, 200)
        assert json.loads(body) == {"api": "ok"}

        await in_thread(kube.stop)
        try:
            down = await wait_for_health(url, 500)
        finally:
            await in_thread(kube.start)
        up = await wait_for_health(url, 200)

        # Connected again: the agent still works.
        await ready_pod(kube, storage_pod("after", "node-a"))

    assert "Internal Server Error" in down or "500" in down, down
    assert json.loads(up) == {"api": "ok"}
