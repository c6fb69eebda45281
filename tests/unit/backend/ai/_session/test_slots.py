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
"""The slot-name check before the first create: exact messages, suggestions, and the answer parser."""

from __future__ import annotations

import pytest

from airflow.providers.backend.ai._session.slots import (
    WELL_KNOWN_SLOTS,
    check_slots_known,
    closest_slot,
    parse_slot_list,
    unknown_slots_message,
)

GPU_CLUSTER = ("cpu", "mem", "cuda.device", "cuda.shares")
CPU_CLUSTER = ("cpu", "mem")  # dev/real-cluster's dummy agent


def test_cuda_devices_on_a_gpu_cluster() -> None:
    with pytest.raises(ValueError, match=r"^Invalid session_resources slot name") as caught:
        check_slots_known({"cpu": 1, "mem": "1g", "cuda.devices": 1}, GPU_CLUSTER)
    assert str(caught.value) == (
        "Invalid session_resources slot name 'cuda.devices' (did you mean 'cuda.device'?): the Backend.AI manager "
        "knows no such slot. Known slots: 'cpu', 'mem', 'cuda.device', 'cuda.shares'"
    )


def test_cuda_devices_on_a_cluster_without_gpus_still_names_the_right_spelling() -> None:
    with pytest.raises(ValueError, match=r"^Invalid session_resources slot name") as caught:
        check_slots_known(
            {"cpu": 1, "mem": "1g", "cuda.devices": 1},
            CPU_CLUSTER,
            where="the Backend.AI manager at http://127.0.0.1:8091",
        )
    assert str(caught.value) == (
        "Invalid session_resources slot name 'cuda.devices' (Backend.AI spells it 'cuda.device', but this manager "
        "does not offer that slot): the Backend.AI manager at http://127.0.0.1:8091 knows no such slot. "
        "Known slots: 'cpu', 'mem'"
    )


def test_known_slots_pass() -> None:
    check_slots_known({"cpu": 2, "mem": "4g", "cuda.device": 1}, GPU_CLUSTER)
    check_slots_known({}, CPU_CLUSTER)
    check_slots_known({"cuda.shares": 0.5}, GPU_CLUSTER)


def test_every_unknown_slot_is_named_once() -> None:
    with pytest.raises(ValueError, match="slot names") as caught:
        check_slots_known({"CPU": 1, "mem": "1g", "gpu": 1, "warp.drive": 2}, GPU_CLUSTER)
    assert str(caught.value) == (
        "Invalid session_resources slot names 'CPU' (did you mean 'cpu'?), 'gpu' (did you mean 'cuda.device'?) and "
        "'warp.drive': the Backend.AI manager knows no such slots. "
        "Known slots: 'cpu', 'mem', 'cuda.device', 'cuda.shares'"
    )


def test_a_backend_ai_slot_the_manager_does_not_offer() -> None:
    assert unknown_slots_message(["cuda.device"], CPU_CLUSTER) == (
        "Invalid session_resources slot name 'cuda.device' (a Backend.AI slot, but this manager does not offer it): "
        "the Backend.AI manager knows no such slot. Known slots: 'cpu', 'mem'"
    )


@pytest.mark.parametrize(
    ("name", "known", "expected"),
    [
        ("cuda.devices", GPU_CLUSTER, ("cuda.device", True)),
        ("cuda.devices", CPU_CLUSTER, ("cuda.device", False)),
        ("cuda.share", GPU_CLUSTER, ("cuda.shares", True)),
        ("rocm.devices", GPU_CLUSTER, ("rocm.device", False)),
        ("Mem", GPU_CLUSTER, ("mem", True)),
        ("memory", GPU_CLUSTER, ("mem", True)),
        ("gpu", GPU_CLUSTER, ("cuda.device", True)),  # not 'cpu', which is closer by spelling
        ("nvidia.com/gpu", GPU_CLUSTER, ("cuda.device", True)),
        ("fgpu", CPU_CLUSTER, ("cuda.shares", False)),
        ("warp.drive", GPU_CLUSTER, None),
        ("x", CPU_CLUSTER, None),
        ("site.accel", ("cpu", "mem", "site.accel2"), ("site.accel2", True)),  # a cluster's own slot
    ],
)
def test_closest_slot(name: str, known: tuple[str, ...], expected: tuple[str, bool] | None) -> None:
    assert closest_slot(name, known) == expected


def test_well_known_slots_are_the_backend_ai_spellings() -> None:
    assert "cuda.device" in WELL_KNOWN_SLOTS
    assert "cuda.shares" in WELL_KNOWN_SLOTS
    assert "rocm.device" in WELL_KNOWN_SLOTS
    assert "cuda.devices" not in WELL_KNOWN_SLOTS


def test_parse_slot_list_keeps_the_manager_order() -> None:
    answer = {"cpu": "count", "mem": "bytes", "cuda.device": "count", "cuda.shares": "count"}
    assert parse_slot_list(answer) == GPU_CLUSTER


@pytest.mark.parametrize("answer", [None, [], {}, ["cpu", "mem"], {"cpu": 1}, {"": "count"}, "cpu"])
def test_parse_slot_list_rejects_other_shapes(answer: object) -> None:
    with pytest.raises(ValueError, match="expected a non-empty mapping of slot name to type"):
        parse_slot_list(answer)
