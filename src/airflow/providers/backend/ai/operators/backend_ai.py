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
"""Operators that run batch jobs in Backend.AI sessions, or create and destroy sessions as separate tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, ResumableJobMixin, conf

from airflow.providers.backend.ai.exceptions import (
    BackendAIException,
    BackendAINotFoundError,
    BackendAISessionExistsError,
    BackendAIStartupTimeoutError,
    BackendAITransientError,
    BackendAIUnexpectedAnswerError,
)
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook
from airflow.providers.backend.ai.links.backend_ai import BackendAISessionLink, push_session_url, session_url
from airflow.providers.backend.ai.utils import session_params as params
from airflow.providers.backend.ai.utils.batch_spec import BatchSessionSpec
from airflow.providers.backend.ai.utils.log_follower import LogFollower, task_log_writer
from airflow.providers.backend.ai.utils.outcome import finish_batch, should_destroy
from airflow.providers.backend.ai.utils.session_state import TERMINAL_STATUSES, Verdict
from airflow.providers.backend.ai.utils.trigger_events import (
    SESSION_ID_XCOM_KEY,
    facts_from_event,
    validate_trigger_event,
)
from airflow.providers.backend.ai.utils.waiting import read_final_log, wait_for_session, wait_until_terminal
from airflow.providers.backend.ai.version_compat import AIRFLOW_V_3_0_PLUS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from pydantic import JsonValue

    from airflow.providers.backend.ai.utils.session_state import SessionFacts

DEFAULT_XCOM_LOG_LIMIT = 10_000
#: Extra seconds a deferred run may take beyond startup_timeout + batch_timeout (the manager's own lag).
DEFERRAL_GRACE = 60
#: What ``get_job_status`` reports for a stored session that no longer counts (see ``ResumableJobMixin``):
#: gone from the manager, or made before the task was last cleared. Neither is active nor succeeded, so the
#: mixin starts anew (through ``submit_job``, which still searches the earlier tries by tag).
STORED_SESSION_GONE = "gone"
STORED_SESSION_STALE = "stale"
#: How long a retry waits for an earlier session it destroyed to end when the new session takes the same
#: name: the manager hands back a live (e.g. TERMINATING) session of that name instead of creating one.
NAME_RELEASE_TIMEOUT = 60.0
NAME_RELEASE_POLL = 0.5


def _is_unrendered(value: Any) -> bool:
    """True for a value whose final form is only known at run time: a Jinja template or an XCom reference."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(_is_unrendered(k) or _is_unrendered(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_is_unrendered(item) for item in value)
    return not isinstance(value, int | float | bool | type(None))


