"""The project's pages that follow training, driven as a user would on a project with real
models and a deployment (`fraud_project`): jobs compared side by side, an alias moved on the
model page, the deployments listed and a new one made, the audit log filtered while a new
event arrives live, and a deployment's timeline resumed after a server restart without replaying
what it showed."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import Page, WebSocket, expect

from portal_support import (
    TRAINING_TIMEOUT_MS,
    BrowserLog,
    FraudProject,
    NewPage,
    PortalServer,
    open_from_nav,
    screenshot,
    sign_in,
)
from support import wait_until_ready

pytestmark = pytest.mark.slow


async def test_two_jobs_are_compared_side_by_side(
    page: Page, fraud_project: FraudProject, owner: str
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{fraud_project.slug}/jobs")
    boxes = page.get_by_role("checkbox", name=re.compile(r"^Compare job payments"))
    await expect(boxes).to_have_count(2)
    await boxes.nth(0).check()
    await expect(page.get_by_role("link", name=re.compile("Compare"))).to_have_count(0)
    await boxes.nth(1).check()
    await page.get_by_role("link", name="Compare 2 jobs").click()

    await expect(page.get_by_role("heading", name="Compare training jobs")).to_be_visible()
    epochs = page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name="epochs", exact=True)
    )
    await expect(epochs.get_by_role("cell")).to_have_text(["4", "3"])
    await expect(page.get_by_role("columnheader", name=re.compile(r"#2 payments"))).to_be_visible()
    curves = page.get_by_role("img", name="Chart of #1 payments, #2 payments by training step")
    await expect(curves).to_be_visible()
    await expect(page.get_by_role("figure").locator("canvas").first).to_be_visible()


async def test_an_alias_is_moved_on_the_model_page(
    page: Page, fraud_project: FraudProject, owner: str
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{fraud_project.slug}/models")
    await page.get_by_role("link", name=fraud_project.model).click()
    await expect(page.get_by_role("heading", name=fraud_project.model, level=1)).to_be_visible()
    form = page.get_by_role("form", name="Move an alias")
    await form.get_by_label("Alias").fill("production")
    await form.get_by_role("combobox", name=re.compile("^Version")).select_option(label="version 2")
    await page.get_by_role("button", name="Move alias").click()

    await expect(page.get_by_role("status")).to_have_text("production now points at version 2.")
    await expect(page.get_by_role("listitem").filter(has_text="production")).to_contain_text(
        "version 2"
    )
    await open_from_nav(page, "Models")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=fraud_project.model))
    await expect(row).to_contain_text("production → v2")


async def test_deployments_are_listed_and_one_is_made_by_the_form(
    page: Page, fraud_project: FraudProject, owner: str
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{fraud_project.slug}/deployments")
    existing = page.get_by_role("row").filter(
        has=page.get_by_role("link", name=fraud_project.deployment)
    )
    await expect(existing).to_contain_text("ready")
    await expect(existing).to_contain_text("payments v1 (80 %), canary v2 (20 %)")

    await page.get_by_label("Deployment name").fill("payments-next")
    await page.get_by_label("Model version").select_option(label="payments v2")
    await page.get_by_role("button", name="Deploy").click()
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Deployment: payments-next")
    await expect(title).to_contain_text("ready", timeout=TRAINING_TIMEOUT_MS)
    await expect(page.get_by_role("list", name="Deployment timeline")).to_contain_text("ready")
    await open_from_nav(page, "Deployments")
    made = page.get_by_role("row").filter(has=page.get_by_role("link", name="payments-next"))
    await expect(made).to_contain_text("payments v2 (100 %)")


async def test_the_audit_log_is_filtered_and_follows_new_events(
    new_page: NewPage, fraud_project: FraudProject, owner: str
) -> None:
    audit = await new_page()
    await sign_in(audit, owner)
    await audit.goto(f"/projects/{fraud_project.slug}/audit")
    await expect(audit.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    rows = audit.get_by_role("table").get_by_role("row")
    await expect(rows.filter(has_text="deployment.update_traffic")).not_to_have_count(0)
    await screenshot(audit, "audit-log")

    await audit.get_by_label("Action").fill("model.set_alias")
    await audit.get_by_label("Actor").fill(owner)
    await audit.get_by_role("button", name="Filter").click()
    await expect(rows.filter(has_text="deployment.update_traffic")).to_have_count(0)
    before = await rows.filter(has_text="model.set_alias").count()

    # The same user moves an alias in another tab; the log shows it without a reload.
    models = await new_page()
    await sign_in(models, owner)
    await models.goto(f"/projects/{fraud_project.slug}/models/{fraud_project.model}")
    await models.get_by_label("Alias", exact=True).fill("staging")
    await models.get_by_role("button", name="Move alias").click()
    await expect(models.get_by_role("status")).to_contain_text("staging now points at")

    moved = rows.filter(has_text="model.set_alias")
    await expect(moved).to_have_count(before + 1)
    await expect(moved.first).to_contain_text(owner)
    await expect(moved.first).to_contain_text("success")


def stream_position(cursor: str) -> tuple[int, int]:
    """A stream id "<milliseconds>-<sequence>" as numbers, to order two of them."""
    milliseconds, sequence = cursor.split("-")
    return int(milliseconds), int(sequence)


class DeploymentFrames:
    """What the page's socket carried of `deploymentEvents`: the cursor of each event received,
    and the `after` of each subscription sent."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.asked_after: list[str | None] = []
        self.asked = asyncio.Event()

    def watch(self, socket: WebSocket) -> None:
        socket.on("framesent", self.sent)
        socket.on("framereceived", self.got)

    def sent(self, frame: str | bytes) -> None:
        message = json.loads(frame)
        payload = message.get("payload") or {}
        if message.get("type") == "subscribe" and "deploymentEvents" in payload.get("query", ""):
            self.asked_after.append((payload.get("variables") or {}).get("after"))
            self.asked.set()

    def got(self, frame: str | bytes) -> None:
        message = json.loads(frame)
        data = (message.get("payload") or {}).get("data") or {}
        if message.get("type") == "next" and data.get("deploymentEvents"):
            self.received.append(data["deploymentEvents"]["cursor"])

    async def settled(self) -> None:
        """Until the events stop coming for a second (the history replayed on opening)."""
        async with asyncio.timeout(30):
            while True:
                count = len(self.received)
                await asyncio.sleep(1)
                if count and count == len(self.received):
                    return


