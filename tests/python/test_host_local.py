"""clusterkit.Host on the local machine (no ssh): commands, output, errors,
callbacks, transfers, fan-out, the GIL and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from waiting import gone_within, wait_until

import clusterkit as ck


# A child in the background, its pid on stdout, then wait: stopping the
# command must take the child with it.
BACKGROUND_CHILD = "sleep 30 & echo $!; wait"


# ---------------------------------------------------------------------------
# HostSpec


def test_hostspec_keywords_round_trip(tmp_path: Path) -> None:
    spec = ck.HostSpec(
        "gpu1",
        "10.0.0.11",
        user="deploy",
        port=2222,
        identity_file=tmp_path / "id_ed25519",
        jump_host="bastion@10.0.0.254:2200",
        known_hosts_file=str(tmp_path / "known_hosts"),
        ssh_config_file=tmp_path / "config",
        host_key_policy="accept-new",
        connect_timeout=2.5,
        control_persist=60,
        server_alive_interval=5.0,
        server_alive_count=4,
        max_sessions=6,
        ssh_options=["Compression=yes"],
    )
    assert spec.name == "gpu1"
    assert spec.address == "10.0.0.11"
    assert spec.local is False
    assert spec.user == "deploy"
    assert spec.port == 2222
    assert spec.identity_file == str(tmp_path / "id_ed25519")
    assert spec.jump_host == "bastion@10.0.0.254:2200"
    assert spec.known_hosts_file == str(tmp_path / "known_hosts")
    assert spec.ssh_config_file == str(tmp_path / "config")
    assert spec.host_key_policy == "accept-new"
    assert spec.connect_timeout == 3.0  # whole seconds, rounded up
    assert spec.control_persist == 60.0
    assert spec.server_alive_interval == 5.0
    assert spec.server_alive_count == 4
    assert spec.max_sessions == 6
    assert spec.ssh_options == ["Compression=yes"]
    assert spec.display() == "deploy@10.0.0.11:2222"
    assert "gpu1" in repr(spec) and "port=2222" in repr(spec)

    import copy

    twin = copy.copy(spec)
    assert twin == spec and twin is not spec
    twin.port = 22
    assert twin != spec
    assert ck.HostSpec() == ck.HostSpec()


def test_hostspec_defaults_and_validation() -> None:
    spec = ck.HostSpec()
    assert (spec.name, spec.address, spec.port, spec.user) == ("", "", 0, "")
    assert spec.host_key_policy == "strict"
    assert spec.connect_timeout == 10.0
    assert spec.control_persist == 600.0
    assert spec.server_alive_interval == 3.0
    assert spec.server_alive_count == 3
    assert spec.max_sessions == 8
    assert spec.ssh_options == []
    spec.host_key_policy = "accept_new"
    assert spec.host_key_policy == "accept-new"
    with pytest.raises(ValueError, match="host_key_policy"):
        ck.HostSpec(host_key_policy="yolo")
    with pytest.raises(ValueError, match="port"):
        ck.HostSpec(port=70000)
    with pytest.raises(ValueError, match="connect_timeout"):
        ck.HostSpec(connect_timeout=-1)
    with pytest.raises(ValueError, match="max_sessions"):
        spec.max_sessions = 0
    with pytest.raises(TypeError):
        ck.HostSpec("a", "b", "positional-local-is-not-allowed")  # type: ignore


def test_local_machine_and_host_construction() -> None:
    spec = ck.HostSpec.local_machine("box")
    assert spec.local and spec.name == "box"
    assert ck.HostSpec.local_machine().name == "localhost"
    host = ck.Host(spec)
    assert host.name == "box"
    assert host.spec == spec
    kw = ck.Host(name="kw", local=True)
    assert kw.name == "kw" and kw.spec.local
    assert kw.run(["true"]).ok
    with pytest.raises(TypeError):
        ck.Host(spec, name="both")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        ck.Host(nonsense=1)  # type: ignore[call-overload]


def test_ssh_argv_and_control_path_for_remote_spec() -> None:
    host = ck.Host(name="r", address="192.0.2.7", user="ops", port=2200, ssh_options=["Compression=yes"])
    argv = host.ssh_argv()
    assert argv[0].endswith("ssh")
    assert "BatchMode=yes" in argv
    assert ["-l", "ops"] == argv[argv.index("-l") : argv.index("-l") + 2]
    assert ["-p", "2200"] == argv[argv.index("-p") : argv.index("-p") + 2]
    assert "Compression=yes" in argv
    assert f"ControlPath={host.control_path}" in argv
    assert os.path.basename(host.control_path).startswith("cm-")
    # Same spec, same socket: a later process finds the connection.
    assert ck.Host(host.spec).control_path == host.control_path
    assert host.connection_alive() is False
    host.disconnect()  # safe with nothing up


# ---------------------------------------------------------------------------
# Running commands


TRICKY = [
    "plain",
    "two words",
    "",
    "'single'",
    '"double"',
    "$HOME",
    "`id`",
    "$(id)",
    "a;b&&c|d",
    "*",
    "back\\slash",
    "new\nline",
    "tab\there",
    "-n",
    "--",
    "ünïcødé ✓",
    "!event",
    "{a,b}",
    "~",
]


def test_argv_with_tricky_characters_round_trips(local: ck.Host) -> None:
    r = local.run(["printf", r"%s\0", *TRICKY])
    assert r.exit_code == 0 and r.ok
    assert r.stdout_bytes.split(b"\0")[:-1] == [a.encode() for a in TRICKY]
    assert r.stdout.split("\0")[:-1] == TRICKY


def test_exit_codes_and_signals(local: ck.Host) -> None:
    r = local.run(["sh", "-c", "exit 3"])
    assert (r.exit_code, r.signal, r.ok) == (3, 0, False)
    assert local.run(["false"]).exit_code == 1
    assert local.run(script="exit 0").ok
    r = local.run(script="kill -TERM $$")
    assert r.signal == signal.SIGTERM
    assert not r.ok
    r = local.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 7)
    assert r.duration > 0 and r.message == ""
    missing = local.run(["/nonexistent/program"])
    assert missing.exit_code == 127


def test_env_cwd_stdin(local: ck.Host, tmp_path: Path) -> None:
    r = local.run(["sh", "-c", 'printf "%s|%s" "$CK_A" "$CK_B"'], env={"CK_A": "x y", "CK_B": "it's $HOME"})
    assert r.stdout == "x y|it's $HOME"
    assert local.run(["pwd"], cwd=tmp_path).stdout.strip() == str(tmp_path)
    assert local.run(["cat"], stdin="hello\nwörld").stdout == "hello\nwörld"
    blob = bytes(range(256)) * 100
    r = local.run(["cat"], stdin=blob)
    assert r.stdout_bytes == blob
    assert local.run(["cat"]).stdout == ""  # no stdin: /dev/null, returns at once
    with pytest.raises(TypeError, match="env values"):
        local.run(["true"], env={"N": 1})  # type: ignore[dict-item]


def test_invalid_utf8_output_is_kept(local: ck.Host) -> None:
    r = local.run(["printf", r"\377ok\n"])
    assert r.stdout_bytes == b"\xffok\n"
    assert r.stdout.encode("utf-8", "surrogateescape") == b"\xffok\n"


def test_bad_cwd_and_env_are_errors(local: ck.Host, tmp_path: Path) -> None:
    with pytest.raises(ck.Error) as e:
        local.run(["true"], cwd=tmp_path / "missing")
    assert e.value.code == "bad_working_directory"
    assert "missing" in str(e.value)
    with pytest.raises(ck.Error) as e:
        local.run(["true"], env={"NOT VALID": "1"})
    assert e.value.code == "bad_environment_name" and isinstance(e.value, ValueError)
    # The fan-out refuses it before any host is reached: one error, raised,
    # not one failure per host (these hosts do not exist: a connection would
    # say so instead).
    nowhere = ck.Inventory.parse("hosts:\n  a: {address: 127.0.0.1, port: 1}\n  b: {address: 127.0.0.1, port: 1}\n", "n.yaml")
    with pytest.raises(ValueError, match="env: 'A B' is not a valid environment variable name"):
        ck.run_on_hosts(nowhere.hosts_for(), ["true"], env={"A B": "1"})


def test_argument_errors(local: ck.Host) -> None:
    with pytest.raises(ValueError):
        local.run()
    with pytest.raises(ValueError):
        local.run(["true"], script="true")
    with pytest.raises(TypeError, match="script="):
        local.run("ls -l")  # a str is a Sequence[str] to a type checker
    with pytest.raises(ValueError):
        local.run([])
    with pytest.raises(ValueError):
        local.run(["true"], timeout=-1)


def test_on_line_streams_in_order_while_running(local: ck.Host) -> None:
    seen: list[tuple[str, str, float]] = []
    t0 = time.monotonic()
    r = local.run(
        script="echo one; sleep 0.3; echo two >&2; sleep 0.3; printf 'three\\nfour'",
        on_line=lambda stream, line: seen.append((stream, line, time.monotonic() - t0)),
    )
    assert [(s, line) for s, line, _ in seen] == [
        ("stdout", "one"),
        ("stderr", "two"),
        ("stdout", "three"),
        ("stdout", "four"),  # the last line, without its newline
    ]
    # Delivered as they happened, not at the end.
    assert seen[0][2] < seen[1][2] - 0.2
    assert seen[1][2] < seen[2][2] - 0.2
    assert r.stdout == "one\nthree\nfour" and r.stderr == "two\n"


def test_timeout_raises_timed_out_and_kills_the_child(local: ck.Host) -> None:
    t0 = time.monotonic()
    with pytest.raises(ck.Error) as e:
        local.run(script=BACKGROUND_CHILD, timeout=0.5)
    elapsed = time.monotonic() - t0
    assert e.value.code == "timed_out"
    assert "timed out" in e.value.message
    assert 0.4 < elapsed < 5
    assert isinstance(e.value.result, ck.RunResult)
    child = int(e.value.result.stdout.split()[0])  # output so far is kept
    assert gone_within(child, 3.0), f"child {child} survived the timeout"


def test_callback_exception_propagates_and_stops_the_command(local: ck.Host) -> None:
    class Boom(Exception):
        pass

    pids: list[int] = []

    def on_line(stream: str, line: str) -> None:
        pids.append(int(line))
        raise Boom("from the callback")

    t0 = time.monotonic()
    with pytest.raises(Boom, match="from the callback"):
        local.run(script=BACKGROUND_CHILD, on_line=on_line)
    assert time.monotonic() - t0 < 5
    assert len(pids) == 1
    assert gone_within(pids[0], 3.0)


def test_blocking_call_inside_a_callback_is_refused(local: ck.Host) -> None:
    errors: list[ck.Error] = []

    def on_line(stream: str, line: str) -> None:
        try:
            local.run(["true"])
        except ck.Error as e:
            errors.append(e)

    assert local.run(["echo", "x"], on_line=on_line).ok
    assert len(errors) == 1 and errors[0].code == "invalid_argument"
    assert "callback" in errors[0].message


def test_gil_is_released_while_waiting(local: ck.Host) -> None:
    counter = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        assert wait_until(lambda: counter > 0)  # the thread is spinning
        before = counter
        r = local.run(["sleep", "0.5"])
        during = counter - before
    finally:
        stop.set()
        thread.join()
    assert r.ok and r.duration >= 0.45
    # With the GIL held for the wait the thread would be frozen.
    assert during > 10_000, during


def test_parallel_python_threads_run_commands_concurrently(local: ck.Host) -> None:
    results: list[ck.RunResult] = []
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: results.append(local.run(["sleep", "0.5"]))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r.ok for r in results)
    assert time.monotonic() - t0 < 2.0  # one after another: 3 s


def test_ctrl_c_cancels_the_command_and_raises_keyboard_interrupt(local: ck.Host) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    pids: list[int] = []
    # Ctrl-C once the command runs (its child's pid has arrived).
    timer = threading.Thread(target=lambda: wait_until(lambda: pids) and os.kill(os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            local.run(script=BACKGROUND_CHILD, on_line=lambda s, line: pids.append(int(line)))
    finally:
        timer.join()
    assert time.monotonic() - t0 < 5
    assert len(pids) == 1
    # The command was stopped before run() returned; its child goes with it.
    assert gone_within(pids[0], 3.0)


# ---------------------------------------------------------------------------
# Transfers


def test_upload_download_with_progress(local: ck.Host, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    progress: list[tuple[int, int]] = []
    up = local.upload(src, str(tmp_path / "remote.bin"), mode=0o600, on_progress=lambda d, t: progress.append((d, t)))
    assert up.bytes == len(data)
    assert up.duration >= 0
    assert (tmp_path / "remote.bin").read_bytes() == data
    assert (tmp_path / "remote.bin").stat().st_mode & 0o777 == 0o600
    assert progress, "no progress reported"
    assert all(b[0] >= a[0] for a, b in zip(progress, progress[1:]))
    assert progress[-1] == (len(data), len(data))

    progress.clear()
    down = local.download(tmp_path / "remote.bin", tmp_path / "back.bin", on_progress=lambda d, t: progress.append((d, t)))
    assert down.bytes == len(data)
    assert (tmp_path / "back.bin").read_bytes() == data
    assert progress[-1][0] == len(data)


def test_upload_of_a_missing_file_is_an_error(local: ck.Host, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:  # the built-in, as open() raises
        local.upload(tmp_path / "nope", str(tmp_path / "dest"))
    assert isinstance(e.value, ck.Error) and e.value.code == "file_not_found"
    assert "nope" in e.value.message
    assert not (tmp_path / "dest").exists()


def test_progress_callback_exception_propagates(local: ck.Host, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1 << 20))

    def on_progress(done: int, total: int) -> None:
        raise RuntimeError("stop the transfer")

    with pytest.raises(RuntimeError, match="stop the transfer"):
        local.upload(src, str(tmp_path / "dest.bin"), on_progress=on_progress)
    assert not (tmp_path / "dest.bin").exists()  # never a half file under the final name


# ---------------------------------------------------------------------------
# Fan-out


def local_hosts(n: int) -> list[ck.Host]:
    return [ck.Host(ck.HostSpec.local_machine(f"h{i}")) for i in range(n)]


def test_run_on_hosts_collects_one_outcome_per_host_in_order() -> None:
    hosts = local_hosts(5)
    lines: list[tuple[str, str, str]] = []
    outcomes = ck.run_on_hosts(
        hosts,
        script='echo "$CK_X"; echo warn >&2',
        env={"CK_X": "hello"},
        on_line=lambda h, s, line: lines.append((h, s, line)),
    )
    assert [o.host for o in outcomes] == ["h0", "h1", "h2", "h3", "h4"]
    assert all(o.ok and o.error is None and o.message == "" for o in outcomes)
    assert all(o.result.stdout == "hello\n" for o in outcomes)
    assert sorted(lines) == sorted([(f"h{i}", "stdout", "hello") for i in range(5)] + [(f"h{i}", "stderr", "warn") for i in range(5)])
    assert ck.run_on_hosts([], ["true"]) == []


def test_run_on_hosts_runs_in_parallel_up_to_concurrency() -> None:
    t0 = time.monotonic()
    outcomes = ck.run_on_hosts(local_hosts(6), ["sleep", "0.4"], concurrency=3)
    elapsed = time.monotonic() - t0
    assert all(o.ok for o in outcomes)
    assert 0.75 < elapsed < 2.4  # two waves of three (all at once: 0.4 s, one by one: 2.4 s)


def test_run_on_hosts_fail_fast_skips_the_rest(tmp_path: Path) -> None:
    # Sequential: the first host succeeds, the second fails, the rest are skipped.
    script = f'n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/n; [ "$n" -lt 1 ]'
    outcomes = ck.run_on_hosts(local_hosts(4), script=script, concurrency=1, fail_fast=True)
    assert outcomes[0].ok
    assert outcomes[1].error is None and outcomes[1].result.exit_code == 1 and not outcomes[1].ok
    for o in outcomes[2:]:
        assert isinstance(o.error, ck.Error)
        assert o.error.code == "skipped"
        assert not o.ok
    assert (tmp_path / "n").read_text().strip() == "2"

    # Without fail_fast every host runs.
    (tmp_path / "n").unlink()
    outcomes = ck.run_on_hosts(local_hosts(4), script=script, concurrency=1)
    assert [o.result.exit_code for o in outcomes] == [0, 1, 1, 1]


def test_run_on_hosts_fail_fast_stops_running_hosts(tmp_path: Path) -> None:
    # Whoever creates the lock fails at once; the others are sleeping and get stopped.
    script = f"if mkdir {tmp_path}/lock 2>/dev/null; then exit 1; else {BACKGROUND_CHILD}; fi"
    pids: list[int] = []
    t0 = time.monotonic()
    outcomes = ck.run_on_hosts(
        local_hosts(3), script=script, fail_fast=True, on_line=lambda h, s, line: pids.append(int(line))
    )
    assert time.monotonic() - t0 < 8
    failed = [o for o in outcomes if o.error is None]
    stopped = [o for o in outcomes if o.error is not None]
    assert len(failed) == 1 and failed[0].result.exit_code == 1
    assert len(stopped) == 2
    assert all(o.error is not None and o.error.code == "cancelled" for o in stopped)
    assert all(gone_within(p, 3.0) for p in pids)


def test_run_on_hosts_timeout_per_host() -> None:
    # 1 s, not less: on a loaded 2-core machine a shorter limit can end
    # before the wrapper has started `sleep` (seen once: then no signal).
    outcomes = ck.run_on_hosts(local_hosts(2), ["sleep", "10"], timeout=1.0)
    assert all(o.error is not None and o.error.code == "timed_out" for o in outcomes)
    assert all(o.result.signal == signal.SIGTERM for o in outcomes), [(o.result.signal, o.result.message) for o in outcomes]


def test_run_on_hosts_callback_exception_propagates() -> None:
    def on_line(host: str, stream: str, line: str) -> None:
        raise LookupError(host)

    t0 = time.monotonic()
    with pytest.raises(LookupError):
        ck.run_on_hosts(local_hosts(3), script="echo hi; sleep 30", on_line=on_line)
    assert time.monotonic() - t0 < 8


def test_run_on_hosts_rejects_non_hosts() -> None:
    with pytest.raises(TypeError):
        ck.run_on_hosts([ck.HostSpec.local_machine()], ["true"])  # type: ignore[list-item]


# ---------------------------------------------------------------------------
# Errors


def test_error_codes_cover_every_errc() -> None:
    header = Path(__file__).resolve().parents[2] / "include" / "clusterkit" / "error.hpp"
    body = re.search(r"enum class errc \{(.*?)\};", header.read_text(), re.S)
    assert body is not None
    names = re.findall(r"^\s*([a-z_]+)(?:\s*=\s*\d+)?,", body.group(1), re.M)
    assert len(names) > 20
    assert list(ck.ERROR_CODES) == names


def test_error_class() -> None:
    import pickle

    e = ck.Error("it broke", "timed_out")
    assert isinstance(e, Exception)
    assert (str(e), e.message, e.code, e.result) == ("it broke", "it broke", "timed_out", None)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ck.Error and back.code == "timed_out" and back.message == "it broke"
    assert ck.Error.__module__ == "clusterkit"


def test_check_raises_with_the_result_attached(local: ck.Host) -> None:
    # As asyncssh's and Fabric's check: a non-zero exit raises only when asked to.
    r = local.run(["sh", "-c", "echo out; echo bad >&2; exit 3"])
    assert r.exit_code == 3  # a result by default
    with pytest.raises(ck.Error) as e:
        r.check()
    assert e.value.code == "command_failed" and e.value.result.exit_code == 3
    assert "exited with 3: bad" in str(e.value)
    with pytest.raises(ck.Error) as e:
        local.run(["sh", "-c", "echo bad >&2; exit 4"], check=True)
    assert e.value.code == "command_failed" and e.value.result.stderr == "bad\n"
    assert str(e.value).startswith(f"{local.name}: `sh -c") and "exited with 4: bad" in str(e.value)
    ok = local.run(["true"], check=True)
    assert ok.check() is not None and ok.exit_code == 0


def test_errors_are_also_the_builtin_exceptions_python_code_catches(local: ck.Host) -> None:
    import builtins
    import pickle

    # A timeout is a TimeoutError, raised from the real run.
    with pytest.raises(builtins.TimeoutError) as timed_out:
        local.run(["sleep", "5"], timeout=0.2)
    e = timed_out.value
    assert isinstance(e, ck.Error) and isinstance(e, ck.TimeoutError) and e.code == "timed_out"
    assert str(e) == e.message and "timed out" in str(e)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ck.TimeoutError and back.code == "timed_out" and str(back) == e.message
    # Nothing listening: a ConnectionError; settings out of range: a ValueError.
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    with pytest.raises(builtins.ConnectionError) as refused:
        ck.run_bench(ck.BenchSpec(f"http://127.0.0.1:{port.getsockname()[1]}", requests=1))
    port.close()
    assert refused.value.code == "connection_refused" and isinstance(refused.value, ck.Error)
    with pytest.raises(ValueError) as bad:
        ck.run_bench(ck.BenchSpec("http://127.0.0.1:1", requests=0))
    assert type(bad.value) is ck.InvalidArgument and bad.value.code == "invalid_argument"
    # Every class keeps clusterkit.Error's contract.
    for cls, code in ((ck.TimeoutError, "timed_out"), (ck.ConnectionError, "connection_lost"),
                      (ck.FileNotFoundError, "program_missing"), (ck.InvalidArgument, "inventory_invalid"),
                      (ck.Cancelled, "cancelled")):
        x = cls("m", code)
        assert isinstance(x, ck.Error) and (x.message, x.code, str(x)) == ("m", code, "m")
        assert repr(x) == f"clusterkit.{cls.__name__}('m', code='{code}')"
    # `from clusterkit import *` does not shadow the builtins.
    assert "TimeoutError" not in ck.__all__ and "ConnectionError" not in ck.__all__


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_io_thread(local: ck.Host) -> None:
    assert local.run(["true"]).ok  # the parent's I/O thread is running
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        status = "?"
        try:
            fresh = ck.Host(ck.HostSpec.local_machine("child"))
            out = fresh.run(["echo", "child ok"], timeout=10).stdout.strip()
            try:
                local.run(["true"])
                stale = "no error"
            except ck.Error as e:
                stale = e.code
            status = f"{out}|{stale}"
        except BaseException as e:  # noqa: BLE001
            status = f"failed: {e!r}"
        finally:
            os.write(write_end, status.encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        report = f.read().decode()
    os.waitpid(pid, 0)
    assert report == "child ok|invalid_argument"
    assert local.run(["echo", "parent"]).stdout == "parent\n"


def test_specs_results_and_inventories_pickle(local: ck.Host) -> None:
    # For multiprocessing and Ray tasks (issue 14). API keys never travel.
    import pickle

    r = local.run(["sh", "-c", "printf 'a\\377b'; echo err >&2; exit 2"])
    back = pickle.loads(pickle.dumps(r))
    assert (back.exit_code, back.stdout_bytes, back.stderr, back.duration) == (2, b"a\xffb", "err\n", r.duration)
    inv = ck.Inventory.parse("hosts:\n  a: {address: 10.0.0.1, roles: [head, gpu], gpus: {count: 2, model: L20}}\n", "x.yaml")
    inv2 = pickle.loads(pickle.dumps(inv))
    assert inv2.source == "x.yaml" and inv2.find("a").spec.address == "10.0.0.1" and inv2.find("a").roles == ["head", "gpu"]
    spec = ck.HostSpec("gpu1", "10.0.0.11", user="ubuntu", port=2222, ssh_options=["Ciphers=aes128-ctr"])
    spec2 = pickle.loads(pickle.dumps(spec))
    assert (spec2.name, spec2.address, spec2.user, spec2.port, spec2.ssh_options) == ("gpu1", "10.0.0.11", "ubuntu", 2222, ["Ciphers=aes128-ctr"])
    bench = pickle.loads(pickle.dumps(ck.BenchSpec("http://h:8000", concurrency=8, api_key="sk-secret")))
    assert bench.concurrency == 8 and bench.url == "http://h:8000" and bench.api_key is None
    ray = ck.RayClusterSpec(name="seed", volumes=["/mnt:/models:ro"])
    ray2 = pickle.loads(pickle.dumps(ray))
    assert ray2.name == "seed" and ray2.volumes == ray.volumes
    for spec_obj in (ck.NasSpec("sshfs", "root@nas:/srv/nas"), ck.VllmServeSpec("/models/x"), ck.DownloadSpec("Qwen/Qwen2.5-7B-Instruct")):
        assert repr(pickle.loads(pickle.dumps(spec_obj))) == repr(spec_obj)
    # A Host travels as its spec and works on the other side.
    host2 = pickle.loads(pickle.dumps(local))
    assert isinstance(host2, ck.Host) and host2.spec.local and host2.run(["echo", "there"]).stdout == "there\n"
    remote = pickle.loads(pickle.dumps(ck.Host(spec)))
    assert remote.spec.address == "10.0.0.11" and remote.spec.port == 2222



def test_fanout_outcomes_pickle_with_their_errors(local: ck.Host, tmp_path: Path) -> None:
    # run_on_hosts / upload_to_hosts results cross process boundaries whole:
    # host, the error (its code), the result and its message.
    import pickle

    outcomes = ck.run_on_hosts([local], ["sh", "-c", "echo out; exit 3"])
    back = pickle.loads(pickle.dumps(outcomes))
    assert [(o.host, o.ok, o.result.exit_code, o.result.stdout) for o in back] == [(local.name, False, 3, "out\n")]
    assert back[0].error is None
    timed_out = ck.run_on_hosts([local], ["sleep", "5"], timeout=0.2)
    again = pickle.loads(pickle.dumps(timed_out[0]))
    assert again.error is not None and again.error.code == "timed_out" == timed_out[0].error.code
    assert again.message == timed_out[0].message and "timed out" in again.message
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 1000)
    copied = ck.upload_to_hosts([local], src, str(tmp_path / "dest.bin"))
    t = pickle.loads(pickle.dumps(copied[0]))
    assert (t.host, t.ok, t.result.bytes, t.error) == (local.name, True, 1000, None)
    missing = ck.upload_to_hosts([local], tmp_path / "nope", str(tmp_path / "dest2.bin"))
    m = pickle.loads(pickle.dumps(missing[0]))
    assert not m.ok and m.error.code == missing[0].error.code and m.message == missing[0].message
