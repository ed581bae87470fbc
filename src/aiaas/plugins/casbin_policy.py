"""The built-in policy enforcer: Casbin RBAC with domains, where a domain is a project's id.

The policy has two parts. The grants and the role hierarchy come from `aiaas.core.identity`, in
code. The memberships (which user holds which role in which project) and the platform roles
(`metrics-reader`) live in PostgreSQL, and are read through `aiaas.core.identity.all_memberships`
and `aiaas.core.identity.all_platform_roles`. Each process keeps the whole policy in memory and
reloads it when PostgreSQL announces a change (LISTEN/NOTIFY, sent by a trigger on every change
of them however it is made), with a periodic full reload as a backstop should a notification be
missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import casbin
from casbin.persist.adapters.asyncio import AsyncAdapter
from casbin.util import key_match

from aiaas.core.auth import PolicyEnforcer, Principal
from aiaas.core.config import Config
from aiaas.core.hookspecs import hookimpl
from aiaas.core.identity import (
    ADMIN_SUBJECT,
    all_memberships,
    all_platform_roles,
    membership_rule,
    platform_role_rule,
    policy_rules,
    user_subject,
)
from aiaas.core.outages import as_outage
from aiaas.core.storage import MetadataStore

logger = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).with_name("casbin_model.conf")
NOTIFY_CHANNEL = "aiaas_policy"
TOKENS_TABLE = "api_tokens"
MAX_CACHED_DECISIONS = 100_000
"""Bound on remembered decisions (a few per user, project and action): past it they are all
dropped and taken afresh."""


def subject_of(principal: Principal) -> str:
    return ADMIN_SUBJECT if principal.is_admin else user_subject(principal.user_id)


class MembershipAdapter(AsyncAdapter):  # type: ignore[misc]
    """Loads the built-in rules, plus one `g` rule per membership and per platform role in
    PostgreSQL. It never writes: they change through aiaas's services, which the triggers
    announce."""

    def __init__(self, extra_rules: list[tuple[str, ...]] | None = None) -> None:
        self.metadata: MetadataStore | None = None
        self.extra_rules = list(extra_rules or [])

    async def load_policy(self, model: Any) -> None:
        rules = [*policy_rules(), *self.extra_rules]
        if self.metadata is not None:
            async with self.metadata.acquire() as connection:
                memberships = await all_memberships(connection)
                platform_roles = await all_platform_roles(connection)
            rules += [
                membership_rule(
                    user_subject(membership.user_id), membership.role, str(membership.project_id)
                )
                for membership in memberships
            ]
            rules += [
                platform_role_rule(user_subject(holding.user_id), holding.role)
                for holding in platform_roles
            ]
        for rule in rules:
            model.add_policy(rule[0], rule[0], list(rule[1:]))

    async def save_policy(self, model: Any) -> bool:
        raise NotImplementedError("the policy is changed through aiaas's services")

    async def add_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        raise NotImplementedError("the policy is changed through aiaas's services")

    async def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        raise NotImplementedError("the policy is changed through aiaas's services")

    async def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> bool:
        raise NotImplementedError("the policy is changed through aiaas's services")


class CasbinPolicyEnforcer(PolicyEnforcer):
    def __init__(
        self,
        reload_interval_s: float = 30.0,
        *,
        extra_rules: list[tuple[str, ...]] | None = None,
    ) -> None:
        """`extra_rules` are added to what is loaded, for a policy worked out without a
        database (the generated access-control page)."""
        self._adapter = MembershipAdapter(extra_rules)
        self._enforcer = casbin.AsyncEnforcer(str(MODEL_PATH), self._adapter)
        # Links made in domain "*" (the role hierarchy) hold in every project's domain.
        self._enforcer.add_named_domain_matching_func("g", key_match)
        self._reload_interval_s = reload_interval_s
        self._reload_requested = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._listener: contextlib.AsyncExitStack | None = None
        self._listening_on: Any = None
        self._loaded = False
        self._decisions: dict[tuple[str, str, str, str], bool] = {}
        self.reloads = 0

    async def start(self, metadata: MetadataStore) -> None:
        self._adapter.metadata = metadata
        try:
            # Listen first, so that no change made while loading goes unnoticed. Both happen
            # here rather than in the watcher, so that a stop right after start interrupts no
            # query half way.
            await self._listen(metadata)
            await self.reload()
        except Exception:
            # Say so, and keep trying: until the memberships load, every enforce() tries again
            # and a request that needs them fails rather than being let through.
            logger.exception("loading the access policy failed; retrying in the background")
            await self._drop_listener()
        self._watcher = asyncio.create_task(self._watch(metadata), name="policy-watcher")

    async def reload(self) -> None:
        await self._enforcer.load_policy()
        # Cleared after the load, not before: a decision taken while the policy was half
        # loaded (load_policy awaits the database) must not outlive it.
        self._decisions = {}
        self._loaded = True
        self.reloads += 1

    async def refresh(self) -> None:
        await self.reload()

    def _on_notification(self, *notice: Any) -> None:
        # (connection, pid, channel, payload) for a notice; (connection,) for a lost connection.
        # A token's change is announced on the same channel for the token caches
        # (migration 0013), and holds none of the policy's rules.
        if notice[3:4] == (TOKENS_TABLE,):
            return
        self._reload_requested.set()

    async def _listen(self, metadata: MetadataStore) -> None:
        # Kept before anything is acquired: a cancellation at any await below must still find
        # the connection to give back, or closing the pool would wait for it forever.
        self._listener = stack = contextlib.AsyncExitStack()
        connection = await stack.enter_async_context(metadata.acquire())
        stack.push_async_callback(connection.remove_listener, NOTIFY_CHANNEL, self._on_notification)
        await connection.add_listener(NOTIFY_CHANNEL, self._on_notification)
        # If the connection dies, wake the watcher: it listens again on a new one and reloads,
        # since changes made meanwhile were announced to no one.
        connection.add_termination_listener(self._on_notification)
        # Taken off again when the connection goes back to the pool: its later closing, in
        # another user's hands, is no reason to reload the policy.
        stack.callback(connection.remove_termination_listener, self._on_notification)
        self._listening_on = connection

    def _listening(self) -> bool:
        # The connection, not the exit stack: `_listen` sets the stack before it has one.
        return self._listening_on is not None and not self._listening_on.is_closed()

    async def _watch(self, metadata: MetadataStore) -> None:
        while True:
            try:
                if not self._listening() or not self._loaded:
                    await self._drop_listener()
                    await self._listen(metadata)
                    # A change made while no one was listening: catch up now.
                    self._reload_requested.set()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the event is set, and close() would wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._reload_interval_s):
                        await self._reload_requested.wait()
                self._reload_requested.clear()
                await self.reload()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outage = as_outage(exc)
                if outage is None:
                    logger.exception("reloading the access policy failed; retrying")
                else:  # expected while the database is away; the policy in memory still holds
                    logger.warning("reloading the access policy waits: %s", outage.message)
                await self._drop_listener()
                await asyncio.sleep(1)

    async def _drop_listener(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            self._listening_on = None
            with contextlib.suppress(Exception):
                await listener.aclose()

    async def enforce(self, principal: Principal, domain: str, resource: str, action: str) -> bool:
        if not self._loaded:
            await self.reload()
        # Casbin evaluates its matcher expression anew on every call (about 0.7 ms here), and
        # every request of the inference API asks the same few questions: decisions are kept
        # until the policy next changes, which is the only thing they depend on.
        key = (subject_of(principal), domain, resource, action)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= MAX_CACHED_DECISIONS:
                self._decisions = {}
            decision = bool(self._enforcer.enforce(*key))
            self._decisions[key] = decision
        return decision

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self._drop_listener()


@hookimpl(trylast=True)
def aiaas_policy_enforcer(config: Config) -> PolicyEnforcer | None:
    return CasbinPolicyEnforcer(reload_interval_s=config.policy_reload_interval_s)
