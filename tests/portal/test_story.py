"""The whole fraud-detection story by clicks, as a data scientist tells it: a new project, a
payments table uploaded with the file picker, expectations written and checked, two models
trained from the generated form while their curves draw live, one deployed, the other sent a
canary share with the slider, promoted, and asked for a prediction with the try-it form."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.async_api import Page, expect

from portal_support import (
    FRAUD_EXPECTATIONS,
    POINTS,
    TRAINING_TIMEOUT_MS,
    StartWorker,
    fill_training_form,
    fraud_csv,
    open_from_nav,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.slow

ROWS = 300


async def train_by_form(page: Page, slug: str, seed: int) -> str:
    """Train a tiny classifier of `label` from the jobs list's "Train a model" form, follow its
    page until it succeeds; answers the registered version's name ("payments v1")."""
    await page.goto(f"/projects/{slug}/jobs")
    await page.get_by_role("link", name="Train a model").click()
    await fill_training_form(page, target="label", seed=seed)
    await page.get_by_role("button", name="Submit training job").click()
    await expect(page).to_have_url(re.compile(rf"/projects/{slug}/jobs/[^/]+$"))
    chart = page.get_by_role("figure")
    await expect(chart).to_contain_text(POINTS, timeout=TRAINING_TIMEOUT_MS)
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Succeeded", timeout=TRAINING_TIMEOUT_MS)
    registered = page.get_by_text(re.compile(r"Registered model version payments v\d+"))
    await expect(registered).to_be_visible()
    found = re.search(r"payments v\d+", await registered.inner_text())
    assert found is not None
    return found.group(0)


async def test_the_fraud_detection_story_by_clicks(
    page: Page, owner: str, start_worker: StartWorker
) -> None:
    start_worker()  # validation and training run on it
    slug = f"fraud-story-{uuid.uuid4().hex[:6]}"

    # A project of one's own.
    await sign_in(page, owner)
    await page.get_by_label("Slug").fill(slug)
    await page.get_by_label("Name", exact=True).fill("Card fraud story")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.get_by_role("heading", name="Card fraud story", level=1)).to_be_visible()

    # The payments table, chosen with the file picker.
    await open_from_nav(page, "Datasets")
    await page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "payments.csv", "mimeType": "text/csv", "buffer": fraud_csv(ROWS).encode()}]
    )
    await expect(page.get_by_label("Dataset name")).to_have_value("payments")
    await page.get_by_role("button", name="Upload").click()
    uploaded = page.get_by_role("status").filter(has_text="Uploaded")
    await expect(uploaded).to_contain_text(f"version 1 of payments, {ROWS} rows")

    # Its expectations, a validation, the quality report.
    await uploaded.get_by_role("link", name="payments").click()
    await expect(page.get_by_role("heading", name="payments", level=1)).to_be_visible()
    await expect(page.get_by_role("heading", name="Profile of version 1")).to_be_visible()
    await page.get_by_label("Expectations (JSON)").fill(json.dumps(FRAUD_EXPECTATIONS))
    await page.get_by_role("button", name="Save expectations").click()
    await expect(page.get_by_role("status")).to_contain_text("Expectations saved")
    await page.get_by_role("button", name="Validate version 1").click()
    report = page.get_by_role("region", name="Quality report of version 1")
    await expect(report).to_be_visible(timeout=TRAINING_TIMEOUT_MS)
    await expect(report.get_by_label("Quality score")).to_contain_text("Q")
    failing = report.get_by_role("row").filter(has_text="range")
    await expect(failing).to_contain_text("failed")
    await report.get_by_text(re.compile("Example rows failing")).click()
    await expect(report.locator("details[open]")).to_contain_text("amount")
    await report.scroll_into_view_if_needed()
    await screenshot(page, "dataset-quality-report")

    # Two models, trained from the generated form, each followed live.
    first = await train_by_form(page, slug, seed=1)
    second = await train_by_form(page, slug, seed=2)
    assert (first, second) == ("payments v1", "payments v2")
    await open_from_nav(page, "Models")
    await page.get_by_role("link", name="payments").click()
    await expect(page.get_by_role("button", name="Version 2")).to_be_visible()

    # Version 1 deployed, then version 2 sent a canary share with the slider.
    await open_from_nav(page, "Deployments")
    await page.get_by_label("Deployment name").fill("fraud-api")
    await page.get_by_label("Model version").select_option(label=first)
    await page.get_by_role("button", name="Deploy").click()
    title = page.get_by_role("heading", level=1)
    await expect(title).to_contain_text("Deployment: fraud-api")
    await expect(title).to_contain_text("ready", timeout=TRAINING_TIMEOUT_MS)
    await page.get_by_label("Canary version").select_option(label="version 2")
    await page.get_by_label("Canary share (%)").fill("30")
    await expect(page.get_by_text("canary: 30 %")).to_be_visible()
    await page.get_by_role("form", name="Edit traffic").scroll_into_view_if_needed()
    await screenshot(page, "deployment-canary")
    await page.get_by_role("button", name="Apply traffic").click()
    traffic = page.get_by_role("heading", name="Traffic", exact=True).locator("+ ul")
    await expect(traffic).to_contain_text("Canary: version 2, 30 %", timeout=TRAINING_TIMEOUT_MS)
    await expect(title).to_contain_text("ready", timeout=TRAINING_TIMEOUT_MS)

    # The canary promoted: version 2 takes all the traffic.
    await page.get_by_role("button", name="Promote canary").click()
    await expect(traffic).to_contain_text("Stable: version 2, 100 %", timeout=TRAINING_TIMEOUT_MS)
    await expect(traffic).not_to_contain_text("Canary")
    await expect(title).to_contain_text("ready", timeout=TRAINING_TIMEOUT_MS)

    # A prediction from the try-it form, prefilled from a row of the training data.
    await page.get_by_role("button", name="Predict").click()
    answer = page.get_by_role("status").filter(has_text="Answered by")
    await expect(answer).to_contain_text("stable version (v2)")
    await expect(answer.get_by_label("Prediction")).to_contain_text(re.compile("fraud|legit"))
