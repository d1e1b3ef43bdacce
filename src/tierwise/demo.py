"""The demo data set behind ``tierwise demo``: a tenant, a key, a Bronze/Silver/Gold program
and a dozen members with ten months of dated activity, built through the services.

Running it again refreshes instead of duplicating: the tenant, program and ladder are
reused, and every activity keeps its idempotency key and body, so a second run replays
them (R12). Activity dates are counted back from the day the demo program was created, not
from today, so that a later run sends exactly the same bodies. Each run issues a new key
with every scope; earlier demo keys stay valid until revoked.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from tierwise.api.schemas import ActivityIn
from tierwise.db.repos import members as members_repo
from tierwise.db.repos import tenants as tenants_repo
from tierwise.domain.activity import ActivityType
from tierwise.domain.errors import NotFound
from tierwise.domain.ladder import Ladder
from tierwise.domain.program import Program
from tierwise.importer import command_from
from tierwise.services import activities, members, programs, status
from tierwise.services.activities import ActivityCommand
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.tenants import ALL_SCOPES, NewKey, create_key

TENANT = "demo"
PROGRAM = "Demo Rewards"
LADDER = "status"
KEY_PREFIX = "demo1"
"""Prefix of the demo's idempotency keys; change it whenever the activity plan changes."""

STATUS_MEMBER = "dave"
HISTORY_MEMBER = "alice"
TRY_MEMBER = "judy"

WINDOW: dict[str, Any] = {"type": "rolling_days", "days": 365}


def demo_ladder() -> Ladder:
    """Bronze (floor), Silver at 500 and Gold at 1,500 points earned over 365 days."""
    return Ladder.model_validate(
        {
            "key": LADDER,
            "name": "Status",
            "description": "Points earned over the last 365 days decide the level.",
            "validity": {"type": "fixed_months", "months": 12},
            "levels": [
                {
                    "key": "bronze",
                    "name": "Bronze",
                    "rank": 1,
                    "color": "#cd7f32",
                    "is_floor": True,
                    "description": "Every member starts here.",
                    "benefits": [{"name": "Birthday treat", "type": "custom"}],
                },
                {
                    "key": "silver",
                    "name": "Silver",
                    "rank": 2,
                    "color": "#c0c0c0",
                    "earn_multiplier": "1.25",
                    "description": "500 points earned in the last 365 days.",
                    "attain": _points(500),
                    "benefits": [
                        {"name": "Free standard delivery", "type": "free_shipping"},
                        {"name": "5% off", "type": "percentage_discount", "value": "5"},
                    ],
                },
                {
                    "key": "gold",
                    "name": "Gold",
                    "rank": 3,
                    "color": "#ffd700",
                    "earn_multiplier": "1.5",
                    "description": "1,500 points earned in the last 365 days.",
                    "attain": _points(1500),
                    "benefits": [
                        {"name": "Free express delivery", "type": "free_shipping"},
                        {"name": "10% off", "type": "percentage_discount", "value": "10"},
                        {"name": "Priority support", "type": "custom"},
                    ],
                },
            ],
        }
    )


def _points(threshold: int) -> dict[str, Any]:
    return {
        "mode": "all",
        "criteria": [
            {"metric": "points_earned", "window": WINDOW, "operator": ">=", "threshold": threshold}
        ],
    }


@dataclass(frozen=True, slots=True)
class Step:
    """One planned activity: ``days`` before the anchor day, at ``hour`` UTC."""

    days: int
    type: ActivityType
    pounds: int | None = None
    points: int | None = None
    counter: str | None = None
    quantity: int | None = None
    returns: int | None = None
    """For a return: the index of the member's step that it returns."""
    hour: int = 12


P, C, R, V, RET = (
    ActivityType.PURCHASE,
    ActivityType.POINTS_CREDIT,
    ActivityType.POINTS_REDEMPTION,
    ActivityType.VISIT,
    ActivityType.RETURN,
)

