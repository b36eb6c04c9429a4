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
echo PASSED
