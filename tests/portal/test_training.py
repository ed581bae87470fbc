"""Training from the portal: a job submitted with the form generated from the trainer's typed
hyperparameters, and its page, opened while the job waits in the queue, drawing the loss and
accuracy as the worker reports them (over `jobEvents`, never a reload) until it succeeds."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect

from portal_support import (
    POINTS,
    TRAINING_TIMEOUT_MS,
    NewPage,
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


async def test_the_jobs_list_follows_a_job_submitted_elsewhere_without_a_reload(
    new_page: NewPage, wine_project: str, owner: str, start_worker: StartWorker
) -> None:
    watcher = await new_page()
    await sign_in(watcher, owner)
    await watcher.goto(f"/projects/{wine_project}/jobs")
    await expect(watcher.get_by_role("heading", level=1)).to_have_text("Training jobs")
    listed_at = watcher.url

    # Another tab (its own session) submits the job; the list hears of it over
    # `projectJobChanges`, then of each change of its state.
    submitter = await new_page()
    await sign_in(submitter, owner)
    await submitter.goto(f"/projects/{wine_project}/jobs/new")
    await fill_training_form(submitter, target="cultivar", epochs=1)
    await submitter.get_by_role("button", name="Submit training job").click()
    await expect(submitter).to_have_url(
        re.compile(rf"/projects/{wine_project}/jobs/(?!new$)[^/]+$")
    )
    job_path = urlsplit(submitter.url).path
    row = watcher.get_by_role("row").filter(has=watcher.locator(f'a[href="{job_path}"]'))
    await expect(row).to_contain_text("Queued")

    start_worker()
    await expect(row).to_contain_text("Succeeded", timeout=TRAINING_TIMEOUT_MS)
    assert watcher.url == listed_at, "the list followed the job without being reloaded"


async def test_a_queued_job_is_cancelled_only_once_the_question_is_answered_yes(
    page: Page, wine_project: str, owner: str
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{wine_project}/jobs/new")
    await fill_training_form(page, target="cultivar", epochs=1)
    await page.get_by_role("button", name="Submit training job").click()
    await expect(page).to_have_url(re.compile(rf"/projects/{wine_project}/jobs/(?!new$)[^/]+$"))
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Queued")

    # Asked first; "Keep the job" (never a bare "Cancel", which would read as the action) keeps it.
    await page.get_by_role("button", name="Cancel job").click()
    question = page.get_by_role("group", name=re.compile(r"^Cancel the training of "))
    await expect(question).to_be_visible()
    await expect(page.get_by_role("button", name="Keep the job")).to_be_focused()
    await page.get_by_role("button", name="Keep the job").click()
    await expect(question).to_be_hidden()
    await expect(page.get_by_role("button", name="Cancel job")).to_be_focused()
    await page.reload()
    await expect(title).to_contain_text("Queued")

    await page.get_by_role("button", name="Cancel job").click()
    await page.get_by_role("button", name="Yes, cancel the job").click()
    await expect(title).to_contain_text("Cancelled")
    await expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    await expect(title).to_be_focused()  # not lost on the page's body with its button
    await page.reload()
    await expect(title).to_contain_text("Cancelled")
