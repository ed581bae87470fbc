"""API tokens in the portal: one made by the form shows its secret once, works as a bearer
token, and stops working once revoked from the list (after a confirmation)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from portal_support import PortalServer, sign_in

pytestmark = pytest.mark.slow

WHO_AM_I = "{ viewer { username } }"


async def ask_as(base_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.post(
            "/graphql", json={"query": WHO_AM_I}, headers={"authorization": f"Bearer {token}"}
        )


async def test_a_token_is_created_shown_once_and_revoked(
    page: Page, portal: PortalServer, owner: str
) -> None:
    await sign_in(page, owner)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    await expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    await page.get_by_label("Token name").fill("notebook")
    await page.get_by_role("button", name="Create token").click()

    await expect(page.get_by_role("heading", name="Token “notebook” created")).to_be_visible()
    secret = await page.get_by_label("New token secret").input_value()
    answer = await ask_as(portal.base_url, secret)
    assert answer.json()["data"]["viewer"]["username"] == owner, answer.text
    row = page.get_by_role("row").filter(has_text="notebook")
    await expect(row).to_contain_text("never")  # not revoked, no expiry
    await expect(row).not_to_contain_text(secret)

    # Shown once: a later visit lists the token, never its secret.
    await page.reload()
    await expect(row).to_be_visible()
    await expect(page.get_by_label("New token secret")).to_have_count(0)
    assert secret not in await page.content()

    # Revoking asks first: "Cancel" leaves the token working, "Yes" revokes it.
    await row.get_by_role("button", name="Revoke token notebook").click()
    question = row.get_by_role("group", name="Revoke notebook? Scripts using it stop working.")
    await question.get_by_role("button", name="Cancel").click()
    await expect(row.get_by_role("cell").nth(6)).to_have_text("no")
    still = await ask_as(portal.base_url, secret)
    assert still.json()["data"]["viewer"]["username"] == owner, still.text
    await row.get_by_role("button", name="Revoke token notebook").click()
    await row.get_by_role("button", name="Yes, revoke notebook").click()
    await expect(row.get_by_role("button", name="Revoke token notebook")).to_have_count(0)
    await expect(row.get_by_role("cell").nth(6)).not_to_have_text("no")
    refused = await ask_as(portal.base_url, secret)
    assert refused.status_code == 401 or refused.json().get("errors"), refused.text
