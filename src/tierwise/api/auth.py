"""Credentials and scopes.

A key is accepted the three ways the platforms use: ``Authorization: Bearer <secret>``,
``X-API-Key: <secret>``, or HTTP Basic with the key id as user and the secret as password.
Each route declares the scope it needs with one ``Annotated`` alias.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope as AsgiScope

from tierwise.api.errors import ApiError
from tierwise.services.runtime import Caller, Runtime
from tierwise.services.tenants import KeyVerifier, Scope


async def runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a costly hop
    # on every request for a one-line lookup.
    rt: Runtime = request.app.state.runtime
    return rt


def verifier(request: Request) -> KeyVerifier:
    found: KeyVerifier = request.app.state.verifier
    return found


async def authenticate(request: Request) -> Caller:
    keys = verifier(request)
    api_key = request.headers.get("x-api-key")
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if api_key:
        return await keys.by_secret(api_key.strip())
    if scheme.lower() == "bearer" and value:
        return await keys.by_secret(value)
    if scheme.lower() == "basic" and value:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if sep and user and password:
            return await keys.by_key_id(user, password)
    raise ApiError(
        401,
        "unauthenticated",
        "send an API key: Authorization: Bearer <secret>, X-API-Key: <secret>, or "
        "HTTP Basic with key id and secret",
    )


def require(scope: Scope) -> object:
    async def check(request: Request) -> Caller:
        caller = await authenticate(request)
        if scope.value not in caller.scopes:
            raise ApiError(
                403,
                "missing_scope",
                f"this API key lacks the {scope.value!r} scope",
                scope=scope.value,
            )
        return caller

    check.__name__ = f"require_{scope.name.lower()}"
    return Depends(check)


RuntimeDep = Annotated[Runtime, Depends(runtime)]
ProgramsRead = Annotated[Caller, require(Scope.PROGRAMS_READ)]
ProgramsWrite = Annotated[Caller, require(Scope.PROGRAMS_WRITE)]
ProgramsApprove = Annotated[Caller, require(Scope.PROGRAMS_APPROVE)]
MembersRead = Annotated[Caller, require(Scope.MEMBERS_READ)]
MembersWrite = Annotated[Caller, require(Scope.MEMBERS_WRITE)]
ActivitiesWrite = Annotated[Caller, require(Scope.ACTIVITIES_WRITE)]
TiersRead = Annotated[Caller, require(Scope.TIERS_READ)]
TiersWrite = Annotated[Caller, require(Scope.TIERS_WRITE)]
SweepsRun = Annotated[Caller, require(Scope.SWEEPS_RUN)]


def secret_in(scope: AsgiScope) -> str | None:
    """The secret of a raw ASGI request, read the way ``authenticate`` reads it:
    ``X-API-Key`` first, then a bearer token; None for anything else (HTTP Basic goes
    the slow way). For the fast paths, which run before FastAPI's request objects."""
    api_key: bytes | None = None
    authorization: bytes | None = None
    for name, value in scope["headers"]:  # the first of each, as Starlette's headers.get
        if name == b"x-api-key" and api_key is None:
            api_key = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if api_key:
        return api_key.decode("latin-1").strip() or None
    if authorization:
        scheme, _, rest = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    return None
