"""A page's subscription survives a server restart: the job page shows that the connection
was lost, reconnects by itself once the server is back on its port, and goes on drawing the
job live, with no reload."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, WebSocket, expect

from aiaas.client import Client
from portal_support import TRAINING_TIMEOUT_MS, BrowserLog, PortalServer, StartWorker, sign_in
from support import wait_until_ready

pytestmark = pytest.mark.slow

POINTS = re.compile(r"\d+ points")


def submit_job(portal: PortalServer, token: str, slug: str) -> str:
    """Queue a small training job with the SDK; answers its global id."""
    with Client(portal.base_url, token) as client:
        project = client.project(slug)
        version = project.latest_version("wine")
        job = project.train(
            version, trainer="tabular-classifier", target="cultivar", epochs=2, batch_size=16
        )
        return job.id


async def test_a_subscription_survives_a_server_restart(
    page: Page,
    portal: PortalServer,
    wine_project: str,
    owner: str,
    admin_token: str,
    start_worker: StartWorker,
    browser_log: BrowserLog,
) -> None:
    job_id = await asyncio.to_thread(submit_job, portal, admin_token, wine_project)
    acknowledged = asyncio.Event()

    def on_socket(socket: WebSocket) -> None:
        socket.on(
            "framereceived",
            lambda frame: acknowledged.set() if "connection_ack" in str(frame) else None,
        )

    page.on("websocket", on_socket)
    await sign_in(page, owner)
    await page.goto(f"/projects/{wine_project}/jobs/{job_id}")
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Queued")
    async with asyncio.timeout(15):
        await acknowledged.wait()  # the job's events are subscribed

    # What the browser prints while the server is away is expected; nothing else is.
    browser_log.expect(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/graphql' failed")
    browser_log.expect(r"net::ERR_CONNECTION_REFUSED")
    portal.stop()
    banner = page.get_by_role("status").filter(has_text="reconnecting")
    await expect(banner).to_be_visible()

    acknowledged.clear()
    await wait_until_ready(portal.start())
    await expect(banner).to_be_hidden(timeout=30_000)
    async with asyncio.timeout(15):
        await acknowledged.wait()

    # The resubscribed stream is live: the job, run only now, is drawn and finishes.
    start_worker()
    chart = page.get_by_role("figure")
    await expect(chart).to_contain_text(POINTS, timeout=TRAINING_TIMEOUT_MS)
    await expect(title).to_contain_text("Succeeded", timeout=TRAINING_TIMEOUT_MS)
