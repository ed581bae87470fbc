"""Soak (issue 17): a mixed load for `--duration` seconds while PostgreSQL and Redis each restart
once, and what the platform lost, answered and kept in memory meanwhile.

It owns every process it runs, on free loopback ports and a scratch data dir, and never touches
the machine's own PostgreSQL or Redis (`soak_platform.py`): an embedded PostgreSQL and Redis
(`aiaas.embedded`, the ones `aiaas dev` runs), the schema migrated, an admin bootstrapped, then
`aiaas serve` (every role: API and inference) and one `aiaas worker`. Through the API it creates
a project, uploads scikit-learn's wine table, trains a tiny classifier and deploys it. Then, for
the duration:

- V2 predictions (`/v2/models/soak.wine/infer`, one row each) from 32 callers, back to back;
- GraphQL reads (a project page with its training jobs) and writes (`setModelAlias`, audited)
  from one caller each, and a password login every 0.5 s (Redis counts its attempts);
- tiny training jobs submitted continuously, at most `--jobs-in-flight` unfinished at a time;
- `/readyz` polled every 0.25 s;
- PostgreSQL stopped (fast shutdown) at 35% of the duration and Redis at 65%, each started
  again on the same port and data `--outage` seconds later.

When the load stops it waits (at most `--drain` seconds) for every job to end, then checks:

- every error answer is a 503 with `Retry-After`, never a 500 or a dropped connection, and
  came while a service was down (from its stop to `RECOVERY_LIMIT_S` after it was back);
- recovery: once a service is back, the first success of each kind of request that failed in
  its outage comes within `RECOVERY_LIMIT_S`, and `/readyz` answers 200 within it;
- no lost jobs: every job submitted (an answer of success) ended SUCCEEDED;
- no lost audit events: each successful write, submission and login has its audit row (found by
  the answer's `X-Request-ID`), and `aiaas audit verify` passes;
- no lost metric points: each succeeded job has a `loss` point at every step from 1 to its last,
  and all end on the same step;
- memory: the RSS of `aiaas serve` and of `aiaas worker` in the last 30 s is at most 1.10 times
  what it was in the 30 s after the first minute (`--warm-up`), each the lowest of the samples
  taken every 2 s in its window (see `Memory`; the peak is reported too); PostgreSQL and Redis,
  restarted, are not weighed.

    python bench/soak.py [--duration 600] [--quick] [--outage 5] [--keep-logs DIR]

`--quick` is a 90 s run with a 20 s warm-up, for trying it. The last line printed is one JSON
object; the exit status is 1 when any check failed (the JSON's `failed_checks` names them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
from soak_platform import (
    SUBMIT,
    TERMINAL,
    Deployed,
    Services,
    deploy_wine,
    spawn_aiaas,
    stop_process,
    training_input,
    until_ready,
)

from aiaas import migrations
from aiaas.core.bootstrap import create_platform
from aiaas.core.config import build_config
from aiaas.core.governance.crypto import MasterKey
from aiaas.core.identity.accounts import bootstrap_admin, create_user
from aiaas.core.platform import Platform
from aiaas.embedded.processes import free_port

PREDICT_CALLERS = 32
GRAPHQL_ERROR_IN_200 = 200_000
"""The status recorded for a GraphQL 200 whose body holds an error: never acceptable."""
LOGIN_REFUSED = 200_001
"""The status recorded for a login answered with anything but `LoginSuccess`."""
RECOVERY_LIMIT_S = 5.0
RSS_GROWTH_LIMIT = 1.10
RSS_SAMPLE_S = 2.0
RSS_WINDOW_S = 30.0
REQUEST_TIMEOUT_S = 30.0
READ = """
query { project(slug: "soak") { name trainingJobs(first: 20) { edges { node { id state } } } } }
"""
LOGIN = """
mutation($username: String!, $password: String!) { login(username: $username, password: $password) {
  __typename } }
