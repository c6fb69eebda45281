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
The scheduler's decisions when the resource group has a capacity: the queue, fit, victims, history.

Pure functions over session records (no awaiting, no state of their own), so the engine can decide and
act in one step of the event loop. What they model was measured on a real 26.9.6 manager: a FIFO queue
with head-of-line blocking, a preemptor that reserves the resources of lower-``job_priority`` sessions of
the same user, and the records ``sessionScopedSchedulingHistories`` answers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .store import (
    CREATING,
    PENDING,
    PREEMPTED,
    PREPARED,
    PREPARING,
    RESCHEDULING,
    RESERVED,
    RUNNING,
    SCHEDULED,
    TERMINATED,
    TERMINATING,
    utcnow,
)
from .validation import parse_slots

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from .settings import PreemptionConfig
    from .store import SessionRecord

_BINARY = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))

#: The sub-steps of a successful ``schedule-sessions`` pass (FIFO scheduler, one dummy agent).
SCHEDULE_STEPS: tuple[tuple[str, str], ...] = (
    ("FIFOSequencer", "Sessions sequenced in first-in-first-out order"),
    ("SessionDependenciesValidator", "All dependent sessions have completed successfully"),
    ("ReservedBatchSessionValidator", "Batch session has reached its scheduled start time"),
    (
        "ResourcePolicyValidator",
        "Requested resources are within the user, project, and domain resource policies",
    ),
    ("architecture", "Agents with a matching architecture found"),
    ("designated-strict", "Designated agents present (or no strict designation)"),
    ("session-group-strict", "Agents conforming to the session group's placement direction found"),
    ("resource", "Agents with sufficient resources found"),
    ("container-limit", "Agents below the container limit found"),
    ("DispersedAgentSelector", "Agent selected using dispersed strategy for balanced workload distribution"),
    ("allocation", "Session allocation prepared"),
)
_UNAVAILABLE = "agent_schedule_unavailable"

#: (from, to) → (phase, message, sub-steps) of the transitions the manager records.
_PHASES: dict[tuple[str | None, str], tuple[str, str, tuple[str, ...]]] = {
    (None, PENDING): ("enqueue", "enqueue success", ()),
    (PENDING, SCHEDULED): (
        "schedule-sessions",
        "schedule-sessions success",
        tuple(s for s, _ in SCHEDULE_STEPS),
    ),
    (RESERVED, SCHEDULED): ("promote-to-scheduled", "promote-to-scheduled success", ("check_kernel_status",)),
    (SCHEDULED, PREPARING): ("check-precondition", "check-precondition success", ("check_and_pull_images",)),
    (PREPARING, PREPARED): ("promote-to-prepared", "promote-to-prepared success", ("check_kernel_status",)),
    (PREPARED, CREATING): ("start-sessions", "start-sessions success", ("create_kernels",)),
    (CREATING, RUNNING): (
        "promote-to-running",
        "promote-to-running success",
        ("check_kernel_status", "trigger_batch_execution"),
    ),
    (PENDING, RESERVED): ("mark_reserved", "mark_reserved success", ()),
    (RUNNING, PREEMPTED): ("mark_preempted", "mark_preempted success", ()),
    (PREEMPTED, RESCHEDULING): ("mark_rescheduling", "mark_rescheduling success", ()),
    (RESCHEDULING, PENDING): ("mark_pending", "mark_pending success", ()),
    (TERMINATING, TERMINATED): (
        "promote-to-terminated",
        "promote-to-terminated success",
        ("check_kernel_status",),
    ),
}


def resource_group(rec: SessionRecord) -> str:
    """The session's resource group (``scalingGroup``), ``default`` when the create named none."""
    return rec.scaling_group or "default"


def capacity_slots(capacity: Mapping[str, Any]) -> dict[str, Decimal]:
    """The capacity setting as slot amounts (``mem`` accepts ``"16g"``)."""
    return parse_slots(capacity, set(capacity))


