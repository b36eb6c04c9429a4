#!/usr/bin/env bash
# bench/fuzz_http.py against a real 1-worker cluster of the bundled model for a few seconds, on
# the priority policy (so the priority seeds are served): every mutated request gets a
# well-formed answer below 500 and the server stays healthy. The long runs are for people:
# python3 bench/fuzz_http.py HOST:PORT --seconds 600 --seed N.
# Usage: fuzz_smoke_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
. "$(dirname "$0")/cluster_test_lib.sh"
require_binaries coordinator shard_worker
start_cluster --scheduling-policy priority --max-num-seqs 4

# A new seed each run (new inputs every time); printed, so a failure can be replayed.
seed=$(( $(date +%s) % 100000 ))
echo "fuzz_http.py --seed $seed"
python3 "$REPO/bench/fuzz_http.py" "$HTTP" --seconds 15 --seed "$seed"
finish_tool_run fuzz_http.py $?
