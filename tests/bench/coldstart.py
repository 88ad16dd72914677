"""Cold starts of the Lambda bootstraps: the init time of each function in
infra/template.yaml, run with that function's environment against a local Lambda Runtime
API (this process), from exec to the bootstrap's first `GET .../runtime/invocation/next`.
That `next` is held unanswered and the process killed: init is all that is measured.

Only this script's own listening socket and moto (Secrets Manager, for the token secret
read at init) are needed; both are up before the first start, so neither's start-up is
timed. The clock starts right before the spawn (vfork + exec; a start of /bin/true is
printed as that floor) and stops when the request line of `next` arrives.

    python3 tests/bench/coldstart.py --lambda-dir target/lambda --moto http://127.0.0.1:PORT
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

NEXT = b"GET /2018-06-01/runtime/invocation/next"


def parse_yaml_keys(path):
    """The mapping keys of a CloudFormation template, as nested dicts of
    {"value": str, "children": {...}}: enough to read parameters, globals and each
    function's binary, memory and environment (list items are skipped)."""
    root = {"value": "", "children": {}}
    stack = [(-1, root)]
    key_line = re.compile(r"^(\s*)([A-Za-z0-9_$.:-]+?):(?:\s+(.*))?$")
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip() or line.lstrip().startswith(("#", "- ")):
            continue
        m = key_line.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack[-1][0] >= indent:
            stack.pop()
        node = {"value": (m.group(3) or "").strip(), "children": {}}
        stack[-1][1]["children"].setdefault(m.group(2), node)
        stack.append((indent, node))
    return root


def get(node, *path):
    for key in path:
        if node is None:
            return None
        node = node["children"].get(key)
    return node


def functions(template, secret_arn):
    """(logical id, binary, memory MB, environment) of every Serverless function."""
    tree = parse_yaml_keys(template)
    params = {
        name: (get(p, "Default") or {"value": ""})["value"].strip("\"'")
        for name, p in get(tree, "Parameters")["children"].items()
    }

    def resolve(value):
        if "TokenSecret" in value:
            return secret_arn
        if value.startswith("!Ref "):
            name = value[5:].strip()
            return params.get(name, "agentwire-" + name)
        if value.startswith("!Sub "):
            fixed = {"AWS::Region": "us-east-1", "AWS::URLSuffix": "amazonaws.com"}
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda m: fixed.get(m.group(1), params.get(m.group(1), m.group(1).lower())),
                value[5:].strip().strip("\"'"),
            )
        return value.strip("\"'")

    def env(node):
        vars_ = get(node, "Environment", "Variables")
        return {k: resolve(v["value"]) for k, v in (vars_ or {"children": {}})["children"].items()}

    glob = get(tree, "Globals", "Function")
    found = []
    for name, res in get(tree, "Resources")["children"].items():
        if (get(res, "Type") or {}).get("value") != "AWS::Serverless::Function":
            continue
        props = get(res, "Properties")
        memory = (get(props, "MemorySize") or get(glob, "MemorySize"))["value"]
        found.append(
            (
                name,
                get(res, "Metadata", "BuildProperties", "Binary")["value"],
                memory,
                {**env(glob), **env(props)},
            )
        )
    return found


