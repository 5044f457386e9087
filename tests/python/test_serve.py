"""RayCluster and VllmServe from Python (register_serve.cpp).

Two parts:
  * the pure helpers on the real captures in tests/fixtures/ray/ and
    tests/fixtures/vllm-cpu/ (see their README.md files): no hosts;
  * a real Ray 2.60.0 cluster (the venv /opt/ck-serve of
    scripts/install-serving.sh) on a lab ("tpsv", 10.88.90.0/24) of 2 hosts
    with their own Docker engines and 2 SIMULATED GPUs each (logical GPUs
    for Ray, no devices), brought up once for the module: the bare runtime,
    then the docker runtime. A missing component fails the test with the
    install line; it is never skipped. No vLLM engine is started here.
"""

from __future__ import annotations

import _thread
import asyncio
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from labs import running_lab

from pickles import assert_pickles

import clusterkit as ck

RAY = Path(__file__).resolve().parents[1] / "fixtures" / "ray"
VLLM = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-cpu"

LAB = "tpsv"
SUBNET = "10.88.90"
VENV = "/opt/ck-serve"
IMAGE = "clusterkit/lab-runtime:bookworm"
OBJECT_STORE = 256 << 20  # as in the captures; Ray's default is 30% of memory per node

# The tiny Qwen2 of tests/fixtures/make_tiny_qwen2.py (the model of the vLLM CPU captures).
TINY_QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "vocab_size": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def text(path: Path) -> str:
    return path.read_text(errors="surrogateescape")


# --- pure: what Ray reports -------------------------------------------------


def test_parse_ray_status_idle_cluster() -> None:
    st = ck.parse_ray_status(text(RAY / "ray-status.txt"))
    assert isinstance(st, ck.RayStatusText)
    assert st.active == [
        "c02bf94a50d65c64322f28681be4e95af7acaa78f919562076059ef4",
        "11dfc12f314b0f4896cd2078c2ad909f547c698cc33683aebd2c2e90",
    ]
    assert st.pending == [] and st.failed == [] and st.pending_demands == []
    assert (st.usage["GPU"].used, st.usage["GPU"].total) == (0.0, 4.0)
    assert (st.usage["CPU"].used, st.usage["CPU"].total) == (0.0, 4.0)
    assert st.usage["object_store_memory"].total == 512 * 2**20
    assert st.usage["memory"].total == pytest.approx(40.13 * 2**30)
    assert ck.parse_ray_amount("40.13GiB") == st.usage["memory"].total
    assert ck.parse_ray_amount("0B") == 0 and ck.parse_ray_amount("GPU") is None
    assert "GPU=0.0/4.0" in repr(st)
    assert_pickles(st)


def test_parse_ray_status_with_vllm_and_after_a_worker_host_was_lost() -> None:
    busy = ck.parse_ray_status(text(RAY / "ray-status-with-vllm.txt"))
    assert len(busy.active) == 2
    assert (busy.usage["GPU"].used, busy.usage["GPU"].total) == (4.0, 4.0)
    assert busy.usage_notes["GPU"] == "(4.0 used of 4.0 reserved in placement groups)"
    lost = ck.parse_ray_status(text(VLLM / "ray-tp2pp2-worker-host-lost.ray-status.txt"))
    assert len(lost.active) == 1
    assert lost.usage["GPU"].total == 2.0
    assert lost.pending_demands[0] == "{'GPU': 1.0} * 4 (PACK): 1+ pending placement groups"
    # The dashboard's /api/cluster_status?format=1 carries the same text.
    api = text(RAY / "ray-dashboard-api.txt")
    answer = json.loads(api.split("== /api/cluster_status?format=1\n")[1].splitlines()[0])
    same = ck.parse_ray_status(answer["data"]["clusterStatus"])
    assert len(same.active) == 2 and same.usage["GPU"].total == 4.0
    with pytest.raises(ck.Error) as e:
        ck.parse_ray_status("hello")
    assert e.value.code == "parse_error"


def test_parse_ray_node_usage_from_the_dashboard() -> None:
    capture = text(RAY / "dashboard-node-usage.txt")
    usage = ck.parse_ray_node_usage(capture.split("\n")[1])
    worker = usage["e52e6cfd515b15f53c64157ae748bc261a277f10bdcc252ebcbee876"]
    assert (worker["GPU"].used, worker["GPU"].total, worker["CPU"].used) == (1.0, 2.0, 1.0)
    assert worker["memory"].total == pytest.approx(15.58 * 2**30)
    with pytest.raises(ck.Error) as e:
        ck.parse_ray_node_usage("[]")
    assert e.value.code == "parse_error"


