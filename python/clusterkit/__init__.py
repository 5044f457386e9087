"""clusterkit: run commands on many machines over the user's own OpenSSH.

The blocking API (``Host.run``, ``run_on_hosts``, ...) comes from the C++
core; it releases the GIL while it waits and stops the command on Ctrl-C.
This module adds the asyncio forms (``Host.run_async``, ...) and small
conveniences (``Inventory.host``, ``Inventory.preflight``, ``LabStatus.inventory``).

    import clusterkit as ck

    host = ck.Host(name="gpu1", address="10.0.0.11", user="root")
    result = host.run(["nvidia-smi", "-L"], timeout=30)
    print(result.stdout)

    inventory = ck.Inventory.load("cluster.yaml")
    for outcome in ck.run_on_hosts(inventory.hosts_for("gpu"), script="uptime"):
        print(outcome.host, outcome.ok, outcome.result.stdout.strip())
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Optional, TypeVar, Union, cast

from . import _core
from ._core import (
    ERROR_CODES,
    OsRelease,
    KernelInfo,
    MemoryInfo,
    DiskUsage,
    DockerFacts,
    NetAddress,
    NetInterface,
    RouteToPeer,
    ClockSample,
    PythonFacts,
    CheckReport,
    CheckResult,
    Error,
    FactIssue,
    FileDigest,
    GpuInfo,
    GpuInventory,
    GpuNode,
    GpuTopology,
    HashProgress,
    HostFacts,
    HostFactsOutcome,
    HostOutcome,
    HostSpec,
    InventoryHost,
    LabHostStatus,
    Layout,
    LayoutStage,
    ModelCandidate,
    ModelFacts,
    ModelLocation,
    ModelTensor,
    NcclBandwidth,
    NcclCheckOutput,
    NcclCheckResult,
    NcclHostRun,
    NcclNodeLaunch,
    NcclRankReport,
    Operation,
    NasProbeReport,
    NasRead,
    Plan,
    PortListener,
    PortProbe,
    PortProbeReport,
    PreflightProbes,
    PreflightRun,
    QuantizedOption,
    RejectedLayout,
    RunResult,
    ShardInfo,
    Shortfall,
    TransferOutcome,
    TransferResult,
    VerifyProblem,
    VerifyReport,
    default_nccl_sizes,
    estimate_tensors_from_config,
    known_model_config,
    known_model_ids,
    format_bytes,
    gather_facts,
    gpu_query_fields,
    huggingface_cache_folder_name,
    inspect_model,
    known_gpu_memory_bytes,
    lab_down,
    model_facts_from_config,
    modelscope_folder_name,
    nccl_check,
    nccl_check_hosts,
    nccl_check_script,
    declared_gpu_inventory,
    parse_gpu_inventory,
    parse_gpu_query,
    parse_gpu_topology,
    parse_nccl_check_output,
    pipeline_partition,
    plan_deployment,
    choose_layout,
    known_model_fit_refusal,
    resolve_model,
    run_on_hosts,
    upload_to_hosts,
    run_preflight,
    safetensors_dtype_size,
    sha256_file,
    sha256_files,
    write_sha256_manifest,
    tensor_parallel_refusal,
    verify_model,
)

__version__: str = _core.__version__

# Error's subclasses by code, each also the builtin exception Python code
# already catches (`except TimeoutError` works on clusterkit calls). Not in
# __all__: `from clusterkit import *` must not shadow the builtins.
from ._core import Cancelled, ConnectionError, FileNotFoundError, InvalidArgument, TimeoutError  # noqa: E402,A004

__all__ = [
    "ERROR_CODES",
    "OsRelease",
    "KernelInfo",
    "MemoryInfo",
    "DiskUsage",
    "DockerFacts",
    "NetAddress",
    "NetInterface",
    "RouteToPeer",
    "ClockSample",
    "PythonFacts",
    "CheckReport",
    "CheckResult",
    "Cancelled",
    "Error",
    "FactIssue",
    "InvalidArgument",
    "FileDigest",
    "GpuInfo",
    "GpuInventory",
    "GpuNode",
    "GpuTopology",
    "HashProgress",
    "Host",
    "HostFacts",
    "HostFactsOutcome",
    "HostOutcome",
    "HostSpec",
    "Inventory",
    "InventoryHost",
    "LabHostStatus",
    "LabStatus",
    "Layout",
    "LayoutStage",
    "ModelCandidate",
    "ModelFacts",
    "ModelLocation",
    "ModelTensor",
    "NcclBandwidth",
    "NcclCheckOutput",
    "NcclCheckResult",
    "NcclHostRun",
    "NcclNodeLaunch",
    "NcclRankReport",
    "Operation",
    "NasProbeReport",
    "NasRead",
    "Plan",
    "PortListener",
    "PortProbe",
    "PortProbeReport",
    "PreflightProbes",
    "PreflightRun",
    "QuantizedOption",
    "RejectedLayout",
    "RunResult",
    "ShardInfo",
    "Shortfall",
    "TransferOutcome",
    "TransferResult",
    "VerifyProblem",
    "VerifyReport",
    "default_nccl_sizes",
    "estimate_tensors_from_config",
    "known_model_config",
    "known_model_ids",
    "format_bytes",
    "gather_facts",
    "gather_facts_async",
    "gpu_query_fields",
    "huggingface_cache_folder_name",
    "inspect_model",
    "known_gpu_memory_bytes",
    "lab_down",
    "lab_status",
    "lab_up",
    "model_facts_from_config",
    "modelscope_folder_name",
    "nccl_check",
    "nccl_check_async",
    "nccl_check_hosts",
    "nccl_check_script",
    "declared_gpu_inventory",
    "parse_gpu_inventory",
    "parse_gpu_query",
    "parse_gpu_topology",
    "parse_nccl_check_output",
    "pipeline_partition",
    "plan_deployment",
    "choose_layout",
    "known_model_fit_refusal",
    "resolve_model",
    "run_on_hosts",
    "upload_to_hosts",
    "run_on_hosts_async",
    "stream_lines",
    "Line",
    "LineStream",
    "run_preflight",
    "run_preflight_async",
    "safetensors_dtype_size",
    "sha256_file",
    "sha256_files",
    "write_sha256_manifest",
    "tensor_parallel_refusal",
    "verify_model",
]

_Path = Union[str, "os.PathLike[str]"]
# A list or tuple, not any Sequence: a str is a Sequence of str, and
# host.run("hostname") would type-check, then fail at run time. (A list is
# list[Any]: list is invariant, and a literal mixing str and Path would not
# match list[str | PathLike]; the items are checked at run time.)
_ArgvItem = Union[str, bytes, "os.PathLike[str]"]
_Argv = Union[list[Any], tuple[_ArgvItem, ...]]
_T = TypeVar("_T")

_DEFAULT_CAPTURE = 64 << 20


class _AsyncCall:
    """Bridges one C++ operation to the running event loop.

    The C++ side calls ``done(payload)`` and the user's callbacks on its I/O
    thread; both are handed to the loop with ``call_soon_threadsafe`` (in
    the order they happened), so user callbacks run on the loop's thread.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Any] = self.loop.create_future()
        self.operation: Optional[Operation] = None
        self.error: Optional[BaseException] = None

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def done(self, payload: Any) -> None:  # I/O thread
        self._post(self._resolve, payload)

    def _resolve(self, payload: Any) -> None:
        if not self.future.done():
            self.future.set_result(payload)

    def wrap(self, callback: Optional[Callable[..., object]]) -> Optional[Callable[..., None]]:
        if callback is None:
            return None

        def deliver(*args: Any) -> None:  # loop thread
            if self.error is not None:
                return
            try:
                callback(*args)
            except Exception as e:  # stop the operation, raise from the await
                self.error = e
                if self.operation is not None:
                    self.operation.cancel()

        def forward(*args: Any) -> None:  # I/O thread
            self._post(deliver, *args)

        return forward

    async def wait(self, operation: Operation) -> Any:
        self.operation = operation
        try:
            payload = await asyncio.shield(self.future)
        except asyncio.CancelledError:
            # The task was cancelled: stop the command and wait until it has
            # really ended, so that nothing is left running.
            operation.cancel()
            while not self.future.done():
                try:
                    await asyncio.shield(self.future)
                except asyncio.CancelledError:
                    continue
            raise
        if self.error is not None:
            raise self.error
        if isinstance(payload, BaseException):
            raise payload
        return payload


