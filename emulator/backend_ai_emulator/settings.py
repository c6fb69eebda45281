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
Switches that shape the emulator's behaviour; one mutable object shared with the server.

Tests change attributes on the live object (``handle.settings.tick = 0.5``); the server reads them at
the moment it needs them, so a change applies to everything that happens after it.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "v9.20250722"
MANAGER_VERSION = "26.9.6-emulator"

#: Every value of ``X-BackendAI-Version`` the manager accepts (``VALID_VERSIONS``).
VALID_API_VERSIONS: frozenset[str] = frozenset(
    {
        "v4.20181215",
        "v4.20190115",
        "v4.20190315",
        "v4.20190615",
        "v5.20191215",
        "v6.20200815",
        "v6.20220315",
        "v6.20220615",
        "v6.20221201",
        "v6.20230315",
        "v7.20230615",
        "v8.20240315",
        "v8.20240915",
        "v9.20250722",
    }
)

#: Obviously fake keypairs; never real credentials.
DEFAULT_ACCESS_KEY = "AKIAEMULATORTEST0001"
DEFAULT_SECRET_KEY = "EmulatorFakeSecretKey/NotForProduction01"
OTHER_ACCESS_KEY = "AKIAEMULATORTEST0002"
OTHER_SECRET_KEY = "EmulatorFakeSecretKey/NotForProduction02"
#: A superadmin, for the admin GraphQL API (preemption settings of a resource group).
ADMIN_ACCESS_KEY = "AKIAEMULATORADMIN001"
ADMIN_SECRET_KEY = "EmulatorFakeSecretKey/NotForProduction00"

DEFAULT_IMAGES: frozenset[str] = frozenset(
    {
        "cr.backend.ai/stable/python:3.9-ubuntu20.04",
        "cr.backend.ai/stable/python:3.11-ubuntu22.04",
        "cr.backend.ai/testing/ubuntu:22.04",
        "cr.backend.ai/multiarch/python:3.10-ubuntu22.04",
    }
)

DEFAULT_SLOTS: frozenset[str] = frozenset({"cpu", "mem", "cuda.device", "cuda.shares"})

REALISTIC_TICK = 2.0
#: The manager's long-cycle scheduler pass (26.9.6: 60 s), which alone releases RESERVED sessions and
#: requeues rescheduled ones.
REALISTIC_LONG_CYCLE = 60.0

PREEMPTION_MODES = ("terminate", "reschedule")
PREEMPTION_ORDERS = ("oldest", "newest")
VICTIM_SCOPES = ("user", "project", "domain", "resource_group")

#: The non-status values of ``EmulatorSettings.event_stream_block``.
STREAM_BLOCK_MODES = frozenset({"hang", "silent"})


