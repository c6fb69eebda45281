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
from __future__ import annotations

import logging
from unittest import mock

from airflow.providers.backend.ai._watch.log_follower import LogFollower, task_log_writer


def follower(limit: int = 10_000) -> tuple[LogFollower, list[str]]:
    lines: list[str] = []
    return LogFollower(lines.append, stream_limit=limit), lines


def test_emits_each_complete_line_once():
    log, lines = follower()
    log.update("")
    log.update("one\ntw")
    assert lines == ["one"]
    log.update("one\ntwo\nthr")
    log.update("one\ntwo\nthr")  # nothing new
    assert lines == ["one", "two"]
    log.finish("one\ntwo\nthree")
    assert lines == ["one", "two", "three"]
    log.finish("one\ntwo\nthree")
    assert lines == ["one", "two", "three"]


def test_blank_lines_and_crlf_are_kept_as_lines():
    log, lines = follower()
    log.update("a\r\n\nb\n")
    assert lines == ["a", "", "b"]


def test_truncated_log_is_resynchronised_on_what_was_written():
    log, lines = follower()
    log.update("l1\nl2\nl3\n")
    log.update("l3\nl4\n")  # the server dropped the head of the log
    assert lines == ["l1", "l2", "l3", "l4"]


def test_rotated_log_says_so_and_starts_over():
    log, lines = follower()
    log.update("old-1\nold-2\n")
    log.update("new-1\n")
    assert lines == [
        "old-1",
        "old-2",
        "[the Backend.AI log was truncated or rotated; continuing from what it holds now]",
        "new-1",
    ]


def test_streaming_stops_above_the_limit():
    log, lines = follower(limit=10)
    log.update("short\n")
    assert log.streaming
    log.update("short\nmuch longer line\n")
    assert not log.streaming
    assert lines == ["short", "much longer line"]


def test_finish_without_updates_writes_everything():
    log, lines = follower()
    log.finish("x\ny")
    assert lines == ["x", "y"]


# -- a rerun after a preemption: the manager then has only the rerun's log ---------------------------------

R1, R2 = "2026-12-06T10:00:10+00:00", "2026-12-06T10:03:00+00:00"


def test_a_new_run_is_announced_and_followed_from_its_top():
    log, lines = follower()
    log.update("start\nstep 1\n", R1)
    log.update("start\n", R2)  # the rerun prints the same lines: they are new, not what was written
    log.finish("start\nstep 1\ndone\n", R2)
    assert lines == [
        "start",
        "step 1",
        f"[the job was preempted and runs again from the beginning: the log of its run since {R2} follows]",
        "start",
        "step 1",
        "done",
    ]
    assert log.run == R2


def test_the_run_handed_over_by_the_trigger_is_continued():
    lines: list[str] = []
    log = LogFollower(lines.append, start=len("start\n"), run=R2)
    log.finish("start\ndone\n", R2)
    assert lines == ["done"]


def test_a_rerun_the_trigger_did_not_see_starts_over_on_the_final_read():
    lines: list[str] = []
    log = LogFollower(lines.append, start=len("first run\n"), run=R1)
    log.finish("rerun\n", R2)
    assert lines[1:] == ["rerun"]
    assert "runs again from the beginning" in lines[0]


def test_without_run_dates_nothing_changes():
    """An event of an earlier trigger has no log_run; a manager's answer may lack status_history."""
    lines: list[str] = []
    log = LogFollower(lines.append, start=len("one\n"))
    log.finish("one\ntwo\n", R1)  # the first run named is adopted: no announcement
    log.update("one\ntwo\nthree\n", None)  # a copy without a run date belongs to the run followed
    assert lines == ["two", "three"]
    assert log.run == R1


def test_the_task_log_writer_heads_the_log_and_leaves_out_hidden_lines():
    log = mock.create_autospec(logging.Logger, instance=True)
    emit = task_log_writer(log, "sid", hide="@@frame@@ ")
    emit("@@frame@@ B 1")  # hidden lines do not start the log either
    assert log.info.call_args_list == []
    for line in ("epoch 1", " @@frame@@ escaped by the runner", "@@frame@@ E 0"):
        emit(line)
    assert log.info.call_args_list == [
        mock.call("Log of Backend.AI session %s:", "sid"),
        mock.call("%s", "epoch 1"),
        mock.call("%s", " @@frame@@ escaped by the runner"),
    ]


def test_the_task_log_writer_keeps_every_line_by_default():
    log = mock.create_autospec(logging.Logger, instance=True)
    task_log_writer(log, "sid")("@@frame@@ B 1")
    assert log.info.call_args_list[-1] == mock.call("%s", "@@frame@@ B 1")
