#!/usr/bin/env bash
# The main job, on the lab: build clusterkit, bring up real sshd hosts in
# namespaces on this machine, run commands on every host at once, copy a
# file to all of them, mount the lab NAS (sshfs) on every host, download a
# small model on one host through the real hub CLI from a local stand-in
# hub (SIMULATED: tests/fixtures/fake_hub.py; nothing leaves this machine),
# copy it into the NAS, check every host sees it whole, and take it all down.
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

HUB_PID=""
WORK="$(mktemp -d /tmp/clusterkit-demo-XXXXXX)"
cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  "$CK" lab down --name demo
  rm -rf "$WORK"
}
trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$CK" lab up --name demo --subnet 10.88.21 --hosts "$HOSTS" --nas
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

# Step 1 of the seed: a NAS on every host, the model downloaded once and
# copied into it, seen whole by every host.
grep 'nas_export' "$CLUSTERKIT_INVENTORY"
step "$CK" nas mount -g lab    # the lab's inventory names its NAS (vars.nas_export, sshfs)
step "$CK" nas check -g lab
python3 tests/fixtures/make_test_model.py --total-mb 48 --shards 4 "$WORK/hub/Qwen/Tiny2.5-Test" >/dev/null
python3 tests/fixtures/fake_hub.py --root "$WORK/hub" --host 10.88.21.1 --port 0 --port-file "$WORK/port" \
  --throttle 8000000 >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
echo "(a SIMULATED hub on http://10.88.21.1:$(cat "$WORK/port"): tests/fixtures/fake_hub.py serving a small test model)"
step "$CK" model download Qwen/Tiny2.5-Test --on h1 --hub modelscope --endpoint "http://10.88.21.1:$(cat "$WORK/port")" \
  --dir /tmp/models/Qwen/Tiny2___5-Test
step "$CK" model sync /tmp/models/Qwen/Tiny2___5-Test /mnt/Qwen/Tiny2___5-Test --on h1 --streams 4
step "$CK" model verify Qwen/Tiny2.5-Test --root /mnt -g lab --container-root /models
step "$CK" nas umount -g lab
step "$CK" lab status --name demo
