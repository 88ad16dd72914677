"""Checks on infra/template.yaml that cfn-lint and `sam validate` do not make.

Usage: python infra/assertions.py infra/template.yaml

Loads the template with cfn-lint's decoder (it understands !Ref, !Sub, !GetAtt, !If...),
prints one line per passed assertion and exits 1 listing the failures. CodeUri is
resolved against the template's directory, so a copy checked elsewhere must sit beside
the original.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

from cfnlint.decode import decode

FUNCTIONS = {
    "StreamsFunction": "agentwire-streams",
    "HttpFunction": "agentwire-http",
    "WebSocketFunction": "agentwire-websocket",
    "ArchiverFunction": "agentwire-archiver",
    "ScorerFunction": "agentwire-scorer",
    "DispatchFunction": "agentwire-dispatch",
    "JudgeFunction": "agentwire-judge",
    "EvalsFunction": "agentwire-evals",
    "ClustersFunction": "agentwire-clusters",
}
WEBSOCKET_ROUTES = [
    "$connect", "$disconnect", "$default",
    "subscribe", "unsubscribe", "control", "send", "presence", "ping",
]
COMMON_ENV = ["AGENTWIRE_SESSIONS_TABLE", "AGENTWIRE_BUCKET", "RUST_LOG"]
# Only the functions that push to WebSocket clients and check tokens get these.
API_ENV = ["AGENTWIRE_CONNECTIONS_TABLE", "AGENTWIRE_TOKEN_SECRET_ARN", "AGENTWIRE_WS_ENDPOINT"]
# The dispatch function appends wake events (pushed to WebSocket followers) and derives
# the webhook key from the token secret.
# The evals function posts questions into sessions (pushed to WebSocket followers too).
API_FUNCTIONS = ["StreamsFunction", "WebSocketFunction", "DispatchFunction", "EvalsFunction"]
# The HTTP function checks tokens but appends to no session and pushes to no client.
TOKEN_FUNCTIONS = ["HttpFunction"]
# Scheduled jobs: one function each, in functions/<folder>, with a rate schedule.
JOBS = {"ArchiverFunction": "archiver", "ScorerFunction": "scorer", "DispatchFunction": "archiver",
        "EvalsFunction": "archiver", "ClustersFunction": "scorer"}
OUTPUTS = [
    "HttpApiUrl", "WebSocketUrl", "ManagementApiUrl", "BucketName",
    "SessionsTableName", "ConnectionsTableName", "TokenSecretArn",
]
# API Gateway drops an integration after 29 s; a long-poll must answer before that.
INTEGRATION_LIMIT_MS = 29_000
# Actions that always have a resource ARN to scope to.
SCOPABLE_PREFIXES = ("dynamodb:", "s3:", "execute-api:", "secretsmanager:")


class Template:
    def __init__(self, path: Path):
        self.path = path
        doc, errors = decode(str(path))
        if errors or doc is None:
            raise SystemExit(f"{path}: cannot parse: {[str(e) for e in errors]}")
        self.doc = doc
        self.resources: dict[str, Any] = doc.get("Resources", {})
        self.globals: dict[str, Any] = doc.get("Globals", {}).get("Function", {})

    def of_type(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    def props(self, name: str) -> dict[str, Any]:
        resource = self.resources.get(name)
        if resource is None:
            raise AssertionError(f"no resource {name}")
        return resource.get("Properties", {})

    def function_prop(self, name: str, key: str) -> Any:
        """A function property as deployed: the function's own value, else Globals."""
        return self.props(name).get(key, self.globals.get(key))

    def function_env(self, name: str) -> dict[str, Any]:
        merged = dict(self.globals.get("Environment", {}).get("Variables", {}))
        merged.update(self.props(name).get("Environment", {}).get("Variables", {}))
        return merged


