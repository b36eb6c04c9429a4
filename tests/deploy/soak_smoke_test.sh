#!/usr/bin/env bash
# bench/soak.py against a real 1-worker cluster of the bundled model for a few seconds: every
# check it makes (no failed request, 4xx JSON errors for bad input, a replayed greedy
# conversation that never changes, KV usage back at zero once idle) must hold, and the harness
# itself must keep working. The long runs are for people: python3 bench/soak.py --minutes 60.
# Usage: soak_smoke_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
for b in coordinator shard_worker serve_bench; do
  [ -x "$REPO/build/bin/$b" ] || { echo "SKIPPED: $REPO/build/bin/$b is not built"; exit 77; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LOG=$(mktemp /tmp/soak_smoke_test.XXXXXX.log)
LAUNCHER=""
cleanup() { [ -z "$LAUNCHER" ] || kill -KILL -- "-$LAUNCHER" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT

GRPC="127.0.0.1:$(free_port)" HTTP="127.0.0.1:$(free_port)"
set -m
# A small KV budget: the prefix cache evicts and requests wait for blocks during the run.
bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 1 --threads 1 -- \
  --grpc-listen "$GRPC" --http-listen "$HTTP" --warmup-tokens 0 --kv-cache-gib 0.02 >"$LOG" 2>&1 &
LAUNCHER=$!
set +m
for _ in $(seq 1 240); do
  grep -q "^\[coordinator\] serving" "$LOG" && break
  kill -0 "$LAUNCHER" 2>/dev/null || { echo "FAIL: the cluster did not start; its log:"; cat "$LOG"; exit 1; }
  sleep 0.5
done
grep -q "^\[coordinator\] serving" "$LOG" || { echo "FAIL: the cluster did not start in 120 s"; cat "$LOG"; exit 1; }

python3 "$REPO/bench/soak.py" --http "$HTTP" --grpc "$GRPC" --minutes 0.2 --monitor-s 2
rc=$?
kill -INT "$LAUNCHER"
for _ in $(seq 1 150); do kill -0 "$LAUNCHER" 2>/dev/null || { LAUNCHER=""; break; }; sleep 0.2; done
if [ "$rc" != 0 ]; then echo "FAIL: soak.py exit $rc; the cluster's log:"; tail -50 "$LOG"; exit 1; fi
echo "ok: soak.py passed"