class _BackendAISessionOperator(BaseOperator):
    """
    Parameters and checks shared by the operators that create a batch session.

    The Backend.AI resource slots are stored as ``session_resources``: ``resources`` is taken by
    ``BaseOperator`` (Airflow's executor resource hints, converted when assigned).
    """

    template_fields: Sequence[str] = (
        "image",
        "command",
        "bootstrap_script",
        "session_name",
        "environment",
        "session_resources",
        "vfolder_mounts",
        "mount_map",
    )
    operator_extra_links = (BackendAISessionLink(),)
    template_fields_renderers = {
        "command": "bash",
        "bootstrap_script": "bash",
        "environment": "json",
        "session_resources": "json",
        "mount_map": "json",
    }

    def __init__(
        self,
        *,
        image: str,
        command: str,
        bootstrap_script: str | None = None,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        session_name: str | None = None,
        resources: Mapping[str, str | int] | None = None,
        vfolder_mounts: Sequence[str] | None = None,
        mount_map: Mapping[str, str] | None = None,
        environment: Mapping[str, str] | None = None,
        cluster_size: int = 1,
        cluster_mode: str = "single-node",
        domain_name: str | None = None,
        group_name: str | None = None,
        architecture: str | None = None,
        scaling_group: str | None = None,
        startup_timeout: float = 600,
        batch_timeout: int | None = None,
        poll_interval: float = 15,
        use_event_stream: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.command = command
        self.bootstrap_script = bootstrap_script
        self.backend_ai_conn_id = backend_ai_conn_id
        self.session_name = session_name
        self.session_resources = resources
        self.vfolder_mounts = vfolder_mounts
        self.mount_map = mount_map
        self.environment = environment
        self.cluster_size = params.check_cluster_size(cluster_size)
        self.cluster_mode = params.check_choice("cluster_mode", cluster_mode, params.CLUSTER_MODES)
        self.domain_name = domain_name
        self.group_name = group_name
        self.architecture = architecture
        self.scaling_group = scaling_group
        self.startup_timeout = params.check_positive_number("startup_timeout", startup_timeout)
        timeout = params.check_optional_positive_number("batch_timeout", batch_timeout)
        self.batch_timeout = None if timeout is None else max(1, round(timeout))
        self.poll_interval = params.check_positive_number("poll_interval", poll_interval)
        self.use_event_stream = use_event_stream
        self.session_id: str | None = None
        self._check_session_fields(only_rendered=True)

    def _check_session_fields(self, *, only_rendered: bool) -> dict[str, Any]:
        """
        Validate the templated session fields and return them normalised.

        At construction (``only_rendered``) values that still hold templates are skipped; after rendering
        every value is checked.
        """

        def check(name: str, value: Any, checker: Any) -> Any:
            if only_rendered and _is_unrendered(value):
                return value
            return checker(value)

        return {
            "image": check("image", self.image, lambda v: params.check_non_empty_string("image", v)),
            "command": check("command", self.command, lambda v: params.check_non_empty_string("command", v)),
            "session_name": check(
                "session_name",
                self.session_name,
                lambda v: None if v is None else params.check_session_name(v),
            ),
            "resources": check("resources", self.session_resources, params.check_resources),
            "vfolder_mounts": check(
                "vfolder_mounts", self.vfolder_mounts, lambda v: params.check_string_list("vfolder_mounts", v)
            ),
            "mount_map": check(
                "mount_map", self.mount_map, lambda v: params.check_string_mapping("mount_map", v)
            ),
            "environment": check(
                "environment", self.environment, lambda v: params.check_string_mapping("environment", v)
            ),
        }

    @cached_property
    def hook(self) -> BackendAIHook:
        return BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)

    def session_spec(self, context: Context) -> BatchSessionSpec:
        """The session to create, from the rendered fields; raises ``ValueError`` for invalid values."""
        fields = self._check_session_fields(only_rendered=False)
        ti = context["ti"]
        try_key = (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1), ti.try_number)
        name = fields["session_name"] or params.default_session_name(*try_key)
        return BatchSessionSpec(
            image=fields["image"],
            command=fields["command"],
            name=name,
            tag=params.session_tag(*try_key),
            bootstrap_script=self.bootstrap_script or None,
            resources=fields["resources"],
            vfolder_mounts=fields["vfolder_mounts"],
            mount_map=fields["mount_map"],
            environment=fields["environment"],
            cluster_size=self.cluster_size,
            cluster_mode=self.cluster_mode,
            domain_name=self.domain_name,
            group_name=self.group_name,
            batch_timeout=self.batch_timeout,
            architecture=self.architecture,
            scaling_group=self.scaling_group,
        )

    def create_session(self, context: Context, spec: BatchSessionSpec) -> str:
        """Enqueue the session and record its id at once, so that every later path can clean it up."""
        try:
            created = self.hook.create_batch_session(spec)
        except (BackendAITransientError, BackendAIUnexpectedAnswerError, BackendAISessionExistsError):
            self._clean_up_failed_create(spec)
            raise
        self.session_id = created.session_id
        self.log.info("Created Backend.AI batch session %s (%s)", created.session_id, created.name)
        context["ti"].xcom_push(key=SESSION_ID_XCOM_KEY, value=created.session_id)
        context["ti"].xcom_push(key="session_name", value=created.name)
        push_session_url(context["ti"], session_url(self.hook.settings.webui_url, created.session_id))
        return created.session_id

    def _clean_up_failed_create(self, spec: BatchSessionSpec) -> None:
        """
        The create failed without a readable answer, yet the server may have made the session: find it by
        its name and tag and destroy it (unless ``keep``), or nobody would ever watch or end it.
        """
        try:
            self.session_id = self.hook.find_session(spec.name, tag=spec.tag).session_id
        except BackendAINotFoundError:
            return
        except Exception as exc:  # the create's own error is the one to report
            self.log.error(
                "Could not check whether the failed create left session %r behind: %s", spec.name, exc
            )
            return
        if not should_destroy(getattr(self, "on_finish_action", "destroy"), None):
            self.log.warning("Keeping Backend.AI session %s, made by the failed create", self.session_id)
            return
        try:
            self.destroy_session("its create request failed")
        except Exception as exc:
            self.log.error("Could not destroy Backend.AI session %s: %s", self.session_id, exc)

    def destroy_session(self, reason: str) -> None:
        if self.session_id is None:
            return
        if self.hook.destroy_session(self.session_id):
            self.log.info("Destroyed Backend.AI session %s (%s)", self.session_id, reason)
        else:
            self.log.info("Backend.AI session %s was already gone", self.session_id)

    def on_kill(self) -> None:
        """
        Destroy the session when the task is killed, unless told to keep it.

        This may run on another thread than ``execute``, so it uses a hook (and SDK session) of its own.
        """
        if self.session_id is None or getattr(self, "on_finish_action", "destroy") == "keep":
            return
        try:
            if BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id).destroy_session(self.session_id):
                self.log.info("Destroyed Backend.AI session %s because the task was killed", self.session_id)
        except Exception:
            self.log.exception("Could not destroy Backend.AI session %s on kill", self.session_id)