def refs(value: Any) -> set[str]:
    """Logical ids and parameters that an intrinsic expression refers to."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                found.update(m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                found |= refs(inner[1:] if isinstance(inner, list) else [])
            else:
                found |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs(inner)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(t: Template) -> list[tuple[str, dict[str, Any]]]:
    """Every policy statement in the template, with where it is."""
    found = []
    for name, resource in t.resources.items():
        props = resource.get("Properties", {})
        kind = resource.get("Type")
        docs = []
        if kind == "AWS::Serverless::Function":
            docs = [p for p in as_list(props.get("Policies", [])) if isinstance(p, dict)]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy"):
            docs = [props.get("PolicyDocument", {})]
        elif kind == "AWS::IAM::Role":
            docs = [p.get("PolicyDocument", {}) for p in props.get("Policies", [])]
        for doc in docs:
            for statement in as_list(doc.get("Statement", [])):
                found.append((name, statement))
    return found


CHECKS: list[tuple[str, Callable[[Template], None]]] = []


def check(description: str):
    def register(fn: Callable[[Template], None]):
        CHECKS.append((description, fn))
        return fn
    return register


def expect(condition: bool, detail: str) -> None:
    if not condition:
        raise AssertionError(detail)


def websocket_api(t: Template) -> str:
    apis = {k for k, v in t.of_type("AWS::ApiGatewayV2::Api").items()
            if v.get("Properties", {}).get("ProtocolType") == "WEBSOCKET"}
    expect(len(apis) == 1, f"expected one WEBSOCKET AWS::ApiGatewayV2::Api, found {sorted(apis)}")
    return apis.pop()


@check("WebSocket API: ProtocolType WEBSOCKET, RouteSelectionExpression $request.body.action")
def _(t: Template) -> None:
    api = websocket_api(t)
    expression = t.props(api).get("RouteSelectionExpression")
    expect(expression == "$request.body.action", f"{api}.RouteSelectionExpression is {expression!r}")


@check("WebSocket routes ($connect, $disconnect, $default, subscribe, ...) all target the AWS_PROXY integration of WebSocketFunction")
def _(t: Template) -> None:
    api = websocket_api(t)
    integrations = {
        k for k, v in t.of_type("AWS::ApiGatewayV2::Integration").items()
        if api in refs(v["Properties"].get("ApiId"))
        and v["Properties"].get("IntegrationType") == "AWS_PROXY"
        and "WebSocketFunction" in refs(v["Properties"].get("IntegrationUri"))
    }
    expect(len(integrations) == 1, f"expected one AWS_PROXY integration to WebSocketFunction, found {sorted(integrations)}")
    integration = integrations.pop()
    routes = {
        v["Properties"].get("RouteKey"): v["Properties"]
        for v in t.of_type("AWS::ApiGatewayV2::Route").values()
        if api in refs(v["Properties"].get("ApiId"))
    }
    missing = [key for key in WEBSOCKET_ROUTES if key not in routes]
    expect(not missing, f"missing routes {missing}")
    astray = [key for key, p in routes.items()
              if integration not in refs(p.get("Target")) or "integrations/" not in str(p.get("Target"))]
    expect(not astray, f"routes not targeting integrations/{integration}: {astray}")


@check("WebSocket stage auto-deploys and API Gateway may invoke WebSocketFunction from this API only")
def _(t: Template) -> None:
    api = websocket_api(t)
    stages = [v["Properties"] for v in t.of_type("AWS::ApiGatewayV2::Stage").values()
              if api in refs(v["Properties"].get("ApiId"))]
    expect(len(stages) == 1 and stages[0].get("AutoDeploy") is True, "need one AutoDeploy stage")
    permissions = [v["Properties"] for v in t.of_type("AWS::Lambda::Permission").values()
                   if "WebSocketFunction" in refs(v["Properties"].get("FunctionName"))]
    expect(any(p.get("Principal") == "apigateway.amazonaws.com" and api in refs(p.get("SourceArn"))
               for p in permissions), "no apigateway permission scoped by SourceArn to the API")


for _function, _binary in FUNCTIONS.items():
    @check(f"{_function}: rust-cargolambda building {_binary}, provided.al2023, bootstrap, Architectures from the parameter")
    def _(t: Template, name: str = _function, binary: str = _binary) -> None:
        resource = t.resources.get(name)
        expect(resource is not None and resource["Type"] == "AWS::Serverless::Function", f"no function {name}")
        metadata = resource.get("Metadata", {})
        expect(metadata.get("BuildMethod") == "rust-cargolambda", f"BuildMethod is {metadata.get('BuildMethod')!r}")
        got = metadata.get("BuildProperties", {}).get("Binary")
        expect(got == binary, f"BuildProperties.Binary is {got!r}")
        runtime = t.function_prop(name, "Runtime")
        expect(runtime == "provided.al2023", f"Runtime is {runtime!r}")
        handler = t.function_prop(name, "Handler")
        expect(handler == "bootstrap", f"Handler is {handler!r}")
        arch = t.function_prop(name, "Architectures")
        expect(arch == [{"Ref": "Architecture"}], f"Architectures is {arch!r}")
        allowed = t.doc.get("Parameters", {}).get("Architecture", {}).get("AllowedValues")
        expect(sorted(allowed or []) == ["arm64", "x86_64"], f"Architecture.AllowedValues is {allowed!r}")


@check("CodeUri of every function is the Cargo workspace root, and each Binary is a [[bin]] of a member")
def _(t: Template) -> None:
    bins: set[str] = set()
    for name in FUNCTIONS:
        code_uri = t.function_prop(name, "CodeUri")
        expect(isinstance(code_uri, str), f"{name}.CodeUri is {code_uri!r}")
        root = (t.path.parent / code_uri).resolve()
        manifest = root / "Cargo.toml"
        expect(manifest.is_file(), f"{name}: no {manifest}")
        workspace = tomllib.loads(manifest.read_text()).get("workspace", {})
        expect("members" in workspace, f"{manifest} is not a workspace root")
        for member in workspace["members"]:
            member_manifest = root / member / "Cargo.toml"
            if member_manifest.is_file():
                package = tomllib.loads(member_manifest.read_text())
                bins.update(b.get("name") for b in package.get("bin", []))
    missing = [b for b in FUNCTIONS.values() if b not in bins]
    expect(not missing, f"binaries not found in the workspace: {missing}")


@check("every function logs JSON to its own log group with a retention")
def _(t: Template) -> None:
    for name in FUNCTIONS:
        logging = dict(t.globals.get("LoggingConfig", {}))
        logging.update(t.props(name).get("LoggingConfig", {}))
        expect(logging.get("LogFormat") == "JSON", f"{name}: LogFormat is {logging.get('LogFormat')!r}")
        groups = refs(logging.get("LogGroup"))
        expect(len(groups) == 1, f"{name}: LoggingConfig.LogGroup does not refer to a log group")
        group = t.resources.get(groups.pop(), {})
        expect(group.get("Type") == "AWS::Logs::LogGroup", f"{name}: its LogGroup is not an AWS::Logs::LogGroup")
        expect(group["Properties"].get("RetentionInDays") is not None, f"{name}: its log group has no RetentionInDays")


@check("every function gets the common environment variables; only the API functions get the token secret and the push endpoint")
def _(t: Template) -> None:
    for name in FUNCTIONS:
        missing = [v for v in COMMON_ENV if v not in t.function_env(name)]
        expect(not missing, f"{name} lacks {missing}")
        wanted = (API_ENV if name in API_FUNCTIONS
                  else ["AGENTWIRE_TOKEN_SECRET_ARN"] if name in TOKEN_FUNCTIONS else [])
        missing = [v for v in wanted if v not in t.function_env(name)]
        expect(not missing, f"{name} lacks {missing}")
        extra = [v for v in API_ENV if v not in wanted and v in t.function_env(name)]
        expect(not extra, f"{name} is given {extra}, which it does not use")
    expect("AGENTWIRE_LONG_POLL_TIMEOUT_MS" in t.function_env("StreamsFunction"), "StreamsFunction lacks AGENTWIRE_LONG_POLL_TIMEOUT_MS")
    expect("AGENTWIRE_IDLE_MINUTES" in t.function_env("ArchiverFunction"), "ArchiverFunction lacks AGENTWIRE_IDLE_MINUTES")


@check("function policies are inline statements only (least privilege; keeps `sam validate` off IAM)")
def _(t: Template) -> None:
    for name in FUNCTIONS:
        for policy in as_list(t.props(name).get("Policies", [])):
            expect(isinstance(policy, dict) and set(policy) == {"Statement"},
                   f"{name} has a managed or templated policy: {policy!r}")


@check("no policy statement grants dynamodb:/s3:/execute-api:/secretsmanager: actions on Resource \"*\"")
def _(t: Template) -> None:
    bad = []
    for where, statement in statements(t):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(statement.get("Action", []))]
        scopable = [a for a in actions if a == "*" or a.startswith(SCOPABLE_PREFIXES)]
        if scopable and "*" in as_list(statement.get("Resource")):
            bad.append(f"{where}/{statement.get('Sid', '?')}: {scopable}")
    expect(not bad, "; ".join(bad))


@check("ConnectionsTable expires rows by TTL on expires_at")
def _(t: Template) -> None:
    ttl = t.props("ConnectionsTable").get("TimeToLiveSpecification", {})
    expect(ttl.get("AttributeName") == "expires_at" and ttl.get("Enabled") is True, f"TimeToLiveSpecification is {ttl!r}")


@check("SessionsTable has NO DynamoDB TTL (its ttl attribute is a duration) and a NEW_AND_OLD_IMAGES stream")
def _(t: Template) -> None:
    props = t.props("SessionsTable")
    expect("TimeToLiveSpecification" not in props, "SessionsTable must not enable DynamoDB TTL")
    view = props.get("StreamSpecification", {}).get("StreamViewType")
    expect(view == "NEW_AND_OLD_IMAGES", f"StreamViewType is {view!r}")


@check("both tables: pk/sk string keys, on-demand, point-in-time recovery, encryption")
def _(t: Template) -> None:
    for name in ("SessionsTable", "ConnectionsTable"):
        props = t.props(name)
        keys = [(k["AttributeName"], k["KeyType"]) for k in props.get("KeySchema", [])]
        expect(keys == [("pk", "HASH"), ("sk", "RANGE")], f"{name} keys are {keys}")
        expect(props.get("BillingMode") == "PAY_PER_REQUEST", f"{name} is not PAY_PER_REQUEST")
        pitr = props.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
        expect(pitr is True, f"{name} has no point-in-time recovery")
        expect(props.get("SSESpecification", {}).get("SSEEnabled") is True, f"{name} has no SSE")


@check("one function per job, each with a rate(...) schedule and its package in functions/")
def _(t: Template) -> None:
    import re
    for name, folder in JOBS.items():
        expect(name in FUNCTIONS, f"{name} is not a function")
        events = t.props(name).get("Events", {})
        schedules = [e["Properties"].get("Schedule", "") for e in events.values() if e.get("Type") == "Schedule"]
        expect(len(schedules) == 1 and re.fullmatch(r"rate\(\d+ (minute|hour|day)s?\)", schedules[0]),
               f"{name} schedules are {schedules}")
        package = t.path.parent.parent / "functions" / folder / "Cargo.toml"
        expect(package.exists(), f"{package} is missing")


@check("ArchiverFunction reads the SessionsTable stream filtered to sk=meta and new log# records, and sweeps on a schedule")
def _(t: Template) -> None:
    events = t.props("ArchiverFunction").get("Events", {})
    streams = [e["Properties"] for e in events.values() if e.get("Type") == "DynamoDB"]
    expect(len(streams) == 1 and refs(streams[0].get("Stream")) == {"SessionsTable"}, "no DynamoDB event on SessionsTable")
    patterns = [f.get("Pattern") for f in streams[0].get("FilterCriteria", {}).get("Filters", [])]
    expect(
        patterns
        == [
            '{"dynamodb":{"Keys":{"sk":{"S":["meta"]}}}}',
            '{"eventName":["INSERT"],"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"log#"}]}}}}',
        ],
        f"filter patterns are {patterns}",
    )
    expect(streams[0].get("BisectBatchOnFunctionError") is True, "no BisectBatchOnFunctionError")
    expect(any(e.get("Type") == "Schedule" for e in events.values()), "no Schedule event")


@check("DispatchFunction reads the SessionsTable stream filtered to subscription items, with a failure destination, and sweeps every minute")
def _(t: Template) -> None:
    events = t.props("DispatchFunction").get("Events", {})
    streams = [e["Properties"] for e in events.values() if e.get("Type") == "DynamoDB"]
    expect(len(streams) == 1 and refs(streams[0].get("Stream")) == {"SessionsTable"}, "no DynamoDB event on SessionsTable")
    patterns = [f.get("Pattern") for f in streams[0].get("FilterCriteria", {}).get("Filters", [])]
    expect(patterns == ['{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"sub#"}]}}}}'], f"filter patterns are {patterns}")
    expect(streams[0].get("BisectBatchOnFunctionError") is True, "no BisectBatchOnFunctionError")
    failure = streams[0].get("DestinationConfig", {}).get("OnFailure", {})
    expect(refs(failure.get("Destination")) == {"DispatchFailures"}, f"OnFailure is {failure!r}")
    schedules = [e["Properties"].get("Schedule") for e in events.values() if e.get("Type") == "Schedule"]
    expect(schedules == ["rate(1 minute)"], f"schedules are {schedules}")
    index = [i for i in t.props("SessionsTable").get("GlobalSecondaryIndexes", []) if i.get("IndexName") == "keys"]
    expect(len(index) == 1 and index[0]["Projection"]["ProjectionType"] == "KEYS_ONLY", f"the keys index is {index!r}")


@check("EvalsFunction runs as evals every minute, one invocation at a time, within Lambda's 15 minutes")
def _(t: Template) -> None:
    events = t.props("EvalsFunction").get("Events", {})
    schedules = [e["Properties"].get("Schedule") for e in events.values() if e.get("Type") == "Schedule"]
    expect(schedules == ["rate(1 minute)"], f"schedules are {schedules}")
    expect(t.function_prop("EvalsFunction", "ReservedConcurrentExecutions") == 1, "runs could be carried out twice at once")
    expect(t.function_prop("EvalsFunction", "Timeout") == 900, "the timeout is not 900 s")


@check("ClustersFunction runs as clusters hourly, one invocation at a time, writing only clusters/ and reports/")
def _(t: Template) -> None:
    events = t.props("ClustersFunction").get("Events", {})
    schedules = [e["Properties"].get("Schedule") for e in events.values() if e.get("Type") == "Schedule"]
    expect(schedules == ["rate(1 hour)"], f"schedules are {schedules}")
    expect(t.function_prop("ClustersFunction", "ReservedConcurrentExecutions") == 1, "a night could be clustered twice at once")
    expect(t.function_prop("ClustersFunction", "Timeout") == 900, "the timeout is not 900 s")
    writes = set()
    for statement in t.props("ClustersFunction").get("Policies", [{}])[0].get("Statement", []):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if "s3:PutObject" in actions:
            resources = statement.get("Resource")
            for r in resources if isinstance(resources, list) else [resources]:
                writes.add(json.dumps(r, sort_keys=True))
    expect(len(writes) == 2 and all("/clusters/*" in w or "/reports/*" in w for w in writes),
           f"ClustersFunction writes {sorted(writes)}")


@check("ScorerFunction gets the Bucket's Object Created events for traces/ through EventBridge, re-scores on a schedule, and indexes into SessionsTable's scores index")
def _(t: Template) -> None:
    events = t.props("ScorerFunction").get("Events", {})
    # Type S3 would need the bucket's notification to name this function, which names the
    # bucket: a dependency cycle CloudFormation refuses (cfn-lint does not see it).
    expect(not any(e.get("Type") == "S3" for e in events.values()), "an S3 event source makes a Bucket <-> ScorerFunction cycle")
    rules = [e["Properties"].get("Pattern", {}) for e in events.values() if e.get("Type") == "EventBridgeRule"]
    expect(len(rules) == 1, f"expected one EventBridgeRule event, found {len(rules)}")
    pattern = rules[0]
    expect(pattern.get("source") == ["aws.s3"] and pattern.get("detail-type") == ["Object Created"], f"pattern is {pattern!r}")
    detail = pattern.get("detail", {})
    expect(refs(detail.get("bucket", {}).get("name")) == {"Bucket"}, "the rule does not match the Bucket by name")
    expect(detail.get("object", {}).get("key") == [{"prefix": "traces/"}], f"the rule's key filter is {detail.get('object')!r}")
    enabled = t.props("Bucket").get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled")
    expect(enabled is True, "the Bucket does not send its events to EventBridge")
    expect(any(e.get("Type") == "Schedule" for e in events.values()), "no Schedule event (the nightly re-score)")
    indexes = {i["IndexName"]: i for i in t.props("SessionsTable").get("GlobalSecondaryIndexes", [])}
    expect("scores" in indexes, "SessionsTable has no scores index")
    keys = [(k["AttributeName"], k["KeyType"]) for k in indexes["scores"]["KeySchema"]]
    expect(keys == [("spk", "HASH"), ("ssk", "RANGE")], f"scores index keys are {keys}")


@check("JudgeFunction runs as the judge, fed by an encrypted SQS queue of the Bucket's scores/ events with a failure queue, and may invoke Bedrock and write judge/ only")
def _(t: Template) -> None:
    events = t.props("JudgeFunction").get("Events", {}).values()
    sqs = [e["Properties"] for e in events if e.get("Type") == "SQS"]
    expect(len(sqs) == 1, f"expected one SQS event, found {len(sqs)}")
    expect(refs(sqs[0].get("Queue")) == {"JudgeQueue"}, "the SQS event is not JudgeQueue's")
    expect(sqs[0].get("FunctionResponseTypes") == ["ReportBatchItemFailures"], "no partial batch failures")
    queue = t.props("JudgeQueue")
    redrive = queue.get("RedrivePolicy", {})
    expect(refs(redrive.get("deadLetterTargetArn")) == {"JudgeFailures"}, "JudgeQueue has no failure queue")
    expect(queue.get("SqsManagedSseEnabled") is True, "JudgeQueue is not encrypted")
    timeout = t.function_prop("JudgeFunction", "Timeout")
    expect(queue.get("VisibilityTimeout", 30) >= 6 * timeout, "the visibility timeout is under six times the function's timeout")
    rule = t.props("ScoredRule")
    pattern = rule.get("EventPattern", {})
    expect(pattern.get("detail", {}).get("object", {}).get("key") == [{"prefix": "scores/"}], f"ScoredRule matches {pattern!r}")
    expect(any(refs(target.get("Arn")) == {"JudgeQueue"} for target in rule.get("Targets", [])), "ScoredRule does not target JudgeQueue")
    policies = [v["Properties"] for v in t.of_type("AWS::SQS::QueuePolicy").values() if "JudgeQueue" in refs(v["Properties"].get("Queues"))]
    scoped = any(
        s.get("Principal", {}).get("Service") == "events.amazonaws.com"
        and "ScoredRule" in refs(s.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn"))
        for p in policies for s in as_list(p.get("PolicyDocument", {}).get("Statement", []))
    )
    expect(scoped, "JudgeQueue does not take messages from ScoredRule only")
    expect(allowed(t, "JudgeFunction", "s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/judge/*"}), "JudgeFunction cannot write judge/")
    expect(not allowed(t, "JudgeFunction", "s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/scores/*"}), "JudgeFunction must not write scores/ (it would judge its own output)")
    expect(any(where == "JudgeFunction" and "bedrock:InvokeModel" in as_list(s.get("Action")) for where, s in statements(t)), "JudgeFunction cannot invoke Bedrock")


@check("bucket: public access blocked, encrypted, traces/ expire, blobs/ never do, TLS-only policy")
def _(t: Template) -> None:
    buckets = t.of_type("AWS::S3::Bucket")
    expect(len(buckets) == 1, f"expected one bucket, found {sorted(buckets)}")
    name, bucket = next(iter(buckets.items()))
    props = bucket["Properties"]
    block = props.get("PublicAccessBlockConfiguration", {})
    flags = ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]
    expect(all(block.get(f) is True for f in flags), f"PublicAccessBlockConfiguration is {block!r}")
    expect("BucketEncryption" in props, "no BucketEncryption")
    rules = {r.get("Prefix") or r.get("Filter", {}).get("Prefix"): r
             for r in props.get("LifecycleConfiguration", {}).get("Rules", []) if r.get("Status") == "Enabled"}
    expect("traces/" in rules and "ExpirationInDays" in rules["traces/"], "no expiring lifecycle rule for traces/")
    # Claim-checked appends are acknowledged data: an expiry on blobs/ would lose them.
    expect("blobs/" not in rules or "ExpirationInDays" not in rules["blobs/"], "blobs/ must not expire: it holds acknowledged session data")
    policies = [v["Properties"] for v in t.of_type("AWS::S3::BucketPolicy").values() if name in refs(v["Properties"].get("Bucket"))]
    denies_plain_http = any(
        s.get("Effect") == "Deny"
        and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
        for p in policies for s in as_list(p.get("PolicyDocument", {}).get("Statement", []))
    )
    expect(denies_plain_http, "no bucket policy denying aws:SecureTransport false")


@check("StreamsFunction outlives the 29 s integration limit and the long-poll wait stays under it")
def _(t: Template) -> None:
    timeout = t.function_prop("StreamsFunction", "Timeout")
    expect(isinstance(timeout, int) and timeout >= 29, f"StreamsFunction.Timeout is {timeout!r}")
    param = t.doc.get("Parameters", {}).get("LongPollTimeoutMs", {})
    default = param.get("Default")
    expect(isinstance(default, int) and default < INTEGRATION_LIMIT_MS, f"LongPollTimeoutMs default is {default!r}")
    if "MaxValue" in param:
        expect(param["MaxValue"] < INTEGRATION_LIMIT_MS, f"LongPollTimeoutMs MaxValue is {param['MaxValue']}")


# The grading API's routes (shared/delivery/grading-http/src/lib.rs): the router answers
# every path under a queue, so one greedy route carries claims, items, drafts and grades.
GRADING_ROUTES = [
    ("PUT", "/v1/rubrics/{name}/{version}"), ("GET", "/v1/rubrics/{name}"),
    ("GET", "/v1/queues"), ("POST", "/v1/queues"), ("GET", "/v1/queues/{queue}"),
    ("ANY", "/v1/queues/{queue}/{proxy+}"),
    # The evals API (shared/delivery/evals-http/src/lib.rs), one greedy route.
    ("ANY", "/v1/evals/{proxy+}"),
    # The nightly report pages (shared/delivery/evals-http/src/reports.rs).
    ("GET", "/reports"), ("GET", "/reports/{day}"),
    # The grading page, bundled into the function (functions/http/src/page.rs).
    ("GET", "/grade"), ("GET", "/grade/{proxy+}"),
]


# The Durable Streams API (shared/delivery/streams-http/src/lib.rs), with the health check.
STREAM_ROUTES = [("ANY", "/v1/stream/{proxy+}"), ("GET", "/healthz")]
API_ROUTES = [("POST", "/v1/traces"), ("GET", "/v1/traces/{trace_id}/scores"), ("GET", "/v1/scores"),
              *GRADING_ROUTES]


def http_routes(t: Template, function: str) -> dict[tuple[str, str], dict[str, Any]]:
    events = t.props(function).get("Events", {}).values()
    return {(e["Properties"].get("Method", "").upper(), e["Properties"].get("Path")): e["Properties"]
            for e in events if e.get("Type") == "HttpApi"}


@check("StreamsFunction serves ANY /v1/stream/{proxy+} and GET /healthz, HttpFunction POST /v1/traces, the scores, grading and evals APIs and the pages, on the HttpApi, payload 2.0, each route once")
def _(t: Template) -> None:
    for function, wanted in (("StreamsFunction", STREAM_ROUTES), ("HttpFunction", API_ROUTES)):
        routes = http_routes(t, function)
        for route in wanted:
            expect(route in routes, f"{function} has no HttpApi route {route}")
            expect(str(routes[route].get("PayloadFormatVersion")) == "2.0", f"{route} is not payload 2.0")
            expect(refs(routes[route].get("ApiId")) == {"HttpApi"}, f"{route} is not on HttpApi")
        extra = sorted(set(routes) - set(wanted))
        expect(not extra, f"{function} also serves {extra}")
    stream = http_routes(t, "StreamsFunction")[("ANY", "/v1/stream/{proxy+}")]
    expect(stream.get("TimeoutInMillis") == INTEGRATION_LIMIT_MS, "the stream route does not wait the full 29 s")


@check("the function URL (only with AgentFunctionUrl true) targets StreamsFunction, with both public permissions scoped to it")
def _(t: Template) -> None:
    url = t.resources.get("StreamsFunctionUrl", {})
    expect(url.get("Type") == "AWS::Lambda::Url", "no StreamsFunctionUrl")
    expect(url.get("Condition") == "CreateAgentFunctionUrl", "the function URL is not conditional on AgentFunctionUrl")
    expect(refs(url.get("Properties", {}).get("TargetFunctionArn")) == {"StreamsFunction"},
           "the function URL does not target StreamsFunction")
    for name in ("StreamsFunctionUrlPermission", "StreamsFunctionUrlInvokePermission"):
        permission = t.resources.get(name, {})
        expect(permission.get("Condition") == "CreateAgentFunctionUrl", f"{name} is not conditional")
        expect(refs(permission.get("Properties", {}).get("FunctionName")) == {"StreamsFunction"},
               f"{name} is not for StreamsFunction")
    others = [n for n, r in t.resources.items() if r.get("Type") == "AWS::Lambda::Url" and n != "StreamsFunctionUrl"]
    expect(not others, f"other function URLs: {others}")


def allowed(t: Template, function: str, action: str, resource: Any) -> bool:
    """Whether an Allow statement of `function` grants `action` on exactly `resource`."""
    return any(
        s.get("Effect") == "Allow"
        and action in [str(a) for a in as_list(s.get("Action", []))]
        and resource in as_list(s.get("Resource"))
        for where, s in statements(t) if where == function
    )


@check("HttpFunction may run the grading store and write human scores on SessionsTable (item actions, Query, BatchWriteItem) and read traces/, config/ and the bucket's listing")
def _(t: Template) -> None:
    table = {"Fn::GetAtt": ["SessionsTable", "Arn"]}
    missing = [a for a in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                           "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem",
                           "dynamodb:BatchWriteItem")
               if not allowed(t, "HttpFunction", a, table)]
    expect(not missing, f"HttpFunction lacks {missing} on SessionsTable")
    for prefix in ("traces/", "config/"):
        resource = {"Fn::Sub": "${Bucket.Arn}/" + prefix + "*"}
        expect(allowed(t, "HttpFunction", "s3:GetObject", resource), f"HttpFunction cannot s3:GetObject {prefix}*")
    expect(allowed(t, "HttpFunction", "s3:ListBucket", {"Fn::GetAtt": ["Bucket", "Arn"]}),
           "HttpFunction cannot s3:ListBucket the Bucket")


def connections_arn(method: str) -> dict[str, str]:
    return {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${StageName}/"
            + method + "/@connections/*"}


@check("every function that pushes to WebSocket clients may also close them (DeleteConnection: expired tokens, clients behind)")
def _(t: Template) -> None:
    for name in FUNCTIONS:
        if allowed(t, name, "execute-api:ManageConnections", connections_arn("POST")):
            expect(allowed(t, name, "execute-api:ManageConnections", connections_arn("DELETE")),
                   f"{name} pushes but cannot DELETE @connections")


@check("HttpFunction has no grant on the session log's streams, ConnectionsTable, @connections or blobs/; StreamsFunction has them")
def _(t: Template) -> None:
    table = {"Fn::GetAtt": ["SessionsTable", "Arn"]}
    streams_only = [
        ("dynamodb:BatchGetItem", table),
        ("dynamodb:Query", {"Fn::Sub": "${SessionsTable.Arn}/index/keys"}),
        ("dynamodb:GetItem", {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}),
        ("execute-api:ManageConnections", connections_arn("POST")),
        ("s3:PutObject", {"Fn::Sub": "${Bucket.Arn}/blobs/*"}),
    ]
    for action, resource in streams_only:
        expect(allowed(t, "StreamsFunction", action, resource), f"StreamsFunction cannot {action} {resource}")
        expect(not allowed(t, "HttpFunction", action, resource), f"HttpFunction may {action} {resource}")
    sids = {s.get("Sid") for where, s in statements(t) if where == "HttpFunction"}
    expect("SessionLog" not in sids, "HttpFunction has the session log's statement")


@check("HttpApi CORS exposes every header that shared/delivery/streams-http/src/headers.rs EXPOSED lists")
def _(t: Template) -> None:
    # API Gateway replaces the function's CORS headers, so a header missing here is
    # unreadable to browsers even though the function exposes it.
    cors = t.props("HttpApi").get("CorsConfiguration", {})
    expect("producer-id" in cors.get("AllowHeaders", []), "CORS does not allow producer-id")
    source = (t.path.parent / t.function_prop("HttpFunction", "CodeUri") / "shared/delivery/streams-http/src/headers.rs").resolve()
    expect(source.is_file(), f"no {source} to compare with")
    text = source.read_text()
    constants = dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', text))
    block = re.search(r"pub const EXPOSED: \[&str; \d+\] = \[(.*?)\];", text, re.S)
    expect(block is not None, f"no EXPOSED array in {source}")
    exposed = [constants.get(item.strip(), item.strip().strip('"'))
               for item in block.group(1).split(",") if item.strip()]
    missing = [h for h in exposed if h not in cors.get("ExposeHeaders", [])]
    expect(not missing, f"ExposeHeaders lacks {missing}")


@check("token secret: created only when TokenSecretArn is empty")
def _(t: Template) -> None:
    secret = t.resources.get("TokenSecret", {})
    expect(secret.get("Type") == "AWS::SecretsManager::Secret", "no TokenSecret")
    expect(secret.get("Condition") == "CreateTokenSecret", "TokenSecret is not conditional")
    expect(t.doc.get("Parameters", {}).get("TokenSecretArn", {}).get("Default") == "", "TokenSecretArn default is not empty")


@check("outputs: " + ", ".join(OUTPUTS))
def _(t: Template) -> None:
    missing = [o for o in OUTPUTS if o not in t.doc.get("Outputs", {})]
    expect(not missing, f"missing outputs {missing}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} TEMPLATE", file=sys.stderr)
        return 2
    template = Template(Path(argv[1]))
    failures = []
    for description, fn in CHECKS:
        try:
            fn(template)
        except AssertionError as e:
            failures.append(f"{description}: {e}")
            print(f"FAIL {description}: {e}")
        except (KeyError, TypeError, AttributeError) as e:
            # A resource shaped unlike the checks expect is a failure, not a crash.
            failures.append(f"{description}: malformed template ({type(e).__name__}: {e})")
            print(f"FAIL {description}: malformed template ({type(e).__name__}: {e})")
        else:
            print(f"ok   {description}")
    if failures:
        print(f"\nfailed assertions on {template.path}:", file=sys.stderr)
        for failure in failures:
            print(f"  - {failure}", file=sys.stderr)
    print(f"{len(CHECKS) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv))
