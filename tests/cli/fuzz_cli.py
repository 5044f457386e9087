"""Random command lines against the clusterkit CLI (issue 15's abuse suite,
the random part): verbs and flags it knows, with hostile values (negative,
NaN, huge, shell syntax, paths out of bounds, devices, invalid UTF-8, ESC,
very long). Every case must end by itself, inside 4 GiB and 60 s, with
exit 0, 1 or 2 (no signal, no hang), and a failure must say something on
stderr that starts with "clusterkit:" or is CLI11's usage text; no shell
syntax may run (a marker file under /run must never appear), and nothing
printed may carry an ESC byte. Hosts are 127.0.0.1 port 1 (refused at once),
URLs http://127.0.0.1:1: nothing leaves the machine, nothing is changed.

With a live lab's inventory (`--live INVENTORY`, hosts h1 and h2 with sshd
running), the same random flags and values go to the verbs that read from
real hosts over ssh (exec of harmless programs, upload, download, facts,
preflight, inventory, model inspect/verify, plan, ray/serve status and
logs, lab status, nas check), with the same rules, and after them every host must
still answer. Only where a verb writes is a value held in a sandbox: an
upload lands under /tmp/ckfz-PID/ on the hosts (each lab host has a private
/tmp), a download under this run's temporary folder; the hostile values go
to the source paths and every flag (preflight's NAS probe and `nas check`
write their token files into the same sandbox).

    python3 tests/cli/fuzz_cli.py BUILD/clusterkit [CASES] [SEED] [--live INVENTORY]

Deterministic for a seed: a failure prints the seed, the case number and
its argv, which reproduce it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile

ARGS = [a for a in sys.argv[1:]]
LIVE = ""
if "--live" in ARGS:
    i = ARGS.index("--live")
    LIVE = os.path.abspath(ARGS[i + 1])
    del ARGS[i:i + 2]
CK = os.path.abspath(ARGS[0])
CASES = int(ARGS[1]) if len(ARGS) > 1 else 400
SEED = int(ARGS[2]) if len(ARGS) > 2 else 20261206
MARK = f"/run/ck-fuzz-mark-{os.getpid()}"

VERBS = [
    ["exec"], ["upload"], ["download"], ["facts"], ["preflight"], ["nccl-check"], ["inventory"],
    ["nas", "mount"], ["nas", "umount"], ["nas", "check"], ["model", "inspect"], ["model", "verify"],
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
    # Quote-breaking: a value spliced into a quoted string of a script.
    f"x'$(touch {MARK})'", f'x"$(touch {MARK})"', f"x'\"`touch {MARK}`\"'",
]


def limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    os.setsid()


# The verbs that only read from the hosts, for --live (no mount, umount or
# check of a NAS, no up or down of anything, no download of a model, no
# nccl-check: those change hosts or run for minutes by design).
LIVE_VERBS = [
    ["exec"], ["upload"], ["download"], ["facts"], ["preflight"], ["inventory"], ["model", "inspect"],
    ["model", "verify"], ["plan"], ["ray", "status"], ["ray", "logs"], ["serve", "status"], ["serve", "logs"],
    ["lab", "status"], ["nas", "check"],
]
# Flags held back against live hosts: following a log never ends by itself,
# and a manifest written is a file changed on this machine.
# `exec --sh` runs its words as a shell script by design (the marker would
# be made on purpose).
# preflight's NAS probe and `nas check` write a token file under
# --nas-path / --path on every host: always the sandbox (below), never a
# random value.
LIVE_HELD_BACK = {"--follow", "--write-manifest", "--sh", "--nas-path", "--path"}
# Values that get a live case past the parser to the hosts, beside the
# hostile ones.
GOOD_VALUES = {
    "-g": ["h1", "h2", "all", "h1,h2", "role:head", "role:worker"], "--group": ["h1", "all"], "-t": ["30", "5.5"],
    "--timeout": ["30"], "-f": ["1", "2"], "-e": ["X=1", "LC_ALL=C"], "--env": ["X=1"], "-C": ["/tmp", "/"],
    "--cwd": ["/tmp"], "--root": ["/var/tmp", "/mnt"], "--name": ["ckfz"], "--tail": ["5"], "--host": ["h1"],
    "--mode": ["0644", "0600"], "-j": ["1", "2"], "--concurrency": ["2"], "--gpus": ["2 nodes x 2 L20 48GB", "1x H200"],
    "--state-dir": ["/run/ck-fuzz-nostate"], "--runtime": ["bare", "docker"], "--venv": ["/opt/ck-serve"],
}
# Programs exec may run on a live host: harmless whatever their arguments.
# (Not cat: `cat /dev/zero` never ends, by design.)
LIVE_PROGRAMS = [["echo"], ["printf"], ["true"], ["false"], ["printenv"], ["basename"]]
# A tiny model (config.json, one safetensors shard, sha256sums) that both
# this machine and the lab hosts see (/var/tmp is shared; /tmp is not).
LIVE_MODEL = f"/var/tmp/ckfz-model-{os.getpid()}"
# A name that stays inside the sandbox folder it is put in.
SANDBOXED_NAMES = [v for v in VALUES if v and "/" not in v and v not in (".", "..") and "\0" not in v]


def live_flags(rng: random.Random, kinds: dict[tuple[str, ...], bool], argv: list[str]) -> None:
    """0 to 3 different flags of the verb's own (by its short or long
    name); one that takes a value gets a good one or a hostile one, half
    and half."""
    for names in rng.sample(sorted(kinds), min(len(kinds), rng.choice([0, 1, 1, 2, 2, 3]))):
        flag = rng.choice(names)
        if not kinds[names]:
            argv.append(flag)
        elif flag in GOOD_VALUES and rng.random() < 0.5:
            argv += [flag, rng.choice(GOOD_VALUES[flag])]
        else:
            argv += [flag, rng.choice(VALUES)]


def random_flags(rng: random.Random, flags: list[str], argv: list[str], positional: bool) -> None:
    for _ in range(rng.randint(0, 4)):
        r = rng.random()
        if r < 0.6:
            argv += [rng.choice(flags if rng.random() < 0.8 else FLAGS), rng.choice(VALUES)]
        elif r < 0.8 and positional:
            argv.append(rng.choice(VALUES))
        else:
            argv.append(rng.choice(FLAGS))


def unreachable_case(rng: random.Random, own: dict[str, list[str]], inv: str, tmp: str) -> list[str]:
    argv = [CK, "-i", inv]
    if rng.random() < 0.3:
        argv.append("--json")
    verb = rng.choice(VERBS)
    argv += verb
    random_flags(rng, own[" ".join(verb)] or FLAGS, argv, True)
    if rng.random() < 0.2:
        argv += ["--", rng.choice(["true", "echo", "printf"]), rng.choice(VALUES)]
    return argv


def flag_kinds(help_text: str) -> dict[tuple[str, ...], bool]:
    """A verb's flags from its --help (("-t", "--timeout") for one flag of
    two names), each with whether it takes a value ("-t,--timeout FLOAT"
    does, "--sh" does not)."""
    kinds: dict[tuple[str, ...], bool] = {}
    for line in help_text.splitlines():
        m = re.match(r"^  (-[\w-]+(?:,--[\w-]+)?)(?: ([A-Z]+))?", line)
        if m and m.group(1) not in ("-h,--help", "--help"):
            kinds[tuple(m.group(1).split(","))] = m.group(2) is not None
    return kinds


def live_case(rng: random.Random, kinds: dict[str, dict[tuple[str, ...], bool]], inv: str, tmp: str) -> list[str]:
    argv = [CK, "-i", inv]
    if rng.random() < 0.3:
        argv.append("--json")
    verb = rng.choice(LIVE_VERBS)
    argv += verb
    name = " ".join(verb)
    held = LIVE_HELD_BACK | ({"-f"} if name.endswith("logs") else set())
    own = {f: v for f, v in kinds[name].items() if not held & set(f)}
    if name == "exec":
        live_flags(rng, own, argv)
        argv += ["--", *rng.choice(LIVE_PROGRAMS), rng.choice(VALUES)]
    elif name == "upload":
        live_flags(rng, own, argv)
        local = rng.choice([os.path.join(tmp, "payload.txt"), "/dev/zero", "/dev/null", "/proc/self/mem", "/",
                            "../../../etc/hostname", "\udcff", "x" * 5000])
        remote = f"/tmp/ckfz-{os.getpid()}/" + (rng.choice(SANDBOXED_NAMES) if rng.random() < 0.7 else "")
        argv += ["--", local, remote]
    elif name == "download":
        live_flags(rng, own, argv)
        host = rng.choice(["h1", "h2"]) if rng.random() < 0.7 else rng.choice(VALUES)
        local = os.path.join(tmp, "dl", rng.choice(SANDBOXED_NAMES) if rng.random() < 0.5 else "")
        argv += ["--", host, rng.choice([*VALUES, "/etc/hostname", "/proc/self/status"]), local]
    elif name == "preflight":
        live_flags(rng, own, argv)
        argv += ["--nas-path", f"/tmp/ckfz-{os.getpid()}"]
    elif name == "nas check":
        live_flags(rng, own, argv)
        argv += ["--path", f"/tmp/ckfz-{os.getpid()}"]
    elif name in ("model inspect", "model verify", "plan"):
        live_flags(rng, own, argv)
        argv += ["--", LIVE_MODEL if rng.random() < 0.5 else rng.choice(VALUES)]
    else:
        live_flags(rng, own, argv)
    return argv


def escape_printed(argv: list[str], out: bytes, err: bytes) -> bool:
    """An ESC byte in what clusterkit printed. A host's own output through
    plain exec ("h1: ..." lines, not "h1: error: ...") is the data itself
    and passes through as it is, ESC included, as ssh and cat do; so does a
    script printed by --script (the value quoted in it is the script's)."""
    if "--script" in argv:
        return False
    if "exec" not in argv or "--json" in argv:
        return b"\x1b" in out or b"\x1b" in err
    ours = [line for line in (out + b"\n" + err).split(b"\n")
            if not re.match(rb"^h[12] *: ", line) or re.match(rb"^h[12] *: (error|warning): ", line)]
    return any(b"\x1b" in line for line in ours)


def make_tiny_model(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 16, "vocab_size": 32,
                   "max_position_embeddings": 64, "torch_dtype": "float32"}, f)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with open(os.path.join(folder, "sha256sums"), "w") as f:
        for name in ("config.json", "model.safetensors"):
            digest = hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
            f.write(f"{digest}  {name}\n")


