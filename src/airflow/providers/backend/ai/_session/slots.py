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
Resource slot names against the ones the Backend.AI manager knows: the check before the first create.

The manager answers a create with an unknown slot with a bare 400 ``Unknown slot type: 'cuda.devices'``.
:func:`check_slots_known` rejects it before any session exists, names the parameter, lists the slots the
manager knows (``GET /config/resource-slots``) and suggests the closest one, also when the misspelt slot is
one this manager does not offer at all (a cluster without GPUs knows ``cpu`` and ``mem`` only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

#: The slot names Backend.AI itself defines (the manager's seeded ``resource_slot_types``, 26.9): what a
#: suggestion may point to even when this manager does not offer the slot.
WELL_KNOWN_SLOTS: tuple[str, ...] = (
    "cpu",
    "mem",
    "cuda.device",
    "cuda.shares",
    "rocm.device",
    "tpu.device",
    "ipu.device",
    "atom.device",
    "atom-plus.device",
    "atom-max.device",
    "gaudi2.device",
    "warboy.device",
    "rngd.device",
    "hyperaccel-lpu.device",
)

#: Names users write for a slot that is spelt differently in Backend.AI. Checked before the similarity
#: search, which would otherwise offer ``cpu`` for ``gpu``.
SLOT_ALIASES: dict[str, str] = {
    "gpu": "cuda.device",
    "gpus": "cuda.device",
    "cuda": "cuda.device",
    "nvidia.com/gpu": "cuda.device",
    "fgpu": "cuda.shares",
    "amd.com/gpu": "rocm.device",
    "cpus": "cpu",
    "cores": "cpu",
    "memory": "mem",
    "ram": "mem",
}

#: How similar (difflib ratio) a name must be to count as a misspelling: ``cuda.devices`` → ``cuda.device``
#: is 0.96, ``gpu`` → ``cpu`` only 0.67.
_CUTOFF = 0.75


def parse_slot_list(answer: Any) -> tuple[str, ...]:
    """
    The slot names of a ``GET /config/resource-slots`` answer, in the manager's order.

    The answer maps each slot name to its unit type: ``{"cpu": "count", "mem": "bytes", "cuda.device":
    "count"}``. Anything else raises ``ValueError`` (the caller then falls back to the syntax check).
    """
    if not isinstance(answer, dict) or not answer:
        raise ValueError(f"expected a non-empty mapping of slot name to type, got {answer!r:.200}")
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in answer.items()):
        raise ValueError(f"expected a non-empty mapping of slot name to type, got {answer!r:.200}")
    return tuple(answer)


def closest_slot(name: str, known: Collection[str]) -> tuple[str, bool] | None:
    """
    The slot ``name`` was probably meant to be, and whether the manager knows it.

    In order: an alias (``gpu`` → ``cuda.device``), the same name in another case, the most similar known
    slot, the most similar slot Backend.AI defines. ``None`` when nothing is close.
    """
    import difflib  # only when a name is unknown: not at Dag parse

    lowered = name.strip().lower()
    alias = SLOT_ALIASES.get(lowered)
    if alias is not None:
        return alias, alias in known
    for slot in known:
        if slot.lower() == lowered:
            return slot, True
    match = difflib.get_close_matches(lowered, list(known), n=1, cutoff=_CUTOFF)
    if match:
        return match[0], True
    match = difflib.get_close_matches(lowered, WELL_KNOWN_SLOTS, n=1, cutoff=_CUTOFF)
    if match:
        return match[0], match[0] in known
    return None


def _hint(name: str, known: Collection[str]) -> str:
    suggestion = closest_slot(name, known)
    if suggestion is None:
        return repr(name)
    slot, offered = suggestion
    if offered:
        return f"{name!r} (did you mean {slot!r}?)"
    if slot == name:
        return f"{name!r} (a Backend.AI slot, but this manager does not offer it)"
    return f"{name!r} (Backend.AI spells it {slot!r}, but this manager does not offer that slot)"


def unknown_slots_message(
    unknown: Sequence[str],
    known: Sequence[str],
    *,
    where: str = "the Backend.AI manager",
    parameter: str = "session_resources",
) -> str:
    """The ``ValueError`` text for slot names ``where`` does not know; ``known`` in the manager's order."""
    hints = [_hint(name, known) for name in unknown]
    listed = ", ".join(hints[:-1]) + f" and {hints[-1]}" if len(hints) > 1 else hints[0]
    noun, such = ("names", "slots") if len(unknown) > 1 else ("name", "slot")
    return (
        f"Invalid {parameter} slot {noun} {listed}: {where} knows no such {such}. "
        f"Known slots: {', '.join(map(repr, known))}"
    )


def check_slots_known(
    resources: Mapping[str, Any],
    known: Sequence[str],
    *,
    where: str = "the Backend.AI manager",
    parameter: str = "session_resources",
) -> None:
    """
    Raise ``ValueError`` naming ``parameter`` when a slot name is not one ``known`` lists.

    ``known`` is the manager's list (:func:`parse_slot_list`); ``where`` names the manager in the message
    (say, ``"the Backend.AI manager at https://api.example.com"``).
    """
    unknown = [name for name in resources if name not in known]
    if unknown:
        raise ValueError(unknown_slots_message(unknown, known, where=where, parameter=parameter))
