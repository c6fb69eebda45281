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
What the scale-out scenarios (``../scenarios.py``) stand on, one job a module:

* :mod:`.deployment`: the deployment of ``up.sh DIR`` (its directory, the metadata DB, pids, the log line);
* :mod:`.processes`: its process groups: kill, pause, alive, memory;
* :mod:`.topology`: its Airflow components: Celery workers, healthy jobs, restart what a scenario killed;
* :mod:`.airflow_state`: Airflow as a client sees it: the REST API, the task instances, XCom, task logs;
* :mod:`.backend_sessions`: the Backend.AI side, through the Backend.AI API: sessions per task, leaks;
* :mod:`.waiting`: bounded waits: a condition, a Dag run's end, every job running and watched;
* :mod:`.checks`: a scenario's :class:`~.checks.Result` and the checks every scenario makes;
* :mod:`.report`: the results table.
"""
