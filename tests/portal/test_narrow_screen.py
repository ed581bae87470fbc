"""The portal on a phone: at 390 px wide, its pages fit the screen (nothing scrolls sideways;
a wide table scrolls inside its own frame) and the account's controls stay in view."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from portal_support import PHONE, screenshot, sign_in

pytestmark = pytest.mark.slow

SIDEWAYS_OVERFLOW = (
    "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
)


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/projects", "Projects"),
        ("/projects/{slug}", "Wine"),
        ("/projects/{slug}/datasets", "Datasets"),
        ("/projects/{slug}/jobs", "Training jobs"),
        ("/projects/{slug}/jobs/new", "Train a model"),
        ("/tokens", "API tokens"),
    ],
)
async def test_a_page_fits_a_phone(
    page: Page, wine_project: str, owner: str, path: str, heading: str
) -> None:
    await page.set_viewport_size(PHONE)
    await sign_in(page, owner)
    await page.goto(path.format(slug=wine_project))
    await expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    # Measured once the page's data is in: a table arrives after its heading.
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate(SIDEWAYS_OVERFLOW) <= 0, "the page scrolls sideways"
    await expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
    if path == "/projects":
        await screenshot(page, "projects-phone")
