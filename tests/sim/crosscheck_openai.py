#!/usr/bin/env python3
"""Ask a server the same questions with the official OpenAI Python client and
print what it saw as JSON, for test_openai_sim's cross-check against
clusterkit's OpenAIClient (both talk to the same llm-d-inference-sim, a vLLM
simulator).

Exit status 3: the openai package is not installed (the test then skips).
"""
import argparse
import json
import sys

try:
    import openai
except ImportError:
    sys.exit(3)


def usage_dict(u):
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True, help="http://127.0.0.1:PORT/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=64)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key="sk-crosscheck", max_retries=0)
    messages = [{"role": "user", "content": a.prompt}]
    out = {"openai_version": openai.__version__}

    r = client.chat.completions.create(model=a.model, messages=messages, max_tokens=a.max_tokens)
    out["chat"] = {"text": r.choices[0].message.content, "role": r.choices[0].message.role,
                   "finish_reason": r.choices[0].finish_reason, "usage": usage_dict(r.usage)}

    text, role, finish, usage, chunks = "", None, None, None, 0
    for c in client.chat.completions.create(model=a.model, messages=messages, max_tokens=a.max_tokens,
                                            stream=True, stream_options={"include_usage": True}):
        chunks += 1
        if c.usage is not None:
            usage = usage_dict(c.usage)
        for ch in c.choices:
            if ch.delta.content:
                text += ch.delta.content
            if ch.delta.role:
                role = ch.delta.role
            if ch.finish_reason:
                finish = ch.finish_reason
    out["chat_stream"] = {"text": text, "role": role, "finish_reason": finish, "usage": usage, "chunks": chunks}

    r = client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.max_tokens)
    out["completion"] = {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason,
                         "usage": usage_dict(r.usage)}

    text, usage, chunks = "", None, 0
    for c in client.completions.create(model=a.model, prompt=a.prompt, max_tokens=a.max_tokens, stream=True,
                                       stream_options={"include_usage": True}):
        chunks += 1
        if c.usage is not None:
            usage = usage_dict(c.usage)
        for ch in c.choices:
            text += ch.text or ""
    out["completion_stream"] = {"text": text, "usage": usage, "chunks": chunks}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
