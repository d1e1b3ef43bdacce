"""Versioned ladder definitions through the HTTP API (R24-R26, example E8).

Drafts beside the live version, every state transition (allowed and refused, one table),
one open draft per ladder, rejection with a comment, soft deletion, audit metadata and
the version history, maker-checker and the approve scope, the impact preview, go-live
re-evaluation (upgrades at once, moves down at the next check or at once on request),
scheduled go-live through the sweep, member counts per level, and go-live jobs.

Approval and scheduling compare with the server's real clock, so the scenarios that
depend on "now" place their activities and sweeps relative to it (``utc_now``).
"""

from __future__ import annotations

import calendar
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import (
    activity,
    criterion,
    error_of,
    history,
    iso,
    ladder,
    level,
    level_key,
    only_ladder,
    program,
    silver_gold,
    status,
    sweep,
    utc_now,
)
from tests.conftest import Api, make_key
from tierwise.services.tenants import set_maker_checker

KEY = "status"
TWELVE_MONTHS = {"type": "fixed_months", "months": 12}


# -- helpers --------------------------------------------------------------------------------


def thresholds(silver: int = 500, gold: int = 1000, **ladder_fields: Any) -> dict[str, Any]:
    """The E1 ladder (Silver, Gold on lifetime points earned, no floor) with other
    thresholds."""
    body = silver_gold(**ladder_fields)
    body["levels"][0]["attain"]["criteria"][0]["threshold"] = silver
    body["levels"][1]["attain"]["criteria"][0]["threshold"] = gold
    return body


def gold_threshold(version: dict[str, Any]) -> int:
    levels = {lv["key"]: lv for lv in version["definition"]["levels"]}
    found: int = levels["gold"]["attain"]["criteria"][0]["threshold"]
    return found


def path(pid: int, number: int | None = None, action: str | None = None) -> str:
    base = f"/v1/programs/{pid}/ladders/{KEY}/versions"
    if number is not None:
        base += f"/{number}"
    if action is not None:
        base += f"/{action}"
    return base


def ok(response: Any, status_code: int = 200) -> Any:
    assert response.status_code == status_code, response.text
    return response.json()


def create_draft(api: Api, pid: int, body: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.post(path(pid), json=body), 201)
    return found


def submit(api: Api, pid: int, number: int) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.post(path(pid, number, "submit")))
    return found


def approve(api: Api, pid: int, number: int, **body: Any) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.post(path(pid, number, "approve"), json=body))
    return found


def reject(api: Api, pid: int, number: int, comment: str = "not like this") -> dict[str, Any]:
    found: dict[str, Any] = ok(api.post(path(pid, number, "reject"), json={"comment": comment}))
    return found


def versions(api: Api, pid: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(api.get(path(pid)))
    return found


def states(api: Api, pid: int) -> list[tuple[int, str]]:
    return [(v["number"], v["state"]) for v in versions(api, pid)]


def read_version(api: Api, pid: int, number: int) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get(path(pid, number)))
    return found


def pending(api: Api, pid: int, body: dict[str, Any]) -> int:
    """A new draft with ``body``, submitted; its number."""
    number: int = create_draft(api, pid, body)["number"]
    assert submit(api, pid, number)["state"] == "pending_approval"
    return number


def go_live(api: Api, pid: int, body: dict[str, Any], **approval: Any) -> dict[str, Any]:
    """Draft, submit and approve (waiting for re-evaluation); the approved version."""
    return approve(api, pid, pending(api, pid, body), wait=True, **approval)


def read_job(api: Api, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get(f"/v1/jobs/{job_id}"))
    return found


