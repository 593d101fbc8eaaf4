#!/usr/bin/env bash
# Run the whole local stack (`make run`): install what is missing, serve SmolLM2-135M-Instruct
# with the vLLM CPU build on 127.0.0.1:8001, then the Nescio proxy on 127.0.0.1:8080 in front
# of it. Ctrl-C (or SIGTERM) stops both servers; nothing is left running.
#
# Environment:
#   NESCIO_UPSTREAM_URL  use this OpenAI-compatible server (base URL without /v1) instead of
#                        starting vLLM; only the project venv is installed then
#   NESCIO_CONCEPTS      concept list (default examples/concepts.yaml)
#   NESCIO_VLLM_PORT     local vLLM port (default 8001)
#   NESCIO_PROXY_PORT    proxy port (default 8080)
#   NESCIO_HOME          runtime home for the vLLM venv, model and logs (default <repo>/.nescio)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
export NESCIO_HOME="${NESCIO_HOME:-$REPO/.nescio}" HF_HUB_OFFLINE=1
CONCEPTS="${NESCIO_CONCEPTS:-examples/concepts.yaml}"
VLLM_PORT="${NESCIO_VLLM_PORT:-8001}"
PROXY_PORT="${NESCIO_PROXY_PORT:-8080}"
PROXY_URL="http://127.0.0.1:$PROXY_PORT"
LOG_DIR="$NESCIO_HOME/logs"
children=()

log() { printf '[run] %s\n' "$*"; }

# shellcheck disable=SC2317,SC2329  # invoked by the EXIT trap (SC2317 on shellcheck < 0.10)
stop_children() {
    trap - EXIT INT TERM
    local pid deadline=$((SECONDS + 20))
    [[ ${#children[@]} -gt 0 ]] || return 0
    log "stopping ${#children[@]} server(s)"
    for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${children[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    log "stopped"
}
trap stop_children EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Poll URL until it answers 2xx; give up after TIMEOUT seconds or when PID exits.
wait_http() {
    local url=$1 timeout=$2 pid=$3 start=$SECONDS
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited before $url answered"
            return 1
        fi
        if ((SECONDS - start > timeout)); then
            log "$url not ready after $timeout s"
            return 1
        fi
        sleep 0.5
    done
    log "$url ready after $((SECONDS - start)) s"
}

phase_start=$SECONDS
if [[ -n "${NESCIO_UPSTREAM_URL:-}" ]]; then
    log "NESCIO_UPSTREAM_URL is set: using $NESCIO_UPSTREAM_URL, not starting vLLM"
    "$REPO/deploy/local/setup.sh" project
    upstream="${NESCIO_UPSTREAM_URL%/}"
else
    "$REPO/deploy/local/setup.sh" all
    upstream="http://127.0.0.1:$VLLM_PORT"
fi
log "setup: $((SECONDS - phase_start)) s"

if [[ -z "${NESCIO_UPSTREAM_URL:-}" ]]; then
    phase_start=$SECONDS
    log "starting vLLM on $upstream (log $LOG_DIR/vllm-$VLLM_PORT.log)"
    python3 "$REPO/deploy/local/serve_vllm.py" --port "$VLLM_PORT" &
    children+=($!)
    wait_http "$upstream/v1/models" 300 "${children[-1]}"
    log "vLLM start: $((SECONDS - phase_start)) s"
fi

phase_start=$SECONDS
mkdir -p "$LOG_DIR"
log "starting the proxy on $PROXY_URL with $CONCEPTS (log $LOG_DIR/proxy-$PROXY_PORT.log)"
"$REPO/.venv/bin/nescio" serve --concepts "$CONCEPTS" --upstream-url "$upstream" \
    --host 127.0.0.1 --port "$PROXY_PORT" >"$LOG_DIR/proxy-$PROXY_PORT.log" 2>&1 &
children+=($!)
wait_http "$PROXY_URL/ready" 180 "${children[-1]}" || {
    tail -n 30 "$LOG_DIR/proxy-$PROXY_PORT.log"
    exit 1
}
log "proxy start: $((SECONDS - phase_start)) s"
log "ready $SECONDS s after run.sh started (setup included)"

model="$(curl -fsS "$PROXY_URL/v1/models" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])')"
cat <<EOF

Nescio is serving $model at $PROXY_URL/v1 (upstream $upstream). Try:

  curl -s $PROXY_URL/v1/chat/completions -H 'Content-Type: application/json' -i \\
    -d '{"model": "$model", "max_tokens": 32, "temperature": 0,
         "messages": [{"role": "user", "content": "What is the capital of France?"}]}'

  .venv/bin/python - <<'PY'
  from openai import OpenAI
  client = OpenAI(base_url="$PROXY_URL/v1", api_key="unused-locally")
  reply = client.chat.completions.create(
      model="$model", max_tokens=32, temperature=0,
      messages=[{"role": "user", "content": "What is the capital of France?"}])
  print(reply.choices[0].message.content)
  PY

The X-Nescio-Decision response header says whether a concept matched. Ctrl-C stops everything.
EOF

set +e
wait -n "${children[@]}"
status=$?
set -e
log "a server exited (status $status); shutting down the rest"
exit "$status"
