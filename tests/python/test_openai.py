"""clusterkit.OpenAIClient from Python, against llm-d-inference-sim.

llm-d-inference-sim is a vLLM SIMULATOR (no model, no GPU): it speaks
vLLM's OpenAI-compatible API and /metrics, and can add latency and inject
failures. Every test starts its own simulator on a free 127.0.0.1 port with
the flags it needs (always --force-dummy-tokenizer) and stops it by its pid.
"""

from __future__ import annotations

import _thread
import asyncio
import gc
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from components import simulator
from waiting import tcp_sockets, wait_until, wait_until_async

from pickles import assert_pickles, public_state

import clusterkit as ck

MODEL = "qwen2.5-72b-instruct"
PROMPT = "The quick brown fox jumps over the lazy dog"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def established_to(port: int) -> int:
    """ESTABLISHED IPv4 connections whose remote end is 127.0.0.1:port (the client side)."""
    return tcp_sockets(port, local=False)


class Simulator:
    """One llm-d-inference-sim process (a vLLM simulator) on 127.0.0.1."""

    def __init__(self, flags: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        argv = [simulator(), "--model", MODEL, "--port", str(self.port), "--force-dummy-tokenizer", *flags]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(lambda: self.proc.poll() is not None or self.listening(), 30):
            self.stop()
            raise RuntimeError(f"the simulator did not listen within 30 s: {self.log_text()}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the simulator exited at start: {self.log_text()}")

    def listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)  # by pid, never by name
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """start_sim(*flags) -> a running Simulator, stopped when the test ends."""
    sims: list[Simulator] = []

    def start(*flags: str) -> Simulator:
        sim = Simulator(list(flags), tmp_path / f"sim{len(sims)}.log")
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture(scope="module")
def echo_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator in echo mode (it answers with the prompt), shared by the module."""
    sim = Simulator(["--mode", "echo"], tmp_path_factory.mktemp("echo-sim") / "sim.log")
    yield sim
    sim.stop()


def client_for(sim: Simulator, **options: object) -> ck.OpenAIClient:
    options.setdefault("proxy_from_environment", False)
    options.setdefault("initial_backoff", 0.02)
    options.setdefault("max_backoff", 0.2)
    return ck.OpenAIClient(sim.url, **options)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Models, chat, completions


def test_list_models(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)
    models = client.list_models()
    assert models.ids() == [MODEL]
    assert len(models) == 1
    (info,) = list(models)
    assert info.id == MODEL
    assert info.max_model_len == 1024  # the simulator's default context
    assert info.owned_by == "vllm"
    assert models.raw["object"] == "list"
    # A field clusterkit does not type is still there, in the raw JSON.
    assert info.raw["root"] == MODEL
    assert models.meta.status == 200
    assert models.meta.attempts == 1
    assert models.meta.duration > 0
    assert repr(models) == f"ModelList(['{MODEL}'])"
    # The base URL may carry /v1, as OpenAI clients write it.
    assert ck.OpenAIClient(echo_sim.url + "/v1", proxy_from_environment=False).list_models().ids() == [MODEL]


def test_chat_plain(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)
    r = client.chat(MODEL, [{"role": "user", "content": PROMPT}], max_tokens=64)
    assert isinstance(r, ck.CompletionResult)
    assert r.text == PROMPT  # echo mode answers with the last message
    assert len(r.choices) == 1
    assert (r.choices[0].index, r.choices[0].role, r.choices[0].finish_reason) == (0, "assistant", "stop")
    assert r.model == MODEL
    assert r.id.startswith("chatcmpl-")
    assert r.usage is not None
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.raw["object"] == "chat.completion"
    assert r.raw["choices"][0]["message"]["content"] == PROMPT
    # Untyped fields of the answer are kept in the raw JSON.
    assert "prompt_tokens_details" in r.raw["usage"]
    assert r.meta.status == 200

    # prompt= (and system=) build the messages; the system message is sent too.
    alone = client.chat(MODEL, prompt=PROMPT, max_tokens=64)
    with_system = client.chat(MODEL, prompt=PROMPT, system="You are terse and precise.", max_tokens=64)
    assert alone.text == with_system.text == PROMPT
    assert alone.usage is not None and with_system.usage is not None
    assert alone.usage.prompt_tokens == r.usage.prompt_tokens
    assert with_system.usage.prompt_tokens > alone.usage.prompt_tokens


def test_chat_stream_deltas_add_up_with_usage_last(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)
    plain = client.chat(MODEL, prompt=PROMPT, max_tokens=64)
    stream = client.chat_stream(MODEL, prompt=PROMPT, max_tokens=64)
    assert isinstance(stream, ck.ChatStream)
    chunks = list(stream)
    result = stream.result
    assert result is not None
    assert "".join(c.delta for c in chunks) == result.text == plain.text == PROMPT
    assert result.role == "assistant" and chunks[0].role == "assistant"
    assert result.finish_reason == "stop"
    assert result.done_marker
    assert result.chunks == len(chunks)
    assert result.time_to_first_token > 0
    assert {c.id for c in chunks} == {result.id}
    # Usage arrives alone in the last chunk (stream_options.include_usage).
    assert chunks[-1].usage is not None
    assert chunks[-1].raw["choices"] == []
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[0].raw["object"] == "chat.completion.chunk"
    assert result.usage is not None and plain.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        plain.usage.prompt_tokens,
        plain.usage.completion_tokens,
        plain.usage.total_tokens,
    )
    # One chunk per token in the simulator.
    assert result.content_chunks == result.usage.completion_tokens
    # Read to the end: the stream is over, the summary stays.
    with pytest.raises(StopIteration):
        next(stream)
    assert stream.done()


def test_include_usage_can_be_turned_off_through_extra(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)
    stream = client.chat_stream(MODEL, prompt=PROMPT, extra={"stream_options": {"include_usage": False}})
    chunks = list(stream)
    assert "".join(c.delta for c in chunks) == PROMPT
    assert all(c.usage is None for c in chunks)
    assert stream.result is not None and stream.result.usage is None


def test_completions_plain_and_streamed(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)
    plain = client.complete(MODEL, "one two three four", max_tokens=32)
    assert plain.text == "one two three four"
    assert plain.raw["object"] == "text_completion"
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage is not None
    stream = client.complete_stream(MODEL, "one two three four", max_tokens=32)
    deltas = [c.delta for c in stream]
    result = stream.result
    assert result is not None
    assert "".join(deltas) == result.text == plain.text
    assert result.usage is not None
    assert result.usage.completion_tokens == plain.usage.completion_tokens
    assert result.usage.prompt_tokens == plain.usage.prompt_tokens
    # collect() reads what is left and returns the summary.
    collected = client.complete_stream(MODEL, "five six", max_tokens=32).collect()
    assert collected.text == "five six" and collected.done_marker


def test_extra_fields_are_sent_and_honoured(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--log-http")
    client = client_for(sim)
    stream = client.chat_stream(
        MODEL, prompt="hello", max_tokens=12, extra={"ignore_eos": True, "top_k": 5, "seed": 7}
    )
    result = stream.collect()
    # ignore_eos (a vLLM extension) makes the simulator produce max_tokens tokens.
    assert result.usage is not None and result.usage.completion_tokens == 12
    assert result.finish_reason == "length"
    log = sim.log_text()
    assert re.search(r'top_k\W+5', log), log[-2000:]
    assert re.search(r'seed\W+7', log)
    assert re.search(r'ignore_eos\W+true', log)
    # Bad arguments are refused before anything is sent.
    with pytest.raises(TypeError):
        client.chat(MODEL)
    with pytest.raises(TypeError):
        client.chat(MODEL, [{"role": "user", "content": "x"}], prompt="y")
    with pytest.raises(TypeError):
        client.chat(MODEL, prompt="x", extra=["not", "a", "dict"])  # type: ignore[arg-type]


def test_chunk_json_off_gives_the_same_stream_without_raw(echo_sim: Simulator) -> None:
    with_json = client_for(echo_sim)
    scanned = client_for(echo_sim, chunk_json=False)
    a = list(with_json.chat_stream(MODEL, prompt=PROMPT))
    b = list(scanned.chat_stream(MODEL, prompt=PROMPT))
    assert [c.delta for c in a] == [c.delta for c in b]
    assert all(c.raw is None for c in b)
    assert all(isinstance(c.raw, dict) for c in a)


# ---------------------------------------------------------------------------
# The API key


def test_api_key_is_sent_as_bearer_and_never_shown(
    start_sim: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    key = "sk-clusterkit-py-SECRET-0123456789"
    sim = start_sim("--log-http", "--mode", "echo")
    client = client_for(sim, api_key=key)
    assert "SECRET" not in repr(client) and "SECRET" not in str(client)
    assert repr(client) == f"OpenAIClient('{sim.url}', api_key='***')"
    assert client.chat(MODEL, prompt="secret?").text == "secret?"
    assert client.chat_stream(MODEL, prompt="secret?").collect().text == "secret?"
    # The simulator logged the request headers: the key went out as a bearer token.
    assert f"Authorization: Bearer {key}" in sim.log_text()

    # From $OPENAI_API_KEY when api_key is not given.
    env_key = "sk-from-the-environment-SECRET-42"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    from_env = client_for(sim)
    assert "SECRET" not in repr(from_env)
    from_env.list_models()
    assert f"Authorization: Bearer {env_key}" in sim.log_text()
    monkeypatch.delenv("OPENAI_API_KEY")
    assert repr(client_for(sim)) == f"OpenAIClient('{sim.url}')"

    # Errors (the simulator refuses every key here) name neither key.
    refusing = start_sim("--failure-injection-rate", "100", "--failure-types", "invalid_api_key")
    texts: list[str] = []
    bad = client_for(refusing, api_key=key)
    for call in (lambda: bad.chat(MODEL, prompt="hi"), lambda: bad.chat_stream(MODEL, prompt="hi").collect()):
        with pytest.raises(ck.OpenAIError) as e:
            call()
        assert e.value.status == 401
        assert e.value.server_message == "Incorrect API key provided."
        assert e.value.meta is not None
        texts += [str(e.value), repr(e.value), e.value.message, e.value.server_message, e.value.meta.message]
    assert all("SECRET" not in t for t in texts), texts
    out, err = capfd.readouterr()
    assert "SECRET" not in out and "SECRET" not in err


# ---------------------------------------------------------------------------
# Errors and timeouts


def test_http_errors_carry_status_and_server_message(start_sim: Callable[..., Simulator]) -> None:
    limited = start_sim("--failure-injection-rate", "100", "--failure-types", "rate_limit")
    client = client_for(limited, max_retries=2)
    with pytest.raises(ck.OpenAIError) as e:
        client.chat(MODEL, prompt="hi")
    err = e.value
    assert isinstance(err, ck.Error)  # `except clusterkit.Error` catches it
    assert err.code == "http_error"
    assert err.status == 429
    assert err.server_message.startswith("Rate limit reached")
    assert err.meta is not None and err.meta.attempts == 3 and err.meta.status == 429
    assert "429" in str(err) and "after 3 attempts" in str(err)
    assert err.server_message in str(err)
    assert client.stats()["retries"] == 2
    # Streams report the same way, from the iteration.
    with pytest.raises(ck.OpenAIError) as e:
        for _ in client.chat_stream(MODEL, prompt="hi"):
            pass
    assert e.value.status == 429

    overloaded = start_sim("--failure-injection-rate", "100", "--failure-types", "server_error")
    no_retries = client_for(overloaded, max_retries=0)
    with pytest.raises(ck.OpenAIError) as e:
        no_retries.complete(MODEL, "hi")
    assert (e.value.status, e.value.meta.attempts if e.value.meta else None) == (503, 1)
    assert "overloaded" in e.value.server_message

    bad_request = start_sim("--failure-injection-rate", "100", "--failure-types", "invalid_request")
    with pytest.raises(ck.OpenAIError) as e:
        client_for(bad_request).chat(MODEL, prompt="hi")
    assert e.value.status == 400
    assert e.value.meta is not None and e.value.meta.attempts == 1  # a 400 is not retried
    assert "missing required parameter" in e.value.server_message


def test_connection_refused_and_bad_url() -> None:
    client = ck.OpenAIClient(f"http://127.0.0.1:{free_port()}", proxy_from_environment=False)
    with pytest.raises(ck.OpenAIError) as e:
        client.list_models()
    assert e.value.code == "connection_refused"
    assert e.value.status == 0
    # Also the built-in ConnectionError, as a socket's would be.
    assert isinstance(e.value, ConnectionError) and isinstance(e.value, ck.OpenAIConnectionError)
    assert str(e.value) == e.value.message
    assert type(pickle.loads(pickle.dumps(e.value))) is ck.OpenAIConnectionError
    # Nothing was sent: retried like the openai package does (max_retries=2 by default).
    assert e.value.meta.attempts == 3 and "(after 3 attempts)" in str(e.value)
    assert client.stats()["retries"] == 2
    once = ck.OpenAIClient(f"http://127.0.0.1:{free_port()}", proxy_from_environment=False, max_retries=0)
    with pytest.raises(ck.OpenAIError) as e:
        once.list_models()
    assert e.value.meta.attempts == 1
    with pytest.raises(ck.Error) as bad:
        ck.OpenAIClient("not a url")
    assert bad.value.code == "invalid_argument"
    with pytest.raises(ck.Error) as bad:
        ck.OpenAIClient("https://127.0.0.1:1", ca_file="/nonexistent/ca.pem")
    assert bad.value.code == "local_file_error"


def test_timeouts(start_sim: Callable[..., Simulator]) -> None:
    slow_start = start_sim("--time-to-first-token", "3s")
    streaming = client_for(slow_start, first_token_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(ck.OpenAIError) as e:
        streaming.chat_stream(MODEL, prompt="hi").collect()
    took = time.monotonic() - t0
    assert e.value.code == "timed_out"
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, ck.OpenAITimeoutError)
    assert "first_token_timeout" in str(e.value)
    assert 0.3 <= took < 2.5, took
    assert streaming.stats()["open_connections"] == 0  # a timed-out connection is not reused

    plain = client_for(slow_start, request_timeout=0.3, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(ck.OpenAIError) as e:
        plain.chat(MODEL, prompt="hi")
    assert e.value.code == "timed_out"
    assert "request_timeout" in str(e.value)
    assert time.monotonic() - t0 < 2.5

    slow_tokens = start_sim("--inter-token-latency", "1s")
    gaps = client_for(slow_tokens, inter_token_timeout=0.2)
    with pytest.raises(ck.OpenAIError) as e:
        gaps.chat_stream(MODEL, prompt="hi", max_tokens=10, extra={"ignore_eos": True}).collect()
    assert e.value.code == "timed_out"
    assert "inter_token_timeout" in str(e.value)

    with pytest.raises(ValueError):
        client_for(slow_start, request_timeout=-1)


# ---------------------------------------------------------------------------
# Blocking calls: the GIL is released, Ctrl-C and cancel() stop the request


def test_blocking_call_releases_the_gil(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--time-to-first-token", "600ms")
    client = client_for(sim)
    ticks = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not stop.is_set():
            time.sleep(0.005)
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    try:
        r = client.chat(MODEL, prompt="hi", max_tokens=4)
    finally:
        stop.set()
        t.join()
    assert r.meta.duration >= 0.6
    assert ticks >= 20, ticks  # the other thread ran while chat() waited (with the GIL held: ~0)


def test_ctrl_c_cancels_a_blocking_call_and_closes_its_connection(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--time-to-first-token", "5s")
    client = client_for(sim)
    # Ctrl-C once the request is in flight (the simulator holds the first token for 5 s).
    timer = threading.Thread(target=lambda: wait_until(lambda: established_to(sim.port) == 1) and _thread.interrupt_main())
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.chat(MODEL, prompt="hi")
    timer.join()
    assert time.monotonic() - t0 < 3
    assert wait_until(lambda: client.stats()["open_connections"] == 0)
    assert wait_until(lambda: established_to(sim.port) == 0)
    assert client.list_models().ids() == [MODEL]  # the client is fine afterwards


def test_leaving_a_sync_stream_early_closes_its_connection(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--inter-token-latency", "100ms")
    client = client_for(sim)
    seen: list[str] = []
    t0 = time.monotonic()
    with client.chat_stream(MODEL, prompt="hi", max_tokens=100, extra={"ignore_eos": True}) as stream:
        for chunk in stream:
            if chunk.delta:
                seen.append(chunk.delta)
            if len(seen) == 3:
                assert established_to(sim.port) == 1
                break
    assert wait_until(lambda: client.stats()["open_connections"] == 0)
    assert time.monotonic() - t0 < 3  # 100 tokens would take 10 s
    assert client.stats()["connections_closed"] == 1
    assert wait_until(lambda: established_to(sim.port) == 0)

    # cancel() from another thread: the iteration raises OpenAIError('cancelled').
    stream = client.chat_stream(MODEL, prompt="hi", max_tokens=100, extra={"ignore_eos": True})
    threading.Timer(0.3, stream.cancel).start()
    with pytest.raises(ck.OpenAIError) as e:
        for _ in stream:
            pass
    assert e.value.code == "cancelled"
    assert stream.result is not None and stream.result.content_chunks < 100


# ---------------------------------------------------------------------------
# asyncio


def test_async_calls(echo_sim: Simulator) -> None:
    client = client_for(echo_sim)

    async def main() -> None:
        models, chat, done, health, metrics = await asyncio.gather(
            client.list_models_async(),
            client.chat_async(MODEL, prompt=PROMPT),
            client.complete_async(MODEL, "one two"),
            client.health_async(),
            client.metrics_async(),
        )
        assert models.ids() == [MODEL]
        assert chat.text == PROMPT
        assert done.text == "one two"
        assert health.ok
        assert metrics.gauges.models == [MODEL]
        stream = client.complete_stream_async(MODEL, "three four five")
        deltas = [c.delta async for c in stream]
        assert "".join(deltas) == "three four five"
        assert stream.result is not None and stream.result.text == "three four five"

    asyncio.run(main())


def test_async_errors(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--failure-injection-rate", "100", "--failure-types", "rate_limit")
    client = client_for(sim, max_retries=1)

    async def main() -> None:
        with pytest.raises(ck.OpenAIError) as e:
            await client.chat_async(MODEL, prompt="hi")
        assert (e.value.status, e.value.code) == (429, "http_error")
        assert e.value.meta is not None and e.value.meta.attempts == 2
        with pytest.raises(ck.OpenAIError) as e:
            async for _ in client.chat_stream_async(MODEL, prompt="hi"):
                pass
        assert e.value.status == 429

    asyncio.run(main())


def test_async_concurrent_streams_do_not_block_the_loop(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--inter-token-latency", "50ms", "--max-num-seqs", "16")
    client = client_for(sim)
    n, tokens = 6, 10

    async def one(i: int) -> tuple[str, ck.StreamResult, list[float]]:
        arrivals: list[float] = []
        text = ""
        async with client.chat_stream_async(
            MODEL, prompt=f"stream {i}", max_tokens=tokens, extra={"ignore_eos": True}
        ) as stream:
            async for chunk in stream:
                text += chunk.delta
                if chunk.delta:
                    arrivals.append(time.monotonic())
            assert stream.result is not None
            return text, stream.result, arrivals

    async def main() -> tuple[list[tuple[str, ck.StreamResult, list[float]]], float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        t0 = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.monotonic() - t0
        tick.cancel()
        return list(results), elapsed, ticks

    results, elapsed, ticks = asyncio.run(main())
    for text, result, arrivals in results:
        assert text == result.text and text
        assert result.usage is not None and result.usage.completion_tokens == tokens
        assert result.content_chunks == tokens == len(arrivals)
        assert result.done_marker
    assert len({r.id for _, r, _ in results}) == n
    # One stream takes ~0.5 s; six after one another would take ~3 s.
    assert elapsed < 2.0, elapsed
    # The streams overlapped: each one's first token came before any one ended.
    assert max(a[0] for _, _, a in results) < min(a[-1] for _, _, a in results)
    assert ticks >= 20, ticks  # the loop kept running meanwhile
    assert client.stats()["requests_sent"] == n


def test_cancelling_an_async_stream_task_closes_the_connection(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--inter-token-latency", "100ms")
    client = client_for(sim)

    async def main() -> None:
        seen: list[str] = []
        connected: list[int] = []
        holder: list[ck.AsyncChatStream] = []

        async def read() -> None:
            stream = client.chat_stream_async(MODEL, prompt="hi", max_tokens=100, extra={"ignore_eos": True})
            holder.append(stream)
            async for chunk in stream:
                if chunk.delta:
                    seen.append(chunk.delta)
                    if len(seen) == 3:
                        connected.append(established_to(sim.port))

        task = asyncio.ensure_future(read())
        assert await wait_until_async(lambda: len(seen) >= 3)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < 2
        assert connected == [1]
        # The request ended before the task did: the connection is closed already.
        assert holder[0].done()
        assert client.stats()["open_connections"] == 0
        assert client.stats()["connections_closed"] == 1
        assert len(seen) < 10  # 100 tokens would take 10 s

        # asyncio.wait_for on a plain call cancels it the same way.
        slow = start_sim("--time-to-first-token", "5s")
        slow_client = client_for(slow)
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(slow_client.chat_async(MODEL, prompt="hi"), 0.3)
        assert time.monotonic() - t0 < 2
        assert slow_client.stats()["open_connections"] == 0

        # And aclose() on a stream nobody reads any more.
        stream = slow_client.chat_stream_async(MODEL, prompt="hi")
        assert await wait_until_async(lambda: established_to(slow.port) == 1)  # the request is in flight
        await stream.aclose()
        assert stream.done()
        assert slow_client.stats()["open_connections"] == 0

        # A stream dropped unread is stopped when it is freed.
        dropped: Optional[ck.AsyncChatStream] = slow_client.chat_stream_async(MODEL, prompt="hi")
        assert await wait_until_async(lambda: established_to(slow.port) == 1)
        del dropped
        gc.collect()
        assert await wait_until_async(lambda: slow_client.stats()["open_connections"] == 0, 2)
        assert slow_client.stats()["connections_closed"] == 3

    asyncio.run(main())
    assert established_to(sim.port) == 0
    assert client.list_models().ids() == [MODEL]  # fine afterwards, on a new connection
    assert client.stats()["connections_opened"] == 2


# ---------------------------------------------------------------------------
# /health and /metrics


def test_health_and_metrics(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim()
    client = client_for(sim)
    health = client.health()
    assert health.ok and bool(health)
    assert health.meta.status == 200
    for _ in range(3):
        client.chat(MODEL, prompt="count me", max_tokens=4)
    m = client.metrics()
    g = m.gauges
    assert g.requests_running is not None and g.requests_waiting is not None
    assert g.kv_cache_metric == "vllm:kv_cache_usage_perc"
    assert g.kv_cache_usage is not None and 0.0 <= g.kv_cache_usage <= 1.0
    assert g.prompt_tokens_total is not None and g.prompt_tokens_total > 0
    assert g.models == [MODEL]
    assert "vllm:num_requests_running" in m.text
    assert assert_pickles(m).gauges.models == [MODEL]
    samples = m.samples("vllm:prompt_tokens_total")
    assert samples and all(name == "vllm:prompt_tokens_total" for name, _, _ in samples)
    assert samples[0][1].get("model_name") == MODEL
    assert m.value("vllm:prompt_tokens_total") == g.prompt_tokens_total
    assert m.value("no_such_metric") is None
    assert m.meta.status == 200


# ---------------------------------------------------------------------------
# The official OpenAI Python client on the same simulator


def test_same_content_and_usage_as_the_openai_package(echo_sim: Simulator) -> None:
    openai = pytest.importorskip("openai", reason="the openai package is not installed (pip install openai)")
    theirs = openai.OpenAI(base_url=echo_sim.url + "/v1", api_key="sk-crosscheck", max_retries=0)
    ours = client_for(echo_sim, api_key="sk-crosscheck")
    messages = [{"role": "user", "content": PROMPT}]

    def usage_of(u: object) -> tuple[int, int, int]:
        return (u.prompt_tokens, u.completion_tokens, u.total_tokens)  # type: ignore[attr-defined]

    r_theirs = theirs.chat.completions.create(model=MODEL, messages=messages, max_tokens=64)
    r_ours = ours.chat(MODEL, messages, max_tokens=64)
    assert r_ours.text == r_theirs.choices[0].message.content
    assert r_ours.choices[0].role == r_theirs.choices[0].message.role
    assert r_ours.choices[0].finish_reason == r_theirs.choices[0].finish_reason
    assert usage_of(r_ours.usage) == usage_of(r_theirs.usage)

    text, role, finish, usage, chunks = "", None, None, None, 0
    for c in theirs.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=64, stream=True, stream_options={"include_usage": True}
    ):
        chunks += 1
        if c.usage is not None:
            usage = usage_of(c.usage)
        for ch in c.choices:
            text += ch.delta.content or ""
            role = ch.delta.role or role
            finish = ch.finish_reason or finish
    s_ours = ours.chat_stream(MODEL, messages, max_tokens=64).collect()
    assert (s_ours.text, s_ours.role, s_ours.finish_reason) == (text, role, finish)
    assert usage_of(s_ours.usage) == usage
    assert s_ours.chunks == chunks

    k_theirs = theirs.completions.create(model=MODEL, prompt=PROMPT, max_tokens=64)
    k_ours = ours.complete(MODEL, PROMPT, max_tokens=64)
    assert k_ours.text == k_theirs.choices[0].text
    assert usage_of(k_ours.usage) == usage_of(k_theirs.usage)

    text, usage, chunks = "", None, 0
    for c in theirs.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=64, stream=True, stream_options={"include_usage": True}
    ):
        chunks += 1
        if c.usage is not None:
            usage = usage_of(c.usage)
        text += "".join(ch.text or "" for ch in c.choices)
    ks_ours = ours.complete_stream(MODEL, PROMPT, max_tokens=64).collect()
    assert ks_ours.text == text
    assert usage_of(ks_ours.usage) == usage
    assert ks_ours.chunks == chunks

    # The asyncio forms agree with the OpenAI package's async client.
    async def both() -> None:
        a_theirs = openai.AsyncOpenAI(base_url=echo_sim.url + "/v1", api_key="sk-crosscheck", max_retries=0)
        text_theirs = ""
        async for c in await a_theirs.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=64, stream=True
        ):
            text_theirs += "".join(ch.delta.content or "" for ch in c.choices)
        await a_theirs.close()
        text_ours = "".join([c.delta async for c in ours.chat_stream_async(MODEL, messages, max_tokens=64)])
        assert text_ours == text_theirs == PROMPT

    asyncio.run(both())


def test_control_characters_from_a_server_never_reach_the_terminal() -> None:
    """An error body with ANSI sequences (a hostile or broken server) is printed with '?' for ESC and friends."""
    import http.server
    import threading

    class Hostile(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body = json.dumps({"error": {"message": "\x1b[2J\x1b[31mboom\x1b[0m\x9b"}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def refusal_from(handler: type[http.server.BaseHTTPRequestHandler]) -> ck.OpenAIError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = ck.OpenAIClient(f"http://127.0.0.1:{server.server_address[1]}", proxy_from_environment=False,
                                     max_retries=0)
            with pytest.raises(ck.OpenAIError) as e:
                client.list_models()
            return e.value
        finally:
            server.shutdown()
            server.server_close()

    error = refusal_from(Hostile)
    texts = [str(error), error.server_message, error.meta.message if error.meta else ""]
    assert error.server_message == "?[2J?[31mboom?[0m?"
    assert all("\x1b" not in t and "\x9b" not in t for t in texts), texts

    # Not JSON, not even UTF-8: a lone 0x9b byte (CSI to a terminal in an
    # 8-bit mode) and a cut sequence become '?' too; the text around stays.
    class Raw(Hostile):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body = b"bad gateway \x9b2J caf\xc3\xa9 \xe6\xa8!"
            self.send_response(502)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    raw = str(refusal_from(Raw))
    assert "bad gateway ?2J caf\u00e9 ??!" in raw, raw


# ---------------------------------------------------------------------------
# The benchmark (clusterkit.run_bench, the load generator of `clusterkit bench`)


def test_run_bench_counts_every_request_and_keeps_the_key_out(start_sim: Callable[..., Simulator]) -> None:
    echo_sim = start_sim()  # random mode: ignore_eos gives exactly max_tokens
    progress: list[ck.BenchProgress] = []
    spec = ck.BenchSpec(echo_sim.url, api_key="sk-secret-123", concurrency=4, requests=20, max_tokens=8,
                        prompt_tokens=16, progress_interval=0.01)
    assert spec.problems() == [] and spec.api_key == "***" and "sk-secret" not in repr(spec)
    result = ck.run_bench(spec, on_progress=progress.append)
    s = result.summary
    assert (s.completed, s.failed, s.errors) == (20, 0, {})
    assert len(result.samples) == 20 and all(x.ok and x.ttft > 0 and x.e2e >= x.ttft for x in result.samples)
    assert s.output_tokens == 20 * 8  # ignore_eos: exactly max_tokens each
    assert s.prompt_tokens > 0 and s.ttft.count == 20 and s.request_throughput > 0
    assert result.spec.model == MODEL  # looked up, as `clusterkit bench` does
    assert result.warmed_connections == 4  # min(concurrency, requests)
    assert not result.cancelled and result.message == ""
    report = result.to_json()
    assert len(report["requests"]) == 20 and report["completed"] == 20
    assert "sk-secret" not in json.dumps(report) and "sk-secret" not in repr(result.spec)
    assert result.title() == f"clusterkit bench: {MODEL} @ {echo_sim.url}, concurrency 4"
    assert "20 ok, 0 failed" in result.to_text() and result.latency_svg().startswith("<svg")
    assert progress and progress[-1].completed == 20 and progress[-1].fraction == 1.0
    # To another process (a Ray task's result, a pool's): whole, less the key.
    blob = pickle.dumps(result)
    assert b"sk-secret" not in blob
    copy = pickle.loads(blob)
    assert copy.to_json() == report and copy.to_text() == result.to_text()
    assert public_state(copy.summary) == public_state(s) and public_state(copy.samples) == public_state(result.samples)
    assert copy.spec.url == spec.url and copy.spec.api_key is None  # no key travelled
    assert_pickles(progress[-1])


def test_run_bench_settings_out_of_range_name_the_flag() -> None:
    spec = ck.BenchSpec("http://127.0.0.1:1", concurrency=0, rate=float("nan"), requests=0, duration=-5.0)
    assert len(spec.problems()) == 4
    with pytest.raises(ck.Error) as e:
        ck.run_bench(spec)
    assert e.value.code == "invalid_argument"
    for text in ("concurrency (--concurrency): 0 is not in 1..1000000", "rate (--rate): nan", "requests (--requests): 0", "duration (--duration): -5"):
        assert text in str(e.value)


def test_run_bench_failures_are_counted_with_their_reason() -> None:
    port = free_port()  # nothing listens there
    result = ck.run_bench(ck.BenchSpec(f"http://127.0.0.1:{port}", model="m", requests=3, warmup=False))
    assert (result.summary.completed, result.summary.failed) == (0, 3)
    [(reason, count)] = result.summary.errors.items()
    assert count == 3 and "refused the connection: nothing listens on that port" in reason
    assert all(not x.ok and x.ttft == -1 for x in result.samples)
    # Each sample as every result says it: the code in `error`, the sentence in `message`.
    assert all(isinstance(x.error, ck.ConnectionError) and x.error.code == "connection_refused" for x in result.samples)
    assert all(x.message == reason and x.error.message == reason for x in result.samples)
    # Without a model, the lookup itself fails: an error naming the server.
    with pytest.raises(ck.Error) as e:
        ck.run_bench(ck.BenchSpec(f"http://127.0.0.1:{port}", requests=1))
    assert e.value.code == "connection_refused" and str(port) in str(e.value)


def test_run_bench_names_a_timeout_and_a_stream_cut_short(start_sim: Callable[..., Simulator]) -> None:
    # Once both were "HTTP 200" in the summary: the status line had come.
    slow = start_sim("--time-to-first-token", "3s")
    timed = ck.run_bench(ck.BenchSpec(slow.url, model=MODEL, requests=2, concurrency=2, timeout=0.5, warmup=False))
    [(reason, count)] = timed.summary.errors.items()
    assert count == 2 and "no complete answer within 500 ms (request_timeout)" in reason, reason
    assert all(isinstance(x.error, TimeoutError) and x.error.code == "timed_out" for x in timed.samples)
    assert "HTTP 200" not in reason
    # A server that starts a streamed answer and drops the connection
    # inside a chunk (a crashed engine's proxy does that).
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def cut_short() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                event = b'data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
                conn.sendall(b"%x\r\n" % len(event) + event + b"\r\n" + b"40\r\ndata: {")

    server = threading.Thread(target=cut_short, daemon=True)
    server.start()
    try:
        port = srv.getsockname()[1]
        broken = ck.run_bench(ck.BenchSpec(f"http://127.0.0.1:{port}", model="m", requests=2, warmup=False))
    finally:
        srv.close()
        server.join(5)
    [(reason, count)] = broken.summary.errors.items()
    assert count == 2 and "the connection dropped during next token" in reason, reason
    assert all(x.ttft > 0 and not x.ok for x in broken.samples)  # a token came, then the cut


def test_run_bench_ctrl_c_stops_the_run(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--time-to-first-token", "5s")
    # Ctrl-C once both requests are in flight (the simulator holds the first token for 5 s).
    timer = threading.Thread(target=lambda: wait_until(lambda: established_to(sim.port) >= 2) and _thread.interrupt_main())
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ck.run_bench(ck.BenchSpec(sim.url, model=MODEL, concurrency=2, requests=4, max_tokens=4, warmup=False))
    timer.join()
    assert time.monotonic() - t0 < 4.0
    assert wait_until(lambda: established_to(sim.port) == 0, 5)  # the requests in flight were closed


def test_run_bench_progress_callback_that_raises_stops_the_run(start_sim: Callable[..., Simulator]) -> None:
    sim = start_sim("--time-to-first-token", "5s")

    class Stop(Exception):
        pass

    def on_progress(p: ck.BenchProgress) -> None:
        if p.in_flight:
            raise Stop(p.in_flight)

    t0 = time.monotonic()
    with pytest.raises(Stop):
        ck.run_bench(ck.BenchSpec(sim.url, model=MODEL, concurrency=2, requests=4, warmup=False, progress_interval=0.05),
                     on_progress=on_progress)
    assert time.monotonic() - t0 < 4.0


def test_read_prompts_file_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"prompt": "one"}\ntwo\n\n{"text": "three"}\n')
    assert ck.read_prompts_file(str(f)) == ["one", "two", "three"]
    for path, text in ((tmp_path, "is not a regular file"), ("/dev/zero", "is not a regular file"),
                       (tmp_path / "none", "No such file or directory")):
        with pytest.raises(ck.Error) as e:
            ck.read_prompts_file(str(path))
        assert text in str(e.value) and str(path) in str(e.value)
    with pytest.raises(FileNotFoundError):
        ck.read_prompts_file(str(tmp_path / "none"))
    assert len(ck.synthetic_prompts(8, seed=1, count=3)) == 3


def test_run_bench_refuses_a_model_the_server_does_not_serve(echo_sim: Simulator) -> None:
    with pytest.raises(ck.Error) as e:
        ck.run_bench(ck.BenchSpec(echo_sim.url, model="wrong", requests=3))
    assert e.value.code == "invalid_argument"
    assert f"model (--model) 'wrong' is not served by {echo_sim.url}; it serves {MODEL}" in str(e.value)


def test_a_model_not_served_answers_404_naming_the_served_ones(echo_sim: Simulator) -> None:
    # The hub id where the server serves its --served-model-name: the 404
    # names what it serves and the nearest, for plain calls and streams.
    client = client_for(echo_sim)
    with pytest.raises(ck.OpenAIError) as e:
        client.chat("Qwen/Qwen2.5-72B-Instruct", prompt="hi")
    assert e.value.status == 404
    assert f"; {echo_sim.url} serves {MODEL}; did you mean '{MODEL}'?" in str(e.value)
    with pytest.raises(ck.OpenAIError) as e:
        for _ in client.chat_stream("Qwen/Qwen2.5-72B-Instruct", prompt="hi"):
            pass
    assert e.value.status == 404 and f"did you mean '{MODEL}'?" in str(e.value)
    with pytest.raises(ck.OpenAIError) as e:
        client.complete("llama-3-8b", "hi")
    assert f"{echo_sim.url} serves {MODEL}" in str(e.value) and "did you mean" not in str(e.value)


def test_clients_and_results_pickle_without_the_key(echo_sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # For multiprocessing and Ray tasks. The key and credential-like headers
    # never travel: the other process takes $OPENAI_API_KEY, as a new client would.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = client_for(
        echo_sim,
        api_key="sk-never-pickled",
        request_timeout=42.0,
        first_token_timeout=None,
        max_retries=5,
        headers={"X-Team": "infra", "Authorization": "Bearer sk-header", "X-Api-Key": "sk-2"},
    )
    blob = pickle.dumps(client)
    assert b"sk-never-pickled" not in blob and b"sk-header" not in blob and b"sk-2" not in blob and b"infra" in blob
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    copy = pickle.loads(blob)
    assert isinstance(copy, ck.OpenAIClient) and copy.base_url == client.base_url
    assert repr(copy) == repr(client)  # the key (from the environment here) shows as '***'
    plain = copy.chat(MODEL, prompt=PROMPT, max_tokens=64)
    assert plain.text == PROMPT

    # Results come back equal, field by field.
    for r in (plain, copy.complete(MODEL, PROMPT, max_tokens=64)):
        b = pickle.loads(pickle.dumps(r))
        assert (b.id, b.model, b.text, b.raw, repr(b.usage)) == (r.id, r.model, r.text, r.raw, repr(r.usage))
        assert [(c.index, c.text, c.finish_reason) for c in b.choices] == [(c.index, c.text, c.finish_reason) for c in r.choices]
        assert (b.meta.status, b.meta.attempts, b.meta.duration) == (r.meta.status, r.meta.attempts, r.meta.duration)
    stream = copy.chat_stream(MODEL, prompt=PROMPT, max_tokens=64)
    s = stream.collect()
    sb = pickle.loads(pickle.dumps(s))
    assert (sb.text, sb.chunks, sb.content_chunks, sb.done_marker, sb.time_to_first_token, sb.usage.total_tokens) == (
        s.text, s.chunks, s.content_chunks, s.done_marker, s.time_to_first_token, s.usage.total_tokens)
    models = pickle.loads(pickle.dumps(copy.list_models()))
    assert models.ids() == [MODEL] and models.raw["object"] == "list" and models.models[0].max_model_len is not None
    health = pickle.loads(pickle.dumps(copy.health()))
    assert health.ok and health.meta.status == 200
