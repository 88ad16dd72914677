#!/usr/bin/env bash
# The CDK app against the SAM template: synthesize it offline, then infra/cdk/drift.py
# compares the two (and its self-test proves the comparison fails on broken copies).
# No AWS account, credentials or network beyond npm and PyPI (first run only).
#
#   bash infra/cdk/check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

step() {
    local name=$1
    shift
    local started=$SECONDS
    echo "==> $name"
    "$@"
    echo "    $name: ok in $((SECONDS - started)) s"
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Installs when node_modules is missing or older than the lock file.
if [[ ! -f infra/cdk/node_modules/.package-lock.json || infra/cdk/package-lock.json -nt infra/cdk/node_modules/.package-lock.json ]]; then
    step "npm ci" npm ci --prefix infra/cdk --no-audit --no-fund
fi

# Stand-in bootstraps, one per binary the SAM template builds, each with its own content,
# so the comparison can tell which binary each function's asset is.
for binary in $(sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\).*/\1/p' infra/template.yaml | sort -u); do
    mkdir -p "$scratch/bootstraps/$binary"
    printf '#!/bin/sh\n# stand-in bootstrap for %s\nexit 1\n' "$binary" >"$scratch/bootstraps/$binary/bootstrap"
done

export CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true
synth=(npx cdk synth --quiet --no-notices --no-version-reporting
    -c bootstrapDir="$scratch/bootstraps" -o "$scratch/cdk.out")
# Without a network where the machine allows it, so a lookup that crept in fails here.
if unshare -rn true 2>/dev/null; then
    synth=(unshare -rn "${synth[@]}")
fi
step "cdk synth" bash -c 'cd infra/cdk && "$@"' synth "${synth[@]}"

echo "==> venv"
started=$SECONDS
set --  # venv.sh reads its options from the positional parameters
source infra/venv.sh
echo "    venv: ok in $((SECONDS - started)) s"

# W3005: the CDK's functions depend on their roles both by DependsOn and by GetAtt.
step "cfn-lint (CDK template)" cfn-lint --ignore-checks W3005 -- "$scratch/cdk.out/agentwire.template.json"
drift=(python infra/cdk/drift.py --sam infra/template.yaml --cdk-out "$scratch/cdk.out" --bootstrap-dir "$scratch/bootstraps")
step "drift" "${drift[@]}"
step "drift self-test" "${drift[@]}" --self-test
echo "infra/cdk/check.sh: all checks passed"
