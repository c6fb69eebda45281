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
Everything one emulator instance holds, and the lookups the handlers share.

Lives on the server loop; the test-side handle reaches it only through thread-safe parts (the store,
the fault registry, the settings object) or by scheduling coroutines such as :meth:`reset` on the loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import TYPE_CHECKING

from .errors import (
    PERMISSION_READ,
    entity_not_found,
    forbidden,
    invalid_api_params,
    not_enough_permission,
    session_not_found,
)
from .events import EventHub
from .faults import FaultRegistry
from .lifecycle import SessionEngine
from .store import DEAD_STATUSES, SessionRecord, SessionStore

if TYPE_CHECKING:
    from .settings import EmulatorSettings, Keypair


class EmulatorState:
    """Settings, sessions, events, faults and the knobs that reset them together."""

    def __init__(
        self,
        settings: EmulatorSettings,
        faults: FaultRegistry | None = None,
        store: SessionStore | None = None,
    ) -> None:
        self.settings = settings
        self.baseline = settings.copy()
        self.store = store or SessionStore()
        self.faults = faults or FaultRegistry()
        self.hub = EventHub(self.store, settings, self.faults)
        self.manager_up = asyncio.Event()
        self.manager_up.set()
        self.engine = SessionEngine(self.store, self.hub, settings, self.manager_up)
        self.query_counts: Counter[str] = Counter()
        self._hang_release = asyncio.Event()

    @property
    def hang_release(self) -> asyncio.Event:
        """Set when hanging requests must give up (reset or shutdown)."""
        return self._hang_release

    def release_hangs(self) -> None:
        event, self._hang_release = self._hang_release, asyncio.Event()
        event.set()

    async def reset(self) -> None:
        """Back to a fresh emulator: kill jobs, end streams and hangs, forget sessions, restore settings."""
        self.faults.clear()
        self.release_hangs()
        self.hub.close_all()
        await self.engine.stop_all()
        self.store.clear()
        self.query_counts.clear()
        self.hub.reset_counts()
        self.manager_up.set()
        self.settings.restore(self.baseline)

    async def shutdown(self) -> None:
        """Kill every job and release every waiting request."""
        self.release_hangs()
        self.hub.close_all()
        await self.engine.stop_all()

    # -- lookups -----------------------------------------------------------------------------

    def keypair(self, access_key: str) -> Keypair | None:
        return self.settings.keypairs.get(access_key)

    def owner_for(self, caller: Keypair, owner_access_key: str | None) -> Keypair:
        """Whose sessions a request acts on: the caller, or (admins only) ``owner_access_key``."""
        if not owner_access_key or owner_access_key == caller.access_key:
            return caller
        if caller.role == "user":
            raise forbidden("You are not allowed to access other users' sessions.")
        owner = self.keypair(owner_access_key)
        if owner is None:
            raise invalid_api_params(f"Unknown owner access key: {owner_access_key}")
        return owner

    def resolve(
        self,
        owner: Keypair,
        ref: str,
        *,
        allow_dead: bool,
        caller: Keypair | None = None,
        permission: str = PERMISSION_READ,
    ) -> SessionRecord:
        """
        A path segment to a session: a UUID reaches any row of the owner, a name only live ones.

        A UUID that names no session of the owner is 403 not-enough-permission when the caller is a plain
        user (the manager's RBAC checks ``permission`` on the entity before looking it up, so "unknown"
        and "someone else's" look alike) and 404 object-not-found for an admin. An own session that is
        dead where only live ones count (``allow_dead=False``) is 404 for everybody.
        """
        caller = caller or owner
        try:
            session_id = uuid.UUID(ref)
        except ValueError:
            record = self.store.find_live_by_name(owner.access_key, ref)
            if record is None:
                raise entity_not_found() from None
            return record
        found = self.store.get(session_id)
        if found is None or found.owner_access_key != owner.access_key:
            if caller.role == "user":
                raise not_enough_permission(str(caller.user_id), permission, str(session_id))
            raise session_not_found(str(session_id))
        if not allow_dead and found.status in DEAD_STATUSES:
            raise session_not_found(str(session_id))
        return found

    def visible_session(self, caller: Keypair, session_id: uuid.UUID) -> SessionRecord | None:
        """GraphQL's view: own sessions for users, every session for admins, any status."""
        found = self.store.get(session_id)
        if found is None or (caller.role == "user" and found.owner_access_key != caller.access_key):
            return None
        return found

    def visible_sessions(self, caller: Keypair) -> list[SessionRecord]:
        return [
            r
            for r in self.store.records()
            if caller.role != "user" or r.owner_access_key == caller.access_key
        ]
