#!/usr/bin/env bash
# Run the provider's tests against the real cluster that up.sh DIR started: the SDK-level contract suite,
# the provider tests (tests/real_cluster) and the system-test Dags (tests/system), on the Airflow 3 venv.
# Every part runs even if an earlier one fails; the exit status is 1 if any failed. Prints the time of each.
#
# usage: test.sh DIR [extra pytest args...]
#   PYTHON=/path/to/python   interpreter to use (default: .venv-airflow3/bin/python of this work tree)
set -uo pipefail

[ $# -ge 1 ] || { echo "usage: $0 DIR [pytest args...]" >&2; exit 2; }
DIR="$1"
shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv-airflow3/bin/python}"
if [ ! -f "$DIR/cluster.env" ]; then
  echo "test.sh: $DIR/cluster.env does not exist: run dev/real-cluster/up.sh $DIR first" >&2
  exit 2
fi
set -a
# shellcheck disable=SC1091
. "$DIR/cluster.env"
set +a
# The system tests read these two.
export BACKEND_AI_IMAGE="${BACKEND_AI_IMAGE:-$BACKEND_AI_TEST_IMAGE}"
: "${AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL:?cluster.env does not set AIRFLOW_CONN_BACKEND_AI_DEFAULT_REAL}"

cd "$REPO" || exit 2
failed=()
total_start=$SECONDS
run_part() {
  local name="$1" start=$SECONDS rc
  shift
  echo "[test.sh] ${name}: $*"
  "$PYTHON" -m pytest "$@" -q
  rc=$?
  echo "[test.sh] ${name}: exit ${rc} in $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || failed+=("$name")
}

run_part contract tests/contract "$@"
run_part real_cluster tests/real_cluster "$@"
run_part system tests/system "$@"

echo "[test.sh] total $((SECONDS - total_start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "[test.sh] FAILED: ${failed[*]}"
  exit 1
fi
echo "[test.sh] all passed"
