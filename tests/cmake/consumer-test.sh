#!/usr/bin/env bash
# Downstream use, both ways: find_package(clusterkit) from an installed tree,
# and add_subdirectory. Each consumer runs a real command through the library
# and must print what the command printed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:?usage: consumer-test.sh BUILD_DIR}"
WORK="$(mktemp -d /tmp/ck-consumer-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

check() {  # binary label
  local out
  out="$("$1" --local echo consumer-ok)"
  if grep -q "local-a: consumer-ok" <<<"$out" && grep -q "local-b: consumer-ok" <<<"$out"; then
    echo "consumer-test: $2: passed"
    return 0
  fi
  echo "consumer-test: $2: FAILED; output was: $out" >&2
  return 1
}

cmake --install "$BUILD" --prefix "$WORK/prefix" >/dev/null
cmake -S "$ROOT/examples" -B "$WORK/installed" -G Ninja -DCMAKE_PREFIX_PATH="$WORK/prefix" "${launcher[@]}" >/dev/null
cmake --build "$WORK/installed" >/dev/null
check "$WORK/installed/example_fanout" "find_package from an installed tree"

cmake -S "$ROOT/tests/cmake/subdir" -B "$WORK/subdir" -G Ninja -DCLUSTERKIT_SOURCE_DIR="$ROOT" "${launcher[@]}" >/dev/null
cmake --build "$WORK/subdir" --target consumer >/dev/null
check "$WORK/subdir/consumer" "add_subdirectory"
