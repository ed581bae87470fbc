"""Projects in the portal: one created by clicks is listed, and a viewer of a project sees
none of the controls an owner has (the API would refuse them anyway)."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Page, expect

from portal_support import (
    NewPage,
    PortalServer,
    create_project,
    create_user,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.slow


async def test_a_project_created_by_clicks_is_listed(page: Page, owner: str) -> None:
    slug = f"churn-{uuid.uuid4().hex[:6]}"
    await sign_in(page, owner)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await page.get_by_label("Slug").fill(slug)
    await page.get_by_label("Name", exact=True).fill("Churn model")
    await page.get_by_label("Description").fill("Who leaves, and why")
    await page.get_by_role("button", name="Create project").click()

    # The new project's own page, then the list.
    await expect(page.get_by_role("heading", name="Churn model", level=1)).to_be_visible()
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Projects").click()
    listed = page.get_by_role("list", name="Your projects")
    await expect(listed.get_by_role("link", name="Churn model")).to_be_visible()
    await expect(listed).to_contain_text(slug)
    await screenshot(page, "project-list")


async def test_a_bad_slug_is_refused_in_plain_words(page: Page, owner: str) -> None:
    await sign_in(page, owner)
    await page.get_by_label("Slug").fill("Not A Slug!")
    await page.get_by_label("Name", exact=True).fill("Bad")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.get_by_role("alert")).to_contain_text("slug")
    await expect(page.get_by_role("list", name="Your projects")).not_to_contain_text("Bad")


@pytest.fixture(scope="module")
async def team(portal: PortalServer, admin_token: str, owner: str) -> dict[str, str]:
    """A project owned by `owner` with a second user as VIEWER, set up through the API."""
    viewer = await create_user(portal.base_url, admin_token, f"viewer-{uuid.uuid4().hex[:6]}")
    slug = f"fraud-{uuid.uuid4().hex[:6]}"
    await create_project(
        portal.base_url,
        admin_token,
        slug,
        "Fraud detection",
        members={owner: "OWNER", viewer: "VIEWER"},
    )
    return {"slug": slug, "viewer": viewer}


async def test_a_viewer_sees_no_owner_controls(
    new_page: NewPage, team: dict[str, str], owner: str
) -> None:
    slug = team["slug"]
    as_owner = await new_page()
    await sign_in(as_owner, owner)
    await as_owner.goto(f"/projects/{slug}")
    await expect(as_owner.get_by_role("heading", name="Fraud detection", level=1)).to_be_visible()
    # What the viewer must not see, seen by the owner: the test cannot pass on a page that
    # shows no one any control.
    await expect(as_owner.get_by_role("button", name="Add member")).to_be_visible()
    await expect(as_owner.get_by_label(f"Role of {team['viewer']}")).to_be_visible()
    await screenshot(as_owner, "project-members")

    as_viewer = await new_page()
    await sign_in(as_viewer, team["viewer"])
    await as_viewer.goto(f"/projects/{slug}")
    await expect(as_viewer.get_by_role("heading", name="Fraud detection", level=1)).to_be_visible()
    await expect(as_viewer.get_by_role("cell", name=owner)).to_be_visible()
    await expect(as_viewer.get_by_text("your role: Viewer")).to_be_visible()
    await expect(as_viewer.get_by_role("button", name="Add member")).to_have_count(0)
    await expect(as_viewer.get_by_role("button", name="Remove", exact=False)).to_have_count(0)
    await expect(as_viewer.get_by_role("combobox")).to_have_count(0)


async def test_an_owner_changes_a_role_by_saving_it_and_removes_a_member_after_confirming(
    page: Page, portal: PortalServer, admin_token: str, owner: str
) -> None:
    member = await create_user(portal.base_url, admin_token, f"member-{uuid.uuid4().hex[:6]}")
    slug = f"roles-{uuid.uuid4().hex[:6]}"
    await create_project(
        portal.base_url,
        admin_token,
        slug,
        "Role changes",
        members={owner: "OWNER", member: "VIEWER"},
    )
    await sign_in(page, owner)
    await page.goto(f"/projects/{slug}")
    await expect(page.get_by_role("heading", name="Role changes", level=1)).to_be_visible()
    row = page.get_by_role("row").filter(has_text=member)

    # Choosing in the list proposes a role; only "Save role" changes it (a reload shows which).
    await row.get_by_label(f"Role of {member}").select_option(label="Developer")
    await page.reload()
    await expect(row.get_by_label(f"Role of {member}")).to_have_value("VIEWER")
    await row.get_by_label(f"Role of {member}").select_option(label="Developer")
    await row.get_by_role("button", name=f"Save role of {member}").click()
    await expect(row.get_by_role("button", name=f"Save role of {member}")).to_have_count(0)
    # Focus stays on the list whose choice was saved.
    await expect(row.get_by_label(f"Role of {member}")).to_be_focused()
    await page.reload()
    await expect(row.get_by_label(f"Role of {member}")).to_have_value("DEVELOPER")

    # Removing asks first; "Cancel" keeps the member.
    await row.get_by_role("button", name=f"Remove {member}").click()
    question = row.get_by_role("group", name=f"Remove {member} from Role changes?")
    await expect(question.get_by_role("button", name="Cancel")).to_be_focused()
    await question.get_by_role("button", name="Cancel").click()
    await expect(row.get_by_role("button", name=f"Remove {member}")).to_be_focused()
    await page.reload()
    await expect(row).to_be_visible()
    await row.get_by_role("button", name=f"Remove {member}").click()
    await row.get_by_role("button", name=f"Yes, remove {member}").click()
    await expect(page.get_by_role("row").filter(has_text=member)).to_have_count(0)
    # The row took the focused button with it: focus is on the members' heading, not lost.
    await expect(page.get_by_role("heading", name="Members", level=2)).to_be_focused()
    await page.reload()
    await expect(page.get_by_role("heading", name="Role changes", level=1)).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text=member)).to_have_count(0)
