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
Put the fixture's project members on their projects' rosters, the way the manager does.

In 26.9 a project's members are edges of the RBAC graph, not the ``association_groups_users``
rows a fixture writes, so a fixture user cannot create a session in its project ("lacks
permission CREATE on session"). This calls the manager's own roster repository, which the
"add users to a project" API uses: it writes the read-capped share and grants the project's
auto-assign roles (so it must run after ``permissions provision``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID


async def join_fixture_rosters(manager_config: Path) -> dict[UUID, list[UUID]]:
    """Join every (project, user) pair of ``association_groups_users``; returns what was read."""
    from ai.backend.common.data.entity.project import ProjectID
    from ai.backend.common.data.entity.user import UserID
    from ai.backend.logging.types import LogLevel
    from ai.backend.manager.cli.context import CLIContext
    from ai.backend.manager.models.base import ensure_all_tables_registered
    from ai.backend.manager.repositories.db.engine import connect_database
    from ai.backend.manager.repositories.global_entity.loader import GlobalEntityIDLoader
    from ai.backend.manager.repositories.ops.v2.roster.provider import RosterOpsProvider
    from ai.backend.manager.repositories.rbac.roster_repository import RbacRosterRepository

    ensure_all_tables_registered()
    bootstrap_config = await CLIContext(LogLevel.INFO, manager_config).get_bootstrap_config()
    members: dict[UUID, list[UUID]] = defaultdict(list)
    async with connect_database(bootstrap_config.db) as db:
        await GlobalEntityIDLoader(db).load()
        async with db.begin_readonly() as conn:
            rows = await conn.execute(sa.text("SELECT group_id, user_id FROM association_groups_users"))
            for group_id, user_id in rows:
                members[group_id].append(user_id)
        roster = RbacRosterRepository(RosterOpsProvider(db))
        for project_id, user_ids in members.items():
            await roster.join_members(ProjectID(project_id), [UserID(u) for u in user_ids])
    return dict(members)
