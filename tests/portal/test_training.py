"""Training from the portal: a job submitted with the form generated from the trainer's typed
hyperparameters, and its page, opened while the job waits in the queue, drawing the loss and
accuracy as the worker reports them (over `jobEvents`, never a reload) until it succeeds."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from portal_support import (
    POINTS,
    TRAINING_TIMEOUT_MS,
    StartWorker,
    fill_training_form,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.slow


async def test_a_job_submitted_by_form_is_charted_live_until_it_succeeds(
    page: Page, wine_project: str, owner: str, start_worker: StartWorker
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{wine_project}/jobs/new")
    await fill_training_form(page, target="cultivar")
    await screenshot(page, "submit-training-job")
    await page.get_by_role("button", name="Submit training job").click()

    # The job's page, while no worker runs: queued, nothing to draw yet.
    await expect(page).to_have_url(re.compile(rf"/projects/{wine_project}/jobs/[^/]+$"))
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Queued")
    chart = page.get_by_role("figure")
    await expect(chart).to_contain_text("No metric recorded yet.")
    job_url = page.url

    start_worker()
    await expect(chart).to_contain_text(POINTS, timeout=TRAINING_TIMEOUT_MS)
    await expect(title).to_contain_text("Succeeded", timeout=TRAINING_TIMEOUT_MS)
    assert page.url == job_url, "the page followed the job without being reloaded"
    live_points = int(POINTS.search(await chart.inner_text()).group(1))  # type: ignore[union-attr]
    assert live_points > 0
    await expect(chart.locator("canvas").first).to_be_visible()
    await expect(page.get_by_role("list", name="State timeline")).to_contain_text("Succeeded")
    await expect(
        page.get_by_text(re.compile(r"Registered model version wine v\d+"))
    ).to_be_visible()
    await screenshot(page, "training-job")

    # A later visit replays the recorded history: the same curve, from the database.
    await page.reload()
    await expect(title).to_contain_text("Succeeded")
    await expect(chart).to_contain_text(POINTS)