def run_case(argv: list[str], env: dict[str, str], tmp: str) -> subprocess.CompletedProcess | None:
    """One case in its own process group (limit() calls setsid): one that
    runs out of time is stopped whole, its ssh children too. None then."""
    child = subprocess.Popen([a.encode("utf-8", "surrogateescape") for a in argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=tmp, preexec_fn=limit)
    try:
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, 9)
        child.communicate()
        return None
    return subprocess.CompletedProcess(argv, child.returncode, out, err)


def problems_of(argv: list[str], p: subprocess.CompletedProcess) -> list[str]:
    problems = []
    if p.returncode not in (0, 1, 2):
        problems.append(f"exit {p.returncode}" + (f" (signal {-p.returncode})" if p.returncode < 0 else ""))
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0 and not err.strip() and not p.stdout.strip():
        problems.append("a failure with no word said")
    if escape_printed(argv, p.stdout, p.stderr):
        problems.append("an ESC byte was printed")
    if "--json" in argv and p.returncode in (0, 1) and p.stdout.strip() and "--script" not in argv:
        try:
            json.loads(p.stdout)
        except ValueError as e:
            problems.append(f"--json printed what is not JSON ({e})")
    if "terminate called" in err or "std::" in err or "what():" in err:
        problems.append("a C++ exception escaped")
    if os.path.exists(MARK):
        problems.append("shell syntax ran (the marker exists)")
        os.unlink(MARK)
    return problems


