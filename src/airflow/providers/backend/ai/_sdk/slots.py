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
"""The resource slots each manager knows, read once per connection and process and trusted for a while."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from airflow.providers.backend.ai.exceptions import BackendAIException

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.backend.ai._sdk.connection import BackendAIConnectionConfig

#: How long a manager's list of resource slots is trusted, in seconds (an administrator may add GPU slots).
SLOT_LIST_TTL = 600.0
#: The slots each manager knows (None: it could not be asked), by endpoint and access key, with the monotonic
#: time they were read; shared by the hooks of the process.
_known: dict[tuple[str, str], tuple[float, tuple[str, ...] | None]] = {}


def known_slots(
    settings: BackendAIConnectionConfig, read: Callable[[], tuple[str, ...]], warn: Callable[..., object]
) -> tuple[str, ...] | None:
    """
    The slot names the manager of ``settings`` knows, from ``read`` at most once per ``SLOT_LIST_TTL``.

    None when the manager cannot be asked or refuses (an old manager, a proxy): ``warn`` says so, once per
    ``SLOT_LIST_TTL``, and the caller keeps to the slot names' spelling.
    """
    key = (settings.endpoint, settings.access_key)
    cached = _known.get(key)
    if cached is not None and time.monotonic() - cached[0] < SLOT_LIST_TTL:
        return cached[1]
    slots: tuple[str, ...] | None
    try:
        slots = read()
    except BackendAIException as exc:
        warn(
            "Could not list the resource slots of %s (%s); only the slot names' spelling is checked",
            settings.endpoint,
            exc,
        )
        slots = None
    _known[key] = (time.monotonic(), slots)
    return slots
