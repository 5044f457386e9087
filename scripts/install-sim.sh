#!/usr/bin/env bash
# Install llm-d-inference-sim, a vLLM SIMULATOR (OpenAI-compatible API,
# Prometheus metrics, latency and failure injection; no model, no GPU). The
# OpenAI client's sim tests and bench/openai run against it, always with
# --force-dummy-tokenizer.
#
# `go install ...@VERSION` is refused by the module proxy's version list, so
# the module is fetched with `go mod download`, copied out of the read-only
# module cache, and built. Idempotent: a build of the same version is kept.
#
#   scripts/install-sim.sh            # -> /usr/local/bin/llm-d-inference-sim
#   SIM_PREFIX=$PWD/tools/bin scripts/install-sim.sh
#
# Prints the installed path on stdout.
set -euo pipefail

VERSION="${SIM_VERSION:-v0.10.2}"
MODULE=github.com/llm-d/llm-d-inference-sim
if [ -n "${SIM_PREFIX:-}" ]; then
  PREFIX="$SIM_PREFIX"
elif [ -w /usr/local/bin ]; then
  PREFIX=/usr/local/bin
else
  PREFIX="$(cd "$(dirname "$0")/.." && pwd)/tools/bin"  # tools/ is git-ignored
fi
DEST="$PREFIX/llm-d-inference-sim"
STAMP="$DEST.version"

if [ -x "$DEST" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ]; then
  echo "install-sim: llm-d-inference-sim $VERSION already at $DEST" >&2
  echo "$DEST"
  exit 0
fi

GO="$(command -v go || true)"
[ -z "$GO" ] && [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go
if [ -z "$GO" ]; then
  echo "install-sim: Go is needed to build the simulator (go.dev/doc/install; the module wants Go >= 1.25)" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "install-sim: downloading $MODULE@$VERSION" >&2
DIR="$(cd "$WORK" && GOFLAGS=-mod=mod "$GO" mod download -json "$MODULE@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [ -z "$DIR" ] || [ ! -d "$DIR" ]; then
  echo "install-sim: go mod download gave no module directory" >&2
  exit 1
fi
cp -r "$DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
echo "install-sim: building (a few minutes)" >&2
(cd "$WORK/src" && CGO_ENABLED=0 "$GO" build -buildvcs=false -o "$WORK/llm-d-inference-sim" ./cmd/llm-d-inference-sim)
mkdir -p "$PREFIX"
install -m 0755 "$WORK/llm-d-inference-sim" "$DEST"
echo "$VERSION" > "$STAMP"
echo "install-sim: installed $DEST" >&2
echo "$DEST"
