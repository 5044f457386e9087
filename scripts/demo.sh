#!/usr/bin/env bash
# The main job, for real, on the lab: the seed's deployment (a model
# downloaded on a CPU server and copied into a NAS, a Ray head and worker in
# Docker on two "GPU servers", vLLM with tensor parallel 2 x pipeline
# parallel 2, an OpenAI-compatible endpoint) from one spec and one command:
#
#   clusterkit up examples/deployments/lab.yaml
#
# on three real sshd hosts in namespaces on this machine, each with its own
# real Docker engine, plus a NAS host, then a chat, a benchmark and `down`.
# What is SIMULATED, and why: the GPUs (this machine has none: Ray gets 2
# logical GPUs per host and vLLM's CPU build runs the model), and the model
# hub (no machine here reaches one: a small Qwen2 is made locally and served
# by tests/fixtures/fake_hub.py; the real `modelscope` CLI downloads it).
# Needs root (namespaces). On a fresh 2-core machine about 25 minutes (mostly installing the Ray/vLLM venv and
# building); once installed, about 2.5 minutes (148-169 s measured).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
BUILD="${BUILD_DIR:-$ROOT/build}"
SPEC=examples/deployments/lab.yaml
t0=$(date +%s)
phase() { printf '\n\033[1m== %s (%ss)\033[0m\n' "$*" "$(( $(date +%s) - t0 ))"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

phase "install (Debian packages, the hub CLIs, Docker, the Ray + vLLM CPU venv)"
scripts/install-deps.sh
scripts/install-serving.sh

phase "build"
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" >/dev/null
cmake --build "$BUILD" --target clusterkit_cli -j "$(nproc)"
CK="$BUILD/clusterkit"

HUB_PID=""
WORK="$(mktemp -d /tmp/clusterkit-demo-XXXXXX)"
cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  "$CK" down "$SPEC" >/dev/null 2>&1 || true
  "$CK" lab down
  rm -rf "$WORK"
}
trap cleanup EXIT

phase "the lab: 3 hosts (h1 head, h2 worker: 2 SIMULATED GPUs each; h3 downloads), a NAS host, a Docker engine per host"
step "$CK" lab up --hosts 3 --nas --docker --gpus 2 --roles head,worker,download
export CLUSTERKIT_INVENTORY=/run/clusterkit/lab-ck/inventory.yaml

phase "the model hub (SIMULATED): a small Qwen2 made here, served on the lab's bridge"
/opt/ck-serve/bin/python3 tests/fixtures/make_tiny_qwen2.py "$WORK/made" >/dev/null
mkdir -p "$WORK/hub/Qwen"
mv "$WORK/made/Qwen/Tiny2___5-4M-Instruct" "$WORK/hub/Qwen/Tiny2.5-4M-Instruct"
python3 tests/fixtures/fake_hub.py --root "$WORK/hub" --host 10.88.0.1 --port 8765 >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 100); do grep -q '"port"' "$WORK/hub.log" 2>/dev/null && break; sleep 0.1; done
echo "(SIMULATED hub at http://10.88.0.1:8765 serving Qwen/Tiny2.5-4M-Instruct; nothing leaves this machine)"

phase "preflight: every check on every host before anything is started (up runs it too)"
step "$CK" preflight --shm-min-gib 1 --image clusterkit/lab-runtime:bookworm --no-nas-probe

phase "what up will do (a dry run: every step, every command, nothing changed)"
step "$CK" plan "$SPEC"

phase "up: preflight, NAS, download + copy, verify, layout, Ray, vLLM, smoke test, benchmark"
step "$CK" up "$SPEC"

phase "the endpoint, as a user would use it (the key is found automatically)"
step "$CK" status "$SPEC"
step "$CK" chat --url http://10.88.0.11:8000 --model tiny --max-tokens 24 "Who are you?"
echo
step "$CK" bench --url http://10.88.0.11:8000 --model tiny --requests 12 --concurrency 4 --prompt-tokens 64 --max-tokens 16
step "$CK" up "$SPEC"   # again: already up, answered from a quick look

phase "down (the model's copies too: the demo leaves nothing behind)"
step "$CK" down "$SPEC" --remove-model

phase "done"
cat <<EOF
What ran: a real sshd, a real Docker engine and real Ray (2 nodes) on lab
hosts, real vLLM (its CPU build) with tensor parallel 2 x pipeline parallel 2
across two hosts, the real modelscope CLI and rsync for the model, and
clusterkit's own OpenAI client for the smoke test, chat and benchmark.
SIMULATED: the GPUs (logical, declared by the lab: this machine has none) and
the hub (tests/fixtures/fake_hub.py serving a model made here). The same kind
of spec, examples/deployments/qwen72b-two-node.yaml, deploys Qwen2.5-72B on
real servers. The record of this run: ~/.local/state/clusterkit/deployments/lab/record.json
Total: $(( $(date +%s) - t0 )) s.
EOF
