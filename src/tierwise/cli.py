"""The ``tierwise`` command: noun groups with verb commands, calling the same services
as the API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tierwise.domain.errors import DomainError
from tierwise.services.runtime import Runtime
from tierwise.settings import Settings

app = typer.Typer(help="Tierwise: a loyalty tier engine.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenant options.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk import.", no_args_is_help=True)
members_app = typer.Typer(help="Members: manual assignments.", no_args_is_help=True)
ladders_app = typer.Typer(help="Ladder versions: impact preview.", no_args_is_help=True)
jobs_app = typer.Typer(help="Background jobs (go-live re-evaluation).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(import_app, name="import")
app.add_typer(members_app, name="members")
app.add_typer(ladders_app, name="ladders")
app.add_typer(jobs_app, name="jobs")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="TIERWISE_DATABASE_URL",
        help="SQLAlchemy URL (default: SQLite file ./tierwise.db)",
    ),
]


def settings_for(database_url: str | None) -> Settings:
    return Settings(database_url=database_url) if database_url else Settings()


def run(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run one use case against a fresh runtime; domain errors exit with their code."""

    async def main() -> T:
        rt = Runtime(settings)
        try:
            return await work(rt)
        finally:
            await rt.close()

    try:
        return asyncio.run(main())
    except DomainError as exc:
        err.print(f"[red]error[/red] {exc.code}: {escape(exc.message)}")
        raise typer.Exit(2) from exc


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseOpt = None, revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    from tierwise.db.migrate import upgrade

    settings = settings_for(database_url)
    upgrade(settings, revision)
    console.print(f"database at revision {revision}: {_redact(settings.database_url)}")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created on first use")],
    scopes: Annotated[
        list[str],
        typer.Option(
            help="Scopes, e.g. programs:read members:read (repeat or comma-separate; 'all')"
        ),
    ],
    name: Annotated[str | None, typer.Option(help="A label for the key")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create an API key. The secret is shown once; only its hash is stored."""
    from tierwise.services.tenants import create_key

    key = run(
        settings_for(database_url),
        lambda rt: create_key(rt, tenant=tenant, scopes=scopes, name=name),
    )
    console.print(
        f"key id:  {key.key_id}\nsecret:  {key.secret}\ntenant:  {escape(key.tenant)}\n"
        f"scopes:  {' '.join(key.scopes)}"
    )
    console.print("[yellow]Store the secret now: it cannot be shown again.[/yellow]")


@keys_app.command("revoke")
def keys_revoke(key_id: str, database_url: DatabaseOpt = None) -> None:
    """Revoke a key by its id."""
    from tierwise.services.tenants import revoke_key

    run(settings_for(database_url), lambda rt: revoke_key(rt, key_id))
    console.print(f"revoked {key_id}")


@keys_app.command("list")
def keys_list(tenant: Annotated[str, typer.Option()], database_url: DatabaseOpt = None) -> None:
    """List a tenant's keys (never their secrets)."""
    from tierwise.services.tenants import list_keys

    for row in run(settings_for(database_url), lambda rt: list_keys(rt, tenant)):
        state = "revoked" if row.revoked_at else "active"
        console.print(f"{row.key_id}  {state:8}  {' '.join(row.scopes)}  {row.name or ''}")


@tenants_app.command("maker-checker")
def tenants_maker_checker(
    tenant: Annotated[str, typer.Option()],
    required: Annotated[bool, typer.Option("--on/--off")] = True,
    database_url: DatabaseOpt = None,
) -> None:
    """Require that a ladder version is approved by someone other than its author."""
    from tierwise.services.tenants import set_maker_checker

    run(settings_for(database_url), lambda rt: set_maker_checker(rt, tenant, required))
    console.print(f"maker-checker {'on' if required else 'off'} for {tenant}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    database_url: DatabaseOpt = None,
    migrate: Annotated[bool, typer.Option(help="Apply migrations first")] = True,
) -> None:
    """Serve the API (OpenAPI at /openapi.json, docs at /docs)."""
    import os

    import uvicorn

    settings = settings_for(database_url)
    if migrate:
        from tierwise.db.migrate import upgrade

        upgrade(settings)
    os.environ["TIERWISE_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "tierwise.api.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@app.command()
def demo(
    database_url: DatabaseOpt = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API afterwards")
    ] = False,
) -> None:
    """Create or refresh a demo tenant with a program, members and activity."""
    from tierwise.db.migrate import upgrade
    from tierwise.demo import build_demo, instructions

    settings = settings_for(database_url)
    upgrade(settings)
    result = run(settings, build_demo)
    console.print(instructions(result, f"http://{host}:{port}"))
    if serve_after:
        serve(host=host, port=port, workers=1, database_url=settings.database_url, migrate=False)


@import_app.command("activities")
def import_activities(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    tenant: Annotated[str, typer.Option(help="Tenant the activities belong to")],
    batch_size: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    database_url: DatabaseOpt = None,
) -> None:
    """Import activities from an NDJSON file (one activity object a line), idempotently."""
    from tierwise.importer import import_file, render_summary

    summary = run(
        settings_for(database_url),
        lambda rt: import_file(rt, tenant=tenant, path=file, batch_size=batch_size),
    )
    console.print(render_summary(summary))
    if summary.rejected:
        raise typer.Exit(1)


def parse_instant(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 instant with an offset, or exit with a clear message."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        err.print(f"[red]error[/red] invalid_instant: {name} {value!r} is not an ISO 8601 time")
        raise typer.Exit(2) from None
    if parsed.tzinfo is None:
        err.print(f"[red]error[/red] naive_datetime: {name} needs an offset, e.g. {value}Z")
        raise typer.Exit(2)
    return parsed


@app.command("sweep")
def sweep_command(
    as_of: Annotated[str | None, typer.Option(help="ISO 8601 instant; default: now")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 2000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Sweep processes, each claiming its own batches (PostgreSQL; SQLite: 1)",
        ),
    ] = 1,
    database_url: DatabaseOpt = None,
) -> None:
    """Handle every standing due by AS_OF: checks, renewals, downgrades, grace ends and
    assignment expiries (R15). Safe to run twice, late, or beside another sweep."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tierwise.services.golive import run_job
    from tierwise.services.sweep import SweepFailed, count_due, sweep, sweep_in_processes
    from tierwise.services.tenants import operator
    from tierwise.services.versions import activate_scheduled

    instant = parse_instant(as_of, "--as-of")

    async def work(rt: Runtime) -> object:
        when = instant or rt.clock()
        tenant_id = (await operator(rt, tenant)).tenant_id if tenant else None
        for job in await activate_scheduled(rt, when, tenant_id):
            await run_job(rt, job)  # R25: scheduled versions go live as the sweep passes
        total = await count_due(rt, as_of=when, tenant_id=tenant_id)
        with Progress(
            TextColumn("sweeping"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("sweep", total=total)
            if workers > 1 and not rt.settings.is_sqlite:
                try:
                    return await asyncio.to_thread(
                        sweep_in_processes,
                        rt.settings,
                        as_of=when,
                        tenant_id=tenant_id,
                        batch_size=batch_size,
                        workers=workers,
                        progress=lambda n: bar.advance(task, n),
                    )
                except SweepFailed as exc:
                    err.print(f"[red]error[/red] sweep_failed: {exc}")
                    raise typer.Exit(1) from exc
            return await sweep(
                rt,
                as_of=when,
                tenant_id=tenant_id,
                batch_size=batch_size,
                progress=lambda n: bar.advance(task, n),
            )

    summary = run(settings_for(database_url), work)
    from tierwise.services.sweep import SweepSummary

    assert isinstance(summary, SweepSummary)
    changes = ", ".join(f"{k} {v}" for k, v in sorted(summary.changes.items())) or "none"
    console.print(
        f"as of {summary.as_of.isoformat()}: {summary.standings} standings due, "
        f"{summary.events} events handled; changes: {changes}"
    )


@members_app.command("assign")
def members_assign(
    tenant: Annotated[str, typer.Option()],
    member: Annotated[str, typer.Option(help="The member's id")],
    level: Annotated[str, typer.Option(help="Key of an assignable level")],
    reason: Annotated[str, typer.Option()],
    mode: Annotated[str, typer.Option(help="pin | floor | one_shot")] = "pin",
    ladder: Annotated[str | None, typer.Option()] = None,
    expires_at: Annotated[str | None, typer.Option(help="ISO 8601 instant")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Assign a level by hand (R20)."""
    from tierwise.domain.state import AssignmentMode
    from tierwise.services.assignments import assign
    from tierwise.services.tenants import operator

    try:
        chosen = AssignmentMode(mode)
    except ValueError:
        err.print(f"[red]error[/red] invalid_mode: {mode!r}; use pin, floor or one_shot")
        raise typer.Exit(2) from None
    expiry = parse_instant(expires_at, "--expires-at")

    async def work(rt: Runtime) -> object:
        caller = await operator(rt, tenant)
        return await assign(
            rt,
            caller,
            member,
            level_key=level,
            mode=chosen,
            reason=reason,
            ladder_key=ladder,
            expires_at=expiry,
        )

    run(settings_for(database_url), work)
    console.print(f"{member} assigned {level} ({chosen.value})")


@members_app.command("unassign")
def members_unassign(
    tenant: Annotated[str, typer.Option()],
    member: Annotated[str, typer.Option(help="The member's id")],
    ladder: Annotated[str | None, typer.Option()] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Remove a manual assignment; the member is re-evaluated at once (R21)."""
    from tierwise.services.assignments import unassign
    from tierwise.services.tenants import operator

    async def work(rt: Runtime) -> object:
        caller = await operator(rt, tenant)
        return await unassign(rt, caller, member, ladder_key=ladder)

    state = run(settings_for(database_url), work)
    console.print(f"{member} now holds {getattr(state, 'level_key', None) or 'no level'}")


@ladders_app.command("preview")
def ladders_preview(
    tenant: Annotated[str, typer.Option()],
    program: Annotated[int, typer.Option(help="Program id")],
    ladder: Annotated[str, typer.Option(help="Ladder key")],
    version: Annotated[int, typer.Option(help="Version number (e.g. the open draft)")],
    sample: Annotated[int, typer.Option(min=0, max=500)] = 10,
    database_url: DatabaseOpt = None,
) -> None:
    """What a version would do to today's members, changing nothing (R25)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from tierwise.services.golive import Preview, preview
    from tierwise.services.tenants import operator

    async def work(rt: Runtime) -> object:
        caller = await operator(rt, tenant)
        with Progress(
            TextColumn("previewing"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task("preview", total=None)
            return await preview(
                rt,
                caller,
                program,
                ladder,
                version,
                sample_size=sample,
                progress=lambda n: bar.advance(task, n),
            )

    found = run(settings_for(database_url), work)
    assert isinstance(found, Preview)
    console.print(
        f"version {found.version} of {escape(found.ladder)} over {found.members} members: "
        f"{found.up} up, {found.down} down, {found.stay} stay"
    )
    table = Table("level", "members under this version")
    for level, count in found.per_level.items():
        table.add_row(escape(level or "(none)"), str(count))
    console.print(table)
    for pair, count in found.moves.items():
        console.print(f"  {escape(pair)}: {count}")
    for entry in found.sample:
        console.print(f"  e.g. {escape(str(entry['member_id']))}: {entry['from']} -> {entry['to']}")


@jobs_app.command("run")
def jobs_run(
    job: Annotated[str | None, typer.Argument(help="Job id; default: every unfinished job")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Run or resume go-live re-evaluation jobs, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from tierwise.db.repos import versions as versions_repo
    from tierwise.services.golive import run_job

    async def work(rt: Runtime) -> object:
        async with rt.transaction() as conn:
            pending = [j.uuid for j in await versions_repo.unfinished_jobs(conn)]
        todo = [job] if job else pending
        finished = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err,
            disable=not err.is_terminal,
        ) as bar:
            for uuid in todo:
                task = bar.add_task(f"job {uuid[:8]}", total=None)

                def show(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done, total=total)

                finished.append(await run_job(rt, uuid, progress=show))
        return finished

    finished = run(settings_for(database_url), work)
    assert isinstance(finished, list)
    if not finished:
        console.print("no unfinished jobs")
    for item in finished:
        console.print(
            f"job {item.uuid}: {item.state}, {item.done}/{item.total} members, "
            f"changes {item.changes or 'none'}"
        )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:
    app()
