"""Seed data through the public API: a program, a 3-level ladder, members and activity.

Every activity is a purchase (it earns points at the program's rate and adds to spend and
orders). Dates are spread over the last three years and sent oldest first across the
batches, as a live feed would arrive, so no activity is back-dated.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import RawConnection, split_url

SPEND_365 = {"type": "rolling_days", "days": 365}

LADDER: dict[str, Any] = {
    "key": "status",
    "name": "Status",
    "levels": [
        {"key": "bronze", "name": "Bronze", "rank": 1, "is_floor": True},
        {
            "key": "silver",
            "name": "Silver",
            "rank": 2,
            "earn_multiplier": "1.25",
            "benefits": [{"name": "Free shipping", "type": "free_shipping"}],
            "attain": {
                "mode": "all",
                "criteria": [
                    {"metric": "points_earned", "threshold": 500},
                    {"metric": "spend", "window": SPEND_365, "threshold": 50_000},
                ],
            },
        },
        {
            "key": "gold",
            "name": "Gold",
            "rank": 3,
            "earn_multiplier": "1.5",
            "benefits": [{"name": "10% off", "type": "percentage_discount", "value": "10"}],
            "attain": {
                "mode": "all",
                "criteria": [
                    {"metric": "points_earned", "threshold": 5_000},
                    {"metric": "spend", "window": SPEND_365, "threshold": 500_000},
                ],
            },
        },
    ],
}

LIGHT = "light-10"
HEAVY = "heavy-10k"


@dataclass
class Seeded:
    program_id: int
    members: list[str]
    light: str
    heavy: str
    activities: int
    seconds: float


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def purchase(member: str, key: str, at: datetime, amount: int) -> dict[str, Any]:
    return {
        "type": "purchase",
        "member_id": member,
        "idempotency_key": key,
        "occurred_at": iso(at),
        "amount_minor": amount,
        "currency": "USD",
    }


class Api:
    def __init__(self, base_url: str, secret: str) -> None:
        self.conn = RawConnection(*split_url(base_url))
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    async def call(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)
    ) -> Any:
        raw = None if body is None else json.dumps(body).encode()
        status, answer = await self.conn.request(method, path, headers=self.headers, body=raw)
        if status not in expect:
            raise RuntimeError(f"{method} {path} answered {status}: {answer[:500]!r}")
        return json.loads(answer) if answer else None

    async def close(self) -> None:
        await self.conn.close()


async def seed(
    base_url: str,
    secret: str,
    *,
    members: int = 1000,
    per_member: int = 3,
    heavy: int = 10_000,
    light: int = 10,
    seed_value: int = 7,
) -> Seeded:
    rng = random.Random(seed_value)
    api = Api(base_url, secret)
    started = time.perf_counter()
    try:
        program = await api.call(
            "POST",
            "/v1/programs",
            {
                "name": "Bench",
                "time_zone": "UTC",
                "currency": "USD",
                "earn_rate": "1",
                "is_default": True,
            },
        )
        program_id = int(program["id"])
        await api.call("POST", f"/v1/programs/{program_id}/ladders", LADDER)

        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=3 * 365)
        span = (now - timedelta(hours=1) - start).total_seconds()
        plan: list[tuple[datetime, str]] = []
        names = [f"m{i:04d}" for i in range(members)]
        for name in names:
            plan += [
                (start + timedelta(seconds=rng.uniform(0, span)), name) for _ in range(per_member)
            ]
        for count, name in ((light, LIGHT), (heavy, HEAVY)):
            step = span / count
            plan += [
                (start + timedelta(seconds=step * (i + rng.random())), name) for i in range(count)
            ]
        plan.sort()
        activities = [
            purchase(name, f"seed-{i}", at, rng.randrange(1_000, 30_000))
            for i, (at, name) in enumerate(plan)
        ]
        for offset in range(0, len(activities), 1000):
            chunk = activities[offset : offset + 1000]
            answer = await api.call("POST", "/v1/activities/batch", {"activities": chunk})
            if answer["accepted"] + answer["duplicates"] != len(chunk):
                raise RuntimeError(f"batch at {offset}: {answer['accepted']} accepted")
    finally:
        await api.close()
    return Seeded(
        program_id=program_id,
        members=names,
        light=LIGHT,
        heavy=HEAVY,
        activities=len(activities),
        seconds=time.perf_counter() - started,
    )


def ingest_payloads(
    members: list[str], *, workers: int, batches: int, nonce: str, start: datetime
) -> list[list[bytes]]:
    """``workers`` lists of ``batches`` JSON bodies of 1,000 purchases each. Worker ``w``
    uses its own slice of ``members`` (so concurrent batches never wait on each other's
    member locks), and dates rise from ``start`` one millisecond per activity."""
    rng = random.Random(11)
    slices = [members[w::workers] for w in range(workers)]
    out: list[list[bytes]] = []
    for w, own in enumerate(slices):
        bodies: list[bytes] = []
        for b in range(batches):
            acts = [
                purchase(
                    own[i % len(own)],
                    f"{nonce}-w{w}-b{b}-{i}",
                    start + timedelta(milliseconds=b * 1000 + i),
                    rng.randrange(1_000, 30_000),
                )
                for i in range(1000)
            ]
            bodies.append(json.dumps({"activities": acts}).encode())
        out.append(bodies)
    return out
