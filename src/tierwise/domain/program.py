"""Programs: a tenant's loyalty programmes (semantics §1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from tierwise.domain.calendar import zone


@dataclass(frozen=True, slots=True)
class Program:
    id: int
    uuid: str
    tenant_id: int
    name: str
    time_zone: str
    currency: str
    earn_rate: Decimal
    """Points per major currency unit before the level multiplier (R11)."""
    is_default: bool
    created_at: datetime
    updated_at: datetime

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)
