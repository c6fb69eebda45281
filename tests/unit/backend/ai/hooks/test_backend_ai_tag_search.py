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
"""``BackendAIHook.find_sessions_by_tag``: the manager cannot filter on tags, so the hook pages and matches."""

from __future__ import annotations

from unittest import mock

import pytest
from ai.backend.client.exceptions import BackendAPIError

from airflow.providers.backend.ai._sdk.tag_search import (
    TAG_SEARCH_MAX_PAGES,
    TAG_SEARCH_PAGE_SIZE,
    TAG_SEARCH_QUERY,
    tag_search_filter,
)
from airflow.providers.backend.ai._session.state import SessionFacts
from airflow.providers.backend.ai.exceptions import BackendAITransientError
from airflow.providers.backend.ai.hooks.backend_ai import BackendAIHook

LIVE = '(status != "TERMINATED") & (status != "CANCELLED")'


def item(n: int, tag: str | None, *, status: str = "RUNNING", result: str = "UNDEFINED", created: str = ""):
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "name": f"s-{n}",
        "tag": tag,
        "status": status,
        "status_info": None,
        "result": result,
        "created_at": created or f"2026-01-01T00:00:{n % 60:02d}+00:00",
    }


def page(items: list[dict], total: int) -> dict:
    return {"compute_session_list": {"items": items, "total_count": total}}


class TestFilter:
    def test_live_sessions_and_the_named_ones(self):
        assert tag_search_filter({"b-name", "a.name"}) == f'(name in ["a.name", "b-name"]) | ({LIVE})'

    def test_without_names_only_live_sessions(self):
        assert tag_search_filter(()) == LIVE


class TestFindSessionsByTag:
    def test_matches_tags_here_and_sorts_each_tags_sessions_newest_first(self, hook, sync_session, admin):
        admin.query.return_value = page(
            [
                item(1, "af-a", created="2026-01-01T00:00:01+00:00"),
                item(2, "someone-else"),
                item(3, None),
                item(4, "af-b", status="TERMINATED", result="SUCCESS"),
                item(5, "af-a", created="2026-01-01T00:00:09+00:00"),
            ],
            total=5,
        )
        found = hook.find_sessions_by_tag({"af-a", "af-b"}, names=["af-dag-t1"])
        assert [f.session_id[-1] for f in found["af-a"]] == ["5", "1"]
        (b,) = found["af-b"]
        assert b == SessionFacts(b.session_id, "TERMINATED", "SUCCESS", None, "s-4")
        admin.query.assert_called_once_with(
            TAG_SEARCH_QUERY,
            {"filter": f'(name in ["af-dag-t1"]) | ({LIVE})', "limit": TAG_SEARCH_PAGE_SIZE, "offset": 0},
        )

    def test_reads_every_page(self, hook, sync_session, admin):
        pages = [
            page([item(n, None) for n in range(100)], total=230),
            page([item(n, None) for n in range(100, 200)], total=230),
            page([item(200, "af-x"), *(item(n, None) for n in range(201, 230))], total=230),
        ]
        admin.query.side_effect = pages
        found = hook.find_sessions_by_tag({"af-x"})
        assert list(found) == ["af-x"]
        assert [c.args[1]["offset"] for c in admin.query.call_args_list] == [0, 100, 200]

    def test_stops_after_the_page_limit_with_a_warning(self, hook, sync_session, admin):
        admin.query.side_effect = lambda *a: page([item(n, None) for n in range(100)], total=100_000)
        with mock.patch.object(BackendAIHook, "log", new_callable=mock.PropertyMock) as log:
            assert hook.find_sessions_by_tag({"af-x"}) == {}
        assert admin.query.call_count == TAG_SEARCH_MAX_PAGES
        log.return_value.warning.assert_called_once()
        assert log.return_value.warning.call_args.args[1:] == (100 * TAG_SEARCH_MAX_PAGES, 100_000)

    def test_a_list_that_shrank_meanwhile_ends_the_search(self, hook, sync_session, admin):
        admin.query.side_effect = [page([item(1, "af-x")], total=300), page([], total=300)]
        assert list(hook.find_sessions_by_tag({"af-x"})) == ["af-x"]
        assert admin.query.call_count == 2

    def test_no_tags_no_request(self, hook, sync_session, admin):
        assert hook.find_sessions_by_tag(set(), names=["x"]) == {}
        admin.query.assert_not_called()

    def test_transient_errors_are_retried_on_the_same_page(self, hook, sync_session, admin):
        error = BackendAPIError(503, "Service Unavailable", {"type": "x", "title": "busy"})
        admin.query.side_effect = [error, page([item(1, "af-x")], total=1)]
        assert list(hook.find_sessions_by_tag({"af-x"})) == ["af-x"]
        assert [c.args[1]["offset"] for c in admin.query.call_args_list] == [0, 0]
        admin.query.side_effect = [error] * 3
        with pytest.raises(BackendAITransientError):
            hook.find_sessions_by_tag({"af-x"})

    async def test_async_twin(self, hook, async_session, admin):
        async def answer(*args):
            return page([item(1, "af-x")], total=1)

        admin.query.side_effect = answer
        found = await hook.a_find_sessions_by_tag({"af-x"}, names={"n"})
        assert [f.session_id for f in found["af-x"]] == [item(1, None)["id"]]
        admin.query.assert_called_once_with(
            TAG_SEARCH_QUERY,
            {"filter": f'(name in ["n"]) | ({LIVE})', "limit": TAG_SEARCH_PAGE_SIZE, "offset": 0},
        )
