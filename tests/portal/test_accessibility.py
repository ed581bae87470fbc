"""Accessibility: axe-core finds no serious or critical violation on any page of the portal, each
filled with real data (the `fraud_project` fixture: a validated dataset, trained jobs, models, a
deployment with a canary), at 1280 px and at 390 px wide."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from portal_support import DESKTOP, PHONE, FraudProject, assert_accessible, sign_in

pytestmark = pytest.mark.slow

PAGES = [
    # (page, its path, a heading that shows once its data is in)
    ("projects", "/projects", "New project"),
    ("members", "/projects/{slug}", "Card fraud"),
    ("API tokens", "/tokens", "Your tokens"),
    ("datasets", "/projects/{slug}/datasets", "Upload a dataset"),
    ("dataset", "/projects/{slug}/datasets/{dataset}", "Quality report of version 1"),
    ("submit training job", "/projects/{slug}/jobs/new", "Train a model"),
    ("jobs", "/projects/{slug}/jobs", "Training jobs"),
    ("job", "/projects/{slug}/jobs/{first_job}", "Timeline"),
    ("compare", "/projects/{slug}/jobs/compare?job={first_job}&job={second_job}", "Curves"),
    ("models", "/projects/{slug}/models", "Models"),
    ("model", "/projects/{slug}/models/{model}", "Evaluation of version 2"),
    ("deployments", "/projects/{slug}/deployments", "New deployment"),
    ("deployment", "/projects/{slug}/deployments/{deployment}", "Try it"),
    ("audit log", "/projects/{slug}/audit", "Audit log"),
]


async def violations_at_both_widths(page: Page) -> list[str]:
    """What axe-core finds on the page as it is, at 1280 px, then at 390 px; the page is left
    at 1280 px."""
    found = []
    for size in (DESKTOP, PHONE):
        await page.set_viewport_size(size)
        try:
            await assert_accessible(page)
        except AssertionError as violations:
            found.append(str(violations))
    await page.set_viewport_size(DESKTOP)
    return found


async def test_the_check_names_a_serious_violation_and_its_element(page: Page) -> None:
    # The check itself, on a page made to fail it: an unlabelled button is serious or worse.
    await page.set_content("<main><button id='mute'></button></main>")
    with pytest.raises(AssertionError, match=r"button-name \((serious|critical)\).*#mute"):
        await assert_accessible(page)


async def test_the_sign_in_page_is_accessible(page: Page) -> None:
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Sign in to aiaas")).to_be_visible()
    found = await violations_at_both_widths(page)
    assert not found, "\n".join(found)


async def test_every_page_is_accessible(
    page: Page, fraud_project: FraudProject, owner: str
) -> None:
    # One signed-in page visits them all, and every page's violations are told together.
    await sign_in(page, owner)
    first_job, second_job = fraud_project.jobs
    found = []
    for name, path, heading in PAGES:
        await page.goto(
            path.format(
                slug=fraud_project.slug,
                dataset=fraud_project.dataset,
                model=fraud_project.model,
                deployment=fraud_project.deployment,
                first_job=first_job,
                second_job=second_job,
            )
        )
        await expect(page.get_by_role("heading", name=heading).first).to_be_visible()
        found += [f"{name}: {each}" for each in await violations_at_both_widths(page)]
    assert not found, "\n".join(found)
