"""Datasets in the portal: a CSV dropped on the upload form goes up with a progress bar, and the
new version is listed with its row count."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page, expect

from portal_support import PortalServer, create_project, screenshot, sign_in

pytestmark = pytest.mark.slow

ROWS = 20_000
"""About 1 MB of CSV: enough for the browser to report the upload's progress on its way."""

DROP_CSV = """
async ([rows]) => {
  const lines = ['amount,merchant,is_fraud'];
  for (let i = 0; i < rows; i++) lines.push(`${(i * 7.31) % 1000},m${i % 97},${i % 13 === 0}`);
  const file = new File([lines.join('\\n') + '\\n'], 'card-payments.csv', { type: 'text/csv' });
  const transfer = new DataTransfer();
  transfer.items.add(file);
  const zone = document.querySelector('[data-testid="dropzone"]');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    const init = { bubbles: true, cancelable: true, dataTransfer: transfer };
    zone.dispatchEvent(new DragEvent(type, init));
  }
}
"""
"""Drop a generated CSV on the upload form, as a file dragged from the desktop would be."""

WATCH_PROGRESS = """
() => {
  window.uploadProgressSeen = [];
  new MutationObserver(() => {
    const bar = document.querySelector('progress[aria-label="Upload progress"]');
    if (bar) window.uploadProgressSeen.push(Number(bar.value));
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
}
"""


@pytest.fixture(scope="module")
async def empty_project(portal: PortalServer, admin_token: str, owner: str) -> str:
    slug = f"payments-{uuid.uuid4().hex[:6]}"
    await create_project(portal.base_url, admin_token, slug, "Payments", members={owner: "OWNER"})
    return slug


async def test_a_dropped_csv_is_uploaded_with_progress_and_listed(
    page: Page, empty_project: str, owner: str
) -> None:
    await sign_in(page, owner)
    await page.goto(f"/projects/{empty_project}/datasets")
    await expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible()
    await expect(page.get_by_text("This project has no dataset yet.")).to_be_visible()

    await page.evaluate(DROP_CSV, [ROWS])
    await expect(page.get_by_text("Chosen: card-payments.csv")).to_be_visible()
    await expect(page.get_by_label("Dataset name")).to_have_value("card-payments")
    await page.evaluate(WATCH_PROGRESS)
    await page.get_by_role("button", name="Upload").click()

    status = page.get_by_role("status").filter(has_text="Uploaded")
    await expect(status).to_contain_text(f"version 1 of card-payments, {ROWS} rows")
    seen = await page.evaluate("window.uploadProgressSeen")
    assert seen, "no upload progress was shown"
    assert all(0 <= value <= 1 for value in seen), seen
    table = page.get_by_role("table")
    row = table.get_by_role("row").filter(has=page.get_by_role("link", name="card-payments"))
    await expect(row).to_contain_text("v1")
    await expect(row).to_contain_text(str(ROWS))
    await screenshot(page, "datasets")