def _add(total: dict[str, Decimal], slots: Mapping[str, Decimal], sign: int = 1) -> None:
    for name, amount in slots.items():
        total[name] = total.get(name, Decimal(0)) + sign * amount


def free_slots(records: Iterable[SessionRecord], capacity: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Capacity minus what sessions on the agent hold and what RESERVED preemptors have set aside."""
    free = dict(capacity)
    for rec in records:
        if rec.holds_resources or rec.status == RESERVED:
            _add(free, rec.requested_slots, -1)
    return free


def missing(request: Mapping[str, Decimal], free: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """How much of each requested slot does not fit (a slot the agent lacks counts as zero free)."""
    return {
        name: amount - free.get(name, Decimal(0))
        for name, amount in request.items()
        if amount > 0 and amount > free.get(name, Decimal(0))
    }


def pending_queue(records: Iterable[SessionRecord], group: str) -> list[SessionRecord]:
    """PENDING sessions of a resource group in scheduling order: higher ``priority`` first, then FIFO."""
    queued = [r for r in records if r.status == PENDING and resource_group(r) == group]
    return sorted(queued, key=lambda r: (-r.priority, r.created_at))


def queue_position(records: Iterable[SessionRecord], rec: SessionRecord) -> int | None:
    """The 0-based place of a PENDING session in its queue (``compute_session_node.queue_position``)."""
    if rec.status != PENDING:
        return None
    queue = pending_queue(records, resource_group(rec))
    return next((i for i, r in enumerate(queue) if r is rec), None)


def choose_victims(
    records: Iterable[SessionRecord],
    preemptor: SessionRecord,
    free: Mapping[str, Decimal],
    config: PreemptionConfig,
    now: datetime | None = None,
) -> list[SessionRecord]:
    """
    The RUNNING sessions whose resources would let ``preemptor`` fit, or ``[]`` when none would.

    Candidates: preemptible, a ``job_priority`` strictly lower than the preemptor's, of the same owner
    (``victim_scope`` ``user``) and resource group, running for at least ``preemption_min_runtime``.
    The lowest ``job_priority`` goes first, ties by start time (``order``).
    """
    now = now or utcnow()
    group = resource_group(preemptor)
    candidates = [
        r
        for r in records
        if r is not preemptor
        and r.status == RUNNING
        and not r.kernel_gone
        and r.is_preemptible
        and r.job_priority < preemptor.job_priority
        and resource_group(r) == group
        and (config.victim_scope != "user" or r.owner_access_key == preemptor.owner_access_key)
        and r.started_at is not None
        and (now - r.started_at).total_seconds() >= config.preemption_min_runtime
    ]
    newest = config.order == "newest"
    candidates.sort(
        key=lambda r: (r.job_priority, -r.started_at.timestamp() if newest else r.started_at.timestamp())  # type: ignore[union-attr]
    )
    available = dict(free)
    chosen: list[SessionRecord] = []
    for candidate in candidates:
        if not missing(preemptor.requested_slots, available):
            break
        chosen.append(candidate)
        _add(available, candidate.requested_slots)
    return chosen if chosen and not missing(preemptor.requested_slots, available) else []


def _format_slots(slots: Mapping[str, Decimal]) -> str:
    parts = []
    for name, amount in sorted(slots.items()):
        if name == "mem":
            unit, size = next(((u, s) for u, s in _BINARY if amount >= s), ("B", 1))
            parts.append(f"mem={amount / size:g} {unit}")
        else:
            parts.append(f"{name}={amount:.6f}")
    return " ".join(parts)


def unplaceable_message(rec: SessionRecord, free: Mapping[str, Decimal]) -> str:
    """The manager's NEED_RETRY message for a session that fits on no agent."""
    lacking = "".join(
        f"\n  - {name}: missing={amount:.6f}" for name, amount in missing(rec.requested_slots, free).items()
    )
    return (
        "Some kernels could not be placed on any agent. (1 requirement(s) could not be placed:\n"
        f"- requirement #0 (containers=1, arch={rec.architecture}, slots={_format_slots(rec.requested_slots)}): "
        f"no agents passed the 'resource' filter{lacking})"
    )


def _steps(names: Iterable[str], result: str = "SUCCESS") -> list[dict[str, Any]]:
    messages = dict(SCHEDULE_STEPS)
    return [
        {"step": n, "result": result, "errorCode": None, "message": messages.get(n, f"{n} success")}
        for n in names
    ]


def record(
    rec: SessionRecord,
    phase: str,
    from_status: str | None,
    to_status: str,
    result: str,
    message: str,
    sub_steps: list[dict[str, Any]] | None = None,
) -> None:
    """Append one scheduling-history entry; a repeat of the last one only counts another attempt."""
    now = utcnow().isoformat()
    history = rec.scheduling_history
    last = history[-1] if history else None
    if last is not None and (
        last["phase"],
        last["fromStatus"],
        last["toStatus"],
        last["result"],
        last["message"],
    ) == (phase, from_status, to_status, result, message):
        last["attempts"] += 1
        last["updatedAt"] = now
        return
    history.append(
        {
            "phase": phase,
            "fromStatus": from_status,
            "toStatus": to_status,
            "result": result,
            "errorCode": None,
            "message": message,
            "attempts": 1,
            "createdAt": now,
            "updatedAt": now,
            "subSteps": sub_steps or [],
        }
    )


def record_transition(rec: SessionRecord, from_status: str | None, to_status: str) -> None:
    """Record a status change the manager's scheduler writes a history entry for (others are skipped)."""
    if to_status == TERMINATING:  # a job's end, a destroy, or a preemption in terminate mode
        message = "preempt_terminate success" if from_status == PREEMPTED else "mark_terminating success"
        record(rec, "mark_terminating", from_status, to_status, "SUCCESS", message)
        return
    entry = _PHASES.get((from_status, to_status))
    if entry is not None:
        phase, message, steps = entry
        record(rec, phase, from_status, to_status, "SUCCESS", message, _steps(steps))


def record_unplaceable(rec: SessionRecord, free: Mapping[str, Decimal]) -> None:
    """The head of the queue fits nowhere: NEED_RETRY with the failed ``resource`` filter."""
    steps = _steps(name for name, _ in SCHEDULE_STEPS[:7])
    failure = (
        "Unavailable : No agents can be allocated at this time. (no agents passed the 'resource' filter)"
    )
    message = unplaceable_message(rec, free)
    steps.append({"step": "resource", "result": "FAILURE", "errorCode": _UNAVAILABLE, "message": failure})
    steps.append(
        {"step": "DispersedAgentSelector", "result": "FAILURE", "errorCode": _UNAVAILABLE, "message": message}
    )
    record(rec, "schedule-sessions", PENDING, PENDING, "NEED_RETRY", message, steps)


def record_skipped(rec: SessionRecord, head: SessionRecord) -> None:
    """Behind a head of the queue that does not fit: not attempted (head-of-line blocking)."""
    message = f"Not attempted: the resource group ran out of resources at the earlier session {head.id}"
    record(rec, "schedule-sessions", PENDING, PENDING, "SKIPPED", message, _steps(["FIFOSequencer"]))


def record_reservation(rec: SessionRecord) -> None:
    """After ``mark_reserved``: the pass that found the victims, SKIPPED ``preemption-reservation``."""
    steps = _steps(name for name, _ in SCHEDULE_STEPS[:7])
    steps.append(
        {
            "step": "resource",
            "result": "FAILURE",
            "errorCode": _UNAVAILABLE,
            "message": "Unavailable : No agents can be allocated at this time. (no agents passed the 'resource' filter)",
        }
    )
    steps.extend(_steps(name for name, _ in SCHEDULE_STEPS[7:]))
    record(rec, "schedule-sessions", PENDING, PENDING, "SKIPPED", "preemption-reservation", steps)
