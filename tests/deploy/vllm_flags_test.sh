#!/usr/bin/env bash
# vLLM's serving flags on a real 1-worker cluster of the bundled model: --max-model-len caps the
# context (reported by /v1/models, enforced with context_length_exceeded), --max-num-seqs and
# --max-num-batched-tokens reach the scheduler, --no-enable-prefix-caching turns the prefix cache
# off, --scheduling-policy priority takes requests' priorities, --host / --port set the HTTP address,
# --kv-cache-dtype auto is the default cache and fp8 the e4m3 one (here with --index-key-dtype int8).
# Usage: vllm_flags_test.sh REPO_ROOT
set -uo pipefail
REPO=${1:?repository root}
. "$REPO/tests/deploy/cluster_test_lib.sh"
require_binaries coordinator shard_worker
command -v curl >/dev/null || { echo "SKIPPED: needs curl"; exit 77; }
fails=0
check() {  # check NAME CONDITION-RESULT DETAIL
  if [ "$2" = 1 ]; then echo "ok: $1"; else echo "FAIL: $1: $3"; fails=$((fails + 1)); fi
}
post() { curl -s -o /tmp/vllm_flags_body.$$ -w '%{http_code}' "http://$HTTP$1" -H 'Content-Type: application/json' -d "$2"; }
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" /tmp/vllm_flags_body.$$ "$1"; }
trap 'rm -f /tmp/vllm_flags_body.$$; cleanup_cluster' EXIT

# A vLLM GLM command line's parser flags are taken as they are (GLM's formats are always parsed).
start_cluster --max-model-len 256 --max-num-seqs 3 --max-num-batched-tokens 300 --no-enable-prefix-caching \
  --scheduling-policy priority --enable-auto-tool-choice --tool-call-parser glm47 --reasoning-parser glm45 \
  --trust-remote-code --kv-cache-dtype auto
line=$(grep "^\[coordinator\] scheduler:" "$LOG")
ready=$(grep "^\[coordinator\] cluster ready:" "$LOG")
check "--kv-cache-dtype auto keeps f32 rows" "$([[ "$ready" == *"KV blocks of 32 positions per worker (f32 rows)"* ]] && echo 1)" "$ready"
check "the scheduler's settings are logged" \
  "$([[ "$line" == *"context 256 tokens (--max-model-len)"*"up to 3 sequences and 300 tokens a step"*"prefix cache off"*"policy priority"* ]] && echo 1)" "$line"

code=$(curl -s -o /tmp/vllm_flags_body.$$ -w '%{http_code}' "http://$HTTP/v1/models")
check "/v1/models reports max_model_len 256" "$([ "$code" = 200 ] && [ "$(field "d['data'][0]['max_model_len']")" = 256 ] && echo 1)" \
  "$code $(cat /tmp/vllm_flags_body.$$)"

long=$(python3 -c 'print(list(range(100, 350)))')  # 250 prompt tokens
code=$(post /v1/completions "{\"prompt\": $long, \"max_tokens\": 10}")
check "prompt + max_tokens beyond 256 is context_length_exceeded" \
  "$([ "$code" = 400 ] && [ "$(field "d['error']['code']")" = context_length_exceeded ] && echo 1)" "$code $(cat /tmp/vllm_flags_body.$$)"

prompt=$(python3 -c 'print(list(range(100, 200)))')  # 100 tokens: 3 full blocks of 32
for i in 1 2; do
  code=$(post /v1/completions "{\"prompt\": $prompt, \"max_tokens\": 4, \"priority\": 2}")
  cached=$(field "d['usage'].get('prompt_tokens_details', {}).get('cached_tokens', 0)")
done
check "a repeated prompt is not served from a prefix cache that is off" "$([ "$code" = 200 ] && [ "$cached" = 0 ] && echo 1)" \
  "$code cached $cached: $(cat /tmp/vllm_flags_body.$$)"

kill -INT -- "-$LAUNCHER"; wait_launcher 60; LAUNCHER=""

# vLLM's --host / --port instead of --http-listen.
PORT=$(free_port)
: >"$LOG"
set -m
bash "$REPO/deploy/launch.sh" --model "$REPO/models/glm5-tiny-code" --workers 1 --threads 1 -- \
  --grpc-listen "127.0.0.1:$(free_port)" --host 127.0.0.1 --port "$PORT" --warmup-tokens 0 --kv-cache-dtype fp8 \
  --index-key-dtype int8 >"$LOG" 2>&1 &
LAUNCHER=$!
set +m
for _ in $(seq 1 240); do grep -q "^\[coordinator\] serving" "$LOG" && break; kill -0 "$LAUNCHER" 2>/dev/null || break; sleep 0.5; done
code=$(curl -s -o /tmp/vllm_flags_body.$$ -w '%{http_code}' "http://127.0.0.1:$PORT/v1/models")
check "--host 127.0.0.1 --port $PORT serves HTTP there" \
  "$([ "$code" = 200 ] && grep -q "HTTP on http://127.0.0.1:$PORT " "$LOG" && echo 1)" "$code; log: $(tail -5 "$LOG")"
ready=$(grep "^\[coordinator\] cluster ready:" "$LOG")
check "--kv-cache-dtype fp8 (vLLM's name) is the e4m3 cache, --index-key-dtype int8 the indexer keys'" \
  "$([[ "$ready" == *"KV blocks of 32 positions per worker (fp8_e4m3 rows, int8 indexer keys)"* ]] && echo 1)" "$ready"
code=$(curl -s -o /tmp/vllm_flags_body.$$ -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" \
  -H 'Content-Type: application/json' -d '{"prompt": [100, 101, 102, 103], "max_tokens": 8}')
check "the FP8-cache cluster answers" "$([ "$code" = 200 ] && [ "$(field "d['usage']['completion_tokens']")" = 8 ] && echo 1)" \
  "$code $(cat /tmp/vllm_flags_body.$$)"
kill -INT -- "-$LAUNCHER"; wait_launcher 60; LAUNCHER=""
[ "$fails" -eq 0 ] && echo PASSED
exit "$fails"
