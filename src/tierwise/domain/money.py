"""Currencies and money arithmetic (R8: never binary floats)."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor-unit exponents that differ from the usual 2.
_EXPONENTS: dict[str, int] = {
    "BHD": 3,
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "IQD": 3,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "PYG": 0,
    "RWF": 0,
    "TND": 3,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
}


def is_currency_code(code: str) -> bool:
    return len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency, 2)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """Exact major-unit value of an amount in minor units: 1999 USD cents -> 19.99."""
    return Decimal(amount_minor).scaleb(-minor_unit_exponent(currency))
