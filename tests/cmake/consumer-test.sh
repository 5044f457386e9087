#!/usr/bin/env bash
# Downstream use, both ways: find_package(clusterkit) from a tree installed
# from BUILD_DIR (nothing is rebuilt for it), and add_subdirectory. Each
# consumer runs a real command through the library and must print what the
# command printed.
#
# The add_subdirectory consumer compiles the library again, with the flags
# of scripts/test.sh's build (CK_CMAKE_RELEASE_FLAGS, Release) in a build
# folder at the same depth under the repository: with test.sh's
# CCACHE_BASEDIR, every library compile is a ccache hit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:?usage: consumer-test.sh BUILD_DIR}"
RELEASE_FLAGS="${CK_CMAKE_RELEASE_FLAGS:--O2 -DNDEBUG}"
INSTALLED="$ROOT/build-consumer-installed"
SUBDIR="$ROOT/build-consumer-subdir"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
flags=(-G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=$RELEASE_FLAGS" "${launcher[@]}")

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

rm -rf "$INSTALLED/prefix"
cmake --install "$BUILD" --prefix "$INSTALLED/prefix" >/dev/null
cmake -S "$ROOT/examples" -B "$INSTALLED/build" "${flags[@]}" -DCMAKE_PREFIX_PATH="$INSTALLED/prefix" >/dev/null
cmake --build "$INSTALLED/build" >/dev/null
check "$INSTALLED/build/example_fanout" "find_package from an installed tree"

cmake -S "$ROOT/tests/cmake/subdir" -B "$SUBDIR" "${flags[@]}" -DCLUSTERKIT_SOURCE_DIR="$ROOT" >/dev/null
cmake --build "$SUBDIR" --target consumer >/dev/null
check "$SUBDIR/consumer" "add_subdirectory"