def aws_call(endpoint, target, body):
    """An unsigned JSON-protocol call to moto (it checks no signatures, but routes by the
    credential scope's service)."""
    service = target.split(".")[0]
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": target,
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/"
            f"{service}/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def lambda_env(name, memory, runtime_api, task_root, home, moto):
    """What Lambda gives a provided.al2023 function, with fake credentials and the one
    endpoint override init needs (Secrets Manager on moto)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        # An empty home: no ~/.aws files of this machine are read.
        "HOME": home,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": "bootstrap",
        "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_FUNCTION_NAME": f"agentwire-{name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/agentwire-{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]00000000000000000000000000000000",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "ASIACOLDSTARTBENCH00",
        "AWS_SECRET_ACCESS_KEY": "coldstart-bench-secret-access-key-000000",
        "AWS_SESSION_TOKEN": "coldstart-bench-session-token",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        # Every service at moto: init calls only Secrets Manager.
        "AWS_ENDPOINT_URL": moto,
        # Amazon Linux keeps its roots in one bundle; this machine's hashed directory
        # would add a few hundred file reads that Lambda does not do.
        "SSL_CERT_FILE": next(
            (f for f in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt") if os.path.exists(f)),
            "",
        ),
        "SSL_CERT_DIR": os.path.join(home, "certs"),
    }


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def start_once(argv, env, server, log, timeout):
    """Milliseconds from spawn to the first `next`, or raises with the bootstrap's log."""
    log.seek(0)
    log.truncate()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=env["LAMBDA_TASK_ROOT"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    held = []
    try:
        deadline = t0 + timeout
        while True:
            server.settimeout(0.02)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode} before asking for an event")
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no `next` within {timeout} s")
                continue
            conn.settimeout(timeout)
            first = conn.recv(65536)
            elapsed = time.perf_counter() - t0
            held.append(conn)
            if first.startswith(NEXT):
                return elapsed * 1000
            head = first if b"\r\n\r\n" in first else first + read_head(conn)
            if b"/init/error" in head.split(b"\r\n", 1)[0]:
                raise RuntimeError("reported an init error")
            conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    except RuntimeError as e:
        proc.kill()
        proc.wait()
        log.flush()
        log.seek(0)
        raise RuntimeError(f"{e}:\n{log.read().decode(errors='replace')[-4000:]}") from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        for conn in held:
            conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lambda-dir", default="target/lambda")
    ap.add_argument("--template", default="infra/template.yaml")
    ap.add_argument("--moto", required=True, help="moto server URL (Secrets Manager)")
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--goal-ms", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--fail-over-goal", action="store_true", help="exit 1 if a median is over the goal")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()

    secret = aws_call(
        args.moto,
        "secretsmanager.CreateSecret",
        {"Name": f"agentwire-coldstart-{os.getpid()}", "SecretString": "c" * 64},
    )["ARN"]

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    runtime_api = "127.0.0.1:%d" % server.getsockname()[1]

    scratch = tempfile.TemporaryDirectory(prefix="coldstart-")
    home = scratch.name
    os.mkdir(os.path.join(home, "certs"))
    log = tempfile.TemporaryFile()

    # The harness's own floor: spawning a trivial program and reaping it.
    floor = []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        floor.append((time.perf_counter() - t0) * 1000)

    rows, failed, over = [], [], []
    for name, binary, memory, fn_env in functions(args.template, secret):
        bootstrap = os.path.abspath(os.path.join(args.lambda_dir, binary, "bootstrap"))
        env = {**fn_env, **lambda_env(name, memory, runtime_api, os.path.dirname(bootstrap), home, args.moto)}
        times = []
        try:
            for _ in range(args.starts):
                times.append(start_once([bootstrap], env, server, log, args.timeout))
        except (RuntimeError, OSError) as e:
            failed.append(name)
            print(f"{name} ({binary}): {e}", file=sys.stderr)
            continue
        size = os.stat(bootstrap).st_size / 1048576
        row = {
            "function": name,
            "binary": binary,
            "mib": round(size, 1),
            "min_ms": round(min(times), 1),
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
        }
        rows.append(row)
        if row["median_ms"] > args.goal_ms:
            over.append(name)

    print("| function | bootstrap | MiB | init min ms | median ms | max ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['function']} | {r['binary']} | {r['mib']} | "
            f"{r['min_ms']} | {r['median_ms']} | {r['max_ms']} |"
        )
    print(
        f"{args.starts} starts each; harness floor (spawn and reap /bin/true): "
        f"min {min(floor):.2f} ms, median {statistics.median(floor):.2f} ms; goal <= {args.goal_ms:g} ms"
    )
    for name in over:
        print(f"  {name}: median init is over the {args.goal_ms:g} ms goal")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"starts": args.starts, "floor_median_ms": statistics.median(floor), "functions": rows}, f, indent=2)
    if failed:
        sys.exit(f"did not start: {', '.join(failed)}")
    if over and args.fail_over_goal:
        sys.exit(1)


if __name__ == "__main__":
    main()
