"""Deployment from Python (register_deploy.cpp), without hosts.

The two example specs (examples/deployments/) read as the seed and as the
lab; a spec with several mistakes reported all at once with file:line:column
and "did you mean"; the fingerprint; the record's JSON round trip and the
texts people read; a Deployment built from the seed's spec (no host is
contacted). Then plan, status and logs (which only look) on a deployment
whose one host is this machine: the blocking calls, their asyncio forms,
Ctrl-C and task cancellation. up and down are never called here (they start
Ray and vLLM: the lab tests do). tests/unit/test_deployment.cpp checks the pure
pieces in C++.
"""

from __future__ import annotations

import asyncio
import copy
import time
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pickles import assert_pickles
from waiting import assert_ctrl_c_stops

import clusterkit as ck

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENTS = ROOT / "examples" / "deployments"
SEED = DEPLOYMENTS / "qwen72b-two-node.yaml"
LAB = DEPLOYMENTS / "lab.yaml"

# The lab's inventory as `clusterkit lab up --hosts 3 --nas --docker --gpus 2
# --roles head,worker,download` writes it (src/remote/lab.cpp), inline: lab.yaml
# names the lab's own file, which exists only while that lab is up.
LAB_INVENTORY = """inventory:
  defaults:
    user: root
    identity_file: /run/clusterkit/lab-ck/id_ed25519
    known_hosts_file: /run/clusterkit/lab-ck/known_hosts
    vars: {mount_point: /mnt, nas_type: sshfs, nas_export: "root@10.88.0.14:/srv/nas",
           runtime_image: "clusterkit/lab-runtime:bookworm", serve_venv: /opt/ck-serve}
  hosts:
    h1: {address: 10.88.0.11, roles: [head], groups: [lab, gpu],
         gpus: {count: 2, model: "L20", memory_gib: 48, simulated: true}}
    h2: {address: 10.88.0.12, roles: [worker], groups: [lab, gpu],
         gpus: {count: 2, model: "L20", memory_gib: 48, simulated: true}}
    h3: {address: 10.88.0.13, roles: [download], groups: [lab, download]}
    nas: {address: 10.88.0.14, roles: [nas], groups: [storage]}
"""


def lab_text() -> str:
    text = LAB.read_text()
    new, n = re.subn(r"(?m)^inventory:.*\n", LAB_INVENTORY, text)
    assert n == 1
    return new


def hand_made_record() -> ck.DeploymentRecord:
    r = ck.DeploymentRecord()
    r.name = "qwen72b"
    r.spec_file = str(SEED)
    r.spec_fingerprint = "0123456789abcdef"
    r.status = "up"
    r.started_at = "2025-01-02T03:04:05Z"
    r.finished_at = "2025-01-02T03:07:25Z"
    r.total_seconds = 200.0
    r.own_seconds = 12.5
    r.endpoint = "http://172.18.190.25:8000"
    r.served_model_name = "qwen2.5-72b-instruct"
    r.api_key_file = "/root/.config/clusterkit/keys/qwen72b.key"
    r.versions = {"vllm": "0.9.1", "ray": "2.60.0"}
    r.layout = {"tp": 2, "pp": 2, "max_model_len": 32768}
    r.node_env = {"gpu1": {"NCCL_SOCKET_IFNAME": "eth0", "VLLM_HOST_IP": "172.18.190.25"}}
    r.steps = [
        ck.StepRecord(
            "preflight",
            "ok",
            "4 hosts ready",
            started_s=0.0,
            ended_s=2.5,
            hosts=[ck.StepHostRecord("gpu1", "ok", ended_s=2.4), ck.StepHostRecord("gpu2", "ok", ended_s=2.5)],
        ),
        ck.StepRecord("nas", "skipped", "mounted on every host", started_s=2.5, ended_s=3.0),
        ck.StepRecord("serve", "ok", "ready", started_s=3.0, ended_s=183.0, detail={"kv_cache_tokens": 64816}),
    ]
    r.smoke = {"text": "I am Qwen."}
    r.bench = {"requests": 20, "requests_per_second": 1.5, "output_tokens_per_second": 96.0, "ttft_p50_ms": 250.0}
    r.simulated = ["the GPUs"]
    return r


