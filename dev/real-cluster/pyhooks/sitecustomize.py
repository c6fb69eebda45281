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
Keep Backend.AI server processes off the cloud metadata address (loaded through PYTHONPATH).

``ai.backend.common.identity`` (imported by the manager, the agent and their CLIs) runs
``asyncio.run(detect_cloud())`` at import time, which sends HTTP requests to 169.254.169.254.
This hook loads that one module with the detection replaced by ``current_provider = None``,
which is what the probe concludes on a machine without cloud metadata ("on-premise").

It fails closed: if the module's source is not byte-for-byte the 26.9.6 file it was written
against, importing the module raises ImportError and the process does not start.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import CodeType, ModuleType

_TARGET = "ai.backend.common.identity"
# sha256 of ai/backend/common/identity.py in backend.ai-common 26.9.6.
_EXPECTED_SHA256 = "e6f4318fec81364be9d4ce2e455c82041ad43417e3a96e4c4a7f5cb8f3237e67"
_PROBE = b"        current_provider = asyncio.run(detect_cloud())\n"
_REPLACEMENT = b"        current_provider = None  # metadata probe disabled (dev/real-cluster)\n"


class _NoProbeLoader(importlib.machinery.SourceFileLoader):
    """Compiles the patched source itself, never a cached .pyc of the original."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        with open(path, "rb") as f:
            source = f.read()
        digest = hashlib.sha256(source).hexdigest()
        if digest != _EXPECTED_SHA256 or source.count(_PROBE) != 1:
            raise ImportError(
                f"{fullname} at {path} is not the source this hook was written for "
                f"(sha256 {digest}); refusing to import it, as it may probe the cloud metadata "
                "address. Re-check dev/real-cluster/pyhooks/sitecustomize.py for this version.",
                name=fullname,
            )
        return compile(source.replace(_PROBE, _REPLACEMENT), path, "exec", dont_inherit=True)

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        if module.current_provider is not None:
            raise ImportError(f"{_TARGET}: cloud detection was not disabled", name=_TARGET)
        module.CLOUD_PROBE_DISABLED = True  # type: ignore[attr-defined]


class _NoProbeFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)  # type: ignore[arg-type]
        if spec is None or spec.origin is None:
            return None
        spec.loader = _NoProbeLoader(fullname, spec.origin)
        return spec


sys.meta_path.insert(0, _NoProbeFinder())