class Host(_core.Host):
    """One machine, reached over OpenSSH (or this machine, ``HostSpec.local_machine()``).

    ``Host(spec)`` or ``Host(name=..., address=..., user=...)`` (HostSpec's
    keyword arguments). Copies of a host share its connection. The blocking
    methods (run, connect, upload, download) come from the C++ core; the
    ``*_async`` methods are their asyncio forms: cancelling the awaiting task
    stops the command (its whole process group) before the task ends.
    """

    def stream_lines(self, argv: Optional[_Argv] = None, **options: Any) -> LineStream:
        """The command's output as an async iterator of ``Line(host, stream, text)``: ``stream_lines([self], ...)``."""
        return LineStream([self], argv, options)

    async def run_async(
        self,
        argv: Optional[_Argv] = None,
        *,
        script: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[_Path] = None,
        stdin: Union[str, bytes, None] = None,
        timeout: Optional[float] = None,
        kill_grace: float = 2.0,
        max_captured_bytes: int = _DEFAULT_CAPTURE,
        on_line: Optional[Callable[[str, str], object]] = None,
        check: bool = False,
    ) -> RunResult:
        """Run a command without blocking the event loop.

        ``on_line(stream, line)`` runs on the loop's thread. Raises
        clusterkit.Error like ``run``; an exception from ``on_line`` stops
        the command and is raised here. ``check=True``: a non-zero exit
        raises clusterkit.Error('command_failed') with the result as
        ``.result``, as ``run(check=True)`` does.
        """
        call = _AsyncCall()
        op = self._start_run(
            argv,
            script=script,
            env=env,
            cwd=cwd,
            stdin=stdin,
            timeout=timeout,
            kill_grace=kill_grace,
            max_captured_bytes=max_captured_bytes,
            on_line=call.wrap(on_line),
            done=call.done,
        )
        result: RunResult = await call.wait(op)
        return result.check() if check else result

    async def connect_async(self) -> None:
        """Open the shared connection (raises clusterkit.Error)."""
        call = _AsyncCall()
        await call.wait(self._start_connect(done=call.done))

    async def upload_async(
        self,
        local: _Path,
        remote: _Path,
        *,
        mode: Optional[int] = None,
        timeout: Optional[float] = None,
        on_progress: Optional[Callable[[int, int], object]] = None,
    ) -> TransferResult:
        """``upload`` without blocking the event loop; on_progress(done, total) runs on the loop."""
        call = _AsyncCall()
        op = self._start_upload(
            local, remote, mode=mode, timeout=timeout, on_progress=call.wrap(on_progress), done=call.done
        )
        result: TransferResult = await call.wait(op)
        return result

    async def download_async(
        self,
        remote: _Path,
        local: _Path,
        *,
        mode: Optional[int] = None,
        timeout: Optional[float] = None,
        on_progress: Optional[Callable[[int, int], object]] = None,
    ) -> TransferResult:
        """``download`` without blocking the event loop."""
        call = _AsyncCall()
        op = self._start_download(
            remote, local, mode=mode, timeout=timeout, on_progress=call.wrap(on_progress), done=call.done
        )
        result: TransferResult = await call.wait(op)
        return result


async def run_on_hosts_async(
    hosts: Sequence[_core.Host],
    argv: Optional[_Argv] = None,
    *,
    script: Optional[str] = None,
    concurrency: int = 64,
    fail_fast: bool = False,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[_Path] = None,
    stdin: Union[str, bytes, None] = None,
    timeout: Optional[float] = None,
    kill_grace: float = 2.0,
    max_captured_bytes: int = _DEFAULT_CAPTURE,
    on_line: Optional[Callable[[str, str, str], object]] = None,
) -> list[HostOutcome]:
    """``run_on_hosts`` without blocking the event loop; on_line(host, stream, line) runs on the loop."""
    call = _AsyncCall()
    op = _core._start_run_on_hosts(
        hosts,
        argv,
        script=script,
        concurrency=concurrency,
        fail_fast=fail_fast,
        env=env,
        cwd=cwd,
        stdin=stdin,
        timeout=timeout,
        kill_grace=kill_grace,
        max_captured_bytes=max_captured_bytes,
        on_line=call.wrap(on_line),
        done=call.done,
    )
    outcomes: list[HostOutcome] = await call.wait(op)
    return outcomes


class Line(NamedTuple):
    """One line of a command's output: ``(host, stream, text)``; stream is "stdout" or "stderr"."""

    host: str
    stream: str
    text: str


