"""Review: the stored-status lookup runs on a bare asyncpg pool (Runtime.driver) built from
``database_url``; the status route does not fall back to computing when that lookup fails
(docs/architecture.md promises a database error "goes on to the route, which computes")."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import activity, criterion, level, program
from tests.conftest import Api, make_key
from tierwise.api.app import create_app
from tierwise.services.runtime import Runtime
from tierwise.services.tenants import ALL_SCOPES
from tierwise.settings import Settings


def test_review_status_read_survives_a_failing_document_lookup(
    settings: Settings, tenant_name: str
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("status documents are stored on PostgreSQL only")
    url = settings.database_url + "?prepared_statement_cache_size=100"
    quiet = settings.model_copy(update={"database_url": url, "status_docs_verify": False})
    rt = Runtime(quiet)
    with TestClient(create_app(quiet, runtime=rt), raise_server_exceptions=False) as client:
        try:
            api = Api(client, make_key(client, tenant_name, ALL_SCOPES))
            prog = program(api)
            body = {
                "key": "s",
                "name": "S",
                "levels": [level("a", 1, criterion("points_earned", 5))],
            }
            created = api.post(f"/v1/programs/{prog['id']}/ladders", json=body)
            assert created.status_code == 201, created.text
            activity(api, "m", points=10)
            # The engine itself works with this URL: a computed read answers.
            assert api.get("/v1/members/m/status", params={"ladder": "s"}).status_code == 200
            plain = api.get("/v1/members/m/status")
            assert plain.status_code == 200, plain.text
        finally:
            assert client.portal is not None
            client.portal.call(rt.close)
