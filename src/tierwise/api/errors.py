"""One error shape for the whole API, and the one table that maps codes to statuses.

Every error answers ``{"error": {"code", "message", "field"?, "details"?}}``: ``code`` is
stable and machine-readable, ``message`` is for humans, ``field`` names the offending input.
Platform dialects render the same errors in their own shapes (``dialects/``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tierwise.domain.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from tierwise.services.tenants import Unauthenticated

log = logging.getLogger("tierwise.api")

STATUS_BY_CLASS: tuple[tuple[type[DomainError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
)

STATUS_BY_HTTP_CODE = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
}


class ApiError(Exception):
    """An error raised at the HTTP edge itself (credentials, body size, …)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def status_of(error: DomainError) -> int:
    for cls, status in STATUS_BY_CLASS:
        if isinstance(error, cls):
            return status
    return 400


Renderer = Callable[[Request, int, str, str, dict[str, Any]], JSONResponse]


def native_body(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    extra = dict(details)
    if "field" in extra:
        error["field"] = extra.pop("field")
    if extra:
        error["details"] = extra
    return {"error": error}


def render_native(
    _: Request, status: int, code: str, message: str, details: dict[str, Any]
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(native_body(code, message, details), status_code=status, headers=headers)


class ErrorRouter:
    """Chooses the error renderer by path prefix: native by default, a dialect's own
    shape under its ``/compat/<platform>`` prefix."""

    def __init__(self) -> None:
        self._renderers: list[tuple[str, Renderer]] = []

    def register(self, prefix: str, renderer: Renderer) -> None:
        self._renderers.append((prefix, renderer))

    def render(
        self,
        request: Request,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> JSONResponse:
        path = request.url.path
        for prefix, renderer in self._renderers:
            if path == prefix or path.startswith(prefix + "/"):
                return renderer(request, status, code, message, details or {})
        return render_native(request, status, code, message, details or {})


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _whole_body(error: Any) -> bool:
    """An error about the body as a whole (not one of its fields)."""
    return tuple(error.get("loc", ())) == ("body",) and error.get("type") != "missing"


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def install(app: FastAPI, router: ErrorRouter) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return router.render(request, status_of(exc), exc.code, exc.message, exc.details)

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return router.render(request, exc.status, exc.code, exc.message, exc.details)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return router.render(
                request, 400, "malformed_json", "the request body is not valid JSON"
            )
        media_type = _media_type(request)
        if media_type and not _is_json(media_type) and any(_whole_body(e) for e in errors):
            return router.render(
                request,
                415,
                "unsupported_media_type",
                f"send the body as JSON with Content-Type: application/json, not {media_type}",
            )
        problems = [
            {
                "field": _field(tuple(e.get("loc", ()))),
                "message": str(e.get("msg")),
                "type": str(e.get("type")),
            }
            for e in errors
        ]
        first = problems[0] if problems else {"field": "", "message": "invalid input"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return router.render(
            request, 422, "validation_error", message, {"field": first["field"], "errors": problems}
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, RecursionError):
            return router.render(
                request, 400, "malformed_json", "the request body is nested too deeply"
            )
        if exc.status_code == 400 and isinstance(cause, ValueError):
            # FastAPI's "error parsing the body", e.g. bytes that are not UTF-8.
            return router.render(
                request, 400, "malformed_json", "the request body is not valid JSON"
            )
        code = STATUS_BY_HTTP_CODE.get(exc.status_code, "http_error")
        return router.render(request, exc.status_code, code, str(exc.detail))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return router.render(request, 500, "internal_error", "an unexpected error occurred")

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


Handler = Callable[[Request], Awaitable[JSONResponse]]
