# Licensed to the Apache Software Foundation (ASF) under one
# or more contributor license agreements.  See the NOTICE file
# distributed with this work for additional information
# regarding copyright ownership.  The ASF licenses this file
# to you under the Apache License, Version 2.0 (the
# "License"); you may not use this file except in compliance
# with the License.  You may obtain a copy of the License at
#
#   http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing,
# software distributed under the License is distributed on an
# "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
# KIND, either express or implied.  See the License for the
# specific language governing permissions and limitations
# under the License.
"""
In-memory state: session records with their history, and the request log.

The server loop mutates; the test thread reads. Every access goes through one condition variable,
so readers get consistent snapshots and can block until something changes instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from decimal import Decimal

T = TypeVar("T")

PENDING = "PENDING"
SCHEDULED = "SCHEDULED"
PREPARING = "PREPARING"
PREPARED = "PREPARED"
CREATING = "CREATING"
RUNNING = "RUNNING"
TERMINATING = "TERMINATING"
TERMINATED = "TERMINATED"
CANCELLED = "CANCELLED"
ERROR = "ERROR"
#: Preemption (26.8+): the preemptor waits RESERVED for its victims' resources; a victim goes PREEMPTED,
#: then TERMINATING (terminate mode) or RESCHEDULING and back to PENDING (reschedule mode).
RESERVED = "RESERVED"
PREEMPTED = "PREEMPTED"
RESCHEDULING = "RESCHEDULING"

#: Rows the manager hides from ``get_info`` and other non-stale lookups.
DEAD_STATUSES = frozenset({TERMINATED, CANCELLED})
#: Rows a name no longer resolves to, and that free the name for reuse.
TERMINAL_STATUSES = frozenset({TERMINATED, CANCELLED, ERROR})

UNDEFINED = "UNDEFINED"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"


def utcnow() -> datetime:
    """Aware UTC now; every timestamp the emulator stores is one of these."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class EventRecord:
    """One event as it was (or would have been) sent on an event stream."""

    name: str
    payload: dict[str, Any]
    at: datetime
    is_kernel_event: bool
    #: False when an event-loss fault kept it from every stream (``faults.lose_events``).
    delivered: bool = True


@dataclass
class SessionRecord:
    """A session as the server keeps it; only the server loop mutates it, under the store lock."""

    id: uuid.UUID
    name: str
    owner_access_key: str
    user_id: uuid.UUID
    image: str
    architecture: str
    session_type: str
    domain: str
    group: str
    requested_slots: dict[str, Decimal]
    environ: dict[str, str]
    startup_command: str | None = None
    bootstrap_script: str | None = None
    batch_timeout: int | None = None
    starts_at: datetime | None = None
    tag: str | None = None
    priority: int = 10
    cluster_size: int = 1
    cluster_mode: str = "single-node"
    resource_opts: dict[str, Any] = field(default_factory=dict)
    mounts: list[Any] = field(default_factory=list)
    scaling_group: str | None = None
    callback_url: str | None = None
    kernel_id: uuid.UUID = field(default_factory=uuid.uuid4)
    group_id: uuid.UUID = field(
        default_factory=lambda: uuid.uuid5(uuid.NAMESPACE_URL, "emulator-group:default")
    )
    created_at: datetime = field(default_factory=utcnow)
    status: str = PENDING
    status_info: str | None = None
    status_data: dict[str, Any] | None = None
    result: str = UNDEFINED
    terminated_at: datetime | None = None
    exit_code: int | None = None
    container_id: str | None = None
    history: list[tuple[str, datetime]] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    log: bytearray = field(default_factory=bytearray)
    log_truncated: bool = False
    pid: int | None = None
    #: When the batch job's main process exited (the agent's view of "job end"), before anything else.
    job_exited_at: datetime | None = None
    #: The agent has dropped the kernel (``kernel_terminated`` was sent): see ``logs_gap_while_terminating``.
    kernel_gone: bool = False
    #: Preemption fields of the create request (26.8+): higher ``job_priority`` may preempt lower.
    job_priority: int = 0
    is_preemptible: bool = True
    #: When the current run reached RUNNING (GraphQL ``starts_at``); None before and after a requeue.
    started_at: datetime | None = None
    #: How many times the batch job was started (2 after one rerun).
    runs: int = 0
    #: Back in the queue after a preemption (reschedule mode), until the rerun's container exists.
    requeued: bool = False
    #: When it was last requeued.
    requeued_at: datetime | None = None
    #: Sessions this RESERVED session preempted, and the session that preempted this one.
    victims: list[uuid.UUID] = field(default_factory=list)
    preempted_by: uuid.UUID | None = None
    #: The scheduler's records for ``sessionScopedSchedulingHistories``.
    scheduling_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_batch(self) -> bool:
        return self.session_type == "batch"

    @property
    def is_live(self) -> bool:
        return self.status not in TERMINAL_STATUSES

    @property
    def holds_resources(self) -> bool:
        """On an agent (SCHEDULED … TERMINATING, PREEMPTED, RESCHEDULING) until its kernel is gone."""
        return self.status not in (PENDING, RESERVED, *TERMINAL_STATUSES) and not self.kernel_gone

    @property
    def occupied_slots(self) -> dict[str, Decimal]:
        """Slots held while the session occupies an agent (SCHEDULED … TERMINATING)."""
        return (
            dict(self.requested_slots) if self.status not in (PENDING, RESERVED, *TERMINAL_STATUSES) else {}
        )

    def status_history(self) -> dict[str, str]:
        """``{STATUS: iso}`` with the latest time per status, like the manager's JSON column."""
        return {status: at.isoformat() for status, at in self.history}