def test_parse_ray_nodes_json_from_the_dashboard() -> None:
    api = text(RAY / "ray-dashboard-api.txt")
    for path in ("/api/v0/nodes", "/api/v0/nodes?detail=1"):
        answer = api.split(f"== {path}\n")[1].splitlines()[0]
        nodes = ck.parse_ray_nodes_json(answer)
        assert [(n.node_ip, n.is_head, n.state, n.alive) for n in nodes] == [
            ("10.77.0.11", True, "ALIVE", True),
            ("10.77.0.12", False, "ALIVE", True),
        ]
        assert nodes[0].resources_total["GPU"] == 2.0
        assert nodes[1].node_id == "c02bf94a50d65c64322f28681be4e95af7acaa78f919562076059ef4"
        assert_pickles(nodes)
    with pytest.raises(ck.Error) as e:
        ck.parse_ray_nodes_json("not json")
    assert e.value.code == "parse_error"


def test_plan_and_evaluate_a_two_node_cluster() -> None:
    spec = ck.RayClusterSpec(name="tpx", runtime="bare", ray_command="/opt/venv/bin/ray", env={"HF_TOKEN": "secret"})
    head = ck.plan_ray_node(spec, "h1", True, "10.77.0.11", "eth0", 2, False, "10.77.0.11", gpus_simulated=True)
    worker = ck.plan_ray_node(spec, "h2", False, "10.77.0.12", "eth0", 2, False, "10.77.0.11", gpus_simulated=True)
    assert head.env["VLLM_HOST_IP"] == "10.77.0.11" and head.env["GLOO_SOCKET_IFNAME"] == "eth0"
    assert head.env["HF_TOKEN"] == "secret"
    assert head.ray_start_argv[:3] == ["/opt/venv/bin/ray", "start", "--head"]
    assert {"--num-gpus=2", "--node-ip-address=10.77.0.11", "--temp-dir=/tmp/ck-ray-tpx"} <= set(head.ray_start_argv)
    assert {"--address=10.77.0.11:6379", "--node-ip-address=10.77.0.12"} <= set(worker.ray_start_argv)
    assert head.docker_run_argv == [] and head.bare_start_script
    assert head.fingerprint != worker.fingerprint
    assert head.fingerprint == ck.plan_ray_node(spec, "h1", True, "10.77.0.11", "eth0", 2, False, "10.77.0.11", True).fingerprint
    # The dashboard's answer judged against the plans: both alive, 4 (SIMULATED) GPUs.
    api = text(RAY / "ray-dashboard-api.txt")
    nodes_json = api.split("== /api/v0/nodes\n")[1].splitlines()[0]
    output = (
        "@@ck-ray-version 2.60.0\n@@ck-ray-nodes " + nodes_json + "\n@@ck-ray-status-begin\n"
        + text(RAY / "ray-status.txt") + "@@ck-ray-status-end\n"
    )
    report = ck.parse_ray_report(output)
    assert isinstance(report, ck.RayReport) and report.error == ""
    assert (report.source, report.ray_version, len(report.nodes)) == ("dashboard", "2.60.0", 2)
    assert report.status is not None and report.status.usage["GPU"].total == 4.0
    st = ck.evaluate_ray_cluster(spec, [head, worker], report, ["running", "running"])
    assert (st.alive_nodes, st.expected_nodes, st.gpus_total, st.expected_gpus) == (2, 2, 4.0, 4.0)
    assert st.healthy and st.gpus_simulated
    assert isinstance(st.to_json(), dict) and st.to_json()["healthy"] is True
    assert "SIMULATED" in st.summary()
    assert_pickles(report)
    assert assert_pickles(st).healthy
    assert_pickles([head, worker])
    # The secret's value never shows in the spec's repr.
    assert "secret" not in repr(spec) and "HF_TOKEN" in repr(spec)


