"""Host facts, preflight and the NCCL check.

The parsers run on recorded nvidia-smi output of a 2x H100 host; gathering
runs on this machine (HostSpec.local_machine) and, as root, on a lab ("tpyf",
10.88.12.0/24: two real sshd hosts with simulated GPUs), always taken down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pickles import assert_pickles
from waiting import assert_ctrl_c_stops

import clusterkit as ck

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
H100X2 = FIXTURES / "nvidia-smi" / "h100x2"

LAB = "tpyf"
SUBNET = "10.88.12"

# ---------------------------------------------------------------------------
# Parsers


def test_parse_gpu_query_h100x2() -> None:
    gpus = ck.parse_gpu_query((H100X2 / "query.csv").read_text())
    assert len(gpus) == 2
    assert all(isinstance(g, ck.GpuInfo) for g in gpus)
    assert [g.index for g in gpus] == [0, 1]
    assert all(g.name == "NVIDIA H100 80GB HBM3" for g in gpus)
    assert all(g.memory_total_bytes == 81559 * 1024 * 1024 for g in gpus)
    assert all(g.memory_used_bytes == 0 for g in gpus)
    assert all(g.driver_version == "580.159.04" and g.compute_capability == "9.0" for g in gpus)
    assert [g.pci_bus_id for g in gpus] == ["00000000:00:06.0", "00000000:00:07.0"]
    assert gpus[0].uuid == "GPU-ba0a1ca6-b342-92ca-6e06-8fb97448a729"
    assert not any(g.simulated for g in gpus)


def test_parse_gpu_query_without_header_uses_the_field_order() -> None:
    fields = ck.gpu_query_fields().split(",")
    assert fields[:3] == ["index", "uuid", "name"]
    line = "0, GPU-x, NVIDIA L20, 46068, 5, 550.54.15, 8.9, 00000000:3B:00.0"
    (gpu,) = ck.parse_gpu_query(line + "\n")
    assert (gpu.name, gpu.memory_total_bytes, gpu.memory_used_bytes) == ("NVIDIA L20", 46068 << 20, 5 << 20)
    with pytest.raises(ck.Error) as e:
        ck.parse_gpu_query("0, only, three\n")
    assert e.value.code == "parse_error"


def test_parse_gpu_topology_h100x2() -> None:
    topo = ck.parse_gpu_topology((H100X2 / "topo.txt").read_text())
    assert isinstance(topo, ck.GpuTopology)
    assert topo.devices[:2] == ["GPU0", "GPU1"]
    assert topo.links[0][0] == "X" and topo.links[0][1] == "NV18"
    assert topo.link(0, 0) == "self"
    assert topo.link(0, 1) == "NVLink"
    assert topo.nvlinks(0, 1) == 18 and topo.nvlinks(0, 0) == 0
    assert topo.all_gpus_nvlinked()


def test_format_bytes() -> None:
    assert ck.format_bytes(64 << 20) == "64.0 MiB"
    assert ck.format_bytes(int(79.6 * (1 << 30))) == "79.6 GiB"


# ---------------------------------------------------------------------------
# Gathering on this machine


def test_gather_facts_on_this_machine(local: ck.Host) -> None:
    outcomes = ck.gather_facts([local], disk_paths=["/"], peers=["127.0.0.1"])
    assert len(outcomes) == 1
    (o,) = outcomes
    assert isinstance(o, ck.HostFactsOutcome)
    assert o.host == "me" and o.ok and o.error is None and o.message == ""
    assert o.duration > 0
    assert "@@ck-section" in o.raw_output
    f = o.facts
    assert isinstance(f, ck.HostFacts)
    assert f.hostname == os.uname().nodename
    assert f.cpus == os.cpu_count()
    assert f.os is not None and f.os.pretty_name and f.os["pretty_name"] == f.os.pretty_name  # typed; reads as before
    assert isinstance(f.memory, ck.MemoryInfo) and isinstance(f.kernel, ck.KernelInfo)
    with pytest.raises(KeyError):
        f.os["no_such_field"]
    assert f.kernel is not None and f.kernel["release"] == os.uname().release
    page = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert f.memory is not None and abs(f.memory["total_bytes"] - page) < page * 0.05
    assert f.shm is not None and f.shm["mount_point"] == "/dev/shm"
    assert [d["path"] for d in f.disks] == ["/"]
    assert f.disks[0]["total_bytes"] == os.statvfs("/").f_blocks * os.statvfs("/").f_frsize
    (route,) = f.routes
    assert route["peer"] == "127.0.0.1" and route["local"]
    assert f.clock is not None and abs(f.clock.offset_seconds) < 1.0 and f.clock["offset_seconds"] == f.clock.offset_seconds
    if f.issue("gpus") is not None:  # no nvidia-smi on this machine
        assert f.gpus == [] and not f.gpus_simulated
        assert f.issue("gpus").kind == "absent"
        assert f.driver_version == "" and f.cuda_version == ""
    else:
        assert f.gpus and all(g.memory_total_bytes > 0 for g in f.gpus) and f.driver_version
    assert f.issue("script") is None
    j = o.to_json()
    assert j["host"] == "me" and j["ok"] is True and j["cpus"] == f.cpus
    assert j == json.loads(json.dumps(j))  # plain JSON values only
    assert f.to_json()["hostname"] == f.hostname
    assert o.describe().startswith("me (")
    copy = assert_pickles(o)  # the facts whole, for a process pool or a Ray task
    assert copy.duration == o.duration and copy.facts.routes[0]["local"]


def test_gather_facts_with_simulated_gpus(local: ck.Host) -> None:
    (o,) = ck.gather_facts(
        [local], declared_gpus={"me": {"count": 2, "model": "L20", "memory_gib": 48, "simulated": True}}
    )
    f = o.facts
    if f.issue("gpus") is None or f.issue("gpus").kind != "absent":
        # A machine with nvidia-smi: its real GPUs win over the declared ones.
        assert not f.gpus_simulated and f.gpus and not any(g.simulated for g in f.gpus)
        return
    assert f.gpus_simulated
    assert len(f.gpus) == 2
    assert all(g.simulated and "L20" in g.name for g in f.gpus)
    assert all(g.memory_total_bytes == 46068 << 20 for g in f.gpus)  # the L20's nvidia-smi total, as plan reads "L20 48GB"
    assert "simulated" in o.describe()
    assert assert_pickles(o).facts.gpus[1].simulated


def test_gather_facts_unreachable_host_is_an_outcome() -> None:
    nowhere = ck.Host(name="nowhere", address="127.0.0.1", port=1, connect_timeout=3)
    (o,) = ck.gather_facts([nowhere], timeout=20)
    assert o.host == "nowhere" and not o.ok
    assert isinstance(o.error, ck.Error)
    assert o.error.code == "connection_refused"
    assert o.message
    assert o.facts.gpus == [] and o.facts.cpus is None
    assert o.to_json()["ok"] is False
    assert assert_pickles(o).error.code == "connection_refused"


def test_gather_facts_argument_errors(local: ck.Host) -> None:
    assert ck.gather_facts([]) == []
    with pytest.raises(TypeError):
        ck.gather_facts(["localhost"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ck.gather_facts([local], disk_paths="/")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ck.gather_facts([local], timeout=0)


# ---------------------------------------------------------------------------
# NCCL check, the pure parts and a run that cannot start


def test_nccl_check_script_and_parser() -> None:
    script = ck.nccl_check_script()
    assert "@@ck-nccl" in script and "all_reduce" in script
    compile(script, "nccl_check.py", "exec")  # valid Python
    assert ck.default_nccl_sizes() == [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]
    init = {"event": "init", "rank": 0, "world_size": 2, "local_rank": 0, "hostname": "gpu1",
            "device": "NVIDIA H100 80GB HBM3", "torch": "2.5.1", "cuda": "12.4", "nccl": "2.21.5"}  # fmt: skip
    bw = {"event": "bandwidth", "rank": 0, "bytes": 1 << 28, "iterations": 20, "time_us": 1500.0,
          "algbw_gbps": 178.9, "busbw_gbps": 178.9, "dtype": "float32"}  # fmt: skip
    text = (
        "W1127 noise from torchrun\n"
        f"[rank0]: @@ck-nccl {json.dumps(init)}\n"
        '@@ck-nccl {"event": "nccl_allreduce", "rank": 0, "ok": true, "value": 2.0, "expected": 2}\n'
        f"@@ck-nccl {json.dumps(bw)}\n"
        "@@ck-nccl {not json\n"
    )
    out = ck.parse_nccl_check_output(text)
    (rank,) = out.ranks
    assert (rank.rank, rank.world_size, rank.hostname) == (0, 2, "gpu1")
    assert rank.device == "NVIDIA H100 80GB HBM3" and rank.nccl_version == "2.21.5"
    assert rank.nccl_ok is True and rank.gloo_ok is None
    (b,) = out.bandwidth
    assert b.bytes == 1 << 28 and b.busbw_gbps == pytest.approx(178.9)
    assert len(out.malformed) == 1
    assert_pickles(out)
    # Another program's output: nothing invented.
    real = ck.parse_nccl_check_output((H100X2 / "torchrun-nccl-allreduce.txt").read_text())
    assert real.ranks == [] and real.bandwidth == []


def test_nccl_check_on_a_host_without_gpus(local: ck.Host) -> None:
    (facts,) = ck.gather_facts([local])
    if facts.facts.gpus:
        pytest.skip("this machine has GPUs")
    result = ck.nccl_check([local], timeout=60, failure_grace=2)
    assert isinstance(result, ck.NcclCheckResult)
    assert not result.ok and not bool(result)
    assert not result.nccl_ok and not result.gloo_ok
    assert result.problems
    assert "GPU" in " ".join(result.problems)
    j = result.to_json()
    assert j["ok"] is False and j["problems"] == result.problems
    assert result.summary()
    assert assert_pickles(result).problems == result.problems
    with pytest.raises(ValueError):
        ck.nccl_check([])


def test_asyncio_forms_of_facts_preflight_and_the_nccl_check(local: ck.Host) -> None:
    import asyncio

    inv = ck.Inventory.parse("hosts:\n  me: {local: true, roles: [head, gpu]}\n", "local.yaml")

    async def main() -> tuple[list[ck.HostFactsOutcome], ck.PreflightRun, ck.NcclCheckResult, int]:
        beats = 0

        async def heartbeat() -> None:  # the loop keeps running meanwhile
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0.01)

        hb = asyncio.create_task(heartbeat())
        facts = await ck.gather_facts_async([local], timeout=60)
        run = await inv.preflight_async(probe_ports=False, probe_nas=False, container_runtime="none")
        nccl = await ck.nccl_check_async([local], timeout=60, failure_grace=2)
        hb.cancel()
        return facts, run, nccl, beats

    facts, run, nccl, beats = asyncio.run(main())
    assert [f.host for f in facts] == [local.name] and facts[0].ok
    assert isinstance(run, ck.PreflightRun) and run.report.hosts == ["me"]
    # Probes not asked for: None, and the reason said (the checks say it too).
    assert run.probes.ports is None and run.probes.nas is None
    assert run.probes.ports_skipped and run.probes.nas_skipped, repr(run.probes)
    assert isinstance(nccl, ck.NcclCheckResult)
    assert beats > 3
    # Cancelling the task stops the commands on the host before it ends.

    async def cancelled() -> float:
        import time

        task = asyncio.create_task(ck.gather_facts_async([local], timeout=60))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - t0

    assert asyncio.run(cancelled()) < 5.0


# ---------------------------------------------------------------------------
# Preflight on the lab (root)


@pytest.fixture(scope="module")
def inventory(lab: ck.LabStatus) -> Iterator[ck.Inventory]:
    """The lab's inventory with roles and simulated GPUs (no NAS, no Docker)."""
    base = lab.inventory()
    assert [h.name for h in base.hosts] == ["h1", "h2"]
    text = (
        "defaults:\n"
        "  user: root\n"
        f"  identity_file: {lab.identity_file}\n"
        f"  known_hosts_file: {lab.known_hosts_file}\n"
        "  host_key_policy: strict\n"
        "  vars: {runtime: none}\n"
        "hosts:\n"
        f"  h1: {{address: {base.find('h1').spec.address}, roles: [head, gpu],"
        " gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
        f"  h2: {{address: {base.find('h2').spec.address}, roles: [worker, gpu],"
        " gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n"
    )
    inv = ck.Inventory.parse(text, "tpyf-derived")
    yield inv
    for host in inv.hosts_for():
        host.disconnect()


