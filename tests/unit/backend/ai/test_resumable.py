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
A retry after a dead worker: the per-try session tag, the search of earlier tries' sessions by tag (any
session name), and ``durable=True`` through ``ResumableJobMixin`` and the task state store (Airflow 3.3+).
"""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
import time_machine
from airflow.providers.common.compat.sdk import TaskDeferred
from tests_common.test_utils.version_compat import AIRFLOW_V_3_3_PLUS

from airflow.providers.backend.ai._session.params import default_session_name, session_tag
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import BackendAINotFoundError
from airflow.providers.backend.ai.hooks.backend_ai import CreatedSession
from airflow.providers.backend.ai.operators.backend_ai import BackendAIRunBatchOperator

NEW = "00000000-0000-4000-8000-00000000000a"  # the session this try creates
OLD1 = "00000000-0000-4000-8000-000000000001"  # left by try 1
OLD2 = "00000000-0000-4000-8000-000000000002"  # left by try 2
RUN = ("dag", "train", "manual__2026-01-01", -1)
KEY = BackendAIRunBatchOperator.external_id_key

needs_mixin = pytest.mark.skipif(not AIRFLOW_V_3_3_PLUS, reason="ResumableJobMixin needs Airflow 3.3+")


def running(sid: str, name: str = "old") -> SessionFacts:
    return SessionFacts(sid, "RUNNING", name=name)


def succeeded(sid: str, name: str = "old") -> SessionFacts:
    return SessionFacts(sid, "TERMINATED", "SUCCESS", "task-finished", name)


def failed(sid: str, name: str = "old") -> SessionFacts:
    return SessionFacts(sid, "TERMINATED", "FAILURE", "task-failed", name)


def tag(try_number: int) -> str:
    return session_tag(*RUN, try_number)


def operator(**kwargs) -> BackendAIRunBatchOperator:
    kwargs.setdefault("retries", 3)
    return BackendAIRunBatchOperator(task_id="train", image="python:3.9", command="python train.py", **kwargs)


class FakeTaskStateStore:
    """The ``get``/``set`` of ``context["task_state_store"]`` over a dict, counting the writes."""

    def __init__(self, stored: dict | None = None, *, fail_set: bool = False) -> None:
        self.data = dict(stored or {})
        self.sets: list[tuple[str, object]] = []
        self.fail_set = fail_set

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value, **kwargs) -> None:
        if self.fail_set:
            raise RuntimeError("the API server is down")
        self.sets.append((key, value))
        self.data[key] = value


@pytest.fixture
def hook_calls(hook_calls):
    """This module's sessions: the new one is NEW, and a read finds a job that succeeded."""
    hook_calls.create.side_effect = lambda self, spec: CreatedSession(NEW, spec.name, True, "PENDING")
    hook_calls.facts.side_effect = lambda self, sid: succeeded(sid, "new")
    hook_calls.logs.return_value = "done\n"
    with mock.patch("airflow.providers.backend.ai._watch.loop.time.sleep"):
        yield hook_calls


def destroyed(hook_calls) -> list[str]:
    return [c.args[1] for c in hook_calls.destroy.call_args_list]


class TestSessionTag:
    def test_deterministic_per_try_and_short_enough_for_the_manager(self):
        tags = {session_tag(*RUN, t) for t in (1, 2, 3)}
        tags |= {session_tag("dag", "train", "other-run", -1, 1), session_tag("dag", "train", RUN[2], 4, 1)}
        tags |= {session_tag("dag", "other-task", RUN[2], -1, 1), session_tag("dag2", "train", RUN[2], -1, 1)}
        assert len(tags) == 7
        assert session_tag(*RUN, 2) == session_tag(*RUN, 2)
        # The manager keeps tags in a VARCHAR(64) column; the emulator has no limit.
        assert all(t.startswith("af-") and len(t) == 35 for t in tags)

    def test_long_and_non_ascii_ids_still_give_a_short_tag(self):
        assert len(session_tag("데이터" * 100, "t" * 250, "r" * 250, 10_000, 99)) == 35

    def test_every_create_carries_the_tag_of_its_try(self, hook_calls, make_context):
        operator().execute(make_context(try_number=1))
        operator(session_name="custom-name").execute(make_context(try_number=2))
        tags = [c.args[1].tag for c in hook_calls.create.call_args_list]
        assert tags == [tag(1), tag(2)]


