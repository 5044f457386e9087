"""NasMount and ModelStore from Python, on this machine (no lab needed).

Downloads go through the real hub CLIs (hf, modelscope) in /opt/ck-hubcli/bin
to tests/fixtures/fake_hub.py on 127.0.0.1; copies through the real rsync;
checks through the same scripts a remote host runs, on a local Host. The NAS
tests change nothing on the machine: they check and unmount plain folders
and are refused where a mount would hide files.

    PYTHONPATH=build-py/python python3 -m pytest tests/python/test_store.py -q
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import hub_cli
from fake_hub_process import FakeHub, make_test_model  # noqa: E402
from waiting import pids_mentioning, tcp_sockets, wait_until

from pickles import assert_pickles

import clusterkit as ck

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = "Qwen/Tiny2.5-Test"
SHARDS = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]



# The download tests drive the real hub CLIs: the pinned ones that
# scripts/install-deps.sh puts in /opt/ck-hubcli/bin, one of the places the
# library looks. With PATH and HOME of their own, no other hf or modelscope (on
# the caller's PATH, in ~/.local/bin) can stand in for them, and no login or
# cache of the caller's is seen.
needs_hub_cli = pytest.mark.usefixtures("hub_clis")


@pytest.fixture
def hub_clis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub_cli("hf")
    hub_cli("modelscope")
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_sums(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, skipping hidden ones (the CLIs' .cache and markers)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = _sha256(p)
    return out


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("hub-root")
    return root, make_test_model(root / REPO, total_mb=3, shards=3)


@pytest.fixture
def hub(hub_root: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub(hub_root[0], tmp_path) as h:
        yield h


@pytest.fixture(scope="module")
def model_dir(hub_root: tuple[Path, dict[str, str]]) -> Path:
    """The test model as a hub holds it: what a download yields."""
    return hub_root[0] / REPO


def _source_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())


# ---------------------------------------------------------------------------
# download through the real CLIs
# ---------------------------------------------------------------------------
@needs_hub_cli
@pytest.mark.parametrize("hub_name", ["huggingface", "modelscope"])
def test_download_through_the_hub_cli(hub_name: str, hub: FakeHub, local: ck.Host, tmp_path: Path,
                                      hub_root: tuple[Path, dict[str, str]], model_dir: Path) -> None:
    _, sums = hub_root
    token = f"ck-secret-{hub_name}-7f3a"
    dest = tmp_path / "dl"
    spec = ck.DownloadSpec(REPO, hub=hub_name, endpoint=hub.url, token=token, local_dir=dest, attempts=1)
    assert spec.hub == getattr(ck.Hub, hub_name) and spec.local_dir == str(dest)
    progress: list[ck.TransferProgress] = []
    store = ck.ModelStore(tmp_path / "store")

    result = store.download(local, spec, on_progress=progress.append)

    assert result.ok and result.error is None and bool(result), result.message
    assert result.host == "me" and result.dir == str(dest) and result.attempts == 1
    assert result.cli.split()[0] == ("hf" if hub_name == "huggingface" else "modelscope")
    assert result.files == 6 and result.bytes == _source_bytes(model_dir)
    assert _tree_sums(dest) == sums
    assert result.verify is not None and result.verify.ok and result.verify.shards_checked == 3
    assert f"{result.files} files" in result.message

    # progress: called on the way, the last call says everything arrived
    assert progress and all(isinstance(p, ck.TransferProgress) for p in progress)
    assert {p.phase for p in progress} == {"download"} and {p.host for p in progress} == {"me"}
    last = progress[-1]
    assert (last.bytes_done, last.bytes_total, last.files_done, last.files_total) == (result.bytes, result.bytes, 6, 6)
    assert last.to_json()["bytes_done"] == result.bytes and last.elapsed >= 0

    # the token reached the hub on every request for the model, and nowhere else
    asked = [r for r in hub.requests() if r["api"] in ("hf", "ms", "cdn") and r.get("repo") == REPO]
    assert asked and all(r["authorization"] == f"Bearer {token}" for r in asked)
    assert spec.token == token
    for text in (repr(spec), repr(result), json.dumps(result.to_json()), result.message, str(progress[-1].to_json()),
                 ck.download_script(spec, str(dest)), repr(ck.download_environment(spec))):
        assert token not in text
    assert "token='***'" in repr(spec)
    assert result.to_json()["ok"] is True and result.to_json()["files"] == 6
    copy = assert_pickles(result)
    assert copy.verify is not None and copy.verify.shards_checked == 3
    assert_pickles(progress[-1])


@needs_hub_cli
@pytest.mark.parametrize("hub_name", ["huggingface", "modelscope"])
def test_download_of_an_unknown_model_fails_with_download_failed(hub_name: str, hub: FakeHub, local: ck.Host,
                                                                 tmp_path: Path) -> None:
    spec = ck.DownloadSpec("Qwen/NoSuchModel", hub=hub_name, endpoint=hub.url, local_dir=tmp_path / "nope",
                           attempts=3, retry_delay=0)
    # The blocking rule: a download that failed raises; the result rides along.
    with pytest.raises(ck.Error) as raised:
        ck.ModelStore("/mnt").download(local, spec)
    result = raised.value.result
    assert isinstance(result, ck.DownloadResult)
    assert str(raised.value) == result.message
    assert not result.ok and not result
    assert isinstance(result.error, ck.Error) and result.error.code == "download_failed"
    assert "Qwen/NoSuchModel" in result.message and result.error.message == result.message
    assert result.attempts == 1  # the hub said no: not worth repeating
    assert assert_pickles(result).error.code == "download_failed"
    j = result.to_json()
    assert j["ok"] is False and j["error"] and j["files"] == 0


def test_a_download_spec_that_cannot_work_raises_before_anything_runs(local: ck.Host) -> None:
    store = ck.ModelStore("/mnt")
    with pytest.raises(ck.Error) as e:
        store.download(local, ck.DownloadSpec("not-an-id", local_dir="/tmp/x"))
    assert e.value.code == "invalid_argument" and "ORG/NAME" in e.value.message
    with pytest.raises(ck.Error) as e:
        store.download(local, ck.DownloadSpec(REPO, local_dir="relative/dir"))
    assert e.value.code == "invalid_argument" and "absolute" in e.value.message
    with pytest.raises(ck.Error) as e:
        store.download(local, ck.DownloadSpec(REPO, endpoint="ftp://mirror", local_dir="/tmp/x"))
    assert e.value.code == "invalid_argument" and "http://" in e.value.message
    with pytest.raises(ValueError):
        ck.DownloadSpec(REPO, attempts=0)
    with pytest.raises(ValueError):
        ck.DownloadSpec(REPO, hub="github")
    with pytest.raises(TypeError):
        store.download(local, "Qwen/Tiny2.5-Test")  # type: ignore[arg-type]


def test_download_spec_fields_and_the_store_layout() -> None:
    spec = ck.DownloadSpec(REPO, hub="hf", revision="v1", include=["*.json"], timeout=90.5, retry_delay=1)
    assert spec.hub == ck.Hub.huggingface and spec.timeout == 91.0 and spec.retry_delay == 1.0
    spec.hub = "ms"
    spec.timeout = None
    assert spec.hub == ck.Hub.modelscope and spec.timeout is None
    assert repr(spec) == "DownloadSpec('Qwen/Tiny2.5-Test', hub='modelscope', revision='v1', include=['*.json'], retry_delay=1.0)"
    args = ck.download_arguments(spec, "modelscope", "/data/m")
    assert args[:2] == ["download", REPO] and "v1" in args and "/data/m" in args
    store = ck.ModelStore(root="/mnt/models", container_root="/models")
    assert store.path_for("Qwen/Qwen2.5-72B-Instruct") == "/mnt/models/Qwen/Qwen2___5-72B-Instruct"
    assert store.container_path("/mnt/models/Qwen/Qwen2___5-72B-Instruct") == "/models/Qwen/Qwen2___5-72B-Instruct"
    assert ck.ModelStore(ck.ModelStoreSpec("/mnt", layout="plain")).path_for("Qwen/Qwen2.5-7B") == "/mnt/Qwen/Qwen2.5-7B"
    with pytest.raises(ck.Error) as e:
        ck.ModelStore("relative")
    assert e.value.code == "invalid_argument"


# ---------------------------------------------------------------------------
# copy into the "NAS" and verify from the host
# ---------------------------------------------------------------------------
def test_sync_copies_resumes_and_repairs(local: ck.Host, model_dir: Path, tmp_path: Path,
                                         hub_root: tuple[Path, dict[str, str]]) -> None:
    _, sums = hub_root
    total = _source_bytes(model_dir)
    store = ck.ModelStore(tmp_path / "nas", container_root="/models")
    dest = Path(store.path_for(REPO))
    assert dest == tmp_path / "nas" / "Qwen" / "Tiny2___5-Test"
    spec = ck.SyncSpec(model_dir, dest, streams=3)
    progress: list[ck.TransferProgress] = []

    first = store.sync(local, spec, on_progress=progress.append)
    assert first.ok and first.error is None, first.message
    assert (first.files, first.bytes, first.streams) == (6, total, 3)
    assert (first.files_transferred, first.bytes_transferred) == (6, total)
    assert first.verify is not None and first.verify.ok
    assert _tree_sums(dest) == sums
    assert progress and {p.phase for p in progress} == {"copy"}
    assert (progress[-1].bytes_done, progress[-1].bytes_total, progress[-1].files_done) == (total, total, 6)
    # rsync names each file as its copy begins: the progress carries it.
    named = {p.file for p in progress if p.file}
    assert named and named <= {str(f.relative_to(model_dir)) for f in model_dir.rglob("*") if f.is_file()}

    second = store.sync(local, spec)
    assert second.ok and (second.files_transferred, second.bytes_transferred) == (0, 0) and second.files == 6
    assert_pickles(first)

    shard = dest / SHARDS[1]
    size = shard.stat().st_size
    os.truncate(shard, size - 100)
    seen = store.verify([local], dest)
    assert len(seen) == 1 and not seen[0].ok
    v = seen[0]
    assert v.host == "me" and v.dir == str(dest) and v.container_path == "/models/Qwen/Tiny2___5-Test"
    assert v.error is not None and v.error.code == "model_incomplete"
    assert [(p.kind, p.file) for p in v.report.problems] == [("truncated", SHARDS[1])]
    assert "100 bytes missing" in v.report.problems[0].message
    assert v.to_json()["ok"] is False and v.to_json()["report"]["problems"][0]["kind"] == "truncated"
    assert assert_pickles(v).error.code == "model_incomplete"

    repaired = store.sync(local, spec)
    assert repaired.ok and repaired.files_transferred == 1 and repaired.bytes_transferred == size
    assert _tree_sums(dest) == sums
    checked: list[ck.TransferProgress] = []
    assert all(v.ok and v.error is None for v in store.verify([local], dest, ck.RemoteVerifyOptions(read_all=True),
                                                             on_progress=checked.append))
    # Each shard read is reported by name, then the host's end.
    assert {p.phase for p in checked} == {"verify"} and {p.host for p in checked} == {"me"}
    assert [p.file for p in checked[:-1]] == sorted(SHARDS)
    assert checked[-1].files_done == checked[-1].files_total == len(SHARDS) and checked[-1].file == ""
    shard_bytes = sum((dest / s).stat().st_size for s in SHARDS)
    assert checked[-1].bytes_done == checked[-1].bytes_total == shard_bytes
    # A FIFO under a shard's name (left out of the model, as inspect says) is
    # never read, and not counted in what read_all reads.
    os.mkfifo(dest / "zz-fifo.safetensors")
    try:
        with_fifo: list[ck.TransferProgress] = []
        [v] = store.verify([local], dest, ck.RemoteVerifyOptions(read_all=True, timeout=30), on_progress=with_fifo.append)
        assert v.ok, v.message
        assert [p.file for p in with_fifo if p.file] == sorted(SHARDS)
        assert max(p.files_total for p in with_fifo) == len(SHARDS)
        assert max(p.bytes_total for p in with_fifo) == shard_bytes
    finally:
        (dest / "zz-fifo.safetensors").unlink()
    # Without read_all, once per host, at its end.
    quick: list[ck.TransferProgress] = []
    store.verify([local, local], dest, on_progress=quick.append)
    assert len(quick) == 2 and all(p.files_done == len(SHARDS) for p in quick)


def test_sync_failures_raise_with_the_result(local: ck.Host, model_dir: Path, tmp_path: Path) -> None:
    store = ck.ModelStore("/mnt")
    with pytest.raises(ck.Error) as raised:
        store.sync(local, ck.SyncSpec(tmp_path / "nothing-here", tmp_path / "to"))
    missing = raised.value.result
    assert raised.value.code == "copy_failed"
    assert not missing.ok and missing.error is not None and missing.error.code == "copy_failed"
    assert str(tmp_path / "nothing-here") in missing.message
    with pytest.raises(ValueError) as bad:  # clusterkit.InvalidArgument is a ValueError
        store.sync(local, ck.SyncSpec(model_dir, model_dir / "inside"))
    overlap = bad.value.result
    assert isinstance(bad.value, ck.InvalidArgument)
    assert overlap.error is not None and overlap.error.code == "invalid_argument" and "overlap" in overlap.message
    with pytest.raises(ValueError):
        ck.SyncSpec(model_dir, tmp_path, streams=0)


def test_an_exception_in_on_progress_stops_the_copy_and_is_raised(local: ck.Host, model_dir: Path,
                                                                   tmp_path: Path) -> None:
    calls = []

    def explode(p: ck.TransferProgress) -> None:
        calls.append(p)
        raise RuntimeError("stop right there")

    store = ck.ModelStore("/mnt")
    with pytest.raises(RuntimeError, match="stop right there"):
        store.sync(local, ck.SyncSpec(model_dir, tmp_path / "a", streams=2), on_progress=explode)
    assert len(calls) == 1  # later calls are skipped once one raised
    # and everything still works afterwards
    again = store.sync(local, ck.SyncSpec(model_dir, tmp_path / "b", streams=2))
    assert again.ok and again.files_transferred == 6


# ---------------------------------------------------------------------------
# asyncio forms
# ---------------------------------------------------------------------------
@needs_hub_cli
def test_async_download_and_verify(hub: FakeHub, local: ck.Host, tmp_path: Path,
                                   hub_root: tuple[Path, dict[str, str]]) -> None:
    _, sums = hub_root
    store = ck.ModelStore(tmp_path / "nas")
    other = ck.Host(ck.HostSpec.local_machine("other"))

    async def main() -> tuple[ck.DownloadResult, list[ck.HostVerify], set[int], int]:
        threads: set[int] = set()

        def on_progress(p: ck.TransferProgress) -> None:
            threads.add(threading.get_ident())

        spec = ck.DownloadSpec(REPO, hub="modelscope", endpoint=hub.url)  # local_dir: the store's folder
        got = await store.download_async(local, spec, on_progress=on_progress)
        seen = await store.verify_async([local, other], got.dir)
        return got, seen, threads, threading.get_ident()

    got, seen, threads, loop_thread = asyncio.run(main())
    assert got.ok, got.message
    assert got.dir == store.path_for(REPO) == str(tmp_path / "nas" / "Qwen" / "Tiny2___5-Test")
    assert _tree_sums(Path(got.dir)) == sums
    assert threads == {loop_thread}  # progress runs on the loop's thread
    assert [v.host for v in seen] == ["me", "other"] and all(v.ok for v in seen)
    assert all(v.report.shards_checked == 3 for v in seen)


@needs_hub_cli
def test_cancelling_an_async_download_stops_it(hub_root: tuple[Path, dict[str, str]], local: ck.Host,
                                               tmp_path: Path) -> None:
    with FakeHub(hub_root[0], tmp_path, "--throttle", "100000") as slow:  # about 30 s for the model
        dest = tmp_path / "slow"
        spec = ck.DownloadSpec(REPO, hub="huggingface", endpoint=slow.url, local_dir=dest, attempts=1)

        async def main() -> None:
            await asyncio.wait_for(ck.ModelStore("/mnt").download_async(local, spec), timeout=2)

        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(main())
        assert time.monotonic() - started < 15
        # The CLI was stopped: no process downloads into dest any more...
        assert wait_until(lambda: not pids_mentioning(str(dest)), 10), pids_mentioning(str(dest))
        # ...and every response it had open is logged: the server logs a request cut
        # short when it notices, then closes its side (ESTABLISHED, or CLOSE_WAIT once the
        # client closed, until then).
        assert wait_until(lambda: tcp_sockets(slow.port, local=True, states=("01", "08")) == 0, 10)
        n = len(slow.requests())
        assert n > 0 and any(r.get("client_gone") for r in slow.requests())
        assert len(slow.requests()) == n  # nothing asks the hub any more: the CLI was stopped
    assert not all((dest / s).exists() for s in SHARDS)


def test_async_nas_check_and_unmount_of_a_plain_folder(tmp_path: Path) -> None:
    a = ck.Host(ck.HostSpec.local_machine("a"))
    b = ck.Host(ck.HostSpec.local_machine("b"))
    nas = ck.NasMount(kind="bind", mount_point=tmp_path)

    async def main() -> tuple[ck.NasCheckReport, list[ck.MountOutcome]]:
        return await nas.check_async([a, b]), await nas.unmount_async([a], ck.UnmountOptions(lazy=True))

    report, unmounted = asyncio.run(main())
    assert report.path == str(tmp_path) and [h.host for h in report.hosts] == ["a", "b"]
    # both "hosts" are this machine: each sees the other's token file in the folder
    for view in report.hosts:
        assert view.sees == ["a", "b"] and view.misses == [] and not view.mounted and view.problem == ""
    assert report.to_json()["ok"] == report.ok and list(tmp_path.iterdir()) == []  # token files cleaned up
    assert [(o.host, o.action, o.ok) for o in unmounted] == [("a", "nothing", True)]
    assert unmounted[0].error is None and unmounted[0].entry is None and "nothing" in unmounted[0].message
    assert_pickles(report)
    assert_pickles(unmounted)


# ---------------------------------------------------------------------------
# NasMount on the local host (nothing is changed)
# ---------------------------------------------------------------------------
def test_nas_mount_refuses_a_folder_with_files(local: ck.Host, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    nas = ck.NasMount(ck.NasSpec("nfs", "127.0.0.1:/export", mount_point=tmp_path))
    [outcome] = nas.mount([local])
    assert outcome.host == "me" and outcome.action == "refuse" and not outcome.ok
    assert outcome.error is not None and outcome.error.code == "mount_conflict"
    assert "keep.txt" in outcome.message and "not empty" in outcome.message
    assert outcome.to_json()["action"] == "refuse"
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert nas.mount([]) == []
    # the same decision from the pure planner, fed by the real probe
    probe = ck.parse_mount_probe(local.run(script=ck.mount_probe_script(nas.spec)).stdout)
    assert probe.mount_point_exists and probe.mount_point_is_directory and not probe.mount_point_empty
    assert probe.mount_point_entries == ["keep.txt"] and probe.mounts
    plan = ck.plan_mount(nas.spec, probe, "me")
    assert plan.action == "refuse" and plan.refusal is not None and plan.refusal.code == "mount_conflict"


# ---------------------------------------------------------------------------
# pure pieces
# ---------------------------------------------------------------------------
def test_nas_spec_validation_names_the_expected_shape() -> None:
    with pytest.raises(ck.Error) as e:
        ck.NasMount(kind="nfs", source="10.0.0.5-share")
    assert e.value.code == "invalid_argument" and "SERVER:/EXPORT" in e.value.message
    with pytest.raises(ck.Error) as e:
        ck.NasMount(ck.NasSpec("sshfs", "no-path-here"))
    assert "[USER@]HOST:/PATH" in e.value.message
    with pytest.raises(ck.Error) as e:
        ck.NasMount(kind="nfs", source="10.0.0.5:/share", mount_point="relative")
    assert "absolute" in e.value.message
    with pytest.raises(ck.Error) as e:
        ck.validate_nas_spec(ck.NasSpec("nfs", "10.0.0.5:/share", nfs_version="5"))
    assert "NFS version" in e.value.message
    with pytest.raises(ck.Error):
        ck.validate_nas_spec(ck.NasSpec("nfs", ""))
    ck.validate_nas_spec(ck.NasSpec("nfs", ""), source_required=False)
    with pytest.raises(ValueError):
        ck.NasSpec("cifs", "x")
    with pytest.raises(TypeError):
        ck.NasMount(ck.NasSpec("nfs", "a:/b"), source="c:/d")
    assert ck.NasMount(kind="nfs", source="").spec.source == ""  # empty: fine for check and unmount


def test_nas_mount_argv_and_options() -> None:
    spec = ck.NasSpec("nfs", "10.0.0.5:/share")
    assert spec.kind == ck.NasKind.nfs and spec.mount_point == "/mnt" and spec.timeout == 120.0
    defaults = "vers=3,nolock,proto=tcp,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport"
    assert ck.nas_mount_argv(spec) == ["mount", "-t", "nfs", "-o", defaults, "10.0.0.5:/share", "/mnt"]
    assert ck.nas_mount_options(spec) == defaults.split(",")
    v41 = ck.NasSpec("nfs", "10.0.0.5:/share", nfs_version="4.1", options=["timeo=100", "noatime"], read_only=True)
    opts = ck.nas_mount_options(v41)
    assert opts[0] == "vers=4.1" and "nolock" not in opts and "timeo=100" in opts and "timeo=600" not in opts
    assert opts[-2:] == ["noatime", "ro"]
    line = ck.fstab_line(spec)
    assert line.startswith("10.0.0.5:/share /mnt nfs ") and "_netdev" in line
    sshfs = ck.NasSpec(ck.NasKind.sshfs, "root@10.0.0.5:/srv/nas", mount_point="/models", port=2222)
    argv = ck.nas_mount_argv(sshfs)
    assert argv[0] == "sshfs" and "root@10.0.0.5:/srv/nas" in argv and "/models" in argv
    assert "port=2222" in ",".join(argv)
    assert repr(sshfs) == "NasSpec('sshfs', 'root@10.0.0.5:/srv/nas', mount_point='/models', port=2222)"
    from_vars = ck.nas_spec_from_vars({"nas_export": "10.0.0.5:/share", "mount_point": "/models"}, "h1")
    assert (from_vars.kind, from_vars.source, from_vars.mount_point) == (ck.NasKind.nfs, "10.0.0.5:/share", "/models")
    with pytest.raises(ck.Error) as e:
        ck.nas_spec_from_vars({"nas_type": "smb"}, "h1")
    assert e.value.code == "inventory_invalid" and "h1" in e.value.message


def test_parse_mountinfo_and_plan_mount() -> None:
    text = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            "95 22 0:52 / /mnt/my\\040models rw,relatime shared:50 - nfs 10.0.0.5:/share rw,vers=3\n"
            "not a mountinfo line\n")
    mounts = ck.parse_mountinfo(text)
    assert [(m.id, m.mount_point, m.fstype, m.source) for m in mounts] == [
        (22, "/", "ext4", "/dev/sda1"), (95, "/mnt/my models", "nfs", "10.0.0.5:/share")]
    entry = ck.mount_at(mounts, "/mnt/my models")
    assert entry is not None and entry.id == 95 and ck.mount_at(mounts, "/srv") is None
    assert_pickles(mounts)

    same = ck.NasSpec("nfs", "10.0.0.5:/share", mount_point="/mnt/my models")
    probe = ck.MountProbe(mounts=mounts, mount_point_exists=True, mount_point_is_directory=True, uid=0)
    keep = ck.plan_mount(same, probe, "h1")
    assert keep.action == "keep" and keep.refusal is None and keep.script == ""
    other = ck.NasSpec("nfs", "10.0.0.9:/other", mount_point="/mnt/my models")
    refuse = ck.plan_mount(other, probe, "h1")
    assert refuse.action == "refuse" and refuse.refusal is not None and refuse.refusal.code == "mount_conflict"
    assert "10.0.0.5:/share" in refuse.reason
    fresh = ck.plan_mount(ck.NasSpec("nfs", "10.0.0.5:/share", mount_point="/data"), probe, "h1")
    assert fresh.action == "mount" and "mount" in fresh.script and "10.0.0.5:/share" in fresh.script
    not_root = ck.plan_mount(ck.NasSpec("nfs", "10.0.0.5:/share", mount_point="/data"), ck.MountProbe(uid=1000), "h1")
    assert not_root.action == "refuse" and "root" in not_root.reason
    no_helper = ck.MountProbe(mounts=mounts, helper_present=False, uid=0)
    missing = ck.plan_mount(ck.NasSpec("nfs", "10.0.0.5:/share", mount_point="/data"), no_helper, "h1")
    assert missing.action == "refuse" and missing.refusal is not None and missing.refusal.code == "program_missing"


def _segments(name: str) -> list[str]:
    text = (FIXTURES / "download-progress" / name).read_text(encoding="utf-8")
    return [ck.strip_ansi(s).strip() for s in re.split(r"[\r\n]", text)]


def test_parse_tqdm_bar_on_what_the_clis_printed() -> None:
    shard_bars = [b for s in _segments("modelscope-1.40.2.txt")
                  if (b := ck.parse_tqdm_bar(s)) is not None and b.label == "model-00002-of-00003.safetensors"]
    assert shard_bars and all(b.unit == "B" for b in shard_bars)
    last = shard_bars[-1]
    assert last.n == last.total == pytest.approx(2.00e6)
    counting = [b for s in _segments("hf-2.4.0-forced.txt")
                if (b := ck.parse_tqdm_bar(s)) is not None and b.label == "Fetching 5 files"]
    assert (counting[-1].n, counting[-1].total) == (5, 5) and counting[-1].unit != "B"
    assert ck.parse_tqdm_bar("2026-12-02 19:02:36,017 | INFO | Downloading 6 files") is None

    parser = ck.DownloadProgressParser()
    changed = [parser.feed(s) for s in _segments("modelscope-1.40.2.txt")]
    assert any(changed) and not all(changed)
    assert (parser.files_done, parser.files_total) == (6, 6)
    assert parser.bytes_done == parser.bytes_total > 6_000_000
    assert parser.current_file.endswith(".safetensors")


def test_rsync_progress_and_stats() -> None:
    text = (FIXTURES / "rsync" / "rsync-3.5.0-progress2.txt").read_text()
    bars = [p for s in re.split(r"[\r\n]", text) if (p := ck.parse_rsync_progress(s)) is not None]
    assert bars[0].bytes == 32_768 and bars[0].to_check is None
    last = bars[-1]
    assert (last.bytes, last.percent, last.transferred, last.to_check, last.total_files) == (30_001_000, 100, 2, 0, 2)
    stats = {n: ck.parse_rsync_stat(line, n) for line in text.splitlines()
             for n in ("Number of regular files transferred", "Total transferred file size")
             if ck.parse_rsync_stat(line, n) is not None}
    assert stats == {"Number of regular files transferred": 2, "Total transferred file size": 30_001_000}
    assert ck.parse_rsync_progress("sending incremental file list") is None


def test_plan_copy_streams() -> None:
    files = [("a", 10), ("b", 7), ("c", 5), ck.CopyItem("d", 3)]
    plan = ck.plan_copy_streams(files, 2)
    assert plan == [[ck.CopyItem("a", 10), ck.CopyItem("d", 3)], [ck.CopyItem("b", 7), ck.CopyItem("c", 5)]]
    sizes = [1 << 30, 900 << 20, 800 << 20, 700 << 20, 10 << 20, 4096, 700, 300]
    plan = ck.plan_copy_streams([(f"f{i}", s) for i, s in enumerate(sizes)], 3)
    assert len(plan) == 3 and all(plan)
    assert sorted(i.path for s in plan for i in s) == sorted(f"f{i}" for i in range(len(sizes)))
    totals = [sum(i.bytes for i in s) for s in plan]
    assert sum(totals) == sum(sizes) and max(totals) - min(totals) <= max(sizes)
    assert len(ck.plan_copy_streams([("only", 1)], 4)) == 1
    listing = ck.parse_file_listing("10\tconfig.json\n5\t.cache/huggingface/x.incomplete\n20\tmodel.safetensors\n")
    assert listing == [ck.CopyItem("config.json", 10), ck.CopyItem("model.safetensors", 20)]
    argv = ck.rsync_stream_argv(ck.SyncSpec("/a", "/b", checksum=True))
    assert argv[0] == "rsync" and "--files-from=-" in argv and "--checksum" in argv and argv[-2:] == ["/a/", "/b/"]


def test_snapshots_local_remote_and_by_hand(local: ck.Host, model_dir: Path, tmp_path: Path) -> None:
    snap = ck.read_model_snapshot(model_dir)
    assert snap.dir == str(model_dir) and [s.name for s in snap.shards] == SHARDS
    assert json.loads(snap.config_json or "")["model_type"] == "qwen2" and snap.index_json is not None
    report = ck.verify_snapshot(snap)
    assert report.ok and report.shards_checked == 3
    # the script a remote host runs, run here, parses to the same snapshot
    out = local.run(script=ck.model_snapshot_script(str(model_dir)))
    remote = ck.parse_model_snapshot(out.stdout)
    assert [(s.name, s.exists, s.size, s.head) for s in remote.shards] == \
        [(s.name, s.exists, s.size, s.head) for s in snap.shards]
    assert remote.config_json == snap.config_json and remote.index_json == snap.index_json

    # a hand-made snapshot whose second shard lost its tail
    shards = [ck.ModelSnapshot.Shard(s.name, exists=True, size=s.size, head=s.head) for s in snap.shards]
    shards[1].size -= 1
    broken = ck.ModelSnapshot(str(model_dir), config_json=snap.config_json, index_json=snap.index_json,
                              shards=shards)
    problems = ck.verify_snapshot(broken).problems
    assert [(p.kind, p.file) for p in problems] == [("truncated", SHARDS[1])]
    no_config = ck.verify_snapshot(ck.ModelSnapshot("/x", shards=shards))
    assert "config_missing" in [p.kind for p in no_config.problems]
    with pytest.raises(ck.Error) as e:
        ck.read_model_snapshot(tmp_path / "absent")
    assert e.value.code == "file_not_found" and isinstance(e.value, FileNotFoundError)
    with pytest.raises(ck.Error) as e:
        ck.parse_model_snapshot("this is not a snapshot")
    assert e.value.code == "parse_error"
