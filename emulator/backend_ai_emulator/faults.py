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
Fault injection: make chosen routes fail, stall or drop the connection, on purpose; and lose events.

Tests register faults from their own thread while the server consults them from its loop, so the
registry is locked. A fault matches a route name (``"*"`` for all), optionally a method and an
access key, and fires for the next ``times`` matching calls and/or a ``ratio`` of them (seeded RNG).
An event loss (:meth:`FaultRegistry.lose_events`) keeps matching session events off every stream.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

#: ``error``: 5xx problem+json; ``html``: non-JSON HTML error page (a proxy's 502);
#: ``reset``: close the connection without a response; ``latency``: wait ``delay`` then serve;
#: ``hang``: stall far longer than any client timeout (released at reset/shutdown, then reset).
FAULT_KINDS = frozenset({"error", "html", "reset", "latency", "hang"})

#: Route names usable in faults and request counts.
ROUTE_NAMES = frozenset(
    {
        "root",
        "create",
        "get_info",
        "destroy",
        "restart",
        "logs",
        "status_history",
        "gql",
        "events",
        "resource_slots",
        "resource_slots_details",
        "not_emulated",
    }
)

_ids = itertools.count(1)


@dataclass(eq=False)
class Fault:
    """One registered fault; ``fired`` counts how often it has acted."""

    route: str
    kind: str
    times: int | None = None
    ratio: float | None = None
    status: int = 503
    delay: float = 0.5
    access_key: str | None = None
    method: str | None = None
    after: bool = False
    seed: int = 0
    fired: int = 0
    id: int = field(default_factory=lambda: next(_ids))
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, route: str | None, method: str, access_key: str | None) -> bool:
        if self.route != "*" and self.route != route:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.access_key is None or self.access_key == access_key


@dataclass(eq=False)
class EventLoss:
    """
    Events that never reach a stream: the next ``times`` matching ones (``None`` = all of them).

    Matches session events (``session_*``) of ``session_id`` (any session if None) whose name is in
    ``names`` (any if None); kernel events only with ``kernel=True``. ``dropped`` counts the events lost.
    The events still happen (state, history and the session's event record, marked ``delivered=False``).
    """

    times: int | None = None
    session_id: str | None = None
    names: frozenset[str] | None = None
    kernel: bool = False
    dropped: int = 0
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.dropped >= self.times

    def matches(self, session_id: str, name: str, is_kernel_event: bool) -> bool:
        if is_kernel_event and not self.kernel:
            return False
        if self.session_id is not None and self.session_id != session_id:
            return False
        return self.names is None or name in self.names


class FaultRegistry:
    """Thread-safe list of active faults; the first matching, non-exhausted one that fires wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._losses: list[EventLoss] = []

    def add(
        self,
        route: str,
        kind: str,
        *,
        times: int | None = None,
        ratio: float | None = None,
        status: int | None = None,
        delay: float = 0.5,
        access_key: str | None = None,
        method: str | None = None,
        after: bool = False,
        seed: int = 0,
    ) -> Fault:
        """
        Register a fault on ``route`` (a route name or ``"*"``); returns it for inspection/removal.

        ``after=True`` lets the handler run first (the session is created) and then applies the
        fault to the response: the client sees an error, a reset or a hang although the work was done.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if route != "*" and route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; expected '*' or one of {sorted(ROUTE_NAMES)}")
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            raise ValueError("ratio must be within [0, 1]")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        if status is None:
            status = 502 if kind == "html" else 503
        fault = Fault(route, kind, times, ratio, status, delay, access_key, method, after, seed)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault | EventLoss) -> None:
        with self._lock:
            for registered in (self._faults, self._losses):
                if fault in registered:
                    registered.remove(fault)  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._losses.clear()

    def lose_events(
        self,
        times: int | None = None,
        *,
        session_id: object | None = None,
        names: Collection[str] | None = None,
        kernel: bool | None = None,
    ) -> EventLoss:
        """
        Keep the next ``times`` matching events (all if None) off every open event stream.

        ``lose_events(1)``: the next session event is lost, whatever it is; ``lose_events(session_id=sid)``:
        every event of one session, its kernel events included; ``lose_events(1, names={"session_success",
        "session_failure"})``: the next job-end event. ``kernel`` says whether kernel events can be lost
        (default: only when ``session_id`` is given). The server state is unaffected: only the streams
        miss the event.
        """
        if kernel is None:
            kernel = session_id is not None
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        loss = EventLoss(
            times,
            None if session_id is None else str(session_id),
            None if names is None else frozenset(names),
            kernel,
        )
        with self._lock:
            self._losses.append(loss)
        return loss

    @property
    def event_losses(self) -> list[EventLoss]:
        """Event losses that can still drop an event."""
        with self._lock:
            return [loss for loss in self._losses if not loss.exhausted]

    def take_event_loss(self, session_id: str, name: str, is_kernel_event: bool) -> EventLoss | None:
        """The event loss that swallows this event, if any (counting it as dropped)."""
        with self._lock:
            for loss in self._losses:
                if not loss.exhausted and loss.matches(session_id, name, is_kernel_event):
                    loss.dropped += 1
                    return loss
        return None

    @property
    def active(self) -> list[Fault]:
        """Faults that can still fire."""
        with self._lock:
            return [f for f in self._faults if not f.exhausted]

    def take(self, route: str | None, method: str, access_key: str | None) -> Fault | None:
        """The fault that fires for this call, if any (counting it as fired)."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault.matches(route, method, access_key):
                    continue
                if fault.ratio is not None and fault.rng.random() >= fault.ratio:
                    continue
                fault.fired += 1
                return fault
        return None
