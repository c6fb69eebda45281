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
Validation of the operators' session parameters, the default session name and the per-try session tag.

Every check raises ``ValueError`` naming the parameter and what it accepts; the operators call these at
construction and again after rendering templates, so invalid input never creates a session.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

CLUSTER_MODES = ("single-node", "multi-node")
#: Backend.AI session names: 4-64 ASCII word characters, dots and dashes, starting and ending with a word
#: character (the manager's ``SessionName`` validator matches with ``re.ASCII``).
SESSION_NAME_PATTERN = re.compile(r"^(?=.{4,64}\Z)\w[\w.-]*\w\Z", re.ASCII)
#: A resource slot name: ``cpu``, ``mem``, ``cuda.device``, ``cuda.shares``, ``rocm.device``, ...
_SLOT_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*\Z")
#: A slot amount: a number with an optional binary-size suffix (``4``, ``0.5``, ``8g``, ``512m``, ``1.5GiB``).
_SLOT_AMOUNT = re.compile(r"^\d+(\.\d+)?\s*([kmgtpe](i?b)?|b)?\Z", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^\w.-]+", re.ASCII)
#: The manager stores ``job_priority`` in a PostgreSQL ``integer``; a value outside it is an HTTP 500.
JOB_PRIORITY_RANGE = (-(2**31), 2**31 - 1)


def check_choice(parameter: str, value: Any, accepted: tuple[str, ...]) -> str:
    if value not in accepted:
        raise ValueError(
            f"Invalid {parameter} {value!r}: accepted values are {', '.join(map(repr, accepted))}"
        )
    return value


