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
Item 6: the completion floor. How soon after a job's end the provider knows it, and what watching costs
the manager: on the real manager harness (``dev/real-cluster``) when ``BACKEND_AI_TEST_ENDPOINT`` and its
keys are set, else on the emulator with realistic timing (2 s scheduler tick).

Three measurements, each for every path (sync operator, deferrable operator, sensor in poke mode) with the
event stream on (the default) and off (``use_event_stream=False``); a provider without that parameter is
measured in its one (polling) configuration:

* **lag** (:mod:`.lag_run`): from the job's end, as the server recorded it (:mod:`.targets`), to the
  provider knowing it (the operator's wait returned, the trigger yielded, the sensor returned), over N jobs
  of random 1-3 s; each job runs through :mod:`benchmarks.jobs`, as items 2-5 run theirs;
* **requests per second per watched session** (:mod:`.rate_run`) in steady state, counted by a reverse
  proxy in front of the server (one port per path and mode), over a window of jobs that outlast it;
* **200 deferred sessions in one event loop** (:mod:`.scale_run`; made as item 3 makes them, jobs ending
  at random over ~30 s): lag, requests per second, and the event streams open at the proxy.

:mod:`.item` runs them in that order; :mod:`.report` writes the section.
"""

from __future__ import annotations

from benchmarks.floor.config import TIME_LIMIT
from benchmarks.floor.item import run

__all__ = ["TIME_LIMIT", "run"]
