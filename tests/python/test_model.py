"""Models on disk and the planner: resolve_model, inspect_model, verify_model,
sha256_files, parse_gpu_inventory, plan_deployment.

The tiny model is written by the tests: a config.json and two real
safetensors shards (struct + json) with an index, so every number is known.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from pathlib import Path

import pytest

from pickles import assert_pickles

import clusterkit as ck

HIDDEN = 8
VOCAB = 16

# (name, dtype, shape) per shard; BF16 is 2 bytes, F32 4.
SHARD1 = [
    ("model.embed_tokens.weight", "BF16", [VOCAB, HIDDEN]),
    ("model.layers.0.input_layernorm.weight", "BF16", [HIDDEN]),
]
SHARD2 = [
    ("model.norm.weight", "F32", [HIDDEN]),
    ("lm_head.weight", "BF16", [VOCAB, HIDDEN]),
]
PARAMETERS = VOCAB * HIDDEN + HIDDEN + HIDDEN + VOCAB * HIDDEN  # 272
BF16_BYTES = 2 * (VOCAB * HIDDEN + HIDDEN + VOCAB * HIDDEN)
F32_BYTES = 4 * HIDDEN

# Qwen2.5-72B-Instruct's published config.json.
QWEN72_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 8192,
    "initializer_range": 0.02,
    "intermediate_size": 29568,
    "max_position_embeddings": 32768,
    "max_window_layers": 70,
    "model_type": "qwen2",
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
# Sum of the real checkpoint's safetensors data (bf16), hence its parameters.
QWEN72_BYTES = 145412407296
QWEN72_PARAMETERS = QWEN72_BYTES // 2


def dtype_size(dtype: str) -> int:
    return {"BF16": 2, "F16": 2, "F32": 4}[dtype]


def write_safetensors(path: Path, tensors: list[tuple[str, str, list[int]]]) -> int:
    """A real safetensors file; returns its size."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for i, (name, dtype, shape) in enumerate(tensors):
        n = dtype_size(dtype)
        for d in shape:
            n *= d
        begin = len(data)
        data += bytes((i * 7 + k) % 251 for k in range(n))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, len(data)]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    blob = struct.pack("<Q", len(text)) + text + bytes(data)
    path.write_bytes(blob)
    return len(blob)


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    d = tmp_path / "tiny"
    d.mkdir()
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": VOCAB,
        "max_position_embeddings": 128,
        "torch_dtype": "bfloat16",
    }
    (d / "config.json").write_text(json.dumps(config))
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    total = 0
    weight_map = {}
    for name, tensors in zip(names, (SHARD1, SHARD2)):
        write_safetensors(d / name, tensors)
        for t, dtype, shape in tensors:
            weight_map[t] = name
            n = dtype_size(dtype)
            for s in shape:
                n *= s
            total += n
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return d


def test_inspect_tiny_model(tiny_model: Path) -> None:
    facts = ck.inspect_model(tiny_model)
    assert isinstance(facts, ck.ModelFacts)
    assert facts.dir == str(tiny_model)
    assert facts.parameter_count == PARAMETERS
    assert facts.total_tensor_bytes == BF16_BYTES + F32_BYTES
    assert facts.bytes_per_dtype == {"BF16": BF16_BYTES, "F32": F32_BYTES}
    assert facts.parameters_per_dtype == {"BF16": PARAMETERS - HIDDEN, "F32": HIDDEN}
    assert facts.architectures == ["LlamaForCausalLM"]
    assert facts.model_type == "llama"
    assert (facts.hidden_size, facts.num_hidden_layers, facts.num_attention_heads) == (HIDDEN, 1, 2)
    assert facts.num_key_value_heads == 1
    assert facts.head_dim == HIDDEN // 2
    assert facts.torch_dtype == "bfloat16"
    assert facts.dtype_bytes() == 2
    # 2 (K and V) x 1 layer x 1 KV head x head_dim 4 x 2 bytes.
    assert facts.kv_bytes_per_token() == 2 * 1 * 1 * 4 * 2
    assert facts.kv_bytes_per_token(1) == 2 * 1 * 1 * 4 * 1
    assert not facts.tie_word_embeddings  # there is an lm_head
    assert not facts.weights_estimated and not facts.quantized
    assert facts.quantization_config is None
    assert facts.config["vocab_size"] == VOCAB
    assert facts.tensor_count == 4
    assert sorted(t.name for t in facts.tensors) == sorted(n for n, _, _ in SHARD1 + SHARD2)
    lm_head = next(t for t in facts.tensors if t.name == "lm_head.weight")
    assert (lm_head.dtype, lm_head.shape, lm_head.bytes) == ("BF16", [VOCAB, HIDDEN], VOCAB * HIDDEN * 2)
    assert facts.shards[lm_head.shard].file == "model-00002-of-00002.safetensors"
    assert [s.file for s in facts.shards] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    for s in facts.shards:
        assert s.file_size == s.expected_file_size == 8 + s.header_bytes + s.data_bytes
        assert s.file_size == os.path.getsize(tiny_model / s.file)
        assert s.tensor_count == 2
    j = facts.to_json()
    assert j["parameter_count"] == PARAMETERS and j["model_type"] == "llama"
    assert "tensors" not in j or not j["tensors"]
    assert len(facts.to_json(with_tensors=True)["tensors"]) == 4
    assert "parameters=272" in repr(facts)
    copy = assert_pickles(facts)  # tensors and shards too
    assert copy.to_json(with_tensors=True) == facts.to_json(with_tensors=True) and copy.config == facts.config