@dataclass(frozen=True)
class SessionSnapshot:
    """An immutable copy of a session for tests (taken under the store lock)."""

    id: uuid.UUID
    name: str
    owner_access_key: str
    image: str
    session_type: str
    status: str
    status_info: str | None
    status_data: dict[str, Any] | None
    result: str
    exit_code: int | None
    created_at: datetime
    terminated_at: datetime | None
    startup_command: str | None
    bootstrap_script: str | None
    batch_timeout: int | None
    environ: dict[str, str]
    requested_slots: dict[str, Decimal]
    history: tuple[tuple[str, datetime], ...]
    events: tuple[EventRecord, ...]
    log_bytes: bytes
    pid: int | None
    job_exited_at: datetime | None = None
    job_priority: int = 0
    is_preemptible: bool = True
    started_at: datetime | None = None
    runs: int = 0
    requeued_at: datetime | None = None
    preempted_by: uuid.UUID | None = None
    scheduling_history: tuple[dict[str, Any], ...] = ()
    #: The agent no longer has the kernel (after ``kernel_terminated``; false again once it is rescheduled).
    kernel_gone: bool = False

    @property
    def logs(self) -> str:
        """The container log as text (decoded on access)."""
        return self.log_bytes.decode("utf-8", errors="replace")

    @property
    def live(self) -> bool:
        """Not TERMINATED, CANCELLED or ERROR."""
        return self.status not in TERMINAL_STATUSES

    @property
    def statuses(self) -> list[str]:
        """Every status the session went through, in order."""
        return [status for status, _ in self.history]

    @property
    def event_names(self) -> list[str]:
        """Names of every event emitted for the session, in order."""
        return [event.name for event in self.events]

    def status_time(self, status: str) -> datetime | None:
        """When the session (last) entered ``status``."""
        times = [at for s, at in self.history if s == status]
        return times[-1] if times else None

    def event_time(self, name: str) -> datetime | None:
        """When the session's (last) event ``name`` was emitted, delivered or not."""
        times = [event.at for event in self.events if event.name == name]
        return times[-1] if times else None


@dataclass(frozen=True)
class RequestRecord:
    """One served request; holds no header values, so never a secret."""

    at: float
    method: str
    path: str
    query: str
    route: str | None
    access_key: str | None
    status: int | None
    fault: str | None
    duration: float
    api_version: str | None = None


