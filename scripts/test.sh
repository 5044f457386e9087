#!/usr/bin/env bash
# Install what is needed, build everything, and run every test: C++ (Catch2
# through ctest), Python (pytest), the lab tests (real sshd hosts in
# namespaces: needs root), and the CMake consumer tests (find_package from
# an installed tree, add_subdirectory). `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${BUILD_DIR:-$ROOT/build-test}"
JOBS="${JOBS:-$(nproc)}"

scripts/install-deps.sh
# The vLLM simulator the OpenAI client is tested against (built with Go).
if ! SIM="$(scripts/install-sim.sh)"; then
  echo "test.sh: WARNING: llm-d-inference-sim could not be installed; the simulator tests will say so" >&2
fi

export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1 CCACHE_SLOPPINESS=time_macros,include_file_mtime,include_file_ctime

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the lab tests need root (network namespaces); run with sudo" >&2
  exit 2
fi

# Labs left by a crashed earlier run would hold their subnets.
cleanup() {
  for lab in tlab tssh tpy tpyf tpre tmod tci; do
    [ -x "$BUILD/clusterkit" ] && "$BUILD/clusterkit" lab down --name "$lab" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLUSTERKIT_BUILD_PYTHON=ON
cmake --build "$BUILD" -j "$JOBS"
cleanup

status=0
(cd "$BUILD" && ctest --output-on-failure --timeout 600) || status=1

CLUSTERKIT_HUB_CLI_BIN="${CLUSTERKIT_HUB_CLI_BIN:-/opt/ck-hubcli/bin}" PYTHONPATH="$BUILD/python" python3 -m pytest tests/python -q -p no:cacheprovider || status=1

tests/cmake/consumer-test.sh "$BUILD" || status=1

# `pip install .` into a fresh venv, then import it there.
VENV="$(mktemp -d /tmp/ck-venv-XXXXXX)"
if python3 -m venv "$VENV" && CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$VENV/bin/pip" install -q "$ROOT" &&
   "$VENV/bin/python" -c 'import clusterkit, sys; h = clusterkit.Host(clusterkit.HostSpec.local_machine("l")); r = h.run(["echo", "pip-ok"]); sys.exit(0 if r.stdout == "pip-ok\n" else 1)'; then
  echo "pip install .: passed"
else
  echo "pip install .: FAILED" >&2
  status=1
fi
rm -rf "$VENV"

exit $status