def check_bool(parameter: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Invalid {parameter} {value!r}: expected True or False")
    return value


def check_positive_number(parameter: str, value: Any) -> float:
    """Accept a positive, finite int or float (or its string form, as templates render)."""
    try:
        number = float(value)
        if isinstance(value, bool) or not 0 < number < float("inf"):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {parameter} {value!r}: expected a positive number of seconds") from None
    return number


def check_optional_positive_number(parameter: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        return check_positive_number(parameter, value)
    except ValueError:
        raise ValueError(
            f"Invalid {parameter} {value!r}: expected a positive number of seconds or None"
        ) from None


#: Linux's ``MAX_ARG_STRLEN`` (32 pages of 4 KiB) less the NUL: the longest string a Backend.AI agent can
#: hand its shell. The batch command is one argument of ``sh -c``, and each environment variable one
#: ``NAME=value`` string; longer, the session starts and its job fails with ``E2BIG`` (measured on 26.9.6).
MAX_ARG_BYTES = 131_071
#: The manager stores ``bootstrap_script`` in a ``varchar(16384)``; a longer one fails the create with HTTP 500.
MAX_BOOTSTRAP_SCRIPT_CHARS = 16_384


def check_command(value: Any) -> str:
    command = check_non_empty_string("command", value)
    size = len(command.encode())
    if size > MAX_ARG_BYTES:
        raise ValueError(
            f"Invalid command: {size:,} bytes, but the agent runs it as one shell argument, which Linux limits "
            f"to {MAX_ARG_BYTES:,} bytes; put the script in the image or a virtual folder and run that"
        )
    return command


def check_bootstrap_script(value: Any) -> str | None:
    if value is None or value == "":
        return None
    script = check_non_empty_string("bootstrap_script", value)
    if len(script) > MAX_BOOTSTRAP_SCRIPT_CHARS:
        raise ValueError(
            f"Invalid bootstrap_script: {len(script):,} characters, but the manager stores at most "
            f"{MAX_BOOTSTRAP_SCRIPT_CHARS:,}; put the script in the image or a virtual folder and run that"
        )
    return script


def check_environment(value: Any) -> dict[str, str]:
    environment = check_string_mapping("environment", value)
    for name, item in environment.items():
        if len(f"{name}={item}".encode()) > MAX_ARG_BYTES:
            raise ValueError(
                f"Invalid environment[{name!r}]: with its name it takes over {MAX_ARG_BYTES:,} bytes, "
                "Linux's limit on one environment string; pass large data through a virtual folder"
            )
    return environment


def check_cluster_size(value: Any) -> int:
    try:
        size = int(value)
        if isinstance(value, bool) or size != float(value) or size < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"Invalid cluster_size {value!r}: expected an integer of at least 1") from None
    return size


def check_job_priority(value: Any) -> int:
    """``job_priority`` as the manager stores it: an integer in PostgreSQL's ``integer`` range."""
    low, high = JOB_PRIORITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(
            f"Invalid job_priority {value!r}: expected an integer from {low} to {high} "
            "(a higher value may preempt the same user's sessions of a lower one; the default is 0)"
        )
    return value


def check_is_preemptible(value: Any) -> bool:
    """``is_preemptible`` must be a real bool: the manager would read ``"no"`` as False and ``"x"`` as a 400."""
    if not isinstance(value, bool):
        raise ValueError(f"Invalid is_preemptible {value!r}: expected True or False")
    return value


def check_session_name(value: Any) -> str:
    if not isinstance(value, str) or not SESSION_NAME_PATTERN.match(value):
        raise ValueError(
            f"Invalid session_name {value!r}: expected 4-64 characters of ASCII letters, digits, '_', '.' and '-', "
            "starting and ending with a letter, digit or '_'"
        )
    return value


def check_non_empty_string(parameter: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Invalid {parameter} {value!r}: expected a non-empty string")
    return value


def check_resources(value: Any) -> dict[str, str | int]:
    """Resource slots such as ``{"cpu": 4, "mem": "8g", "cuda.device": 1}``; amounts are numbers or sizes."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"Invalid session_resources {value!r}: expected a mapping of slot name to amount")
    slots: dict[str, str | int] = {}
    for slot, amount in value.items():
        if not isinstance(slot, str) or not _SLOT_NAME.match(slot):
            raise ValueError(
                f"Invalid session_resources slot name {slot!r}: expected names like 'cpu', 'mem' or 'cuda.device'"
            )
        if isinstance(amount, bool) or not (
            (isinstance(amount, int | float) and amount > 0)
            or (isinstance(amount, str) and _SLOT_AMOUNT.match(amount))
        ):
            raise ValueError(
                f"Invalid session_resources[{slot!r}] {amount!r}: expected a positive number or a size such as '8g'"
            )
        slots[slot] = amount if isinstance(amount, str | int) else str(amount)
    return slots


def check_string_mapping(parameter: str, value: Any) -> dict[str, str]:
    """A mapping of strings to strings (environment variables, mount points); values are converted to str."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"Invalid {parameter} {value!r}: expected a mapping of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Invalid {parameter} key {key!r}: expected a non-empty string")
        if item is None or isinstance(item, Mapping | list | tuple | set):
            raise ValueError(f"Invalid {parameter}[{key!r}] {item!r}: expected a string")
        result[key] = str(item)
    return result


def check_string_list(parameter: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"Invalid {parameter} {value!r}: expected a list of non-empty strings")
    return tuple(value)


def check_optional_session_name(value: Any) -> str | None:
    return None if value is None else check_session_name(value)


def check_batch_timeout(value: Any) -> int | None:
    """Seconds the job may run, rounded to whole seconds (the manager's unit), or None."""
    timeout = check_optional_positive_number("batch_timeout", value)
    return None if timeout is None else max(1, round(timeout))


#: The operators' templated session fields and their checks. The operators run them when the Dag is parsed
#: (on values without templates) and again after rendering; the hook's ``run_batch`` runs the same.
TEMPLATED_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "image": partial(check_non_empty_string, "image"),
    "command": check_command,
    "bootstrap_script": check_bootstrap_script,
    "session_name": check_optional_session_name,
    "session_resources": check_resources,
    "vfolder_mounts": partial(check_string_list, "vfolder_mounts"),
    "mount_map": partial(check_string_mapping, "mount_map"),
    "environment": check_environment,
}


def default_session_name(dag_id: str, task_id: str, run_id: str, map_index: int, try_number: int) -> str:
    """
    Derive a valid session name that is unique per task try.

    The readable part (Dag and task ids) is sanitised and shortened; a hash of every identifying field keeps
    names of different runs, mapped instances and tries apart, so a retry never reuses the previous try's
    session through Backend.AI's same-name reuse.
    """
    digest = hashlib.sha256(f"{dag_id}\n{task_id}\n{run_id}\n{map_index}\n{try_number}".encode()).hexdigest()[
        :12
    ]
    suffix = f"-t{try_number}-{digest}"
    readable = _NAME_UNSAFE.sub("-", f"{dag_id}-{task_id}").strip("-.") or "task"
    readable = readable[: 64 - len("af-") - len(suffix)].rstrip("-.")
    return f"af-{readable}{suffix}"


#: Length of the hex digest in a session tag. Backend.AI stores tags in a ``VARCHAR(64)`` column (the
#: API does not check the length: a longer tag would fail in the database), so tags stay well under it.
SESSION_TAG_DIGEST_LENGTH = 32


def session_tag(dag_id: str, task_id: str, run_id: str, map_index: int, try_number: int) -> str:
    """
    Derive the Backend.AI tag of the session(s) one task try creates: ``af-`` and 32 hex digits (35 characters).

    The same try always gets the same tag, whatever the session's name, so a retry can compute the tags of
    the earlier tries and find what they left behind (see ``BackendAIHook.find_sessions_by_tag``); different
    Dags, tasks, runs, mapped instances and tries get different tags.
    """
    key = f"session-tag\n{dag_id}\n{task_id}\n{run_id}\n{map_index}\n{try_number}"
    return f"af-{hashlib.sha256(key.encode()).hexdigest()[:SESSION_TAG_DIGEST_LENGTH]}"
