"""Random command lines against the clusterkit CLI (issue 15's abuse suite,
the random part): verbs and flags it knows, with hostile values (negative,
NaN, huge, shell syntax, paths out of bounds, devices, invalid UTF-8, ESC,
very long). Every case must end by itself, inside 4 GiB and 60 s, with
exit 0, 1 or 2 (no signal, no hang), and a failure must say something on
stderr that starts with "clusterkit:" or is CLI11's usage text; no shell
syntax may run (a marker file under /run must never appear), and nothing
printed may carry an ESC byte. Hosts are 127.0.0.1 port 1 (refused at once),
URLs http://127.0.0.1:1: nothing leaves the machine, nothing is changed.

    python3 tests/cli/fuzz_cli.py BUILD/clusterkit [CASES] [SEED]

Deterministic for a seed: a failure prints the seed, the case number and
its argv, which reproduce it.
"""

from __future__ import annotations

import os
import random
import re
import resource
import subprocess
import sys
import tempfile

CK = os.path.abspath(sys.argv[1])
CASES = int(sys.argv[2]) if len(sys.argv) > 2 else 400
SEED = int(sys.argv[3]) if len(sys.argv) > 3 else 20261206
MARK = f"/run/ck-fuzz-mark-{os.getpid()}"

VERBS = [
    ["exec"], ["upload"], ["download"], ["facts"], ["preflight"], ["nccl-check"], ["inventory"],
    ["nas", "mount"], ["nas", "umount"], ["nas", "status"], ["model", "inspect"], ["model", "verify"],
    ["model", "download"], ["model", "sync"], ["plan"], ["ray", "up"], ["ray", "status"], ["ray", "down"],
    ["ray", "logs"], ["serve", "up"], ["serve", "status"], ["serve", "down"], ["serve", "logs"], ["chat"],
    ["bench"], ["up"], ["status"], ["logs"], ["down"], ["lab", "status"],
]
FLAGS = [
    "-g", "-t", "-f", "-e", "--timeout", "--root", "--gpus", "--port", "--requests", "--concurrency", "--rate",
    "--duration", "--max-tokens", "--url", "--model", "--head", "--name", "--venv", "--image", "--streams",
    "--attempts", "--mode", "--tail", "--host", "--nproc", "--manifest", "--gpu-memory-utilization",
    "--max-model-len", "--on", "--dir", "--path", "--json", "--plot", "--prompt-tokens", "--api-key-env",
    "--ready-timeout", "--runtime", "--revision", "--hub", "--endpoint", "--max-workers", "--state-dir",
]
VALUES = [
    "", "-1", "0", "1", "nan", "-nan", "inf", "1e309", "99999999999999999999", "0x10", "1.5", "4294967296",
    f"$(touch {MARK})", f"`touch {MARK}`", f"a;touch {MARK}", "../../../etc/shadow", "/dev/zero", "/dev/null",
    "/proc/self/mem", "/", "\udcff", "caf\u00e9", "\x1b[2J", "%s%n%x", "-", "--", "role:nope", "all", "h", "w",
    "A B=1", "FOO", "X=1", "http://127.0.0.1:1", "http://[::1", "https://127.0.0.1:1/v1", "x" * 5000,
    "2 nodes x 2 L20 -5GB", "8x A10 nanGB", "Qwen/Qwen2.5-72B-Instruct", "0755;rm", "9999",
]


def limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    os.setsid()


def main() -> int:
    rng = random.Random(SEED)
    failures = 0
    seen: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inv = os.path.join(tmp, "nowhere.yaml")
        with open(inv, "w") as f:
            f.write("hosts:\n  h: {address: 127.0.0.1, port: 1, user: root, roles: [head], gpus: {count: 2, model: L20}}\n"
                    "  w: {address: 127.0.0.1, port: 1, user: root, gpus: {count: 2, model: L20}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERKIT_")}
        env.update(HOME=tmp, XDG_STATE_HOME=os.path.join(tmp, "state"), NO_PROXY="*", no_proxy="*")
        env.pop("HTTPS_PROXY", None), env.pop("HTTP_PROXY", None), env.pop("https_proxy", None), env.pop("http_proxy", None)
        # Each verb's own flags, from its --help: most cases use them, so
        # they get past the parser into the checks behind it.
        own: dict[str, list[str]] = {}
        for verb in VERBS:
            text = subprocess.run([CK, *verb, "--help"], capture_output=True, text=True, timeout=60).stdout
            own[" ".join(verb)] = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", text)) - {"--help", "-h"})
        for case in range(CASES):
            argv = [CK, "-i", inv]
            if rng.random() < 0.3:
                argv.append("--json")
            verb = rng.choice(VERBS)
            argv += verb
            flags = own[" ".join(verb)] or FLAGS
            for _ in range(rng.randint(0, 4)):
                r = rng.random()
                if r < 0.6:
                    argv += [rng.choice(flags if rng.random() < 0.8 else FLAGS), rng.choice(VALUES)]
                elif r < 0.8:
                    argv.append(rng.choice(VALUES))
                else:
                    argv.append(rng.choice(FLAGS))
            if rng.random() < 0.2:
                argv += ["--", rng.choice(["true", "echo", "printf"]), rng.choice(VALUES)]
            shown = " ".join(repr(a) if len(a) < 60 else repr(a[:40]) + "..." for a in argv[3:])
            try:
                p = subprocess.run([a.encode("utf-8", "surrogateescape") for a in argv], capture_output=True, timeout=60,
                                   stdin=subprocess.DEVNULL, env=env, cwd=tmp, preexec_fn=limit)
            except subprocess.TimeoutExpired:
                failures += 1
                print(f"FAILED: case {case} (seed {SEED}) did not end in 60 s: {shown}")
                continue
            seen[p.returncode] = seen.get(p.returncode, 0) + 1
            problems = []
            if p.returncode not in (0, 1, 2):
                problems.append(f"exit {p.returncode}" + (f" (signal {-p.returncode})" if p.returncode < 0 else ""))
            err = p.stderr.decode("utf-8", "replace")
            if p.returncode != 0 and not err.strip() and not p.stdout.strip():
                problems.append("a failure with no word said")
            if b"\x1b" in p.stderr or b"\x1b" in p.stdout:
                problems.append("an ESC byte was printed")
            if "terminate called" in err or "std::" in err or "what():" in err:
                problems.append("a C++ exception escaped")
            if os.path.exists(MARK):
                problems.append("shell syntax ran (the marker exists)")
                os.unlink(MARK)
            if problems:
                failures += 1
                print(f"FAILED: case {case} (seed {SEED}): {', '.join(problems)}: {shown}")
                print("  | " + err[-1500:].replace("\n", "\n  | "))
    print(f"fuzz_cli: {CASES} random command lines (seed {SEED}), exits {dict(sorted(seen.items()))}, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
