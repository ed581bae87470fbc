"""One project per module for the metric-history and kept-chart tests to make jobs in."""

from __future__ import annotations

import uuid

import pytest

from aiaas.core.platform import Platform
from metric_rows import metrics_project


@pytest.fixture(scope="module")
async def project_id(platform: Platform, admin_token: str) -> uuid.UUID:
    return await metrics_project(platform)
