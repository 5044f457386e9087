"""Waiting in tests: poll a condition until it holds or a deadline passes.

Never sleep for a fixed time and hope that something has happened by then: on
a loaded 2-core CI machine it has not, and on a fast one the test waits for
nothing. `wait_until` returns as soon as the condition holds, and says False
(for an `assert`) when the deadline passed first.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Callable

STEP = 0.01  # seconds between two looks


def wait_until(condition: Callable[[], Any], seconds: float = 5.0) -> bool:
    """Poll `condition` until it is truthy (True) or `seconds` have passed (then one last look)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if condition():
            return True
        time.sleep(STEP)
    return bool(condition())


async def wait_until_async(condition: Callable[[], Any], seconds: float = 5.0) -> bool:
    """wait_until for a coroutine: the event loop keeps running between two looks."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if condition():
            return True
        await asyncio.sleep(STEP)
    return bool(condition())


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie runs nothing; its reaping is up to its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_within(pid: int, seconds: float) -> bool:
    return wait_until(lambda: not pid_alive(pid), seconds)


async def gone_within_async(pid: int, seconds: float) -> bool:
    return await wait_until_async(lambda: not pid_alive(pid), seconds)


def pids_mentioning(text: str) -> list[int]:
    """Live processes (not this one) whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def tcp_sockets(port: int, local: bool, states: tuple[str, ...] = ("01",)) -> int:
    """IPv4 TCP sockets of this network namespace in `states` (hex, as /proc/net/tcp writes
    them: 01 ESTABLISHED, 08 CLOSE_WAIT) whose local (local=True: a server's side) or
    remote (local=False: a client's side) port is `port`."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            address = fields[1] if local else fields[2]
            if int(address.split(":")[1], 16) == port and fields[3] in states:
                n += 1
    return n


def assert_ctrl_c_stops(call: Callable[[], Any], after: float = 0.05, within: float = 30.0) -> None:
    """Ctrl-C (KeyboardInterrupt in the main thread) `after` seconds into
    `call`: it must raise KeyboardInterrupt, not return, within `within`
    seconds (the operation stopped and waited for, not abandoned)."""
    import _thread
    import threading

    import pytest

    timer = threading.Timer(after, _thread.interrupt_main)
    returned = False
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
            returned = True
            time.sleep(5)  # the interrupt, if it comes late, lands here: still a failure below
    finally:
        timer.cancel()
    assert not returned, "the call returned before Ctrl-C stopped it"
    assert time.monotonic() - started < within
