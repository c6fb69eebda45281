#!/usr/bin/env bash
# Re-resolve requirements.lock.txt (the full pinned set up.sh installs) from requirements.txt.
# --no-config: the project's own uv settings (e.g. its tabulate override) must not leak in here.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$HERE/../lib.sh"
ensure_uv
cd "$HERE/../.."
uv pip compile --quiet --no-config --python "$(find_python 3.13)" \
  --custom-compile-command "dev/real-cluster/lock.sh" \
  dev/real-cluster/requirements.txt -o dev/real-cluster/requirements.lock.txt