# ---------------------------------------------------------------------------
# The specs


def test_the_seed_spec_is_the_seed() -> None:
    spec = ck.load_deployment_spec(SEED)
    assert spec.name == "qwen72b"
    assert spec.source == str(SEED)
    assert spec.head == "gpu1"
    assert spec.workers == ["gpu2"]
    assert spec.model.download_host == "cpu1"
    assert spec.model.id == "Qwen/Qwen2.5-72B-Instruct"
    assert spec.model.hub == "modelscope"
    assert spec.model.download_dir == "/data/Qwen/Qwen2___5-72B-Instruct"
    # The NAS comes from the inventory's vars (nas_export, mount_point).
    assert spec.nas is not None
    assert spec.nas.kind == ck.NasKind.nfs
    assert spec.nas.source == "nas.example.internal:/share"
    assert spec.nas.mount_point == "/mnt"
    assert spec.serve.tensor_parallel == 2
    assert spec.serve.pipeline_parallel == 2
    assert spec.serve.served_model_name == "qwen2.5-72b-instruct"
    assert spec.serve.port == 8000
    assert spec.ray.runtime == ck.RayRuntimeKind.docker
    assert spec.ray.image == "vllm/vllm-openai"
    assert spec.checks.bench_requests == 20
    assert spec.engine_model_path() == "/models/Qwen2___5-72B-Instruct"
    assert spec.model_path() == "/mnt/Qwen/Qwen2___5-72B-Instruct"
    assert [h.name for h in spec.inventory.hosts] == ["gpu1", "gpu2", "cpu1", "nas"]
    assert ck.deployment_steps() == ["preflight", "nas", "model", "verify", "layout", "ray", "serve", "smoke", "bench"]
    assert "DeploymentSpec('qwen72b'" in repr(spec)


def test_the_lab_spec_has_the_seed_shape() -> None:
    spec = ck.parse_deployment_spec(lab_text(), "lab.yaml", DEPLOYMENTS)
    assert spec.name == "lab"
    assert spec.source == "lab.yaml"
    assert spec.head == "h1"
    assert spec.workers == ["h2"]
    assert spec.model.download_host == "h3"
    assert spec.serve.tensor_parallel == 0  # auto: the planner's
    assert spec.serve.pipeline_parallel == 0
    assert spec.serve.max_model_len == 512
    assert spec.max_model_len_auto is False
    assert spec.ray.runtime == ck.RayRuntimeKind.docker
    assert spec.ray.ipc_host is True
    assert spec.ray.env == {"OMP_NUM_THREADS": "1"}
    assert spec.serve.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert spec.nas is not None and spec.nas.kind == ck.NasKind.sshfs
    assert spec.model_path() == "/mnt/Qwen/Tiny2___5-4M-Instruct"
    assert spec.engine_model_path() == "/models/Tiny2___5-4M-Instruct"
    assert "tensor_parallel='auto'" in repr(spec)


