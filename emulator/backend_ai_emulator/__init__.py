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
A local emulator of the Backend.AI manager REST API for testing clients such as the Airflow provider.

Programmatic use::

    from backend_ai_emulator import start_emulator

    with start_emulator() as emu:
        print(emu.endpoint, emu.access_key, emu.secret_key)
"""

from __future__ import annotations

from .auth import compute_signature, signed_headers, verify
from .faults import FAULT_KINDS, ROUTE_NAMES, Fault, FaultRegistry
from .server import EmulatorHandle, start_emulator
from .settings import (
    ADMIN_ACCESS_KEY,
    ADMIN_SECRET_KEY,
    API_VERSION,
    DEFAULT_ACCESS_KEY,
    DEFAULT_IMAGES,
    DEFAULT_SECRET_KEY,
    MANAGER_VERSION,
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    VALID_API_VERSIONS,
    EmulatorSettings,
    Keypair,
    PreemptionConfig,
)
from .store import EventRecord, RequestRecord, SessionSnapshot

DEFAULT_IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"

__all__ = [
    "ADMIN_ACCESS_KEY",
    "ADMIN_SECRET_KEY",
    "API_VERSION",
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_IMAGE",
    "DEFAULT_IMAGES",
    "DEFAULT_SECRET_KEY",
    "FAULT_KINDS",
    "MANAGER_VERSION",
    "OTHER_ACCESS_KEY",
    "OTHER_SECRET_KEY",
    "ROUTE_NAMES",
    "VALID_API_VERSIONS",
    "EmulatorHandle",
    "EmulatorSettings",
    "EventRecord",
    "Fault",
    "FaultRegistry",
    "Keypair",
    "PreemptionConfig",
    "RequestRecord",
    "SessionSnapshot",
    "compute_signature",
    "signed_headers",
    "start_emulator",
    "verify",
]
