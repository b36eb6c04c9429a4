#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, starts a local cluster
# (a coordinator and shard workers under mpirun) serving the bundled model, sends one chat
# request and one streaming completion, and keeps serving until Ctrl-C (`--once`: stop after
# the demo).
#   bash deploy/quickstart.sh [--once] [--workers N] [--grpc-port P] [--http-port P]
set -euo pipefail
cd "$(dirname "$0")/.."
ONCE=0 WORKERS=2 GRPC_PORT=50051 HTTP_PORT=8000
while [ $# -gt 0 ]; do
  case "$1" in
    --workers|--grpc-port|--http-port)
      [ $# -ge 2 ] || { echo "quickstart.sh: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --once) ONCE=1; shift ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --grpc-port) GRPC_PORT="$2"; shift 2 ;;
    --http-port) HTTP_PORT="$2"; shift 2 ;;
    *) echo "quickstart.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
# Checked before the packages and the build: a bad value would otherwise surface minutes later.
[[ "$WORKERS" =~ ^[1-9][0-9]{0,2}$ ]] || { echo "quickstart.sh: --workers must be 1..999 (shard workers), got '$WORKERS'" >&2; exit 2; }
for port in "$GRPC_PORT" "$HTTP_PORT"; do
  if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65535 ]; then
    echo "quickstart.sh: a port must be 1..65535, got '$port'" >&2; exit 2
  fi
done
[ "$GRPC_PORT" != "$HTTP_PORT" ] || { echo "quickstart.sh: --grpc-port and --http-port must differ (both $GRPC_PORT)" >&2; exit 2; }
bash deploy/setup.sh
bash deploy/build.sh

MODEL=models/glm5-tiny-code
GRPC=127.0.0.1:$GRPC_PORT
HTTP=127.0.0.1:$HTTP_PORT
LOG=$(mktemp /tmp/glm-cluster.XXXXXX.log)
echo "== starting a local cluster: coordinator + $WORKERS shard workers on $MODEL (log: $LOG)"
# As a job of its own (set -m): a background command of a script otherwise starts with SIGINT
# ignored, and launch.sh could not take the SIGINT that stops the cluster cleanly.
set -m
bash deploy/launch.sh --model "$MODEL" --workers "$WORKERS" -- \
  --grpc-listen "$GRPC" --http-listen "$HTTP" --kv-cache-gib 0.25 >"$LOG" 2>&1 &
CLUSTER=$!
set +m
# SIGINT: launch.sh has the coordinator shut every rank down; a second one has mpirun end them.
stop_cluster() {
  local attempt
  for attempt in 1 2; do
    kill -0 "$CLUSTER" 2>/dev/null || return 0
    kill -INT "$CLUSTER" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$CLUSTER" 2>/dev/null || return 0; sleep 0.2; done
  done
  kill -KILL -- "-$CLUSTER" 2>/dev/null || true
}
trap stop_cluster EXIT
trap 'echo; echo "== stopping"; exit 0' INT TERM

for _ in $(seq 1 300); do
  if build/bin/glmctl --server "$GRPC" info --timeout-s 1 >/dev/null 2>&1; then break; fi
  if ! kill -0 "$CLUSTER" 2>/dev/null; then echo "the cluster exited; its log:" >&2; cat "$LOG" >&2; exit 1; fi
  sleep 0.5
done
build/bin/glmctl --server "$GRPC" info --timeout-s 5 >/dev/null || { cat "$LOG" >&2; exit 1; }
grep -E '^\[coordinator\] (cluster ready|gRPC|HTTP)' "$LOG" || true

echo
echo "== chat (gRPC): \"Write a Python function that returns the squares of a list\""
build/bin/glmctl --server "$GRPC" chat --message "Write a Python function that returns the squares of a list" \
  --max-new-tokens 64
echo
echo "== streaming completion (OpenAI HTTP, server-sent events)"
curl -sN "http://$HTTP/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model":"glm5-tiny-code","prompt":"def fibonacci(n):\n","max_tokens":48,"temperature":0,"stream":true}' |
  sed -n 's/^data: //p' | grep -v '^\[DONE\]' |
  python3 -c 'import json,sys
for line in sys.stdin:
    line=line.strip()
    if line:
        c=json.loads(line)["choices"]
        if c: print(c[0].get("text",""), end="", flush=True)
print()'
cat <<TXT

== serving glm5-tiny-code
   gRPC:    $GRPC   (build/bin/glmctl --server $GRPC generate --prompt 'import os' --max-new-tokens 32)
   OpenAI:  http://$HTTP/v1   (/v1/models, /v1/chat/completions, /v1/completions, /v1/responses, /health, /metrics)
   Anthropic: http://$HTTP    (/v1/messages; Claude Code: ANTHROPIC_BASE_URL=http://$HTTP)
   curl http://$HTTP/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"model":"glm5-tiny-code","messages":[{"role":"user","content":"Sort a list in Python"}],"max_tokens":64}'
   # structured output: the reply is JSON of the schema
   curl http://$HTTP/v1/chat/completions -H 'Content-Type: application/json' \\
     -d '{"messages":[{"role":"user","content":"Describe a function"}],"max_tokens":96,"response_format":{"type":"json_schema","json_schema":{"name":"fn","schema":{"type":"object","properties":{"name":{"type":"string"},"args":{"type":"array","items":{"type":"string"}}},"required":["name","args"]}}}}'
TXT
if [ "$ONCE" -eq 1 ]; then
  echo "== --once: stopping"
  exit 0
fi
echo "== Ctrl-C stops every rank"
wait "$CLUSTER"
