#!/usr/bin/env bash
# Install what is needed, build everything, and run every test: C++ (Catch2
# through ctest), Python (pytest), the lab tests (real sshd hosts in
# namespaces: needs root), the CMake consumer tests (find_package from an
# installed tree, add_subdirectory), `pip install .`, and the C++ tests once
# more built with AddressSanitizer + UndefinedBehaviorSanitizer. `.ci/run`
# runs exactly this. Prints each phase's duration as it ends (with how many
# compiles ccache answered) and a table of them all at the end.
#
# One compiler configuration (Release at -O2, no -g; the same flags as
# pyproject.toml's wheel build) for the test build, the add_subdirectory
# consumer and `pip install .`, in build folders at the same depth under the
# repository: with CCACHE_BASEDIR, ccache compiles the library once for all
# three. The simulator (Go) and the serving venv install in the background
# while the C++ code compiles; the sanitizer build compiles, at the lowest
# priority, while the tests run (they mostly wait on processes and sockets).
#
#   BUILD_DIR       the test build              (default build-test)
#   ASAN_BUILD_DIR  the sanitizer build         (default build-asan)
#   JOBS            parallel compile jobs       (default: the CPUs)
#   CK_SKIP_SERVING=1  do not run scripts/install-serving.sh (its venv is only
#                   for the serving tests; about 7 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${BUILD_DIR:-$ROOT/build-test}"
ASAN_BUILD="${ASAN_BUILD_DIR:-$ROOT/build-asan}"
JOBS="${JOBS:-$(nproc)}"

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the lab tests need root (network namespaces); run with sudo" >&2
  exit 2
fi

# Keep in step with [tool.scikit-build] in pyproject.toml (build type and
# CMAKE_CXX_FLAGS_RELEASE) and with tests/cmake/consumer-test.sh: a
# difference makes every compile a ccache miss.
RELEASE=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG")
export CK_CMAKE_RELEASE_FLAGS="-O2 -DNDEBUG"
# One compiler, named the same way, for every build: scikit-build-core would
# otherwise give `pip install .` the compiler in Python's sysconfig (g++, not
# CMake's c++), and ccache counts a different compiler name as a miss.
export CXX="${CXX:-c++}"
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1 CCACHE_SLOPPINESS=time_macros,include_file_mtime,include_file_ctime

LOGS="$(mktemp -d /tmp/ck-test-logs-XXXXXX)"
status=0
names=() seconds=() results=()

fmt() { printf '%d:%02d' $(($1 / 60)) $(($1 % 60)); }
now() { date +%s; }
elapsed_since() { echo $(($(now) - $1)); }
# "hits misses" of the compiler cache so far.
ccache_counts() {
  if command -v ccache >/dev/null; then
    ccache --print-stats 2>/dev/null | awk -F'\t' '$1 ~ /^(direct|preprocessed)_cache_hit$/ {h += $2}
      $1 == "cache_miss" {m = $2} END {print h + 0, m + 0}'
  else
    echo "0 0"
  fi
}

record() {  # name seconds ok|FAILED [note]
  names+=("$1") seconds+=("$2") results+=("$3${4:+  ($4)}")
  echo "==== $1: $3 in $(fmt "$2")${4:+ ($4)}"
  [ "$3" = ok ] || status=1
}

# phase NAME COMMAND...: runs it, records how long it took, whether it passed
# and how many compiles ccache answered. A failed phase fails the run; later
# phases still run unless the caller stops.
phase() {
  local name="$1" t0 rc=0 h0 m0 h1 m1 note=""
  shift
  echo "==== $name"
  t0=$(now)
  read -r h0 m0 < <(ccache_counts)
  "$@" || rc=$?
  read -r h1 m1 < <(ccache_counts)
  if [ $((h1 - h0 + m1 - m0)) -gt 0 ]; then note="compiles: $((h1 - h0)) from ccache, $((m1 - m0)) compiled"; fi
  record "$name" "$(elapsed_since "$t0")" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" "$note"
  return $rc
}

summary() {
  local total=0 i
  echo
  echo "==== test.sh summary"
  printf '  %-40s %8s  %s\n' phase time result
  for i in "${!names[@]}"; do
    printf '  %-40s %8s  %s\n' "${names[$i]}" "$(fmt "${seconds[$i]}")" "${results[$i]}"
  done
  printf '  %-40s %8s  %s\n' "total (wall clock)" "$(fmt "$(elapsed_since "$T0")")" "$([ $status -eq 0 ] && echo ok || echo FAILED)"
}

# Labs left by a crashed earlier run would hold their subnets.
cleanup_labs() {
  for lab in tlab tldk tssh tpre tmod tsrv tlpy tlpyx tlpyd tpyf tpsv tci; do
    [ -x "$BUILD/clusterkit" ] && "$BUILD/clusterkit" lab down --name "$lab" >/dev/null 2>&1 || true
  done
}
declare -A bg_pid=()
on_exit() {
  local p
  # Each background install runs in a process group of its own (set -m):
  # stop it with everything it started.
  for p in "${bg_pid[@]}"; do kill -- "-$p" 2>/dev/null || true; done
  cleanup_labs
  rm -rf "$LOGS"
}
trap on_exit EXIT

