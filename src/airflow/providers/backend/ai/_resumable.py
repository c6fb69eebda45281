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
A retry of the run-batch task meets what its earlier tries left on the manager: this module deals with it.

Earlier tries' sessions are found by the Backend.AI tag each try gives its session (``_session.params.
session_tag``), whatever their names. With ``durable=True`` the newest of them is adopted unless its job
failed; every other one whose job still runs is destroyed (unless ``keep``) before a new session starts.
On Airflow 3.3+ ``ResumableJobMixin`` also keeps the session id in the task state store; the
:class:`ResumableBatchMixin` below is the operator's side of that contract.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import ResumableJobMixin

from airflow.providers.backend.ai._session import params
from airflow.providers.backend.ai._session.state import TERMINAL_STATUSES, Verdict
from airflow.providers.backend.ai.exceptions import BackendAINotFoundError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from pydantic import JsonValue

    from airflow.providers.backend.ai._sdk.spec import BatchSessionSpec
    from airflow.providers.backend.ai._session.finish import FinishAction
    from airflow.providers.backend.ai._session.state import SessionFacts
    from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

#: What ``get_job_status`` reports for a stored session that no longer counts (see ``ResumableJobMixin``):
#: gone from the manager, or made before the task was last cleared. Neither is active nor succeeded, so the
#: mixin starts anew (through ``submit_job``, which still searches the earlier tries by tag).
STORED_SESSION_GONE = "gone"
STORED_SESSION_STALE = "stale"
#: How long a retry waits for an earlier session it destroyed to end when the new session takes the same
#: name: the manager hands back a live (e.g. TERMINATING) session of that name instead of creating one.
NAME_RELEASE_TIMEOUT = 60.0
NAME_RELEASE_POLL = 0.5


