"""Versioned ladder definitions: states and the transitions between them (R24).

::

    draft ──submit──▶ pending_approval ──approve──▶ live ──(next approval)──▶ snapshot
      ▲  ╲                  │  ╲                    ▲
      │   delete            │   approve with a future effective_at ──▶ scheduled ──go-live──┘
      │     ╲             reject (comment kept)
      │      ▼              ▼
      └─edit── deleted   rejected ──submit──▶ pending_approval

A ``rejected`` version is back with its author: it is still the ladder's open draft, can
be edited (which makes it a ``draft`` again) or submitted again. Only drafts (and
rejected drafts) can be deleted, softly. ``publish_failed`` marks a go-live that could not
complete; it can be approved again.
"""

from __future__ import annotations

from enum import StrEnum

from tierwise.domain.errors import Conflict


class VersionState(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    LIVE = "live"
    SNAPSHOT = "snapshot"
    DELETED = "deleted"
    PUBLISH_FAILED = "publish_failed"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    DELETE = "delete"
    GO_LIVE = "go_live"
    RETIRE = "retire"


OPEN_STATES = frozenset(
    {
        VersionState.DRAFT,
        VersionState.PENDING_APPROVAL,
        VersionState.REJECTED,
        VersionState.SCHEDULED,
        VersionState.PUBLISH_FAILED,
    }
)
"""States that count as the ladder's one open draft."""

_TRANSITIONS: dict[tuple[VersionState, Action], VersionState] = {
    (VersionState.DRAFT, Action.EDIT): VersionState.DRAFT,
    (VersionState.REJECTED, Action.EDIT): VersionState.DRAFT,
    (VersionState.DRAFT, Action.SUBMIT): VersionState.PENDING_APPROVAL,
    (VersionState.REJECTED, Action.SUBMIT): VersionState.PENDING_APPROVAL,
    (VersionState.PENDING_APPROVAL, Action.APPROVE): VersionState.LIVE,
    (VersionState.PUBLISH_FAILED, Action.APPROVE): VersionState.LIVE,
    (VersionState.PENDING_APPROVAL, Action.REJECT): VersionState.REJECTED,
    (VersionState.DRAFT, Action.DELETE): VersionState.DELETED,
    (VersionState.REJECTED, Action.DELETE): VersionState.DELETED,
    (VersionState.SCHEDULED, Action.GO_LIVE): VersionState.LIVE,
    (VersionState.LIVE, Action.RETIRE): VersionState.SNAPSHOT,
}

_WHY: dict[VersionState, str] = {
    VersionState.DRAFT: "a draft must be submitted for approval first",
    VersionState.PENDING_APPROVAL: "it is waiting for a reviewer; approve or reject it",
    VersionState.REJECTED: "it was rejected; edit or submit it again",
    VersionState.SCHEDULED: "it is approved and waiting for its effective time",
    VersionState.LIVE: "it is live; edit the ladder to create a new draft",
    VersionState.SNAPSHOT: "it is a read-only snapshot of an earlier live version",
    VersionState.DELETED: "it was deleted",
    VersionState.PUBLISH_FAILED: "its go-live failed; approve it again to retry",
}


def transition(state: VersionState, action: Action) -> VersionState:
    """The state after ``action``, or a 409-class error that says which transition was
    refused and why (code ``invalid_transition``)."""
    found = _TRANSITIONS.get((state, action))
    if found is None:
        raise Conflict(
            f"cannot {action.value} a {state.value} version: {_WHY[state]}",
            code="invalid_transition",
            transition=f"{state.value} -> {action.value}",
            state=state.value,
            action=action.value,
        )
    return found