def wait_for_job(api: Api, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the background go-live job is done."""
    deadline = time.monotonic() + timeout
    while True:
        job = read_job(api, job_id)
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def named(levels: dict[str, int]) -> dict[str, int]:
    """Counts of the ladder's levels (without the members who hold none)."""
    return {key: n for key, n in levels.items() if key}


def counts(api: Api, pid: int, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}/counts", params=params))
    return found


def preview(api: Api, pid: int, number: int, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = ok(api.get(path(pid, number, "preview"), params=params))
    return found


def instant(text: str) -> datetime:
    """Parse an ISO 8601 instant the API rendered; it must carry an offset (R27)."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


def current(api: Api, member: str, **params: Any) -> str | None:
    return level_key(only_ladder(api, member, **params))


def world(api: Api, members: list[str]) -> dict[str, Any]:
    """Everything a preview must not change: standings, histories (R22), versions, the
    live ladder and its stored counts."""
    programs = ok(api.get("/v1/programs"))
    ids = [p["id"] for p in programs]
    return {
        "status": {m: status(api, m)["ladders"] for m in members},
        "history": {m: history(api, m) for m in members},
        "programs": programs,
        "versions": {pid: versions(api, pid) for pid in ids},
        "ladders": {pid: ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}")) for pid in ids},
        "counts": {pid: counts(api, pid) for pid in ids},
    }


STANDING = ("current_level", "previous_level", "achieved_at", "expires_at", "check_due_at")


def standings(found: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The standing part of each member's status in a ``world`` (not the forecast, which
    reads the live definition)."""
    return {
        member: [{name: view[name] for name in STANDING} for view in views]
        for member, views in found["status"].items()
    }


def recent(days: int) -> str:
    """An activity instant ``days`` before the real now."""
    return iso(utc_now() - timedelta(days=days))


def earn(api: Api, points: dict[str, int], *, at: str | None = None) -> None:
    for member, amount in points.items():
        activity(api, member, points=amount, at=at or recent(30))


# -- E8 -------------------------------------------------------------------------------------


def test_e8_editing_a_live_ladder_makes_a_draft_beside_it_and_members_keep_the_live_one(
    api: Api,
) -> None:
    """E8, R24: a draft of an edited live ladder appears beside the live version; members
    (those already placed and those who earn meanwhile) are evaluated against the live
    version until the draft is approved."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    activity(api, "placed", points=1200)
    before = {"status": status(api, "placed")["ladders"], "history": history(api, "placed")}

    draft = create_draft(api, pid, thresholds(gold=1500))
    assert (draft["number"], draft["state"], draft["job_id"]) == (2, "draft", None)
    assert gold_threshold(draft) == 1500

    listed = versions(api, pid)
    assert [(v["number"], v["state"]) for v in listed] == [(1, "live"), (2, "draft")]
    assert gold_threshold(listed[0]) == 1000
    live = ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))
    assert live["version"] == 1
    assert live["definition"]["levels"][1]["attain"]["criteria"][0]["threshold"] == 1000

    assert {"status": status(api, "placed")["ladders"], "history": history(api, "placed")} == before
    activity(api, "newcomer", points=1200)  # qualifies under the live 1,000, not the draft
    assert current(api, "newcomer") == "gold"
    assert current(api, "placed") == "gold"

    assert states(api, pid) == [(1, "live"), (2, "draft")]


# -- R24: every transition, as one table ------------------------------------------------


EDITED = thresholds(gold=1200)

TRANSITIONS: dict[tuple[str, str], str | None] = {
    ("draft", "edit"): "draft",
    ("draft", "submit"): "pending_approval",
    ("draft", "approve"): None,
    ("draft", "reject"): None,
    ("draft", "delete"): "deleted",
    ("pending_approval", "edit"): None,
    ("pending_approval", "submit"): None,
    ("pending_approval", "approve"): "live",
    ("pending_approval", "reject"): "rejected",
    ("pending_approval", "delete"): None,
    ("rejected", "edit"): "draft",
    ("rejected", "submit"): "pending_approval",
    ("rejected", "approve"): None,
    ("rejected", "reject"): None,
    ("rejected", "delete"): "deleted",
    **{
        (state, action): None
        for state in ("live", "snapshot", "deleted", "scheduled")
        for action in ("edit", "submit", "approve", "reject", "delete")
    },
}


def reach(api: Api, pid: int, state: str) -> int:
    """Put a version of the ladder into ``state``; its number. Version 1 is live."""
    if state == "live":
        return 1
    number: int = create_draft(api, pid, thresholds(gold=1500))["number"]
    if state == "draft":
        return number
    if state == "deleted":
        assert ok(api.delete(path(pid, number)))["state"] == "deleted"
        return number
    submit(api, pid, number)
    if state == "pending_approval":
        return number
    if state == "rejected":
        assert reject(api, pid, number)["state"] == "rejected"
        return number
    if state == "scheduled":
        later = iso(utc_now() + timedelta(days=1))
        assert approve(api, pid, number, effective_at=later)["state"] == "scheduled"
        return number
    assert state == "snapshot"
    assert approve(api, pid, number, wait=True)["state"] == "live"
    return 1


def perform(api: Api, pid: int, number: int, action: str) -> Any:
    if action == "edit":
        return api.put(path(pid, number), json=EDITED)
    if action == "submit":
        return api.post(path(pid, number, "submit"))
    if action == "approve":
        return api.post(path(pid, number, "approve"), json={"wait": True})
    if action == "reject":
        return api.post(path(pid, number, "reject"), json={"comment": "needs work"})
    assert action == "delete"
    return api.delete(path(pid, number))


@pytest.mark.parametrize(
    ("state", "action", "expected"),
    [(state, action, expected) for (state, action), expected in TRANSITIONS.items()],
    ids=[f"{state}-{action}" for state, action in TRANSITIONS],
)
def test_r24_every_state_transition_allowed_and_refused(
    api: Api, state: str, action: str, expected: str | None
) -> None:
    """R24: the allowed transitions move the version; every other (state, action) pair is
    a 409 ``invalid_transition`` that names the refused transition and leaves the
    version as it was."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    number = reach(api, pid, state)
    assert read_version(api, pid, number)["state"] == state
    before = versions(api, pid)

    response = perform(api, pid, number, action)

    if expected is None:
        error = error_of(response, 409, "invalid_transition")
        assert error["details"]["transition"] == f"{state} -> {action}"
        assert (error["details"]["state"], error["details"]["action"]) == (state, action)
        assert f"cannot {action} a {state} version" in error["message"]
        assert versions(api, pid) == before
        return
    body = ok(response)
    assert (body["number"], body["state"]) == (number, expected)
    assert read_version(api, pid, number)["state"] == expected
    if action == "edit":
        assert gold_threshold(read_version(api, pid, number)) == 1200
    if action == "approve":
        assert states(api, pid) == [(1, "snapshot"), (number, "live")]
        assert ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))["version"] == number


