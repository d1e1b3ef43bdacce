"""The status read's fast path: ``GET /v1/members/{id}/status`` answered from a stored
document before routing (issue 2, item 11a).

It serves only what it can answer for sure: a plain read (no query string) with a bearer
or ``X-API-Key`` secret verified moments ago that holds ``members:read``, whose stored
document is still true (``services/status_documents.py``). Anything else (another
credential style, an unknown key, a missing scope or member, no document, an error) goes
on to the router, whose route gives the same answer the slow way, or the error."""

from __future__ import annotations

import logging
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from tierwise.api.auth import secret_in
from tierwise.services import status_documents as documents
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import KeyVerifier
from tierwise.services.tenants import Scope as KeyScope

_PATH = re.compile(r"^/v1/members/([^/\x00]{1,128})/status$")
_READ = KeyScope.MEMBERS_READ.value
_log = logging.getLogger(__name__)

#: Where a lookup that found no usable document is left for the route.
LOOKUP_STATE = "stored_status_lookup"


class StoredStatus:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            match = _PATH.match(scope["path"])
            if match is not None and await self._serve(scope, match.group(1), send):
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, member_id: str, send: Send) -> bool:
        state = scope["app"].state
        rt: Runtime | None = getattr(state, "runtime", None)
        keys: KeyVerifier | None = getattr(state, "verifier", None)
        if rt is None or keys is None or rt.settings.status_docs_verify:
            return False
        if not documents.enabled(rt):
            return False
        secret = secret_in(scope)
        caller = None if secret is None else keys.remembered(secret)
        if caller is None or _READ not in caller.scopes:
            return False
        try:
            found = await documents.lookup(rt, caller, member_id, None, rt.clock())
        except Exception:  # the route will answer, or report the error properly
            _log.exception("stored status lookup failed; computing the status instead")
            return False
        body = found.served
        if body is None:
            # The route computes the status; it stores it with this stamp, without a
            # second lookup (Starlette's ``request.state`` is ``scope["state"]``).
            scope.setdefault("state", {})[LOOKUP_STATE] = (caller.tenant_id, found)
            return False
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True
