#!/usr/bin/env bash
# The README's first command: installs the Debian packages, builds, and runs the main job on
# the bundled model (models/glm5-tiny-code).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh
MODEL=models/glm5-tiny-code
echo "== glmctl generate on $MODEL (greedy, 48 new tokens)"
build/bin/glmctl generate --model "$MODEL" --prompt $'def fibonacci(n):\n' --max-new-tokens 48 --json