async def test_a_deployment_timeline_resumes_after_a_restart_without_replaying(
    page: Page,
    portal: PortalServer,
    fraud_project: FraudProject,
    owner: str,
    browser_log: BrowserLog,
) -> None:
    frames = DeploymentFrames()
    page.on("websocket", frames.watch)
    await sign_in(page, owner)
    await page.goto(f"/projects/{fraud_project.slug}/deployments/{fraud_project.deployment}")
    await frames.settled()
    timeline = page.get_by_role("list", name="Deployment timeline").get_by_role("listitem")
    await expect(timeline).to_have_count(1 + len(frames.received))  # "created", then each event
    last = frames.received[-1]
    shown = len(frames.received)
    frames.asked_after.clear()
    frames.asked.clear()

    browser_log.expect(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/graphql' failed")
    browser_log.expect(r"net::ERR_CONNECTION_REFUSED")
    portal.stop()
    banner = page.get_by_role("status").filter(has_text="reconnecting")
    await expect(banner).to_be_visible()
    await wait_until_ready(portal.start())
    await expect(banner).to_be_hidden(timeout=30_000)

    # Asked once, from the last event shown: not from the start, and not twice.
    async with asyncio.timeout(15):
        await frames.asked.wait()
    await asyncio.sleep(2)  # time for a second subscription or a replay, were there one
    assert frames.asked_after == [last]
    replayed = [
        cursor
        for cursor in frames.received[shown:]
        if stream_position(cursor) <= stream_position(last)
    ]
    assert replayed == []