def main() -> int:
    rng = random.Random(SEED)
    failures = 0
    seen: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERKIT_")}
        env.update(HOME=tmp, XDG_STATE_HOME=os.path.join(tmp, "state"), NO_PROXY="*", no_proxy="*")
        env.pop("HTTPS_PROXY", None), env.pop("HTTP_PROXY", None), env.pop("https_proxy", None), env.pop("http_proxy", None)
        sandbox = f"/tmp/ckfz-{os.getpid()}"
        if LIVE:
            inv = LIVE
            make_tiny_model(LIVE_MODEL)
            # The uploads' sandbox on each host, so that some of them land.
            made = subprocess.run([CK, "-i", inv, "exec", "--", "mkdir", "-p", sandbox], capture_output=True, text=True,
                                  timeout=60, env=env)
            if made.returncode != 0:
                shutil.rmtree(LIVE_MODEL, ignore_errors=True)
                print(f"FAILED: could not make the sandbox on the lab hosts: {made.stdout}{made.stderr}")
                return 1
            os.makedirs(os.path.join(tmp, "dl"))
            with open(os.path.join(tmp, "payload.txt"), "w") as f:
                f.write("payload\n")
        else:
            inv = os.path.join(tmp, "nowhere.yaml")
            with open(inv, "w") as f:
                f.write("hosts:\n  h: {address: 127.0.0.1, port: 1, user: root, roles: [head], gpus: {count: 2, model: L20}}\n"
                        "  w: {address: 127.0.0.1, port: 1, user: root, gpus: {count: 2, model: L20}}\n")
        try:
            # Each verb's own flags, from its --help: most cases use them, so
            # they get past the parser into the checks behind it.
            own: dict[str, list[str]] = {}
            kinds: dict[str, dict[tuple[str, ...], bool]] = {}
            for verb in VERBS:
                text = subprocess.run([CK, *verb, "--help"], capture_output=True, text=True, timeout=60).stdout
                own[" ".join(verb)] = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", text)) - {"--help", "-h"})
                kinds[" ".join(verb)] = flag_kinds(text)
            for case in range(CASES):
                argv = live_case(rng, kinds, inv, tmp) if LIVE else unreachable_case(rng, own, inv, tmp)
                shown = " ".join(repr(a) if len(a) < 60 else repr(a[:40]) + "..." for a in argv[3:])
                p = run_case(argv, env, tmp)
                if p is None:
                    failures += 1
                    print(f"FAILED: case {case} (seed {SEED}) did not end in 60 s: {shown}")
                    continue
                seen[p.returncode] = seen.get(p.returncode, 0) + 1
                problems = problems_of(argv, p)
                if problems:
                    failures += 1
                    print(f"FAILED: case {case} (seed {SEED}): {', '.join(problems)}: {shown}")
                    print("  | " + p.stderr.decode("utf-8", "replace")[-1500:].replace("\n", "\n  | "))
        finally:
            if LIVE:
                # The hosts took it all and still answer; the sandbox goes.
                p = subprocess.run([CK, "-i", inv, "exec", "--", "sh", "-c", f"rm -rf {sandbox} && echo alive"],
                                   capture_output=True, text=True, timeout=60, env=env)
                shutil.rmtree(LIVE_MODEL, ignore_errors=True)
                if p.returncode != 0 or p.stdout.count("alive") != 2:
                    failures += 1
                    print(f"FAILED: after the cases, the lab hosts do not both answer: rc {p.returncode}: {p.stdout}{p.stderr}")
    where = "against live lab hosts " if LIVE else ""
    print(f"fuzz_cli: {CASES} random command lines {where}(seed {SEED}), exits {dict(sorted(seen.items()))}, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
