#!/usr/bin/env python3
"""Fails when the CDK app and the SAM template would deploy different systems.

    python infra/cdk/drift.py --sam infra/template.yaml --cdk-out infra/cdk/cdk.out \
        --bootstrap-dir DIR [--stack agentwire] [--self-test]

The SAM template goes through the SAM transform (samtranslator, offline: it names no
managed policy that needs an IAM lookup) into plain CloudFormation; the CDK template is
what `cdk synth` wrote. Both are normalised (Ref, Fn::GetAtt, Fn::Sub and Fn::Join become
"${...}" strings; arn:aws: becomes arn:${AWS::Partition}:) and compared: resource types
and counts, logical IDs, parameters, conditions, outputs, and each resource's properties.
Functions are paired by their binary (the bootstrap their code asset holds), and carry
their role's IAM statements, flattened to one effect/action/resource/condition line each. HTTP routes come from the API's OpenAPI body,
WebSocket routes from its route resources.

--self-test breaks copies of the CDK template (and one of the SAM template) and requires
each comparison to fail.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

# Resources only the CDK template may have, by type, with why. None today: the app sets
# the bucket's EventBridge notifications on the L1 (no notifications custom resource),
# skips the bootstrap-version rule and CDKMetadata, and uses no L2 grants. Adding one here
# needs a reason a reviewer can check.
CDK_ONLY: dict[str, tuple[int, str]] = {}

# Tags SAM puts on what it generates; not part of the system.
SAM_TAGS = {"lambda:createdBy", "httpapi:createdBy"}

# CloudFormation's defaults, so an omitted property equals its default written out.
FUNCTION_DEFAULTS = {"MemorySize": 128, "Timeout": 3}
RESOURCE_DEFAULTS = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}


# --- Loading -------------------------------------------------------------------------------


def sam_template(path: Path, source: str | None = None) -> dict[str, Any]:
    """The SAM template as CloudFormation; each function's code is s3://sam/<binary>."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    # The transform records metrics nobody publishes here, and warns about it at exit.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

    template = yaml_parse(source if source is not None else path.read_text())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            binary = resource["Metadata"]["BuildProperties"]["Binary"]
            resource["Properties"]["CodeUri"] = f"s3://sam/{binary}"

    class NoManagedPolicyLookups:
        def load(self) -> dict[str, str]:
            raise RuntimeError("the SAM template names a managed policy: the transform would call IAM")

    return transform(template, {}, NoManagedPolicyLookups())


def cdk_template(out: Path, stack: str, bootstrap_dir: Path) -> dict[str, Any]:
    """The synthesized template; each function's code is s3://sam/<binary>, as above."""
    template = json.loads((out / f"{stack}.template.json").read_text())
    binaries = {p.parent.name: p.read_bytes() for p in bootstrap_dir.glob("*/bootstrap")}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        staged = (out / resource["Metadata"]["aws:asset:path"] / "bootstrap").read_bytes()
        found = [name for name, content in binaries.items() if content == staged]
        if len(found) != 1:
            raise SystemExit(f"{logical_id}: its asset matches {found or 'no'} binary in {bootstrap_dir}")
        resource["Properties"]["Code"] = {"S3Bucket": "sam", "S3Key": found[0]}
    return template


# --- Normalisation -------------------------------------------------------------------------


def text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def arn(s: str) -> str:
    return re.sub(r"^arn:aws:", "arn:${AWS::Partition}:", s)


