"""Every result and value type pickles (multiprocessing pools and Ray tasks
send them between processes). The round trips themselves are checked on
real results where each test makes them (assert_pickles in pickles.py);
this module checks that none of the library's types was left out, and the
forms a pickle must refuse."""

from __future__ import annotations

import concurrent.futures
import copyreg
import inspect
import multiprocessing

import pytest
from pickles import assert_pickles

import clusterkit as ck

# Live objects: a handle on hosts, a connection pool, a running operation, a
# parser's state. They are not results, and are not pickled.
NOT_VALUES = {
    "ChatStream", "Deployment", "DownloadProgressParser", "ModelStore", "NasMount", "Operation", "RayCluster",
    "RayHost", "VllmServe",
}  # fmt: skip


def picklable(cls: type) -> bool:
    return cls in copyreg.dispatch_table or "__setstate__" in cls.__dict__ or "__reduce__" in cls.__dict__


def library_classes() -> list[type]:
    return [
        c
        for name, c in vars(ck._core).items()
        if inspect.isclass(c) and not issubclass(c, BaseException) and not name.startswith("_")
        and not hasattr(c, "__members__")  # enums pickle by value already
    ]  # fmt: skip


def test_every_value_type_pickles() -> None:
    values = [c for c in library_classes() if c.__name__ not in NOT_VALUES]
    assert len(values) > 100  # the whole library, not a corner of it
    missing = sorted(c.__name__ for c in values if not picklable(c))
    assert missing == [], f"values that cannot travel to another process: {missing}"
    # What is not a value is a live object, and there are few of them.
    assert {c.__name__ for c in library_classes()} >= NOT_VALUES


def test_values_inside_results_pickle_too() -> None:
    # Types reached through a result's fields, without a to_json of their own.
    for name in ("RayResource", "VerifyProblem", "ModelTensor", "ShardInfo", "LayoutStage", "NcclBandwidth",
                 "CheckResult", "FactIssue", "StepRecord", "StepHostRecord", "MountEntry", "Distribution"):
        assert picklable(getattr(ck, name)), name


def test_a_state_of_another_shape_is_refused() -> None:
    entry = ck.parse_mountinfo("22 1 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n")[0]
    assert assert_pickles(entry).mount_point == "/"
    blank = ck.MountEntry.__new__(ck.MountEntry)  # what pickle.loads does first
    with pytest.raises(ValueError, match="not a pickled clusterkit result"):
        blank.__setstate__(("too", "few"))
    with pytest.raises(ValueError, match="wrong number of fields"):
        blank.__setstate__((("too", "few"),))


def _plan_in_another_process(gpus: str) -> ck.Plan:
    facts = ck.model_facts_from_config(QWEN72_CONFIG)
    ck.estimate_tensors_from_config(facts)
    return ck.plan_deployment(facts, gpus)


QWEN72_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8192, "intermediate_size": 29568,
    "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 152064,
    "max_position_embeddings": 32768, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
}  # fmt: skip


def test_a_result_made_in_a_process_pool() -> None:
    # What a user's pool does: the work in a fresh interpreter, the result
    # sent back pickled.
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        plan = pool.submit(_plan_in_another_process, "2 nodes x 2 L20 48GB").result(timeout=120)
    here = _plan_in_another_process("2 nodes x 2 L20 48GB")
    assert isinstance(plan, ck.Plan) and plan.recommended is not None
    assert (plan.recommended.tp, plan.recommended.pp) == (2, 2)
    assert plan.to_json() == here.to_json()


def test_a_nested_value_class_pickles_too() -> None:
    # ModelSnapshot.Shard: a class inside a class, bytes that are not UTF-8.
    shard = ck.ModelSnapshot.Shard("model.safetensors", exists=True, size=10, head=b"\xff\x00x", error="")
    copy = assert_pickles(shard)
    assert copy.head == b"\xff\x00x"
    assert picklable(ck.ModelSnapshot.Shard)
