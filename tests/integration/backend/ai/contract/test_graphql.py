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
"""GraphQL (``POST /admin/gql``): the fields the provider reads, lists, and error reporting."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from ai.backend.client.exceptions import BackendAPIError

from .sdk import create_batch, session_ref, wait_for_result, wait_for_status

if TYPE_CHECKING:
    from ai.backend.client.session import Session

    from .sdk import ContractTarget


def test_compute_session_fields_after_termination(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "exit 1")
    wait_for_status(sdk, contract_target, created.id, "TERMINATED")
    query = (
        "query($id: UUID!) { compute_session(id: $id) "
        "{ id name type status status_info status_data result created_at terminated_at } }"
    )
    row = sdk.Admin.query(query, {"id": str(created.id)})["compute_session"]
    assert row["id"] == str(created.id)
    assert row["name"] == created.name
    assert (row["type"], row["status"], row["status_info"], row["result"]) == (
        "BATCH",
        "TERMINATED",
        "task-failed",
        "FAILURE",
    )
    assert row["created_at"] < row["terminated_at"]


def test_aliases_and_partial_selection(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "echo aliased")
    wait_for_result(sdk, contract_target, created.id)
    data = sdk.Admin.query(
        "query($id: UUID!) { s: compute_session(id: $id) { r: result } }", {"id": str(created.id)}
    )
    assert data == {"s": {"r": "SUCCESS"}}


def test_unknown_field_is_a_graphql_error(sdk: Session) -> None:
    with pytest.raises(BackendAPIError) as excinfo:
        sdk.Admin.query("query { compute_session_that_does_not_exist { id } }")
    assert excinfo.value.status == 400
    assert excinfo.value.data["type"] == "https://api.backend.ai/probs/graphql-error"
    assert excinfo.value.data["data"]


def test_paginated_list_sees_own_sessions(sdk: Session, contract_target: ContractTarget) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    wait_for_status(sdk, contract_target, created.id, "RUNNING")
    page = sdk.ComputeSession.paginated_list(status="RUNNING", page_size=100)
    assert str(created.id) in {item["id"] for item in page.items}
    assert page.total_count >= 1
    session_ref(created.id).destroy(forced=True)