def norm(value: Any) -> Any:
    """Intrinsic functions as comparable strings, recursively."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return "${%s}" % arg
            if key == "Fn::GetAtt":
                return "${%s}" % (".".join(arg) if isinstance(arg, list) else arg)
            if key == "Fn::Sub":
                s, variables = (arg, {}) if isinstance(arg, str) else arg
                for name, v in variables.items():
                    s = s.replace("${%s}" % name, text(norm(v)))
                return arn(s)
            if key == "Fn::Join":
                sep, parts = arg
                return arn(sep.join(text(norm(p)) for p in parts))
            if key == "Fn::If":
                condition, yes, no = arg
                return f"If({condition}, {text(norm(yes))}, {text(norm(no))})"
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [norm(v) for v in value]
    if isinstance(value, str):
        return arn(value)
    return value


def ref_target(value: Any) -> str:
    """The logical ID a Ref or GetAtt (already normalised) points at."""
    return re.sub(r"^\$\{([^}.]+)(\.[^}]*)?\}$", r"\1", text(value))


def statements(document: dict[str, Any]) -> list[str]:
    """One line per effect, action and resource, so grouping does not matter."""
    lines = []
    for st in document.get("Statement", []):
        actions = st.get("Action", [])
        resources = st.get("Resource", ["(none)"])
        for action in actions if isinstance(actions, list) else [actions]:
            for resource in resources if isinstance(resources, list) else [resources]:
                line = f"{st.get('Effect')} {action} {text(resource)}"
                principal = st.get("Principal")
                if isinstance(principal, dict):
                    # One principal or a list of one: the same to IAM.
                    principal = {k: sorted(v if isinstance(v, list) else [v], key=text) for k, v in principal.items()}
                if principal is not None:
                    line += f" Principal={text(principal)}"
                for key in ("Condition", "NotAction", "NotResource"):
                    if key in st:
                        line += f" {key}={text(st[key])}"
                lines.append(line)
    return sorted(lines)


def without_sam_tags(props: dict[str, Any]) -> dict[str, Any]:
    props = dict(props)
    tags = props.get("Tags")
    if isinstance(tags, list):
        tags = [t for t in tags if t.get("Key") not in SAM_TAGS]
    elif isinstance(tags, dict):
        tags = {k: v for k, v in tags.items() if k not in SAM_TAGS}
    if tags:
        props["Tags"] = tags
    else:
        props.pop("Tags", None)
    return props


class Template:
    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.resources: dict[str, dict[str, Any]] = raw.get("Resources", {})

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == type_}

    def props(self, logical_id: str) -> dict[str, Any]:
        return norm(without_sam_tags(self.resources[logical_id].get("Properties", {})))

    def role(self, logical_id: str) -> dict[str, Any]:
        """A role's trust, managed policies and every statement attached to it."""
        p = self.props(logical_id)
        lines = []
        for policy in p.get("Policies", []):
            lines += statements(policy["PolicyDocument"])
        # Separate policies (what L2 grants make) count too, so one slipping in shows.
        for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for other_id in self.of_type(kind):
                other = self.props(other_id)
                if any(ref_target(r) == logical_id for r in other.get("Roles", [])):
                    lines += [f"{line} (in {kind})" for line in statements(other["PolicyDocument"])]
        return {
            "trust": statements(p.get("AssumeRolePolicyDocument", {})),
            "managed policies": sorted(p.get("ManagedPolicyArns", [])),
            "statements": sorted(lines),
            "PermissionsBoundary": p.get("PermissionsBoundary"),
        }

    def canon(self, logical_id: str) -> dict[str, Any]:
        """What the resource is, with CloudFormation's defaults filled in."""
        resource = self.resources[logical_id]
        type_ = resource["Type"]
        p = self.props(logical_id)
        out: dict[str, Any] = {
            key: resource.get(key, default) for key, default in RESOURCE_DEFAULTS.items()
        } | {"Condition": resource.get("Condition")}
        if type_ == "AWS::Lambda::Function":
            p = FUNCTION_DEFAULTS | p
            p["Role"] = self.role(ref_target(p["Role"]))
        elif type_ == "AWS::DynamoDB::Table":
            p["AttributeDefinitions"] = sorted(p.get("AttributeDefinitions", []), key=text)
            p["GlobalSecondaryIndexes"] = {g["IndexName"]: g for g in p.get("GlobalSecondaryIndexes", [])}
            p.setdefault("TimeToLiveSpecification", None)
        elif type_ == "AWS::Lambda::Permission":
            # Ref (SAM) and GetAtt Arn (CDK) name the same function.
            p["FunctionName"] = ref_target(p["FunctionName"])
        elif type_ == "AWS::Events::Rule":
            p.setdefault("State", "ENABLED")
            for target in p.get("Targets", []):
                # SAM names a function target <Rule>LambdaTarget, the CDK Target0: an ID only.
                if re.fullmatch(r"\$\{[^}]+Function\.Arn\}", text(target.get("Arn"))):
                    target.pop("Id", None)
        elif type_ == "AWS::ApiGatewayV2::Api":
            p = self.api(logical_id, p)
        elif type_ == "AWS::ApiGatewayV2::Stage":
            depends = resource.get("DependsOn", [])
            out["DependsOn"] = sorted(depends if isinstance(depends, list) else [depends])
        elif type_ in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"):
            p["PolicyDocument"] = statements(p["PolicyDocument"])
        elif type_ == "AWS::IAM::Role":
            p = self.role(logical_id)
        out["Properties"] = p
        return out

    def api(self, logical_id: str, p: dict[str, Any]) -> dict[str, Any]:
        """An API with its routes keyed 'METHOD /path' (HTTP) or by route key (WebSocket)."""
        routes: dict[str, Any] = {}
        body = p.pop("Body", None)
        if body is not None:
            body = dict(body)
            tags = [t for t in body.pop("tags", []) if t.get("name") not in SAM_TAGS]
            if tags:
                body["tags"] = tags
            for path, methods in body.pop("paths", {}).items():
                for method, op in methods.items():
                    verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    routes[f"{verb} {path}"] = op
            p["Body"] = body
        integrations = {k: self.props(k) for k in self.of_type("AWS::ApiGatewayV2::Integration")}
        for route_id in self.of_type("AWS::ApiGatewayV2::Route"):
            route = self.props(route_id)
            if ref_target(route.get("ApiId")) != logical_id:
                continue
            target = re.sub(r"^integrations/", "", route.pop("Target", ""))
            route["Target"] = integrations.get(ref_target(target), target)
            route.pop("ApiId")
            routes[route.pop("RouteKey")] = route
        p["routes"] = routes
        return p


