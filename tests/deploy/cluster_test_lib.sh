# Shared by the deploy tests that start a real cluster of the bundled model through
# deploy/launch.sh. Source it after setting REPO (the repository root); it exits 77 (ctest's
# SKIP_RETURN_CODE) when a binary the test needs is not built, and kills the cluster on exit.
#   require_binaries NAME...       build/bin/NAME must exist for each
#   free_port                      an unused local TCP port
#   start_cluster [SERVER FLAG...] starts a 1-worker, 1-thread cluster on free ports as its own
#                                  job (SIGINT reaches it as under a terminal); waits until it
#                                  serves. Sets LAUNCHER (its pid), LOG, GRPC and HTTP.
#   wait_launcher SECONDS          waits for the launcher to end; rc = its exit status or "timeout"
#   finish_tool_run NAME RC        after a tool's run against the cluster: stops the cluster (Ctrl-C),
#                                  then fails the test with the cluster's log if RC is not 0

require_binaries() {
  local b
  for b in "$@"; do
    [ -x "$REPO/build/bin/$b" ] || { echo "SKIPPED: $REPO/build/bin/$b is not built"; exit 77; }
  done
}

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
LOG=$(mktemp /tmp/deploy_test.XXXXXX.log)
LAUNCHER=""
cleanup_cluster() { [ -z "$LAUNCHER" ] || kill -KILL -- "-$LAUNCHER" 2>/dev/null; rm -f "$LOG"; }
trap cleanup_cluster EXIT

LAUNCH_OPTS=()  # extra deploy/launch.sh options for start_cluster (before its "--")
start_cluster() {
  : >"$LOG"
  GRPC="127.0.0.1:$(free_port)" HTTP="127.0.0.1:$(free_port)"
  set -m
  bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 1 --threads 1 "${LAUNCH_OPTS[@]}" -- \
    --grpc-listen "$GRPC" --http-listen "$HTTP" --warmup-tokens 0 "$@" >"$LOG" 2>&1 &
  LAUNCHER=$!
  set +m
  for _ in $(seq 1 240); do
    grep -q "^\[coordinator\] serving" "$LOG" && return 0
    kill -0 "$LAUNCHER" 2>/dev/null || break
    sleep 0.5
  done
  echo "FAIL: the cluster did not start; its log:"; cat "$LOG"; exit 1
}

wait_launcher() {
  rc=timeout
  for _ in $(seq 1 $(( $1 * 5 ))); do
    if ! kill -0 "$LAUNCHER" 2>/dev/null; then wait "$LAUNCHER"; rc=$?; return; fi
    sleep 0.2
  done
}

finish_tool_run() {
  local name="$1" tool_rc="$2"
  kill -INT "$LAUNCHER"
  wait_launcher 30
  [ "$rc" = timeout ] || LAUNCHER=""
  if [ "$tool_rc" != 0 ]; then echo "FAIL: $name exit $tool_rc; the cluster's log:"; tail -50 "$LOG"; exit 1; fi
  echo "ok: $name passed"
}
