#!/usr/bin/env bash
# Decode throughput and communication share for 1, 2 and 4 ranks on this host.
#   bench/run_cluster_bench.sh MODEL_DIR [extra cluster_bench flags]
# (make a several-GiB model with: build/bin/glmctl synth --preset bench --out /tmp/bench-model)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bench/run_cluster_bench.sh MODEL_DIR [flags]}
shift || true
CORES=$(nproc)
for RANKS in 1 2 4; do
  THREADS=$(( CORES / RANKS )); [ "$THREADS" -ge 1 ] || THREADS=1
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none \
    -np 1 build/bin/cluster_bench --model "$MODEL" "$@" : -np "$RANKS" build/bin/shard_worker --threads "$THREADS" \
    2> >(grep -v '^\[worker' >&2)
done