def test_r24_transition_table_covers_every_state_and_action() -> None:
    states_ = {"draft", "pending_approval", "rejected", "live", "snapshot", "deleted", "scheduled"}
    actions = {"edit", "submit", "approve", "reject", "delete"}
    assert set(TRANSITIONS) == {(s, a) for s in states_ for a in actions}


# -- one open draft ---------------------------------------------------------------------


@pytest.mark.parametrize("open_state", ["draft", "pending_approval", "rejected", "scheduled"])
def test_r24_one_open_draft_per_ladder(api: Api, open_state: str) -> None:
    """R24: while a ladder has an open version (draft, pending, rejected or scheduled), a
    second draft is a 409 ``draft_exists`` naming it; another ladder is independent."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    ladder(api, pid, silver_gold(key="other", name="Other"))
    number = reach(api, pid, open_state)

    error = error_of(api.post(path(pid), json=thresholds(gold=1300)), 409, "draft_exists")
    assert error["details"]["version"] == number
    assert states(api, pid) == [(1, "live"), (number, open_state)]

    other = api.post(
        f"/v1/programs/{pid}/ladders/other/versions", json=silver_gold(key="other", name="O2")
    )
    assert ok(other, 201)["state"] == "draft"


def test_r24_a_new_draft_is_allowed_once_the_open_one_is_deleted_or_live(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    first = create_draft(api, pid, thresholds(gold=1500))["number"]
    ok(api.delete(path(pid, first)))
    second = create_draft(api, pid, thresholds(gold=1400))["number"]
    assert second == first + 1
    submit(api, pid, second)
    approve(api, pid, second, wait=True)
    third = create_draft(api, pid, thresholds(gold=1300))
    assert third["number"] == second + 1
    assert states(api, pid) == [
        (1, "snapshot"),
        (first, "deleted"),
        (second, "live"),
        (third["number"], "draft"),
    ]


# -- reject, edit, resubmit; delete -----------------------------------------------------


def test_r24_reject_keeps_the_comment_and_the_version_can_be_edited_and_resubmitted(
    api: Api,
) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    number = pending(api, pid, thresholds(gold=1500))

    error_of(api.post(path(pid, number, "reject"), json={}), 422, "validation_error")
    error_of(api.post(path(pid, number, "reject"), json={"comment": ""}), 422, "validation_error")
    assert read_version(api, pid, number)["state"] == "pending_approval"

    rejected = reject(api, pid, number, "Gold at 1,500 is too steep; try 1,200")
    assert rejected["state"] == "rejected"
    assert rejected["audit"]["rejection_comment"] == "Gold at 1,500 is too steep; try 1,200"
    assert rejected["audit"]["rejected_by"] == api.key.key_id
    assert read_version(api, pid, number)["audit"] == rejected["audit"]

    edited = ok(api.put(path(pid, number), json=thresholds(gold=1200)))
    assert (edited["state"], gold_threshold(edited)) == ("draft", 1200)
    assert edited["audit"]["rejection_comment"] == "Gold at 1,500 is too steep; try 1,200"

    assert submit(api, pid, number)["state"] == "pending_approval"
    live = approve(api, pid, number, wait=True)
    assert (live["state"], gold_threshold(live)) == ("live", 1200)
    assert live["audit"]["rejection_comment"] == "Gold at 1,500 is too steep; try 1,200"
    assert states(api, pid) == [(1, "snapshot"), (number, "live")]


def test_r24_only_drafts_are_deleted_and_deletion_is_soft(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    number = create_draft(api, pid, thresholds(gold=1500))["number"]

    deleted = ok(api.delete(path(pid, number)))
    assert deleted["state"] == "deleted"
    assert deleted["audit"]["updated_by"] == api.key.key_id
    assert states(api, pid) == [(1, "live"), (number, "deleted")]
    kept = read_version(api, pid, number)
    assert (kept["state"], gold_threshold(kept)) == ("deleted", 1500)

    again = error_of(api.delete(path(pid, number)), 409, "invalid_transition")
    assert again["details"]["transition"] == "deleted -> delete"
    live = error_of(api.delete(path(pid, 1)), 409, "invalid_transition")
    assert live["details"]["transition"] == "live -> delete"
    assert ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))["version"] == 1
    error_of(api.delete(path(pid, 99)), 404, "version_not_found")


# -- audit metadata and the version history -------------------------------------------------


def test_r24_audit_metadata_and_version_history(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    """Every version says who created, updated, submitted, approved and rejected it (key
    ids) and when; the history read lists every version in order."""
    editor = Api(client, make_key(client, tenant_name, ["programs:read", "programs:write"]))
    reviewer = Api(client, make_key(client, tenant_name, ["programs:read", "programs:approve"]))
    author = api.key.key_id
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())

    t0 = utc_now()
    created = create_draft(api, pid, thresholds(gold=1500))
    number = created["number"]
    audit = created["audit"]
    assert (audit["created_by"], audit["updated_by"]) == (author, author)
    assert t0 <= instant(audit["created_at"]) <= utc_now() + timedelta(seconds=1)
    assert audit["created_at"] == audit["updated_at"]
    for field in ("submitted", "approved", "rejected"):
        assert (audit[f"{field}_by"], audit[f"{field}_at"]) == (None, None)
    assert audit["rejection_comment"] is None

    edited = ok(editor.put(path(pid, number), json=thresholds(gold=1400)))["audit"]
    assert (edited["created_by"], edited["updated_by"]) == (author, editor.key.key_id)
    assert edited["created_at"] == audit["created_at"]
    assert instant(edited["updated_at"]) >= instant(audit["created_at"])

    submitted = submit(api, pid, number)["audit"]
    assert submitted["submitted_by"] == author
    assert instant(submitted["submitted_at"]) >= instant(edited["updated_at"])

    rejected = ok(reviewer.post(path(pid, number, "reject"), json={"comment": "use 1,300"}))[
        "audit"
    ]
    assert (rejected["rejected_by"], rejected["rejection_comment"]) == (
        reviewer.key.key_id,
        "use 1,300",
    )
    assert instant(rejected["rejected_at"]) >= instant(submitted["submitted_at"])
    assert (rejected["approved_by"], rejected["approved_at"]) == (None, None)

    ok(api.put(path(pid, number), json=thresholds(gold=1300)))
    submit(api, pid, number)
    approved = ok(reviewer.post(path(pid, number, "approve"), json={"wait": True}))
    final = approved["audit"]
    assert approved["state"] == "live"
    assert final["approved_by"] == reviewer.key.key_id
    assert instant(final["approved_at"]) >= instant(final["submitted_at"])
    assert instant(final["approved_at"]) <= utc_now() + timedelta(seconds=1)
    assert final["created_by"] == author and final["created_at"] == audit["created_at"]
    assert (final["rejected_by"], final["rejection_comment"]) == (reviewer.key.key_id, "use 1,300")

    listed = versions(reviewer, pid)
    assert [(v["number"], v["state"]) for v in listed] == [(1, "snapshot"), (number, "live")]
    assert listed[1]["audit"] == final
    assert listed[1] == read_version(api, pid, number)
    first = listed[0]["audit"]  # the one-step publish: created and approved by the author
    assert (first["created_by"], first["submitted_by"], first["approved_by"]) == (
        author,
        author,
        author,
    )
    assert [gold_threshold(v) for v in listed] == [1000, 1300]


# -- maker-checker and scopes ---------------------------------------------------------------


def test_maker_checker_the_author_cannot_review_a_second_key_can(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    client.portal.call(lambda: set_maker_checker(api.runtime(), tenant_name, True))
    number = pending(api, pid, thresholds(gold=1500))

    error_of(api.post(path(pid, number, "approve"), json={"wait": True}), 403, "approver_is_author")
    error_of(
        api.post(path(pid, number, "reject"), json={"comment": "mine"}), 403, "approver_is_author"
    )
    assert read_version(api, pid, number)["state"] == "pending_approval"
    assert ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))["version"] == 1

    checker = Api(client, make_key(client, tenant_name, ["programs:read", "programs:approve"]))
    approved = ok(checker.post(path(pid, number, "approve"), json={"wait": True}))
    assert (approved["state"], approved["audit"]["approved_by"]) == ("live", checker.key.key_id)
    assert approved["audit"]["created_by"] == api.key.key_id
    assert states(api, pid) == [(1, "snapshot"), (number, "live")]


def test_maker_checker_a_key_that_edited_the_draft_is_an_author_too(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    client.portal.call(lambda: set_maker_checker(api.runtime(), tenant_name, True))
    scopes = ["programs:read", "programs:write", "programs:approve"]
    co_author = Api(client, make_key(client, tenant_name, scopes))
    checker = Api(client, make_key(client, tenant_name, scopes))
    number = create_draft(api, pid, thresholds(gold=1500))["number"]
    ok(co_author.put(path(pid, number), json=thresholds(gold=1400)))
    submit(co_author, pid, number)

    error_of(co_author.post(path(pid, number, "approve"), json={}), 403, "approver_is_author")
    error_of(api.post(path(pid, number, "approve"), json={}), 403, "approver_is_author")
    rejected = ok(checker.post(path(pid, number, "reject"), json={"comment": "no"}))
    assert rejected["audit"]["rejected_by"] == checker.key.key_id


def test_maker_checker_refuses_the_one_step_publish(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    """Under maker-checker, POST/PUT …/ladders (which publish at once, approved by the
    caller) are 403 ``approval_required``; a new ladder goes live through a draft that
    another key approves."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    client.portal.call(lambda: set_maker_checker(api.runtime(), tenant_name, True))

    error_of(
        api.put(f"/v1/programs/{pid}/ladders/{KEY}", json=thresholds(gold=1500)),
        403,
        "approval_required",
    )
    body = silver_gold(key="club", name="Club")
    error_of(api.post(f"/v1/programs/{pid}/ladders", json=body), 403, "approval_required")
    assert states(api, pid) == [(1, "live")]

    created = ok(api.post(f"/v1/programs/{pid}/ladders/club/versions", json=body), 201)
    assert (created["number"], created["state"]) == (1, "draft")
    ok(api.post(f"/v1/programs/{pid}/ladders/club/versions/1/submit"))
    checker = Api(client, make_key(client, tenant_name, ["programs:read", "programs:approve"]))
    live = ok(checker.post(f"/v1/programs/{pid}/ladders/club/versions/1/approve", json={}))
    assert live["state"] == "live"
    assert ok(api.get(f"/v1/programs/{pid}/ladders/club"))["version"] == 1


