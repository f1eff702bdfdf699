#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every unit and
# integration test, and ends with one line "N passed, N failed" counting test cases.
set -euo pipefail
cd "$(dirname "$0")"
packaging/install-deps.sh
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build >/dev/null
else
  # -O2 as the project's default, without debug information: a third less
  # compile time on a cold build (meson configure build -Ddebug=true to debug).
  meson setup build -Ddebug=false >/dev/null
fi
ninja -C build
meson test -C build --print-errorlogs --num-processes 2 || true
exec /usr/bin/python3 tests/summarize.py build/meson-logs/testlog.json
