#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, and runs the main job on
# the bundled model (models/glm5-tiny-code).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh
MODEL=models/glm5-tiny-code
# "def fibonacci(n):\n" in the bundled tokenizer's ids.
PROMPT_IDS=348,304,93,86,283,1499,1383,712,341
echo "== glmctl generate on $MODEL (greedy, 32 new tokens)"
build/bin/glmctl generate --model "$MODEL" --tokens "$PROMPT_IDS" --max-new-tokens 32 --json