def test_inspect_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ck.Error) as e:
        ck.inspect_model(tmp_path / "nothing")
    assert e.value.code == "file_not_found" and isinstance(e.value, FileNotFoundError)
    assert "does not exist" in e.value.message


def test_inspect_malformed_header_raises(tiny_model: Path) -> None:
    shard = tiny_model / "model-00001-of-00002.safetensors"
    shard.write_bytes(struct.pack("<Q", 12) + b"{not json!!}")
    with pytest.raises(ck.Error) as e:
        ck.inspect_model(tiny_model)
    assert e.value.code == "parse_error"


def test_verify_complete_model(tiny_model: Path) -> None:
    report = ck.verify_model(tiny_model)
    assert report.ok and bool(report)
    assert report.problems == []
    assert report.shards_checked == 2
    assert report.tensors_checked == 4
    assert report.bytes_expected == sum(
        os.path.getsize(tiny_model / f) for f in os.listdir(tiny_model) if f.endswith(".safetensors")
    )
    assert report.manifest == "" and report.files_hashed == 0
    j = report.to_json()
    assert j["ok"] is True and j["problems"] == []


def test_verify_detects_truncated_shard(tiny_model: Path) -> None:
    shard = tiny_model / "model-00002-of-00002.safetensors"
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 10)
    report = ck.verify_model(tiny_model)
    assert not report.ok and not bool(report)
    truncated = [p for p in report.problems if p.kind == "truncated"]
    assert len(truncated) == 1, report.problems
    assert truncated[0].file == "model-00002-of-00002.safetensors"
    assert "10" in truncated[0].message
    assert report.to_json()["problems"][0]["kind"] == "truncated"
    assert not assert_pickles(report).ok


def test_verify_detects_missing_shard(tiny_model: Path) -> None:
    (tiny_model / "model-00001-of-00002.safetensors").unlink()
    report = ck.verify_model(tiny_model)
    assert not report.ok
    assert [(p.kind, p.file) for p in report.problems if p.kind == "shard_missing"] == [
        ("shard_missing", "model-00001-of-00002.safetensors")
    ]


def test_verify_checksums_from_manifest(tiny_model: Path) -> None:
    files = sorted(f for f in os.listdir(tiny_model) if f.endswith(".safetensors"))
    lines = [f"{hashlib.sha256((tiny_model / f).read_bytes()).hexdigest()}  {f}\n" for f in files]
    (tiny_model / "sha256sums").write_text("".join(lines))
    seen: list[ck.HashProgress] = []
    lock = threading.Lock()

    def progress(p: ck.HashProgress) -> None:  # hashing threads
        with lock:
            seen.append(p)

    report = ck.verify_model(tiny_model, on_progress=progress)
    assert report.ok, report.problems
    assert report.files_hashed == 2
    assert report.manifest.endswith("sha256sums")
    assert seen and seen[-1].files_done == seen[-1].files_total == 2
    # Same size, one byte changed: only the checksum can tell.
    shard = tiny_model / files[0]
    blob = bytearray(shard.read_bytes())
    blob[-1] ^= 0xFF
    shard.write_bytes(bytes(blob))
    report = ck.verify_model(tiny_model)
    assert [(p.kind, p.file) for p in report.problems] == [("checksum_mismatch", files[0])]
    structural: list[ck.HashProgress] = []
    skipped = ck.verify_model(tiny_model, skip_checksums=True, on_progress=structural.append)
    assert skipped.ok and skipped.files_hashed == 0
    # Nothing hashed: one call at the end all the same, with the shards checked.
    assert [(p.files_done, p.files_total) for p in structural] == [(2, 2)]
    assert structural[0].bytes_done == structural[0].bytes_total == skipped.bytes_expected


