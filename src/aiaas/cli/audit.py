"""`aiaas audit verify`: walk the audit trail's hash chains (`aiaas.core.audit_chain`) and name
the first broken link of each chain that does not hold."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import click

from aiaas.cli.common import (
    EXIT_FAILURE,
    fail,
    on_dev_data_dir,
    operator_platform,
    reports_errors,
)

if TYPE_CHECKING:
    from aiaas.core.audit_chain import TrailVerification


@click.group()
def audit() -> None:
    """The audit trail, straight from the database."""


@audit.command("verify")
@click.option(
    "--heads",
    is_flag=True,
    help="Also print each chain's last hash, to keep somewhere the database cannot be edited: "
    "a later run proves against it that no event was cut off the end or rewritten.",
)
@reports_errors
@on_dev_data_dir()
def verify_audit_command(heads: bool) -> None:
    """Check that every audit event is the one written, in the order written, with none
    removed; exit 1 naming the first broken link of each broken chain."""
    from aiaas.core.audit import verify_audit_trail

    async def verify() -> TrailVerification:
        async with operator_platform() as platform, platform.metadata.acquire() as connection:
            return await verify_audit_trail(connection)

    verification = asyncio.run(verify())
    if heads:
        for project_id, head in verification.heads.items():
            click.echo(f"head {project_id or 'platform'} {head.hex()}")
    if not verification.intact:
        for link in verification.breaks:
            click.echo(f"broken: {link.describe()}", err=True)
        fail(
            f"the audit trail does not verify: {len(verification.breaks)} of "
            f"{verification.chains} chain(s) broken",
            EXIT_FAILURE,
        )
    click.echo(
        f"the audit trail verifies: {verification.events} event(s) in "
        f"{verification.chains} chain(s)"
    )