class SessionStore:
    """All sessions and the request log behind one condition variable."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._sessions: dict[uuid.UUID, SessionRecord] = {}
        self._requests: list[RequestRecord] = []
        self._generation = 0

    # -- server side -------------------------------------------------------------------------

    def add(self, record: SessionRecord) -> None:
        """Register a new session and its first status."""
        with self._cond:
            self._sessions[record.id] = record
            record.history.append((record.status, record.created_at))
            self._cond.notify_all()

    def get(self, session_id: uuid.UUID) -> SessionRecord | None:
        with self._cond:
            return self._sessions.get(session_id)

    def find_live_by_name(self, owner_access_key: str, name: str) -> SessionRecord | None:
        """The caller's non-terminal session with that name (names are unique among those)."""
        with self._cond:
            for record in self._sessions.values():
                if record.owner_access_key == owner_access_key and record.name == name and record.is_live:
                    return record
        return None

    def records(self) -> list[SessionRecord]:
        with self._cond:
            return list(self._sessions.values())

    def mutate(self, record: SessionRecord, fn: Callable[[SessionRecord], T]) -> T:
        """Apply ``fn`` to a record under the lock and wake waiters."""
        with self._cond:
            outcome = fn(record)
            self._cond.notify_all()
            return outcome

    def read(self, record: SessionRecord, fn: Callable[[SessionRecord], T]) -> T:
        """Read from a record under the lock (for values a job may be appending to)."""
        with self._cond:
            return fn(record)

    def set_status(self, record: SessionRecord, status: str, **changes: Any) -> None:
        """Move to ``status`` (recording when) and apply other field changes atomically."""
        now = utcnow()

        def _apply(rec: SessionRecord) -> None:
            for key, value in changes.items():
                setattr(rec, key, value)
            rec.status = status
            rec.history.append((status, now))
            if status in DEAD_STATUSES and rec.terminated_at is None:
                rec.terminated_at = now

        self.mutate(record, _apply)

    def append_event(self, record: SessionRecord, event: EventRecord) -> None:
        self.mutate(record, lambda rec: rec.events.append(event))

    def append_log(self, record: SessionRecord, chunk: bytes, limit: int) -> None:
        """Add output to the container log, dropping what goes past ``limit`` bytes."""

        def _apply(rec: SessionRecord) -> None:
            room = limit - len(rec.log)
            if room >= len(chunk):
                rec.log += chunk
            elif not rec.log_truncated:
                rec.log += chunk[: max(room, 0)]
                rec.log += b"\n[backend-ai-emulator: log truncated]\n"
                rec.log_truncated = True

        # No notify: waking every waiter per chunk would re-snapshot a growing log again and again.
        with self._cond:
            _apply(record)

    def log_request(self, entry: RequestRecord) -> tuple[int, int]:
        """Record a request as it arrives; the token lets :meth:`finish_request` fill in the outcome."""
        with self._cond:
            self._requests.append(entry)
            self._cond.notify_all()
            return self._generation, len(self._requests) - 1

    def finish_request(self, token: tuple[int, int], **changes: Any) -> None:
        """Complete a logged request (status, fault, duration) unless the log was cleared since."""
        generation, index = token
        with self._cond:
            if generation == self._generation and index < len(self._requests):
                self._requests[index] = dataclasses.replace(self._requests[index], **changes)
                self._cond.notify_all()

    def clear(self) -> None:
        """Forget every session and request."""
        with self._cond:
            self._sessions.clear()
            self._requests.clear()
            self._generation += 1
            self._cond.notify_all()

    # -- test side ---------------------------------------------------------------------------

    @staticmethod
    def _snapshot(record: SessionRecord) -> SessionSnapshot:
        return SessionSnapshot(
            id=record.id,
            name=record.name,
            owner_access_key=record.owner_access_key,
            image=record.image,
            session_type=record.session_type,
            status=record.status,
            status_info=record.status_info,
            status_data=dict(record.status_data) if record.status_data is not None else None,
            result=record.result,
            exit_code=record.exit_code,
            created_at=record.created_at,
            terminated_at=record.terminated_at,
            startup_command=record.startup_command,
            bootstrap_script=record.bootstrap_script,
            batch_timeout=record.batch_timeout,
            environ=dict(record.environ),
            requested_slots=dict(record.requested_slots),
            history=tuple(record.history),
            events=tuple(record.events),
            log_bytes=bytes(record.log),
            pid=record.pid,
            job_exited_at=record.job_exited_at,
            job_priority=record.job_priority,
            is_preemptible=record.is_preemptible,
            started_at=record.started_at,
            runs=record.runs,
            requeued_at=record.requeued_at,
            preempted_by=record.preempted_by,
            scheduling_history=tuple(dict(entry) for entry in record.scheduling_history),
            kernel_gone=record.kernel_gone,
        )

    def snapshots(self) -> list[SessionSnapshot]:
        """Every session ever created (since the last reset), oldest first."""
        with self._cond:
            return [self._snapshot(r) for r in sorted(self._sessions.values(), key=lambda r: r.created_at)]

    def snapshot(self, id_or_name: str | uuid.UUID) -> SessionSnapshot | None:
        """By UUID (any status), else by name (the newest session with that name)."""
        with self._cond:
            record = self._lookup_any(id_or_name)
            return self._snapshot(record) if record is not None else None

    def _lookup_any(self, id_or_name: str | uuid.UUID) -> SessionRecord | None:
        try:
            key = id_or_name if isinstance(id_or_name, uuid.UUID) else uuid.UUID(str(id_or_name))
        except ValueError:
            named = [r for r in self._sessions.values() if r.name == id_or_name]
            return max(named, key=lambda r: r.created_at) if named else None
        return self._sessions.get(key)

    def requests(self) -> list[RequestRecord]:
        with self._cond:
            return list(self._requests)

    def wait_until(self, predicate: Callable[[], T], timeout: float) -> T:
        """Block until ``predicate()`` is truthy (re-checked after every change); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                self._cond.wait(min(remaining, 0.25))