def test_verify_progress_exception_propagates(tiny_model: Path) -> None:
    files = sorted(f for f in os.listdir(tiny_model) if f.endswith(".safetensors"))
    lines = [f"{hashlib.sha256((tiny_model / f).read_bytes()).hexdigest()}  {f}\n" for f in files]
    (tiny_model / "sha256sums").write_text("".join(lines))

    def progress(p: ck.HashProgress) -> None:
        raise ValueError("stop hashing")

    with pytest.raises(ValueError, match="stop hashing"):
        ck.verify_model(tiny_model, on_progress=progress)


def test_sha256(tiny_model: Path, tmp_path: Path) -> None:
    config = tiny_model / "config.json"
    assert ck.sha256_file(config) == hashlib.sha256(config.read_bytes()).hexdigest()
    paths = [tiny_model / "model-00001-of-00002.safetensors", tmp_path / "absent", config]
    digests = ck.sha256_files(paths, threads=2)
    assert [d.path for d in digests] == [str(p) for p in paths]
    assert digests[0].sha256 == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert digests[0].bytes == os.path.getsize(paths[0]) and digests[0].error == ""
    assert digests[1].sha256 == "" and digests[1].error
    assert digests[2].sha256 == hashlib.sha256(config.read_bytes()).hexdigest()
    assert_pickles(digests)
    with pytest.raises(ck.Error) as e:
        ck.sha256_file(tmp_path / "absent")
    assert e.value.code == "file_not_found" and isinstance(e.value, FileNotFoundError)


def test_resolve_model(tiny_model: Path, tmp_path: Path) -> None:
    plain = ck.resolve_model(str(tiny_model))
    assert plain.dir == str(tiny_model) and plain.layout == "plain"
    assert plain.tried[-1].rejected_because == ""
    assert_pickles(plain)
    # ModelScope's cache names '.' as '___'.
    assert ck.modelscope_folder_name("Org/Tiny-0.5B") == "Org/Tiny-0___5B"
    assert ck.huggingface_cache_folder_name("Org/Tiny-0.5B") == "models--Org--Tiny-0.5B"
    root = tmp_path / "root"
    (root / "Org").mkdir(parents=True)
    os.rename(tiny_model, root / "Org" / "Tiny-0___5B")
    found = ck.resolve_model("Org/Tiny-0.5B", root)
    assert found.layout == "modelscope"
    assert found.dir == str(root / "Org" / "Tiny-0___5B")
    assert ck.inspect_model(found.dir).parameter_count == PARAMETERS
    with pytest.raises(ck.Error) as e:
        ck.resolve_model("Org/Absent-1B", root)
    assert e.value.code == "file_not_found" and isinstance(e.value, FileNotFoundError)
    assert "Absent" in str(e.value)


def test_parse_gpu_inventory() -> None:
    gpus = ck.parse_gpu_inventory("2 nodes x 2 L20 48GB")
    assert isinstance(gpus, ck.GpuInventory)
    assert gpus.total_gpus == 4 and gpus.max_gpus_per_node == 2
    assert [n.gpu_count for n in gpus.nodes] == [2, 2]
    assert all(n.gpu_model == "L20" for n in gpus.nodes)
    # What nvidia-smi reports for an L20 48GB.
    assert gpus.min_memory_bytes == 46068 * 1024 * 1024
    assert assert_pickles(gpus).total_gpus == 4
    assert ck.known_gpu_memory_bytes("L20", 48) == 46068 * 1024 * 1024
    assert ck.known_gpu_memory_bytes("NoSuchCard", 12) is None
    assert "2 nodes" in gpus.describe()
    assert gpus.to_json()["nodes"][0]["gpu_count"] == 2
    assert ck.parse_gpu_inventory("8x A10 24GB").total_gpus == 8
    with pytest.raises(ck.Error) as e:
        ck.parse_gpu_inventory("a few big ones")
    assert e.value.code == "invalid_argument"


def qwen72() -> ck.ModelFacts:
    facts = ck.model_facts_from_config(QWEN72_CONFIG)
    assert facts.parameter_count == 0 and facts.tensor_count == 0
    same = ck.estimate_tensors_from_config(facts)
    assert same is facts  # filled in place
    return facts


