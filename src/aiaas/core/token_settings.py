"""How long a process may take an API token it has checked on trust (`token_cache_s`)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class TokenSettings(BaseModel):
    token_cache_s: float = Field(
        0.0,
        ge=0,
        le=300,
        description="Seconds a process remembers an API token it accepted, instead of checking "
        "it in PostgreSQL on every request (a large share of a prediction's CPU). Any change to "
        "tokens or users empties every process's memory through PostgreSQL's notifications, so "
        "a token revoked in another process stops working once that notice arrives, usually "
        "within milliseconds but not at the revoking commit itself. 0: every request is "
        "checked in the database, and a revocation holds everywhere the moment it commits.",
    )
