"""Points earned by a purchase (R11).

``amount × program earn rate × level multiplier``, where the earn rate is points per
major currency unit. For the purchase that causes an upgrade the ladder's
``upgrade_timing`` decides the rate: ``lazy`` (old level), ``eager`` (new level) or
``dynamic`` (the part needed to reach the threshold at the old rate, the rest at the new
one). Points are whole: each part is rounded down.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from functools import lru_cache

from tierwise.domain.ladder import UpgradeTiming
from tierwise.domain.money import minor_unit_exponent, to_major


@dataclass(frozen=True, slots=True)
class EarnPart:
    amount_minor: int
    rate: Decimal
    """Points per major currency unit for this part (earn rate × multiplier)."""
    points: int


@dataclass(frozen=True, slots=True)
class Earning:
    points: int
    parts: tuple[EarnPart, ...]


@lru_cache(maxsize=1024)
def _rate_terms(rate: Decimal) -> tuple[Decimal, int, int] | None:
    """``(rate.normalize(), coefficient, exponent)`` with ``rate = coefficient × 10**exponent``
    for a finite, non-negative rate; None for any other."""
    sign, digits, exponent = rate.as_tuple()
    if sign or not isinstance(exponent, int):
        return None
    return rate.normalize(), int("".join(map(str, digits)) or "0"), exponent


_EXACT = 10**27
"""Below this, a product of two coefficients is exact in the default 28-digit context."""


def _part(amount_minor: int, currency: str, rate: Decimal) -> EarnPart:
    terms = _rate_terms(rate) if amount_minor >= 0 else None
    if terms is not None and amount_minor * terms[1] < _EXACT:
        # The same exact value as the Decimal arithmetic below, in integers.
        normal, coefficient, exponent = terms
        shift = exponent - minor_unit_exponent(currency)
        product = amount_minor * coefficient
        points = product * 10**shift if shift >= 0 else product // 10**-shift
        return EarnPart(amount_minor=amount_minor, rate=normal, points=points)
    points = int((to_major(amount_minor, currency) * rate).to_integral_value(ROUND_DOWN))
    return EarnPart(amount_minor=amount_minor, rate=rate.normalize(), points=points)


def earn_for_purchase(
    amount_minor: int,
    currency: str,
    *,
    earn_rate: Decimal,
    old_multiplier: Decimal,
    new_multiplier: Decimal | None = None,
    timing: UpgradeTiming = UpgradeTiming.EAGER,
    needed_minor: int | None = None,
) -> Earning:
    """Points for one purchase.

    ``new_multiplier`` is set when this purchase causes an upgrade; ``needed_minor`` is
    the part of the purchase that reaches the new level's spend threshold (``dynamic``).
    Without a spend threshold to split on, ``dynamic`` earns like ``lazy``.
    """
    old_rate = earn_rate * old_multiplier
    if new_multiplier is None or timing is UpgradeTiming.LAZY:
        parts: tuple[EarnPart, ...] = (_part(amount_minor, currency, old_rate),)
    elif timing is UpgradeTiming.EAGER:
        parts = (_part(amount_minor, currency, earn_rate * new_multiplier),)
    else:
        before = amount_minor if needed_minor is None else min(max(needed_minor, 0), amount_minor)
        parts = tuple(
            p
            for p in (
                _part(before, currency, old_rate),
                _part(amount_minor - before, currency, earn_rate * new_multiplier),
            )
            if p.amount_minor > 0
        ) or (_part(0, currency, old_rate),)
    return Earning(points=sum(p.points for p in parts), parts=parts)