def test_model_facts_from_config_and_estimate() -> None:
    facts = qwen72()
    assert facts.weights_estimated
    assert facts.parameter_count == QWEN72_PARAMETERS
    assert facts.total_tensor_bytes == QWEN72_BYTES
    assert facts.num_hidden_layers == 80 and facts.num_key_value_heads == 8 and facts.head_dim == 128
    # 2 x 80 layers x 8 KV heads x 128 x 2 bytes.
    assert facts.kv_bytes_per_token() == 2 * 80 * 8 * 128 * 2
    # JSON text works as well as a dict.
    assert ck.model_facts_from_config(json.dumps(QWEN72_CONFIG)).hidden_size == 8192
    with pytest.raises(ck.Error) as e:
        ck.model_facts_from_config({"hidden_size": "big"})
    assert e.value.code == "parse_error"
    with pytest.raises(TypeError):
        ck.model_facts_from_config({"x": object()})


def test_plan_qwen72_on_two_nodes_of_two_l20() -> None:
    plan = ck.plan_deployment(qwen72(), "2 nodes x 2 L20 48GB")
    assert isinstance(plan, ck.Plan)
    rec = plan.recommended
    assert rec is not None
    assert (rec.tp, rec.pp) == (2, 2)
    assert rec.fits and rec.recommended and rec.uses_all_gpus and rec.reason == ""
    assert rec.nodes == 2 and not rec.pp_within_node
    assert plan.layouts[0].tp == 2 and plan.layouts[0].pp == 2
    assert rec.vllm_args == [
        "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2",
        "--max-model-len", "32768", "--gpu-memory-utilization", "0.9",
    ]  # fmt: skip
    assert plan.shortfall is None
    assert plan.max_model_len == 32768
    assert plan.parameter_count == QWEN72_PARAMETERS
    assert plan.total_weight_bytes == QWEN72_BYTES
    assert plan.gpus.total_gpus == 4
    # 40 layers per stage, 4 KV heads per rank: 2 x 40 x 4 x 128 x 2 bytes.
    assert rec.kv_bytes_per_token_per_gpu == 81920
    assert len(rec.stages) == 2
    assert [(s.first_layer, s.end_layer) for s in rec.stages] == [(0, 40), (40, 80)]
    assert rec.kv_cache_tokens >= plan.max_model_len
    assert rec.kv_cache_tokens == min(s.kv_cache_tokens for s in rec.stages)
    assert rec.kv_cache_tokens % 16 == 0
    assert rec.weight_bytes_per_gpu == max(s.weight_bytes for s in rec.stages)
    assert 0 < rec.weight_bytes_per_gpu < rec.gpu_memory_bytes
    # Every other layout says why it was not picked.
    assert all(l.reason for l in plan.layouts[1:])
    assert any(l.tp == 4 for l in plan.rejected) or all(l.tp <= 2 for l in plan.layouts)
    j = plan.to_json()
    assert j["layouts"][0]["tp"] == 2 and j["layouts"][0]["pp"] == 2
    assert "2" in plan.summary() and "recommend" in plan.summary().lower()
    assert "tp=2 pp=2" in repr(plan)
    assert assert_pickles(plan).recommended.vllm_args == rec.vllm_args  # for a planning worker process


def test_plan_options_and_gpu_inventory_object() -> None:
    facts = qwen72()
    gpus = ck.parse_gpu_inventory("2 nodes x 2 L20 48GB")
    short = ck.plan_deployment(facts, gpus, max_model_len=4096, kv_cache_dtype="fp8")
    assert short.max_model_len == 4096 and short.kv_cache_dtype == "fp8" and short.kv_dtype_bytes == 1
    assert short.recommended is not None
    assert "--kv-cache-dtype" in short.recommended.vllm_args
    # Half of the KV bytes per token: more tokens than with the model's dtype.
    full = ck.plan_deployment(facts, gpus, max_model_len=4096)
    assert short.recommended.kv_cache_tokens > full.recommended.kv_cache_tokens
    with pytest.raises(ck.Error):
        ck.plan_deployment(facts, gpus, kv_cache_dtype="int3")
    # A bad argument is a ValueError that names the Python argument first.
    with pytest.raises(ValueError, match=r"^gpu_memory_utilization \(--gpu-memory-utilization\) must be in \(0, 1\]"):
        ck.plan_deployment(facts, gpus, gpu_memory_utilization=2)
    with pytest.raises(TypeError):
        ck.plan_deployment(facts, 4)  # type: ignore[arg-type]
    assert ck.pipeline_partition(80, 3) == [27, 27, 26]
    assert ck.tensor_parallel_refusal(facts, 2) == ""
    assert "head" in ck.tensor_parallel_refusal(facts, 3).lower()


