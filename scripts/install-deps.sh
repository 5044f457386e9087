#!/usr/bin/env bash
# Everything clusterkit needs on a fresh Debian 12 machine: the compiler
# toolchain and libraries from Debian, the Python build tools from PyPI, and
# the programs the lab and the benchmarks drive (sshd, sshfs, iproute2,
# pdsh, parallel-ssh). Safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev catch2 libcli11-dev libyaml-cpp-dev libssl-dev
  python3 python3-dev python3-pip python3-venv
  openssh-client openssh-server sshfs fuse3 iproute2 util-linux procps
  pdsh pssh rsync
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Python that runs the tests gets the build tools for the module.
PYTHON="${PYTHON:-python3}"
pip_flags=(-q)
if "$PYTHON" -c 'import sys; sys.exit(0 if sys.prefix == sys.base_prefix else 1)' &&
   "$PYTHON" -m pip install --help 2>/dev/null | grep -q break-system-packages &&
   [ -e "$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  pip_flags+=(--break-system-packages)
fi
# mypy: its stubtest checks python/clusterkit/_core.pyi (pinned: the allowlist
# in tests/python/stubtest-allowlist.txt is what this version reports).
"$PYTHON" -m pip install "${pip_flags[@]}" "pybind11>=2.11" "scikit-build-core>=0.10" "pytest>=7" "openai>=1" "mypy==2.4.1"
# The hub CLIs ModelStore drives on download hosts, for the download tests
# (against tests/fixtures/fake_hub.py only). Pinned: tests/fixtures/
# download-progress holds what these versions print. In a venv of their own
# so that their dependencies never meet the test Python's.
HUBCLI="${CK_HUBCLI_DIR:-/opt/ck-hubcli}"
if ! "$HUBCLI/bin/python" -c 'import huggingface_hub, modelscope, sys; sys.exit(0 if (huggingface_hub.__version__, modelscope.__version__) == ("2.4.0", "1.40.2") else 1)' 2>/dev/null; then
  echo "install-deps: installing hf and modelscope CLIs in $HUBCLI"
  $SUDO "$PYTHON" -m venv "$HUBCLI"
  $SUDO "$HUBCLI/bin/pip" install -q "huggingface_hub==2.4.0" "modelscope==1.40.2"
fi
echo "install-deps: done"
