"""Group commit of single activities (issue 2, item 11b).

A single activity costs one transaction: eight round trips to the database and a commit,
for one row of each kind. When many clients send single activities at once, those that
arrive while an earlier group of the same API key is being recorded wait for it, and are
then recorded together, as one call of ``activities.record`` (one transaction, one set of
statements, one commit). Nothing waits on purpose: a group is whatever arrived during the
previous one, so a lone request is recorded at once, exactly as before.

Each request still gets the answer it would have had alone:

- activities are applied in the order they arrived, each seeing the ones before it (a
  repeated idempotency key answers the first result, as a repeat in a batch does, R12);
- when a group's transaction fails for any reason (one invalid activity, a key reused with
  another body, a clash with a concurrent writer, a lost connection), nothing of it was
  written, and its activities are recorded again one by one, each in its own transaction,
  so each request gets its own result or its own error and no activity fails because of
  another's.

Groups are per API key (the key is the actor recorded in history and decides the tenant),
and per process: each server process groups the requests it received. Under a steady
load of clients that each send their next activity as soon as the last is answered, the
clients answered by one group come back while the next group runs; a group that finds
fewer waiting than the last group held waits ``linger`` (1 ms) for them, so that groups
stay large instead of alternating large and small.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tierwise.services.activities import ActivityCommand, Outcome
from tierwise.services.runtime import Caller

Record = Callable[[Caller, list[ActivityCommand]], Awaitable[list[Outcome]]]

_log = logging.getLogger(__name__)


@dataclass
class GroupStats:
    """What a process's group commit did: groups recorded, activities in them, the
    largest group, and groups that failed and were recorded again one by one."""

    groups: int = 0
    activities: int = 0
    largest: int = 0
    split: int = 0


@dataclass
class _Queue:
    waiting: list[tuple[ActivityCommand, asyncio.Future[Outcome]]] = field(default_factory=list)
    running: bool = False


class GroupCommit:
    """Records single activities, grouping those that arrive together.

    ``record`` is ``activities.record`` bound to a runtime. ``max_group`` caps a group
    (``activities.MAX_BATCH`` at most). One group per key is in flight at a time in this
    process; the next forms while it is written.
    """

    def __init__(self, record: Record, *, max_group: int = 100, linger: float = 0.001) -> None:
        if not 1 <= max_group <= 1000 or linger < 0:
            raise ValueError("max_group must be within 1..1000 and linger at least 0")
        self._record = record
        self._max_group = max_group
        self._linger = linger
        self._queues: dict[Caller, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = GroupStats()

    async def submit(self, caller: Caller, command: ActivityCommand) -> Outcome:
        """Record ``command`` and return its outcome (or raise its error)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(caller)
        if queue is None:
            queue = self._queues[caller] = _Queue()
        queue.waiting.append((command, future))
        if not queue.running:
            queue.running = True
            # Its own task: a request whose client goes away must not stop the others.
            task = asyncio.create_task(self._drain(caller, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self, caller: Caller, queue: _Queue) -> None:
        try:
            last = 0
            while queue.waiting:
                if self._linger and len(queue.waiting) < last:
                    # Fewer are waiting than the group just answered: their clients are
                    # sending their next activities now. Waiting a moment lets them join
                    # this group, instead of alternating small and large groups.
                    await asyncio.sleep(self._linger)
                group = queue.waiting[: self._max_group]
                last = len(group)
                del queue.waiting[: self._max_group]
                try:
                    await self._run(caller, group)
                except BaseException:  # cancelled (shutting down): release its requests
                    for _, future in group:
                        future.cancel()
                    raise
        finally:
            queue.running = False
            if not queue.waiting:
                self._queues.pop(caller, None)

    async def _run(
        self, caller: Caller, group: list[tuple[ActivityCommand, asyncio.Future[Outcome]]]
    ) -> None:
        self.stats.groups += 1
        self.stats.activities += len(group)
        self.stats.largest = max(self.stats.largest, len(group))
        if len(group) > 1:
            try:
                outcomes = await self._record(caller, [command for command, _ in group])
            except Exception:  # recorded again one by one below, each with its own answer
                _log.debug("a group of %d activities failed; recording each alone", len(group))
                self.stats.split += 1
            else:
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    _settle(future, outcome)
                return
        for command, future in group:
            try:
                [outcome] = await self._record(caller, [command])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                _settle(future, outcome)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():  # its request may have been cancelled (the client went away)
        future.set_result(outcome)
