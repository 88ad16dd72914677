#!/usr/bin/env bash
# Offline checks of the SAM template: cfn-lint, sam validate (SAM transform + lint),
# and infra/assertions.py, whose self-test proves the assertions fail on broken copies.
# No AWS account, credentials or network beyond PyPI (first run only) is needed.
#
#   bash infra/check.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

template=infra/template.yaml

step() {
    local name=$1
    shift
    local started=$SECONDS
    echo "==> $name"
    "$@"
    echo "    $name: ok in $((SECONDS - started)) s"
}

scratch=()
trap 'rm -f "${scratch[@]}"' EXIT

# Must fail: the same assertions on a copy with one property broken.
bites() {
    local description=$1 from=$2 to=$3 mutated
    # Beside the original, so CodeUri (..) still resolves to the workspace.
    mutated=$(mktemp --suffix=.yaml infra/.selftest-XXXXXX)
    scratch+=("$mutated" "$mutated.log")
    sed "s|$from|$to|" "$template" >"$mutated"
    if cmp -s "$template" "$mutated"; then
        echo "self-test '$description': the mutation changed nothing" >&2
        return 1
    fi
    if python infra/assertions.py "$mutated" >"$mutated.log" 2>&1; then
        echo "self-test '$description': assertions passed on a broken template" >&2
        return 1
    fi
    echo "    $description: $(grep -m1 '^FAIL' "$mutated.log")"
}

self_test() {
    bites "WebSocket API as HTTP" "ProtocolType: WEBSOCKET" "ProtocolType: HTTP"
    bites "sessions policy on every table" "Resource: !GetAtt SessionsTable.Arn" 'Resource: "*"'
    bites "DynamoDB TTL on the sessions' ttl duration" "StreamViewType: NEW_AND_OLD_IMAGES" \
        'StreamViewType: NEW_AND_OLD_IMAGES\n      TimeToLiveSpecification: {AttributeName: ttl, Enabled: true}'
    bites "long-poll past the integration limit" "Default: 20000" "Default: 30000"
    bites "wrong binary name" "Binary: agentwire-archiver" "Binary: agentwire-archive"
    bites "scorer triggered by its own scores/" "key: \[{prefix: traces/}\]" "key: [{prefix: scores/}]"
    bites "clusters run on the scorer's bootstrap" "Binary: agentwire-clusters" "Binary: agentwire-scorer"
    bites "clusters writing scores/" '"${Bucket.Arn}/clusters/\*"' '"${Bucket.Arn}/scores/*"'
    bites "evals run twice at once" "ReservedConcurrentExecutions: 1" "ReservedConcurrentExecutions: 2"
    bites "grading routes missing" "Path: /v1/queues/{queue}/{proxy+}" "Path: /v1/queues/{queue}/items"
    bites "fan-out that cannot close clients" "/DELETE/@connections" "/GET/@connections"
    bites "function URL on the HTTP function" "TargetFunctionArn: !GetAtt StreamsFunction.Arn" "TargetFunctionArn: !GetAtt HttpFunction.Arn"
    bites "grading store without BatchWriteItem" "                - dynamodb:BatchWriteItem" "                - dynamodb:BatchGetItem"
    bites "item view without the tenant's config/" 'Resource: !Sub "${Bucket.Arn}/config/\*"' 'Resource: !Sub "${Bucket.Arn}/scores/*"'
    bites "judge writing scores/ (it would judge its own output)" 'Resource: !Sub "${Bucket.Arn}/judge/\*"' 'Resource: !Sub "${Bucket.Arn}/scores/*"'
    bites "judge queue without a failure queue" "deadLetterTargetArn: !GetAtt JudgeFailures.Arn" "deadLetterTargetArn: !GetAtt JudgeQueue.Arn"
}

echo "==> venv"
started=$SECONDS
set --  # venv.sh reads its options from the positional parameters
source infra/venv.sh
echo "    venv: ok in $((SECONDS - started)) s"
export AWS_DEFAULT_REGION=us-east-1
# No credential lookups against an instance metadata service that is not there.
export AWS_EC2_METADATA_DISABLED=true

step "cfn-lint" cfn-lint "$template"
# Plain `sam validate` runs the SAM transform locally; it would call IAM only to resolve
# managed policies named in Policies, which the assertions forbid, so no credentials.
step "sam validate" sam validate --template-file "$template"
step "sam validate --lint" sam validate --lint --template-file "$template"
step "assertions" python infra/assertions.py "$template"
step "assertions self-test" self_test
echo "infra/check.sh: all checks passed"
