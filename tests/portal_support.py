"""Helpers of the portal's browser tests (`tests/portal/`): a real `aiaas serve` that can be
restarted on its port, what the browser printed, the API calls that set a test up, and signing in
by the page's own controls."""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import ConsoleMessage, Page, expect

from aiaas import portal as portal_serving
from support import (
    AIAAS_COMMAND,
    REPOSITORY,
    RunningServer,
    data_of,
    free_port,
    graphql,
    stop_gracefully,
)

PORTAL_BUNDLE = portal_serving.BUNDLE_DIR
"""Where `aiaas serve` finds the built portal (`npm run build` in `portal/` writes it)."""
SCREENSHOTS = REPOSITORY / "docs" / "images" / "portal"
SCREENSHOTS_VARIABLE = "AIAAS_PORTAL_SCREENSHOTS"
"""Set to 1 to (re)write the screenshots the docs show; unset, a run writes no tracked file."""

SESSION_COOKIE = "aiaas_session"
CSRF_HEADER = "x-aiaas-csrf"
PASSWORD = "correct horse battery staple"
"""Every test user's password: long enough for any password rule."""

NewPage = Callable[[], Awaitable[Page]]
"""Opens a page in a fresh browser context (the `new_page` fixture)."""

StartWorker = Callable[[], None]
"""Starts an `aiaas worker` for the test (the `start_worker` fixture)."""

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
"""The two window sizes every page must work at."""

STEP_TIMEOUT_MS = 15_000
"""How long one step (a click's effect, a page's heading) may take before the test fails."""
TRAINING_TIMEOUT_MS = 60_000
"""How long a tiny training job may take, a worker's start and JAX's compiles included."""


def unavailable(reason: str) -> None:
    """Skip the test, except in CI (`CI=true`), where a browser test that cannot run fails:
    CI must never pass with the browser tests silently skipped."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests may not be skipped)")
    pytest.skip(reason)


def chromium_executable() -> str | None:
    """Debian's `chromium`, the only browser these tests use: Playwright's own downloaded
    builds are never installed."""
    return shutil.which("chromium")


# The server -------------------------------------------------------------------------------


@dataclass
class PortalServer:
    """`aiaas serve` for the browser on a fixed loopback port, so that a test can stop it and
    start it again where the page left it."""

    environment: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    running: RunningServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningServer:
        # The log goes to a file: a pipe nobody reads fills up and stalls the server.
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [*AIAAS_COMMAND, "serve", "--port", str(self.port)],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.running = RunningServer(process=process, port=self.port, log_path=self.log_path)
        return self.running

    def stop(self) -> None:
        """Kill the server, as a crash would: its sockets drop without a goodbye."""
        if self.running is None:
            return
        process = self.running.process
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        self.running = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Workers:
    """`aiaas worker` processes on the portal server's queue, stopped together (SIGTERM, so
    that each finishes or hands back what it holds)."""

    environment: dict[str, str]
    log_path: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.started.append(
                subprocess.Popen(
                    [*AIAAS_COMMAND, "worker"],
                    env=self.environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stop(self) -> None:
        for process in self.started:
            stop_gracefully(process)


# What the browser printed -------------------------------------------------------------------

CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (event) => {
  const blocked = event.blockedURI || 'inline';
  console.error(`CSP violation: ${event.violatedDirective} blocked ${blocked}`);
});
"""
"""Evaluated before the page's own scripts (Playwright injects it; the page's CSP does not
apply to it): every CSP violation becomes a console error, which fails the test, even one that
Chromium would not print itself."""

SIGNED_OUT_PROBE = re.compile(
    r"^Failed to load resource: the server responded with a status of 401 .*"
)
"""What Chromium prints for any 401 answer; expected from `/v1/session` alone, where it means
"not signed in" (the page asks on load) or "wrong password"."""


@dataclass
class BrowserLog:
    """Console errors and uncaught exceptions of the pages of one test. Any that the test did
    not expect fails it at teardown; so does any CSP violation."""

    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if SIGNED_OUT_PROBE.match(message.text) and url.endswith("/v1/session"):
            return
        self.errors.append(f"console error: {message.text} (at {url})")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught exception: {error}")

    def expect(self, pattern: str) -> None:
        """Let console errors matching `pattern` pass: what a test provokes on purpose (a
        server stopped mid-page). Never a CSP violation."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [
            error
            for error in self.errors
            if "Content Security Policy" in error
            or "CSP violation" in error
            or not any(pattern.search(error) for pattern in self.expected)
        ]


def watch(page: Page, log: BrowserLog) -> None:
    page.on("console", log.on_console)
    page.on("pageerror", log.on_page_error)


async def screenshot(page: Page, name: str) -> None:
    """Save what the page shows in its window (1280 by 800 pixels on a desktop: small files for
    the docs) as `docs/images/portal/<name>.png` when AIAAS_PORTAL_SCREENSHOTS=1."""
    if os.environ.get(SCREENSHOTS_VARIABLE) != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png")


# Accessibility ------------------------------------------------------------------------------

AXE = Axe()
"""axe-core as `axe-playwright-python` bundles it (axe.min.js in the wheel): nothing is
downloaded when the tests run."""
BLOCKING_IMPACTS = ("serious", "critical")


async def assert_accessible(page: Page) -> None:
    """Fail on any serious or critical axe-core violation on the page as it is now, naming each
    rule and the elements it found."""
    results = await AXE.run(page)
    found = [
        violation
        for violation in results.response["violations"]
        if violation["impact"] in BLOCKING_IMPACTS
    ]
    assert not found, f"axe-core on {page.url} at {page.viewport_size}:\n" + "\n".join(
        f"{each['id']} ({each['impact']}): {each['help']}; targets: "
        + ", ".join(str(node["target"]) for node in each["nodes"])
        for each in found
    )


# Setting a test up through the API ----------------------------------------------------------


async def api(base_url: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    """Run a GraphQL operation with an API token; fails the test on any error."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return data_of(await graphql(client, query, variables, token=token))


