#!/usr/bin/env bash
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
#
# Re-resolve the lock files of both Airflow lines from requirements/*.in.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_uv
cd "$REPO_ROOT/requirements"
uv pip compile --quiet --python-version 3.13 --python-platform x86_64-unknown-linux-gnu \
  --override overrides.txt airflow3.in -o airflow3.lock.txt
uv pip compile --quiet --python-version 3.12 --python-platform x86_64-unknown-linux-gnu \
  airflow2.in -o airflow2.lock.txt
