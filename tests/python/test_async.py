"""The asyncio forms: Host.run_async & co., run_on_hosts_async."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
from waiting import gone_within_async, wait_until_async

import clusterkit as ck


def test_run_async_gather_runs_concurrently(local: ck.Host) -> None:
    async def main() -> tuple[list[ck.RunResult], float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(local.run_async(["sh", "-c", 'sleep 0.5; echo "$0"', str(i)]) for i in range(5))
        )
        elapsed = time.monotonic() - t0
        tick.cancel()
        return list(results), elapsed, ticks

    results, elapsed, ticks = asyncio.run(main())
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(5)]
    assert all(r.ok for r in results)
    assert elapsed < 1.5, elapsed  # not one after another
    assert ticks >= 20  # the loop kept running meanwhile


def test_cancelling_the_task_stops_the_process(local: ck.Host) -> None:
    async def main() -> tuple[list[int], float, bool]:
        pids: list[int] = []
        task = asyncio.ensure_future(
            local.run_async(script="sleep 30 & echo $!; wait", on_line=lambda s, line: pids.append(int(line)))
        )
        assert await wait_until_async(lambda: pids)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        waited = time.monotonic() - t0
        # The command ended before the task did; its child goes with it.
        return pids, waited, await gone_within_async(pids[0], 3.0)

    pids, waited, gone = asyncio.run(main())
    assert len(pids) == 1
    assert waited < 5
    assert gone


def test_wait_for_timeout_cancels_too(local: ck.Host) -> None:
    async def main() -> None:
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(local.run_async(["sleep", "30"]), 0.3)
        assert time.monotonic() - t0 < 5

    asyncio.run(main())


def test_run_async_errors_and_results(local: ck.Host, tmp_path: Path) -> None:
    async def main() -> None:
        r = await local.run_async(["sh", "-c", "cat; exit 4"], stdin=b"abc", cwd=tmp_path, env={"A": "1"})
        assert (r.stdout, r.exit_code) == ("abc", 4)
        with pytest.raises(TimeoutError) as e:  # the built-in too, as asyncio.wait_for raises
            await local.run_async(["sleep", "10"], timeout=0.2)
        assert isinstance(e.value, ck.Error) and e.value.code == "timed_out"
        assert e.value.result is not None and e.value.result.exit_code != 0
        # check=True, as run(check=True): a non-zero exit raises, with the result.
        assert (await local.run_async(["true"], check=True)).exit_code == 0
        with pytest.raises(ck.Error) as failed:
            await local.run_async(["sh", "-c", "echo oops >&2; exit 3"], check=True)
        assert failed.value.code == "command_failed" and failed.value.result.exit_code == 3
        assert failed.value.result.stderr == "oops\n"
        with pytest.raises(ck.Error) as e:
            await local.run_async(["true"], cwd=tmp_path / "missing")
        assert e.value.code == "bad_working_directory"
        await local.connect_async()  # local: nothing to open, completes

    asyncio.run(main())


def test_on_line_runs_on_the_loop_thread_in_order(local: ck.Host) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        seen: list[tuple[str, str, int]] = []
        r = await local.run_async(
            script="for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.05; done",
            on_line=lambda s, line: seen.append((s, line, threading.get_ident())),
        )
        assert r.ok
        # Each stream keeps its order; between the two pipes, order is up to
        # the scheduler.
        assert [line for s, line, _ in seen if s == "stdout"] == ["o1", "o2", "o3"]
        assert [line for s, line, _ in seen if s == "stderr"] == ["e1", "e2", "e3"]
        assert {t for _, _, t in seen} == {loop_thread}

    asyncio.run(main())


def test_on_line_exception_propagates_from_the_await(local: ck.Host) -> None:
    async def main() -> None:
        def on_line(stream: str, line: str) -> None:
            raise KeyError(line)

        t0 = time.monotonic()
        with pytest.raises(KeyError, match="first"):
            await local.run_async(script="echo first; echo second; sleep 30", on_line=on_line)
        assert time.monotonic() - t0 < 5

    asyncio.run(main())


def test_transfers_async(local: ck.Host, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    (tmp_path / "a").write_bytes(data)

    async def main() -> None:
        progress: list[int] = []
        up = await local.upload_async(tmp_path / "a", str(tmp_path / "b"), on_progress=lambda d, t: progress.append(d))
        assert up.bytes == len(data) and progress[-1] == len(data)
        down = await local.download_async(str(tmp_path / "b"), tmp_path / "c", mode=0o640)
        assert down.bytes == len(data)
        with pytest.raises(ck.Error) as e:
            await local.upload_async(tmp_path / "missing", str(tmp_path / "d"))
        assert e.value.code == "file_not_found" and isinstance(e.value, FileNotFoundError)

    asyncio.run(main())
    assert (tmp_path / "c").read_bytes() == data
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o640


def test_run_on_hosts_async() -> None:
    hosts = [ck.Host(ck.HostSpec.local_machine(f"a{i}")) for i in range(4)]

    async def main() -> None:
        lines: list[tuple[str, str, str]] = []
        outcomes = await ck.run_on_hosts_async(
            hosts, script="echo hi", on_line=lambda h, s, line: lines.append((h, s, line))
        )
        assert [o.host for o in outcomes] == ["a0", "a1", "a2", "a3"]
        assert all(o.ok for o in outcomes)
        assert sorted(lines) == [(f"a{i}", "stdout", "hi") for i in range(4)]
        assert await ck.run_on_hosts_async([], ["true"]) == []

        # Cancelling the task stops every host.
        t0 = time.monotonic()
        started: list[str] = []
        task = asyncio.ensure_future(
            ck.run_on_hosts_async(hosts, script="echo up; exec sleep 30", on_line=lambda h, s, line: started.append(h))
        )
        assert await wait_until_async(lambda: len(started) == len(hosts))  # every host is running its command
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 5

    asyncio.run(main())


def test_stream_lines_yields_every_line_in_order_then_the_outcomes(tmp_path: Path) -> None:
    hosts = [ck.Host(ck.HostSpec.local_machine(f"s{i}")) for i in range(3)]

    async def main() -> None:
        lines = ck.stream_lines(hosts, script="echo one; echo two >&2; echo three; [ $(hostname) != none ]")
        seen = [line async for line in lines]
        assert all(isinstance(x, ck.Line) for x in seen)
        for h in ("s0", "s1", "s2"):  # per host, in the order written
            assert [(x.stream, x.text) for x in seen if x.host == h and x.stream == "stdout"] == [
                ("stdout", "one"), ("stdout", "three")]
            assert [x.text for x in seen if x.host == h and x.stream == "stderr"] == ["two"]
        assert lines.outcomes is not None and [o.host for o in lines.outcomes] == ["s0", "s1", "s2"]
        assert all(o.ok for o in lines.outcomes)
        # One host, the same shape.
        one = [tuple(x) async for x in hosts[0].stream_lines(["echo", "solo"])]
        assert one == [("s0", "stdout", "solo")]
        # Leaving early inside `async with` stops every host's command.
        marker = tmp_path / "still-running"
        t0 = time.monotonic()
        async with ck.stream_lines(hosts, script=f"echo up; sleep 30; touch {marker}") as lines:
            async for host, stream, text in lines:
                assert (stream, text) == ("stdout", "up")
                break
        assert time.monotonic() - t0 < 10
        await asyncio.sleep(0.2)
        assert not marker.exists()
        # Bad arguments raise from the loop, as run_on_hosts_async raises them.
        with pytest.raises(TypeError):
            ck.stream_lines(hosts, ["true"], on_line=print)
        with pytest.raises(ValueError):
            async for _ in ck.stream_lines(hosts, ["true"], concurrency=0):
                pass

    asyncio.run(main())


def test_start_run_low_level_handle(local: ck.Host) -> None:
    done = threading.Event()
    payloads: list[object] = []

    def on_done(payload: object) -> None:
        payloads.append(payload)
        done.set()

    started = threading.Event()
    op = local._start_run(script="echo up; exec sleep 30", on_line=lambda s, line: started.set(), done=on_done)
    assert isinstance(op, ck.Operation)
    assert not op.done()
    assert started.wait(5)  # the command is running
    op.cancel()
    assert done.wait(5)
    assert op.done()
    (payload,) = payloads
    assert isinstance(payload, ck.Error) and payload.code == "cancelled"
    with pytest.raises(ValueError):
        op.cancel("bogus")  # type: ignore[arg-type]
