#!/usr/bin/env python3
"""Ask an OpenAI-compatible server (vLLM) one question three ways: a whole
answer, a stream printed as it comes, and several streams at once from asyncio.

    python3 examples/python/openai_chat.py --url http://gpu1:8000 --model qwen2.5-72b-instruct "Who are you?"

To try it without a GPU, start llm-d-inference-sim, a vLLM simulator:
    llm-d-inference-sim --model qwen2.5-72b-instruct --port 8000 --force-dummy-tokenizer &
The API key comes from --api-key or $OPENAI_API_KEY; it is never printed.
"""
import argparse
import asyncio
import sys

import clusterkit as ck


async def several(client: ck.OpenAIClient, model: str, prompts: list[str]) -> list[str]:
    async def one(prompt: str) -> str:
        text = ""
        async for chunk in client.chat_stream_async(model, prompt=prompt, max_tokens=64):
            text += chunk.delta
        return text

    # Concurrent streams on one event loop; cancelling this task would stop them all.
    return list(await asyncio.gather(*(one(p) for p in prompts)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="http://host:8000 or https://host/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("prompt", nargs="?", default="Who are you?")
    a = ap.parse_args()

    client = ck.OpenAIClient(a.url, api_key=a.api_key, first_token_timeout=60, inter_token_timeout=30)
    try:
        print("models:", ", ".join(client.list_models().ids()))

        answer = client.chat(a.model, prompt=a.prompt, max_tokens=128)
        print(f"whole answer: {answer.text!r} ({answer.usage})")

        print("streamed: ", end="")
        with client.chat_stream(a.model, prompt=a.prompt, max_tokens=128) as stream:
            for chunk in stream:
                print(chunk.delta, end="", flush=True)
        result = stream.result
        assert result is not None
        print(f"\n  {result.chunks} chunks, first token after {result.time_to_first_token * 1000:.0f} ms, {result.usage}")

        texts = asyncio.run(several(client, a.model, [f"{a.prompt} ({i})" for i in range(4)]))
        for t in texts:
            print("asyncio:", repr(t))
    except ck.OpenAIError as e:
        print(f"error ({e.code}, HTTP {e.status}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