def test_explain_ray_failure_and_refusals() -> None:
    spec = ck.RayClusterSpec(name="tpx", runtime="bare", ray_command="/nowhere/bin/ray")
    said = ck.explain_ray_failure("h2", text(RAY / "ray-start-worker.log") + "\nVersion mismatch: The cluster was started with", spec)
    assert said.startswith("h2: ") and "version mismatch" in said
    docker = ck.explain_ray_failure(
        "h1", 'docker: Error response from daemon: could not select device driver "" with capabilities: [[gpu]].', spec
    )
    assert "NVIDIA container toolkit" in docker
    probe = ck.RayNodeProbe()
    probe.host, probe.node_ip, probe.interface = "h1", "10.77.0.11", "eth0"
    probe.ray_found, probe.ray_error = False, "/nowhere/bin/ray not found"
    plan = ck.plan_ray_node(spec, "h1", True, "10.77.0.11", "eth0", 2, False, "10.77.0.11")
    [decision] = ck.decide_ray_nodes(spec, [plan], [probe])
    assert decision.action == "refuse"
    assert isinstance(decision.refusal, ck.Error) and decision.refusal.code == "program_missing"
    assert "pip install 'ray[default]'" in decision.reason
    assert assert_pickles(decision).refusal.code == "program_missing"


def test_specs_from_inventory_vars() -> None:
    spec = ck.ray_spec_from_vars({"runtime_image": IMAGE, "serve_venv": VENV, "runtime": "bare"})
    assert spec.runtime == ck.RayRuntimeKind.bare and spec.image == IMAGE
    assert spec.ray_command == f"{VENV}/bin/ray"
    assert spec.volumes == [ck.VolumeMount(VENV, VENV, read_only=True)]
    base = ck.RayClusterSpec(name="tpx", port=6380, join_timeout=30.5)
    assert base.join_timeout == 31.0  # whole seconds, rounded up
    over = ck.ray_spec_from_vars({"shm_size": "1g"}, base)
    assert (over.name, over.port, over.shm_size) == ("tpx", 6380, "1g")
    with pytest.raises(ck.Error) as e:
        ck.ray_spec_from_vars({"runtime": "podman"})
    assert e.value.code == "inventory_invalid" and "runtime" in str(e.value)
    with pytest.raises(ck.Error) as e:
        ck.validate_ray_cluster_spec(ck.RayClusterSpec(name="Not Valid!"))
    assert e.value.code == "invalid_argument"
    with pytest.raises(ValueError):
        ck.RayClusterSpec(runtime="podman")  # type: ignore[arg-type]
    assert ck.VolumeMount.parse("/mnt/Qwen:/models") == ck.VolumeMount("/mnt/Qwen", "/models")
    assert ck.ray_container_name("tpx") == "ck-ray-tpx"
    assert ck.ray_temp_dir(ck.RayClusterSpec(name="tpx")) == "/tmp/ck-ray-tpx"


# --- pure: vLLM's log, argv and diagnosis -----------------------------------


def test_read_vllm_log_single_cold() -> None:
    log = text(VLLM / "single-cold.log")
    progress = ck.read_vllm_log(log)
    assert isinstance(progress, ck.VllmLogProgress)
    assert progress.kv_cache_tokens == 524_288
    assert progress.version == "0.32.0"
    assert progress.startup_complete and progress.api_started and progress.phase == "ready"
    assert progress.phases == ["starting", "loading", "compiling", "kv-cache", "api", "ready"]
    assert progress.init_engine_seconds == pytest.approx(36.63)
    assert progress.max_concurrency == pytest.approx(1024.0)
    # Fed in pieces, as wait_ready reads it: the same answer, in the same object.
    pieces = ck.VllmLogProgress()
    phases = []
    for i in range(0, len(log), 4096):
        same = ck.read_vllm_log(log[i : i + 4096], pieces)
        assert same is pieces
        phases.append(pieces.phase)
    assert pieces.kv_cache_tokens == 524_288 and pieces.startup_complete
    assert phases[0] != "ready" and phases[-1] == "ready"
    tp2pp2 = ck.read_vllm_log(text(VLLM / "vllm-ray-tp2pp2.clean.log"))
    assert tp2pp2.kv_cache_tokens == 2_097_152
    waiting = ck.read_vllm_log(text(VLLM / "ray-pg-unsatisfiable.log"))
    assert waiting.waiting_for_placement_group and not waiting.startup_complete


