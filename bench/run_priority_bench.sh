#!/usr/bin/env bash
# What priority scheduling buys, measured with build/bin/serve_bench against a running server
# (this script starts nothing): a background load of long requests at priority --low (10) keeps
# every running slot busy and a queue waiting; meanwhile short probe requests are sent one at a
# time, first at the background's own priority, then (a fresh background) at --high (-1). Prints
# the probes' TTFT both ways and their ratio. Start the server with --scheduling-policy priority
# and fewer running slots than the background's concurrency, e.g. on the bundled model:
#   bash deploy/launch.sh --model models/glm5-tiny-code --workers 1 -- --grpc-listen 127.0.0.1:50551 \
#     --scheduling-policy priority --max-num-seqs 4
#   bash bench/run_priority_bench.sh --grpc 127.0.0.1:50551
# Usage:
#   bench/run_priority_bench.sh --grpc HOST:PORT | --http HOST:PORT [--backend grpc|openai-completions]
#       [--background 48] [--background-concurrency 16] [--background-output-len 1024]
#       [--probes 6] [--low 10] [--high -1] [--timeout-s 600] [--out DIR]
# Exit status: 0 measured, 2 usage or a failed run (a server on fcfs refuses the priorities: 400).
set -euo pipefail

GRPC="" HTTP="" BACKEND="" BG=48 BG_CONC=16 BG_OUT=1024 PROBES=6 LOW=10 HIGH=-1 TIMEOUT=600 OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --grpc) GRPC="$2"; shift 2 ;;
    --http) HTTP="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --background) BG="$2"; shift 2 ;;
    --background-concurrency) BG_CONC="$2"; shift 2 ;;
    --background-output-len) BG_OUT="$2"; shift 2 ;;
    --probes) PROBES="$2"; shift 2 ;;
    --low) LOW="$2"; shift 2 ;;
    --high) HIGH="$2"; shift 2 ;;
    --timeout-s) TIMEOUT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run_priority_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for v in BG BG_CONC BG_OUT PROBES; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "run_priority_bench.sh: ${v} must be a positive integer, got '${!v}'" >&2; exit 2; }
done
for v in LOW HIGH; do
  [[ "${!v}" =~ ^-?[0-9]+$ ]] || { echo "run_priority_bench.sh: --${v,,} must be an integer, got '${!v}'" >&2; exit 2; }
done
[ "$HIGH" -lt "$LOW" ] || { echo "run_priority_bench.sh: --high ($HIGH) must be below --low ($LOW): lower values go first" >&2; exit 2; }
cd "$(dirname "$0")/.."
BENCH=build/bin/serve_bench
[ -x "$BENCH" ] || { echo "run_priority_bench.sh: build serve_bench first (cmake --build build --target serve_bench)" >&2; exit 2; }
command -v jq > /dev/null || { echo "run_priority_bench.sh: needs jq" >&2; exit 2; }
if [ -z "$BACKEND" ]; then
  if [ -n "$GRPC" ]; then BACKEND=grpc; elif [ -n "$HTTP" ]; then BACKEND=openai-completions; fi
fi
case "$BACKEND" in
  grpc) SERVER="$GRPC" ;;
  openai-completions|openai-chat) SERVER="$HTTP" ;;
  *) echo "run_priority_bench.sh: give --grpc HOST:PORT or --http HOST:PORT" >&2; exit 2 ;;
esac
[ -n "$SERVER" ] || { echo "run_priority_bench.sh: backend $BACKEND needs its address" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/priority_bench.XXXXXX)
mkdir -p "$OUT"

bench() {  # bench NAME serve_bench-flags...
  local name="$1"; shift
  if ! "$BENCH" --backend "$BACKEND" --server "$SERVER" --timeout-s "$TIMEOUT" --json --result-file "$OUT/$name.json" \
       "$@" > /dev/null 2> "$OUT/$name.log"; then
    echo "run_priority_bench.sh: run '$name' failed:" >&2
    cat "$OUT/$name.log" >&2
    return 1
  fi
}

# round NAME PROBE_PRIORITY: a background, and the probes once it has filled the server.
round() {
  bench "$1_background" --priority "$LOW" --num-prompts "$BG" --max-concurrency "$BG_CONC" --input-len 32 \
      --output-len "$BG_OUT" --seed 1 &
  local bg=$!
  sleep 2
  if ! bench "$1_probes" --priority "$2" --num-prompts "$PROBES" --max-concurrency 1 --input-len 32 --output-len 16 \
       --seed 2; then
    kill "$bg" 2>/dev/null; wait "$bg" 2>/dev/null; exit 2
  fi
  wait "$bg" || exit 2
}

echo "priority bench: backend $BACKEND, server $SERVER, results in $OUT"
round same "$LOW"
round high "$HIGH"
for r in same high; do
  printf '%-36s TTFT mean %9.2f ms, median %9.2f ms, p99 %9.2f ms; E2E mean %9.2f ms\n' \
    "probes at priority $([ $r = same ] && echo "$LOW (the background's)" || echo "$HIGH")": \
    "$(jq -r .mean_ttft_ms "$OUT/${r}_probes.json")" "$(jq -r .median_ttft_ms "$OUT/${r}_probes.json")" \
    "$(jq -r .p99_ttft_ms "$OUT/${r}_probes.json")" "$(jq -r .mean_e2el_ms "$OUT/${r}_probes.json")"
done
awk -v a="$(jq -r .mean_ttft_ms "$OUT/high_probes.json")" -v b="$(jq -r .mean_ttft_ms "$OUT/same_probes.json")" \
  'BEGIN { printf "high-priority probes wait %.4f of what equal-priority ones wait (mean TTFT ratio)\n", a / b }'
printf 'background (priority %s) output throughput: %.1f tok/s alone with equal probes, %.1f tok/s with high-priority probes\n' \
  "$LOW" "$(jq -r .output_throughput "$OUT/same_background.json")" "$(jq -r .output_throughput "$OUT/high_background.json")"