class LineStream:
    """The output of a command on many hosts as ``Line`` tuples, as they come.

    ``stream_lines(hosts, argv, ...)`` (or ``host.stream_lines(argv, ...)``)
    returns one; iterate it with ``async for host, stream, text in lines``.
    After the last line, ``outcomes`` holds one ``HostOutcome`` per host (as
    ``run_on_hosts`` returns them). Leaving the loop early does not stop the
    commands by itself: use ``async with stream_lines(...) as lines:`` (or
    ``await lines.aclose()``), which stops whatever still runs, on every
    host, before it returns. The callbacks (``on_line``) remain for code
    that is not asyncio; this is the same data in the same order.
    """

    def __init__(self, hosts: Sequence[_core.Host], argv: Optional[_Argv], options: dict[str, Any]) -> None:
        if "on_line" in options:
            raise TypeError("stream_lines() yields the lines itself; it takes no on_line")
        self._hosts = list(hosts)
        self._argv = argv
        self._options = options
        self._queue: Optional[asyncio.Queue[Optional[Line]]] = None
        self._task: Optional[asyncio.Future[list[HostOutcome]]] = None
        #: One HostOutcome per host once the stream has ended; None before.
        self.outcomes: Optional[list[HostOutcome]] = None

    def _start(self) -> None:
        queue: asyncio.Queue[Optional[Line]] = asyncio.Queue()
        self._queue = queue
        # on_line runs on the loop's thread (run_on_hosts_async hands it
        # over), and the end is queued after the last line.
        self._task = asyncio.ensure_future(
            run_on_hosts_async(
                self._hosts,
                self._argv,
                on_line=lambda host, stream, text: queue.put_nowait(Line(host, stream, text)),
                **self._options,
            )
        )
        self._task.add_done_callback(lambda _: queue.put_nowait(None))

    def __aiter__(self) -> LineStream:
        return self

    async def __anext__(self) -> Line:
        if self._task is None:
            self._start()
        assert self._queue is not None and self._task is not None
        if self.outcomes is not None or (self._task.done() and self._queue.empty()):
            self._finish()
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._finish()
            raise StopAsyncIteration
        return item

    def _finish(self) -> None:
        assert self._task is not None
        if self.outcomes is None:
            self.outcomes = self._task.result()  # raises what the call raised (bad arguments)

    async def aclose(self) -> None:
        """Stop what still runs (every host's command) and wait until it has ended."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> LineStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def stream_lines(
    hosts: Union[_core.Host, Sequence[_core.Host]], argv: Optional[_Argv] = None, **options: Any
) -> LineStream:
    """``run_on_hosts``'s output as an async iterator of ``Line(host, stream, text)``.

    Takes run_on_hosts_async's keyword arguments (script, concurrency,
    fail_fast, env, cwd, stdin, timeout, kill_grace, max_captured_bytes)::

        async with ck.stream_lines(hosts, ["journalctl", "-f"], timeout=60) as lines:
            async for host, stream, text in lines:
                print(host, text)
        print([o.ok for o in lines.outcomes or []])
    """
    return LineStream([hosts] if isinstance(hosts, _core.Host) else hosts, argv, options)


class Inventory(_core.Inventory):
    """The hosts of a cluster, from a YAML or JSON file.

    ``Inventory.load(path)`` / ``Inventory.parse(text)`` raise clusterkit.Error
    with code ``"inventory_invalid"`` and a message naming the line.
    """

    @classmethod
    def load(cls, path: _Path) -> Inventory:
        """Read an inventory file (YAML or JSON)."""
        return cls(_core.Inventory.load(path))

    @classmethod
    def parse(cls, text: str, source: str = "<inventory>") -> Inventory:
        """Parse inventory text; ``source`` names it in error messages."""
        return cls(_core.Inventory.parse(text, source))

    def host(self, name: str) -> Host:
        """A Host for the inventory host ``name`` (the same object on each call)."""
        cache: dict[str, Host] = self.__dict__.setdefault("_hosts", {})
        if name not in cache:
            found = self.find(name)
            if found is None:
                raise Error(f"no host named {name!r} in {self.source}", "unknown_host_or_group")
            cache[name] = Host(found.spec)
        return cache[name]

    def hosts_for(self, selector: str = "all") -> list[Host]:
        """Hosts for a selector ("all", a group, a name, "role:NAME", or a comma-separated list)."""
        return [self.host(h.spec.name) for h in self.select(selector)]

    def gather_facts(self, selector: str = "all", **options: Any) -> list[HostFactsOutcome]:
        """``gather_facts`` on the selected hosts, with the GPUs the inventory declares (simulated ones included).

        ``options`` are gather_facts' keyword arguments (disk_paths, peers, timeout, ...).
        """
        options.setdefault("inventory", self)
        return gather_facts(self.hosts_for(selector), **options)

    def preflight(self, selector: str = "all", **options: Any) -> PreflightRun:
        """``run_preflight`` on the selected hosts; ``options`` are run_preflight's keyword arguments."""
        return run_preflight(self, selector, **options)

    async def gather_facts_async(self, selector: str = "all", **options: Any) -> list[HostFactsOutcome]:
        """``gather_facts`` without blocking the event loop."""
        options.setdefault("inventory", self)
        return await gather_facts_async(self.hosts_for(selector), **options)

    async def preflight_async(self, selector: str = "all", **options: Any) -> PreflightRun:
        """``preflight`` without blocking the event loop."""
        return await run_preflight_async(self, selector, **options)


# The asyncio forms of facts, preflight and the NCCL check: the same keyword
# arguments; cancelling the awaiting task stops the commands on the hosts.


async def gather_facts_async(hosts: Sequence[_core.Host], **options: Any) -> list[HostFactsOutcome]:
    """``gather_facts`` without blocking the event loop."""
    call = _AsyncCall()
    outcomes: list[HostFactsOutcome] = await call.wait(cast(Operation, gather_facts(hosts, _done=call.done, **options)))
    return outcomes


async def run_preflight_async(hosts: Any, selector: str = "all", **options: Any) -> PreflightRun:
    """``run_preflight`` without blocking the event loop."""
    call = _AsyncCall()
    run: PreflightRun = await call.wait(cast(Operation, run_preflight(hosts, selector, _done=call.done, **options)))
    return run


async def nccl_check_async(hosts: Sequence[_core.Host], **options: Any) -> NcclCheckResult:
    """``nccl_check`` without blocking the event loop."""
    call = _AsyncCall()
    result: NcclCheckResult = await call.wait(cast(Operation, nccl_check(hosts, _done=call.done, **options)))
    return result