def test_diagnose_vllm_log_on_the_captures() -> None:
    def cause(name: str, **context: object) -> ck.VllmDiagnosis:
        ctx = ck.VllmDiagnosisContext(**context) if context else None  # type: ignore[arg-type]
        d = ck.diagnose_vllm_log(text(VLLM / name), ctx)
        assert isinstance(d, ck.VllmDiagnosis) and d.message and d.evidence
        assert_pickles(d)
        return d

    for name in ("fail-model-path-missing.log", "fail-model-path-missing-hf-offline.log"):
        missing = cause(name, model="/models/Qwen2___5-72B-Instruct")
        assert missing.cause == "model-missing", (name, missing)
        assert "same path on every node" in missing.message
    port = cause("fail-port-in-use.log", port=8000)
    assert port.cause == "port-in-use" and "port 8000" in port.message
    assert "Address already in use" in port.evidence
    kv = cause("fail-kv-cache-too-small.log")
    assert kv.cause == "kv-cache" and "--max-model-len" in kv.message
    assert "estimated maximum model length is 384" in kv.evidence
    pg = cause("ray-pg-unsatisfiable.log", cluster_gpus=2.0, tensor_parallel=2, pipeline_parallel=2)
    assert pg.cause == "placement-group" and "4 GPUs" in pg.message and "sees 2" in pg.message
    shm = cause("vllm-ray-tp2pp2-privshm.FAILED.log")
    assert shm.cause == "shm" and "/dev/shm" in shm.message
    assert ck.diagnose_vllm_log("").cause == "unknown"


def test_predict_cpu_kv_cache_tokens_matches_the_logged_numbers() -> None:
    facts = ck.model_facts_from_config(TINY_QWEN2)
    one_gib = 1 << 30
    # The three layouts of the captures, each exact (fixtures/vllm-cpu/README.md).
    assert ck.predict_cpu_kv_cache_tokens(facts, 1, 1, one_gib) == 524_288
    assert ck.predict_cpu_kv_cache_tokens(facts, 2, 2, one_gib) == 2_097_152
    assert ck.predict_cpu_kv_cache_tokens(facts, 1, 2, one_gib) == 1_048_576


def test_vllm_serve_spec_argv_and_state() -> None:
    spec = ck.VllmServeSpec(
        "/models/Tiny2___5-4M-Instruct",
        name="tpv",
        tensor_parallel=2,
        pipeline_parallel=2,
        max_model_len=512,
        dtype="bfloat16",
        api_key="ck-very-secret",
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        ready_timeout=600,
    )
    assert ck.vllm_served_name(spec) == "Tiny2___5-4M-Instruct"
    argv = ck.vllm_serve_argv(spec)
    assert argv[:3] == ["vllm", "serve", "/models/Tiny2___5-4M-Instruct"]
    joined = " ".join(argv)
    for flag in ("--tensor-parallel-size", "--pipeline-parallel-size", "--max-model-len", "--distributed-executor-backend"):
        assert flag in joined
    assert "ray" in argv and "ck-very-secret" not in joined
    assert "ck-very-secret" not in repr(spec) and "api_key='***'" in repr(spec)
    assert spec.ready_timeout == 600.0 and spec.backend == ck.ExecutorBackend.ray
    spec.backend = "multinode"
    rank1 = ck.vllm_serve_argv(spec, 1, 2, "10.88.90.11")
    assert "--headless" in rank1 and "--node-rank" in rank1 and "10.88.90.11" in rank1
    assert ck.vllm_state_dir(spec) == "/tmp/ck-vllm-tpv"
    assert ck.vllm_api_key_path(spec).endswith("tpv.key")
    key = ck.generate_api_key()
    assert key.startswith("ck-") and len(key) == 51
    state, problems = ck.judge_vllm_state(True, 200, True)
    assert (state, problems) == ("up", [])
    assert ck.judge_vllm_state(False, 0, False)[0] == "down"
    with pytest.raises(ck.Error) as e:
        ck.validate_vllm_serve_spec(ck.VllmServeSpec())
    assert e.value.code == "invalid_argument" and "model" in str(e.value)
    # from_layout: the planner's layout, as `clusterkit plan` prints it.
    facts = ck.estimate_tensors_from_config(ck.model_facts_from_config(TINY_QWEN2))
    plan = ck.plan_deployment(facts, "2 nodes x 2 L20 48GB", max_model_len=512)
    layout = plan.recommended
    assert layout is not None
    from_plan = ck.VllmServeSpec.from_layout(layout, "/models/Tiny2___5-4M-Instruct", "tiny")
    assert (from_plan.tensor_parallel, from_plan.pipeline_parallel) == (layout.tp, layout.pp)
    assert from_plan.max_model_len == 512 and from_plan.served_model_name == "tiny"


# --- a real Ray cluster on the lab ------------------------------------------