T0=$(now)

# ---------------------------------------------------------------------------
# Install. The simulator needs only Go and the network: it builds in the
# background from the start. Debian packages, the Python tools and the hub
# CLIs come first for everything else; then the serving venv (apt, then pip)
# goes to the background too, while the code compiles.

# background [--nice] NAME LOG COMMAND...: runs it in the background (with
# --nice, at the lowest CPU priority: it then takes only the CPU time that the
# foreground phases leave, most of it while tests wait on processes and
# sockets); records its duration and status in $LOGS/NAME.time.
background() {
  local nice=0
  if [ "$1" = --nice ]; then nice=1; shift; fi
  local name="$1" log="$2"
  shift 2
  set -m
  (
    [ $nice = 1 ] && renice -n 19 -p "$BASHPID" >/dev/null
    t0=$(now)
    rc=0
    "$@" >"$log" 2>&1 || rc=$?
    echo "$(elapsed_since "$t0") $rc" >"$LOGS/$name.time"
  ) &
  bg_pid[$name]=$!
  set +m
}
# install-sim.sh prints the simulator's path on stdout, its progress on stderr.
background sim "$LOGS/sim.log" scripts/install-sim.sh
phase "install: deps" scripts/install-deps.sh || { summary; exit 1; }
if [ "${CK_SKIP_SERVING:-0}" != 1 ]; then
  background --nice serving "$LOGS/serving.log" scripts/install-serving.sh
fi

wait_background() {  # NAME LABEL: waits for it, records it; prints its log when it failed
  local name="$1" label="$2" t=0 rc=1
  wait "${bg_pid[$name]}" || true
  unset "bg_pid[$name]"
  [ -f "$LOGS/$name.time" ] && read -r t rc <"$LOGS/$name.time"
  record "$label (background)" "$t" "$([ "$rc" -eq 0 ] && echo ok || echo FAILED)"
  if [ "$rc" -ne 0 ]; then
    echo "test.sh: $label failed; the end of its log:" >&2
    tail -n 60 "$LOGS/$name.log" >&2
    return 1
  fi
}

# ---------------------------------------------------------------------------
# Build: the library, the CLI, the Python module and the tests (the examples
# are built by the consumer tests, against the installed tree).
configure_and_build() {
  cmake -S . -B "$BUILD" -G Ninja "${RELEASE[@]}" -DCLUSTERKIT_BUILD_PYTHON=ON -DCLUSTERKIT_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build "$BUILD" -j "$JOBS"
}
phase "build" configure_and_build || { summary; exit 1; }
cleanup_labs

# The unit, lab and simulator tests built again with ASan + UBSan (-O0 -g1:
# the quickest to build, with line numbers in the reports), in the
# background while the tests below run. Any finding fails its test. The
# serving lab test is left out there: its minutes go to vLLM starting on the
# CPU, not to our code (which test_serve covers, sanitized, without Docker).
sanitizer_build() {
  # Without ccache: its objects are never shared, and ninja already keeps the
  # folder incremental.
  export CCACHE_DISABLE=1
  cmake -S . -B "$ASAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" \
    -DCLUSTERKIT_SANITIZE=ON -DCLUSTERKIT_BUILD_CLI=OFF -DCLUSTERKIT_BUILD_EXAMPLES=OFF
  cmake --build "$ASAN_BUILD" -j "$JOBS"
}
background --nice asan-build "$LOGS/asan-build.log" sanitizer_build

wait_background sim "install: llm-d-inference-sim" || true
# The serving tests (C++ test_serve_lab, Python test_serve/test_deployment)
# need the venv: wait for it here (it has had the whole build to finish).
if [ "${CK_SKIP_SERVING:-0}" != 1 ]; then
  wait_background serving "install: serving venv" || true
fi

phase "ctest" bash -c "cd '$BUILD' && ctest --output-on-failure --timeout 600" || true

phase "pytest" env PYTHONPATH="$BUILD/python" python3 -m pytest tests/python -q -p no:cacheprovider || true

phase "consumers (CMake)" tests/cmake/consumer-test.sh "$BUILD" || true

# `pip install .` into a fresh venv, then import it there.
pip_install() {
  local venv rc=0
  venv="$(mktemp -d /tmp/ck-venv-XXXXXX)"
  if python3 -m venv "$venv" && CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" "$venv/bin/pip" install -q "$ROOT" &&
     "$venv/bin/python" -c 'import clusterkit, sys; h = clusterkit.Host(clusterkit.HostSpec.local_machine("l")); r = h.run(["echo", "pip-ok"]); sys.exit(0 if r.stdout == "pip-ok\n" else 1)'; then
    echo "pip install .: passed"
  else
    echo "pip install .: FAILED" >&2
    rc=1
  fi
  rm -rf "$venv"
  return $rc
}
phase "pip install ." pip_install || true

if wait_background asan-build "sanitizer: build"; then
  phase "sanitizer: tests" bash -c "cd '$ASAN_BUILD' &&
    ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 900 -LE serve" || true
fi
cleanup_labs

summary
exit $status
