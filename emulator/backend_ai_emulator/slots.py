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
``GET /config/resource-slots`` and ``GET /config/resource-slots/details``: the slot names the manager knows.

The manager answers the intrinsic slots (``cpu``: count, ``mem``: bytes) followed by the ones its agents'
compute plugins registered in etcd (``config/resource_slots/<name>``), whatever the caller's role. The
details add display metadata for the slots it has metadata for; with ``?sgroup=`` they keep only ``cpu``,
``mem`` and the slots the resource group's agents serve. Answers checked on 26.9.6 (dev/real-cluster).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The slots every manager knows, in the order it lists them.
INTRINSIC_SLOTS: dict[str, str] = {"cpu": "count", "mem": "bytes"}

#: Display metadata the manager ships for well-known slots (``KNOWN_SLOT_METADATA`` in its etcd-config
#: service), in its order. Slots without an entry are left out of ``/details``.
SLOT_METADATA: dict[str, dict[str, Any]] = {
    "cpu": {
        "slot_name": "cpu",
        "description": "CPU",
        "human_readable_name": "CPU",
        "display_unit": "Core",
        "number_format": {"binary": False, "round_length": 0},
        "display_icon": "cpu",
    },
    "mem": {
        "slot_name": "ram",
        "description": "Memory",
        "human_readable_name": "RAM",
        "display_unit": "GiB",
        "number_format": {"binary": True, "round_length": 0},
        "display_icon": "cpu",
    },
    "cuda.device": {
        "slot_name": "cuda.device",
        "human_readable_name": "GPU",
        "description": "CUDA-capable GPU",
        "display_unit": "GPU",
        "number_format": {"binary": False, "round_length": 0},
        "display_icon": "gpu1",
    },
    "cuda.shares": {
        "slot_name": "cuda.shares",
        "human_readable_name": "fGPU",
        "description": "CUDA-capable GPU (fractional)",
        "display_unit": "fGPU",
        "number_format": {"binary": False, "round_length": 2},
        "display_icon": "gpu1",
    },
    "rocm.device": {
        "slot_name": "rocm.device",
        "human_readable_name": "GPU",
        "description": "ROCm-capable GPU",
        "display_unit": "GPU",
        "number_format": {"binary": False, "round_length": 0},
        "display_icon": "gpu2",
    },
    "tpu.device": {
        "slot_name": "tpu.device",
        "human_readable_name": "TPU",
        "description": "TPU device",
        "display_unit": "GPU",
        "number_format": {"binary": False, "round_length": 0},
        "display_icon": "tpu",
    },
}


def slot_type(name: str) -> str:
    """The unit type a plugin registers: ``bytes`` for memory slots (``mem``, ``cuda.mem``), else ``count``."""
    return "bytes" if name == "mem" or name.endswith(".mem") else "count"


def ordered_slots(known_slots: Iterable[str]) -> list[str]:
    """The manager's order: ``cpu`` and ``mem`` first, then the registered slots by name (etcd's order)."""
    known = set(known_slots)
    return [s for s in INTRINSIC_SLOTS if s in known] + sorted(known - set(INTRINSIC_SLOTS))


def resource_slots_body(known_slots: Iterable[str]) -> dict[str, str]:
    """``GET /config/resource-slots``: ``{slot name: slot type}``."""
    return {name: INTRINSIC_SLOTS.get(name, slot_type(name)) for name in ordered_slots(known_slots)}


def resource_metadata_body(
    known_slots: Iterable[str], served_slots: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """
    ``GET /config/resource-slots/details``: metadata of the known slots that have some.

    ``served_slots`` (the ``sgroup`` filter) narrows the answer to ``cpu``, ``mem`` and those slots.
    """
    known = set(known_slots)
    body = {name: dict(meta) for name, meta in SLOT_METADATA.items() if name in known}
    if served_slots is not None:
        keep = {*INTRINSIC_SLOTS, *served_slots}
        body = {name: meta for name, meta in body.items() if name in keep}
    return body