def check_stream_block(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a 4xx/5xx status or one of :data:`STREAM_BLOCK_MODES`."""
    if isinstance(value, str) and value in STREAM_BLOCK_MODES:
        return
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return
    raise ValueError(
        f"event_stream_block must be None, an HTTP error status (400-599) or one of "
        f"{sorted(STREAM_BLOCK_MODES)}, not {value!r}"
    )


@dataclass(frozen=True)
class Keypair:
    """One row of the keypair table: the secret and the user it belongs to."""

    access_key: str
    secret_key: str
    user_id: uuid.UUID
    role: str = "user"
    rate_limit: int = 30000

    @classmethod
    def make(cls, access_key: str, secret_key: str, role: str = "user") -> Keypair:
        """A keypair whose user id is derived from the access key, so it is stable across runs."""
        return cls(
            access_key, secret_key, uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-user:{access_key}"), role
        )


def default_keypairs(
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    other_access_key: str = OTHER_ACCESS_KEY,
    other_secret_key: str = OTHER_SECRET_KEY,
) -> dict[str, Keypair]:
    """The two test users (the main one and a second one for isolation tests) and a superadmin."""
    return {
        access_key: Keypair.make(access_key, secret_key),
        other_access_key: Keypair.make(other_access_key, other_secret_key),
        ADMIN_ACCESS_KEY: Keypair.make(ADMIN_ACCESS_KEY, ADMIN_SECRET_KEY, role="superadmin"),
    }


@dataclass(frozen=True)
class PreemptionConfig:
    """
    A resource group's ``scheduler_opts.preemption`` (26.8+), as ``adminUpdateResourceGroup`` sets it.

    ``mode`` is ``terminate`` or ``reschedule``; ``order`` picks among victims of the same
    ``job_priority`` (``oldest`` first by start time, or ``newest``); ``victim_scope`` limits victims to
    the pending session's owner (``user``) or widens it (the emulator has one project and domain, so the
    wider scopes all mean "any owner"). ``preemptible_priority`` is stored and reported, and, as on the
    manager, read by nothing.
    """

    enabled: bool = False
    mode: str = "terminate"
    order: str = "oldest"
    victim_scope: str = "user"
    preemptible_priority: int = 5
    preemption_min_runtime: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in PREEMPTION_MODES:
            raise ValueError(f"mode must be one of {PREEMPTION_MODES}, not {self.mode!r}")
        if self.order not in PREEMPTION_ORDERS:
            raise ValueError(f"order must be one of {PREEMPTION_ORDERS}, not {self.order!r}")
        if self.victim_scope not in VICTIM_SCOPES:
            raise ValueError(f"victim_scope must be one of {VICTIM_SCOPES}, not {self.victim_scope!r}")


def _default_preemption() -> dict[str, PreemptionConfig]:
    return {"default": PreemptionConfig()}


def _default_limits() -> dict[str, dict[str, Any]]:
    return {"*": {"cpu": 64, "mem": "256g", "cuda.device": 8, "cuda.shares": 8}}


@dataclass
class EmulatorSettings:
    """All behaviour switches; see the emulator README for what each one models."""

    #: Seconds spent in each step before RUNNING (PENDING, SCHEDULED, PREPARING, PREPARED, CREATING).
    step_delay: float = 0.01
    #: The scheduler tick: TERMINATING → (kernel_terminated) → TERMINATED takes two of these.
    tick: float = 0.01
    #: Extra seconds a session stays PENDING / PREPARING (startup-timeout tests); ``inf`` = forever.
    pending_hold: float = 0.0
    preparing_hold: float = 0.0
    #: Make every new session fail while CREATING and end in ERROR.
    fail_start: bool = False
    #: The manager sleeps 0.5 s after RUNNING before answering a blocking create.
    running_response_delay: float = 0.0
    #: Seconds from a job's ``session_success``/``session_failure`` reaching the event streams to the manager
    #: writing ``result`` and moving the session to TERMINATING. Two consumers of the agent's event do these
    #: on the manager, independently: ~30 ms apart when idle, up to seconds when it is loaded. 0 (default):
    #: the result is written first, then the event is sent. The agent drops the kernel one ``tick`` after the
    #: event either way, so a delay longer than a tick puts the result inside the log gap (below).
    result_write_delay: float = 0.0
    #: After ``kernel_terminated`` and until TERMINATED, ``GET /session/{id}/logs`` answers HTTP 500: the
    #: manager asks the agent, which has dropped the kernel (its ``KeyError`` is relayed), and reads the
    #: stored log only once the session is TERMINATED (26.9.6). Realistic timing turns it on.
    logs_gap_while_terminating: bool = False
    #: Images the registry knows; ``accept_any_image`` skips the check.
    known_images: set[str] = field(default_factory=lambda: set(DEFAULT_IMAGES))
    accept_any_image: bool = False
    #: Resource slot names a create request may use.
    known_slots: set[str] = field(default_factory=lambda: set(DEFAULT_SLOTS))
    #: Per access key (``"*"`` for everybody else) ceiling on the sum over the caller's live sessions.
    resource_limits: dict[str, dict[str, Any]] = field(default_factory=_default_limits)
    #: What a create without ``config.resources`` asks for.
    default_resources: dict[str, Any] = field(default_factory=lambda: {"cpu": 1, "mem": "1g"})
    #: False reproduces the SSE quirks (sessionId ignored, exitCode null); True filters and fills.
    fixed_event_quirks: bool = False
    #: Seconds between ``: ping`` comments on event streams (aiohttp-sse's default, as the manager uses it).
    sse_ping_interval: float = 15.0
    #: Block ``GET /events/session`` so that clients must fall back to polling: None serves streams;
    #: 404 answers the manager's url-not-found (an older manager or a gateway exposing known routes
    #: only), 405 method-not-allowed, any other status a proxy's HTML error page (502, 503, 504, 403);
    #: ``"hang"`` never answers (released by reset/restart/shutdown, else after ``hang_seconds``);
    #: ``"silent"`` answers 200 and then never writes a byte, not even a ping (a buffering proxy).
    event_stream_block: int | str | None = None
    #: Container log cap per session; output beyond it is dropped with a marker line.
    max_log_bytes: int = 32 * 1024 * 1024
    #: How long a "hang" fault sleeps unless released by reset/shutdown.
    hang_seconds: float = 3600.0
    #: The keypair table.
    keypairs: dict[str, Keypair] = field(default_factory=default_keypairs)
    #: What ``GET /`` advertises.
    api_version: str = API_VERSION
    manager_version: str = MANAGER_VERSION
    #: Shell used for bootstrap and startup commands.
    shell: str = "bash"
    #: The resource group's agent capacity, e.g. ``{"cpu": 4, "mem": "16g"}``. None (default): every
    #: session fits at once, as before. Set, sessions wait PENDING in FIFO order (head-of-line blocking)
    #: until their slots fit beside the sessions that hold resources, with the manager's scheduling
    #: history and queue position; preemption needs it (a session must not fit for one to happen).
    capacity: dict[str, Any] | None = None
    #: Preemption settings per resource group name (sessions without a ``scalingGroup`` use
    #: ``"default"``); the admin mutation ``adminUpdateResourceGroup`` replaces one.
    preemption: dict[str, PreemptionConfig] = field(default_factory=_default_preemption)
    #: Seconds until the manager's next long-cycle pass, the only pass that releases a RESERVED session
    #: once its victims are gone and requeues a rescheduled one (60 s on 26.9.6; realistic timing).
    long_cycle: float = 0.05

    def use_realistic_timing(self) -> None:
        """Match the real manager's pace (2 s steps and ticks, 0.5 s before answering) and its log gap."""
        self.step_delay = REALISTIC_TICK
        self.tick = REALISTIC_TICK
        self.running_response_delay = 0.5
        self.logs_gap_while_terminating = True
        self.long_cycle = REALISTIC_LONG_CYCLE

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "event_stream_block" and value is not None:
            check_stream_block(value)
        super().__setattr__(name, value)

    def restore(self, baseline: EmulatorSettings) -> None:
        """Copy every field from ``baseline`` in place, so holders of this object see the reset."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, copy.deepcopy(getattr(baseline, f.name)))

    def copy(self) -> EmulatorSettings:
        """An independent deep copy."""
        clone = EmulatorSettings()
        clone.restore(self)
        return clone

    def preemption_for(self, resource_group: str | None) -> PreemptionConfig:
        """The preemption settings of a session's resource group (the default group's when unknown)."""
        name = resource_group or "default"
        return self.preemption.get(name) or self.preemption.get("default") or PreemptionConfig()

    def limits_for(self, access_key: str) -> dict[str, Any]:
        """The resource ceiling that applies to ``access_key``."""
        return self.resource_limits.get(access_key, self.resource_limits.get("*", {}))
