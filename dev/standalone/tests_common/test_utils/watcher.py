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
"""The watcher task of system tests: it fails the Dag run when any task it watches failed."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, TriggerRule, task


@task(trigger_rule=TriggerRule.ONE_FAILED, retries=0)
def watcher() -> None:
    """
    Fail, and so fail the Dag run, as soon as one upstream task failed.

    A teardown or an ALL_DONE task would otherwise let a run with a failed task end as a success.
    """
    raise AirflowException("Failing task because one or more upstream tasks failed.")