"""
LOGIN_USER = "soak-login"
SET_ALIAS = """
mutation($input: SetModelAliasInput!) { setModelAlias(input: $input) { __typename } }
"""


# The load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no answer at all (refused, reset, timed out)
    retry_after: bool
    request_id: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Outage:
    service: str
    down_at: float = 0.0
    back_at: float = 0.0


@dataclass
class Soak:
    base_url: str
    token: str
    deployed: Deployed
    stop_at: float
    jobs_in_flight: int
    login_password: str
    answers: list[Answer] = field(default_factory=list)
    submitted_jobs: list[str] = field(default_factory=list)
    audited_request_ids: list[str] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=1),
        )

    async def call(
        self, client: httpx.AsyncClient, kind: str, method: str, path: str, **request: Any
    ) -> tuple[Answer, httpx.Response | None]:
        started = time.monotonic()
        try:
            response = await client.request(method, path, **request)
        except httpx.HTTPError:
            answer = Answer(kind, started, time.monotonic(), None, False, None)
            self.answers.append(answer)
            return answer, None
        status = response.status_code
        if kind.startswith("graphql") and status == 200 and "errors" in response.json():
            status = GRAPHQL_ERROR_IN_200
        answer = Answer(
            kind,
            started,
            time.monotonic(),
            status,
            "retry-after" in response.headers,
            response.headers.get("x-request-id"),
        )
        self.answers.append(answer)
        return answer, response

    async def predictions(self) -> None:
        async with self.client() as client:
            while time.monotonic() < self.stop_at:
                answer, _ = await self.call(
                    client, "v2_predict", "POST", self.deployed.infer_path,
                    json=self.deployed.infer_body,
                )  # fmt: skip
                if not answer.ok:
                    await asyncio.sleep(0.2)

    async def reads(self) -> None:
        async with self.client() as client:
            while time.monotonic() < self.stop_at:
                await self.call(client, "graphql_read", "POST", "/graphql", json={"query": READ})
                await asyncio.sleep(0.05)

    async def writes(self) -> None:
        aliases = ("blue", "green")
        async with self.client() as client:
            for round_number in range(10**9):
                if time.monotonic() >= self.stop_at:
                    return
                variables = {
                    "input": {
                        "version": self.deployed.model_version,
                        "alias": aliases[round_number % 2],
                    }
                }
                answer, _ = await self.call(
                    client, "graphql_write", "POST", "/graphql",
                    json={"query": SET_ALIAS, "variables": variables},
                )  # fmt: skip
                if answer.ok and answer.request_id:
                    self.audited_request_ids.append(answer.request_id)
                await asyncio.sleep(0.2)

    async def submissions(self, platform: Platform) -> None:
        variables = {"input": training_input(self.deployed.dataset_version)}
        async with self.client() as client:
            while time.monotonic() < self.stop_at:
                if await unfinished_jobs(platform, self.submitted_jobs) >= self.jobs_in_flight:
                    await asyncio.sleep(0.5)
                    continue
                answer, response = await self.call(
                    client, "graphql_submit", "POST", "/graphql",
                    json={"query": SUBMIT, "variables": variables},
                )  # fmt: skip
                if answer.ok and response is not None:
                    result = response.json()["data"]["submitTrainingJob"]
                    self.submitted_jobs.append(result["job"]["id"])
                    if answer.request_id:
                        self.audited_request_ids.append(answer.request_id)
                else:
                    await asyncio.sleep(0.5)

    async def logins(self) -> None:
        """Password logins, which count attempts in Redis and read the user from PostgreSQL:
        the one request that needs both. A login refused (rate limited) is a failure here."""
        variables = {"username": LOGIN_USER, "password": self.login_password}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            while time.monotonic() < self.stop_at:
                answer, response = await self.call(
                    client, "graphql_login", "POST", "/graphql",
                    json={"query": LOGIN, "variables": variables},
                )  # fmt: skip
                if answer.ok and response is not None:
                    if response.json()["data"]["login"]["__typename"] != "LoginSuccess":
                        self.answers[-1] = replace(answer, status=LOGIN_REFUSED)
                    elif answer.request_id:
                        self.audited_request_ids.append(answer.request_id)
                await asyncio.sleep(0.5)

    async def readiness(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            while time.monotonic() < self.stop_at:
                await self.call(client, "readyz", "GET", "/readyz")
                await asyncio.sleep(0.25)


async def unfinished_jobs(platform: Platform, job_ids: list[str]) -> int:
    """How many of the submitted jobs have not ended. While PostgreSQL is down the soak does
    not know, and submits nothing more until it does."""
    if not job_ids:
        return 0
    try:
        states = await job_states(platform, job_ids)
    except Exception:
        return 10**6
    return sum(1 for state in states.values() if state not in TERMINAL) + (
        len(job_ids) - len(states)
    )


async def job_states(platform: Platform, job_ids: list[str]) -> dict[str, str]:
    from aiaas.graphql.relay import from_global_id

    by_uuid = {from_global_id(job_id)[1]: job_id for job_id in job_ids}
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id, state FROM jobs WHERE id = ANY($1::uuid[])", list(by_uuid)
        )
    return {by_uuid[row["id"]]: row["state"] for row in rows}


async def restart(
    services: Services, outage: Outage, at: float, outage_s: float, stop_at: float
) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    if time.monotonic() >= stop_at:
        return
    outage.down_at = time.monotonic()
    await (services.stop_postgres() if outage.service == "postgres" else services.stop_redis())
    await asyncio.sleep(outage_s)
    await (services.start_postgres() if outage.service == "postgres" else services.start_redis())
    outage.back_at = time.monotonic()


class Memory:
    """The RSS of the platform's processes, sampled every `RSS_SAMPLE_S`. Under this load the
    API's swings by 64 MiB from one sample to the next: each login's password check (argon2,
    whose memory cost is 64 MiB by design) takes it for a moment and gives it back, so a single
    sample says little. What a leak raises is the floor the process comes
    back to: the figures compared are each the lowest sample of `RSS_WINDOW_S`, right after the
    warm-up and at the end (the peak is reported beside them)."""

    def __init__(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        self.processes = {name: psutil.Process(p.pid) for name, p in processes.items()}
        self.series: list[tuple[float, dict[str, int]]] = []

    def sample(self) -> None:
        rss = {name: process.memory_info().rss for name, process in self.processes.items()}
        self.series.append((time.monotonic(), rss))

    def floor(self, name: str, start: float, stop: float) -> int | None:
        values = [rss[name] for at, rss in self.series if start <= at <= stop]
        return min(values) if values else None

    def peak(self, name: str) -> int:
        return max(rss[name] for _, rss in self.series)

    def save(self, path: Path, started: float) -> None:
        series = [{"s": round(at - started, 1), **rss} for at, rss in self.series]
        path.write_text(json.dumps(series))

    async def follow(self, stop_at: float) -> None:
        self.sample()
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(RSS_SAMPLE_S, max(0.0, stop_at - time.monotonic())))
            self.sample()


# The checks -----------------------------------------------------------------------------------


def in_outage(answer: Answer, outages: list[Outage]) -> bool:
    return any(
        outage.down_at
        and answer.ended >= outage.down_at
        and answer.started <= outage.back_at + RECOVERY_LIMIT_S
        for outage in outages
    )


def recovery_s(answers: list[Answer], outage: Outage) -> dict[str, float | None]:
    """Per kind of request that failed in the outage: from the service's return to the end of
    that kind's first success started after it; None if none came."""
    failed = {
        a.kind
        for a in answers
        if not a.ok and a.ended >= outage.down_at and a.started <= outage.back_at + RECOVERY_LIMIT_S
    }
    recovered: dict[str, float | None] = {}
    for kind in sorted(failed):
        successes = [
            a.ended for a in answers if a.kind == kind and a.ok and a.started >= outage.back_at
        ]
        recovered[kind] = round(min(successes) - outage.back_at, 3) if successes else None
    return recovered