def _missing() -> str:
    path = "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bin"
    missing = [p for p in ("docker", "dockerd", "containerd", "debootstrap") if shutil.which(p, path=path) is None]
    if not os.access(f"{VENV}/bin/ray", os.X_OK) or not glob.glob(f"{VENV}/lib/python3*/site-packages/ray-2.60.0.dist-info"):
        missing.append(f"Ray 2.60.0 in {VENV}")
    if not missing:
        return ""
    return ", ".join(missing) + " not installed: run scripts/install-serving.sh (as root)"


@pytest.fixture(scope="module")
def lab() -> Iterator[ck.LabStatus]:
    # A missing component is a failure, not a skip: the test would prove nothing.
    missing = _missing()
    if missing:
        pytest.fail(missing)
    with running_lab(LAB, SUBNET, hosts=2, docker=True, gpus=2) as status:
        yield status


@pytest.fixture(scope="module")
def inventory(lab: ck.LabStatus) -> ck.Inventory:
    return lab.inventory()


def cluster(inventory: ck.Inventory, name: str, runtime: Literal["docker", "bare"]) -> ck.RayCluster:
    return ck.RayCluster.from_inventory(
        inventory, spec=ck.RayClusterSpec(name=name, runtime=runtime, object_store_memory=OBJECT_STORE)
    )


def ray_processes(host: ck.Host) -> list[str]:
    """The host's processes that are Ray's (or Python's: nothing else runs Python in a lab host)."""
    r = host.run(["ps", "-eo", "comm="], timeout=30)
    assert r.ok, r.stderr
    words = ("ray", "gcs_server", "python", "dashboard", "plasma")
    return [c for c in r.stdout.split() if any(w in c for w in words)]


def containers(host: ck.Host) -> list[str]:
    r = host.run(["docker", "ps", "-a", "--format", "{{.Names}} {{.Status}}"], timeout=60)
    assert r.ok, r.stderr
    return r.stdout.splitlines()




def assert_nothing_removed(outcomes: list[ck.RayDownOutcome], context: str = "") -> None:
    assert all(d.ok and d.removed == "nothing" for d in outcomes), (outcomes, context)


def assert_up(result: ck.RayUpResult, action: str) -> None:
    assert isinstance(result, ck.RayUpResult)
    assert [n.host for n in result.nodes] == ["h1", "h2"]
    assert all(n.ok and n.action == action for n in result.nodes), [(n.action, n.message) for n in result.nodes]
    st = result.status
    assert (st.alive_nodes, st.expected_nodes, st.gpus_total, st.expected_gpus) == (2, 2, 4.0, 4.0)
    assert st.healthy and st.gpus_simulated
    assert "2 nodes, 4 GPUs (SIMULATED)" in result.message


def test_from_inventory_reads_roles_gpus_and_vars(inventory: ck.Inventory) -> None:
    c = ck.RayCluster.from_inventory(inventory)
    assert isinstance(c, ck.RayCluster)
    assert [(h.name, h.head, h.gpus, h.gpus_simulated) for h in c.hosts] == [("h1", True, 2, True), ("h2", False, 2, True)]
    assert c.head.name == "h1"
    spec = c.spec
    assert spec.runtime == ck.RayRuntimeKind.docker and spec.image == IMAGE
    assert spec.ray_command == f"{VENV}/bin/ray"
    assert spec.volumes == [ck.VolumeMount(VENV, VENV, read_only=True)]
    # The hosts are the inventory's own (one connection per host).
    assert c.hosts[0].host is not None and c.hosts[0].host.control_path == inventory.host("h1").control_path
    assert repr(c) == "RayCluster('ck', runtime='docker', head='h1', workers=['h2'])"
    other = ck.RayCluster.from_inventory(inventory, head="h2", spec=ck.RayClusterSpec(name="tpx", runtime="bare"))
    assert [h.name for h in other.hosts] == ["h2", "h1"] and other.spec.runtime == ck.RayRuntimeKind.bare
    with pytest.raises(ck.Error) as e:
        ck.RayCluster.from_inventory(inventory, head="h9")
    assert e.value.code == "invalid_argument"
    # Built by hand: the same.
    by_hand = ck.RayCluster(
        spec, [ck.RayHost(inventory.host("h1"), head=True, gpus=2), ck.RayHost(inventory.host("h2"), gpus=2)]
    )
    assert [h.name for h in by_hand.hosts] == ["h1", "h2"]
    command = by_hand.runtime_command("ray --version")
    assert command["argv"] is not None and command["argv"][:2] == ["docker", "exec"]