# --- Comparison ----------------------------------------------------------------------------


# Lists whose order means nothing.
UNORDERED = ("statements", "managed policies", "trust", "PolicyDocument", "AttributeDefinitions", "DependsOn")


def diff(a: Any, b: Any, where: str = "") -> list[str]:
    """Where two canonical values differ, as 'path: sam value != cdk value' lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key not in b:
                out.append(f"{where}.{key}: only in SAM: {text(a[key])[:200]}")
            elif key not in a:
                out.append(f"{where}.{key}: only in CDK: {text(b[key])[:200]}")
            else:
                out += diff(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if where.endswith(UNORDERED) or len(a) != len(b):
            out = [f"{where}: missing in CDK: {text(x)[:300]}" for x in a if x not in b]
            out += [f"{where}: extra in CDK: {text(x)[:300]}" for x in b if x not in a]
            if not out and len(a) != len(b):
                out.append(f"{where}: SAM has {len(a)} items, CDK {len(b)}")
            return out
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{where}[{i}]")]
    if a != b:
        return [f"{where}: SAM {text(a)[:300]} != CDK {text(b)[:300]}"]
    return []


def function_key(t: Template, logical_id: str) -> str:
    return t.props(logical_id)["Code"]["S3Key"]


Check = Callable[[Template, Template], list[str]]
CHECKS: list[tuple[str, Check]] = []


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS.append((name, fn))
        return fn

    return register


@check("resource types and counts")
def _(sam: Template, cdk: Template) -> list[str]:
    want = Counter(r["Type"] for r in sam.resources.values())
    got = Counter(r["Type"] for r in cdk.resources.values())
    for type_, (count, _why) in CDK_ONLY.items():
        got[type_] -= count
    return [f"{type_}: SAM {want[type_]}, CDK {got[type_]}" for type_ in sorted(set(want) | set(got)) if want[type_] != got[type_]]


@check("logical IDs")
def _(sam: Template, cdk: Template) -> list[str]:
    allowed = {k for k, r in cdk.resources.items() if r["Type"] in CDK_ONLY}
    return [f"only in SAM: {k}" for k in sorted(set(sam.resources) - set(cdk.resources))] + [
        f"only in CDK: {k}" for k in sorted(set(cdk.resources) - set(sam.resources) - allowed)
    ]


@check("parameters")
def _(sam: Template, cdk: Template) -> list[str]:
    def canon(t: Template) -> dict[str, Any]:
        keys = ("Type", "Default", "AllowedValues", "AllowedPattern", "MinValue", "MaxValue", "NoEcho")
        return {
            name: {k: [str(v) for v in p[k]] if isinstance(p.get(k), list) else str(p.get(k)) for k in keys}
            for name, p in t.raw.get("Parameters", {}).items()
        }

    return diff(canon(sam), canon(cdk))


@check("conditions")
def _(sam: Template, cdk: Template) -> list[str]:
    return diff(norm(sam.raw.get("Conditions", {})), norm(cdk.raw.get("Conditions", {})))


@check("outputs")
def _(sam: Template, cdk: Template) -> list[str]:
    def canon(t: Template) -> dict[str, Any]:
        return {k: {"Value": norm(o["Value"]), "Condition": o.get("Condition")} for k, o in t.raw.get("Outputs", {}).items()}

    return diff(canon(sam), canon(cdk))


@check("functions (paired by binary) with their roles' IAM statements")
def _(sam: Template, cdk: Template) -> list[str]:
    problems = []
    pairs: dict[str, dict[str, str]] = {}
    for side, t in (("SAM", sam), ("CDK", cdk)):
        for logical_id in t.of_type("AWS::Lambda::Function"):
            key = function_key(t, logical_id)
            if side in pairs.setdefault(key, {}):
                problems.append(f"{side}: two functions are {key}: {pairs[key][side]} and {logical_id}")
            pairs[key][side] = logical_id
    for key, ids in sorted(pairs.items()):
        if len(ids) != 2:
            problems.append(f"{key}: only in {' and '.join(ids)} ({', '.join(ids.values())})")
            continue
        problems += [f"{key}{d}" for d in diff(sam.canon(ids["SAM"]), cdk.canon(ids["CDK"]))]
    return problems


def by_logical_id(*types: str) -> Check:
    def compare(sam: Template, cdk: Template) -> list[str]:
        problems = []
        for type_ in types:
            for logical_id in sorted(sam.of_type(type_)):
                if logical_id in cdk.resources:
                    problems += [f"{logical_id}{d}" for d in diff(sam.canon(logical_id), cdk.canon(logical_id))]
        return problems

    return compare


check("DynamoDB tables: keys, GSIs, billing, stream, TTL, retention")(by_logical_id("AWS::DynamoDB::Table"))
check("APIs: HTTP routes (OpenAPI body), WebSocket routes, CORS; stages")(
    by_logical_id("AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Route")
)
check("event sources: stream and queue mappings, schedules and rules, invoke permissions")(
    by_logical_id("AWS::Lambda::EventSourceMapping", "AWS::Events::Rule", "AWS::Lambda::Permission", "AWS::Lambda::Url")
)
check("storage and the rest: bucket and its policy, queues, log groups, secret")(
    by_logical_id(
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Logs::LogGroup",
        "AWS::SecretsManager::Secret",
    )
)


@check("every resource type is compared above")
def _(sam: Template, _cdk: Template) -> list[str]:
    covered = {
        "AWS::Lambda::Function",
        "AWS::IAM::Role",  # through its function
        "AWS::DynamoDB::Table",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Route",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Events::Rule",
        "AWS::Lambda::Permission",
        "AWS::Lambda::Url",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Logs::LogGroup",
        "AWS::SecretsManager::Secret",
    }
    return [f"{t}: no comparison covers it; add it to one" for t in sorted({r["Type"] for r in sam.resources.values()} - covered)]


def compare(sam: Template, cdk: Template, quiet: bool = False) -> int:
    failed = 0
    for name, fn in CHECKS:
        problems = fn(sam, cdk)
        if problems:
            failed += 1
        if not quiet:
            print(f"{'FAIL' if problems else 'ok  '} {name}")
            for problem in problems:
                print(f"       {problem}")
    if not quiet:
        print(f"drift: {len(CHECKS) - failed} passed, {failed} failed")
    return failed


# --- Self-test -----------------------------------------------------------------------------


def statement(raw: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    for policy in raw["Resources"][role]["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            if st.get("Sid") == sid:
                return st
    raise KeyError(f"{role} has no statement {sid}")


def function_env(raw: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return raw["Resources"][logical_id]["Properties"]["Environment"]["Variables"]


def drop_route(raw: dict[str, Any]) -> None:
    paths = raw["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]
    del paths["/v1/queues"]["post"]


def route_to_other_function(raw: dict[str, Any]) -> None:
    """The health check sent to the HTTP function instead of the streams function."""
    op = raw["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]["/healthz"]["get"]
    integration = op["x-amazon-apigateway-integration"]
    integration["uri"] = json.loads(json.dumps(integration["uri"]).replace("StreamsFunction", "HttpFunction"))


def extra_grant(raw: dict[str, Any]) -> None:
    raw["Resources"]["GrantSlippedIn"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "extra",
            "Roles": [{"Ref": "ScorerFunctionRole"}],
            "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*"}]},
        },
    }


# (what breaks, how, the check that must catch it)
MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "an IAM action dropped",
        lambda t: statement(t, "StreamsFunctionRole", "SessionLog")["Action"].remove("dynamodb:ConditionCheckItem"),
        "functions",
    ),
    (
        "an IAM resource widened",
        lambda t: statement(t, "JudgeFunctionRole", "WriteJudgements").update(Resource="*"),
        "functions",
    ),
    (
        "a key schema changed",
        lambda t: t["Resources"]["SessionsTable"]["Properties"]["KeySchema"][1].update(AttributeName="spk"),
        "DynamoDB",
    ),
    (
        "DynamoDB TTL on the sessions table",
        lambda t: t["Resources"]["SessionsTable"]["Properties"].update(
            TimeToLiveSpecification={"AttributeName": "ttl", "Enabled": True}
        ),
        "DynamoDB",
    ),
    (
        "a GSI projection changed",
        lambda t: t["Resources"]["SessionsTable"]["Properties"]["GlobalSecondaryIndexes"][1]["Projection"].update(
            ProjectionType="ALL"
        ),
        "DynamoDB",
    ),
    (
        "an environment variable renamed",
        lambda t: function_env(t, "EvalsFunction").update(AGENTWIRE_WS_URL=function_env(t, "EvalsFunction").pop("AGENTWIRE_WS_ENDPOINT")),
        "functions",
    ),
    (
        "reserved concurrency changed",
        lambda t: t["Resources"]["ClustersFunction"]["Properties"].update(ReservedConcurrentExecutions=2),
        "functions",
    ),
    (
        "memory left to the default",
        lambda t: t["Resources"]["WebSocketFunction"]["Properties"].pop("MemorySize"),
        "functions",
    ),
    ("an HTTP route dropped", drop_route, "APIs"),
    ("an HTTP route sent to the other function", route_to_other_function, "APIs"),
    (
        "a WebSocket route key changed",
        lambda t: t["Resources"]["PingRoute"]["Properties"].update(RouteKey="pong"),
        "APIs",
    ),
    (
        "a stream filter changed",
        lambda t: t["Resources"]["ArchiverFunctionSessionChanges"]["Properties"]["FilterCriteria"]["Filters"].pop(),
        "event sources",
    ),
    (
        "a schedule changed",
        lambda t: t["Resources"]["ScorerFunctionRescore"]["Properties"].update(ScheduleExpression="rate(2 days)"),
        "event sources",
    ),
    (
        "the function URL unconditional",
        lambda t: t["Resources"]["StreamsFunctionUrl"].pop("Condition"),
        "event sources",
    ),
    (
        "the bucket not retained",
        lambda t: t["Resources"]["Bucket"].pop("DeletionPolicy"),
        "storage",
    ),
    (
        "the queue without its DLQ",
        lambda t: t["Resources"]["JudgeQueue"]["Properties"].pop("RedrivePolicy"),
        "storage",
    ),
    ("a separate IAM policy (an L2 grant) added", extra_grant, "resource types"),
    (
        "a parameter default changed",
        lambda t: t["Parameters"]["LongPollTimeoutMs"].update(Default=30000),
        "parameters",
    ),
    (
        "an output dropped",
        lambda t: t["Outputs"].pop("ManagementApiUrl"),
        "outputs",
    ),
]


def self_test(sam: Template, cdk_raw: dict[str, Any], sam_path: Path) -> int:
    failed = 0
    for description, mutate, expected in MUTATIONS:
        broken = copy.deepcopy(cdk_raw)
        mutate(broken)
        t = Template(broken)
        caught = [name for name, fn in CHECKS if fn(sam, t)]
        ok = any(name.startswith(expected) for name in caught)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {description}: caught by {caught or 'nothing'}")
    # The SAM side too: a change to the template alone must show.
    started = time.monotonic()
    source = sam_path.read_text()
    changed = source.replace("    Runtime: provided.al2023\n", "    Runtime: provided.al2\n", 1)
    if changed == source:
        print("FAIL the template mutation changed nothing")
        failed += 1
    else:
        caught = [name for name, fn in CHECKS if fn(Template(sam_template(sam_path, changed)), Template(cdk_raw))]
        ok = any(name.startswith("functions") for name in caught)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} the SAM template's runtime changed: caught by {caught or 'nothing'} ({time.monotonic() - started:.1f} s)")
    total = len(MUTATIONS) + 1
    print(f"self-test: {total - failed} passed, {failed} failed")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", type=Path, required=True, help="the SAM template")
    parser.add_argument("--cdk-out", type=Path, required=True, help="cdk synth's output directory")
    parser.add_argument("--bootstrap-dir", type=Path, required=True, help="the bootstrapDir the app was synthesized with")
    parser.add_argument("--stack", default="agentwire")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--dump", type=Path, help="also write both normalised templates here, to diff by eye")
    args = parser.parse_args()

    sam = Template(sam_template(args.sam))
    cdk_raw = cdk_template(args.cdk_out, args.stack, args.bootstrap_dir)
    cdk = Template(cdk_raw)
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for name, t in (("sam", sam), ("cdk", cdk)):
            canon = {k: t.canon(k) for k in sorted(t.resources)}
            (args.dump / f"{name}.json").write_text(json.dumps(canon, indent=1, sort_keys=True, default=str))
    if args.self_test:
        return 1 if self_test(sam, cdk_raw, args.sam) else 0
    return 1 if compare(sam, cdk) else 0


if __name__ == "__main__":
    sys.exit(main())
