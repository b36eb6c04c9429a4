#!/usr/bin/env bash
# Configures and builds the project into build/ (Release, Ninja, ccache). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.ccache}"
ccache --max-size=5G >/dev/null 2>&1 || true
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build -j "$JOBS"
