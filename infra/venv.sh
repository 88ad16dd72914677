# shellcheck shell=bash
# Python tools for infra/, in one virtualenv. Source it from the repo root:
#
#   source infra/venv.sh                      # cfn-lint + SAM CLI (what check.sh needs)
#   source infra/venv.sh --with-cargo-lambda  # also cargo-lambda + zig, to `sam build`
#
# The venv lives at ${AGENTWIRE_INFRA_VENV:-target/infra-venv} and is put first on PATH.
# Installs only when the pins below change. Needs Python >= 3.11 (tomllib).

# cfn-lint must satisfy aws-sam-cli's own range (1.170.0 wants >=1.52,<1.59).
AGENTWIRE_INFRA_PINS=(cfn-lint==1.58.0 aws-sam-cli==1.170.0)
# cargo-lambda pulls ziglang (~400 MB): only for building, not for the offline check.
AGENTWIRE_INFRA_BUILD_PINS=(cargo-lambda==1.9.2 ziglang==0.17.1)

agentwire_infra_venv() {
    local venv="${AGENTWIRE_INFRA_VENV:-target/infra-venv}"
    local python="${PYTHON:-python3}"
    local pins=("${AGENTWIRE_INFRA_PINS[@]}")
    if [[ "${1:-}" == "--with-cargo-lambda" ]]; then
        pins+=("${AGENTWIRE_INFRA_BUILD_PINS[@]}")
    elif [[ -n "${1:-}" ]]; then
        echo "infra/venv.sh: unknown option $1" >&2
        return 2
    fi

    if [[ ! -x "$venv/bin/python" ]]; then
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "infra/venv.sh: $python is older than 3.11" >&2
            return 1
        }
        "$python" -m venv "$venv" || return 1
    fi

    # A stamp per pin set, so a venv with cargo-lambda still counts for the plain check.
    local missing=()
    local pin
    for pin in "${pins[@]}"; do
        grep -qxF "$pin" "$venv/.agentwire-pins" 2>/dev/null || missing+=("$pin")
    done
    if ((${#missing[@]})); then
        local started=$SECONDS
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}" || return 1
        printf '%s\n' "${pins[@]}" >>"$venv/.agentwire-pins"
        echo "infra/venv.sh: installed ${missing[*]} in $((SECONDS - started)) s" >&2
    fi

    local bin
    bin="$(cd "$venv" && pwd)/bin" || return 1
    export PATH="$bin:$PATH"
    export SAM_CLI_TELEMETRY=0
}

agentwire_infra_venv "$@"