class BackendAIRunBatchOperator(ResumableJobMixin, _BackendAISessionOperator):
    """
    Run a command in a Backend.AI batch session, wait for it to end, and return its result and log.

    The session runs ``bootstrap_script`` and then ``command``; the task succeeds when the command exits 0.
    The container log is written into the task log and returned (truncated) in the XCom value
    ``{"session_id", "session_name", "status", "result", "status_info", "logs"}``. A failed, timed out or
    cancelled job raises :class:`~airflow.providers.backend.ai.exceptions.BackendAIJobFailedError` quoting
    the end of the log. The session is destroyed at the end according to ``on_finish_action``.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:BackendAIRunBatchOperator` and the connection :ref:`howto/connection:backend_ai`.

    :param image: Container image of the session, e.g. ``cr.backend.ai/stable/python:3.9-ubuntu20.04``. (templated)
    :param command: Shell command the batch session runs; the job. (templated)
    :param bootstrap_script: Script run in the container before ``command``. (templated)
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param session_name: Session name (4-64 characters of letters, digits, ``_.-``). By default a name derived
        from the Dag, task, run and try, unique per try, so a retry never reuses an earlier session. (templated)
    :param resources: Backend.AI resource slots, e.g. ``{"cpu": 4, "mem": "8g", "cuda.devices": 1}``. Stored in
        the ``session_resources`` attribute: ``resources`` belongs to ``BaseOperator``. (templated)
    :param vfolder_mounts: Names of existing virtual folders to mount. (templated)
    :param mount_map: Mount path per virtual folder, e.g. ``{"data": "/home/work/data"}``. (templated)
    :param environment: Environment variables of the session. (templated)
    :param cluster_size: Number of containers of the session.
    :param cluster_mode: ``single-node`` or ``multi-node``.
    :param domain_name: Domain of the session; the connection's by default.
    :param group_name: Project (group) of the session; the connection's by default.
    :param architecture: CPU architecture of the image; the worker's by default (as the SDK does).
    :param scaling_group: Resource group (scaling group) to schedule the session in.
    :param startup_timeout: Seconds the session may take to start running; then it is destroyed and the task
        fails with :class:`~airflow.providers.backend.ai.exceptions.BackendAIStartupTimeoutError`.
    :param batch_timeout: Seconds the job may run; Backend.AI then kills it and the task fails.
    :param poll_interval: Longest pause between two status reads, in seconds. While the manager's event stream
        is open, the job's end is known from its event within milliseconds and the state is read once per
        interval as a safety net; without the stream, reads start every 0.25 s and slow down to this interval.
    :param use_event_stream: Learn of the job's end from the manager's session event stream (one stream per
        connection and process, shared by all waiting tasks); poll alone when False or when the stream is
        not available (a log line then says why).
    :param on_finish_action: ``destroy`` (default) the session at the end, ``keep`` it, or
        ``destroy_on_success`` (keep failed sessions for debugging). A job that did not end (startup timeout,
        killed task) is destroyed unless the action is ``keep``.
    :param xcom_log_limit: Characters of the log kept in the XCom value (the end of the log is kept).
    :param log_streaming: Copy the session's log into the task log while the job runs (each poll reads it),
        not only at the end. Deferred tasks stream from the triggerer on Airflow 3.
    :param deferrable: Wait in the triggerer instead of occupying a worker slot.
    :param durable: When a retry finds the session of an earlier try (its worker died), adopt it: wait for it
        if it still runs, return its result if it succeeded, start anew only if it failed; so a job is never
        run twice because a worker died. On Airflow 3.3+ the session id is kept in the task state store
        (``ResumableJobMixin``); earlier tries' sessions are also found by their per-try Backend.AI tag, on
        every Airflow line and with any ``session_name``. By default (``False``) a session an earlier try
        left running is destroyed (unless ``keep``) before the retry starts anew.
    """

    #: The task state store key of the session a durable run watches (Airflow 3.3+): a JSON object with the
    #: ``session_id`` and the ``try_number`` that made it. Renaming it would orphan the sessions of tasks
    #: that are being retried during an upgrade.
    external_id_key = "backend_ai_session"

    def __init__(
        self,
        *,
        on_finish_action: str = "destroy",
        xcom_log_limit: int = DEFAULT_XCOM_LOG_LIMIT,
        log_streaming: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        durable: bool = False,
        **kwargs: Any,
    ) -> None:
        # ``durable`` is not passed on: the mixin defaults it to True on Airflow 3.3+, and its stand-in on
        # older lines warns and turns it off, while here it also drives the tag search on every line.
        super().__init__(**kwargs)
        if not isinstance(durable, bool):
            raise ValueError(f"Invalid durable {durable!r}: expected True or False")
        self.durable = durable
        self.on_finish_action = params.check_choice(
            "on_finish_action", on_finish_action, params.ON_FINISH_ACTIONS
        )
        if isinstance(xcom_log_limit, bool) or not isinstance(xcom_log_limit, int) or xcom_log_limit < 0:
            raise ValueError(f"Invalid xcom_log_limit {xcom_log_limit!r}: expected a non-negative integer")
        self.xcom_log_limit = xcom_log_limit
        self.log_streaming = log_streaming
        self.deferrable = deferrable
        self.effective_session_name: str | None = None
        self._spec: BatchSessionSpec | None = None
        self._watched: tuple[str, str] | None = None
        self._stored_facts: SessionFacts | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        self._spec = self.session_spec(context)
        with self.hook.get_conn():
            try:
                # Picks the session to watch: the stored one of an earlier try (durable, Airflow 3.3+), one
                # found by the earlier tries' tags, or a new one; a new one is stored before any wait.
                self.execute_resumable(context)
            except BaseException:
                if self.session_id is not None:  # made or adopted, then storing its id failed
                    self._tear_down(None)
                raise
            if self._watched is None:
                raise RuntimeError("no Backend.AI session was created or adopted")
            session_id, session_name = self._watched
            follower = self._log_follower(session_id)
            try:
                if self.deferrable:
                    facts = self.hook.get_session_facts(session_id)
                else:
                    facts = wait_for_session(
                        self.hook,
                        session_id,
                        startup_timeout=self.startup_timeout,
                        poll_interval=self.poll_interval,
                        log=self.log,
                        on_read=lambda facts: self._stream_log(follower, facts),
                        use_event_stream=self.use_event_stream,
                    )
            except BaseException:
                self._tear_down(None)
                raise
            if facts.verdict is not Verdict.RUNNING:
                return self._finish(facts, session_name, follower)
        self._defer(session_id, session_name)

    # -- ResumableJobMixin: which session to watch -----------------------------------------------------
    #
    # The mixin (Airflow 3.3+, with durable=True and a task state store) reads the stored session of an
    # earlier try and reconnects to it while it runs, returns at once if it succeeded, and otherwise calls
    # submit_job and stores what it returns before anything waits. Below 3.3, without durable or without a
    # store, it only calls submit_job. Either way the wait itself is the one in execute() (on the worker or
    # in the triggerer), so poll_until_complete and get_job_result only name the session to watch.

    def submit_job(self, context: Context) -> JsonValue:
        """Deal with what earlier tries left (found by their tags), then adopt one session or create one."""
        spec = self._spec if self._spec is not None else self.session_spec(context)
        adopted = self._settle_earlier_tries(context, spec)
        if adopted is None:
            session_id = self.create_session(context, spec)
            self._watched = (session_id, spec.name)
            return {"session_id": session_id, "try_number": context["ti"].try_number}
        try_number, facts = adopted
        self._watch(context, facts.session_id, facts.name or spec.name)
        return {"session_id": facts.session_id, "try_number": try_number}

    def get_job_status(self, external_id: JsonValue, context: Context) -> str:
        """
        The provider's verdict on the stored session (``running``, ``succeeded``, ``failed``).

        ``gone`` when the manager no longer knows it, ``stale`` when an earlier attempt made it (before the
        task was last cleared): a cleared task runs its job again.
        """
        session_id, try_number = _stored_session(external_id)
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
        """Name the session to watch; execute() waits for it (or defers) once its id is stored."""
        self._watch_stored(external_id, context)

    def get_job_result(self, external_id: JsonValue, context: Context) -> Any:
        """Name the session to watch; for one that already succeeded, execute()'s first read ends the wait."""
        self._watch_stored(external_id, context)
        return None

    def _watch_stored(self, external_id: JsonValue, context: Context) -> None:
        session_id, _ = _stored_session(external_id)
        if session_id is None or (self._watched is not None and self._watched[0] == session_id):
            return  # submit_job has already chosen it
        facts = self._stored_facts
        name = (facts.name if facts is not None and facts.session_id == session_id else None) or (
            self._spec.name if self._spec is not None else session_id
        )
        self.log.info(
            "Reconnecting to Backend.AI session %s (%s) of an earlier try (durable=True)", session_id, name
        )
        self._watch(context, session_id, name)

    def _watch(self, context: Context, session_id: str, session_name: str) -> None:
        """Take over a session an earlier try made: record it for teardown and publish it as a new one is."""
        self.session_id = session_id
        self._watched = (session_id, session_name)
        context["ti"].xcom_push(key=SESSION_ID_XCOM_KEY, value=session_id)
        context["ti"].xcom_push(key="session_name", value=session_name)
        push_session_url(context["ti"], session_url(self.hook.settings.webui_url, session_id))

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
            if not should_destroy(self.on_finish_action, None):
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

        They are found by the tags the earlier tries gave them (``session_params.session_tag``), whatever
        their names: every live one, and the ended ones named as the earlier tries named theirs (the
        default names, or this try's ``session_name``; the manager cannot filter on tags). Tries before
        the task was last cleared do not count.
        """
        ti = context["ti"]
        tries = range(ti.try_number - 1, self._first_counted_try(context) - 1, -1)
        if not tries:
            return []
        try_key = (ti.dag_id, ti.task_id, ti.run_id, getattr(ti, "map_index", -1))
        tags = {params.session_tag(*try_key, try_number): try_number for try_number in tries}
        names = {params.default_session_name(*try_key, try_number) for try_number in tries}
        if self.session_name is not None:
            names.add(spec.name)
        found = self.hook.find_sessions_by_tag(tags, names=names)
        earlier = [(tags[tag], facts) for tag, sessions in found.items() for facts in sessions]
        return sorted(earlier, key=lambda item: item[0], reverse=True)  # stable: newest first within a try

    def _first_counted_try(self, context: Context) -> int:
        """The first try since the task was last cleared (Airflow's own ``max_tries - retries + 1``)."""
        max_tries = getattr(context["ti"], "max_tries", None)
        return max(1, max_tries - (self.retries or 0) + 1) if isinstance(max_tries, int) else 1

    def _log_follower(self, session_id: str, start: int = 0) -> LogFollower:
        return LogFollower(task_log_writer(self.log, session_id), start=start)

    def _stream_log(self, follower: LogFollower, facts: SessionFacts) -> None:
        """Copy new log lines into the task log while the job runs (``log_streaming``)."""
        if not self.log_streaming or not follower.streaming or not facts.has_started:
            return
        try:
            follower.update(self.hook.get_session_logs(facts.session_id))
        except BackendAIException as exc:
            self.log.warning(
                "Could not read the session log (%s); it is written in full when the job ends", exc
            )
            return
        if not follower.streaming:
            self.log.info(
                "The session log is over %d characters: no longer streamed, the rest follows when the job ends",
                follower.stream_limit,
            )

    def _defer(self, session_id: str, session_name: str) -> NoReturn:
        """
        Hand the waiting to the triggerer with absolute deadlines.

        Airflow does not enforce ``execution_timeout`` once a task is deferred, and a deferral that times out
        on Airflow's side never reaches ``execute_complete``, so the trigger enforces the deadlines itself
        (and reports a ``timeout`` event, which destroys the session); Airflow's own timeout is a backstop.
        """
        from airflow.providers.backend.ai.triggers.backend_ai import BackendAISessionTrigger

        now = time.time()
        run_limit = self.batch_timeout or (
            self.execution_timeout.total_seconds() if self.execution_timeout else None
        )
        end_deadline = None if run_limit is None else now + self.startup_timeout + run_limit + DEFERRAL_GRACE
        self.defer(
            trigger=BackendAISessionTrigger(
                session_id=session_id,
                backend_ai_conn_id=self.backend_ai_conn_id,
                poll_interval=self.poll_interval,
                session_name=session_name,
                startup_deadline=now + self.startup_timeout,
                end_deadline=end_deadline,
                destroy_on_kill=self.on_finish_action != "keep",
                stream_logs=self.log_streaming and AIRFLOW_V_3_0_PLUS,
                use_event_stream=self.use_event_stream,
            ),
            method_name="execute_complete",
            timeout=None if end_deadline is None else timedelta(seconds=end_deadline - now + DEFERRAL_GRACE),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: the same outcome, log and teardown as the worker path."""
        event = validate_trigger_event(event)
        self.session_id = event["session_id"]
        with self.hook.get_conn():
            if event["status"] in ("success", "failed"):
                # The trigger may have streamed the first part of the log already (Airflow 3).
                follower = self._log_follower(event["session_id"], start=event.get("log_offset") or 0)
                return self._finish(facts_from_event(event), event["session_name"], follower)
            self._tear_down(None)
        if event["status"] == "timeout":
            raise BackendAIStartupTimeoutError(
                f"{event['message']}; the session was destroyed"
                if self.on_finish_action != "keep"
                else event["message"],
                session_id=event["session_id"],
                status=event["session_status"],
                status_info=event["status_info"],
            )
        raise BackendAIException(event["message"])

    def _finish(self, facts: SessionFacts, session_name: str | None, follower: LogFollower) -> dict[str, Any]:
        """
        Write the rest of the log, apply ``on_finish_action`` and return the XCom value (or raise).

        The job's outcome is known before the log is read: a log that cannot be fetched is noted, not fatal,
        so a finished paid job is never failed (and retried) for it.
        """
        try:
            try:
                logs = read_final_log(self.hook, facts.session_id, log=self.log)
            except BackendAIException as exc:
                self.log.warning(
                    "Could not fetch the log of Backend.AI session %s: %s", facts.session_id, exc
                )
                logs = f"[the session log could not be fetched: {exc}]"
            else:
                follower.finish(logs)
            return finish_batch(facts, logs, session_name=session_name, xcom_log_limit=self.xcom_log_limit)
        finally:
            self._tear_down(facts)

    def _tear_down(self, facts: SessionFacts | None) -> None:
        """
        Destroy or keep the session per ``on_finish_action``; ``facts`` is None if the job did not end.

        A failed destroy is logged, not raised: it must not hide the job's outcome (or the error that
        ended the wait), and a session whose job has ended terminates by itself.
        """
        verdict = facts.verdict if facts is not None else None
        if not should_destroy(self.on_finish_action, verdict):
            self.log.info(
                "Keeping Backend.AI session %s (on_finish_action=%s)", self.session_id, self.on_finish_action
            )
            return
        try:
            self.destroy_session("the job ended" if verdict is not None else "the job did not end")
        except BackendAIException as exc:
            self.log.error(
                "Could not destroy Backend.AI session %s: %s; %s",
                self.session_id,
                exc,
                "its job has ended, so it terminates by itself"
                if verdict is not None
                else "it may run until its job ends; destroy it by hand",
            )


class BackendAICreateSessionOperator(_BackendAISessionOperator):
    """
    Create a Backend.AI batch session and return ``{"session_id", "session_name"}`` without waiting for its end.

    Use it with :class:`~airflow.providers.backend.ai.sensors.backend_ai.BackendAISessionSensor` and
    :class:`BackendAIDestroySessionOperator` when waiting and cleaning up are separate tasks. The session is
    destroyed if this task fails or is killed before handing it over.

    .. seealso::
        :ref:`howto/operator:BackendAICreateSessionOperator`

    Takes the session parameters of :class:`BackendAIRunBatchOperator` (from ``image`` to ``poll_interval``),
    plus:

    :param wait_for_start: Wait (up to ``startup_timeout``) until the session has started running.
    """

    def __init__(self, *, wait_for_start: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_for_start = wait_for_start

    def execute(self, context: Context) -> dict[str, str]:
        spec = self.session_spec(context)
        with self.hook.get_conn():
            session_id = self.create_session(context, spec)
            handed_over = False
            try:
                if self.wait_for_start:
                    wait_for_session(
                        self.hook,
                        session_id,
                        startup_timeout=self.startup_timeout,
                        poll_interval=self.poll_interval,
                        log=self.log,
                        until_started=True,
                        use_event_stream=False,  # the stream wakes on ends only; starting is polled
                    )
                handed_over = True
            finally:
                if not handed_over:
                    self.destroy_session("the task failed before handing the session over")
        return {"session_id": session_id, "session_name": spec.name}


class BackendAIDestroySessionOperator(BaseOperator):
    """
    Destroy a Backend.AI session; succeed if it is already gone. Suited to ``trigger_rule="all_done"`` cleanup.

    .. seealso::
        :ref:`howto/operator:BackendAIDestroySessionOperator`

    :param session_id: Session id, or the name of a live session. (templated)
    :param backend_ai_conn_id: The ``backend_ai`` connection to use.
    :param forced: Skip the graceful termination.
    """

    template_fields: Sequence[str] = ("session_id",)

    def __init__(
        self,
        *,
        session_id: str,
        backend_ai_conn_id: str = BackendAIHook.default_conn_name,
        forced: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session_id = session_id
        self.backend_ai_conn_id = backend_ai_conn_id
        self.forced = forced

    def execute(self, context: Context) -> bool:
        session = params.check_non_empty_string("session_id", self.session_id)
        hook = BackendAIHook(backend_ai_conn_id=self.backend_ai_conn_id)
        if hook.destroy_session(session, forced=self.forced):
            self.log.info("Destroyed Backend.AI session %s", session)
            return True
        self.log.info("Backend.AI session %s was already gone; nothing to destroy", session)
        return False


def _stored_session(external_id: Any) -> tuple[str | None, int | None]:
    """Read a task state store entry of ``BackendAIRunBatchOperator``: (session id, try that made it)."""
    if isinstance(external_id, str):
        return external_id, None
    if isinstance(external_id, Mapping) and isinstance(external_id.get("session_id"), str):
        try_number = external_id.get("try_number")
        return external_id["session_id"], try_number if isinstance(try_number, int) else None
    return None, None
