"""``tierwise import activities``: load an NDJSON file of activities, idempotently.

Each line is one activity object in the native API's shape (``ActivityIn``). A line
without ``idempotency_key`` gets one derived from the SHA-256 of its canonical JSON
(sorted keys, no spaces), so importing the same file again stores nothing twice (R12);
two identical key-less lines are therefore one activity. Blank lines are skipped.

A bad line never stops the import: it is rejected with its line number and the reason,
whether it is not JSON, breaks the schema, or breaks a business rule (an unknown activity
to return, a key reused with another body, too few points to redeem, ...). Valid lines go
to the ledger in batches, each one transaction; when a batch fails on one line, that line
is rejected and the rest of the batch is sent again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tierwise.api.schemas import ActivityIn
from tierwise.db.repos import tenants as tenants_repo
from tierwise.domain.errors import DomainError, NotFound
from tierwise.services.activities import MAX_BATCH, ActivityCommand, record
from tierwise.services.runtime import Caller, Runtime

MAX_REASONS = 20
DERIVED_KEY_PREFIX = "import-"


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str


@dataclass
class ImportSummary:
    path: Path
    tenant: str
    lines: int = 0
    """Non-blank lines read."""
    accepted: int = 0
    """Activities stored by this import."""
    duplicates: int = 0
    """Activities already stored (by an earlier import, or earlier in this file)."""
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    """The first ``MAX_REASONS`` rejections, in line order."""

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REASONS:
            self.rejections.append(Rejection(line, reason))
            self.rejections.sort(key=lambda r: r.line)
        elif line < self.rejections[-1].line:
            # Batches retry out of order; keep the lowest line numbers.
            self.rejections[-1] = Rejection(line, reason)
            self.rejections.sort(key=lambda r: r.line)


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    command: ActivityCommand


def command_from(body: ActivityIn) -> ActivityCommand:
    """The ledger command for a validated activity (the same mapping as the API's)."""
    return ActivityCommand(
        type=body.type,
        member_id=body.member_id,
        idempotency_key=body.idempotency_key,
        occurred_at=body.occurred_at,
        request_hash=body.request_hash(),
        program_id=body.program_id,
        amount_minor=body.amount_minor,
        currency=body.currency,
        points=body.points,
        counter=body.counter,
        quantity=body.quantity,
        reverses=body.reverses,
        reverses_key=body.reverses_key,
    )


def derived_key(body: dict[str, Any]) -> str:
    """A deterministic idempotency key for a line that has none."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DERIVED_KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()


def parse_line(raw: bytes) -> ActivityCommand:
    """One NDJSON line as a ledger command; ``ValueError`` says what is wrong with it."""
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    if body.get("idempotency_key") is None:
        body = {k: v for k, v in body.items() if k != "idempotency_key"}
        body["idempotency_key"] = derived_key(body)
    try:
        activity = ActivityIn.model_validate(body)
    except ValidationError as exc:
        raise ValueError(_validation_reason(exc)) from exc
    return command_from(activity)


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON: {name} is not a number JSON allows")


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


async def import_file(rt: Runtime, *, tenant: str, path: Path, batch_size: int) -> ImportSummary:
    """Import ``path`` into ``tenant``'s ledger and say what happened to every line."""
    async with rt.transaction() as conn:
        found = await tenants_repo.tenant_by_name(conn, tenant)
    if found is None:
        raise NotFound(
            f"no tenant {tenant!r}; create it with: tierwise keys create --tenant {tenant} ...",
            code="tenant_not_found",
        )
    caller = Caller(found.id, found.name, actor="import", scopes=frozenset())
    batch_size = max(1, min(batch_size, MAX_BATCH))
    summary = ImportSummary(path=path, tenant=tenant)
    sender = _Sender(rt, caller, summary, batch_size)
    total = _count_lines(path)
    stderr = Console(stderr=True)
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lines"),
        TimeElapsedColumn(),
        console=stderr,
        disable=not stderr.is_terminal,
        transient=True,
    ) as progress:
        task = progress.add_task("import", total=total)
        pending: list[_Line] = []
        for number, raw in _lines(path):
            if not raw.strip():
                progress.advance(task)
                continue
            summary.lines += 1
            try:
                command = parse_line(raw)
            except ValueError as exc:
                summary.reject(number, str(exc))
                progress.advance(task)
                continue
            pending.append(_Line(number, command))
            if len(pending) >= batch_size:
                await sender.send(pending)
                progress.advance(task, len(pending))
                pending = []
        if pending:
            await sender.send(pending)
            progress.advance(task, len(pending))
    return summary


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered raw lines, counted from 1."""
    with path.open("rb") as handle:
        yield from enumerate(handle, start=1)


class _Sender:
    """Sends lines to the ledger in transactions of up to ``batch_size``, peeling off the
    lines that fail.

    A failure at line *i* of a chunk means the lines before it were processed without
    error, so they are sent next on their own; the failed line is rejected. After a
    failure at the first line the chunk is halved, after a success it doubles again, so a
    run of bad lines costs about as much as the same number of good ones instead of one
    full-batch attempt per bad line.
    """

    def __init__(
        self, rt: Runtime, caller: Caller, summary: ImportSummary, batch_size: int
    ) -> None:
        self.rt = rt
        self.caller = caller
        self.summary = summary
        self.batch_size = batch_size
        self.missing_programs: dict[int | None, str] = {}
        """Programs known not to exist: later lines naming them are rejected unsent."""

    async def send(self, lines: list[_Line]) -> None:
        queue = [line for line in lines if not self._known_bad(line)]
        size = self.batch_size
        while queue:
            chunk = queue[:size]
            try:
                outcomes = await record(self.rt, self.caller, [line.command for line in chunk])
            except DomainError as exc:
                index = exc.details.get("index")
                if not isinstance(index, int) or not 0 <= index < len(chunk):
                    # Not about one line (e.g. a write clash that outlasted its retries).
                    for line in chunk:
                        self.summary.reject(line.number, _reason(exc))
                    del queue[: len(chunk)]
                    continue
                if exc.code == "return_in_same_batch" and index > 0:
                    size = index  # commit the lines before it, its purchase among them
                    continue
                failed = queue.pop(index)
                self.summary.reject(failed.number, _reason(exc))
                if exc.code == "program_not_found":
                    self.missing_programs[failed.command.program_id] = _reason(exc)
                    queue = [line for line in queue if not self._known_bad(line)]
                size = index if index > 0 else max(1, size // 2)
                continue
            for outcome in outcomes:
                if outcome.replayed:
                    self.summary.duplicates += 1
                else:
                    self.summary.accepted += 1
            del queue[: len(chunk)]
            size = min(self.batch_size, size * 2)

    def _known_bad(self, line: _Line) -> bool:
        reason = self.missing_programs.get(line.command.program_id)
        if reason is not None:
            self.summary.reject(line.number, reason)
        return reason is not None


def _reason(exc: DomainError) -> str:
    where = exc.details.get("field")
    return f"{exc.code}: {exc.message}" + (f" (field {where})" if where else "")


def render_summary(summary: ImportSummary) -> str:
    """The summary as console markup (user-supplied text is escaped)."""
    lines = [
        f"imported {escape(str(summary.path))} into tenant {escape(summary.tenant)}: "
        f"{summary.lines} lines",
        f"  accepted   {summary.accepted}",
        f"  duplicate  {summary.duplicates}",
        f"  rejected   {summary.rejected}",
    ]
    if summary.rejections:
        shown = len(summary.rejections)
        more = f" (first {shown} of {summary.rejected})" if summary.rejected > shown else ""
        lines.append(f"rejected lines{more}:")
        lines += [f"  line {r.line}: {escape(r.reason)}" for r in summary.rejections]
    return "\n".join(lines)