# member: (days enrolled before the anchor, steps). Comments give the expected level.
PLAN: dict[str, tuple[int, tuple[Step, ...]]] = {
    # Gold: Bronze -> Silver -> Gold through purchases.
    "alice": (310, (Step(300, P, 250), Step(200, P, 300), Step(120, P, 400), Step(60, P, 400))),
    # Silver: purchases plus a goodwill credit.
    "bob": (290, (Step(280, P, 200), Step(150, P, 250), Step(40, C, points=200), Step(10, P, 120))),
    # Bronze: two small purchases.
    "carol": (100, (Step(90, P, 80), Step(20, P, 100))),
    # Silver, a few points short of Gold.
    "dave": (
        295,
        (Step(290, P, 400), Step(210, P, 300), Step(100, P, 450), Step(15, C, points=100)),
    ),
    # Gold in one step: a partner credit jumps two levels (R3).
    "erin": (260, (Step(250, C, points=1600), Step(30, P, 90))),
    # Silver kept after a full return (R10, R13), then a small purchase.
    "frank": (205, (Step(200, P, 600), Step(190, RET, returns=0), Step(30, P, 100))),
    # Silver who spent points: redemptions do not reduce points earned.
    "grace": (275, (Step(270, P, 450), Step(180, P, 200), Step(60, R, points=300))),
    # Bronze: enrolled, no activity yet.
    "heidi": (20, ()),
    # Silver for most of the year, Gold last week.
    "ivan": (305, (Step(300, P, 1000), Step(5, P, 420))),
    # Bronze, 90 % of the way to Silver.
    "judy": (110, (Step(100, P, 250), Step(30, P, 200))),
    # Bronze: shop visits and a small purchase.
    "mallory": (180, (Step(170, V), Step(90, V, quantity=2), Step(45, P, 50))),
    # Silver at exactly the threshold (R2: ">=" is inclusive).
    "oscar": (160, (Step(150, C, points=500),)),
}


@dataclass(frozen=True, slots=True)
class MemberSummary:
    member_id: str
    level: str | None
    points_earned: int
    next_level: str | None
    remaining: int | None


@dataclass(frozen=True, slots=True)
class DemoResult:
    key: NewKey
    tenant: str
    program_id: int
    program_name: str
    ladder_key: str
    recorded: int
    """Activities stored by this run."""
    replayed: int
    """Activities an earlier run had stored already."""
    members: tuple[MemberSummary, ...]
    now: datetime
    status_member: str = STATUS_MEMBER
    history_member: str = HISTORY_MEMBER
    try_member: str = TRY_MEMBER


async def build_demo(rt: Runtime) -> DemoResult:
    """Create or refresh the demo tenant and return what ``instructions`` prints."""
    key = await create_key(rt, tenant=TENANT, scopes=["all"], name="demo")
    async with rt.transaction() as conn:
        tenant = await tenants_repo.tenant_by_name(conn, TENANT)
    assert tenant is not None  # create_key has just created it
    caller = Caller(tenant.id, tenant.name, actor="demo", scopes=frozenset(ALL_SCOPES))
    program = await _program(rt, caller)
    await _ladder(rt, caller, program)
    anchor = _anchor(program)
    for member_id, (enrolled_days, _) in PLAN.items():
        await _enrol(rt, caller, member_id, anchor - timedelta(days=enrolled_days))
    recorded, replayed = await _record(rt, caller, program, anchor)
    summaries = [await _summary(rt, caller, program, member_id) for member_id in PLAN]
    return DemoResult(
        key=key,
        tenant=TENANT,
        program_id=program.id,
        program_name=program.name,
        ladder_key=LADDER,
        recorded=recorded,
        replayed=replayed,
        members=tuple(summaries),
        now=rt.clock(),
    )


