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
"""Owner isolation: another keypair can neither see, read the logs of, nor destroy a session."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.func.session import ComputeSession

from .sdk import (
    PERMISSION_READ,
    PERMISSION_SOFT_DELETE,
    assert_not_enough_permission,
    create_batch,
    open_session,
    query_session,
    session_ref,
)

if TYPE_CHECKING:
    from ai.backend.client.config import APIConfig
    from ai.backend.client.session import Session

    from .sdk import ContractTarget


@pytest.fixture
def other_config(contract_target: ContractTarget) -> APIConfig:
    if not (contract_target.other_access_key and contract_target.other_secret_key):
        pytest.skip("no second keypair configured (BACKEND_AI_TEST_OTHER_ACCESS_KEY/_SECRET_KEY)")
    return contract_target.config(
        access_key=contract_target.other_access_key, secret_key=contract_target.other_secret_key
    )


def test_other_keypair_cannot_touch_a_session(
    sdk: Session, contract_target: ContractTarget, other_config: APIConfig
) -> None:
    created = create_batch(sdk, contract_target, "sleep 30")
    session_id, name = created.id, created.name
    with open_session(other_config) as other:
        # By UUID: RBAC's 403, the same answer as for a UUID that does not exist (nothing leaks).
        for call, permission in (
            (session_ref(session_id).get_info, PERMISSION_READ),
            (session_ref(session_id).get_logs, PERMISSION_READ),
            (session_ref(session_id).destroy, PERMISSION_SOFT_DELETE),
        ):
            with pytest.raises(BackendAPIError) as excinfo:
                call()
            assert_not_enough_permission(excinfo.value.status, excinfo.value.data, session_id, permission)
        # By name: only the caller's own live sessions are searched, so it is simply not found.
        with pytest.raises(BackendAPIError) as excinfo:
            ComputeSession(name).get_info()
        assert excinfo.value.status == 404
        assert excinfo.value.data["type"] == "https://api.backend.ai/probs/entity-not-found"
        assert query_session(other, session_id) is None
    # Still alive and untouched for its owner.
    assert session_ref(session_id).get_info()["status"] != "TERMINATED"
    assert session_ref(session_id).destroy(forced=True)["stats"]["status"] in ("terminated", "cancelled")


def test_same_name_in_two_keypairs_is_two_sessions(
    sdk: Session, contract_target: ContractTarget, other_config: APIConfig
) -> None:
    mine = create_batch(sdk, contract_target, "sleep 30")
    with open_session(other_config) as other:
        theirs = create_batch(other, contract_target, "sleep 30", name=mine.name)
        assert theirs.created is True
        assert str(theirs.id) != str(mine.id)
        session_ref(theirs.id).destroy(forced=True)
    session_ref(mine.id).destroy(forced=True)
