"""The portal in a real browser: Debian's `chromium`, driven headless by Playwright, against a
real `aiaas serve` (uvicorn) on the test module's own database and Redis, and an `aiaas worker`
where a test runs jobs.

Without `chromium` (or without the built portal bundle) the tests are skipped with the reason,
except when `CI=true`: there they fail, so that CI never passes without them. Every page's
console errors, uncaught exceptions and CSP violations fail the test that made them
(`portal_support.BrowserLog`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from aiaas.client import Client
from aiaas.core.config import Config
from portal_support import (
    CSP_LISTENER,
    DESKTOP,
    FRAUD_EXPECTATIONS,
    PORTAL_BUNDLE,
    STEP_TIMEOUT_MS,
    TRAINING_TIMEOUT_MS,
    BrowserLog,
    FraudProject,
    NewPage,
    PortalServer,
    StartWorker,
    Workers,
    api,
    chromium_executable,
    create_project,
    create_user,
    fraud_csv,
    unavailable,
    watch,
)
from serving_support import wine_table
from support import server_environment, wait_until_ready

expect.set_options(timeout=STEP_TIMEOUT_MS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the test, so that a fixture can tell that its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Debian chromium for the whole session; each test gets its own context."""
    executable = chromium_executable()
    if executable is None:
        unavailable("Debian's chromium is not installed: apt-get install chromium")
    if not (PORTAL_BUNDLE / "index.html").is_file():
        unavailable(f"the portal is not built: no {PORTAL_BUNDLE / 'index.html'}")
    async with async_playwright() as playwright:
        # Never `playwright install`: the browser is the machine's package.
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        await launched.close()


def portal_environment(config: Config) -> dict[str, str]:
    """The server's and the worker's environment: the module's database, Redis, queue and data
    directory, so that what the server enqueues the worker runs, on the artifacts both see."""
    return server_environment(
        config,
        AIAAS_QUEUE_NAME=config.queue_name,
        AIAAS_DATA_DIR=str(config.data_dir),
    )


@pytest.fixture(scope="module")
async def portal(
    config: Config, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PortalServer]:
    """`aiaas serve` serving the portal at `/`, ready."""
    server = PortalServer(
        environment=portal_environment(config),
        log_path=tmp_path_factory.mktemp("portal") / "serve.log",
    )
    try:
        await wait_until_ready(server.start())
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_worker(config: Config, tmp_path: Path) -> Iterator[StartWorker]:
    """Start an `aiaas worker` on the portal server's queue when the test says so (a job can
    wait, queued, until its page is open); stopped at the end of the test."""
    workers = Workers(environment=portal_environment(config), log_path=tmp_path / "worker.log")
    yield workers.start
    workers.stop()