async def _program(rt: Runtime, caller: Caller) -> Program:
    existing = next(
        (p for p in await programs.list_programs(rt, caller) if p.name == PROGRAM), None
    )
    if existing is None:
        spec = programs.ProgramSpec(
            name=PROGRAM,
            time_zone="Europe/London",
            currency="GBP",
            earn_rate=Decimal(1),
            is_default=True,
        )
        return await programs.create_program(rt, caller, spec)
    if not existing.is_default:
        return await programs.update_program(rt, caller, existing.id, {"is_default": True})
    return existing


async def _ladder(rt: Runtime, caller: Caller, program: Program) -> None:
    try:
        await programs.read_ladder(rt, caller, program.id, LADDER)
    except NotFound:
        await programs.create_ladder(rt, caller, program.id, demo_ladder())


def _anchor(program: Program) -> datetime:
    """Midnight UTC of the day the demo program was created: activity is dated from it."""
    created = program.created_at.astimezone(UTC)
    return created.replace(hour=0, minute=0, second=0, microsecond=0)


async def _enrol(rt: Runtime, caller: Caller, member_id: str, enrolled_at: datetime) -> None:
    """Enrol a member unless a previous run did (its enrolment date then stays)."""
    async with rt.transaction() as conn:
        found = await members_repo.member_by_external_id(conn, caller.tenant_id, member_id)
    if found is None:
        await members.enrol(rt, caller, member_id, enrolled_at)


def _commands(program: Program, anchor: datetime) -> list[ActivityCommand]:
    """Every planned activity in time order (a return comes after what it returns)."""
    planned: list[ActivityCommand] = []
    for member_id, (_, steps) in PLAN.items():
        for index, step in enumerate(steps):
            at = anchor - timedelta(days=step.days) + timedelta(hours=step.hour, minutes=index)
            body: dict[str, Any] = {
                "type": step.type,
                "member_id": member_id,
                "idempotency_key": f"{KEY_PREFIX}-{member_id}-{index:02d}",
                "occurred_at": at,
                "program_id": program.id,
            }
            if step.pounds is not None:
                body["amount_minor"] = step.pounds * 100
                body["currency"] = program.currency
            if step.points is not None:
                body["points"] = step.points
            if step.counter is not None:
                body["counter"] = step.counter
            if step.quantity is not None:
                body["quantity"] = step.quantity
            if step.returns is not None:
                body["reverses_key"] = f"{KEY_PREFIX}-{member_id}-{step.returns:02d}"
            planned.append(command_from(ActivityIn.model_validate(body)))
    return sorted(planned, key=lambda c: c.occurred_at)


async def _record(
    rt: Runtime, caller: Caller, program: Program, anchor: datetime
) -> tuple[int, int]:
    """Record the plan in time order; a return starts a new request, as the ledger asks."""
    recorded = replayed = 0
    batch: list[ActivityCommand] = []

    async def flush() -> None:
        nonlocal recorded, replayed
        if batch:
            for outcome in await activities.record(rt, caller, batch):
                if outcome.replayed:
                    replayed += 1
                else:
                    recorded += 1
            batch.clear()

    for command in _commands(program, anchor):
        if command.type is ActivityType.RETURN:
            await flush()
        batch.append(command)
    await flush()
    return recorded, replayed


async def _summary(rt: Runtime, caller: Caller, program: Program, member_id: str) -> MemberSummary:
    found = await status.member_status(rt, caller, member_id, program_id=program.id)
    item = next(x for x in found.ladders if x.ladder.key == LADDER)
    earned = max(
        (value for (metric, _), value in item.measures.items() if metric == "points_earned"),
        default=0,
    )
    return MemberSummary(
        member_id=member_id,
        level=item.current.name if item.current else None,
        points_earned=earned,
        next_level=item.next.name if item.next else None,
        remaining=item.progress.headline.remaining if item.progress else None,
    )


# -- what the command prints -------------------------------------------------------------