def test_bare_cluster_up_again_status_logs_down(inventory: ck.Inventory, tmp_path: Path) -> None:
    c = cluster(inventory, "tpb", "bare")
    h1, h2 = inventory.host("h1"), inventory.host("h2")
    progress: list[ck.RayProgress] = []
    ticks = 0
    stop = threading.Event()

    def tick() -> None:  # runs while up() blocks: the GIL is released
        nonlocal ticks
        while not stop.wait(0.01):
            ticks += 1

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        t0 = time.monotonic()
        up = c.up(on_progress=progress.append)
        took = time.monotonic() - t0
    finally:
        stop.set()
        ticker.join()
    try:
        assert_up(up, "start")
        assert ticks > took * 20, (ticks, took)
        phases = [p.phase for p in progress]
        assert phases[0] == "probe" and phases[-1] == "ready"
        assert {"start-head", "start-workers", "wait"} <= set(phases)
        assert all(isinstance(p, ck.RayProgress) and p.expected_nodes == 2 for p in progress)
        assert progress[-1].gpus == 4.0 and progress[-1].alive_nodes == 2
        assert [h.node_ip for h in up.status.hosts] == [f"{SUBNET}.11", f"{SUBNET}.12"]
        assert up.nodes[1].joined_ms >= up.nodes[1].started_ms > up.nodes[0].started_ms > 0
        assert ray_processes(h1) and ray_processes(h2)
        assert_pickles(up)  # plans, outcomes and the status, whole
        assert_pickles(progress[-1])

        # The same cluster again: everything kept, nothing restarted.
        again = c.up()
        assert_up(again, "keep")
        assert "already running" in again.message

        st = c.status()
        assert isinstance(st, ck.RayClusterStatus)
        assert st.healthy and not st.degraded and st.problems == []
        assert (st.alive_nodes, st.gpus_total, st.ray_version) == (2, 4.0, "2.60.0")
        assert [(h.host, h.ray_state, h.runtime_state) for h in st.hosts] == [("h1", "ALIVE", "running"), ("h2", "ALIVE", "running")]
        assert st.to_json()["hosts"][0]["ray_state"] == "ALIVE"
        # Per host, used and total as Ray accounts them (idle: none used);
        # the dashboard's node view fills in a few seconds after the join.
        deadline = time.monotonic() + 20
        while not all("GPU" in h.usage for h in st.hosts) and time.monotonic() < deadline:
            time.sleep(0.5)
            st = c.status()
        assert [(h.usage["GPU"].used, h.usage["GPU"].total) for h in st.hosts] == [(0.0, 2.0), (0.0, 2.0)]
        assert st.to_json()["hosts"][1]["usage"]["GPU"] == {"used": 0.0, "total": 2.0}
        assert [h.ray_version for h in st.hosts] == ["2.60.0", "2.60.0"] and all(h.python_version for h in st.hosts)
        assert "healthy" in st.summary() and "healthy" in repr(st)
        assert assert_pickles(st).hosts[1].usage["GPU"].total == 2.0

        logs = c.logs(tail=20)
        assert [(l.host, l.error) for l in logs] == [("h1", None), ("h2", None)]
        assert all(l.text for l in logs)
        assert_pickles(logs)

        # Ctrl-C during a blocking call: the commands on the hosts are stopped at
        # once (status() takes seconds: `ray status` starts a Python), and the
        # cluster is as it was.
        timer = threading.Timer(0.5, _thread.interrupt_main)  # what Ctrl-C does
        t0 = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            while True:  # (the interrupt always lands in here)
                c.status()
        assert time.monotonic() - t0 < 2.0
        assert c.status().healthy

        # The engine's side (no engine started here): no engine says how to start one.
        serve = ck.VllmServe(ck.VllmServeSpec("/models/none", name="tpv", api_key_file=tmp_path / "key"), c)
        assert serve.spec.vllm_command == f"{VENV}/bin/vllm"  # beside the cluster's ray
        assert serve.endpoint == f"http://{SUBNET}.11:8000"
        with pytest.raises(ck.Error) as e:
            serve.wait_ready()
        assert e.value.code == "engine_failed"
        assert "no engine named 'tpv' on h1" in str(e.value) and "serve up" in str(e.value)
        assert isinstance(e.value.result, ck.VllmReady) and e.value.result.endpoint == serve.endpoint
        assert_pickles(e.value.result)
        st_engine = serve.status()
        assert st_engine.state == "down" and not st_engine.process_alive and st_engine.pid == 0
        assert st_engine.ray is not None and st_engine.ray.healthy
        assert_pickles(st_engine)
        assert "no engine log" in serve.logs()
        # Following its log: each line as it is written, until cancelled.
        with pytest.raises(ValueError, match="follow=True needs on_line"):
            serve.logs(follow=True)
        lines: list[str] = []
        state = ck.vllm_state_dir(serve.spec)

        async def follow() -> None:
            task = asyncio.create_task(serve.logs_async(tail=5, follow=True, on_line=lines.append))
            for _ in range(100):
                await asyncio.sleep(0.1)
                if lines:
                    break
            assert lines and "no engine named 'tpv' on h1 yet" in lines[0], lines
            h1.run(["sh", "-c", f"mkdir -p {state} && printf 'first\\nsecond\\nthi' >> {state}/vllm.log"])
            for _ in range(100):
                await asyncio.sleep(0.1)
                if "second" in lines:
                    break
            h1.run(["sh", "-c", f"printf 'rd\\n' >> {state}/vllm.log"])
            for _ in range(100):
                await asyncio.sleep(0.1)
                if "third" in lines:
                    break
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        try:
            asyncio.run(follow())
        finally:
            h1.run(["rm", "-rf", state])
        assert lines[1:] == ["first", "second", "third"], lines
        assert not (tmp_path / "key").exists()  # nothing launched, no key written
    finally:
        down = c.down()
    assert [(d.host, d.ok) for d in down] == [("h1", True), ("h2", True)]
    assert_pickles(down)
    assert all("Ray processes" in d.removed for d in down), down
    assert ray_processes(h1) == [] and ray_processes(h2) == []
    assert h1.run(["test", "-e", "/tmp/ck-ray-tpb"]).exit_code != 0
    # Down again: nothing there, still fine.
    before = h1.run(["ps", "-eo", "pid,ppid,sid,stat,args"], timeout=30).stdout
    assert_nothing_removed(c.down(), before)


