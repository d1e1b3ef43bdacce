"""The Yuko dialect (see docs/dialects.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tierwise.api.errors import render_native

PREFIX = "/compat/yuko"

router = APIRouter(prefix=PREFIX, tags=["dialect: yuko"], include_in_schema=True)


def render_error(
    request: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    """Errors under this prefix, in the platform's shape."""
    return render_native(request, status, code, message, details)
