"""The ``tierwise`` command (issue 2, item 9), run through Typer's test runner.

The CLI calls ``asyncio.run``, so these are plain sync tests. They use a SQLite file of
their own, or the session's PostgreSQL database when ``TIERWISE_TEST_DATABASE_URL`` points
at a server, and check what the commands print against the HTTP API.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tierwise.api.app import create_app
from tierwise.cli import app
from tierwise.demo import DemoResult, MemberSummary, instructions
from tierwise.services.tenants import NewKey
from tierwise.settings import Settings

BASE_URL = "http://127.0.0.1:8000"

# An 80-column terminal: the narrowest common one. Printed commands must not wrap.
runner = CliRunner(env={"COLUMNS": "80", "TIERWISE_DATABASE_URL": None})


@pytest.fixture(scope="module")
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database for this module, migrated through ``tierwise db upgrade``."""
    if os.environ.get("TIERWISE_TEST_DATABASE_URL", "").startswith("postgres"):
        found: str = request.getfixturevalue("database_url")
    else:
        found = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'tierwise.db'}"
    result = invoke("db", "upgrade", "--database-url", found)
    assert "database at revision head" in result.stdout
    return found


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[TestClient]:
    settings = Settings(database_url=url, auth_cache_seconds=0, sweep_interval_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def invoke(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def field(output: str, label: str) -> str:
    match = re.search(rf"^\s*{label}:\s+(\S+)\s*$", output, re.MULTILINE)
    assert match, f"no {label!r} in:\n{output}"
    return match.group(1)


def create_key(url: str, tenant: str, *scopes: str, code: int = 0) -> Any:
    options = [option for scope in scopes for option in ("--scopes", scope)]
    return invoke("keys", "create", "--tenant", tenant, *options, "--database-url", url, code=code)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def new_tenant() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


# -- db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_can_run_again_on_a_migrated_database(url: str) -> None:
    result = invoke("db", "upgrade", "--database-url", url)
    assert "database at revision head" in result.stdout


# -- keys -------------------------------------------------------------------------------


class TestKeys:
    def test_created_key_is_printed_once_and_authenticates_three_ways(
        self, url: str, client: TestClient
    ) -> None:
        tenant = new_tenant()
        result = create_key(url, tenant, "programs:read", "members:read,activities:write")
        key_id, secret = field(result.stdout, "key id"), field(result.stdout, "secret")
        assert field(result.stdout, "tenant") == tenant
        assert "activities:write members:read programs:read" in result.stdout

        assert client.get("/v1/programs", headers=bearer(secret)).json() == []
        assert client.get("/v1/programs", headers={"X-API-Key": secret}).status_code == 200
        assert client.get("/v1/programs", auth=(key_id, secret)).status_code == 200
        missing = client.post("/v1/programs", headers=bearer(secret), json={"name": "P"})
        assert missing.status_code == 403
        assert missing.json()["error"]["code"] == "missing_scope"

        listed = invoke("keys", "list", "--tenant", tenant, "--database-url", url).stdout
        assert key_id in listed
        assert "active" in listed
        assert secret not in listed

    def test_revoked_key_is_refused(self, url: str, client: TestClient) -> None:
        tenant = new_tenant()
        created = create_key(url, tenant, "all").stdout
        key_id, secret = field(created, "key id"), field(created, "secret")
        assert client.get("/v1/programs", headers=bearer(secret)).status_code == 200

        assert f"revoked {key_id}" in invoke("keys", "revoke", key_id, "--database-url", url).stdout
        refused = client.get("/v1/programs", headers=bearer(secret))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert "revoked" in invoke("keys", "list", "--tenant", tenant, "--database-url", url).stdout
        again = invoke("keys", "revoke", key_id, "--database-url", url, code=2)
        assert "key_not_found" in again.stderr

    def test_unknown_scope_is_refused_without_creating_a_key(self, url: str) -> None:
        tenant = new_tenant()
        result = create_key(url, tenant, "programs:read", "root", code=2)
        assert "unknown_scope" in result.stderr
        listed = invoke("keys", "list", "--tenant", tenant, "--database-url", url, code=2)
        assert "tenant_not_found" in listed.stderr


# -- demo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curl:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def secret(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")


def curl_commands(output: str, base_url: str = BASE_URL) -> list[Curl]:
    """Every ``curl`` command in ``output``, parsed the way a shell would read it."""
    lines = output.splitlines()
    found: list[Curl] = []
    index = 0
    while index < len(lines):
        if not lines[index].startswith("curl "):
            index += 1
            continue
        block = [lines[index]]
        while block[-1].endswith("\\") or not _complete("\n".join(block)):
            index += 1
            block.append(lines[index])
        index += 1
        found.append(_parse_curl(shlex.split("\n".join(block).replace("\\\n", " ")), base_url))
    return found


def _complete(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False
    return True


def _parse_curl(words: list[str], base_url: str) -> Curl:
    assert words[0] == "curl"
    headers: dict[str, str] = {}
    body: Any = None
    target = ""
    rest = iter(words[1:])
    for word in rest:
        if word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = json.loads(next(rest))
        elif word == "-s":
            continue
        else:
            assert word.startswith(base_url + "/"), word
            target = word.removeprefix(base_url)
    return Curl("POST" if body is not None else "GET", target, headers, body)


def run_demo(url: str) -> str:
    output: str = invoke("demo", "--database-url", url).stdout
    return output


@pytest.fixture(scope="module")
def outputs(url: str) -> tuple[str, str]:
    """``tierwise demo`` run twice on the same database."""
    return run_demo(url), run_demo(url)


class TestDemo:
    def test_running_it_twice_replays_every_activity(self, outputs: tuple[str, str]) -> None:
        first, second = outputs
        stored = re.search(r"stored (\d+) activities; (\d+) were there", first)
        again = re.search(r"stored (\d+) activities; (\d+) were there", second)
        assert stored and again
        assert int(stored.group(1)) > 0
        assert again.groups() == ("0", str(int(stored.group(1)) + int(stored.group(2))))

    def test_each_run_prints_a_new_key_and_curl_commands_using_it(
        self, outputs: tuple[str, str]
    ) -> None:
        secrets = [field(output, "secret") for output in outputs]
        assert secrets[0] != secrets[1]
        for output, secret in zip(outputs, secrets, strict=True):
            commands = curl_commands(output)
            assert {(c.method, c.path.split("/")[-1]) for c in commands} == {
                ("GET", "healthz"),
                ("GET", "programs"),
                ("GET", "status"),
                ("GET", "history"),
                ("POST", "activities"),
                ("POST", "batch"),
            }
            for command in commands:
                if command.path != "/healthz":
                    assert command.secret == secret

    def test_members_land_on_every_level(self, outputs: tuple[str, str]) -> None:
        table = re.findall(r"^  ([a-z]+)\s+(Bronze|Silver|Gold)\s+(\d+)", outputs[1], re.MULTILINE)
        assert len(table) == 12
        levels = {level for _, level, _ in table}
        assert levels == {"Bronze", "Silver", "Gold"}

    def test_printed_curl_commands_answer_through_the_api(
        self, outputs: tuple[str, str], client: TestClient
    ) -> None:
        for output in outputs:  # the first run's key still works after the second run
            for command in curl_commands(output):
                response = client.request(
                    command.method, command.path, headers=command.headers, json=command.body
                )
                expected = 201 if command.path == "/v1/activities" else 200
                assert response.status_code == expected, (command, response.text)
                if command.path == "/v1/activities/batch":
                    assert response.json()["accepted"] == len(command.body["activities"])
                if command.path == "/v1/activities":
                    repeat = client.post(command.path, headers=command.headers, json=command.body)
                    assert repeat.status_code == 200
                    assert repeat.headers["Idempotent-Replayed"] == "true"

    def test_refresh_does_not_duplicate_programs_ladders_or_history(
        self, outputs: tuple[str, str], client: TestClient
    ) -> None:
        headers = bearer(field(outputs[1], "secret"))
        programs = client.get("/v1/programs", headers=headers).json()
        assert [(p["name"], p["time_zone"], p["currency"], p["is_default"]) for p in programs] == [
            ("Demo Rewards", "Europe/London", "GBP", True)
        ]
        ladders = client.get(f"/v1/programs/{programs[0]['id']}/ladders", headers=headers)
        assert [ladder["key"] for ladder in ladders.json()] == ["status"]
        history = client.get("/v1/members/alice/history", headers=headers).json()
        assert [e["to_level"] for e in history["entries"]] == ["bronze", "silver", "gold"]

    def test_ladder_matches_the_brief(self, outputs: tuple[str, str], client: TestClient) -> None:
        headers = bearer(field(outputs[1], "secret"))
        [program] = client.get("/v1/programs", headers=headers).json()
        ladder = client.get(f"/v1/programs/{program['id']}/ladders/status", headers=headers).json()[
            "definition"
        ]
        assert ladder["validity"]["type"] == "fixed_months"
        assert ladder["validity"]["months"] == 12
        levels = {level["key"]: level for level in ladder["levels"]}
        assert levels["bronze"]["is_floor"] is True
        assert levels["bronze"]["attain"] is None
        for key, threshold, multiplier in (("silver", 500, "1.25"), ("gold", 1500, "1.5")):
            [criterion] = levels[key]["attain"]["criteria"]
            assert criterion["metric"] == "points_earned"
            assert criterion["window"] == {
                "type": "rolling_days",
                "days": 365,
                "months": None,
                "month": None,
                "day": None,
            }
            assert criterion["threshold"] == threshold
            assert levels[key]["earn_multiplier"] == multiplier
            assert levels[key]["benefits"]


def test_instructions_fit_an_80_column_terminal() -> None:
    """Rich wraps longer lines, which would break a pasted command."""
    key = NewKey(
        key_id="key_" + "0" * 16, secret="tw_" + "x" * 43, tenant="demo", scopes=("programs:read",)
    )
    member = MemberSummary(
        member_id="mallory", level="Silver", points_earned=123456, next_level="Gold", remaining=1000
    )
    result = DemoResult(
        key=key,
        tenant="demo",
        program_id=123,
        program_name="Demo Rewards",
        ladder_key="status",
        recorded=30,
        replayed=0,
        members=(member,),
        now=datetime(2025, 6, 1, tzinfo=UTC),
    )
    text = instructions(result, BASE_URL)
    assert max(len(line) for line in text.splitlines()) < 80
    assert not re.search(r"\[[a-z#/@]", text), "rich would read this as markup"
    assert len(curl_commands(text)) == 7


# -- import activities --------------------------------------------------------------------


def ndjson(path: Path, lines: list[Any]) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def _activity(type_: str, member: str, at: str, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "member_id": member, "occurred_at": at, **fields}


def _return(key: str, at: str) -> dict[str, Any]:
    return _activity("return", "m1", at, reverses_key=key)


def import_file(url: str, file: Path, tenant: str, *options: str, code: int = 0) -> Any:
    return invoke(
        "import",
        "activities",
        str(file),
        "--tenant",
        tenant,
        *options,
        "--database-url",
        url,
        code=code,
    )


def counts(output: str) -> tuple[int, int, int]:
    found = []
    for name in ("accepted", "duplicate", "rejected"):
        match = re.search(rf"^  {name}\s+(\d+)\s*$", output, re.MULTILINE)
        assert match, f"no {name!r} in:\n{output}"
        found.append(int(match.group(1)))
    return found[0], found[1], found[2]


class TestImport:
    @pytest.fixture
    def tenant(self, url: str, client: TestClient) -> tuple[str, dict[str, str]]:
        """A tenant with a default program whose ladder measures lifetime spend."""
        name = new_tenant()
        created = create_key(url, name, "all").stdout
        headers = bearer(field(created, "secret"))
        program = client.post(
            "/v1/programs", headers=headers, json={"name": "Main", "currency": "GBP"}
        ).json()
        ladder = {
            "key": "status",
            "name": "Status",
            "levels": [
                {
                    "key": "gold",
                    "name": "Gold",
                    "rank": 1,
                    "attain": {"criteria": [{"metric": "spend", "threshold": 1_000_000}]},
                }
            ],
        }
        response = client.post(
            f"/v1/programs/{program['id']}/ladders", headers=headers, json=ladder
        )
        assert response.status_code == 201, response.text
        return name, headers

    @staticmethod
    def spend(client: TestClient, headers: dict[str, str], member: str) -> int:
        body = client.get(f"/v1/members/{member}/status", headers=headers).json()
        current: int = body["ladders"][0]["progress"]["current"]
        return current

    @pytest.mark.parametrize("batch_size", ["1", "500"])
    def test_good_duplicate_and_bad_lines(
        self,
        url: str,
        client: TestClient,
        tenant: tuple[str, dict[str, str]],
        tmp_path: Path,
        batch_size: str,
    ) -> None:
        name, headers = tenant
        at = "2025-03-01T10:00:00Z"
        purchase = {
            "type": "purchase",
            "member_id": "m1",
            "amount_minor": 1000,
            "occurred_at": at,
            "idempotency_key": "order-1",
        }
        keyless = {
            "type": "purchase",
            "member_id": "m1",
            "amount_minor": 2000,
            "occurred_at": "2025-03-02T10:00:00Z",
        }
        lines: list[tuple[Any, str]] = [  # (line, what becomes of it)
            (purchase, "accepted"),
            (keyless, "accepted"),
            (dict(reversed(list(keyless.items()))), "duplicate"),  # same canonical JSON
            (purchase, "duplicate"),
            ("{not json", "rejected"),
            ({**keyless, "amount_minor": -5}, "rejected"),
            (_return("nope", at), "rejected"),
            (_return("order-1", "2025-03-03T10:00:00Z"), "accepted"),  # same batch as 1
            ("", "skipped"),
            ({**purchase, "amount_minor": 999}, "rejected"),  # key reused, other body
            (_activity("points_redemption", "m2", at, points=50), "rejected"),
            (_activity("points_credit", "m2", at, points=10), "accepted"),
            (_activity("visit", "m2", at, program_id=987654321), "rejected"),
            (["a", "list"], "rejected"),
        ]
        file = ndjson(tmp_path / "activities.ndjson", [line for line, _ in lines])

        result = import_file(url, file, name, "--batch-size", batch_size, code=1)
        expected = {
            what: [n for n, (_, w) in enumerate(lines, 1) if w == what]
            for what in ("accepted", "duplicate", "rejected")
        }
        assert counts(result.stdout) == tuple(len(v) for v in expected.values())
        reasons = dict(re.findall(r"^  line (\d+): (.*)$", result.stdout, re.MULTILINE))
        assert sorted(reasons, key=int) == [str(n) for n in expected["rejected"]]
        assert reasons["5"].startswith("invalid JSON")
        assert reasons["6"].startswith("amount_minor:")
        assert reasons["7"].startswith("activity_not_found")
        assert reasons["10"].startswith("idempotency_key_reused")
        assert reasons["11"].startswith("insufficient_points")
        assert reasons["13"].startswith("program_not_found")
        assert reasons["14"].startswith("expected a JSON object")
        assert self.spend(client, headers, "m1") == 2000  # 1000 + 2000 - 1000 returned

        again = import_file(url, file, name, "--batch-size", batch_size, code=1)
        replayed = len(expected["accepted"]) + len(expected["duplicate"])
        assert counts(again.stdout) == (0, replayed, len(expected["rejected"]))
        assert self.spend(client, headers, "m1") == 2000

    def test_a_clean_file_exits_zero_and_imports_once(
        self, url: str, client: TestClient, tenant: tuple[str, dict[str, str]], tmp_path: Path
    ) -> None:
        name, headers = tenant
        file = ndjson(
            tmp_path / "clean.ndjson",
            [
                {
                    "type": "purchase",
                    "member_id": f"c{i % 7}",
                    "amount_minor": 100 + i,
                    "occurred_at": f"2025-01-{1 + i % 28:02d}T09:00:00Z",
                }
                for i in range(50)
            ],
        )
        first = import_file(url, file, name, "--batch-size", "8")
        assert counts(first.stdout) == (50, 0, 0)
        assert "rejected lines" not in first.stdout
        again = import_file(url, file, name)
        assert counts(again.stdout) == (0, 50, 0)
        assert self.spend(client, headers, "c0") == sum(100 + i for i in range(0, 50, 7))

    def test_only_the_first_twenty_reasons_are_listed(
        self, url: str, tenant: tuple[str, dict[str, str]], tmp_path: Path
    ) -> None:
        file = ndjson(tmp_path / "bad.ndjson", [f"bad line {i}" for i in range(30)])
        result = import_file(url, file, tenant[0], code=1)
        assert counts(result.stdout) == (0, 0, 30)
        assert "first 20 of 30" in result.stdout
        listed = re.findall(r"^  line (\d+):", result.stdout, re.MULTILINE)
        assert listed == [str(n) for n in range(1, 21)]

    def test_unknown_tenant_is_a_clear_error(self, url: str, tmp_path: Path) -> None:
        file = ndjson(
            tmp_path / "one.ndjson",
            [{"type": "visit", "member_id": "x", "occurred_at": "2025-01-01T00:00:00Z"}],
        )
        result = import_file(url, file, new_tenant(), code=2)
        assert "tenant_not_found" in result.stderr

    def test_a_run_of_bad_lines_does_not_resend_the_whole_batch_per_line(
        self,
        url: str,
        tenant: tuple[str, dict[str, str]],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Every line fails in the ledger; attempts stay linear, not one per line per batch."""
        import tierwise.importer

        sent: list[int] = []
        real = tierwise.importer.record

        async def counting(rt: Any, caller: Any, commands: list[Any]) -> Any:
            sent.append(len(commands))
            return await real(rt, caller, commands)

        monkeypatch.setattr(tierwise.importer, "record", counting)
        at = "2025-01-01T00:00:00Z"
        bad = [_activity("return", f"r{i}", at, reverses_key=f"none-{i}") for i in range(64)]
        good = [_activity("visit", f"r{i}", at) for i in range(64)]
        file = ndjson(tmp_path / "returns.ndjson", bad + good)
        result = import_file(url, file, tenant[0], "--batch-size", "64", code=1)
        assert counts(result.stdout) == (64, 0, 64)
        assert sum(sent) < 64 * 5  # one attempt per bad line of the whole batch: 2,080+
