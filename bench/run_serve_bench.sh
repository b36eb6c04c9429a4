#!/usr/bin/env bash
# Two serving bars, measured with build/bin/serve_bench against a server that is already running
# (this script starts nothing and sends traffic only to the addresses given):
#
#   (a) batching: aggregate decode throughput with STREAMS (8) concurrent streams vs 1 stream.
#       Each run sends --requests-per-stream (2) x streams requests of --decode-input-len (32) prompt tokens and
#       --decode-output-len (128) output tokens with --max-concurrency streams (request rate inf).
#       Aggregate decode throughput = streams x 1000 / mean TPOT (ms): tokens/s of the decode
#       phase, prefill excluded. The pair of runs is repeated --rounds (3) times, alternating; the
#       verdict is the median round's ratio. Bar: ratio (8 streams / 1 stream) >= 3. Output token
#       throughput (vLLM's output_throughput, prefill included) is printed next to it.
#   (b) prefix cache: TTFT of a repeated --prompt-len (2048) token prompt vs the same prompt cold.
#       A fresh random prompt (a new seed each invocation, so it cannot be cached yet) is sent
#       once (cold TTFT), then --repeats (5) more times one after another (warm TTFTs; every one
#       can reuse the cached prefix). Bar: mean warm TTFT / cold TTFT <= 0.05 (5%).
#
# Usage:
#   bench/run_serve_bench.sh [--grpc HOST:PORT] [--http HOST:PORT] [--backend grpc|openai-completions]
#                            [--streams 8] [--requests-per-stream 2] [--decode-input-len 32] [--decode-output-len 128]
#                            [--prompt-len 2048] [--repeats 5] [--rounds 3] [--timeout-s 600] [--out DIR]
#                            [-- extra serve_bench flags, e.g. --model NAME --token-id-max 150000]
# The backend defaults to grpc when --grpc is given, else openai-completions on --http (any
# OpenAI-compatible server: vLLM, SGLang, llama.cpp accept token-id prompts on /v1/completions).
# Each serve_bench run's JSON is kept under --out (default: a temporary directory).
# Exit status: 0 both bars met, 1 a bar missed, 2 usage or a failed run.
set -euo pipefail

GRPC="" HTTP="" BACKEND="" STREAMS=8 PER_STREAM=2 DEC_IN=32 DEC_OUT=128 PROMPT_LEN=2048 REPEATS=5 TIMEOUT=600 OUT="" ROUNDS=3
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --grpc) GRPC="$2"; shift 2 ;;
    --http) HTTP="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --streams) STREAMS="$2"; shift 2 ;;
    --requests-per-stream) PER_STREAM="$2"; shift 2 ;;
    --decode-input-len) DEC_IN="$2"; shift 2 ;;
    --decode-output-len) DEC_OUT="$2"; shift 2 ;;
    --prompt-len) PROMPT_LEN="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --timeout-s) TIMEOUT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run_serve_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "run_serve_bench.sh: --rounds must be a positive integer" >&2; exit 2; }
# More requests per stream make each run longer (at the default 2, a run of the bundled model
# lasts ~0.3 s), so a run averages over more of a shared machine's speed swings.
[[ "$PER_STREAM" =~ ^[1-9][0-9]*$ ]] || { echo "run_serve_bench.sh: --requests-per-stream must be a positive integer" >&2; exit 2; }
cd "$(dirname "$0")/.."
BENCH=build/bin/serve_bench
[ -x "$BENCH" ] || { echo "run_serve_bench.sh: build serve_bench first (cmake --build build --target serve_bench)" >&2; exit 2; }
command -v jq > /dev/null || { echo "run_serve_bench.sh: needs jq" >&2; exit 2; }
if [ -z "$BACKEND" ]; then
  if [ -n "$GRPC" ]; then BACKEND=grpc; elif [ -n "$HTTP" ]; then BACKEND=openai-completions; fi
fi
case "$BACKEND" in
  grpc) SERVER="$GRPC" ;;
  openai-completions|openai-chat) SERVER="$HTTP" ;;
  "") echo "run_serve_bench.sh: give --grpc HOST:PORT and/or --http HOST:PORT" >&2; exit 2 ;;
  *) echo "run_serve_bench.sh: unknown backend $BACKEND" >&2; exit 2 ;;