def test_approve_and_reject_need_the_approve_scope(
    api: Api, client: TestClient, tenant_name: str
) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    writer = Api(client, make_key(client, tenant_name, ["programs:read", "programs:write"]))
    number = pending(writer, pid, thresholds(gold=1500))

    refused = error_of(writer.post(path(pid, number, "approve"), json={}), 403, "missing_scope")
    assert refused["details"]["scope"] == "programs:approve"
    error_of(writer.post(path(pid, number, "reject"), json={"comment": "x"}), 403, "missing_scope")
    assert read_version(api, pid, number)["state"] == "pending_approval"

    approver = Api(client, make_key(client, tenant_name, ["programs:approve"]))
    error_of(approver.post(path(pid), json=thresholds(gold=1300)), 403, "missing_scope")
    error_of(approver.post(path(pid, number, "submit")), 403, "missing_scope")
    approved = ok(approver.post(path(pid, number, "approve"), json={"wait": True}))
    assert (approved["state"], approved["audit"]["approved_by"]) == ("live", approver.key.key_id)


# -- the scenario: a draft raising Gold from 1,000 to 1,500 -----------------------


def raising_gold(api: Api) -> tuple[int, int]:
    """Gold 1,000 live (12-month validity, downgrade to the qualifying level); members
    with 1,200 (Gold), 600 (Silver) and 100 (none) points; a draft raising Gold to 1,500.
    Returns (program id, draft number)."""
    pid = program(api)["id"]
    fields = {"validity": TWELVE_MONTHS, "downgrade": {"policy": "to_qualifying"}}
    ladder(api, pid, thresholds(gold=1000, **fields))
    earn(api, {"m1200": 1200, "m600": 600, "m100": 100})
    assert [current(api, m) for m in ("m1200", "m600", "m100")] == ["gold", "silver", None]
    number = create_draft(api, pid, thresholds(gold=1500, **fields))["number"]
    return pid, number