@pytest.fixture(scope="module")
async def owner(portal: PortalServer, admin_token: str) -> str:
    """A user who signs in with a password; answers the username."""
    return await create_user(portal.base_url, admin_token, f"owner-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def browser_log() -> BrowserLog:
    """What this test's pages printed; `.expect(pattern)` lets an error it provokes pass."""
    return BrowserLog()


@pytest.fixture
async def new_page(
    browser: Browser,
    portal: PortalServer,
    browser_log: BrowserLog,
    request: pytest.FixtureRequest,
) -> AsyncIterator[NewPage]:
    """Open pages, each in a fresh browser context (its own cookies and storage), on the
    portal; at teardown, any console error, uncaught exception or CSP violation that the test
    did not expect fails it."""
    contexts: list[BrowserContext] = []

    async def open_page() -> Page:
        context = await browser.new_context(base_url=portal.base_url, viewport=DESKTOP)
        context.set_default_timeout(STEP_TIMEOUT_MS)
        contexts.append(context)
        await context.add_init_script(CSP_LISTENER)
        page = await context.new_page()
        watch(page, browser_log)
        return page

    yield open_page
    if failed(request):
        # What the pages showed and what the server said, to read beside the failure.
        for context in contexts:
            for each in context.pages:
                print(f"--- page {each.url}:\n{await each.locator('body').inner_text()}")
        print(f"--- server log (last 4000 characters):\n{portal.log()[-4000:]}")
    for context in contexts:
        await context.close()
    unexpected = browser_log.unexpected()
    assert not unexpected, "the browser reported errors:\n" + "\n".join(unexpected)


@pytest.fixture
async def page(new_page: NewPage) -> Page:
    """A page in a fresh browser context; see `new_page`."""
    return await new_page()


@pytest.fixture(scope="module")
async def wine_project(portal: PortalServer, admin_token: str, owner: str) -> str:
    """A project `owner` owns, holding the wine data set (178 rows) as dataset "wine",
    uploaded with the SDK; answers its slug."""
    slug = f"wine-{uuid.uuid4().hex[:6]}"
    await create_project(portal.base_url, admin_token, slug, "Wine", members={owner: "OWNER"})

    def upload() -> None:
        with Client(portal.base_url, admin_token) as client:
            client.project(slug).upload(wine_table(), "wine", progress=False)

    await asyncio.to_thread(upload)  # the SDK's client is synchronous
    return slug


DATASET_ID = """
query($slug: String!, $name: String!) { project(slug: $slug) { dataset(name: $name) { id } } }
"""

SET_EXPECTATIONS = """
mutation($dataset: ID!, $expectations: JSON!) {
  setDatasetExpectations(dataset: $dataset, expectations: $expectations) {
    __typename ... on Error { message } }
}
"""


@pytest.fixture(scope="module")
async def fraud_project(
    portal: PortalServer,
    admin_token: str,
    owner: str,
    config: Config,
    tmp_path_factory: pytest.TempPathFactory,
) -> FraudProject:
    """A project `owner` owns with every page filled, set up with the SDK: the "payments"
    fraud table, validated against expectations (one failing check), two models trained on it
    (3 and 4 epochs),
    and a deployment serving version 1 with version 2 as a canary."""
    fraud = FraudProject(slug=f"fraud-{uuid.uuid4().hex[:6]}")
    await create_project(
        portal.base_url, admin_token, fraud.slug, "Card fraud", members={owner: "OWNER"}
    )
    folder = tmp_path_factory.mktemp("fraud")
    table = folder / f"{fraud.dataset}.csv"
    table.write_text(fraud_csv())
    workers = Workers(environment=portal_environment(config), log_path=folder / "worker.log")
    workers.start()
    try:
        with Client(portal.base_url, admin_token) as client:
            project = client.project(fraud.slug)
            version = await asyncio.to_thread(project.upload, table, fraud.dataset, progress=False)
            found = await api(
                portal.base_url, admin_token, DATASET_ID, slug=fraud.slug, name=fraud.dataset
            )
            dataset_id = found["project"]["dataset"]["id"]
            saved = await api(
                portal.base_url,
                admin_token,
                SET_EXPECTATIONS,
                dataset=dataset_id,
                expectations=FRAUD_EXPECTATIONS,
            )
            assert saved["setDatasetExpectations"]["__typename"].endswith("Success"), saved
            await asyncio.to_thread(version.validate().wait, 60)

            def train(seed: int, epochs: int) -> Any:
                job = project.train(
                    version,
                    trainer="tabular-classifier",
                    target="label",
                    model_name=fraud.model,
                    seed=seed,
                    epochs=epochs,
                    batch_size=16,
                )
                # Polled against a deadline: `wait()` would wait for ever on a stuck worker.
                deadline = time.monotonic() + TRAINING_TIMEOUT_MS / 1000
                while not job.refresh().finished:
                    assert time.monotonic() < deadline, f"training job {job.id}: {job.state}"
                    time.sleep(0.25)
                assert job.model_version is not None, f"{job.state}: {job.reason}"
                return job

            first = await asyncio.to_thread(train, 1, 3)
            second = await asyncio.to_thread(train, 2, 4)
            fraud.jobs.extend([first.id, second.id])
            deployment = await asyncio.to_thread(first.model_version.deploy, fraud.deployment)
            await asyncio.to_thread(deployment.wait_ready, 60)
            await asyncio.to_thread(
                deployment.update_traffic, canary=second.model_version, canary_percent=20
            )
            await asyncio.to_thread(deployment.wait_ready, 60)
    finally:
        workers.stop()
    return fraud
