"""The activity fast path: ``POST /v1/activities`` and ``POST /v1/activities/batch``
recorded before routing (issue 2, item 11b).

Routing, dependency solving and FastAPI's request and response objects cost about as much
CPU as recording a single activity itself; for a batch, FastAPI's JSON parser alone costs
three times ``orjson``'s. This path does only what the routes do for a request that is
certain to succeed up to the service call: a JSON body that ``ActivityIn`` (or
``ActivityBatchIn``, as ``batch_commands`` checks it) accepts, sent with a bearer or
``X-API-Key`` secret of a valid key that holds ``activities:write`` (verified as the route
verifies it, from the same cache). It then records the activities and answers with the
routes' own functions (``routes.activities``: ``record_one`` through the group commit and
``answer``; ``batch_commands``, ``record_many`` and ``batch_answer``).

Anything else goes on to the router, with the body it has read handed on unchanged: other
credential styles, an unknown key or a missing scope, another content type, a body the
schema refuses, and any error the service raises (nothing was written then; the route
runs the request again and reports the error in the API's error shape).
"""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tierwise.api.auth import secret_in
from tierwise.api.routes.activities import (
    answer,
    batch_answer,
    batch_commands_of,
    groups_of,
    record_many,
    record_one,
)
from tierwise.api.schemas import ActivityIn
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import KeyVerifier
from tierwise.services.tenants import Scope as KeyScope

_ONE = "/v1/activities"
_BATCH = "/v1/activities/batch"
_WRITE = KeyScope.ACTIVITIES_WRITE.value
_log = logging.getLogger(__name__)


class FastActivity:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.served = 0
        """Requests this path answered (the rest went on to the router)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in (_ONE, _BATCH)
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        # Batches up to the body limit (the app refuses larger declared lengths first).
        limit = scope["app"].max_body_bytes if scope["path"] == _BATCH else _LIMIT
        body, more = await _read(receive, limit)
        if body is None:  # the client went away
            return
        if not more and await self._serve(scope, body, send):
            return
        await self.app(scope, _replay(body, more, receive), send)

    async def _serve(self, scope: Scope, body: bytes, send: Send) -> bool:
        state = scope["app"].state
        rt: Runtime | None = getattr(state, "runtime", None)
        keys: KeyVerifier | None = getattr(state, "verifier", None)
        if rt is None or keys is None or not _is_json(scope):
            return False
        secret = secret_in(scope)
        if secret is None:
            return False
        try:
            caller = await keys.by_secret(secret)
        except Exception:  # an unknown or revoked key: the route says which
            return False
        if _WRITE not in caller.scopes:
            return False
        one = scope["path"] == _ONE
        try:
            activity = ActivityIn.model_validate(orjson.loads(body)) if one else None
            batch = None if one else batch_commands_of(body)
        except (orjson.JSONDecodeError, ValidationError):
            return False
        headers: dict[str, str] = {}
        try:
            if activity is not None:
                outcome = await record_one(groups_of(scope["app"]), rt, caller, activity)
                status, headers, content = answer(outcome)
            else:
                assert batch is not None
                status, content = 200, batch_answer(await record_many(rt, caller, batch))
        except Exception:  # nothing was written: the route runs it again and reports it
            _log.debug("fast activity path failed; the route answers", exc_info=True)
            return False
        raw = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
        ]
        raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})
        self.served += 1
        return True


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":  # the first, as Starlette's headers.get
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json"
    return False


_LIMIT = 64 * 1024
"""Single activities larger than this are left to the route (one is a few hundred bytes);
batches up to the body limit are read (the route answers those over it: 413)."""


async def _read(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The body (None if the client disconnected), and whether more is still unread
    (when it grew beyond ``limit``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A ``receive`` that first hands on what was read, then the rest of the stream."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
