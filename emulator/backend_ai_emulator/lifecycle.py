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
The session lifecycle state machine (wire notes §4.3, §5.4, §5.5, §9.5).

One asyncio task per session walks PENDING → SCHEDULED → PREPARING → PREPARED → CREATING → RUNNING,
runs a batch job, and then follows the manager's order: ``result`` and ``session_success``/``failure``
the moment the job exits, TERMINATING at once, ``kernel_terminated`` one scheduler tick later and
TERMINATED after another tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import scheduler
from .errors import (
    image_not_found,
    internal_error,
    invalid_api_params,
    quota_exceeded,
    session_already_exists,
    session_not_found,
    unknown_resource_slot,
)
from .runner import JobOutcome, run_batch_job
from .store import (
    CANCELLED,
    CREATING,
    DEAD_STATUSES,
    ERROR,
    FAILURE,
    PENDING,
    PREEMPTED,
    PREPARED,
    PREPARING,
    RESCHEDULING,
    RESERVED,
    RUNNING,
    SCHEDULED,
    SUCCESS,
    TERMINAL_STATUSES,
    TERMINATED,
    TERMINATING,
    SessionRecord,
    SessionStore,
    utcnow,
)
from .validation import (
    JOB_PRIORITY_MAX,
    JOB_PRIORITY_MIN,
    CreateRequest,
    UnknownSlotError,
    parse_slots,
    parse_starts_at,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from .events import EventHub
    from .settings import EmulatorSettings, Keypair

log = logging.getLogger(__name__)

_SCHEDULER = "triggered-by-scheduler"
_PRECONDITIONS = "passed-preconditions"  # the reason of session_preparing on 26.9.6
# Preemption reasons on 26.9.6: the preemptor's reservation, the victim's mark, the mode handler's step,
# and the requeue (also the reason of the second ``session_pending``).
_RESERVATION = "preemption-reservation"
_PREEMPTED_BY_RESERVATION = "preempted-by-reservation"
_PREEMPTED_BY_SCHEDULER = "preempted-by-scheduler"
_RESCHEDULED = "rescheduled"
_CANCEL_WAIT = 5.0


async def _sleep(seconds: float) -> None:
    """``asyncio.sleep`` that also accepts ``inf`` (wait until cancelled)."""
    if math.isinf(seconds):
        await asyncio.Event().wait()
    elif seconds > 0:
        await asyncio.sleep(seconds)


def _drop_kernel(rec: SessionRecord) -> None:
    """The agent no longer knows the kernel: see ``logs_gap_while_terminating``."""
    rec.kernel_gone = True


def _sum_slots(slot_maps: Iterable[dict[str, Decimal]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = {}
    for slots in slot_maps:
        for name, amount in slots.items():
            total[name] = total.get(name, Decimal(0)) + amount
    return total


class SessionEngine:
    """Creates, drives and destroys sessions; runs only on the server's event loop."""

    def __init__(
        self,
        store: SessionStore,
        hub: EventHub,
        settings: EmulatorSettings,
        manager_up: asyncio.Event | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._settings = settings
        #: Cleared while the "manager" is restarting with its lifecycle on hold: jobs go on running (on
        #: the agent), but scheduler steps and the handling of job results wait until it is back.
        self._manager_up = manager_up
        self._drivers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._finishers: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()

    # -- notifications -----------------------------------------------------------------------

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _transition(
        self,
        rec: SessionRecord,
        status: str,
        reason: str,
        kernel_event: str | None = None,
        *,
        event_reason: str | None = None,
        **changes: Any,
    ) -> None:
        """
        Set the status, emit the scheduler event (RUNNING is ``session_started``) and wake waiters.

        ``event_reason`` is the event's reason when it differs from the status reason (``session_terminated``
        always says ``triggered-by-scheduler`` on the manager, whatever ``status_info`` holds).
        """
        previous = rec.status
        self._store.set_status(rec, status, **changes)
        self._store.mutate(rec, lambda r: scheduler.record_transition(r, previous, status))
        name = "session_started" if status == RUNNING else f"session_{status.lower()}"
        self._hub.emit(rec, name, reason if event_reason is None else event_reason)
        if kernel_event:
            self._hub.emit(rec, kernel_event, reason, kernel=True)
        self._notify()

    # -- creation ----------------------------------------------------------------------------

    def create(self, req: CreateRequest, owner: Keypair) -> tuple[SessionRecord, dict[str, Any], bool]:
        """Validate against server state in the manager's order; return (record, response body, created)."""
        s = self._settings
        try:
            slots = parse_slots({**s.default_resources, **req.resources}, s.known_slots)
        except UnknownSlotError as exc:
            raise unknown_resource_slot(str(exc)) from exc
        except ValueError as exc:
            raise invalid_api_params(f"Invalid resource allocation: {exc}") from exc
        if not s.accept_any_image and req.image not in s.known_images:
            raise image_not_found(req.image)
        existing = self._store.find_live_by_name(owner.access_key, req.name)
        if existing is not None:
            if existing.image != req.image or not req.reuse:
                raise session_already_exists(str(existing.id))
            body = {
                "sessionId": str(existing.id),
                "sessionName": existing.name,
                "status": existing.status,
                "service_ports": [],
                "servicePorts": [],
                "created": False,
            }
            return existing, body, False
        is_batch = req.session_type == "batch"
        if is_batch and not req.startup_command:
            raise invalid_api_params("Batch sessions must have a non-empty startup command.")
        if not is_batch and req.starts_at:
            raise invalid_api_params("Parameter starts_at should be used only for batch sessions")
        if not is_batch and req.batch_timeout:
            raise invalid_api_params("Parameter batch_timeout should be used only for batch sessions")
        starts_at: datetime | None = None
        if req.starts_at:
            try:
                starts_at = parse_starts_at(req.starts_at)
            except ValueError as exc:
                raise invalid_api_params(f"Invalid starts_at: {req.starts_at!r}") from exc
        self._check_quota(owner, slots)
        rec = SessionRecord(
            id=uuid.uuid4(),
            name=req.name,
            owner_access_key=owner.access_key,
            user_id=owner.user_id,
            image=req.image,
            architecture=req.architecture,
            session_type=req.session_type,
            domain=req.domain,
            group=req.group,
            requested_slots=slots,
            environ=dict(req.environ),
            startup_command=req.startup_command,
            bootstrap_script=req.bootstrap_script,
            batch_timeout=req.batch_timeout or None,
            starts_at=starts_at,
            tag=req.tag,
            priority=req.priority,
            cluster_size=req.cluster_size,
            cluster_mode=req.cluster_mode,
            resource_opts=dict(req.resource_opts),
            mounts=list(req.mounts),
            scaling_group=req.scaling_group,
            callback_url=req.callback_url,
            job_priority=req.job_priority,
            is_preemptible=req.is_preemptible,
        )
        if not JOB_PRIORITY_MIN <= rec.job_priority <= JOB_PRIORITY_MAX:
            # The manager's INSERT fails on its ``integer`` column: an unhandled 500.
            raise internal_error()
        scheduler.record_transition(rec, None, PENDING)
        self._store.add(rec)
        self._hub.emit(rec, "session_pending", "Session enqueued")
        self._drivers[rec.id] = asyncio.ensure_future(self._drive(rec))
        self._notify()
        body = {
            "sessionId": str(rec.id),
            "sessionName": rec.name,
            "status": PENDING,
            "servicePorts": [],
            "created": True,
        }
        return rec, body, True

    def _check_quota(self, owner: Keypair, slots: dict[str, Decimal]) -> None:
        limits = self._settings.limits_for(owner.access_key)
        if not limits:
            return
        live = [
            r.requested_slots
            for r in self._store.records()
            if r.owner_access_key == owner.access_key and r.is_live
        ]
        total = _sum_slots([*live, slots])
        try:
            ceiling = parse_slots(limits, set(limits))
        except ValueError:
            return
        for name, amount in total.items():
            if name in ceiling and amount > ceiling[name]:
                raise quota_exceeded(
                    f"Your resource request exceeds the keypair's limit for {name!r}: "
                    f"{amount} requested in total, {ceiling[name]} allowed."
                )

    async def wait_until_running(self, rec: SessionRecord, max_wait: int) -> str:
        """
        Block like a non-enqueue-only create: ``"RUNNING"`` (or the later status), or ``"TIMEOUT"``.

        A session that dies (TERMINATED/CANCELLED) first gives 404; one in ERROR keeps the caller
        waiting until ``max_wait`` as the manager does.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait if max_wait > 0 else None
        while True:
            changed = self._changed
            if self._store.get(rec.id) is not rec:
                raise session_not_found(str(rec.id), f"Session {rec.id} not found")
            if any(status == RUNNING for status, _ in rec.history):
                break
            if rec.status in DEAD_STATUSES:
                raise session_not_found(str(rec.id), "Session terminated during scheduling")
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return "TIMEOUT"
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        await _sleep(self._settings.running_response_delay)
        return rec.status

    # -- driving -----------------------------------------------------------------------------

    async def _up(self) -> None:
        """Wait while the manager is down (a restart with the lifecycle on hold)."""
        if self._manager_up is not None and not self._manager_up.is_set():
            await self._manager_up.wait()

    async def _drive(self, rec: SessionRecord, *, rerun: bool = False) -> None:
        """Walk a session to RUNNING and run its job; ``rerun``: again, after a preemption requeued it."""
        s = self._settings
        try:
            await _sleep(s.step_delay + (0.0 if rerun else s.pending_hold))
            if rec.starts_at is not None and not rerun:
                await _sleep((rec.starts_at - utcnow()).total_seconds())
            await self._up()
            await self._admit(rec)
            self._transition(rec, SCHEDULED, _SCHEDULER, kernel_gone=False)
            await _sleep(s.step_delay)
            await self._up()
            self._transition(rec, PREPARING, _PRECONDITIONS)
            await _sleep(s.step_delay + s.preparing_hold)
            await self._up()
            self._transition(rec, PREPARED, _SCHEDULER)
            await _sleep(s.step_delay)
            await self._up()
            # The agent reports the kernel's creation (reason "") just before the session is CREATING.
            for kernel_event in ("kernel_preparing", "kernel_creating", "kernel_started"):
                self._hub.emit(rec, kernel_event, "", kernel=True)
            if rec.requeued:  # the rerun's container: a new, empty log replaces the first run's

                def _new_container(r: SessionRecord) -> None:
                    r.log = bytearray()
                    r.log_truncated = False
                    r.requeued = False

                self._store.mutate(rec, _new_container)
            self._transition(rec, CREATING, _SCHEDULER)
            await _sleep(s.step_delay)
            await self._up()
            if s.fail_start:
                self._transition(
                    rec,
                    ERROR,
                    "failed-to-start",
                    status_info="failed-to-start",
                    status_data={
                        "error": {
                            "src": "agent",
                            "name": "EmulatedStartFailure",
                            "repr": "EmulatedStartFailure('fail_start switch is on')",
                        }
                    },
                )
                return
            self._transition(
                rec,
                RUNNING,
                _SCHEDULER,
                container_id=secrets.token_hex(32),
                status_info=None,  # "preemption-reservation"/"rescheduled" end here
                runs=rec.runs + 1,
            )
            # GraphQL ``starts_at``: the moment this run reached RUNNING (reset when requeued).
            self._store.mutate(rec, lambda r: setattr(r, "started_at", r.history[-1][1]))
            if not rec.is_batch:
                return
            try:
                outcome = await run_batch_job(
                    shell=s.shell,
                    bootstrap_script=rec.bootstrap_script,
                    startup_command=rec.startup_command or "",
                    environ=self._job_environ(rec),
                    timeout=rec.batch_timeout,
                    on_output=lambda chunk: self._store.append_log(rec, chunk, self._settings.max_log_bytes),
                    on_start=lambda pid: self._store.mutate(rec, lambda r: setattr(r, "pid", pid)),
                    on_exit=lambda: self._store.mutate(rec, lambda r: setattr(r, "job_exited_at", utcnow())),
                )
            finally:
                self._store.mutate(rec, lambda r: setattr(r, "pid", None))
            await self._finish_batch(rec, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an emulator bug must not leave a session stuck
            log.exception("session %s: driver failed", rec.id)
            self._transition(
                rec,
                ERROR,
                "emulator-error",
                status_info="emulator-error",
                status_data={"error": {"src": "other", "name": type(exc).__name__, "repr": repr(exc)}},
            )
        finally:
            if self._drivers.get(rec.id) is asyncio.current_task():
                del self._drivers[rec.id]

    # -- scheduling and preemption (only with a capacity) ------------------------------------

    async def _admit(self, rec: SessionRecord) -> None:
        """
        Return when ``rec`` may leave PENDING: at once without a capacity; otherwise when it is the head
        of its queue and fits, or when the victims it reserved (preemption) are gone and a long-cycle
        pass has come. Each attempt that fails is recorded in the session's scheduling history.
        """
        while self._settings.capacity is not None:
            changed = self._changed
            await self._up()
            decision = self._attempt(rec)
            if decision == "admit":
                return
            if decision == "reserved":
                await self._await_victims(rec)
                return
            await changed.wait()

    def _attempt(self, rec: SessionRecord) -> str:
        """One scheduling pass for ``rec`` (synchronous): ``admit``, ``reserved`` or ``wait``."""
        capacity = self._settings.capacity
        assert capacity is not None
        records = self._store.records()
        queue = scheduler.pending_queue(records, scheduler.resource_group(rec))
        if queue and queue[0] is not rec:
            self._store.mutate(rec, lambda r: scheduler.record_skipped(r, queue[0]))
            return "wait"
        try:
            slots = scheduler.capacity_slots(capacity)
        except ValueError:
            log.exception("emulator: unreadable capacity %r; treating it as unlimited", capacity)
            return "admit"
        free = scheduler.free_slots(records, slots)
        if not scheduler.missing(rec.requested_slots, free):
            return "admit"
        config = self._settings.preemption_for(rec.scaling_group)
        victims = scheduler.choose_victims(records, rec, free, config) if config.enabled else []
        if not victims:
            self._store.mutate(rec, lambda r: scheduler.record_unplaceable(r, free))
            return "wait"
        self._reserve(rec, victims, config.mode)
        return "reserved"

    def _reserve(self, rec: SessionRecord, victims: list[SessionRecord], mode: str) -> None:
        """The preemptor goes RESERVED, its victims PREEMPTED; each victim's job is stopped at once."""
        self._transition(
            rec, RESERVED, _RESERVATION, status_info=_RESERVATION, victims=[v.id for v in victims]
        )
        self._store.mutate(rec, scheduler.record_reservation)
        for victim in victims:
            self._transition(
                victim,
                PREEMPTED,
                _PREEMPTED_BY_RESERVATION,
                status_info=_PREEMPTED_BY_RESERVATION,
                preempted_by=rec.id,
            )
            driver = self._drivers.pop(victim.id, None)
            self._finishers[victim.id] = asyncio.ensure_future(self._preempted(victim, mode, driver))

    async def _await_victims(self, rec: SessionRecord) -> None:
        """
        A RESERVED session waits for its victims' resources, then for two long-cycle passes (the
        manager's RELEASE_RESERVED admits its kernels, CHECK_RESERVED_PROGRESS promotes it), so a
        rescheduled victim, requeued after one pass, is back in the queue first.
        """
        while True:
            changed = self._changed
            victims = [self._store.get(v) for v in rec.victims]
            if not any(v is not None and v.holds_resources for v in victims):
                break
            await changed.wait()
        await _sleep(2 * self._settings.long_cycle)
        await self._up()

    async def _preempted(self, rec: SessionRecord, mode: str, driver: asyncio.Task[None] | None) -> None:
        """
        A victim after PREEMPTED: its kernel is destroyed one tick later (the job is killed), then
        terminate mode ends it (TERMINATING, TERMINATED, ``result`` UNDEFINED, no success/failure
        event) and reschedule mode requeues it (RESCHEDULING, PENDING ``rescheduled`` after the next
        long-cycle pass) to run the job again from the start.
        """
        s = self._settings
        try:
            if driver is not None and not driver.done():
                driver.cancel()  # kills the job's process group
                await asyncio.wait([driver], timeout=_CANCEL_WAIT)
            await _sleep(s.tick)
            await self._up()
            if mode == "terminate":
                self._transition(
                    rec, TERMINATING, _PREEMPTED_BY_SCHEDULER, status_info=_PREEMPTED_BY_SCHEDULER
                )
                await self._terminate_after_ticks(rec, _PREEMPTED_BY_SCHEDULER, None)
                return
            self._transition(rec, RESCHEDULING, _PREEMPTED_BY_SCHEDULER, status_info=_PREEMPTED_BY_SCHEDULER)
            await _sleep(s.tick)
            await self._up()
            self._store.mutate(rec, _drop_kernel)
            self._hub.emit(rec, "kernel_terminated", _PREEMPTED_BY_SCHEDULER, kernel=True)
            self._notify()
            await _sleep(s.long_cycle)
            await self._up()
            self._transition(
                rec,
                PENDING,
                _RESCHEDULED,
                status_info=_RESCHEDULED,
                started_at=None,
                container_id=None,
                requeued=True,
                requeued_at=utcnow(),
                preempted_by=None,
            )
            self._drivers[rec.id] = asyncio.ensure_future(self._drive(rec, rerun=True))
        finally:
            if self._finishers.get(rec.id) is asyncio.current_task():
                del self._finishers[rec.id]

    @staticmethod
    def _job_environ(rec: SessionRecord) -> dict[str, str]:
        env = {
            "BACKENDAI_SESSION_ID": str(rec.id),
            "BACKENDAI_SESSION_NAME": rec.name,
            "BACKENDAI_KERNEL_ID": str(rec.kernel_id),
            "BACKENDAI_CLUSTER_ROLE": "main",
            "BACKENDAI_CLUSTER_SIZE": str(rec.cluster_size),
        }
        env.update(rec.environ)
        return env

    async def _finish_batch(self, rec: SessionRecord, outcome: JobOutcome) -> None:
        """Manager order after the job: result + success/failure event, TERMINATING, then two ticks."""
        await self._up()  # a manager that is down handles the agent's result event when it is back
        if outcome.timed_out:
            reason, result, event = "task-timeout", FAILURE, "session_failure"
        elif outcome.succeeded:
            reason, result, event = "task-finished", SUCCESS, "session_success"
        else:
            reason, result, event = "task-failed", FAILURE, "session_failure"

        def _set_result(r: SessionRecord) -> None:
            r.result = result
            r.exit_code = outcome.exit_code

        delay, tick = self._settings.result_write_delay, self._settings.tick
        if delay > 0:  # the stream relays the agent's event before the manager's handler writes the result
            self._hub.emit(rec, event, reason, exit_code=outcome.exit_code)
            if delay > tick:  # meanwhile the agent drops the kernel: the result comes inside the log gap
                await _sleep(tick)
                self._store.mutate(rec, _drop_kernel)
            await _sleep(delay - tick if delay > tick else delay)
            await self._up()
            self._store.mutate(rec, _set_result)
        else:
            self._store.mutate(rec, _set_result)
            self._hub.emit(rec, event, reason, exit_code=outcome.exit_code)
        self._transition(rec, TERMINATING, reason, status_info=reason)
        await self._terminate_after_ticks(rec, reason, outcome.exit_code)

    async def _terminate_after_ticks(self, rec: SessionRecord, reason: str, exit_code: int | None) -> None:
        await _sleep(self._settings.tick)
        await self._up()
        self._store.mutate(rec, _drop_kernel)
        self._notify()  # its resources are free: a waiting session may fit now
        self._hub.emit(rec, "kernel_terminated", reason, kernel=True, exit_code=exit_code)
        await _sleep(self._settings.tick)
        await self._up()
        self._transition(rec, TERMINATED, reason, event_reason=_SCHEDULER)

    # -- destruction -------------------------------------------------------------------------

    async def _stop_tasks(self, session_id: uuid.UUID) -> None:
        """Cancel the driver (killing its job) and any pending termination, and wait for both."""
        tasks = [t for t in (self._drivers.pop(session_id, None), self._finishers.pop(session_id, None)) if t]
        current = asyncio.current_task()
        tasks = [t for t in tasks if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT)

    async def destroy(self, rec: SessionRecord, forced: bool) -> dict[str, Any]:
        """
        ``DELETE /session/{id}``: the manager's ``mark_sessions_for_termination`` semantics.

        The status changes first (synchronously), then the driver is cancelled and awaited, so a
        concurrent second destroy sees the new status and a job never reports after being killed.
        """
        reason = "force-terminated" if forced else "user-requested"
        if rec.status == PENDING:
            self._transition(rec, CANCELLED, reason, status_info=reason)  # no kernel yet: no kernel event
            await self._stop_tasks(rec.id)
            return {"status": "cancelled"}
        if forced and rec.status not in TERMINAL_STATUSES:
            now = utcnow()

            def _force(r: SessionRecord) -> None:
                if r.status != TERMINATING:
                    r.history.append((TERMINATING, now))
                r.status_info = reason

            self._store.mutate(rec, _force)
            self._transition(rec, TERMINATED, reason, "kernel_terminated")
            await self._stop_tasks(rec.id)
            return {"status": "terminated"}
        if not forced and rec.status not in (TERMINATING, *TERMINAL_STATUSES):
            self._transition(rec, TERMINATING, reason, status_info=reason)
            await self._stop_tasks(rec.id)
            self._finishers[rec.id] = asyncio.ensure_future(self._finish_destroy(rec, reason))
            return {"status": "terminated"}
        return {}

    async def _finish_destroy(self, rec: SessionRecord, reason: str) -> None:
        try:
            await self._terminate_after_ticks(rec, reason, None)
        finally:
            if self._finishers.get(rec.id) is asyncio.current_task():
                del self._finishers[rec.id]

    # -- housekeeping ------------------------------------------------------------------------

    @property
    def running_pids(self) -> list[int]:
        """Process group ids of jobs still running."""
        return [r.pid for r in self._store.records() if r.pid is not None]

    async def stop_all(self) -> None:
        """Cancel every driver and finisher (killing every job) and wait for them."""
        tasks = [*self._drivers.values(), *self._finishers.values()]
        self._drivers.clear()
        self._finishers.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_WAIT)
        self._notify()