MEMBERS = ["m1200", "m600", "m100"]


def test_r25_raising_a_threshold_previews_a_move_down_and_waits_for_the_next_check(
    api: Api,
) -> None:
    """The issue's acceptance: a member with 1,200 points under a live Gold of 1,000. A
    draft raising Gold to 1,500 shows them among "would move down" (counts and sample),
    does not touch them before approval, and after approval leaves them in Gold until
    their next check, where they move down (R25, R15, R17)."""
    pid, number = raising_gold(api)
    before = world(api, MEMBERS)

    found = preview(api, pid, number)
    assert (found["ladder"], found["version"]) == (KEY, number)
    assert (found["members"], found["up"], found["down"], found["stay"]) == (3, 0, 1, 2)
    assert found["moves"] == {"gold->silver": 1}
    assert found["per_level"]["silver"] == 2 and found["per_level"]["gold"] == 0
    assert found["sample"] == [
        {"member_id": "m1200", "from": "gold", "to": "silver", "direction": "down"}
    ]
    assert world(api, MEMBERS) == before

    submit(api, pid, number)
    submitted = world(api, MEMBERS)
    assert (submitted["status"], submitted["history"]) == (before["status"], before["history"])
    approved = approve(api, pid, number, wait=True)
    assert (approved["state"], approved["apply_downgrades_now"]) == ("live", False)
    job = read_job(api, approved["job_id"])
    assert (job["kind"], job["state"], job["done"], job["total"]) == ("go_live", "done", 3, 3)
    assert job["changes"] == {}
    assert job["finished_at"] is not None

    after = world(api, MEMBERS)
    assert after["history"] == before["history"]
    assert standings(after) == standings(before)
    gold = only_ladder(api, "m1200")
    assert level_key(gold) == "gold"
    # the forecast already reads the live version: 300 short of keeping Gold at the check
    assert gold["forecast"]["projected_level"]["key"] == "silver"
    assert gold["to_keep"]["required"] == 1500 and gold["to_keep"]["remaining"] == 300

    check = instant(gold["check_due_at"])
    sweep(api, check - timedelta(days=1))
    assert current(api, "m1200") == "gold"
    sweep(api, check)
    assert current(api, "m1200") == "silver"
    last = history(api, "m1200")[-1]
    assert (last["kind"], last["from_level"], last["to_level"], last["source"]) == (
        "downgraded",
        "gold",
        "silver",
        "sweep",
    )


