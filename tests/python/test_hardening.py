"""Issue 15's hostile and careless inputs through the Python API (the CLI's
answers are tests/cli/test_cli.sh): the same limits hold for the library.
Each case fails in well under a second with a sentence naming the limit;
nothing here needs a lab."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import clusterkit as ck


def refused(text: str) -> ck.Error:
    started = time.monotonic()
    with pytest.raises(ck.Error) as e:
        ck.Inventory.parse(text, "hostile.yaml")
    assert time.monotonic() - started < 5
    return e.value


def test_hostile_inventories_are_refused_fast_with_the_limit_named() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    assert "once its aliases (*name) are expanded" in str(refused(laughs + "hosts: {h: {address: 10.0.0.1}}\n"))
    assert "nesting deeper than 64 levels" in str(refused("hosts: " + "[" * 100 + "]" * 100 + "\n"))
    nul = refused("hosts:\n  a: {address: 10.0.\x000.1}\n")
    assert "hostile.yaml:2:" in str(nul) and "a NUL byte" in str(nul)
    tab = refused("hosts:\n\ta: {address: 10.0.0.1}\n")
    assert "indented with a tab; YAML indents with spaces only" in str(tab)
    option = refused('hosts:\n  a: {address: "-oProxyCommand=touch /tmp/x"}\n')
    assert "expected a host name or IP address" in str(option) and isinstance(option, ValueError)


def test_inventory_files_that_are_not_files(tmp_path: Path) -> None:
    with pytest.raises(ck.Error) as e:
        ck.Inventory.load("/dev/zero")
    assert "it is a device, not a regular file" in str(e.value)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ck.Error) as e:
        ck.Inventory.load(fifo)
    assert "it is a FIFO, not a regular file" in str(e.value) and time.monotonic() - started < 5


def test_captured_output_past_its_limit_is_flagged(local: ck.Host) -> None:
    r = local.run(["sh", "-c", "head -c 100000 /dev/zero; head -c 10 /dev/zero >&2"], max_captured_bytes=4096)
    assert r.exit_code == 0
    assert len(r.stdout_bytes) <= 4096 and r.stdout_truncated and not r.stderr_truncated


def test_upload_into_a_folder_keeps_the_name(local: ck.Host, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"w" * 100)
    folder = tmp_path / "dest"
    folder.mkdir()
    local.upload(src, str(folder))
    local.upload(src, str(folder) + "/")
    assert (folder / "weights.bin").read_bytes() == b"w" * 100
    assert sorted(os.listdir(folder)) == ["weights.bin"]  # no temporary name left behind


def test_a_manifest_that_points_out_of_the_folder_is_refused_never_read(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    digest = hashlib.sha256(b"").hexdigest()
    (model / "sha256sums").write_text(f"{digest}  /etc/hostname\n{digest}  ../../outside\n{digest}  /dev/zero\n")
    started = time.monotonic()
    report = ck.verify_model(model)
    assert time.monotonic() - started < 5  # /dev/zero was never read
    kinds = {(p.kind, p.file) for p in report.problems}
    assert ("manifest_invalid", "/etc/hostname") in kinds or any(
        p.kind == "manifest_invalid" and "/etc/hostname" in p.message for p in report.problems
    ), report.problems
    assert all("outside the model folder" in p.message or p.kind != "manifest_invalid" for p in report.problems)
    assert report.files_hashed == 0


def test_a_symlink_in_the_folder_to_a_file_outside_is_never_hashed(local: ck.Host, tmp_path: Path) -> None:
    # A name inside the folder, a file outside it: its hash would tell what
    # the file holds. Refused by the local check and by the one on a host;
    # a Hugging Face cache snapshot's links into its ../../blobs stay fine.
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for the manifest")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").symlink_to(secret)
    (model / "sha256sums").write_text(f"{hashlib.sha256(secret.read_bytes()).hexdigest()}  tokenizer.json\n")
    report = ck.verify_model(model)
    [p] = [p for p in report.problems if p.file == "tokenizer.json"]
    assert p.kind == "file_unreadable" and "leads outside the model folder (a symlink); not read" in p.message
    assert report.files_hashed == 0
    [seen] = ck.ModelStore(tmp_path).verify([local], str(model), ck.RemoteVerifyOptions(checksums=True))
    [p] = [p for p in seen.report.problems if p.file == "tokenizer.json"]
    assert "leads outside" in p.message and seen.report.files_hashed == 0
    assert not any("could not be hashed" in q.message for q in seen.report.problems)  # said once
    # The HF cache's own layout: snapshots/REV/file -> ../../blobs/SHA.
    cache = tmp_path / "models--Org--M"
    (cache / "blobs").mkdir(parents=True)
    snap = cache / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    blob = cache / "blobs" / "f00d"
    blob.write_bytes(b"weights")
    (snap / "vocab.json").symlink_to("../../blobs/f00d")
    (snap / "sha256sums").write_text(f"{hashlib.sha256(b'weights').hexdigest()}  vocab.json\n")
    cached = ck.verify_model(snap)
    assert cached.files_hashed == 1 and not any(p.file == "vocab.json" for p in cached.problems), cached.problems
    [remote] = ck.ModelStore(tmp_path).verify([local], str(snap), ck.RemoteVerifyOptions(checksums=True))
    assert remote.report.files_hashed == 1 and not any(p.file == "vocab.json" for p in remote.report.problems)


def test_stderr_without_a_final_newline_is_a_result_not_a_lost_connection(local: ck.Host) -> None:
    # Once `connection_lost` (exit -1): the wrapper's end shared the line.
    r = local.run(["sh", "-c", "printf 'no newline' >&2; exit 4"])
    assert (r.exit_code, r.stderr) == (4, "no newline")


def test_a_jump_host_that_fails_is_asked_why() -> None:
    # OpenSSH drops the jump's own words under shared connections; the jump
    # host is then asked alone, and its answer is the error.
    host = ck.Host(name="behind", address="127.0.0.1", port=1, jump_host="nosuch-jump.invalid", connect_timeout=5)
    started = time.monotonic()
    with pytest.raises(ck.Error) as e:
        host.run(["true"], timeout=20)
    assert time.monotonic() - started < 15
    assert e.value.code == "name_resolution_failed", e.value
    assert "the jump host nosuch-jump.invalid did not connect us to 127.0.0.1 port 1" in str(e.value)
    assert "Could not resolve hostname nosuch-jump.invalid" in str(e.value)


def test_numbers_out_of_range_are_refused_by_the_library_before_anything_connects(local: ck.Host, tmp_path: Path) -> None:
    # The same ranges as the CLI's flags, for API users: an unreachable host
    # would answer with a connection error; these answer with the setting.
    nowhere = ck.Inventory.parse(
        "hosts:\n  h: {address: 127.0.0.1, port: 1, user: root, gpus: {count: 2, model: L20}}\n", "nowhere.yaml")
    for kwargs, said in [
        ({"ray_port": 0}, "ray_port 0 is not a TCP port (1-65535"),
        ({"rdzv_port": 70000}, "rdzv_port 70000 is not a TCP port"),
        ({"shm_min_gib": math.nan}, "shm_min_gib must be between 0 and 1048576 GiB, not nan"),
        ({"disk_min_free_gib": -1.0}, "disk_min_free_gib must be between 0 and 1048576 GiB, not -1"),
        ({"max_clock_offset_seconds": math.inf}, "max_clock_offset_seconds must be above 0 and at most 86400, not inf"),
        ({"max_model_len": 0}, "max_model_len must be at least 1"),
        ({"ephemeral_ports": 1000}, "ephemeral_ports must be at most 64"),
    ]:
        t0 = time.monotonic()
        with pytest.raises(ValueError, match=re.escape(said)):
            ck.run_preflight(nowhere, **kwargs)
        assert time.monotonic() - t0 < 2, kwargs
    # Python: arguments out of range are a ValueError before anything runs
    # (C++'s async_nccl_check reports them as the result's problem).
    for kwargs, said in [
        ({"rdzv_port": 0}, "rdzv_port 0 is not a TCP port"),
        ({"nproc_per_node": 5000}, "nproc_per_node 5000 is more GPUs than a host has"),
        ({"iterations": 0}, "iterations must be between 1 and 1000000, not 0"),
        ({"sizes": [0]}, "a bandwidth size of 0 bytes is out of range"),
    ]:
        with pytest.raises(ValueError, match=re.escape(said)) as e:
            ck.nccl_check([local], **kwargs)
        assert isinstance(e.value, ck.Error) and e.value.code == "invalid_argument"
    # A copy with no stream, or thousands: refused with the setting named.
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(ValueError, match="streams must be >= 1"):
        ck.SyncSpec(src, tmp_path / "dst", streams=0)
    with pytest.raises(ck.Error) as e:
        ck.ModelStore(str(tmp_path)).sync(local, ck.SyncSpec(src, tmp_path / "dst", streams=100000))
    assert e.value.code == "invalid_argument" and isinstance(e.value, ValueError)
    assert "streams must be between 1 and 256, not 100000" in str(e.value)
    assert not (tmp_path / "dst").exists()
    with pytest.raises(ck.Error, match="attempts must be between 1 and 100, not 1000"):
        ck.ModelStore("/mnt").download(local, ck.DownloadSpec("Qwen/X", local_dir=str(tmp_path / "d"), attempts=1000))


def test_a_ray_program_named_with_quotes_is_never_run_as_shell(tmp_path: Path) -> None:
    # The Ray probe (run here with sh: it only reads) once spliced the ray
    # program's name into a single-quoted echo; a quote in it ended ours.
    mark = tmp_path / "pwned"
    spec = ck.RayClusterSpec()
    spec.runtime = ck.RayRuntimeKind.bare
    for name in (f"x'$(touch {mark})'", f"x'`touch {mark}`'", f'x"$(touch {mark})"'):
        spec.ray_command = name
        out = subprocess.run(["sh", "-c", ck.ray_probe_script(spec, "127.0.0.1", True)], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path).stdout
        assert not mark.exists(), f"the ray program's name ran as shell: {name!r}"
        probe = ck.parse_ray_probe("h1", out)
        assert probe.ray_error == f"{name} not found", probe.ray_error


def test_a_line_without_end_is_passed_on_in_pieces_not_held_whole(local: ck.Host) -> None:
    # 5 MiB without a newline: the line callback gets pieces of at most 1
    # MiB (memory stays bounded for `cat /dev/zero`), and every byte arrives.
    pieces: list[int] = []
    r = local.run(["sh", "-c", "head -c 5242880 /dev/zero | tr '\\0' a"], on_line=lambda stream, text: pieces.append(len(text)))
    assert r.exit_code == 0
    assert sum(pieces) == 5 * 1024 * 1024 and max(pieces) <= 1024 * 1024 and len(pieces) >= 5, pieces
    # The same on stderr, whose capture is built from lines: byte for byte,
    # no newline added between the pieces.
    r = local.run(["sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' a >&2; echo done >&2"])
    assert r.stderr == "a" * 3145728 + "done\n"


def test_a_value_of_the_wrong_type_is_a_type_error_naming_the_field() -> None:
    # Found by tests/python/fuzz_api.py: a str here raised pybind11's
    # RuntimeError ("Unable to cast ... to C++ type '?'").
    from fractions import Fraction

    spec = ck.DownloadSpec()
    with pytest.raises(TypeError, match="timeout must be a number, not str"):
        spec.timeout = ""
    with pytest.raises(TypeError, match="timeout must be a number, not bool"):
        spec.timeout = True
    spec.timeout = Fraction(3, 2)  # anything that is a number to Python is taken
    spec2 = ck.RayClusterSpec()
    spec2.ray_command = "ray\n@@ck-ray versions 3.11 9.9"
    with pytest.raises(ck.Error, match="has control characters"):
        ck.validate_ray_cluster_spec(spec2)
    assert spec.timeout == 2.0
    with pytest.raises(ValueError, match="out of range"):
        spec.timeout = 10**400
    # An error message never carries the ESC it quotes.
    with pytest.raises(ValueError) as e:
        ck.VolumeMount.parse("/a\x1b[2J:/b:rw")
    assert "\x1b" not in str(e.value) and "?[2J" in str(e.value)
