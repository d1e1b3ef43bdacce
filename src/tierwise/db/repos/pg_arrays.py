"""Array parameters of PostgreSQL statements on the asyncpg connection, sent as text.

asyncpg encodes a list parameter in two passes, and its first asks of every element
whether it is itself a sub-array: ``isinstance(element, collections.abc.Iterable)``, a
call into Python's ``abc`` module for each integer, date or instant. For the arrays of a
batch of 1,000 activities (a few thousand elements), that check and the encoding cost
more of the client's CPU than anything PostgreSQL does with them.

An array of integers, dates or instants written as JSON by ``orjson`` (in C) is, with its
brackets turned into braces, an array literal that PostgreSQL reads:
``[1,2,null]`` is ``{1,2,null}`` (an unquoted ``null`` is NULL in any letter case),
``["2026-11-22"]`` a date and ``["2026-11-22T19:27:08.034504+00:00"]`` an instant in RFC
3339. The statement takes such a parameter as ``text`` and casts it (``param``).

Strings are written the same way while JSON escaped none of their characters (no
backslash in the text: each element is then a plain double-quoted string, which the
literal reads as it is); otherwise each is quoted as array literals quote (JSON and array
literals escape differently). ``param`` and ``argument`` leave text arrays to asyncpg
(they hold JSON text, which JSON always escapes); ``literal`` is for the arrays of
identifiers a batch sends.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import orjson

Scalar = int | str | date | datetime | None


def literal(values: Sequence[Scalar]) -> str:
    """The array literal of ``values``: integers, strings (without NUL, which PostgreSQL
    text cannot hold), dates, aware instants or None."""
    text = orjson.dumps(values).decode()
    if "\\" in text:
        return "{" + ",".join(_quoted(v) for v in values) + "}"
    return "{" + text[1:-1] + "}"


def _quoted(value: Scalar) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return orjson.dumps(value).decode()


def param(number: int, sql_type: str) -> str:
    """Parameter ``$number`` as an array of ``sql_type``: a literal (``literal``) for
    every type but ``text``, whose arrays asyncpg encodes."""
    if sql_type == "text":
        return f"${number}::text[]"
    return f"${number}::text::{sql_type}[]"


def argument(values: Sequence[Any], sql_type: str) -> Any:
    """The value to pass for a parameter written by ``param(n, sql_type)``."""
    return list(values) if sql_type == "text" else literal(values)