def test_r25_apply_downgrades_now_moves_members_down_at_go_live(api: Api) -> None:
    pid, number = raising_gold(api)
    before = world(api, MEMBERS)
    submit(api, pid, number)
    assert current(api, "m1200") == "gold"

    started = utc_now()
    approved = approve(api, pid, number, wait=True, apply_downgrades_now=True)
    assert (approved["state"], approved["apply_downgrades_now"]) == ("live", True)
    job = read_job(api, approved["job_id"])
    assert (job["state"], job["done"], job["total"]) == ("done", 3, 3)
    assert job["changes"] == {"downgraded": 1}

    assert current(api, "m1200") == "silver"
    entries = history(api, "m1200")
    assert entries[:-1] == before["history"]["m1200"]
    last = entries[-1]
    assert (last["kind"], last["from_level"], last["to_level"], last["source"]) == (
        "downgraded",
        "gold",
        "silver",
        "definition",
    )
    assert started - timedelta(seconds=1) <= instant(last["occurred_at"])
    assert instant(last["occurred_at"]) <= utc_now() + timedelta(seconds=1)
    after = world(api, MEMBERS)
    for member in ("m600", "m100"):
        assert after["history"][member] == before["history"][member]
        assert standings(after)[member] == standings(before)[member]


def test_r25_lowering_a_threshold_upgrades_qualifying_members_at_once(api: Api) -> None:
    """R25: upgrades on go-live are immediate (the approval here does not wait: the job
    runs in the background and is polled until done)."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    earn(api, {"m900": 900, "m700": 700, "m1200": 1200})
    before = world(api, ["m900", "m700", "m1200"])
    number = pending(api, pid, thresholds(gold=800))

    found = preview(api, pid, number)
    assert (found["up"], found["down"], found["stay"], found["moves"]) == (
        1,
        0,
        2,
        {"silver->gold": 1},
    )
    assert found["sample"] == [
        {"member_id": "m900", "from": "silver", "to": "gold", "direction": "up"}
    ]

    approved = approve(api, pid, number)
    assert approved["state"] == "live" and approved["job_id"]
    job = wait_for_job(api, approved["job_id"])
    assert (job["state"], job["done"], job["total"]) == ("done", 3, 3)
    assert job["changes"] == {"upgraded": 1}

    assert [current(api, m) for m in ("m900", "m700", "m1200")] == ["gold", "silver", "gold"]
    last = history(api, "m900")[-1]
    assert (last["kind"], last["from_level"], last["to_level"], last["source"]) == (
        "upgraded",
        "silver",
        "gold",
        "definition",
    )
    assert len(history(api, "m900")) == len(before["history"]["m900"]) + 1
    for member in ("m700", "m1200"):
        assert history(api, member) == before["history"][member]


def test_go_live_jobs_are_read_by_their_own_tenant_only(api: Api, client: TestClient) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    earn(api, {"a": 1200, "b": 600})
    approved = go_live(api, pid, thresholds(gold=550))
    job = read_job(api, approved["job_id"])
    assert (job["id"], job["state"], job["done"], job["total"]) == (
        approved["job_id"],
        "done",
        2,
        2,
    )
    assert job["changes"] == {"upgraded": 1}
    assert job["error"] is None
    assert instant(job["created_at"]) <= instant(job["finished_at"])

    stranger = Api(client, make_key(client, "stranger-" + api.key.tenant, ["programs:read"]))
    error_of(stranger.get(f"/v1/jobs/{approved['job_id']}"), 404, "job_not_found")
    error_of(api.get("/v1/jobs/no-such-job"), 404, "job_not_found")


# -- R26: member counts ---------------------------------------------------------------------


def test_r26_member_counts_per_level_with_the_instant_they_were_computed(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    first = counts(api, pid)
    assert (first["ladder"], first["version"]) == (KEY, 1)
    assert named(first["levels"]) == {"silver": 0, "gold": 0}
    assert first["computed_at"] is not None

    earn(api, {"g": 1200, "s1": 600, "s2": 700})
    assert counts(api, pid) == first  # stored counts, with the instant they were computed

    t0 = utc_now()
    refreshed = counts(api, pid, refresh="true")
    assert named(refreshed["levels"]) == {"silver": 2, "gold": 1}
    assert t0 <= instant(refreshed["computed_at"]) <= utc_now() + timedelta(seconds=1)
    assert instant(refreshed["computed_at"]) > instant(first["computed_at"])
    assert counts(api, pid) == refreshed

    t1 = utc_now()
    go_live(api, pid, thresholds(gold=650))
    after = counts(api, pid)
    assert (after["version"], named(after["levels"])) == (2, {"silver": 1, "gold": 2})
    assert t1 <= instant(after["computed_at"]) <= utc_now() + timedelta(seconds=1)

    error_of(api.get(f"/v1/programs/{pid}/ladders/nope/counts"), 404, "ladder_not_found")


# -- scheduled go-live ----------------------------------------------------------------------


def test_r25_scheduled_go_live_happens_when_the_sweep_passes_effective_at(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    earn(api, {"m900": 900, "m300": 300})
    before = world(api, ["m900", "m300"])
    number = pending(api, pid, thresholds(gold=800))

    now = utc_now()
    effective = now + timedelta(hours=1)
    scheduled = approve(api, pid, number, effective_at=iso(effective), wait=True)
    assert (scheduled["state"], scheduled["job_id"]) == ("scheduled", None)
    assert instant(scheduled["effective_at"]) == effective
    assert scheduled["audit"]["approved_by"] == api.key.key_id
    assert states(api, pid) == [(1, "live"), (number, "scheduled")]
    assert ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))["version"] == 1
    assert world(api, ["m900", "m300"])["history"] == before["history"]
    assert current(api, "m900") == "silver"

    sweep(api, effective - timedelta(minutes=1))
    assert states(api, pid) == [(1, "live"), (number, "scheduled")]
    assert current(api, "m900") == "silver"

    sweep(api, effective + timedelta(minutes=1))
    assert states(api, pid) == [(1, "snapshot"), (number, "live")]
    assert ok(api.get(f"/v1/programs/{pid}/ladders/{KEY}"))["version"] == number
    assert current(api, "m900") == "gold"
    last = history(api, "m900")[-1]
    assert (last["kind"], last["from_level"], last["to_level"], last["source"]) == (
        "upgraded",
        "silver",
        "gold",
        "definition",
    )
    assert counts(api, pid)["version"] == number
    assert named(counts(api, pid)["levels"]) == {"silver": 0, "gold": 1}

    settled = world(api, ["m900", "m300"])
    sweep(api, effective + timedelta(minutes=2))
    assert world(api, ["m900", "m300"])["history"] == settled["history"]
    assert states(api, pid) == [(1, "snapshot"), (number, "live")]


def test_r25_a_scheduled_version_keeps_apply_downgrades_now_and_any_offset(api: Api) -> None:
    """``effective_at`` given with a +02:00 offset is the same instant; downgrades asked
    to apply now are applied when the scheduled version goes live."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    earn(api, {"m1200": 1200, "m900": 900, "m300": 300})
    number = pending(api, pid, thresholds(silver=300, gold=1250))

    effective = utc_now() + timedelta(hours=3)
    local = effective.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert local.endswith("+02:00")
    scheduled = approve(api, pid, number, effective_at=local, apply_downgrades_now=True)
    assert (scheduled["state"], scheduled["apply_downgrades_now"]) == ("scheduled", True)
    assert instant(scheduled["effective_at"]) == effective

    sweep(api, effective - timedelta(seconds=1))
    assert [current(api, m) for m in ("m1200", "m900", "m300")] == ["gold", "silver", None]
    sweep(api, effective)
    assert states(api, pid) == [(1, "snapshot"), (number, "live")]
    assert [current(api, m) for m in ("m1200", "m900", "m300")] == ["silver", "silver", "silver"]
    moves = [
        (h["kind"], h["from_level"], h["to_level"], h["source"])
        for m in ("m1200", "m300")
        for h in history(api, m)[-1:]
    ]
    assert moves == [
        ("downgraded", "gold", "silver", "definition"),
        ("upgraded", None, "silver", "definition"),
    ]


