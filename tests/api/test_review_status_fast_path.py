"""Review: the status fast path (api/stored_status.py) must never serve what the route
would refuse (docs/architecture.md, "The status read's fast path"). PostgreSQL only (the
fixture skips elsewhere): documents are stored on PostgreSQL alone."""

from __future__ import annotations

from tests.api import test_status_documents as documents
from tests.api.test_status_documents import _read, _setup
from tests.conftest import Api, make_key
from tierwise.services.tenants import ALL_SCOPES

# The fixtures of the stored-document tests: an app that does not verify documents.
app_api = documents.app_api
clock = documents.clock


def _with_and_without_fast_path(api: Api, headers: list[tuple[str, str]]) -> tuple[int, int]:
    # A query string the route ignores sends the same request down the slow path.
    fast = api.client.get("/v1/members/m1/status", headers=headers)
    slow = api.client.get("/v1/members/m1/status?unused=1", headers=headers)
    return fast.status_code, slow.status_code


def test_review_fast_path_reads_the_same_api_key_header_as_the_route(app_api: Api) -> None:
    _setup(app_api)
    _read(app_api)  # stores the document and remembers the key
    headers = [("X-API-Key", "not-a-key"), ("X-API-Key", app_api.key.secret)]
    fast, slow = _with_and_without_fast_path(app_api, headers)
    assert slow == 401
    assert fast == slow


def test_review_fast_path_answers_for_the_same_tenant_as_the_route(app_api: Api) -> None:
    _setup(app_api)
    _read(app_api)
    other = make_key(app_api.client, f"other-{app_api.key.tenant}", ALL_SCOPES)
    # The other tenant has no member m1: the route answers 404 for the first key's tenant.
    headers = [("X-API-Key", other.secret), ("X-API-Key", app_api.key.secret)]
    app_api.client.get("/v1/members/m1/status", headers={"X-API-Key": other.secret})
    fast, slow = _with_and_without_fast_path(app_api, headers)
    assert slow == 404
    assert fast == slow


def test_review_fast_path_keeps_the_body_limit(app_api: Api) -> None:
    _setup(app_api)
    _read(app_api)
    headers = [
        ("Authorization", f"Bearer {app_api.key.secret}"),
        ("Content-Length", str(10 * 1024 * 1024)),
    ]
    fast, slow = _with_and_without_fast_path(app_api, headers)
    assert slow == 413
    assert fast == slow