class TestEarlierTriesByTag:
    def test_a_first_try_searches_nothing(self, hook_calls, make_context):
        operator(durable=True).execute(make_context(try_number=1))
        hook_calls.find_tags.assert_not_called()

    def test_tries_before_the_last_clear_do_not_count(self, hook_calls, make_context):
        # Cleared after try 2 with retries=3: max_tries = 2 + 3 = 5, so try 3 is the first counted try.
        operator(durable=True).execute(make_context(try_number=3, max_tries=5))
        hook_calls.find_tags.assert_not_called()
        hook_calls.create.assert_called_once()
        # One more try after that counts try 3 only.
        operator(durable=True).execute(make_context(try_number=4, max_tries=5))
        (call,) = hook_calls.find_tags.call_args_list
        assert set(call.args[1]) == {tag(3)}

    @pytest.mark.parametrize("session_name", [None, "custom-job"])
    def test_searches_every_earlier_tag_with_the_names_the_tries_used(
        self, hook_calls, session_name, make_context
    ):
        operator(session_name=session_name).execute(make_context(try_number=3))
        (call,) = hook_calls.find_tags.call_args_list
        assert set(call.args[1]) == {tag(1), tag(2)}
        names = {default_session_name(*RUN, 1), default_session_name(*RUN, 2)}
        assert set(call.kwargs["names"]) == (names | {session_name} if session_name else names)

    @pytest.mark.parametrize("session_name", [None, "custom-job"])
    def test_non_durable_destroys_what_still_runs_then_starts_anew(
        self, hook_calls, session_name, make_context
    ):
        hook_calls.find_tags.return_value = {tag(2): [running(OLD2)], tag(1): [failed(OLD1)]}
        result = operator(session_name=session_name).execute(make_context(try_number=3))
        assert result["session_id"] == NEW
        assert destroyed(hook_calls) == [OLD2, NEW]  # the orphan first, the new one at its end
        hook_calls.create.assert_called_once()

    def test_the_orphan_is_destroyed_before_the_create(self, hook_calls, make_context):
        order = []
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1)]}
        hook_calls.destroy.side_effect = lambda self, sid, **kw: order.append(("destroy", sid)) or True
        create = hook_calls.create.side_effect
        hook_calls.create.side_effect = lambda self, spec: (
            order.append(("create", spec.name)) or create(self, spec)
        )
        operator(session_name="custom-job").execute(make_context(try_number=2))
        assert order[:2] == [("destroy", OLD1), ("create", "custom-job")]

    def test_a_destroyed_session_of_the_same_name_is_waited_for_before_the_create(
        self, hook_calls, make_context
    ):
        """The manager hands back a live (TERMINATING) session of the same name instead of creating one."""
        order = []
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1, "custom-job")]}
        ending = iter([SessionFacts(OLD1, "TERMINATING"), SessionFacts(OLD1, "TERMINATED")])

        def read(self, sid):
            order.append(("read", sid))
            return next(ending) if sid == OLD1 else succeeded(sid, "custom-job")

        hook_calls.facts.side_effect = read
        hook_calls.destroy.side_effect = lambda self, sid, **kw: order.append(("destroy", sid)) or True
        create = hook_calls.create.side_effect
        hook_calls.create.side_effect = lambda self, spec: (
            order.append(("create", spec.name)) or create(self, spec)
        )
        operator(session_name="custom-job").execute(make_context(try_number=2))
        assert order[:4] == [("destroy", OLD1), ("read", OLD1), ("read", OLD1), ("create", "custom-job")]

    def test_keep_leaves_an_earlier_session_running(self, hook_calls, make_context):
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1)]}
        operator(on_finish_action="keep").execute(make_context(try_number=2))
        assert destroyed(hook_calls) == []
        hook_calls.create.assert_called_once()

    @pytest.mark.parametrize("session_name", [None, "custom-job"])
    def test_durable_adopts_a_running_session_of_any_name(self, hook_calls, session_name, make_context):
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1, "custom-job")]}
        context = make_context(try_number=2)
        result = operator(durable=True, session_name=session_name).execute(context)
        hook_calls.create.assert_not_called()
        assert (result["session_id"], result["session_name"]) == (OLD1, "custom-job")
        assert [c.args[1] for c in hook_calls.facts.call_args_list] == [OLD1]
        context["ti"].xcom_push.assert_any_call(key="session_id", value=OLD1)
        assert destroyed(hook_calls) == [OLD1]  # at its end, per on_finish_action

    def test_durable_returns_the_result_of_a_job_that_already_succeeded(self, hook_calls, make_context):
        hook_calls.find_tags.return_value = {tag(1): [succeeded(OLD1)]}
        result = operator(durable=True, session_name="custom-job").execute(make_context(try_number=2))
        assert (result["session_id"], result["result"]) == (OLD1, "SUCCESS")
        hook_calls.create.assert_not_called()

    def test_durable_adopts_the_newest_try_and_destroys_other_runners(self, hook_calls, make_context):
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1)], tag(2): [running(OLD2)]}
        result = operator(durable=True).execute(make_context(try_number=3))
        assert result["session_id"] == OLD2
        assert destroyed(hook_calls) == [OLD1, OLD2]
        hook_calls.create.assert_not_called()

    def test_durable_starts_anew_when_the_newest_earlier_job_failed(self, hook_calls, make_context):
        hook_calls.find_tags.return_value = {tag(2): [failed(OLD2)], tag(1): [running(OLD1)]}
        result = operator(durable=True).execute(make_context(try_number=3))
        assert result["session_id"] == NEW
        assert destroyed(hook_calls) == [OLD1, NEW]

    def test_durable_with_a_session_name_is_accepted(self):
        assert operator(durable=True, session_name="mine").durable is True

    def test_durable_must_be_a_bool(self):
        with pytest.raises(ValueError, match="Invalid durable 'yes': expected True or False"):
            operator(durable="yes")