def test_failures_raise_clusterkit_error(inventory: ck.Inventory) -> None:
    # Ray where there is none: refused on every host, nothing started.
    spec = cluster(inventory, "tpe", "bare").spec
    spec.ray_command = "/nowhere/bin/ray"
    c = ck.RayCluster(spec, cluster(inventory, "tpe", "bare").hosts)
    with pytest.raises(ck.Error) as e:
        c.up()
    err = e.value
    assert err.code == "program_missing", err
    assert "h1: /nowhere/bin/ray not found" in str(err) and "h2: " in str(err)
    assert "pip install 'ray[default]'" in str(err)
    result = err.result
    assert isinstance(result, ck.RayUpResult) and result.message == str(err)
    assert [(n.host, n.action) for n in result.nodes] == [("h1", "refuse"), ("h2", "refuse")]
    assert all(isinstance(n.error, ck.Error) and n.error.code == "program_missing" for n in result.nodes)

    # A progress callback that raises stops up() and is raised from it.
    class Stop(Exception):
        pass

    def refuse(p: ck.RayProgress) -> None:
        raise Stop(p.phase)

    good = cluster(inventory, "tpe", "bare")
    with pytest.raises(Stop) as stopped:
        good.up(on_progress=refuse)
    assert str(stopped.value) == "probe"
    # Ctrl-C (from the callback, so that it lands inside up()): KeyboardInterrupt,
    # nothing started, and no callback after it. The callback holds up() until
    # the main thread has taken the interrupt, so that it lands in the probe.
    taken = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        taken.set()
        raise KeyboardInterrupt

    calls: list[str] = []

    def ctrl_c(p: ck.RayProgress) -> None:
        calls.append(p.phase)
        _thread.interrupt_main()
        assert taken.wait(30)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with pytest.raises(KeyboardInterrupt):
            good.up(on_progress=ctrl_c)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls == ["probe"]
    assert ray_processes(inventory.host("h1")) == [] and ray_processes(inventory.host("h2")) == []
    assert_nothing_removed(good.down())