def test_a_shared_connection_is_never_borrowed_by_other_ssh_settings(lab: ck.LabStatus, tmp_path: Path) -> None:
    # Two handles to one address: the lab's (its known_hosts, strict) and
    # one whose known_hosts is empty, strict too. The second must not ride
    # on the first one's open connection: ssh would refuse it on its own.
    address = lab.inventory().find("h1").spec.address
    trusted = ck.Host(name="trusted", address=address, user="root", identity_file=lab.identity_file,
                      known_hosts_file=lab.known_hosts_file, host_key_policy="strict")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    stranger = ck.Host(name="stranger", address=address, user="root", identity_file=lab.identity_file,
                       known_hosts_file=empty, host_key_policy="strict")
    tuned = ck.Host(name="tuned", address=address, user="root", identity_file=lab.identity_file,
                    known_hosts_file=lab.known_hosts_file, host_key_policy="strict", ssh_options=["IPQoS=none"])
    try:
        assert trusted.run(["true"]).exit_code == 0  # its connection is up now
        with pytest.raises(ck.Error) as e:
            stranger.run(["true"])
        assert e.value.code == "host_key_unknown", e.value
        assert not empty.read_text()  # strict: nothing was learned either
        # Other ssh_options: its own connection, and closing it leaves the first one's.
        assert tuned.run(["true"]).exit_code == 0
        tuned.disconnect()
        assert trusted.run(["true"]).exit_code == 0
        stranger.disconnect()  # never connected: closes nothing of the others
        assert trusted.run(["true"]).exit_code == 0
    finally:
        for h in (trusted, stranger, tuned):
            h.disconnect()