class LabStatus(_core.LabStatus):
    """A lab's state (``lab_up``, ``lab_status``)."""

    def inventory(self) -> Inventory:
        """The lab's inventory (keys and known_hosts already filled in)."""
        if not self.inventory_path:
            raise Error(f"lab {self.name!r} has no inventory; is it up?", "lab_failed")
        return Inventory.load(self.inventory_path)


def lab_up(
    hosts: int = 2,
    nas: bool = False,
    name: str = "ck",
    subnet: str = "10.88.0",
    state_dir: _Path = "",
    *,
    docker: bool = False,
    gpus: int = 0,
    roles: Optional[Sequence[str]] = None,
    gpu_model: str = "NVIDIA L20",
    gpu_memory_gib: float = 48.0,
) -> LabStatus:
    """Bring a lab of real sshd hosts up on this machine (root only); idempotent.

    ``docker=True`` runs a real Docker engine in each host (not the nas) with
    the local image ``clusterkit/lab-runtime:bookworm``; ``gpus=N`` declares N
    SIMULATED GPUs on each GPU host in the inventory (they do not exist);
    ``roles`` gives h1..hN their roles in order (head, worker, gpu, download;
    default with gpus: head, then worker).
    """
    return LabStatus(
        _core.lab_up(
            hosts=hosts,
            nas=nas,
            name=name,
            subnet=subnet,
            state_dir=state_dir,
            docker=docker,
            gpus=gpus,
            roles=roles,
            gpu_model=gpu_model,
            gpu_memory_gib=gpu_memory_gib,
        )
    )


def lab_status(name: str = "ck", state_dir: _Path = "") -> LabStatus:
    """What of the lab ``name`` is there now."""
    return LabStatus(_core.lab_status(name=name, state_dir=state_dir))


# --- OpenAI client ---
# The OpenAI-compatible client for the servers clusterkit deploys (vLLM):
# blocking calls and iterator streams from the C++ core (GIL released while
# waiting, Ctrl-C cancels), and their asyncio forms below.
from ._core import (  # noqa: E402
    ChatStream,
    Choice,
    CompletionResult,
    HealthResult,
    MetricsResult,
    ModelInfo,
    ModelList,
    OpenAIConnectionError,
    OpenAIError,
    OpenAITimeoutError,
    ResponseMeta,
    StreamChunk,
    StreamResult,
    Usage,
    VllmGauges,
)

__all__ += [
    "AsyncChatStream",
    "ChatStream",
    "Choice",
    "CompletionResult",
    "HealthResult",
    "MetricsResult",
    "ModelInfo",
    "ModelList",
    "OpenAIClient",
    "OpenAIConnectionError",
    "OpenAIError",
    "OpenAITimeoutError",
    "ResponseMeta",
    "StreamChunk",
    "StreamResult",
    "Usage",
    "VllmGauges",
]

# --- Benchmark ---
# The load generator of `clusterkit bench` (TTFT, TPOT, ITL, throughput, as
# `vllm bench serve` defines them), on a thread of its own; Ctrl-C stops it.
from ._core import (  # noqa: E402
    BenchProgress,
    BenchResult,
    BenchSample,
    BenchSpec,
    BenchSummary,
    Distribution,
    read_prompts_file,
    run_bench,
    synthetic_prompts,
)

__all__ += [
    "BenchProgress",
    "BenchResult",
    "BenchSample",
    "BenchSpec",
    "BenchSummary",
    "Distribution",
    "read_prompts_file",
    "run_bench",
    "synthetic_prompts",
]

_Messages = Sequence[Mapping[str, Any]]
_Prompt = Union[str, Sequence[str], Sequence[int]]


