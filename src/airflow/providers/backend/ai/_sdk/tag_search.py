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
Find the sessions of a task's earlier tries by their Backend.AI tags, a page at a time.

The manager's filter grammar has no ``tag`` field (it rejects ``tag == ...``: "Unknown/unsupported field
name"), so the pages are narrowed by name and status and the tags are matched here. One :class:`TagSearch`
serves the hook's sync and async method alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.backend.ai._sdk.operations import Operation, admin, facts_of

if TYPE_CHECKING:
    from collections.abc import Collection

    from airflow.providers.backend.ai._session.state import SessionFacts

#: GraphQL page of the caller's sessions.
TAG_SEARCH_QUERY = (
    "query($filter: String, $limit: Int!, $offset: Int!) { compute_session_list(limit: $limit, "
    "offset: $offset, filter: $filter) { items { id name tag status status_info result created_at } "
    "total_count } }"
)
#: Sessions per page, and the most pages one search reads.
TAG_SEARCH_PAGE_SIZE = 100
TAG_SEARCH_MAX_PAGES = 10
#: The statuses after which a session holds nothing; every other one counts as live for a tag search.
_ENDED_STATUSES = ("TERMINATED", "CANCELLED")


def tag_search_filter(names: Collection[str]) -> str:
    """
    The ``compute_session_list`` filter of a tag search: every live session, and those named ``names``.

    Written in the manager's filter grammar (``models/minilang/queryfilter.py``: ``in``, ``!=``, ``&``,
    ``|`` and parentheses), with the two ended statuses every manager version knows: an unknown status
    name in the filter would fail the whole query.
    """
    live = " & ".join(f"(status != {json.dumps(status)})" for status in _ENDED_STATUSES)
    if not names:
        return live
    return f"(name in {json.dumps(sorted(names))}) | ({live})"


@dataclass(frozen=True)
class TagPage:
    """One parsed page: the matching sessions and how far the list goes."""

    matches: list[tuple[str, str, SessionFacts]]  # (tag, created_at, facts)
    size: int
    total_count: int


class TagSearch:
    """
    The paging of one tag search: ``next_page`` gives the operation to run, ``add`` takes its answer.

    At most :data:`TAG_SEARCH_MAX_PAGES` pages of :data:`TAG_SEARCH_PAGE_SIZE` are read (newest first).
    """

    def __init__(self, tags: Collection[str], names: Collection[str]) -> None:
        self.tags = frozenset(tags)
        self.filter = tag_search_filter(names)
        self.offset = 0
        self.pages = 0
        self.total_count: int | None = None
        self.found: dict[str, tuple[str, str, SessionFacts]] = {}  # by session id

    def next_page(self) -> Operation[TagPage] | None:
        if not self.tags or (self.total_count is not None and self.offset >= self.total_count):
            return None
        if self.pages >= TAG_SEARCH_MAX_PAGES:
            return None
        variables = {"filter": self.filter, "limit": TAG_SEARCH_PAGE_SIZE, "offset": self.offset}
        return Operation(
            "find the sessions of earlier tries by their tags",
            lambda: admin().query(TAG_SEARCH_QUERY, variables),
            self._parse,
        )

    def _parse(self, answer: Any) -> TagPage:
        listing = (answer or {}).get("compute_session_list") or {}
        items = listing.get("items") or []
        matches = [
            (str(item["tag"]), str(item.get("created_at") or ""), facts_of(item))
            for item in items
            if item.get("tag") in self.tags
        ]
        return TagPage(matches, len(items), int(listing.get("total_count") or 0))

    def add(self, page: TagPage) -> None:
        self.pages += 1
        self.total_count = page.total_count
        self.offset += page.size
        if not page.size:  # the list shrank meanwhile: nothing more to read
            self.total_count = self.offset
        for tag, created_at, facts in page.matches:
            self.found[facts.session_id] = (tag, created_at, facts)

    def result(self, log: Any) -> dict[str, list[SessionFacts]]:
        """Each tag's sessions, newest first; warns when the search stopped before the end of the list."""
        if self.total_count is not None and self.offset < self.total_count:
            log.warning(
                "Searched only the newest %d of %d sessions for the tags of earlier tries",
                self.offset,
                self.total_count,
            )
        by_tag: dict[str, list[SessionFacts]] = {}
        for tag, _, facts in sorted(self.found.values(), key=lambda found: found[1], reverse=True):
            by_tag.setdefault(tag, []).append(facts)
        return by_tag