def test_docker_cluster_from_asyncio(inventory: ck.Inventory, tmp_path: Path) -> None:
    c = cluster(inventory, "tpd", "docker")
    h1, h2 = inventory.host("h1"), inventory.host("h2")
    loop_thread: list[bool] = []
    progress: list[ck.RayProgress] = []

    def on_progress(p: ck.RayProgress) -> None:
        loop_thread.append(threading.current_thread() is threading.main_thread())
        progress.append(p)

    async def bring_up() -> tuple[ck.RayUpResult, ck.RayClusterStatus, list[ck.RayHostLogs]]:
        # Two at once on one loop: the cluster coming up, and a heartbeat that keeps running meanwhile.
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                await asyncio.sleep(0.05)
                beats += 1

        beat = asyncio.create_task(heartbeat())
        up = await c.up_async(on_progress=on_progress)
        beat.cancel()
        assert beats > 10
        st, logs = await asyncio.gather(c.status_async(), c.logs_async(tail=10))
        return up, st, logs

    try:
        up, st, logs = asyncio.run(bring_up())
        assert_up(up, "start")
        assert progress and all(loop_thread)  # on the loop's thread
        assert progress[-1].phase == "ready"
        assert st.healthy and st.runtime == ck.RayRuntimeKind.docker and st.ray_version == "2.60.0"
        assert len(logs) == 2 and all(l.text for l in logs)
        for host in (h1, h2):
            [line] = containers(host)
            assert line.startswith("ck-ray-tpd Up"), line
            # The versions it was started with, on the container (status reads
            # them there when no venv's files say them: an image's own Python).
            label = host.run(["docker", "inspect", "-f", '{{index .Config.Labels "clusterkit.ray.versions"}}', "ck-ray-tpd"])
            assert label.ok and re.fullmatch(r"3\.\d+\.\d+ 2\.60\.0", label.stdout.strip()), label.stdout
        assert_up(c.up(), "keep")

        # No engine in the container: wait_ready says so, from asyncio too.
        serve = ck.VllmServe(ck.VllmServeSpec("/models/none", name="tpv", api_key_file=tmp_path / "k"), c)
        assert isinstance(serve.cluster, ck.RayCluster) and serve.cluster.spec.name == "tpd"
        assert serve.api_key == "" and "api_key" not in repr(serve)

        async def wait() -> ck.VllmReady:
            return await serve.wait_ready_async()

        with pytest.raises(ck.Error) as e:
            asyncio.run(wait())
        assert e.value.code == "engine_failed" and "serve up" in str(e.value)
        assert not (tmp_path / "k").exists()  # nothing launched, no key written
    finally:
        async def down() -> list[ck.RayDownOutcome]:
            return await c.down_async()

        outcomes = asyncio.run(down())
    assert [(d.host, d.removed) for d in outcomes] == [("h1", "container ck-ray-tpd"), ("h2", "container ck-ray-tpd")]
    for host in (h1, h2):
        assert containers(host) == []
        assert ray_processes(host) == []


def test_the_examples_bring_the_seed_cluster_up_follow_and_down(lab: ck.LabStatus, inventory: ck.Inventory,
                                                                tmp_path: Path) -> None:
    # examples/python/ray_cluster.py and vllm_serve.py as a user runs them,
    # on the lab's inventory file: up (2 nodes, 4 SIMULATED GPUs), up again
    # (kept), the engine's log followed until Ctrl-C, down (nothing left).
    examples = Path(__file__).resolve().parents[2] / "examples" / "python"
    env = {**os.environ, "PYTHONPATH": str(Path(ck.__file__).resolve().parents[1])}
    args = ["--inventory", str(lab.inventory_path), "--name", "tpe", "--runtime", "bare", "--models-dir", str(tmp_path)]

    def example(name: str, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(examples / name), *args, *more], env=env, capture_output=True,
                              text=True, timeout=300)

    h1, h2 = inventory.host("h1"), inventory.host("h2")
    try:
        up = example("ray_cluster.py")
        assert up.returncode == 0, up.stderr
        assert "2/2 nodes" in up.stdout and "SIMULATED" in up.stdout, up.stdout
        again = example("ray_cluster.py")
        assert again.returncode == 0 and "keep" in again.stdout, again.stdout + again.stderr
        follow = subprocess.Popen([sys.executable, str(examples / "vllm_serve.py"), *args, "--follow"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert follow.stdout is not None
            first = follow.stdout.readline()  # blocks until the note comes
            assert "clusterkit: no engine named 'tpe' on h1 yet" in first, first
            follow.send_signal(signal.SIGINT)
            assert follow.wait(timeout=30) == 130
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
    finally:
        down = example("ray_cluster.py", "--down")
    assert down.returncode == 0, down.stderr
    assert ray_processes(h1) == [] and ray_processes(h2) == []