@pytest.mark.skipif(AIRFLOW_V_3_3_PLUS, reason="below Airflow 3.3 the compat stand-in replaces the mixin")
class TestBelowAirflow33:
    def test_durable_is_not_switched_off_by_the_stand_in(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the stand-in warns when durable reaches it
            op = operator(durable=True)
        assert op.durable is True

    def test_a_store_in_the_context_is_not_used(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1)]}
        result = operator(durable=True).execute(make_context(try_number=2, store=store))
        assert result["session_id"] == OLD1  # found by its tag
        assert store.sets == []


@needs_mixin
class TestTaskStateStore:
    """``durable=True`` on Airflow 3.3+: the session id goes through ``ResumableJobMixin``'s task state store."""

    def test_the_operator_is_a_resumable_job(self):
        from airflow.sdk import ResumableJobMixin

        assert isinstance(operator(), ResumableJobMixin)
        assert operator().durable is False  # the mixin's own default (True) is not the provider's

    def test_the_new_session_is_stored_before_the_wait(self, hook_calls, make_context):
        store = FakeTaskStateStore()

        def first_read(self, sid):
            assert store.data[KEY] == {"session_id": NEW, "try_number": 1}
            return succeeded(sid, "new")

        hook_calls.facts.side_effect = first_read
        assert operator(durable=True).execute(make_context(store=store))["session_id"] == NEW
        assert store.sets == [(KEY, {"session_id": NEW, "try_number": 1})]

    @pytest.mark.parametrize("session_name", [None, "custom-job"])
    def test_a_retry_reconnects_to_the_stored_running_session(self, hook_calls, session_name, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        reads = iter([running(OLD1, "custom-job"), running(OLD1, "custom-job")])
        hook_calls.facts.side_effect = lambda self, sid: next(reads, succeeded(sid, "custom-job"))
        context = make_context(try_number=2, store=store)
        result = operator(durable=True, session_name=session_name).execute(context)
        assert (result["session_id"], result["session_name"]) == (OLD1, "custom-job")
        hook_calls.create.assert_not_called()
        hook_calls.find_tags.assert_not_called()  # the store answered; no tag search
        assert store.sets == []
        context["ti"].xcom_push.assert_any_call(key="session_id", value=OLD1)
        assert destroyed(hook_calls) == [OLD1]

    def test_a_retry_returns_the_result_of_a_stored_session_that_succeeded(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        result = operator(durable=True).execute(make_context(try_number=2, store=store))
        assert (result["session_id"], result["result"]) == (OLD1, "SUCCESS")
        hook_calls.create.assert_not_called()
        hook_calls.find_tags.assert_not_called()

    def test_a_failed_stored_session_is_run_again_and_the_new_one_stored(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        hook_calls.facts.side_effect = lambda self, sid: failed(sid) if sid == OLD1 else succeeded(sid, "new")
        hook_calls.find_tags.return_value = {tag(1): [failed(OLD1)]}
        result = operator(durable=True).execute(make_context(try_number=2, store=store))
        assert result["session_id"] == NEW
        assert store.data[KEY] == {"session_id": NEW, "try_number": 2}

    def test_the_tag_search_covers_a_worker_killed_before_the_store_write(self, hook_calls, make_context):
        """Try 1 created its session and died before storing its id: the store is empty."""
        store = FakeTaskStateStore()
        hook_calls.find_tags.return_value = {tag(1): [running(OLD1)]}
        result = operator(durable=True).execute(make_context(try_number=2, store=store))
        assert result["session_id"] == OLD1
        hook_calls.create.assert_not_called()
        assert store.data[KEY] == {"session_id": OLD1, "try_number": 1}  # stored for the next retry

    def test_the_tag_search_finds_a_newer_try_than_the_stored_failed_one(self, hook_calls, make_context):
        """Try 1's job failed (stored); try 2 created a session and died before storing it."""
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        hook_calls.facts.side_effect = lambda self, sid: failed(sid) if sid == OLD1 else succeeded(sid)
        hook_calls.find_tags.return_value = {tag(1): [failed(OLD1)], tag(2): [running(OLD2)]}
        result = operator(durable=True).execute(make_context(try_number=3, store=store))
        assert result["session_id"] == OLD2
        hook_calls.create.assert_not_called()
        assert store.data[KEY] == {"session_id": OLD2, "try_number": 2}

    def test_a_session_stored_before_the_last_clear_is_not_reused(self, hook_calls, make_context):
        # A successful job of an earlier attempt; the user cleared the task (max_tries 3 -> 5) to run it again.
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        result = operator(durable=True).execute(make_context(try_number=3, max_tries=5, store=store))
        assert result["session_id"] == NEW
        assert [c.args[1] for c in hook_calls.facts.call_args_list] == [NEW]  # the stale one is not even read
        assert store.data[KEY] == {"session_id": NEW, "try_number": 3}

    def test_a_stored_session_the_manager_forgot_is_replaced(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})

        def read(self, sid):
            if sid == OLD1:
                raise BackendAINotFoundError("read", status=404)
            return succeeded(sid, "new")

        hook_calls.facts.side_effect = read
        assert operator(durable=True).execute(make_context(try_number=2, store=store))["session_id"] == NEW

    def test_an_unreadable_entry_is_ignored(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: [1, 2]})
        assert operator(durable=True).execute(make_context(try_number=2, store=store))["session_id"] == NEW

    def test_a_bare_session_id_is_accepted(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: OLD1})
        assert operator(durable=True).execute(make_context(try_number=2, store=store))["session_id"] == OLD1

    def test_non_durable_leaves_the_store_alone(self, hook_calls, make_context):
        store = mock.create_autospec(FakeTaskStateStore, instance=True)
        operator().execute(make_context(store=store))
        store.get.assert_not_called()
        store.set.assert_not_called()

    def test_a_failed_store_write_destroys_the_new_session(self, hook_calls, make_context):
        store = FakeTaskStateStore(fail_set=True)
        with pytest.raises(RuntimeError, match="the API server is down"):
            operator(durable=True).execute(make_context(store=store))
        assert destroyed(hook_calls) == [NEW]

    @time_machine.travel("2026-01-01 00:00:00", tick=False)
    def test_deferrable_durable_reconnects_then_defers(self, hook_calls, make_context):
        store = FakeTaskStateStore({KEY: {"session_id": OLD1, "try_number": 1}})
        hook_calls.facts.side_effect = lambda self, sid: running(sid, "custom-job")
        with pytest.raises(TaskDeferred) as deferred:
            operator(durable=True, deferrable=True).execute(make_context(try_number=2, store=store))
        assert deferred.value.trigger.session_id == OLD1
        assert deferred.value.trigger.session_name == "custom-job"
        hook_calls.create.assert_not_called()
        assert destroyed(hook_calls) == []

    @time_machine.travel("2026-01-01 00:00:00", tick=False)
    def test_deferrable_durable_stores_the_new_session_then_defers(self, hook_calls, make_context):
        store = FakeTaskStateStore()
        hook_calls.facts.side_effect = lambda self, sid: running(sid, "new")
        with pytest.raises(TaskDeferred) as deferred:
            operator(durable=True, deferrable=True).execute(make_context(store=store))
        assert deferred.value.trigger.session_id == NEW
        assert store.data[KEY] == {"session_id": NEW, "try_number": 1}