async def missing_audit_events(platform: Platform, request_ids: list[str]) -> int:
    async with platform.metadata.acquire() as connection:
        found = await connection.fetchval(
            "SELECT count(DISTINCT request_id) FROM audit_events WHERE request_id = ANY($1)",
            request_ids,
        )
    return len(set(request_ids)) - int(found)


async def metric_gaps(platform: Platform, job_ids: list[str]) -> tuple[int, int, list[int]]:
    """(jobs checked, jobs whose `loss` history misses a step or has none, the distinct last
    steps). Steps count from 1; every job trains the same way, so all end on the same step."""
    from aiaas.graphql.relay import from_global_id

    ids = [from_global_id(job_id)[1] for job_id in job_ids]
    async with platform.metadata.acquire() as connection:
        rows = await connection.fetch(
            """
            SELECT j.id, count(m.step) AS points, min(m.step) AS first, max(m.step) AS last
            FROM jobs j LEFT JOIN metric_points m ON m.job_id = j.id AND m.key = 'loss'
            WHERE j.id = ANY($1::uuid[]) GROUP BY j.id
            """,
            ids,
        )
    gaps = sum(
        1 for row in rows if not row["points"] or row["first"] != 1 or row["points"] != row["last"]
    )
    return len(rows), gaps, sorted({int(row["last"]) for row in rows if row["points"]})