def instructions(result: DemoResult, base_url: str) -> str:
    """The key, a member table and curl commands that work against ``tierwise serve`` on
    ``base_url``. Every line stays under 80 columns, so terminals do not wrap commands."""
    base = base_url.rstrip("/")
    auth = f'-H "Authorization: Bearer {result.key.secret}"'
    json_type = '-H "Content-Type: application/json"'
    at = result.now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    tag = secrets.token_hex(4)
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8000

    lines = [
        f"Demo tenant {result.tenant!r}: program {result.program_id} "
        f"{result.program_name!r}, ladder {result.ladder_key!r}.",
        f"This run stored {result.recorded} activities; {result.replayed} were there already.",
        "",
        "API key with every scope (the secret is shown only now):",
        f"  key id:  {result.key.key_id}",
        f"  secret:  {result.key.secret}",
        "",
        "Members (points earned over the last 365 days):",
    ]
    for m in result.members:
        gap = (
            f"{m.remaining} to {m.next_level}"
            if m.next_level is not None and m.remaining is not None
            else "top level"
        )
        lines.append(f"  {m.member_id:<8} {m.level or '-':<7} {m.points_earned:>6}   {gap}")
    lines += [
        "",
        "Serve the API (with the same --database-url, if you gave one):",
        f"  tierwise serve --host {host} --port {port}",
        "(or let the demo do it: tierwise demo --serve)",
        "",
        "Then try:",
        "",
        "# Is it up?",
        f"curl -s {base}/healthz",
        "",
        "# Programs",
        f"curl -s {base}/v1/programs \\",
        f"  {auth}",
        "",
        "# The ladder: levels, thresholds, benefits",
        f"curl -s {base}/v1/programs/{result.program_id}/ladders/{result.ladder_key} \\",
        f"  {auth}",
        "",
        f"# {result.status_member}'s level and progress",
        f"curl -s {base}/v1/members/{result.status_member}/status \\",
        f"  {auth}",
        "",
        f"# {result.history_member}'s level changes",
        f"curl -s {base}/v1/members/{result.history_member}/history \\",
        f"  {auth}",
        "",
        f"# Record a purchase: {result.try_member} reaches Silver (send it twice: the repeat",
        "# answers the first result with Idempotent-Replayed: true)",
        f"curl -s {base}/v1/activities \\",
        f"  {auth} \\",
        f"  {json_type} \\",
        "  -d "
        + _json_block(
            {
                "type": "purchase",
                "member_id": result.try_member,
                "amount_minor": 6000,
                "currency": "GBP",
                "occurred_at": at,
                "idempotency_key": f"try-purchase-{tag}",
            }
        ),
        "",
        "# A batch (up to 1,000 in one transaction)",
        f"curl -s {base}/v1/activities/batch \\",
        f"  {auth} \\",
        f"  {json_type} \\",
        '  -d \'{"activities": [',
        "    "
        + _json_line(
            {
                "type": "visit",
                "member_id": "mallory",
                "occurred_at": at,
                "idempotency_key": f"try-visit-{tag}",
            }
        )
        + ",",
        "    "
        + _json_line(
            {
                "type": "points_credit",
                "member_id": "carol",
                "points": 50,
                "occurred_at": at,
                "idempotency_key": f"try-credit-{tag}",
            }
        ),
        "  ]}'",
    ]
    return "\n".join(lines) + "\n"


def _json_line(body: dict[str, Any]) -> str:
    """One JSON object, its members split over lines of at most ~70 columns."""
    items = [json.dumps({k: v})[1:-1] for k, v in body.items()]
    rows: list[str] = []
    current = ""
    for item in items:
        candidate = f"{current}, {item}" if current else item
        if current and len(candidate) > 62:
            rows.append(current + ",")
            current = item
        else:
            current = candidate
    rows.append(current)
    return "{" + "\n      ".join(rows) + "}"


def _json_block(body: dict[str, Any]) -> str:
    return "'" + _json_line(body) + "'"
