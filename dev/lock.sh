#!/usr/bin/env bash
# Re-resolve the lock files of both Airflow lines from requirements/*.in.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_uv
cd "$REPO_ROOT/requirements"
uv pip compile --quiet --python-version 3.13 --python-platform x86_64-unknown-linux-gnu \
  --override overrides.txt airflow3.in -o airflow3.lock.txt
uv pip compile --quiet --python-version 3.12 --python-platform x86_64-unknown-linux-gnu \
  airflow2.in -o airflow2.lock.txt