def test_gather_facts_on_the_lab(inventory: ck.Inventory) -> None:
    outcomes = inventory.gather_facts(peers=[f"{SUBNET}.11"])
    assert [o.host for o in outcomes] == ["h1", "h2"]
    for o in outcomes:
        assert o.ok, o.message
        f = o.facts
        assert f.hostname == o.host
        assert f.gpus_simulated and len(f.gpus) == 2
        assert all(g.simulated and g.memory_total_bytes == 46068 << 20 for g in f.gpus)
        (route,) = f.routes
        assert route["interface"] == "eth0"
    assert outcomes[0].facts.routes[0]["local"]
    assert outcomes[1].facts.routes[0]["source_address"] == f"{SUBNET}.12"


def test_preflight_passes_on_the_lab_with_simulated_gpus(inventory: ck.Inventory) -> None:
    run = inventory.preflight(disk_paths=["/"], disk_min_free_gib=1)
    assert isinstance(run, ck.PreflightRun)
    r = run.report
    assert isinstance(r, ck.CheckReport)
    table = r.table()
    assert r.ok and run.ok, table
    assert r.count("fail") == 0, table
    assert r.head == "h1"
    assert r.hosts == ["h1", "h2"]
    statuses = {res.status for res in r.results}
    assert "simulated" in statuses and "pass" in statuses and "fail" not in statuses
    for h in ("h1", "h2"):
        gpus = r.find(h, "gpus")
        assert isinstance(gpus, ck.CheckResult)
        assert gpus.status == "simulated" and "2x L20 45.0 GiB (simulated" in gpus.message
        assert r.find(h, "driver").status == "simulated"
        assert r.find(h, "cuda").status == "simulated"
        for check in ("ssh", "role", "python", "shm", "disk", "network", "ray-port", "nccl-ports", "clock"):
            res = r.find(h, check)
            assert res is not None, f"{h} {check}\n{table}"
            assert res.status == "pass", f"{h} {check}: {res.message}"
        assert r.find(h, "docker").status == "skip"  # runtime: none
    assert r.find("h1", "no-such-check") is None
    assert r.recommended_env["h1"]["VLLM_HOST_IP"] == f"{SUBNET}.11"
    assert r.recommended_env["h2"]["VLLM_HOST_IP"] == f"{SUBNET}.12"
    assert r.recommended_env["h2"]["NCCL_SOCKET_IFNAME"] == "eth0"
    assert "simulated" in table
    # The probes were real connections from h2 to the head's Ray port.
    assert run.probes.ports is not None, run.probes.ports_skipped
    probes = run.probes.ports.probes
    assert any(p.source == "h2" and p.target == "h1" and p.purpose == "ray" and p.ok and p.port == 6379 for p in probes), probes
    assert run.probes.ports.head == "h1"
    assert all(listener.started and not listener.busy for listener in run.probes.ports.listeners), run.probes.ports.listeners
    # Typed, and the same as the dict form; read as a dict still works.
    assert run.probes.ports.to_json() == run.to_json()["probes"]["ports"]
    assert run.probes["ports"]["probes"][0]["from"] == probes[0].source
    with pytest.raises(KeyError):
        run.probes["ports"]["probes"][0]["nothing"]
    assert [f.host for f in run.facts] == ["h1", "h2"]
    assert all(f.facts.gpus_simulated for f in run.facts)
    j = run.to_json()
    assert j["ok"] is True and j["facts"][0]["gpus"][0]["simulated"] is True
    assert j["counts"]["fail"] == 0 and j["counts"]["simulated"] >= 6
    copy = assert_pickles(run)  # the probes too, field by field
    assert [repr(p) for p in copy.probes.ports.probes] == [repr(p) for p in probes]
    with pytest.raises(ValueError):
        r.count("great")


