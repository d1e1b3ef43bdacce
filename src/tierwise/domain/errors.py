"""Business errors with stable machine codes.

The API layer maps each code to an HTTP status in one table (``api/errors.py``); nothing
here knows about HTTP.

    DomainError
    ├── NotFound            (an object does not exist or belongs to another tenant)
    ├── Conflict            (the request clashes with stored state, e.g. a reused key)
    ├── InvalidInput        (the request is well-formed but breaks a business rule)
    └── Forbidden           (the caller may not do this)
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: ``code`` is stable and machine-readable, ``message`` is for humans."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid_input"


class Forbidden(DomainError):
    code = "forbidden"


class LadderInvalid(InvalidInput):
    """A ladder definition breaks R1 (ordering, thresholds) or another structural rule."""

    code = "ladder_invalid"