class ResumableBatchMixin(ResumableJobMixin):
    """
    The run-batch operator's side of ``ResumableJobMixin``: which session a try watches.

    The mixin (Airflow 3.3+, with ``durable=True`` and a task state store) reads the stored session of an
    earlier try and reconnects to it while it runs, returns at once if it succeeded, and otherwise calls
    :meth:`submit_job` and stores what it returns before anything waits. Below 3.3, without ``durable`` or
    without a store, it only calls :meth:`submit_job`. Either way the wait itself is the operator's (on the
    worker or in the triggerer), so :meth:`poll_until_complete` and :meth:`get_job_result` only name the
    session to watch, in :attr:`watched`.
    """

    if TYPE_CHECKING:  # provided by the operator

        @property
        def hook(self) -> BackendAIHook: ...

        durable: bool
        retries: int | None
        session_name: str | None
        on_finish_action: FinishAction

        def session_spec(self, context: Context) -> BatchSessionSpec: ...

        def create_session(self, context: Context, spec: BatchSessionSpec) -> str: ...

        def publish_session(self, context: Context, session_id: str, session_name: str) -> None: ...

    #: The session this try watches, as (id, name), once chosen.
    watched: tuple[str, str] | None = None
    #: The spec of this try's session, built once per try.
    spec: BatchSessionSpec | None = None
    _stored_facts: SessionFacts | None = None

    def submit_job(self, context: Context) -> JsonValue:
        """Deal with what earlier tries left (found by their tags), then adopt one session or create one."""
        spec = self.spec if self.spec is not None else self.session_spec(context)
        adopted = self._settle_earlier_tries(context, spec)
        if adopted is None:
            session_id = self.create_session(context, spec)
            self.watched = (session_id, spec.name)
            return {"session_id": session_id, "try_number": context["ti"].try_number}
        try_number, facts = adopted
        self._take_over(context, facts.session_id, facts.name or spec.name)
        return {"session_id": facts.session_id, "try_number": try_number}

    def get_job_status(self, external_id: JsonValue, context: Context) -> str:
        """
        The provider's verdict on the stored session (``running``, ``succeeded``, ``failed``).

        ``gone`` when the manager no longer knows it, ``stale`` when an earlier attempt made it (before the
        task was last cleared): a cleared task runs its job again.
        """
        session_id, try_number = stored_session(external_id)
        if session_id is None:
            self.log.warning("Ignoring an unreadable task state store entry %r", external_id)
            return STORED_SESSION_GONE
        if try_number is not None and try_number < self._first_counted_try(context):
            self.log.info(
                "Not reconnecting to Backend.AI session %s of try %d: the task was cleared since",
                session_id,
                try_number,
            )
            return STORED_SESSION_STALE
        try:
            facts = self.hook.get_session_facts(session_id)
        except BackendAINotFoundError:
            self.log.info("Backend.AI session %s of an earlier try is gone", session_id)
            return STORED_SESSION_GONE
        self._stored_facts = facts
        self.log.info(
            "Backend.AI session %s of an earlier try (from the task state store) is %s, result %s",
            session_id,
            facts.status,
            facts.result,
        )
        return facts.verdict.value

    def is_job_active(self, status: str) -> bool:
        return status == Verdict.RUNNING

    def is_job_succeeded(self, status: str) -> bool:
        return status == Verdict.SUCCEEDED

    def poll_until_complete(self, external_id: JsonValue, context: Context) -> None:
        """Name the session to watch; the operator waits for it (or defers) once its id is stored."""
        self._watch_stored(external_id, context)

    def get_job_result(self, external_id: JsonValue, context: Context) -> Any:
        """Name the session to watch; for one that already succeeded, the operator's first read ends the wait."""
        self._watch_stored(external_id, context)
        return None

    def _watch_stored(self, external_id: JsonValue, context: Context) -> None:
        session_id, _ = stored_session(external_id)
        if session_id is None or (self.watched is not None and self.watched[0] == session_id):
            return  # submit_job has already chosen it
        facts = self._stored_facts
        name = (facts.name if facts is not None and facts.session_id == session_id else None) or (
            self.spec.name if self.spec is not None else session_id
        )
        self.log.info(
            "Reconnecting to Backend.AI session %s (%s) of an earlier try (durable=True)", session_id, name
        )
        self._take_over(context, session_id, name)

    def _take_over(self, context: Context, session_id: str, session_name: str) -> None:
        """Watch a session an earlier try made: record it for teardown and publish it as a new one is."""
        self.watched = (session_id, session_name)
        self.publish_session(context, session_id, session_name)

    # -- earlier tries, found by their tags -----------------------------------------------------------

    def _settle_earlier_tries(
        self, context: Context, spec: BatchSessionSpec
    ) -> tuple[int, SessionFacts] | None:
        """
        Deal with the sessions earlier tries left behind (a worker that died could not); return one to adopt.

        With ``durable``, the newest earlier session is adopted unless its job failed. Every other earlier
        session whose job has not ended is destroyed (unless ``keep``) before a new one starts.
        """
        earlier = self._earlier_sessions(context, spec)
        adopted = None
        if self.durable and earlier and earlier[0][1].verdict is not Verdict.FAILED:
            adopted = earlier[0]
            self.log.info(
                "Adopting Backend.AI session %s (%s) of try %d, which is %s (durable=True)",
                adopted[1].session_id,
                adopted[1].name,
                adopted[0],
                adopted[1].status,
            )
        same_name = []
        for _, facts in earlier:
            if facts.verdict is not Verdict.RUNNING or (adopted is not None and facts is adopted[1]):
                continue
            if not self.on_finish_action.destroys(None):
                self.log.warning("Session %s of an earlier try still runs; keeping it", facts.session_id)
            elif self.hook.destroy_session(facts.session_id):
                self.log.info(
                    "Destroyed Backend.AI session %s, left running by an earlier try", facts.session_id
                )
                if facts.name == spec.name:
                    same_name.append(facts.session_id)
        if adopted is None and same_name:
            self._wait_until_ended(same_name, spec.name)
        return adopted

    def _wait_until_ended(self, session_ids: list[str], name: str) -> None:
        """Wait (up to NAME_RELEASE_TIMEOUT) until destroyed sessions no longer hold the name ``name``."""
        from airflow.providers.backend.ai._watch.loop import wait_until_terminal  # not at Dag parse

        self.log.info("Waiting for the destroyed session(s) %s to release the name %r", session_ids, name)
        deadline = time.time() + NAME_RELEASE_TIMEOUT
        for session_id in session_ids:
            status = wait_until_terminal(
                self.hook, session_id, timeout=max(0.0, deadline - time.time()), check_every=NAME_RELEASE_POLL
            )
            if status not in TERMINAL_STATUSES:
                self.log.warning(
                    "Session %s is still %s; creating the new session anyway", session_id, status
                )
                return

    def _earlier_sessions(self, context: Context, spec: BatchSessionSpec) -> list[tuple[int, SessionFacts]]:
        """
        The sessions of this task instance's earlier tries with their try numbers, newest try first.

        They are found by the tags the earlier tries gave them, whatever their names: every live one, and
        the ended ones named as the earlier tries named theirs (the default names, or this try's
        ``session_name``; the manager cannot filter on tags). Tries before the task was last cleared do not
        count.
        """
        ti = context["ti"]
        tries = range(ti.try_number - 1, self._first_counted_try(context) - 1, -1)
        if not tries:
            return []
        try_key = (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
        tags = {params.session_tag(*try_key, try_number): try_number for try_number in tries}
        names = {params.default_session_name(*try_key, try_number) for try_number in tries}
        if self.session_name is not None:
            names.add(spec.name)  # the earlier tries named theirs the same
        found = self.hook.find_sessions_by_tag(tags, names=names)
        earlier = [(tags[tag], facts) for tag, sessions in found.items() for facts in sessions]
        return sorted(earlier, key=lambda item: item[0], reverse=True)  # stable: newest first within a try

    def _first_counted_try(self, context: Context) -> int:
        """The first try since the task was last cleared (Airflow's own ``max_tries - retries + 1``)."""
        max_tries = getattr(context["ti"], "max_tries", None)
        return max(1, max_tries - (self.retries or 0) + 1) if isinstance(max_tries, int) else 1


def stored_session(external_id: Any) -> tuple[str | None, int | None]:
    """Read a task state store entry of the run-batch operator: (session id, try that made it)."""
    if isinstance(external_id, str):
        return external_id, None
    if isinstance(external_id, Mapping) and isinstance(external_id.get("session_id"), str):
        try_number = external_id.get("try_number")
        return external_id["session_id"], try_number if isinstance(try_number, int) else None
    return None, None