def test_r25_approval_with_a_past_effective_at_goes_live_at_once(api: Api) -> None:
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    earn(api, {"m900": 900})
    number = pending(api, pid, thresholds(gold=800))
    past = utc_now() - timedelta(hours=1)
    approved = approve(api, pid, number, effective_at=iso(past), wait=True)
    assert approved["state"] == "live" and approved["job_id"]
    assert current(api, "m900") == "gold"


# -- the impact preview changes nothing -----------------------------------------------------


def test_impact_preview_counts_moves_both_ways_and_changes_nothing(api: Api) -> None:
    """Members per level under the draft, up/down/stay, per from->to pair and a sample of
    movers; standings, histories, versions and counts are identical before and after."""
    pid = program(api)["id"]
    ladder(api, pid, silver_gold())
    members = {"gold1200": 1200, "none400": 400, "silver600": 600, "none100": 100}
    earn(api, members)
    number = create_draft(api, pid, thresholds(silver=300, gold=1500))["number"]
    before = world(api, list(members))

    found = preview(api, pid, number)
    assert found["members"] == 4
    assert (found["up"], found["down"], found["stay"]) == (1, 1, 2)
    assert found["moves"] == {"->silver": 1, "gold->silver": 1}
    assert (found["per_level"]["silver"], found["per_level"]["gold"]) == (3, 0)
    assert sorted(found["sample"], key=lambda s: s["member_id"]) == [
        {"member_id": "gold1200", "from": "gold", "to": "silver", "direction": "down"},
        {"member_id": "none400", "from": None, "to": "silver", "direction": "up"},
    ]
    assert t_close(found["computed_at"])

    assert len(preview(api, pid, number, sample=1)["sample"]) == 1
    assert preview(api, pid, number, sample=0)["sample"] == []
    assert world(api, list(members)) == before

    same = preview(api, pid, 1)  # the live version itself moves nobody
    assert (same["up"], same["down"], same["stay"], same["moves"]) == (0, 0, 4, {})
    error_of(api.get(path(pid, 99, "preview")), 404, "version_not_found")
    assert world(api, list(members)) == before