esac
[ -n "$SERVER" ] || { echo "run_serve_bench.sh: backend $BACKEND needs its address (--grpc / --http)" >&2; exit 2; }
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/serve_bench.XXXXXX)
mkdir -p "$OUT"

# run NAME serve_bench-flags...: writes $OUT/NAME.json; fails the script when any request failed.
run() {
  local name="$1"; shift
  if ! "$BENCH" --backend "$BACKEND" --server "$SERVER" --timeout-s "$TIMEOUT" --json \
       --result-file "$OUT/$name.json" "$@" ${EXTRA[@]+"${EXTRA[@]}"} > /dev/null 2> "$OUT/$name.log"; then
    echo "run_serve_bench.sh: run '$name' failed:" >&2
    cat "$OUT/$name.log" >&2
    exit 2
  fi
}
get() { jq -r "$2" "$OUT/$1.json"; }
calc() { awk "BEGIN { printf \"%.4f\", $1 }"; }

echo "serve_bench: backend $BACKEND, server $SERVER, results in $OUT"
status=0

# (a) decode throughput, 1 stream vs STREAMS streams, in ROUNDS rounds of one run each (alternating,
# so a machine whose speed drifts hits both sides alike); the verdict is the median round's ratio.
ratios=()
for ((r = 1; r <= ROUNDS; ++r)); do
  run "decode_1_r$r" --num-prompts "$PER_STREAM" --max-concurrency 1 --input-len "$DEC_IN" --output-len "$DEC_OUT" \
      --seed $((2 * r - 1))
  run "decode_${STREAMS}_r$r" --num-prompts $((PER_STREAM * STREAMS)) --max-concurrency "$STREAMS" \
      --input-len "$DEC_IN" --output-len "$DEC_OUT" --seed $((2 * r))
  tpot1=$(get "decode_1_r$r" .mean_tpot_ms)
  tpotn=$(get "decode_${STREAMS}_r$r" .mean_tpot_ms)
  dec1=$(calc "1000 / $tpot1")
  decn=$(calc "$STREAMS * 1000 / $tpotn")
  ratios+=("$(calc "$decn / $dec1")")
  printf '(a) round %d: decode throughput 1 stream %.1f tok/s (TPOT %.2f ms), %d streams %.1f tok/s (TPOT %.2f ms): %.2fx\n' \
    "$r" "$dec1" "$tpot1" "$STREAMS" "$decn" "$tpotn" "${ratios[-1]}"
  printf '    output token throughput (prefill included): 1 stream %.1f tok/s, %d streams %.1f tok/s\n' \
    "$(get "decode_1_r$r" .output_throughput)" "$STREAMS" "$(get "decode_${STREAMS}_r$r" .output_throughput)"
done
ratio=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
if awk "BEGIN { exit !($ratio >= 3) }"; then verdict=PASS; else verdict=FAIL; status=1; fi
printf '    ratio %.2fx, the median of %d rounds (%s) (bar >= 3x): %s\n' "$ratio" "$ROUNDS" "${ratios[*]}" "$verdict"

# (b) prefix-cache TTFT: a fresh fixed prompt, cold once, then REPEATS warm.
seed=$(( $(date +%s%N) % 1000000007 ))
run prefix_cold --dataset fixed --num-prompts 1 --input-len "$PROMPT_LEN" --output-len 4 --seed "$seed"
run prefix_warm --dataset fixed --num-prompts "$REPEATS" --max-concurrency 1 --input-len "$PROMPT_LEN" \
    --output-len 4 --seed "$seed"
cold=$(get prefix_cold .mean_ttft_ms)
warm=$(get prefix_warm .mean_ttft_ms)
cached=$(get prefix_warm .total_cached_tokens)
pratio=$(calc "$warm / $cold")
printf '(b) %d-token prompt TTFT: cold %.2f ms, warm mean %.2f ms over %d repeats (%s cached prompt tokens reported)\n' \
  "$PROMPT_LEN" "$cold" "$warm" "$REPEATS" "$cached"
if awk "BEGIN { exit !($pratio <= 0.05) }"; then verdict=PASS; else verdict=FAIL; status=1; fi
printf '    ratio %.2f%% (bar <= 5%%): %s\n' "$(calc "100 * $pratio")" "$verdict"
exit $status
