#!/usr/bin/env python3
"""Put a model on the NAS the way the seed's step 1 does: download it on one
host through the hub's CLI, copy it into the NAS with several rsync streams,
then check that every GPU host sees it whole through its own mount.

    python3 examples/python/model_store.py --inventory cluster.yaml --on cpu1 \\
        --model Qwen/Qwen2.5-72B-Instruct --to /mnt --gpus gpu

--endpoint picks a mirror or a private hub (e.g. https://hf-mirror.com, with
--hub hf); a token for gated models comes from $HF_TOKEN / $MODELSCOPE_API_TOKEN
through --token-env and is never printed.
"""
import argparse
import os
import sys

import clusterkit as ck


def show(p: ck.TransferProgress) -> None:
    mib = 1 << 20
    total = f"{p.bytes_total / mib:.1f}" if p.bytes_total else "?"
    print(f"\r{p.host} {p.phase}: {p.bytes_done / mib:.1f}/{total} MiB, {p.files_done}/{p.files_total} files, "
          f"{p.bytes_per_second / mib:.1f} MiB/s   ", end="", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inventory", required=True)
    ap.add_argument("--on", required=True, help="the host that downloads (and has the NAS mounted)")
    ap.add_argument("--model", required=True, help="ORG/NAME, e.g. Qwen/Qwen2.5-72B-Instruct")
    ap.add_argument("--hub", default="modelscope", choices=["modelscope", "ms", "huggingface", "hf"])
    ap.add_argument("--endpoint", default="", help="a mirror or private hub (http:// or https://)")
    ap.add_argument("--token-env", default="", help="the variable holding an access token")
    ap.add_argument("--to", default="/mnt", help="the model store's root on the NAS (default /mnt)")
    ap.add_argument("--download-dir", default="/data/models", help="the download host's own disk")
    ap.add_argument("--gpus", default="gpu", help="the hosts that must see the model (group or names)")
    ap.add_argument("--streams", type=int, default=4)
    a = ap.parse_args()

    inventory = ck.Inventory.load(a.inventory)
    on = inventory.host(a.on)
    store = ck.ModelStore(a.to, container_root="/models")
    token = os.environ.get(a.token_env, "") if a.token_env else ""

    spec = ck.DownloadSpec(a.model, hub=a.hub, endpoint=a.endpoint, token=token,
                           local_dir=f"{a.download_dir}/{ck.modelscope_folder_name(a.model)}")
    got = store.download(on, spec, on_progress=show)
    print(f"\n{got.message}", file=sys.stderr)
    if not got:
        return 1

    copied = store.sync(on, ck.SyncSpec(got.dir, store.path_for(a.model), streams=a.streams), on_progress=show)
    print(f"\n{copied.message}", file=sys.stderr)
    if not copied:
        return 1

    seen = store.verify(inventory.hosts_for(a.gpus), copied.destination, ck.RemoteVerifyOptions(read_all=True))
    for v in seen:
        print(f"{v.host}: {'ok' if v.ok else 'FAILED'}: {v.message} (container path {v.container_path})")
    return 0 if all(v.ok for v in seen) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ck.Error as e:  # a spec that cannot work, an unknown host or group, ...
        print(f"error ({e.code}): {e}", file=sys.stderr)
        sys.exit(2)
