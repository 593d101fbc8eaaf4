#!/usr/bin/env bash
# The whole check, exactly as CI runs it (`make test`, `.ci/run`): install what is missing
# (project venv, vLLM CPU venv, converted model), then lint, format check, type check and the
# full test suite, integration tests against the real vLLM server included.
#
#   deploy/local/test.sh [pytest args...]      e.g. deploy/local/test.sh -k proxy -x
#
# Every check runs even if an earlier one fails; the exit code is non-zero if any failed.
# Works on a fresh clone with no prior state, as root, without a terminal; with CI=true the
# integration tests fail (instead of skipping) when the real server cannot be started.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
VENV_BIN="$REPO/.venv/bin"
failed=()
total_start=$SECONDS

log() { printf '[test] %s\n' "$*"; }

check() {
    local name=$1 start=$SECONDS
    shift
    log "$name: $*"
    if "$@"; then
        log "$name: passed in $((SECONDS - start)) s"
    else
        log "$name: FAILED (exit $?) after $((SECONDS - start)) s"
        failed+=("$name")
    fi
}

"$REPO/deploy/local/setup.sh" project vllm model </dev/null

check "ruff check" "$VENV_BIN/ruff" check .
check "ruff format" "$VENV_BIN/ruff" format --check .
check "mypy" "$VENV_BIN/mypy"
check "pytest" "$VENV_BIN/pytest" -q "$@" </dev/null

if [[ ${#failed[@]} -gt 0 ]]; then
    log "FAILED: ${failed[*]} (total $((SECONDS - total_start)) s)"
    exit 1
fi
log "all checks passed (total $((SECONDS - total_start)) s)"
