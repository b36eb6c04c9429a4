#!/usr/bin/env bash
# deploy/launch.sh stops a cluster cleanly on SIGINT (Ctrl-C, quickstart.sh, systemd's
# KillSignal): the coordinator logs "stopped" and the launcher exits 0; a second SIGINT ends
# everything promptly. Starts a 1-worker cluster of the bundled tiny model on free local ports.
# The worker commits its KV cache at start-up, and what it writes is --kv-cache-gib, no more (its
# MTP layer's cache included) and no less than a block short of it; with launch.sh --kv-prefault
# off it does not.
# Usage: launch_stop_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
. "$(dirname "$0")/cluster_test_lib.sh"
require_binaries coordinator shard_worker
start() { start_cluster --kv-cache-gib 0.05; }

start
# "[worker 1] rank 1: KV cache of N blocks committed (M MiB written in S s)"
mib=$(sed -n 's/^\[worker 1\] rank 1: KV cache of [0-9]* blocks committed (\([0-9.]*\) MiB written.*/\1/p' "$LOG")
if [ -z "$mib" ] || ! awk -v m="$mib" 'BEGIN { exit !(m <= 0.05 * 1024 && m > 0.05 * 1024 - 1) }'; then
  echo "FAIL: want the worker's KV cache committed at --kv-cache-gib 0.05 (51.2 MiB), got '${mib}'; log:"; cat "$LOG"; exit 1
fi
echo "ok: KV cache committed at start-up: $mib MiB of the 51.2 MiB budget"
kill -INT "$LAUNCHER"
wait_launcher 60
if [ "$rc" != 0 ] || ! grep -q "^\[coordinator\] stopped" "$LOG"; then
  echo "FAIL: one SIGINT: launcher exit $rc (want 0 and '[coordinator] stopped'); log:"; cat "$LOG"; exit 1
fi
echo "ok: one SIGINT: exit 0, coordinator stopped cleanly"
LAUNCHER=""

LAUNCH_OPTS=(--kv-prefault off)
start
LAUNCH_OPTS=()
if grep -q "KV cache of .* committed" "$LOG"; then
  echo "FAIL: --kv-prefault off: the worker still committed its KV cache; log:"; cat "$LOG"; exit 1
fi
echo "ok: --kv-prefault off: no KV commit at start-up"
kill -INT "$LAUNCHER"; sleep 0.05; kill -INT "$LAUNCHER"
wait_launcher 30
if [ "$rc" = timeout ]; then echo "FAIL: two SIGINTs: still running after 30 s; log:"; cat "$LOG"; exit 1; fi
if pgrep -g "$LAUNCHER" >/dev/null 2>&1; then echo "FAIL: two SIGINTs: processes left"; exit 1; fi
echo "ok: two SIGINTs: everything ended (exit $rc)"
LAUNCHER=""

# srun (scancel, a time limit) and systemd signal every rank at once: the workers leave the stop to
# the coordinator, which drains, so a running request still finishes (a worker used to die at the
# signal and fail it) and every rank exits cleanly.
rank_pid() {  # the process of build/bin/$1 among the launcher's descendants
  local queue=("$LAUNCHER") p c
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for c in $(pgrep -P "$p" 2>/dev/null); do
      [ "$(readlink -f "/proc/$c/exe" 2>/dev/null)" = "$(readlink -f "$REPO/build/bin/$1")" ] && { echo "$c"; return 0; }
      queue+=("$c")
    done
  done
  return 1
}
start
coordinator=$(rank_pid coordinator) worker=$(rank_pid shard_worker)
[ -n "$coordinator" ] && [ -n "$worker" ] || { echo "FAIL: no coordinator / worker process found"; exit 1; }
REPLY_FILE=$(mktemp /tmp/deploy_test_reply.XXXXXX)
curl -s -m 120 "http://$HTTP/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "def f(", "max_tokens": 3000, "ignore_eos": true}' >"$REPLY_FILE" &
CURL=$!
# Signalled once the request is running (the metrics say so) and before it can end.
for _ in $(seq 1 200); do
  curl -s "http://$HTTP/metrics" | grep -q '^vllm:num_requests_running{[^}]*} 1' && break
  sleep 0.02
done
kill -TERM "$coordinator" "$worker"
wait "$CURL"
reply=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["choices"][0]["finish_reason"], d["usage"]["completion_tokens"])' "$REPLY_FILE" 2>&1)
rm -f "$REPLY_FILE"
wait_launcher 90
finished_after_the_signal=$(awk '/draining/ { d = 1 } /"event":"request_finished"/ && d { print "yes" }' "$LOG")
if [ "$reply" != "length 3000" ] || [ "$rc" != 0 ] || ! grep -q "^\[coordinator\] stopped" "$LOG" ||
   [ "$finished_after_the_signal" != yes ] ||
   ! grep -q "^\[worker 1\] signal 15: the coordinator stops this worker" "$LOG"; then
  echo "FAIL: SIGTERM to every rank: reply '$reply' (want 'length 3000'), launcher exit $rc (want 0); log:"; cat "$LOG"; exit 1
fi
echo "ok: SIGTERM to every rank: the running request finished ($reply), every rank stopped cleanly"
LAUNCHER=""

# A second signal stops a worker at once.
start
worker=$(rank_pid shard_worker)
kill -TERM "$worker"; sleep 0.3; kill -TERM "$worker"
for _ in $(seq 1 50); do kill -0 "$worker" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$worker" 2>/dev/null || ! grep -q "^\[worker 1\] signal 15 again: stopping now" "$LOG"; then
  echo "FAIL: two SIGTERMs: the worker is still running after 5 s; log:"; cat "$LOG"; exit 1
fi
echo "ok: two SIGTERMs: the worker stopped at once"
kill -INT "$LAUNCHER" 2>/dev/null; wait_launcher 30
LAUNCHER=""
echo PASSED