def test_plan_when_nothing_fits() -> None:
    plan = ck.plan_deployment(qwen72(), "1 node x 2 A10 24GB")
    assert plan.recommended is None
    assert not any(l.fits for l in plan.layouts)
    s = plan.shortfall
    assert isinstance(s, ck.Shortfall)
    assert s.missing_bytes_per_gpu > 0
    assert s.suggestions
    assert plan.to_json()["shortfall"] is not None
    assert "nothing fits" in repr(plan)
    assert assert_pickles(plan).shortfall.suggestions == s.suggestions


def test_plan_tiny_model_fits_one_gpu(tiny_model: Path) -> None:
    plan = ck.plan_deployment(ck.inspect_model(tiny_model), "1x L20 48GB")
    rec = plan.recommended
    assert rec is not None and (rec.tp, rec.pp) == (1, 1) and rec.fits
    assert plan.parameter_count == PARAMETERS


def test_known_model_configs_plan_the_seed_offline() -> None:
    assert "Qwen/Qwen2.5-72B-Instruct" in ck.known_model_ids()
    config = ck.known_model_config("qwen2.5-72b-instruct")
    assert config is not None and config["num_hidden_layers"] == 80 and config["intermediate_size"] == 29568
    assert ck.known_model_config("Qwen2___5-72B-Instruct") == config  # ModelScope's folder name
    assert ck.known_model_config("nobody/nothing") is None
    facts = ck.estimate_tensors_from_config(ck.model_facts_from_config(config))
    plan = ck.plan_deployment(facts, ck.parse_gpu_inventory("2 nodes x 2 L20 48GB"))
    assert (plan.recommended.tp, plan.recommended.pp) == (2, 2)  # the seed's layout


def test_plan_on_the_gpus_an_inventory_declares() -> None:
    # The seed's inventory declares 2 x L20 on gpu1 and gpu2 (cpu1 none):
    # planned as 2 nodes x 2 L20, memory from the one table preflight uses.
    seed = ck.Inventory.load(str(Path(__file__).resolve().parents[2] / "examples" / "inventories" / "seed-cluster.yaml"))
    gpus = ck.declared_gpu_inventory(seed)
    assert [(n.name, n.gpu_count, n.gpu_model) for n in gpus.nodes] == [("gpu1", 2, "L20"), ("gpu2", 2, "L20")]
    assert gpus.nodes[0].memory_bytes == ck.known_gpu_memory_bytes("L20", 48)
    assert gpus.nodes[0].memory_source == "declared in the inventory"
    config = ck.known_model_config("Qwen/Qwen2.5-72B-Instruct")
    assert config is not None
    plan = ck.plan_deployment(ck.model_facts_from_config(config), seed)  # the Inventory itself
    assert (plan.recommended.tp, plan.recommended.pp) == (2, 2)
    # An inventory that declares none: said, with what to add.
    bare = ck.Inventory.parse("hosts:\n  a: {local: true}\n")
    assert ck.declared_gpu_inventory(bare).nodes == []
    with pytest.raises(ValueError, match="declares GPUs"):
        ck.plan_deployment(ck.model_facts_from_config(config), bare)


def test_plan_deployment_estimates_the_tensors_of_facts_from_a_config_alone() -> None:
    # Issue 14: it failed ("no tensors") until estimate_tensors_from_config was called, which nothing said.
    config = ck.known_model_config("Qwen/Qwen2.5-72B-Instruct")
    assert config is not None
    facts = ck.model_facts_from_config(config)
    plan = ck.plan_deployment(facts, ck.parse_gpu_inventory("2 nodes x 2 L20 48GB"))
    assert (plan.recommended.tp, plan.recommended.pp) == (2, 2)
    assert any("estimated from config.json" in n for n in plan.notes)


def test_write_sha256_manifest_from_python_then_verify_checks_it(tmp_path: Path) -> None:
    # Issue 14: there was no Python way to write the manifest.
    import hashlib

    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"hello")
    (model / "sub").mkdir()
    (model / "sub" / "b.txt").write_text("world")
    (model / ".cache").mkdir()  # hub bookkeeping: never listed
    (model / ".cache" / "x").write_text("skip")
    seen: list[object] = []
    entries = ck.write_sha256_manifest(model, on_progress=seen.append)
    assert entries == [("a.bin", hashlib.sha256(b"hello").hexdigest()), ("sub/b.txt", hashlib.sha256(b"world").hexdigest())]
    text = (model / "sha256sums").read_text()
    assert f"{hashlib.sha256(b'hello').hexdigest()}  a.bin" in text and ".cache" not in text
    assert seen  # progress was reported
    with pytest.raises(ck.Error) as e:
        ck.write_sha256_manifest(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(e.value)
