"""Signing in and out of the portal: a wrong password told in plain words; a session that
survives a reload in an httpOnly cookie that no page script can read, with no token in the
page's storage; and a sign-out that revokes the session on the server, so that the old cookie,
replayed with its CSRF header, is refused."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from portal_support import (
    PASSWORD,
    SESSION_COOKIE,
    BrowserSession,
    PortalServer,
    graphql_with_cookie,
    screenshot,
    session_of_cookie,
    sign_in,
)

pytestmark = pytest.mark.slow

VIEWER_QUERY = "{ viewer { username } }"


async def test_a_wrong_password_is_told_in_plain_words(page: Page, owner: str) -> None:
    await page.goto("/")
    await page.get_by_label("Username").fill(owner)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("wrong username or password")
    assert "[object" not in await alert.inner_text()
    await expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    assert await page.context.cookies() == []


async def test_a_session_survives_a_reload_out_of_the_page_scripts_reach(
    page: Page, owner: str
) -> None:
    await sign_in(page, owner)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await screenshot(page, "projects")

    await page.reload()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Main")).to_contain_text("Projects")

    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    session_cookie = cookies[SESSION_COOKIE]
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Strict"
    token = session_cookie["value"]
    assert token

    readable = await page.evaluate(
        """() => ({
            cookie: document.cookie,
            local: Object.entries(localStorage).flat().join('\\n'),
            session: Object.entries(sessionStorage).flat().join('\\n'),
        })"""
    )
    for place, text in readable.items():
        assert token not in text, f"the session token is readable in {place}"
        assert SESSION_COOKIE not in text, f"the session cookie is readable in {place}"


async def test_sign_out_revokes_the_session(page: Page, portal: PortalServer, owner: str) -> None:
    await sign_in(page, owner)
    cookies = {cookie["name"]: cookie["value"] for cookie in await page.context.cookies()}
    answer = await session_of_cookie(portal.base_url, cookies[SESSION_COOKIE])
    assert answer.status_code == 200
    stolen = BrowserSession(cookie=cookies[SESSION_COOKIE], csrf=answer.json()["csrfToken"])
    # The replay works while the session lasts, so its refusal below is the sign-out's doing.
    before = await graphql_with_cookie(portal.base_url, stolen, VIEWER_QUERY)
    assert before.status_code == 200
    assert before.json()["data"]["viewer"]["username"] == owner

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert SESSION_COOKIE not in {cookie["name"] for cookie in await page.context.cookies()}

    after = await graphql_with_cookie(portal.base_url, stolen, VIEWER_QUERY)
    assert after.status_code == 401, after.text
    assert "data" not in after.json() or after.json()["data"] is None
    assert (await session_of_cookie(portal.base_url, stolen.cookie)).status_code == 401

    # Signing in again works: the sign-out ended that session, not the account.
    await page.get_by_label("Username").fill(owner)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_the_cookie_alone_authenticates_nothing(
    page: Page, portal: PortalServer, owner: str
) -> None:
    """Without the CSRF header the cookie is refused: what a page on another site could make
    the browser send."""
    await sign_in(page, owner)
    cookies = {cookie["name"]: cookie["value"] for cookie in await page.context.cookies()}
    headers = {"cookie": f"{SESSION_COOKIE}={cookies[SESSION_COOKIE]}"}
    async with httpx.AsyncClient(base_url=portal.base_url, timeout=10) as client:
        refused = await client.post("/graphql", json={"query": VIEWER_QUERY}, headers=headers)
    assert refused.status_code == 401, refused.text