def test_preflight_fails_on_a_too_small_shm_with_the_fix(inventory: ck.Inventory) -> None:
    # Nothing is changed on the hosts: the minimum is set above any /dev/shm.
    run = ck.run_preflight(inventory, "all", shm_min_gib=100000, disk_paths=["/"], disk_min_free_gib=1)
    r = run.report
    assert not r.ok
    fails = [(res.host, res.check) for res in r.results if res.status == "fail"]
    assert fails == [("h1", "shm"), ("h2", "shm")], r.table()
    shm = r.find("h2", "shm")
    assert "below" in shm.message and shm.fix
    assert "mount -o remount,size=" in shm.fix
    # The same run on one host through a selector and through InventoryHost objects.
    one = ck.run_preflight(inventory, "h2", shm_min_gib=100000, probe_ports=False)
    assert one.report.hosts == ["h2"]
    again = ck.run_preflight(inventory.select("h2"), shm_min_gib=100000, probe_ports=False)
    assert again.report.find("h2", "shm").status == "fail"
    with pytest.raises(ValueError):
        ck.run_preflight(inventory.select("h2"), "h1")
    with pytest.raises(ValueError):
        ck.run_preflight(inventory, container_runtime="podman")


def test_nccl_check_hosts_and_nas_clients_from_an_inventory(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts: {w1: {roles: [worker]}, head: {roles: [head]}, nas: {roles: [nas]}}\n")
    inv = ck.Inventory.load(str(path))
    assert [h.name for h in ck.nccl_check_hosts(inv)] == ["head", "w1"]
    assert [h.name for h in ck.nccl_check_hosts(inv, "w1")] == ["w1"]
    with pytest.raises(ck.Error, match="selects no host"):
        ck.nccl_check_hosts(inv, "role:download")
    clients, skipped = ck.nas_clients(inv.hosts)
    assert [h.name for h in clients] == ["w1", "head"] and skipped == ["nas"]


def test_ctrl_c_stops_preflight_and_waits_for_it() -> None:
    # The one Ctrl-C rule for blocking calls: the operation is cancelled and
    # waited for (not abandoned to finish in the background), then
    # KeyboardInterrupt propagates; the next call works.
    inventory = ck.Inventory.parse("hosts:\n  me: {local: true}\n", "me.yaml")
    # A second or more: the facts script, the port probes.
    assert_ctrl_c_stops(lambda: ck.run_preflight(inventory, probe_nas=False))
    again = ck.run_preflight(inventory, probe_nas=False, probe_ports=False)
    assert any(r.host == "me" for r in again.report.results)
