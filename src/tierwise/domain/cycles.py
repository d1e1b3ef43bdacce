"""The current validity cycle of a permanent level (R14, E4).

A floor level never expires, yet programmes still show its cycle: Omneo's anniversary
for a Bronze member (E4: achieved 2021-01-21, anniversary 2022-01-21 23:59:59). The
cycle is the ladder's validity applied from the tier start and rolled forward, one cycle
at a time, to the one that contains ``as_of``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from tierwise.domain.ladder import Validity
from tierwise.domain.validity import expiry_of, next_cycle_start

MAX_CYCLES = 2000


def current_cycle_end(
    validity: Validity,
    *,
    start: datetime,
    as_of: datetime,
    tz: ZoneInfo,
    enrolled_at: datetime,
    last_activity_at: datetime | None,
) -> datetime | None:
    """The end of the cycle containing ``as_of`` (the first when ``as_of`` precedes it);
    None when the validity never ends."""
    end = expiry_of(
        validity,
        tier_start=start,
        enrolled_at=enrolled_at,
        tz=tz,
        last_activity_at=last_activity_at,
    )
    for _ in range(MAX_CYCLES):
        if end is None or end >= as_of:
            return end
        end = expiry_of(
            validity,
            tier_start=next_cycle_start(end),
            enrolled_at=enrolled_at,
            tz=tz,
            last_activity_at=last_activity_at,
        )
    return end
