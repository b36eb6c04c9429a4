#!/usr/bin/env bash
# deploy/launch.sh stops a cluster cleanly on SIGINT (Ctrl-C, quickstart.sh, systemd's
# KillSignal): the coordinator logs "stopped" and the launcher exits 0; a second SIGINT ends
# everything promptly. Starts a 1-worker cluster of the bundled tiny model on free local ports.
# Usage: launch_stop_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
# launch.sh runs the binaries of REPO/build (skip, as ctest's SKIP_RETURN_CODE, without them).
for b in coordinator shard_worker; do
  [ -x "$REPO/build/bin/$b" ] || { echo "SKIPPED: $REPO/build/bin/$b is not built"; exit 77; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LOG=$(mktemp /tmp/launch_stop_test.XXXXXX.log)
LAUNCHER=""
cleanup() { [ -z "$LAUNCHER" ] || kill -KILL -- "-$LAUNCHER" 2>/dev/null; rm -f "$LOG"; }
trap cleanup EXIT

# Starts the launcher as its own job (a process group, SIGINT not ignored, as under a terminal
# or systemd) and waits until the cluster serves.
start() {
  : >"$LOG"
  set -m
  bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 1 --threads 1 -- \
    --grpc-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$(free_port)" --warmup-tokens 0 \
    --kv-cache-gib 0.05 >"$LOG" 2>&1 &
  LAUNCHER=$!
  set +m
  for _ in $(seq 1 240); do
    grep -q "^\[coordinator\] serving" "$LOG" && return 0
    kill -0 "$LAUNCHER" 2>/dev/null || break
    sleep 0.5
  done
  echo "FAIL: the cluster did not start; its log:"; cat "$LOG"; exit 1
}
# Waits up to $1 seconds for the launcher; sets rc to its exit status (or "timeout").
wait_launcher() {
  rc=timeout
  for _ in $(seq 1 $(( $1 * 5 ))); do
    if ! kill -0 "$LAUNCHER" 2>/dev/null; then wait "$LAUNCHER"; rc=$?; return; fi
    sleep 0.2
  done
}

start
kill -INT "$LAUNCHER"
wait_launcher 60
if [ "$rc" != 0 ] || ! grep -q "^\[coordinator\] stopped" "$LOG"; then
  echo "FAIL: one SIGINT: launcher exit $rc (want 0 and '[coordinator] stopped'); log:"; cat "$LOG"; exit 1
fi
echo "ok: one SIGINT: exit 0, coordinator stopped cleanly"
LAUNCHER=""

start
kill -INT "$LAUNCHER"; sleep 0.05; kill -INT "$LAUNCHER"
wait_launcher 30
if [ "$rc" = timeout ]; then echo "FAIL: two SIGINTs: still running after 30 s; log:"; cat "$LOG"; exit 1; fi
if pgrep -g "$LAUNCHER" >/dev/null 2>&1; then echo "FAIL: two SIGINTs: processes left"; exit 1; fi
echo "ok: two SIGINTs: everything ended (exit $rc)"
LAUNCHER=""
echo PASSED