def _wake(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:  # I/O thread
    # Holds the loop and the event, never the AsyncChatStream: a stream
    # dropped unread is freed, and freeing it stops the request.
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # the loop is closed: nobody is reading any more
        pass


class AsyncChatStream:
    """A streamed chat or completion for asyncio: ``async for chunk in stream``.

    Chunks are read without blocking the event loop. Cancelling the task that
    iterates (``task.cancel()``, ``asyncio.wait_for``), ``await
    stream.aclose()`` or leaving ``async with`` stops the request and closes
    its connection before the task goes on. A stream dropped before its end
    is stopped too. Errors are raised from the iteration as OpenAIError.
    """

    def __init__(self, start: Callable[[Callable[[], None]], ChatStream]) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._event = event
        self._stream = start(lambda: _wake(loop, event))

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> StreamChunk:
        while True:
            self._event.clear()
            try:
                chunk = self._stream.next_ready()
            except StopIteration:
                raise StopAsyncIteration from None
            if chunk is not None:
                return chunk
            try:
                await self._event.wait()
            except asyncio.CancelledError:
                await self._stop()
                raise

    async def _stop(self) -> None:
        # Cancel, then wait until the request has really ended (its
        # connection closed), even if the task is cancelled again meanwhile.
        self._stream.cancel()
        while not self._stream.done():
            self._event.clear()
            if self._stream.done():
                break
            try:
                await self._event.wait()
            except asyncio.CancelledError:
                continue

    def cancel(self) -> None:
        """Ask the request to stop (any thread); iterating then raises OpenAIError('cancelled')."""
        self._stream.cancel()

    async def aclose(self) -> None:
        """Stop the request (when not ended yet) and wait until its connection is closed."""
        if not self._stream.done():
            await self._stop()

    async def collect(self) -> StreamResult:
        """Read to the end and return the StreamResult (raises OpenAIError)."""
        async for _ in self:
            pass
        result = self._stream.result
        assert result is not None
        return result

    @property
    def result(self) -> Optional[StreamResult]:
        """The StreamResult once the stream ended, else None."""
        return self._stream.result

    def done(self) -> bool:
        """True once the request has ended (chunks may still be unread)."""
        return self._stream.done()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class OpenAIClient(_core.OpenAIClient):
    """An OpenAI-compatible client (vLLM); see the C++ core's OpenAIClient for the options.

    Blocking: ``list_models``, ``chat``, ``complete``, ``health``, ``metrics``
    (the GIL is released; Ctrl-C cancels the request), ``chat_stream`` /
    ``complete_stream`` (iterators of StreamChunk). The ``*_async`` methods
    are their asyncio forms: cancelling the awaiting task cancels the request
    and closes its connection before the task ends. Calls raise OpenAIError
    (a clusterkit.Error) with the HTTP status and the server's message.

        client = ck.OpenAIClient("http://127.0.0.1:8000", api_key=None)
        print(client.chat("my-model", prompt="Who are you?", max_tokens=64).text)
        for chunk in client.chat_stream("my-model", prompt="Count to ten"):
            print(chunk.delta, end="", flush=True)
    """

    async def list_models_async(self) -> ModelList:
        """``list_models`` without blocking the event loop."""
        call = _AsyncCall()
        result: ModelList = await call.wait(self._start_list_models(done=call.done))
        return result

    async def health_async(self) -> HealthResult:
        """``health`` without blocking the event loop."""
        call = _AsyncCall()
        result: HealthResult = await call.wait(self._start_health(done=call.done))
        return result

    async def metrics_async(self) -> MetricsResult:
        """``metrics`` without blocking the event loop."""
        call = _AsyncCall()
        result: MetricsResult = await call.wait(self._start_metrics(done=call.done))
        return result

    async def chat_async(
        self,
        model: str,
        messages: Optional[_Messages] = None,
        *,
        prompt: Optional[str] = None,
        system: Optional[str] = None,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> CompletionResult:
        """``chat`` without blocking the event loop."""
        call = _AsyncCall()
        op = self._start_chat(
            model,
            messages,
            prompt=prompt,
            system=system,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            extra=extra,
            done=call.done,
        )
        result: CompletionResult = await call.wait(op)
        return result

    async def complete_async(
        self,
        model: str,
        prompt: _Prompt,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> CompletionResult:
        """``complete`` without blocking the event loop."""
        call = _AsyncCall()
        op = self._start_complete(
            model, prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, extra=extra, done=call.done
        )
        result: CompletionResult = await call.wait(op)
        return result

    def chat_stream_async(
        self,
        model: str,
        messages: Optional[_Messages] = None,
        *,
        prompt: Optional[str] = None,
        system: Optional[str] = None,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> AsyncChatStream:
        """``chat_stream`` for asyncio: ``async for chunk in client.chat_stream_async(...)``.

        Call it from a coroutine (it needs the running loop); the request starts at once.
        """
        return AsyncChatStream(
            lambda notify: self._start_chat_stream(
                model,
                messages,
                prompt=prompt,
                system=system,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                extra=extra,
                notify=notify,
            )
        )

    def complete_stream_async(
        self,
        model: str,
        prompt: _Prompt,
        *,
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> AsyncChatStream:
        """``complete_stream`` for asyncio: ``async for chunk in client.complete_stream_async(...)``."""
        return AsyncChatStream(
            lambda notify: self._start_complete_stream(
                model, prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, extra=extra, notify=notify
            )
        )


# --- end OpenAI client ---


# --- NAS and model store ---
# Shared storage for models (register_store.cpp): NasMount mounts one folder
# at the same path on every host; ModelStore downloads a model on a host
# through the hub's own CLI, copies it into the NAS with rsync and checks it
# from every host. The blocking calls come from the C++ core (GIL released,
# Ctrl-C stops the commands on the hosts); their asyncio forms are below.
from ._core import (  # noqa: E402
    CopyItem,
    DownloadProgressParser,
    DownloadResult,
    DownloadSpec,
    HostVerify,
    Hub,
    ModelSnapshot,
    ModelStoreSpec,
    MountEntry,
    MountOutcome,
    MountPlan,
    MountProbe,
    NasCheckReport,
    NasHostView,
    NasKind,
    NasSpec,
    RemoteVerifyOptions,
    RsyncProgress,
    SyncResult,
    SyncSpec,
    TqdmBar,
    TransferProgress,
    UnmountOptions,
    download_arguments,
    download_environment,
    download_script,
    explain_download_failure,
    fstab_line,
    model_snapshot_script,
    mount_at,
    mount_probe_script,
    nas_mount_argv,
    nas_clients,
    nas_mount_options,
    nas_mount_script,
    nas_spec_from_vars,
    parse_file_listing,
    parse_model_snapshot,
    parse_mount_probe,
    parse_mountinfo,
    parse_rsync_progress,
    parse_rsync_stat,
    parse_tqdm_bar,
    plan_copy_streams,
    plan_mount,
    read_model_snapshot,
    rsync_stream_argv,
    strip_ansi,
    validate_nas_spec,
    verify_snapshot,
)

__all__ += [
    "CopyItem",
    "DownloadProgressParser",
    "DownloadResult",
    "DownloadSpec",
    "HostVerify",
    "Hub",
    "ModelSnapshot",
    "ModelStore",
    "ModelStoreSpec",
    "MountEntry",
    "MountOutcome",
    "MountPlan",
    "MountProbe",
    "NasCheckReport",
    "NasHostView",
    "NasKind",
    "NasMount",
    "NasSpec",
    "RemoteVerifyOptions",
    "RsyncProgress",
    "SyncResult",
    "SyncSpec",
    "TqdmBar",
    "TransferProgress",
    "UnmountOptions",
    "download_arguments",
    "download_environment",
    "download_script",
    "explain_download_failure",
    "fstab_line",
    "model_snapshot_script",
    "mount_at",
    "mount_probe_script",
    "nas_mount_argv",
    "nas_clients",
    "nas_mount_options",
    "nas_mount_script",
    "nas_spec_from_vars",
    "parse_file_listing",
    "parse_model_snapshot",
    "parse_mount_probe",
    "parse_mountinfo",
    "parse_rsync_progress",
    "parse_rsync_stat",
    "parse_tqdm_bar",
    "plan_copy_streams",
    "plan_mount",
    "read_model_snapshot",
    "rsync_stream_argv",
    "strip_ansi",
    "validate_nas_spec",
    "verify_snapshot",
]

_OnProgress = Optional[Callable[[TransferProgress], object]]


class NasMount(_core.NasMount):
    """One shared folder (NFS, sshfs or bind) mounted at the same path on a set of hosts.

    ``NasMount(spec)`` or ``NasMount(kind="nfs", source="10.0.0.5:/share",
    mount_point="/mnt")``. ``mount``, ``unmount`` and ``check`` block (GIL
    released); the ``*_async`` methods are their asyncio forms: cancelling
    the awaiting task stops the commands on the hosts before the task ends.
    """

    async def mount_async(self, hosts: Sequence[_core.Host]) -> list[MountOutcome]:
        """``mount`` without blocking the event loop."""
        call = _AsyncCall()
        outcomes: list[MountOutcome] = await call.wait(self._start_mount(hosts, done=call.done))
        return outcomes

    async def unmount_async(
        self, hosts: Sequence[_core.Host], options: Optional[UnmountOptions] = None
    ) -> list[MountOutcome]:
        """``unmount`` without blocking the event loop."""
        call = _AsyncCall()
        outcomes: list[MountOutcome] = await call.wait(self._start_unmount(hosts, options, done=call.done))
        return outcomes

    async def check_async(self, hosts: Sequence[_core.Host]) -> NasCheckReport:
        """``check`` without blocking the event loop."""
        call = _AsyncCall()
        report: NasCheckReport = await call.wait(self._start_check(hosts, done=call.done))
        return report


class ModelStore(_core.ModelStore):
    """Models on shared storage: download, copy into the NAS, verify from every host.

    ``ModelStore("/mnt")``, ``ModelStore(spec)`` or ``ModelStore(root=...,
    layout=..., container_root=...)``. ``download``, ``sync`` and ``verify``
    block (GIL released) and return results that carry a failure in
    ``.error`` rather than raising it; the ``*_async`` methods are their
    asyncio forms, with ``on_progress(TransferProgress)`` called on the
    loop's thread. Cancelling the awaiting task stops the commands on the host.

        store = ck.ModelStore("/mnt", container_root="/models")
        got = store.download(host, ck.DownloadSpec("Qwen/Qwen2.5-7B-Instruct", local_dir="/data/q"))
        copied = store.sync(host, ck.SyncSpec(got.dir, store.path_for("Qwen/Qwen2.5-7B-Instruct")))
        seen = store.verify(gpu_hosts, copied.destination)
    """

    async def download_async(
        self, host: _core.Host, spec: DownloadSpec, *, on_progress: _OnProgress = None
    ) -> DownloadResult:
        """``download`` without blocking the event loop; an exception from on_progress stops it and is raised here."""
        call = _AsyncCall()
        op = self._start_download(host, spec, on_progress=call.wrap(on_progress), done=call.done)
        result: DownloadResult = await call.wait(op)
        return result

    async def sync_async(self, host: _core.Host, spec: SyncSpec, *, on_progress: _OnProgress = None) -> SyncResult:
        """``sync`` without blocking the event loop."""
        call = _AsyncCall()
        op = self._start_sync(host, spec, on_progress=call.wrap(on_progress), done=call.done)
        result: SyncResult = await call.wait(op)
        return result

    async def verify_async(
        self,
        hosts: Sequence[_core.Host],
        dir: _Path,
        options: Optional[RemoteVerifyOptions] = None,
        *,
        on_progress: _OnProgress = None,
    ) -> list[HostVerify]:
        """``verify`` without blocking the event loop."""
        call = _AsyncCall()
        seen: list[HostVerify] = await call.wait(
            self._start_verify(hosts, dir, options, on_progress=call.wrap(on_progress), done=call.done)
        )
        return seen


# --- end NAS and model store ---


# --- Ray cluster and vLLM serving ---
# The seed's Ray cluster (register_serve.cpp): RayCluster starts a Ray head
# and a worker per GPU host, in Docker or bare, and waits until Ray reports
# every node and GPU; VllmServe runs `vllm serve` on it and follows it until
# it answers. The blocking calls come from the C++ core (GIL released, Ctrl-C
# stops the commands on the hosts, a failure raises clusterkit.Error with the
# result as its .result); their asyncio forms are below.
from ._core import (  # noqa: E402
    ExecutorBackend,
    RayClusterSpec,
    RayClusterStatus,
    RayDownOutcome,
    RayHost,
    RayHostLogs,
    RayHostStatus,
    RayNodeDecision,
    RayNodeOutcome,
    RayNodePlan,
    RayNodeProbe,
    RayNodeState,
    RayProgress,
    RayReport,
    RayResource,
    RayRuntimeKind,
    RayStatusText,
    RayUpResult,
    VllmDiagnosis,
    VllmDiagnosisContext,
    VllmDownResult,
    VllmLogProgress,
    VllmProgress,
    VllmReady,
    VllmServeSpec,
    VllmStatus,
    VllmUpResult,
    VllmWatch,
    VolumeMount,
    decide_ray_nodes,
    diagnose_vllm_log,
    evaluate_ray_cluster,
    executor_backend_from_string,
    explain_ray_failure,
    generate_api_key,
    judge_vllm_state,
    parse_ray_amount,
    parse_ray_node_usage,
    parse_ray_nodes_json,
    parse_ray_probe,
    parse_ray_report,
    parse_ray_status,
    parse_vllm_watch,
    plan_ray_node,
    predict_cpu_kv_cache_tokens,
    ray_container_name,
    ray_hosts_from_inventory,
    ray_logs_script,
    ray_node_state_script,
    ray_probe_script,
    ray_route_script,
    ray_runtime_command,
    ray_runtime_from_string,
    ray_spec_from_vars,
    ray_start_script,
    ray_status_script,
    ray_stop_script,
    ray_temp_dir,
    read_vllm_log,
    stored_api_key_for,
    validate_ray_cluster_spec,
    validate_vllm_serve_spec,
    vllm_api_key_path,
    vllm_launch_script,
    vllm_serve_argv,
    vllm_served_name,
    vllm_state_dir,
    vllm_stop_script,
    vllm_watch_script,
)

__all__ += [
    "ExecutorBackend",
    "RayCluster",
    "RayClusterSpec",
    "RayClusterStatus",
    "RayDownOutcome",
    "RayHost",
    "RayHostLogs",
    "RayHostStatus",
    "RayNodeDecision",
    "RayNodeOutcome",
    "RayNodePlan",
    "RayNodeProbe",
    "RayNodeState",
    "RayProgress",
    "RayReport",
    "RayResource",
    "RayRuntimeKind",
    "RayStatusText",
    "RayUpResult",
    "VllmDiagnosis",
    "VllmDiagnosisContext",
    "VllmDownResult",
    "VllmLogProgress",
    "VllmProgress",
    "VllmReady",
    "VllmServe",
    "VllmServeSpec",
    "VllmStatus",
    "VllmUpResult",
    "VllmWatch",
    "VolumeMount",
    "decide_ray_nodes",
    "diagnose_vllm_log",
    "evaluate_ray_cluster",
    "executor_backend_from_string",
    "explain_ray_failure",
    "generate_api_key",
    "judge_vllm_state",
    "parse_ray_amount",
    "parse_ray_node_usage",
    "parse_ray_nodes_json",
    "parse_ray_probe",
    "parse_ray_report",
    "parse_ray_status",
    "parse_vllm_watch",
    "plan_ray_node",
    "predict_cpu_kv_cache_tokens",
    "ray_container_name",
    "ray_hosts_from_inventory",
    "ray_logs_script",
    "ray_node_state_script",
    "ray_probe_script",
    "ray_route_script",
    "ray_runtime_command",
    "ray_runtime_from_string",
    "ray_spec_from_vars",
    "ray_start_script",
    "ray_status_script",
    "ray_stop_script",
    "ray_temp_dir",
    "read_vllm_log",
    "stored_api_key_for",
    "validate_ray_cluster_spec",
    "validate_vllm_serve_spec",
    "vllm_api_key_path",
    "vllm_launch_script",
    "vllm_serve_argv",
    "vllm_served_name",
    "vllm_state_dir",
    "vllm_stop_script",
    "vllm_watch_script",
]


class RayCluster(_core.RayCluster):
    """A Ray head and a worker on every other host, in Docker or bare.

    ``RayCluster(spec, hosts)`` (hosts: RayHost or Host; the head is the one
    marked ``head``) or ``RayCluster.from_inventory(inventory)``. ``up``,
    ``status``, ``down`` and ``logs`` block (GIL released, Ctrl-C stops the
    commands on the hosts) and raise clusterkit.Error when they fail, with
    the result as the error's ``.result``; the ``*_async`` methods are their
    asyncio forms, with ``on_progress(RayProgress)`` called on the loop's
    thread. Cancelling the awaiting task stops the commands on the hosts
    (what already started stays: call ``down``).

        inventory = ck.Inventory.load("cluster.yaml")
        ray = ck.RayCluster.from_inventory(inventory)
        up = ray.up(on_progress=print)
        print(up.status.summary())
    """

    @classmethod
    def from_inventory(
        cls,
        inventory: _core.Inventory,
        selector: str = "all",
        head: Optional[str] = None,
        spec: Optional[RayClusterSpec] = None,
    ) -> RayCluster:
        """The cluster of an inventory, as ``clusterkit ray`` builds it (see the C++ core's from_inventory).

        The selector's hosts (storage/download-only hosts left out), the head
        ``head``, else the host with role head, else the first; GPUs from each
        host's ``gpus:`` entry; ``spec`` (default ``RayClusterSpec()``)
        completed by the head's vars (runtime, runtime_image, serve_venv, ...),
        which win. With a clusterkit.Inventory the hosts share its connections.
        """
        return cls(_core.RayCluster.from_inventory(inventory, selector, head, spec))

    async def up_async(self, on_progress: Optional[Callable[[RayProgress], object]] = None) -> RayUpResult:
        """``up`` without blocking the event loop; an exception from on_progress stops it and is raised here."""
        call = _AsyncCall()
        result: RayUpResult = await call.wait(self._start_up(call.wrap(on_progress), done=call.done))
        return result

    async def status_async(self) -> RayClusterStatus:
        """``status`` without blocking the event loop."""
        call = _AsyncCall()
        result: RayClusterStatus = await call.wait(self._start_status(done=call.done))
        return result

    async def down_async(self) -> list[RayDownOutcome]:
        """``down`` without blocking the event loop."""
        call = _AsyncCall()
        result: list[RayDownOutcome] = await call.wait(self._start_down(done=call.done))
        return result

    async def logs_async(self, tail: int = 200) -> list[RayHostLogs]:
        """``logs`` without blocking the event loop."""
        call = _AsyncCall()
        result: list[RayHostLogs] = await call.wait(self._start_logs(tail, done=call.done))
        return result


class VllmServe(_core.VllmServe):
    """``vllm serve`` on a RayCluster, followed until it answers a real request.

    ``VllmServe(spec, cluster)``. ``up`` launches the engine and returns at
    once; ``wait_ready`` follows its log until /health, /v1/models and one
    streamed token answer (or raises clusterkit.Error with the log's
    diagnosis). ``status``, ``down``, ``logs``; the ``*_async`` methods are
    their asyncio forms. The API key is generated unless given, stored mode
    0600 in ``api_key_file``, and never shown by ``repr()``.

        serve = ck.VllmServe(ck.VllmServeSpec("/models/Qwen2___5-72B-Instruct", tensor_parallel=2,
                                              pipeline_parallel=2), ray)
        serve.up()
        ready = serve.wait_ready(on_progress=lambda p: print(p.phase, p.message))
        client = ck.OpenAIClient(serve.endpoint, api_key=serve.api_key)
    """

    @property
    def cluster(self) -> RayCluster:
        """The RayCluster the engine runs on."""
        return RayCluster(_core.VllmServe.cluster.fget(self))  # type: ignore[attr-defined]

    async def up_async(self) -> VllmUpResult:
        """``up`` without blocking the event loop."""
        call = _AsyncCall()
        result: VllmUpResult = await call.wait(self._start_up(done=call.done))
        return result

    async def wait_ready_async(self, on_progress: Optional[Callable[[VllmProgress], object]] = None) -> VllmReady:
        """``wait_ready`` without blocking the event loop; on_progress(VllmProgress) runs on the loop."""
        call = _AsyncCall()
        result: VllmReady = await call.wait(self._start_wait_ready(call.wrap(on_progress), done=call.done))
        return result

    async def status_async(self) -> VllmStatus:
        """``status`` without blocking the event loop."""
        call = _AsyncCall()
        result: VllmStatus = await call.wait(self._start_status(done=call.done))
        return result

    async def down_async(self) -> VllmDownResult:
        """``down`` without blocking the event loop."""
        call = _AsyncCall()
        result: VllmDownResult = await call.wait(self._start_down(done=call.done))
        return result

    async def logs_async(
        self, tail: int = 200, *, follow: bool = False, on_line: Callable[[str], None] | None = None
    ) -> str:
        """``logs`` without blocking the event loop; with ``follow=True`` it
        runs until the task is cancelled."""
        call = _AsyncCall()
        result: str = await call.wait(self._start_logs(tail, done=call.done, follow=follow, on_line=on_line))
        return result


# --- end Ray cluster and vLLM serving ---

# --- Deployment: the whole seed from one spec ---
#
# A deployment spec (YAML, examples/deployments/) says everything the seed
# did by hand: the hosts, the NAS, the model and where it is downloaded, the
# runtime, Ray, `vllm serve` and the checks. Deployment.up() does it, each
# step on every host at once, and leaves a record. The blocking calls come
# from the C++ core (GIL released, Ctrl-C stops the commands on the hosts, a
# failure raises clusterkit.Error with the record or result as its .result);
# their asyncio forms are below.
from ._core import (  # noqa: E402
    DeploymentChecks,
    DeploymentDownOptions,
    DeploymentDownResult,
    DeploymentHostLook,
    DeploymentModel,
    DeploymentPlanResult,
    DeploymentProgress,
    DeploymentRecord,
    DeploymentSpec,
    DeploymentStatus,
    PlannedCommand,
    PlannedStep,
    StepHostRecord,
    StepRecord,
    deployment_record_path,
    deployment_steps,
    layout_count_refusal,
    load_deployment_record,
    load_deployment_spec,
    parse_deployment_spec,
)

__all__ += [
    "Deployment",
    "DeploymentChecks",
    "DeploymentDownOptions",
    "DeploymentDownResult",
    "DeploymentHostLook",
    "DeploymentModel",
    "DeploymentPlanResult",
    "DeploymentProgress",
    "DeploymentRecord",
    "DeploymentSpec",
    "DeploymentStatus",
    "PlannedCommand",
    "PlannedStep",
    "StepHostRecord",
    "StepRecord",
    "deployment_record_path",
    "deployment_steps",
    "layout_count_refusal",
    "load_deployment_record",
    "load_deployment_spec",
    "parse_deployment_spec",
]


class Deployment(_core.Deployment):
    """The whole seed from one spec: preflight, NAS, model, verify, layout, Ray, vLLM, smoke test, benchmark.

    ``Deployment(spec)`` or ``Deployment.from_file(path)``. ``up``, ``plan``,
    ``status``, ``down`` and ``logs`` block (GIL released, Ctrl-C stops the
    commands on the hosts) and raise clusterkit.Error when they fail, with
    the record (``up``) or the result as the error's ``.result``; the
    ``*_async`` methods are their asyncio forms, with
    ``on_progress(DeploymentProgress)`` called on the loop's thread. ``up`` is
    idempotent and resumable: run it again after a failure or Ctrl-C.

        d = ck.Deployment.from_file("examples/deployments/qwen72b-two-node.yaml")
        print(d.plan().text())                       # every step and command, nothing changed
        record = d.up(on_progress=lambda p: print(p.step, p.host, p.status, p.message))
        print(record.summary())
    """

    @classmethod
    def from_file(cls, path: _Path) -> Deployment:
        """``Deployment(load_deployment_spec(path))``; raises clusterkit.Error listing every mistake of the spec."""
        return cls(_core.Deployment.from_file(path))

    def ray_cluster(self) -> RayCluster:
        """The RayCluster this deployment runs."""
        return RayCluster(_core.Deployment.ray_cluster(self))

    def engine(self, tensor_parallel: int, pipeline_parallel: int, max_model_len: Optional[int] = None) -> VllmServe:
        """The VllmServe this deployment runs with that layout."""
        return VllmServe(_core.Deployment.engine(self, tensor_parallel, pipeline_parallel, max_model_len))

    async def up_async(
        self, on_progress: Optional[Callable[[DeploymentProgress], object]] = None
    ) -> DeploymentRecord:
        """``up`` without blocking the event loop; an exception from on_progress stops it and is raised here."""
        call = _AsyncCall()
        result: DeploymentRecord = await call.wait(self._start_up(call.wrap(on_progress), done=call.done))
        return result

    async def plan_async(self) -> DeploymentPlanResult:
        """``plan`` without blocking the event loop."""
        call = _AsyncCall()
        result: DeploymentPlanResult = await call.wait(self._start_plan(done=call.done))
        return result

    async def status_async(self) -> DeploymentStatus:
        """``status`` without blocking the event loop."""
        call = _AsyncCall()
        result: DeploymentStatus = await call.wait(self._start_status(done=call.done))
        return result

    async def down_async(self, unmount_nas: bool = False, remove_model: bool = False) -> DeploymentDownResult:
        """``down`` without blocking the event loop."""
        call = _AsyncCall()
        result: DeploymentDownResult = await call.wait(self._start_down(unmount_nas, remove_model, done=call.done))
        return result

    async def logs_async(
        self, host: str = "", tail: int = 200, *, follow: bool = False, on_line: Callable[[str], None] | None = None
    ) -> str:
        """``logs`` without blocking the event loop; with ``follow=True`` it
        runs until the task is cancelled."""
        call = _AsyncCall()
        result: str = await call.wait(self._start_logs(host, tail, done=call.done, follow=follow, on_line=on_line))
        return result


# --- end Deployment ---


# --- Pickling ---
# Specs travel to other processes (multiprocessing, Ray tasks) by their
# writable fields; an Inventory by its JSON form. API keys are never
# pickled: a BenchSpec arrives without its key (set it again there).

import copyreg as _copyreg  # noqa: E402
import json as _json  # noqa: E402

_PICKLED_SPECS = (
    "HostSpec",
    "NasSpec",
    "DownloadSpec",
    "SyncSpec",
    "ModelStoreSpec",
    "RayClusterSpec",
    "VllmServeSpec",
    "DeploymentChecks",
    "DeploymentModel",
    "RemoteVerifyOptions",
    "UnmountOptions",
    "DeploymentDownOptions",
    "BenchSpec",
)
_NOT_PICKLED = {"api_key"}


def _writable_fields(cls: type) -> list[str]:
    return [
        name
        for name in dir(cls)
        if not name.startswith("_")
        and name not in _NOT_PICKLED
        and isinstance(getattr(cls, name, None), property)
        and getattr(cls, name).fset is not None
    ]


def _rebuild_spec(cls: type, state: dict[str, Any]) -> Any:
    obj = cls(state["url"]) if cls is _core.BenchSpec else cls()
    for name, value in state.items():
        setattr(obj, name, value)
    return obj


def _reduce_spec(obj: Any) -> tuple[Any, ...]:
    cls = type(obj)
    base = next(c for c in cls.__mro__ if c.__module__ == _core.__name__)
    return (_rebuild_spec, (base, {name: getattr(obj, name) for name in _writable_fields(base)}))


for _name in _PICKLED_SPECS:
    _copyreg.pickle(getattr(_core, _name), _reduce_spec)
_copyreg.pickle(_core.VolumeMount, lambda v: (_core.VolumeMount, (v.host_path, v.container_path, v.read_only)))


def _inventory_from_json(text: str, source: str) -> Inventory:
    return Inventory.parse(text, source)


def _reduce_inventory(inv: Any) -> tuple[Any, ...]:
    return (_inventory_from_json, (_json.dumps(inv.to_json()), inv.source))


_copyreg.pickle(_core.Inventory, _reduce_inventory)
_copyreg.pickle(Inventory, _reduce_inventory)


# A Host travels as its HostSpec: in the other process it is a new handle
# on that process's own runtime (connections are never shared across
# processes; the first command there opens its own).
def _reduce_host(host: Any) -> tuple[Any, ...]:
    return (Host, (host.spec,))


_copyreg.pickle(_core.Host, _reduce_host)
_copyreg.pickle(Host, _reduce_host)
