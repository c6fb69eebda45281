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
"""Item 6's fixed choices: the paths, the budgets, the sizes per target and variant, the event-stream modes."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any

PATHS = ("sync", "deferrable", "sensor")
LAG_P50_BUDGET = 0.5
LAG_P95_BUDGET = 1.5
RATE_BUDGET = 0.2  # requests/s per watched session, steady state
SCALE_P95_BUDGET = 2.0
POLLING_SLACK = 1.0  # events off: every job within poll_interval + this
TIME_LIMIT = {True: 240.0, False: 720.0}  # quick, full (this item alone)

LAG_CONN = "backend_ai_floor"  # direct connection for the lag runs
JOB_DEADLINE = 240.0  # one job: create to detected, generous for a loaded manager


@dataclass(frozen=True)
class Sizes:
    jobs: int  # per path and mode
    concurrency: int  # jobs of one path and mode at once
    rate_sessions: int  # long jobs watched per path and mode
    rate_window: float  # seconds of steady state counted
    scale: int  # deferred sessions in one loop
    scale_spread: float  # their jobs end at random within this many seconds after starting
    scale_modes: tuple[bool, ...]  # event stream on/off for the 200-session run


#: (quick, full) per target. The real manager gets fewer jobs at once: on 2 shared cores its scheduler and
#: API slow down with every session it holds, and the floor is to measure the provider, not an overload.
SIZES = {
    ("emulator", True): Sizes(6, 3, 3, 30, 200, 30, (True,)),
    ("emulator", False): Sizes(20, 10, 5, 45, 200, 30, (True,)),  # keeps the whole full suite under 10 min
    ("real", True): Sizes(6, 1, 3, 30, 100, 30, (True,)),  # 200 creates alone take ~2 min there
    ("real", False): Sizes(20, 2, 5, 60, 200, 30, (True, False)),
}


def sizes_for(target_kind: str, quick: bool) -> Sizes:
    """The sizes for this target; ``BENCH_FLOOR_SCALE`` overrides the number of deferred sessions."""
    sizes = SIZES[(target_kind, quick)]
    if os.environ.get("BENCH_FLOOR_SCALE"):
        sizes = dataclasses.replace(sizes, scale=int(os.environ["BENCH_FLOOR_SCALE"]))
    return sizes


# -- the provider's event-stream modes ----------------------------------------------------------------------


def events_supported() -> bool:
    from benchmarks.jobs import operator_accepts

    return operator_accepts("use_event_stream")


def mode_kwargs(mode: bool | None) -> dict[str, Any]:
    """The operator/sensor arguments of a mode: events on, off, or ``None`` (a provider without the choice)."""
    return {} if mode is None else {"use_event_stream": mode}


def mode_label(mode: bool | None) -> str:
    return {True: "on", False: "off", None: "n/a (polling)"}[mode]


def say(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[floor] {message}", file=sys.stderr, flush=True)
