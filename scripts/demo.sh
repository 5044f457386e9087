#!/usr/bin/env bash
# The main job, on the lab: build clusterkit, bring up real sshd hosts in
# namespaces on this machine, run commands on every host at once, copy a
# file to all of them, show the per-host results, and take the lab down.
# Needs root (the lab creates network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD_DIR:-$PWD/build}"
HOSTS="${HOSTS:-4}"

scripts/install-deps.sh
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target clusterkit_cli -j "$(nproc)"
CK="$BUILD/clusterkit"

trap '"$CK" lab down --name demo' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$CK" lab up --name demo --subnet 10.88.20 --hosts "$HOSTS" --nas
export CLUSTERKIT_INVENTORY=/run/clusterkit/lab-demo/inventory.yaml
step "$CK" inventory
step "$CK" exec -- uname -n
step "$CK" exec --sh -- 'echo "$(hostname): $(nproc) cpus, pid namespace has $(ls /proc | grep -c "^[0-9]") processes"'
head -c 8000000 /dev/urandom > /tmp/clusterkit-demo.bin
step "$CK" upload -g lab /tmp/clusterkit-demo.bin /tmp/demo.bin
step "$CK" exec -g lab -- sha256sum /tmp/demo.bin
sha256sum /tmp/clusterkit-demo.bin
rm -f /tmp/clusterkit-demo.bin
step "$CK" --json exec -g h1 -- sh -c 'echo out; echo err >&2; exit 3' || true
step "$CK" lab status --name demo