def test_a_temp_inventory_file_works_as_well(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("\n".join(line[2:] for line in LAB_INVENTORY.splitlines()[1:]) + "\n")
    text = re.sub(r"(?m)^inventory:.*$", f"inventory: {inventory.name}", LAB.read_text())
    spec_file = tmp_path / "lab.yaml"
    spec_file.write_text(text)
    spec = ck.load_deployment_spec(spec_file)
    assert (spec.head, spec.workers, spec.model.download_host) == ("h1", ["h2"], "h3")


def test_every_mistake_at_once() -> None:
    text = """name: qwen72b
inventory: ../inventories/seed-cluster.yaml
model:
  hub: modelscop
  download_host: cpu1
serve:
  tensor_paralel: 2
  port: eighty
ray:
  head: gpu3
"""
    with pytest.raises(ck.Error) as caught:
        ck.parse_deployment_spec(text, "bad.yaml", DEPLOYMENTS)
    e = caught.value
    assert e.code == "inventory_invalid"
    message = str(e)
    assert message.startswith("5 mistakes in the deployment spec, nothing was started:")
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert len(lines) == 5, message

    def one(needle: str) -> str:
        found = [line for line in lines if needle in line]
        assert len(found) == 1, (needle, message)
        return found[0]

    # Each with file:line:column.
    assert all(re.match(r"bad\.yaml:\d+:\d+: ", line) for line in lines), message
    assert one("model.hub") == 'bad.yaml:4:8: model.hub: "modelscop" is not a hub; use modelscope, hf or none'
    assert one("model.id").startswith("bad.yaml:4:3: model.id: missing")
    assert (
        one("tensor_paralel")
        == "bad.yaml:7:3: serve.tensor_paralel: unknown field 'tensor_paralel'; did you mean 'tensor_parallel'?"
    )
    assert one("serve.port") == "bad.yaml:8:9: serve.port: expected a whole number from 1 to 65535"
    head = one("ray.head")
    assert 'no host "gpu3" in the inventory' in head
    assert re.search(r"did you mean 'gpu[12]'\?", head), head


def test_a_missing_file_and_invalid_yaml() -> None:
    with pytest.raises(ck.Error) as caught:
        ck.load_deployment_spec(DEPLOYMENTS / "no-such.yaml")
    assert caught.value.code == "inventory_invalid"
    assert "no such file" in str(caught.value).lower() and "examples/deployments/" in str(caught.value)
    with pytest.raises(ck.Error) as caught:
        ck.parse_deployment_spec("name: [unclosed\n", "broken.yaml")
    assert str(caught.value).startswith("broken.yaml:")


def test_the_fingerprint_follows_the_deployment() -> None:
    a = ck.load_deployment_spec(SEED)
    b = ck.load_deployment_spec(SEED)
    assert len(a.fingerprint()) == 16
    assert a.fingerprint() == b.fingerprint()
    b.serve.tensor_parallel = 4  # the spec's own part: changed in place
    assert b.serve.tensor_parallel == 4
    assert a.fingerprint() != b.fingerprint()
    c = copy.copy(a)
    assert c.fingerprint() == a.fingerprint()
    c.checks.bench_requests = 0  # the checks do not define the deployment
    assert c.fingerprint() == a.fingerprint()
    c.serve.port = 8001
    assert c.fingerprint() != a.fingerprint()
    assert a.serve.port == 8000  # a copy is its own


def test_spec_fields_are_writable() -> None:
    spec = ck.DeploymentSpec()
    assert spec.name == "ck" and spec.nas is None
    spec.name = "mine"
    spec.model = ck.DeploymentModel("Qwen/Qwen2.5-7B-Instruct", root="/data/models", container_root="/m")
    spec.model.sync_streams = 8
    spec.checks = ck.DeploymentChecks(bench_requests=0)
    spec.head = "a"
    spec.workers = ["b", "c"]
    spec.nas = ck.NasSpec("nfs", "nas:/export", mount_point="/data")
    spec.state_dir = "/tmp/x"
    assert spec.model.sync_streams == 8
    assert spec.checks.bench_requests == 0 and spec.checks.smoke is True
    assert spec.model_path() == "/data/models/Qwen/Qwen2___5-7B-Instruct"
    assert spec.engine_model_path() == "/m/Qwen2___5-7B-Instruct"
    assert spec.nas is not None and spec.nas.mount_point == "/data"
    spec.nas = None
    assert spec.nas is None
    assert ck.deployment_record_path(spec) == "/tmp/x/record.json"


# ---------------------------------------------------------------------------
# The record and the texts

SUMMARY = (
    "deployment 'qwen72b': up\n"
    "  preflight  ok           2.5 s  4 hosts ready\n"
    "  nas        skipped      0.5 s  mounted on every host\n"
    "  serve      ok         180.0 s  ready\n"
    "endpoint:  http://172.18.190.25:8000/v1  (model qwen2.5-72b-instruct)\n"
    "api key:   /root/.config/clusterkit/keys/qwen72b.key (mode 0600; chat and bench use it)\n"
    'try:       clusterkit chat --url http://172.18.190.25:8000 --model qwen2.5-72b-instruct "Who are you?"\n'
    "bench:     20 requests, 1.50 req/s, 96.0 output tok/s, TTFT p50 250 ms\n"
    "time:      200.0 s in all, 12.5 s of it clusterkit's own\n"
    "SIMULATED: the GPUs\n"
)


def test_a_record_round_trips() -> None:
    r = hand_made_record()
    assert r.summary() == SUMMARY
    j = r.to_json()
    assert isinstance(j, dict)
    assert j["name"] == "qwen72b" and j["layout"] == {"tp": 2, "pp": 2, "max_model_len": 32768}
    back = ck.DeploymentRecord.from_json(j)
    assert back.to_json() == j
    assert back.summary() == SUMMARY
    # Through the file's text, as load_deployment_record reads it.
    assert ck.DeploymentRecord.from_json(json.loads(json.dumps(j))).to_json() == j
    assert ck.DeploymentRecord.from_json(json.dumps(j)).to_json() == j
    step = back.step("serve")
    assert step is not None and step.detail == {"kv_cache_tokens": 64816} and step.seconds == 180.0
    preflight = back.step("preflight")
    assert preflight is not None and [h.host for h in preflight.hosts] == ["gpu1", "gpu2"]
    assert back.step("bench") is None
    assert back.node_env["gpu1"]["VLLM_HOST_IP"] == "172.18.190.25"
    assert repr(back).startswith("DeploymentRecord('qwen72b', 'up', steps=3")
    assert assert_pickles(back).to_json() == j


def test_the_record_file(tmp_path: Path) -> None:
    spec = ck.load_deployment_spec(SEED)
    spec.state_dir = str(tmp_path / "state")
    assert ck.load_deployment_record(spec) is None
    path = Path(ck.deployment_record_path(spec))
    assert path == tmp_path / "state" / "record.json"
    path.parent.mkdir()
    path.write_text(json.dumps(hand_made_record().to_json()))
    loaded = ck.load_deployment_record(spec)
    assert loaded is not None and loaded.summary() == SUMMARY
    d = ck.Deployment(spec)
    assert d.record_path == str(path)
    record = d.record()
    assert record is not None and record.name == "qwen72b"


def test_the_plan_text() -> None:
    plan = ck.DeploymentPlanResult(
        [
            ck.PlannedStep(
                "nas",
                "mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1",
                commands=[
                    ck.PlannedCommand("gpu1", "mkdir -p /mnt\nmount -t nfs -o vers=3 nas.example.internal:/share /mnt"),
                    ck.PlannedCommand("gpu2", "mount -t nfs -o vers=3 nas.example.internal:/share /mnt"),
                ],
            ),
            ck.PlannedStep(
                "model",
                "download Qwen/Qwen2.5-72B-Instruct on cpu1",
                skip_reason="already on the NAS and verified",
            ),
        ],
        ["nothing was changed"],
    )
    assert plan.text() == (
        "1. nas: mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1\n"
        "     gpu1: mkdir -p /mnt ...\n"
        "     gpu2: mount -t nfs -o vers=3 nas.example.internal:/share /mnt\n"
        "2. model: download Qwen/Qwen2.5-72B-Instruct on cpu1  [skip: already on the NAS and verified]\n"
        "note: nothing was changed\n"
    )
    j = plan.to_json()
    assert j["steps"][1]["skip"] == "already on the NAS and verified"
    assert j["steps"][0]["commands"][1] == {"host": "gpu2", "command": plan.steps[0].commands[1].command}
    # A script behind a summary: whole with full=True, and in the JSON.
    plan = ck.DeploymentPlanResult(
        [
            ck.PlannedStep(
                "nas",
                "mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1",
                commands=[ck.PlannedCommand("gpu2", "mount script", script="set -e\nmount nas:/share /mnt\n")],
            )
        ]
    )
    assert plan.text() == "1. nas: mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1\n     gpu2: mount script\n"
    assert plan.text(full=True) == (
        "1. nas: mount nfs nas.example.internal:/share at /mnt on gpu1, gpu2, cpu1\n"
        "     gpu2:\n"
        "         mount script\n"
        "       the script, whole:\n"
        "         set -e\n"
        "         mount nas:/share /mnt\n"
    )
    assert plan.to_json()["steps"][0]["commands"][0]["script"] == "set -e\nmount nas:/share /mnt\n"


def test_small_types() -> None:
    p = ck.DeploymentProgress("ray", "gpu2", "ok", "joined", elapsed_seconds=12.5)
    assert (p.step, p.host, p.status, p.message, p.elapsed_seconds) == ("ray", "gpu2", "ok", "joined", 12.5)
    o = ck.DeploymentDownOptions(unmount_nas=True)
    assert o.unmount_nas and not o.remove_model


# ---------------------------------------------------------------------------
# Deployment, without touching a host


def test_a_deployment_of_the_seed() -> None:
    d = ck.Deployment.from_file(SEED)
    assert isinstance(d, ck.Deployment)
    assert d.name == "qwen72b"
    assert d.gpu_hosts == ["gpu1", "gpu2"]
    assert d.download_host == "cpu1"
    assert d.spec.fingerprint() == ck.load_deployment_spec(SEED).fingerprint()
    assert repr(d).startswith("Deployment('qwen72b', model='Qwen/Qwen2.5-72B-Instruct', head='gpu1'")
    ray = d.ray_cluster()
    assert isinstance(ray, ck.RayCluster)
    assert ray.head.name == "gpu1" and [h.name for h in ray.hosts] == ["gpu1", "gpu2"]
    assert ck.VolumeMount("/mnt/Qwen", "/models") in ray.spec.volumes  # -v /mnt/Qwen:/models, as the seed
    engine = d.engine(2, 2)
    assert isinstance(engine, ck.VllmServe)
    assert engine.spec.model == "/models/Qwen2___5-72B-Instruct"
    assert (engine.spec.tensor_parallel, engine.spec.pipeline_parallel) == (2, 2)
    assert engine.spec.served_model_name == "qwen2.5-72b-instruct"
    assert d.host("cpu1").name == "cpu1"
    with pytest.raises(ck.Error) as caught:
        d.host("gpu9")
    assert caught.value.code == "unknown_host_or_group"
    # Deployment(spec) as well, and a copy.
    same = ck.Deployment(ck.load_deployment_spec(SEED))
    assert ck.Deployment(same).gpu_hosts == same.gpu_hosts


def test_a_deployment_whose_hosts_do_not_add_up() -> None:
    spec = ck.load_deployment_spec(SEED)
    spec.workers = ["gpu7"]
    with pytest.raises(ck.Error) as caught:
        ck.Deployment(spec)
    assert caught.value.code == "invalid_argument"
    assert "gpu7" in str(caught.value)


def test_from_file_lists_every_mistake(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inventory: {SEED.parent.parent / 'inventories' / 'seed-cluster.yaml'}\nmodle: {{id: x}}\n")
    with pytest.raises(ck.Error) as caught:
        ck.Deployment.from_file(bad)
    message = str(caught.value)
    assert f"{bad}:2:1: modle: unknown field 'modle'; did you mean 'model'?" in message
    assert "model: missing" in message


def test_callbacks_and_done_must_be_callable() -> None:
    d = ck.Deployment.from_file(SEED)
    with pytest.raises(TypeError):
        d._start_plan(done=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.up(on_progress=42)  # type: ignore[arg-type]


def test_async_forms_exist() -> None:
    for name in ("up_async", "plan_async", "status_async", "down_async", "logs_async"):
        assert asyncio.iscoroutinefunction(getattr(ck.Deployment, name)), name


def test_the_example_runs(tmp_path: Path) -> None:
    """examples/python/qwen72b_two_node.py: --help, and a spec mistake reported (no host is contacted)."""
    script = ROOT / "examples" / "python" / "qwen72b_two_node.py"
    env = {**os.environ, "PYTHONPATH": str(Path(ck.__file__).resolve().parents[1])}
    shown = subprocess.run([sys.executable, str(script), "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "--up" in shown.stdout and "--status" in shown.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\n")
    failed = subprocess.run(
        [sys.executable, str(script), "--spec", str(bad)], env=env, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1
    assert "error (inventory_invalid)" in failed.stderr and "mistakes in the deployment spec" in failed.stderr


# ---------------------------------------------------------------------------
# The operations on this machine only: a deployment whose one host is this
# machine (local: true, no ssh), the bare runtime with a ray that does not
# exist, nothing on the NAS, port 1. plan, status and logs only look (no
# record is written, nothing is started); they exercise the blocking calls,
# their asyncio forms, Ctrl-C and task cancellation.


def local_deployment(
    state: Path,
    layout: str = "tensor_parallel: 1, pipeline_parallel: 1, ",
    model: str = "Qwen/Nothing-Here",
    gpus: str = "count: 1, simulated: true",
) -> ck.Deployment:
    text = f"""name: ck-pytest-local
inventory:
  hosts:
    a: {{local: true, roles: [head], gpus: {{{gpus}}}}}
model: {{id: {model}, hub: none, root: {state}/models}}
runtime: {{kind: bare, ray: {state}/venv/bin/ray}}
ray: {{port: 1}}
serve: {{{layout}port: 1}}
checks: {{bench: false}}
state_dir: {state}/state
"""
    return ck.Deployment(ck.parse_deployment_spec(text, "local.yaml"))


def test_plan_and_status_on_this_machine(tmp_path: Path) -> None:
    d = local_deployment(tmp_path)
    plan = d.plan()
    steps = [s.step for s in plan.steps]
    assert steps == ["preflight", "model", "verify", "layout", "ray", "serve", "smoke", "bench"]  # no NAS
    assert plan.steps[-1].skip_reason == "checks.bench is off"
    assert plan.notes[-1].startswith("nothing was changed")
    assert plan.text().startswith("1. preflight: ")
    assert plan.to_json()["steps"][0]["step"] == "preflight"
    assert assert_pickles(plan).text() == plan.text()
    # Every command whole: the facts and snapshot scripts behind their
    # one-line summaries, as `plan --full` prints them.
    preflight, verify = plan.steps[0], plan.steps[2]
    assert preflight.commands[0].command.startswith("facts script (")
    assert "ck_section end" in preflight.commands[0].script
    assert "@@ck-end" in verify.commands[0].script
    full = plan.text(full=True)
    assert "       the script, whole:\n" in full and "ck_section end" in full and "ck_section end" not in plan.text()
    status = d.status()
    assert status.state == "down" and status.record is None
    # The hosts first: this machine answered, as the head.
    assert [(h.host, h.roles[0], h.reachable) for h in status.hosts] == [("a", "head", True)], status.hosts
    assert status.hosts[0].uptime_seconds > 0 and status.hosts[0].load
    assert any("does not exist" in m.message for m in status.model)
    assert status.to_json()["state"] == "down"
    assert status.summary().startswith("deployment 'ck-pytest-local': down\n")
    assert assert_pickles(status).summary() == status.summary()
    assert not (tmp_path / "state").exists()  # only looked
    with pytest.raises(ck.Error) as caught:
        d.logs("nope")
    assert caught.value.code == "unknown_host_or_group"


def test_plan_with_an_auto_layout_says_so(tmp_path: Path) -> None:
    # Before the first up the planner has not chosen: the dry run shows
    # <auto>, never a made-up TP 1 x PP 1.
    plan = local_deployment(tmp_path, layout="tensor_parallel: auto, pipeline_parallel: auto, ").plan()
    layout = next(s for s in plan.steps if s.step == "layout")
    assert "(<auto> below), from the model's config once it is on the NAS" in layout.what
    serve = next(s for s in plan.steps if s.step == "serve")
    command = serve.commands[0].command
    assert "--tensor-parallel-size '<auto>' --pipeline-parallel-size '<auto>'" in command, command
    fixed = next(s for s in local_deployment(tmp_path).plan().steps if s.step == "serve")
    assert "--tensor-parallel-size 1 --pipeline-parallel-size 1" in fixed.commands[0].command


def test_more_gpus_than_there_are_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # The one host declares 1 GPU; TP 2 x PP 2 needs 4. Whatever the model,
    # this cannot run: up() says so at once (not after the model's
    # download), with what would, and starts nothing.
    d = local_deployment(tmp_path, layout="tensor_parallel: 2, pipeline_parallel: 2, ")
    why = "TP 2 x PP 2 needs 4 GPUs, and the GPU hosts have 1 (a: 1)"
    assert "needs 4 GPUs, and the GPU hosts have 1 (node1: 1)" in ck.layout_count_refusal(2, 2, ck.parse_gpu_inventory("1x L20 48GB"))
    assert ck.layout_count_refusal(0, 0, ck.parse_gpu_inventory("1x L20 48GB")) == ""  # auto
    plan = d.plan()
    assert any(why in n and n.startswith("`up` would refuse this spec at once") for n in plan.notes), plan.notes
    t0 = time.monotonic()
    with pytest.raises(ck.Error) as e:
        d.up()
    assert time.monotonic() - t0 < 10
    assert e.value.code == "invalid_argument" and isinstance(e.value, ValueError)
    assert why in str(e.value) and "or both to auto" in str(e.value) and "nothing was started" in str(e.value)
    record = ck.load_deployment_record(d.spec)
    assert record is not None and record.status == "failed"
    assert [(s.step, s.status) for s in record.steps if s.status != "pending"] == [("preflight", "failed")]
    assert not (tmp_path / "models").exists()  # nothing made on the "NAS"


TWO_L20 = "count: 2, model: L20, memory_gib: 48, simulated: true"  # one host's GPUs, declared


def shipped_plan(model: str, gpus: str) -> ck.Plan:
    """The planner on the config.json clusterkit ships for `model` (tensor sizes estimated)."""
    facts = ck.model_facts_from_config(ck.known_model_config(model))
    ck.estimate_tensors_from_config(facts)
    return ck.plan_deployment(facts, gpus)


def test_plan_with_an_auto_layout_for_a_known_model_says_the_planners_choice(tmp_path: Path) -> None:
    # A model clusterkit ships the config of: the dry run says the layout
    # the planner will choose, with its numbers, not <auto>.
    d = local_deployment(tmp_path, layout="tensor_parallel: auto, pipeline_parallel: auto, ", model="Qwen/Qwen2.5-7B-Instruct",
                         gpus=TWO_L20)
    want = ck.choose_layout(shipped_plan("Qwen/Qwen2.5-7B-Instruct", "1x 2 L20 48GB"))
    plan = d.plan()
    layout = next(s for s in plan.steps if s.step == "layout")
    assert layout.what.startswith(f"the planner's choice, TP {want.tp} x PP {want.pp} on "), layout.what
    assert f"({want.kv_cache_tokens} KV tokens), from the config.json clusterkit ships for Qwen/Qwen2.5-7B-Instruct" in layout.what
    serve = next(s for s in plan.steps if s.step == "serve").commands[0].command
    assert f"--tensor-parallel-size {want.tp} --pipeline-parallel-size {want.pp}" in serve and "<auto>" not in serve, serve
    assert not any("would refuse" in n for n in plan.notes)


def test_a_known_model_that_cannot_fit_is_refused_before_its_download(tmp_path: Path) -> None:
    # The seed's model on one host with two 48 GB cards: 145 GB of weights
    # cannot fit, whatever the layout. clusterkit ships its config.json, so
    # up() says so from the config before anything is downloaded (hours for
    # 145 GB), with the planner's suggestions.
    d = local_deployment(tmp_path, layout="tensor_parallel: auto, pipeline_parallel: auto, ", model="Qwen/Qwen2.5-72B-Instruct",
                         gpus=TWO_L20)
    why = ck.known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 0, 0, "1x 2 L20 48GB")
    assert why.startswith("Qwen/Qwen2.5-72B-Instruct on ") and "nothing fits: " in why, why
    assert "before any download, from the config.json clusterkit ships for it" in why
    assert ck.known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 2, "2 nodes x 2 L20 48GB") == ""  # the seed fits
    assert ck.known_model_fit_refusal("acme/not-shipped", 2, 1, "1x 2 L20 48GB") == ""  # not known: no guess
    with pytest.raises(ValueError, match=r"gpu_memory_utilization .* must be in \(0, 1\]"):
        ck.known_model_fit_refusal("Qwen/Qwen2.5-72B-Instruct", 2, 2, "1x 2 L20 48GB", gpu_memory_utilization=1.5)
    plan = d.plan()
    assert any(n.startswith("`up` would refuse this spec at once: Qwen/Qwen2.5-72B-Instruct on ") for n in plan.notes), plan.notes
    t0 = time.monotonic()
    with pytest.raises(ck.Error) as e:
        d.up()
    assert time.monotonic() - t0 < 10
    assert e.value.code == "invalid_argument" and isinstance(e.value, ValueError)
    assert "nothing fits: " in str(e.value) and "nothing was started" in str(e.value), str(e.value)
    record = ck.load_deployment_record(d.spec)
    assert record is not None
    assert [(s.step, s.status) for s in record.steps if s.status != "pending"] == [("preflight", "failed")]
    assert not (tmp_path / "models").exists()


def test_choose_layout_names_what_fits() -> None:
    plan = shipped_plan("Qwen/Qwen2.5-7B-Instruct", "2 nodes x 2 L20 48GB")
    best = ck.choose_layout(plan)
    assert best.fits and (best.tp, best.pp) == (plan.layouts[0].tp, plan.layouts[0].pp)
    assert (ck.choose_layout(plan, 2, 2).tp, ck.choose_layout(plan, 2, 2).pp) == (2, 2)
    with pytest.raises(ValueError, match=r"TP 3 x PP 1 for .* what fits: TP "):
        ck.choose_layout(plan, 3, 1)


def test_async_forms_on_this_machine(tmp_path: Path) -> None:
    d = local_deployment(tmp_path)

    async def main() -> None:
        plan, status = await asyncio.gather(d.plan_async(), d.status_async())
        assert len(plan.steps) == 8 and status.state == "down"
        with pytest.raises(ck.Error):
            await d.logs_async("nope")
        # Cancelling the task stops the operation before the task ends.
        task = asyncio.ensure_future(d.plan_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_ctrl_c_stops_a_blocking_call(tmp_path: Path) -> None:
    d = local_deployment(tmp_path)
    assert_ctrl_c_stops(d.plan)  # a second or more: its probes run commands
    # The operation was stopped and waited for: the next call works.
    assert len(d.plan().steps) == 8


def test_records_of_another_shape(tmp_path: Path) -> None:
    bad: list[Any] = [[1, 2], {"steps": 3}, {"total_seconds": "x"}]
    for data in bad:
        with pytest.raises(ValueError):
            ck.DeploymentRecord.from_json(data)
    with pytest.raises(ValueError):
        ck.DeploymentRecord.from_json("{not json")
    spec = ck.load_deployment_spec(SEED)
    spec.state_dir = str(tmp_path)
    (tmp_path / "record.json").write_text("[not json")
    assert ck.load_deployment_record(spec) is None  # unreadable: no record
    (tmp_path / "record.json").write_text('{"total_seconds": "x"}')
    assert ck.load_deployment_record(spec) is None  # another shape: as if none (up writes a new one)
