#!/usr/bin/env python3
"""The peer for `clusterkit model inspect`: what a user would otherwise write.

Plain Python 3 (standard library only), the way the `safetensors` format is
read by hand: for every shard, read the 8-byte little-endian header length,
read the JSON header, `json.loads` it. It computes the same facts as
`clusterkit model inspect DIR --json` does from the same reads: config.json,
the shard list from model.safetensors.index.json (or every *.safetensors),
per shard the header and data sizes, the size the file must have and the size
it has, tensor count, parameters and bytes per dtype, tensors listed twice,
and the index's total_size checked against the headers. It never reads the
weights.

    python3 bench/models/read_headers.py DIR          # JSON on stdout

The JSON has `work_seconds`: the time spent after the interpreter started
(clusterkit's figure is the whole process; compare with a `python3 -c pass`).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def read_header(path: str) -> tuple[dict, int, int]:
    """(header, header bytes, file size) of one safetensors file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 * 1024 * 1024 or 8 + n > size:
            raise ValueError(f"{path}: header length {n} is not plausible for a {size}-byte file")
        return json.loads(f.read(n)), n, size


def inspect(d: str) -> dict:
    with open(os.path.join(d, "config.json")) as f:
        config = json.load(f)
    index_path = os.path.join(d, "model.safetensors.index.json")
    index_total = None
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        shards = sorted(set(index["weight_map"].values()))
        index_total = index.get("metadata", {}).get("total_size")
    else:
        shards = sorted(n for n in os.listdir(d) if n.endswith(".safetensors"))
    warnings: list[str] = []
    seen: dict[str, str] = {}
    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    out_shards = []
    tensor_count = 0
    for name in shards:
        header, hlen, size = read_header(os.path.join(d, name))
        data = 0
        count = 0
        for tname, t in header.items():
            if tname == "__metadata__":
                continue
            begin, end = t["data_offsets"]
            n = 1
            for dim in t["shape"]:
                n *= dim
            if end - begin != n * DTYPE_BYTES.get(t["dtype"], 0):
                warnings.append(f"{name}: {tname} has {end - begin} bytes for {n} x {t['dtype']}")
            params[t["dtype"]] = params.get(t["dtype"], 0) + n
            nbytes[t["dtype"]] = nbytes.get(t["dtype"], 0) + (end - begin)
            data = max(data, end)
            count += 1
            if tname in seen:
                warnings.append(f"tensor {tname!r} is in both {seen[tname]} and {name}")
            seen[tname] = name
        expected = 8 + hlen + data
        if size != expected:
            warnings.append(f"{name} is {size} bytes but its header needs {expected}")
        tensor_count += count
        out_shards.append({"file": name, "header_bytes": hlen, "data_bytes": data, "expected_file_size": expected,
                           "file_size": size, "tensor_count": count})
    total = sum(nbytes.values())
    if index_total is not None and index_total != total:
        warnings.append(f"index total_size {index_total} but the headers add up to {total}")
    layers = config.get("num_hidden_layers", 0)
    kv_heads = config.get("num_key_value_heads", config.get("num_attention_heads", 0))
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(config.get("num_attention_heads", 1), 1)
    return {
        "dir": d,
        "architectures": config.get("architectures", []),
        "model_type": config.get("model_type", ""),
        "num_hidden_layers": layers,
        "kv_bytes_per_token": 2 * layers * kv_heads * head_dim * 2,
        "parameter_count": sum(params.values()),
        "parameters_per_dtype": params,
        "bytes_per_dtype": nbytes,
        "total_tensor_bytes": total,
        "tensor_count": tensor_count,
        "shards": out_shards,
        "warnings": warnings,
    }


def main() -> int:
    start = time.perf_counter()
    facts = inspect(sys.argv[1])
    facts["work_seconds"] = time.perf_counter() - start
    json.dump(facts, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
