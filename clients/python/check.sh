#!/usr/bin/env bash
# The Python SDK's checks: build the wheel, type-check (mypy --strict; vermin for the 3.9
# floor), run pytest against a real `agentwire dev` (the tests start it), then install the
# wheel into a fresh virtualenv and run the example agent against `agentwire dev`.
# Virtualenvs from PyPI under target/ (git-ignored). Needs target/debug/agentwire
# (cargo build -p agentwire), or AGENTWIRE_BIN.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
bin="${AGENTWIRE_BIN:-$root/target/debug/agentwire}"
export AGENTWIRE_BIN="$bin"
venv="$root/target/python-sdk-venv"
dist="$root/target/python-dist"
pins=(httpx==0.29.0 pytest==9.2.0 mypy==1.20.2 vermin==1.9.2 build==1.6.1 hatchling==1.33.0
  openai==3.57.0 anthropic==2.16.0 cryptography==50.0.2
  opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2)
stamp="$venv/.pins"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
  echo "${pins[*]}" >"$stamp"
fi
py="$venv/bin/python"

echo "--- wheel"
rm -rf "$dist"
"$py" -m build --wheel --no-isolation --outdir "$dist" "$here" >/dev/null
wheel="$(ls "$dist"/agentwire-*.whl)"
"$py" -c 'import sys, zipfile; sys.exit("agentwire/py.typed" not in zipfile.ZipFile(sys.argv[1]).namelist())' "$wheel" ||
  { echo "the wheel lacks py.typed" >&2; exit 1; }
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
echo "$(basename "$wheel")"

echo "--- mypy --strict, and Python 3.9 as the floor"
(cd "$here" && "$venv/bin/mypy" --strict)
"$venv/bin/vermin" -q -t=3.9- --violations --eval-annotations --no-tips "$here/src/agentwire"

echo "--- pytest (against agentwire dev)"
(cd "$here" && "$py" -m pytest -q -p no:cacheprovider)

echo "--- the wheel in a fresh virtualenv, and the example against agentwire dev"
fresh="$(mktemp -d)"
trap 'kill ${server:-} ${agent:-} 2>/dev/null || true; rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
"$fresh/venv/bin/pip" install -q --disable-pip-version-check "$wheel"
"$bin" dev --listen 127.0.0.1:0 --data-dir "$fresh/data" --insecure --no-demo-agent >"$fresh/dev.out" 2>"$fresh/dev.err" &
server=$!
url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's/^agentwire dev listening on //p' "$fresh/dev.out")"
  [[ -n "$url" ]] && break
  sleep 0.1
done
[[ -n "$url" ]] || { echo "agentwire dev did not start" >&2; cat "$fresh/dev.err" >&2; exit 1; }
AGENTWIRE_URL="$url" "$fresh/venv/bin/python" "$root/examples/python-openai/agent.py" --fake --exit-after 1 >"$fresh/agent.out" 2>&1 &
agent=$!
for _ in $(seq 1 100); do grep -q '^serving' "$fresh/agent.out" && break; sleep 0.1; done
curl -sf -X PUT "$url/v1/stream/chat-example" -H 'content-type: application/json' >/dev/null
curl -sf -X POST "$url/v1/stream/chat-example" -H 'content-type: application/json' \
  -d '[{"type":"message.start","id":"u1","role":"user"},{"type":"message.delta","id":"u1","data":{"text":"hello from the check"}},{"type":"message.end","id":"u1","role":"user"}]' >/dev/null
timeout 30 tail --pid="$agent" -f /dev/null || { echo "the example did not answer" >&2; cat "$fresh/agent.out" >&2; exit 1; }
wait "$agent"
agent=""
reply="$(curl -sf "$url/v1/stream/chat-example?offset=-1")"
"$fresh/venv/bin/python" - "$reply" <<'PY'
import json, sys
events = json.loads(sys.argv[1])
text = "".join(e["data"]["text"] for e in events if e["type"] == "message.delta" and e["id"] == "reply-u1")
assert text.strip() == "You said: hello from the check", text
assert any(e["type"] == "message.end" and e["id"] == "reply-u1" for e in events)
print("the example answered:", text.strip())
PY