def t_close(text: str) -> bool:
    """The instant is within a minute of the real now."""
    return abs(instant(text) - utc_now()) < timedelta(minutes=1)


# -- R25: validity changes, and what "apply now" applies ------------------------------------


def add_months(instant_: datetime, months: int) -> datetime:
    """Calendar month arithmetic that clamps to the month's last day (R14)."""
    month0 = instant_.month - 1 + months
    year, month = instant_.year + month0 // 12, month0 % 12 + 1
    day = min(instant_.day, calendar.monthrange(year, month)[1])
    return instant_.replace(year=year, month=month, day=day)


def test_r25_validity_changes_apply_to_members_who_enter_the_level_afterwards(
    api: Api,
) -> None:
    pid = program(api)["id"]
    ladder(api, pid, thresholds(validity=TWELVE_MONTHS))
    earn(api, {"holder": 1200, "riser": 900})
    held = only_ladder(api, "holder")
    assert instant(held["expires_at"]) == add_months(instant(held["achieved_at"]), 12) - timedelta(
        seconds=1
    )

    started = utc_now()
    go_live(api, pid, thresholds(gold=800, validity={"type": "fixed_months", "months": 6}))
    kept = only_ladder(api, "holder")
    assert (level_key(kept), kept["achieved_at"], kept["expires_at"]) == (
        "gold",
        held["achieved_at"],
        held["expires_at"],
    )
    risen = only_ladder(api, "riser")
    assert level_key(risen) == "gold"
    entered = instant(risen["achieved_at"])
    assert started - timedelta(seconds=1) <= entered <= utc_now() + timedelta(seconds=1)
    assert instant(risen["expires_at"]) == add_months(entered, 6) - timedelta(seconds=1)


def policy_ladder(variant: str, *, raised: bool) -> dict[str, Any]:
    """Gold at 1,000 (or, ``raised``, 1,500 and Silver at 1,300 for ``drop_one``) with a
    12-month validity and the downgrade behaviour named by ``variant``."""
    fields: dict[str, Any] = {"validity": TWELVE_MONTHS}
    if variant == "hold":
        fields["downgrade"] = {"policy": "hold"}
    if variant == "drop_one":
        fields["downgrade"] = {"policy": "drop_one"}
    body = thresholds(gold=1500 if raised else 1000, **fields)
    if variant == "not_downgradable":
        body["levels"][1]["downgradable"] = False
    if variant == "drop_one":
        body["levels"][0]["attain"]["criteria"][0]["threshold"] = 1300 if raised else 500
        body["levels"] = [{**lv, "rank": lv["rank"] + 1} for lv in body["levels"]]
        body["levels"].insert(0, level("bronze", 1, criterion("points_earned", 100)))
    return body


# what the member (1,200 points, Gold) holds after their next check under the raised ladder
AT_THE_CHECK = {"hold": "gold", "not_downgradable": "gold", "drop_one": "silver"}


@pytest.mark.parametrize("variant", sorted(AT_THE_CHECK))
def test_r17_at_the_next_check_the_downgrade_policy_decides_the_move(
    api: Api, variant: str
) -> None:
    """Without "apply now", the move down waits for the check, where R17 applies: ``hold``
    and ``downgradable: false`` keep Gold, ``drop_one`` goes one rank down."""
    pid = program(api)["id"]
    ladder(api, pid, policy_ladder(variant, raised=False))
    earn(api, {"m": 1200})
    go_live(api, pid, policy_ladder(variant, raised=True))
    assert current(api, "m") == "gold"
    sweep(api, instant(only_ladder(api, "m")["check_due_at"]))
    assert current(api, "m") == AT_THE_CHECK[variant]


@pytest.mark.parametrize("variant", sorted(AT_THE_CHECK))
def test_r25_apply_downgrades_now_applies_the_move_the_check_would_make(
    api: Api, variant: str
) -> None:
    """R25 + R17: "apply now" moves members down at once instead of at their next check;
    the move is the one the check would make, so the preview and the go-live must respect
    ``hold``, ``downgradable: false`` and ``drop_one``."""
    pid = program(api)["id"]
    ladder(api, pid, policy_ladder(variant, raised=False))
    earn(api, {"m": 1200})
    number = pending(api, pid, policy_ladder(variant, raised=True))
    expected = AT_THE_CHECK[variant]

    found = preview(api, pid, number)
    moves = {} if expected == "gold" else {f"gold->{expected}": 1}
    assert (found["down"], found["moves"]) == (len(moves), moves)

    approve(api, pid, number, wait=True, apply_downgrades_now=True)
    assert current(api, "m") == expected
