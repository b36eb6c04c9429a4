#!/usr/bin/env bash
# The README's second command (and what CI runs): installs the Debian packages, builds, and
# runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
bash deploy/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900