CREATE_USER = """
mutation($input: CreateUserInput!) {
  createUser(input: $input) { __typename ... on Error { message } ... on CreateUserSuccess {
    user { username } } }
}
"""

CREATE_PROJECT = """
mutation($input: CreateProjectInput!) {
  createProject(input: $input) { __typename ... on Error { message }
    ... on CreateProjectSuccess { project { id slug } } }
}
"""

ADD_MEMBER = """
mutation($input: ProjectMemberInput!) {
  addProjectMember(input: $input) { __typename ... on Error { message } }
}
"""


async def create_user(base_url: str, admin_token: str, username: str) -> str:
    """A user who signs in with `PASSWORD`; answers the username."""
    data = await api(
        base_url,
        admin_token,
        CREATE_USER,
        input={"username": username, "password": PASSWORD},
    )
    assert data["createUser"]["__typename"] == "CreateUserSuccess", data
    return username


async def create_project(
    base_url: str, admin_token: str, slug: str, name: str, *, members: dict[str, str]
) -> str:
    """A project made by the admin, with `members` (username: role) added; answers its id."""
    created = await api(base_url, admin_token, CREATE_PROJECT, input={"slug": slug, "name": name})
    assert created["createProject"]["__typename"] == "CreateProjectSuccess", created
    project_id: str = created["createProject"]["project"]["id"]
    for username, role in members.items():
        added = await api(
            base_url,
            admin_token,
            ADD_MEMBER,
            input={"project": project_id, "username": username, "role": role},
        )
        assert added["addProjectMember"]["__typename"] == "ProjectMemberSuccess", added
    return project_id


@dataclass(frozen=True)
class BrowserSession:
    """A session signed in over `/v1/session` outside the browser: its cookie and CSRF
    token, as a page would send them."""

    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        return {"cookie": f"{SESSION_COOKIE}={self.cookie}", CSRF_HEADER: self.csrf}


async def session_of_cookie(base_url: str, cookie: str) -> httpx.Response:
    """`GET /v1/session` with the cookie alone: what a page does after a reload."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.get("/v1/session", headers={"cookie": f"{SESSION_COOKIE}={cookie}"})


async def graphql_with_cookie(base_url: str, session: BrowserSession, query: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.post("/graphql", json={"query": query}, headers=session.headers)


# Signing in by the page's own controls -----------------------------------------------------


async def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Open the portal and sign in with its form; returns once the page shows the user
    signed in (its "Sign out" button)."""
    await page.goto("/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def open_from_nav(page: Page, link: str) -> None:
    """Follow a link of the project's navigation, as a user moves between its pages."""
    await page.get_by_role("navigation", name="Project").get_by_role("link", name=link).click()


@dataclass
class FraudProject:
    """What the `fraud_project` fixture made: names to find each page by."""

    slug: str
    dataset: str = "payments"
    model: str = "payments"
    deployment: str = "payments-api"
    jobs: list[str] = field(default_factory=list)


# A fraud-detection table ---------------------------------------------------------------------

FRAUD_COLUMNS = ("amount", "hour", "distance_km", "merchant_risk", "label")


def fraud_csv(rows: int = 300, seed: int = 7) -> str:
    """Card payments, a third of them fraud (large, at night, far from home, at risky
    merchants), labelled "fraud" or "legit": a small binary classification that a tiny model
    learns in a few epochs."""
    draw = random.Random(seed)
    lines = [",".join(FRAUD_COLUMNS)]
    for _ in range(rows):
        fraud = draw.random() < 0.33
        amount = draw.uniform(300, 2000) if fraud else draw.uniform(2, 400)
        hour = draw.choice([0, 1, 2, 3, 4, 23]) if fraud else draw.randint(7, 22)
        distance = draw.uniform(50, 900) if fraud else draw.uniform(0, 60)
        risk = draw.uniform(0.4, 1) if fraud else draw.uniform(0, 0.6)
        label = "fraud" if fraud else "legit"
        lines.append(f"{amount:.2f},{hour},{distance:.1f},{risk:.3f},{label}")
    return "\n".join(lines) + "\n"


FRAUD_EXPECTATIONS = [
    {"kind": "not_null", "column": "amount"},
    {"kind": "allowed_values", "column": "label", "values": ["fraud", "legit"]},
    # Fails on the large payments, without blocking training: the report's failing check,
    # with its example rows.
    {"kind": "range", "column": "amount", "min": 0, "max": 1500, "blocking": False},
]


# Driving the pages ---------------------------------------------------------------------------

POINTS = re.compile(r"(\d+) points")
"""The live chart's count of what it draws."""


async def fill_training_form(page: Page, *, target: str, epochs: int = 3, seed: int = 0) -> None:
    """Fill the submit form of the page open at `/projects/<slug>/jobs/new` for a tiny
    tabular classifier on the newest dataset version."""
    await expect(page.get_by_role("heading", name="Train a model")).to_be_visible()
    await page.get_by_label("Trainer").select_option("tabular-classifier")
    await page.get_by_label("Target column").select_option(target)
    await page.get_by_label("Seed", exact=True).fill(str(seed))
    await page.get_by_label("Epochs", exact=True).fill(str(epochs))
    await page.get_by_label("Batch size", exact=True).fill("16")
