#!/usr/bin/env bash
# bench/soak.py against a real 1-worker cluster of the bundled model for a few seconds: every
# check it makes (no failed request, 4xx JSON errors for bad input, a replayed greedy
# conversation that never changes, KV usage back at zero once idle) must hold, and the harness
# itself must keep working. The long runs are for people: python3 bench/soak.py --minutes 60.
# Usage: soak_smoke_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
. "$(dirname "$0")/cluster_test_lib.sh"
require_binaries coordinator shard_worker serve_bench
# A small KV budget: the prefix cache evicts and requests wait for blocks during the run.
start_cluster --kv-cache-gib 0.02

python3 "$REPO/bench/soak.py" --http "$HTTP" --grpc "$GRPC" --minutes 0.2 --monitor-s 2
finish_tool_run soak.py $?