def verify_audit_chain(environment: dict[str, str]) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "aiaas", "audit", "verify"],
        check=False,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode == 0


async def drain(platform: Platform, job_ids: list[str], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await unfinished_jobs(platform, job_ids) == 0:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


# The run --------------------------------------------------------------------------------------


def environment_of(services: Services, data_dir: Path, master_key: str) -> dict[str, str]:
    """The environment of the platform's processes: this one's, but its own AIAAS_* settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIAAS_")}
    environment.update(
        AIAAS_DATABASE_URL=services.database_url,
        AIAAS_REDIS_URL=services.redis_url,
        AIAAS_DATA_DIR=str(data_dir),
        AIAAS_MASTER_KEY=master_key,
        AIAAS_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    return environment


async def soak(arguments: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    data_dir = scratch / "data"
    data_dir.mkdir(mode=0o700)
    logs = arguments.keep_logs or scratch / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    services = Services.in_dir(data_dir)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    platform: Platform | None = None
    try:
        await services.start_postgres()
        await services.start_redis()
        await migrations.upgrade(services.database_url)
        master_key = MasterKey.generate().encoded()
        config = build_config(
            {
                "database_url": services.database_url,
                "redis_url": services.redis_url,
                "data_dir": data_dir,
                "master_key": master_key,
                "disable_plugin_autoload": True,
            }
        )
        platform = create_platform(config)
        await platform.start()
        issued = await bootstrap_admin(platform)
        assert issued is not None
        login_password = secrets.token_urlsafe(16)
        await create_user(platform, None, username=LOGIN_USER, password=login_password)
        environment = environment_of(services, data_dir, master_key)
        port = free_port("127.0.0.1")
        processes["serve"] = spawn_aiaas(
            ["serve", "--port", str(port)], environment, logs / "serve.log"
        )
        processes["worker"] = spawn_aiaas(["worker"], environment, logs / "worker.log")
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base_url, headers={"authorization": f"Bearer {issued.secret}"}, timeout=120
        ) as client:
            await until_ready(client, processes["serve"])
            deployed = await deploy_wine(client)

        started = time.monotonic()
        stop_at = started + arguments.duration
        load = Soak(
            base_url, issued.secret, deployed, stop_at, arguments.jobs_in_flight, login_password
        )
        outages = [Outage("postgres"), Outage("redis")]
        memory = Memory(processes)
        await asyncio.gather(
            *(load.predictions() for _ in range(PREDICT_CALLERS)),
            load.reads(),
            load.writes(),
            load.submissions(platform),
            load.logins(),
            load.readiness(),
            restart(
                services, outages[0], started + 0.35 * arguments.duration, arguments.outage, stop_at
            ),
            restart(
                services, outages[1], started + 0.65 * arguments.duration, arguments.outage, stop_at
            ),
            memory.follow(stop_at),
        )
        if arguments.keep_logs:  # the RSS over time, to see a trend the two figures hide
            memory.save(logs / "rss.json", started)
        drained_s = await drain(platform, load.submitted_jobs, arguments.drain)
        states = await job_states(platform, load.submitted_jobs)
        succeeded = [job for job, state in states.items() if state == "SUCCEEDED"]
        checked, gaps, last_steps = await metric_gaps(platform, succeeded)
        missing_audit = await missing_audit_events(platform, load.audited_request_ids)
        chain_verifies = verify_audit_chain(environment)
        exited = {name: p.poll() for name, p in processes.items() if p.poll() is not None}
    finally:
        for process in processes.values():
            stop_process(process)
        if platform is not None:
            await platform.stop()
        await services.stop()
    return report(
        arguments, load, outages, memory, states, (checked, gaps, last_steps), missing_audit,
        chain_verifies, drained_s, exited,
    )  # fmt: skip


def report(
    arguments: argparse.Namespace,
    load: Soak,
    outages: list[Outage],
    memory: Memory,
    states: dict[str, str],
    metric_points: tuple[int, int, list[int]],
    missing_audit: int,
    chain_verifies: bool,
    drained_s: float,
    exited: dict[str, int | None],
) -> dict[str, Any]:
    answers = [a for a in load.answers if a.kind != "readyz"]
    errors = [a for a in answers if not a.ok]
    outcomes = Counter(f"{a.kind}_{'ok' if a.ok else a.status or 'no_answer'}" for a in answers)
    bad_errors = [a for a in errors if a.status != 503 or not a.retry_after]
    stray_errors = [a for a in errors if not in_outage(a, outages)]
    ready = [a for a in load.answers if a.kind == "readyz"]
    result: dict[str, Any] = {
        "duration_s": arguments.duration,
        "outage_s": arguments.outage,
        "predict_callers": PREDICT_CALLERS,
        "requests_total": len(answers),
        "requests_ok": len(answers) - len(errors),
        "requests_503_with_retry_after": len(errors) - len(bad_errors),
        "errors_not_503_with_retry_after": len(bad_errors),
        "errors_outside_outages": len(stray_errors),
        "error_statuses": sorted({str(a.status) for a in errors}),
        **{f"requests_{key}": count for key, count in sorted(outcomes.items())},
    }
    recovery_limit_ok = True
    for outage in outages:
        name = outage.service
        result[f"{name}_restarted"] = bool(outage.down_at)
        result[f"{name}_down_s"] = round(outage.back_at - outage.down_at, 3)
        per_kind = recovery_s(answers, outage)
        for kind, seconds in per_kind.items():
            result[f"{name}_recovery_{kind}_s"] = seconds
        ready_after = [a.ended for a in ready if a.ok and a.started >= outage.back_at]
        ready_s = round(min(ready_after) - outage.back_at, 3) if ready_after else None
        result[f"{name}_readyz_recovery_s"] = ready_s
        recoveries = [*per_kind.values(), ready_s]
        recovery_limit_ok &= all(s is not None and s <= RECOVERY_LIMIT_S for s in recoveries)
    metric_jobs_checked, metric_gap_jobs, last_steps = metric_points
    state_counts = Counter(states.values())
    lost = len(load.submitted_jobs) - state_counts["SUCCEEDED"]
    result.update(
        jobs_submitted=len(load.submitted_jobs),
        jobs_succeeded=state_counts["SUCCEEDED"],
        jobs_failed=state_counts["FAILED"],
        jobs_not_succeeded=lost,
        drain_s=round(drained_s, 1),
        audited_requests=len(set(load.audited_request_ids)),
        audit_events_missing=missing_audit,
        audit_chain_verifies=chain_verifies,
        metric_jobs_checked=metric_jobs_checked,
        metric_jobs_with_missing_points=metric_gap_jobs,
        metric_last_steps=last_steps,
    )
    rss_ok = True
    warm_up_at = load.stop_at - arguments.duration + arguments.warm_up
    for name in memory.processes:
        base = memory.floor(name, warm_up_at, warm_up_at + RSS_WINDOW_S)
        end = memory.floor(name, load.stop_at - RSS_WINDOW_S, load.stop_at + RSS_SAMPLE_S)
        result[f"{name}_rss_after_warm_up_bytes"] = base
        result[f"{name}_rss_end_bytes"] = end
        result[f"{name}_rss_peak_bytes"] = memory.peak(name)
        ratio = round(end / base, 4) if base and end else None
        result[f"{name}_rss_end_vs_warm_up_ratio"] = ratio
        rss_ok &= ratio is not None and ratio <= RSS_GROWTH_LIMIT
    checks = {
        "errors_are_503_with_retry_after": not bad_errors,
        "errors_only_during_outages": not stray_errors,
        "both_services_restarted": all(outage.down_at for outage in outages),
        "recovery_within_5_s": recovery_limit_ok,
        "no_lost_jobs": lost == 0 and bool(load.submitted_jobs),
        "no_lost_audit_events": missing_audit == 0 and chain_verifies,
        "no_lost_metric_points": (
            metric_gap_jobs == 0 and metric_jobs_checked > 0 and len(last_steps) == 1
        ),
        "rss_growth_within_10_percent": rss_ok,
        "processes_kept_running": not exited,
    }
    result["failed_checks"] = sorted(name for name, ok in checks.items() if not ok)
    result["passed"] = not result["failed_checks"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before the RSS base")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds each service is down")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds for jobs to end")
    parser.add_argument("--jobs-in-flight", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="90 s, 20 s warm-up: a trial run")
    parser.add_argument(
        "--keep-logs", type=Path, help="write the processes' logs, and their RSS over time, here"
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.duration, arguments.warm_up = 90.0, 20.0
    scratch = Path(tempfile.mkdtemp(prefix="aiaas-soak-"))
    try:
        result = asyncio.run(soak(arguments, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
