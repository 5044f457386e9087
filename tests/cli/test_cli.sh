#!/bin/sh
# The CLI's answers to a newcomer's first mistakes (issue 14) and to hostile
# or careless input (issue 15: inventories, specs, flags, paths, signals),
# run against the built binary; then, on real lab hosts, injection attempts,
# the `ray` verbs end to end on real Ray, and `lab` after a crash.
# Usage: test_cli.sh PATH/TO/clusterkit
set -u
ck="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0
expect() {  # NAME EXPECTED-RC EXPECTED-TEXT (a grep -F pattern in stdout+stderr) -- COMMAND...
  name="$1" want_rc="$2" want_text="$3"
  shift 4
  checks=$((checks + 1))
  # Bounded: 4 GiB of address space and 120 s per command.
  timeout 120 sh -c 'ulimit -v 4194304; exec "$@"' sh "$@" >"$tmp/out" 2>&1 </dev/null
  rc=$?
  if [ "$rc" != "$want_rc" ] || ! grep -qF -- "$want_text" "$tmp/out"; then
    failures=$((failures + 1))
    echo "FAILED: $name: exit $rc (wanted $want_rc), output:"
    sed 's/^/  | /' "$tmp/out"
    echo "  wanted text: $want_text"
  fi
}
fail() { failures=$((failures + 1)); echo "FAILED: $*"; }
# Every other run of clusterkit here is bounded the same way as expect's.
limited() { (ulimit -v 4194304 && exec timeout 120 "$@"); }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$(dirname "$0")/../../pyproject.toml")
expect "--version" 0 "clusterkit $version" -- "$ck" --version
expect "unknown verb" 2 "unknown command 'serv'; did you mean 'serve'?; commands are: exec," -- "$ck" serv
expect "unknown verb, nothing near" 2 "unknown command 'frobnicate'; commands are:" -- "$ck" frobnicate
printf 'hosts:\n  me: {local: true, roles: [gpu]}\n  you: {local: true, groups: [cpu]}\n' >"$tmp/inv.yaml"
expect "--json says the version" 0 "\"clusterkit_version\": \"$version\"" -- "$ck" -i "$tmp/inv.yaml" --json exec -g me -- true
expect "--json inventory says the version" 0 "\"clusterkit_version\": \"$version\"" -- "$ck" -i "$tmp/inv.yaml" --json inventory
expect "stderr without a final newline: a result, not a lost connection" 0 "1/1 hosts succeeded" -- \
  "$ck" -i "$tmp/inv.yaml" exec -g me -- sh -c 'printf "50%%\r100%%" >&2'
expect "missing program" 1 "me: ck-no-such-program: command not found" -- "$ck" -i "$tmp/inv.yaml" exec -g me -- ck-no-such-program -L
expect "missing program, exit 127" 1 "me: exit 127" -- "$ck" -i "$tmp/inv.yaml" exec -g me -- ck-no-such-program -L
expect "empty selection" 2 "'role:head' selects no host in $tmp/inv.yaml; roles in use: role:gpu; groups: cpu" -- \
  "$ck" -i "$tmp/inv.yaml" exec -g role:head -- true
expect "timeout NaN" 2 "-t/--timeout must be 0 (none) or between 0.001 and 604800 seconds, not nan" -- \
  "$ck" -i "$tmp/inv.yaml" exec -g me -t nan -- true
expect "timeout too small" 2 "-t/--timeout must be 0 (none) or between" -- "$ck" -i "$tmp/inv.yaml" exec -g me -t 0.0001 -- true
expect "no hosts at once" 2 "-f/--concurrency must be between 1 and 100000, not 0" -- "$ck" -i "$tmp/inv.yaml" exec -g me -f 0 -- true
expect "negative hosts at once" 2 "-f/--concurrency must be between 1 and 100000, not -1" -- "$ck" -i "$tmp/inv.yaml" exec -g me -f -1 -- true
expect "upload -j -1" 2 "-j/--concurrency must be between 1 and 100000, not -1" -- "$ck" -i "$tmp/inv.yaml" upload -g me -j -1 /etc/hostname /tmp/x
expect "timeout negative" 2 "-t/--timeout must be 0 (none) or between 0.001 and 604800 seconds, not -5" -- \
  "$ck" -i "$tmp/inv.yaml" exec -g me -t -5 -- true
expect "timeout absurd" 2 "-t/--timeout must be 0 (none) or between 0.001 and 604800 seconds, not 1e+10" -- \
  "$ck" -i "$tmp/inv.yaml" exec -g me -t 1e10 -- true
expect "timeout infinite" 2 "not inf" -- "$ck" -i "$tmp/inv.yaml" exec -g me -t inf -- true
# Every other duration flag: checked the same way, before anything connects
# (NaN passed every range comparison; 0.5 s rounded to none).
expect "facts -t nan" 2 "-t/--timeout must be between 1 and 86400 seconds, not nan" -- "$ck" -i "$tmp/inv.yaml" facts -g me -t nan
expect "nccl-check -t nan" 2 "-t/--timeout must be between 1 and 86400 seconds, not nan" -- "$ck" -i "$tmp/inv.yaml" nccl-check -t nan --dry-run
expect "preflight --facts-timeout -5" 2 "--facts-timeout must be between 1 and 86400 seconds, not -5" -- "$ck" -i "$tmp/inv.yaml" preflight --facts-timeout -5
expect "nas mount --timeout nan" 2 "--timeout must be between 1 and 86400 seconds, not nan" -- "$ck" -i "$tmp/inv.yaml" nas mount --timeout nan
expect "nas umount --timeout 0.5" 2 "--timeout must be between 1 and 86400 seconds, not 0.5" -- "$ck" -i "$tmp/inv.yaml" nas umount --timeout 0.5
expect "model download --timeout nan" 2 "--timeout must be 0 (none) or between 1 and 604800 seconds, not nan" -- \
  "$ck" -i "$tmp/inv.yaml" model download Qwen/X --on me --timeout nan
expect "model sync --timeout -1" 2 "--timeout must be 0 (none) or between 1 and 604800 seconds, not -1" -- \
  "$ck" -i "$tmp/inv.yaml" model sync /a /b --on me --timeout -1
expect "ray up --timeout nan" 2 "--timeout must be 0 (the default, 180) or between 1 and 86400 seconds, not nan" -- \
  "$ck" -i "$tmp/inv.yaml" ray up --timeout nan
expect "serve up --ready-timeout inf" 2 "--ready-timeout must be 0 (the default, 1800) or between 1 and 604800 seconds, not inf" -- \
  "$ck" -i "$tmp/inv.yaml" serve up --model x --ready-timeout inf
# Bytes pass through plain exec, NUL bytes included.
checks=$((checks + 1))
limited "$ck" -i "$tmp/inv.yaml" exec -g me -- printf 'a\000b\n' 2>/dev/null | od -An -c | tr -s ' ' | grep -qF 'a \0 b \n' ||
  { failures=$((failures + 1)); echo "FAILED: a NUL byte in plain exec output did not come through"; }
# upload into an existing folder, with and without its slash: the file lands
# under its own name, as cp and scp put it.
mkdir -p "$tmp/into"
printf 'payload\n' >"$tmp/up.txt"
expect "upload into an existing folder" 0 "1/1 hosts succeeded" -- "$ck" -i "$tmp/inv.yaml" upload -g me "$tmp/up.txt" "$tmp/into"
expect "upload into folder/" 0 "1/1 hosts succeeded" -- "$ck" -i "$tmp/inv.yaml" upload -g me "$tmp/up.txt" "$tmp/into/"
checks=$((checks + 1))
if [ "$(ls -A "$tmp/into")" != "up.txt" ] || [ "$(cat "$tmp/into/up.txt")" != payload ]; then
  failures=$((failures + 1)); echo "FAILED: upload into a folder left: $(ls -A "$tmp/into")"
fi
expect "download into a missing folder, before copying" 2 "cannot download into '$tmp/nosuch/': the folder does not exist" -- \
  "$ck" -i "$tmp/inv.yaml" download me /etc/hostname "$tmp/nosuch/"
# ssh's own reason reaches the user: a missing identity file is named, a
# jump host that does not connect us says so (not "the host may have
# rebooted").
printf 'hosts:\n  k: {address: 127.0.0.1, port: 1, user: root, identity_file: /nonexistent/key}\n  j: {address: 127.0.0.1, port: 1, user: root, jump_host: "root@127.0.0.1:2"}\n' >"$tmp/ssh.yaml"
expect "a missing identity file is named" 1 "Identity file /nonexistent/key not accessible" -- "$ck" -i "$tmp/ssh.yaml" exec -g k -t 20 -- true
expect "a jump host that does not connect us" 1 "the jump host root@127.0.0.1:2 did not connect us to 127.0.0.1 port 1" -- \
  "$ck" -i "$tmp/ssh.yaml" exec -g j -t 20 -- true
# ... and why, in ssh's own words, asked of the jump host alone (OpenSSH
# drops the proxy's stderr under ControlPersist).
expect "a jump host that refuses: ssh's reason" 1 "ssh to the jump host alone says: ssh: connect to host 127.0.0.1 port 2: Connection refused" -- \
  "$ck" -i "$tmp/ssh.yaml" exec -g j -t 20 -- true
printf 'hosts:\n  n: {address: 127.0.0.1, port: 1, jump_host: nosuch-jump.invalid}\n' >"$tmp/jump.yaml"
expect "a jump host that does not resolve: ssh's reason" 1 "Could not resolve hostname nosuch-jump.invalid" -- \
  "$ck" -i "$tmp/jump.yaml" exec -g n -t 20 -- true
# A server's error message with terminal escapes: printed with ? for them.
cat >"$tmp/ansi_server.py" <<'PY'
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"message": "bad \x1b[31mred\x1b[0m \x07 request"}}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
PY
python3 "$tmp/ansi_server.py" >"$tmp/ansi.port" &
ansi_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/ansi.port" ] && break; sleep 0.05; done
expect "a server's escape sequences are not printed" 2 "bad ?[31mred?[0m ? request" -- \
  "$ck" chat --url "http://127.0.0.1:$(cat "$tmp/ansi.port")" --model m hi
checks=$((checks + 1))
limited "$ck" chat --url "http://127.0.0.1:$(cat "$tmp/ansi.port")" --model m hi 2>&1 | od -c | grep -q '033' &&
  { failures=$((failures + 1)); echo "FAILED: an ESC byte from the server reached the terminal"; }
expect "bench: a server's escape sequences are not printed in its error summary" 1 "error x2: HTTP 400: bad ?[31mred?[0m ? request" -- \
  "$ck" bench --url "http://127.0.0.1:$(cat "$tmp/ansi.port")" --model m --requests 2 --no-progress
checks=$((checks + 1))
limited "$ck" bench --url "http://127.0.0.1:$(cat "$tmp/ansi.port")" --model m --requests 2 --no-progress 2>&1 | od -c | grep -q '033' &&
  { failures=$((failures + 1)); echo "FAILED: an ESC byte from the server reached the terminal through bench"; }
kill "$ansi_pid" 2>/dev/null; wait "$ansi_pid" 2>/dev/null
# Invalid UTF-8 in a result: replaced (U+FFFD), the other results kept.
expect "invalid UTF-8 in --json" 1 "$(printf 'a\357\277\275b')" -- "$ck" -i "$tmp/inv.yaml" --json exec -- sh -c 'printf "a\377b"; [ "$(hostname)" = x ]'
# bench: every setting out of range is named, before anything is sent
# (nothing listens on 127.0.0.1:1).
u=http://127.0.0.1:1
expect "bench --requests 0" 2 "requests (--requests): 0 is not in 1..10000000" -- "$ck" bench --url $u --requests 0
expect "bench --concurrency 0" 2 "concurrency (--concurrency): 0 is not in 1..1000000" -- "$ck" bench --url $u --concurrency 0
expect "bench --duration -5" 2 "duration (--duration): -5 is not a number of seconds in (0, 10000000]" -- "$ck" bench --url $u --duration -5
expect "bench --rate nan" 2 "rate (--rate): nan is not a number of requests per second" -- "$ck" bench --url $u --rate nan
expect "bench --rate 0" 2 "rate (--rate): 0 is not a number of requests per second" -- "$ck" bench --url $u --rate 0
expect "bench --rate -1" 2 "rate (--rate): -1 is not" -- "$ck" bench --url $u --rate -1
expect "bench all at once" 2 "bad settings:" -- "$ck" bench --url $u --rate -1 --requests 0
expect "bench --json into a missing folder" 2 "--json $tmp/nowhere/r.json: the folder $tmp/nowhere does not exist" -- \
  "$ck" bench --url $u --json "$tmp/nowhere/r.json"
expect "bench --plot a folder" 2 "--plot $tmp is a folder" -- "$ck" bench --url $u --plot "$tmp"
expect "bench --prompts /dev/zero" 2 "the prompts file /dev/zero is not a regular file" -- "$ck" bench --url $u --prompts /dev/zero
# An HTTP port with nothing behind it is not an sshd.
expect "bench refused" 1 "127.0.0.1:1 refused the connection: nothing listens on that port" -- \
  "$ck" bench --url $u --model m --requests 2 --no-progress
# Bounded input: devices, FIFOs, alias chains and endless stdin fail at once.
python3 -c "print('hosts: ' + '[' * 100000)" >"$tmp/deep.yaml"
expect "deep YAML" 2 "deep.yaml:1:71: nesting deeper than 64 levels" -- "$ck" -i "$tmp/deep.yaml" inventory
expect "-i /dev/zero" 2 "cannot read inventory /dev/zero: it is a device, not a regular file" -- "$ck" -i /dev/zero inventory
mkfifo "$tmp/fifo.yaml"
expect "-i FIFO" 2 "it is a FIFO, not a regular file" -- timeout 10 "$ck" -i "$tmp/fifo.yaml" inventory
{
  printf 'defaults:\n  vars:\n    a: &a [x, x, x, x, x, x, x, x, x]\n'
  prev=a
  for c in b c d e f g h; do printf '    %s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n' $c $c $prev $prev $prev $prev $prev $prev $prev $prev $prev; prev=$c; done
  printf 'hosts:\n  h1: {address: 10.0.0.1, vars: {boom: *h}}\n'
} >"$tmp/laughs.yaml"
expect "billion laughs" 2 "more than 100000 values once its aliases (*name) are expanded" -- timeout 10 "$ck" -i "$tmp/laughs.yaml" inventory
cp "$tmp/laughs.yaml" "$tmp/spec.yaml"
expect "billion laughs in a deployment spec" 2 "more than 100000 values once its aliases" -- timeout 10 "$ck" plan "$tmp/spec.yaml"
python3 -c "print('hosts: [' + 'x,' * 2000000 + ']')" >"$tmp/flat.yaml"
expect "a flat list of 2 million values" 2 "more than 100000 values (lines and list items)" -- timeout 10 "$ck" -i "$tmp/flat.yaml" inventory
expect "chat - < /dev/zero" 2 "the prompt on stdin is larger than 16 MiB" -- sh -c "timeout 20 '$ck' chat --url $u - < /dev/zero"
# Paths from a model folder stay in the folder; what is not a file is named.
m="$tmp/model"
mkdir -p "$m"
python3 - "$m" <<'PY'
import json, struct, sys
d = sys.argv[1]
json.dump({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8, "num_attention_heads": 2,
           "num_key_value_heads": 1, "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 16,
           "torch_dtype": "bfloat16", "max_position_embeddings": 64}, open(f"{d}/config.json", "w"))
header = json.dumps({"model.embed_tokens.weight": {"dtype": "BF16", "shape": [16, 8], "data_offsets": [0, 256]}}).encode()
open(f"{d}/model.safetensors", "wb").write(struct.pack("<Q", len(header)) + header + bytes(256))
PY
printf '%064d  ../../../etc/shadow\n' 0 >"$m/sha256sums"
expect "a manifest that points out of the folder" 1 "'../../../etc/shadow' is outside the model folder" -- "$ck" model verify "$m"
printf '%064d  /dev/zero\n' 0 >"$m/sha256sums"
expect "a manifest that names a device" 1 "'/dev/zero' is outside the model folder" -- "$ck" model verify "$m"
rm -f "$m/sha256sums"
# The same through --manifest (a file outside the folder, listing paths out
# of it), and a manifest that is not a file.
printf '%064d  ../../../etc/shadow\n' 0 >"$tmp/elsewhere.sha256"
expect "--manifest listing a path out of the folder" 1 "'../../../etc/shadow' is outside the model folder" -- \
  "$ck" model verify "$m" --manifest "$tmp/elsewhere.sha256"
expect "--manifest /dev/zero: refused, not read" 1 "/dev/zero is not a regular file" -- "$ck" model verify "$m" --manifest /dev/zero
ln -s loop.safetensors "$m/loop.safetensors"
expect "a looping symlink named *.safetensors, beside a shard" 0 "loop.safetensors is a symlink that loops: left out" -- "$ck" model inspect "$m"
rm -f "$m/loop.safetensors"
mkfifo "$m/pipe.safetensors"
expect "a FIFO named *.safetensors, beside a shard" 0 "pipe.safetensors is a FIFO: left out" -- "$ck" model inspect "$m"
mv "$m/model.safetensors" "$m/shard.bin"
expect "a FIFO named *.safetensors, alone" 2 "has no usable *.safetensors file: pipe.safetensors is a FIFO" -- "$ck" model inspect "$m"
mv "$m/shard.bin" "$m/model.safetensors"
rm -f "$m/pipe.safetensors"
expect "the folder itself, after the mistakes" 0 "model.safetensors" -- "$ck" model inspect "$m"
# Results never lost silently: NUL bytes pass through plain exec, a cut
# capture is flagged in --json and on stderr, -e is checked before connecting.
checks=$((checks + 1))
limited "$ck" -i "$tmp/inv.yaml" exec -g me -- sh -c 'printf "a\000b\n"; printf "x\000y\n" >&2' >"$tmp/nul.out" 2>"$tmp/nul.err"
if [ "$(od -An -c "$tmp/nul.out" | tr -s ' ')" != " m e : a \0 b \n" ] || ! od -An -c "$tmp/nul.err" | grep -q 'x  *\\0  *y'; then
  failures=$((failures + 1)); echo "FAILED: NUL bytes in plain exec:"; od -c "$tmp/nul.out"; od -c "$tmp/nul.err"
fi
expect "--json exec cut at 64 MiB" 0 "me: warning: stdout was cut at 64 MiB in the JSON (\"stdout_truncated\": true)" -- \
  sh -c "'$ck' -i '$tmp/inv.yaml' --json exec -g me -- sh -c 'head -c 70000000 /dev/zero | tr \"\\\\0\" a' >'$tmp/big.json'"
checks=$((checks + 1))
if ! grep -q '"stdout_truncated": true' "$tmp/big.json"; then failures=$((failures + 1)); echo "FAILED: no stdout_truncated in the JSON"; fi
rm -f "$tmp/big.json"
expect "-e with a space in the name, before reading the inventory" 2 "-e/--env 'A B=1': 'A B' is not a variable name" -- \
  "$ck" -i /nonexistent.yaml exec -e 'A B=1' -- true
expect "-e without =" 2 "-e/--env 'FOO' is not KEY=VALUE" -- "$ck" -i /nonexistent.yaml exec -e FOO -- true
# Numbers and ranges, checked before the inventory is read.
expect "upload --mode 9999" 2 "--mode '9999' is not octal permission bits (0 to 7777" -- "$ck" -i /nonexistent.yaml upload --mode 9999 /etc/hostname /tmp/x
expect "upload --mode with a command" 2 "--mode '0755;rm' is not octal permission bits" -- "$ck" -i /nonexistent.yaml upload --mode '0755;rm' /etc/hostname /tmp/x
expect "plan --gpus negative size" 2 "memory '-5GB' is negative" -- "$ck" plan /nonexistent --gpus "2 nodes x 2 L20 -5GB"
expect "plan --gpus NaN size" 2 "memory 'nanGB' is not a size" -- "$ck" plan /nonexistent --gpus "2 nodes x 2 L20 nanGB"
expect "plan --gpus negative count" 2 "'-2' is not a count" -- "$ck" plan /nonexistent --gpus "2 nodes x -2 L20 48GB"
expect "plan --gpus infinite size" 2 "memory 'infGB' is not a size" -- "$ck" plan /nonexistent --gpus "2 nodes x 2 L20 infGB"
expect "plan --gpus absurd size" 2 "memory '1e30GB' is not a size (a number above 0 and at most 1e7" -- "$ck" plan /nonexistent --gpus "2 nodes x 2 L20 1e30GB"
expect "plan --gpus absurd count" 2 "count 100000000 is too large" -- "$ck" plan /nonexistent --gpus "100000000 nodes x 2 L20 48GB"
# A local host needs no address: where one is needed (nccl-check's
# rendezvous, preflight's port probes) it is 127.0.0.1, never its label.
printf 'hosts:\n  me: {local: true, roles: [head]}\n' >"$tmp/local0.yaml"
expect "nccl-check on a local host without an address" 0 "'--rdzv_endpoint=127.0.0.1:29500'" -- \
  "$ck" -i "$tmp/local0.yaml" nccl-check --dry-run --nproc 1
# plan, as a newcomer first tries it: a folder with only config.json, a
# model id without --root, and the seed's own model by its id, offline
# (its config.json ships with clusterkit).
mkdir -p "$tmp/cfgonly" && cp "$(dirname "$0")/../../examples/models/Qwen2.5-72B-Instruct/config.json" "$tmp/cfgonly/"
expect "plan on config.json alone suggests --from-config" 2 "has no *.safetensors files (a .bin-only checkpoint? vLLM and clusterkit need safetensors); to plan from config.json alone (before the weights are downloaded), add --from-config" -- \
  "$ck" plan "$tmp/cfgonly" --gpus "2 nodes x 2 L20 48GB"
expect "plan --from-config: the seed's layout" 0 "  2   2   4       33.86 GiB      81920      64816         1  yes  <- recommended" -- \
  "$ck" plan "$tmp/cfgonly" --from-config --gpus "2 nodes x 2 L20 48GB"
expect "plan of a model id without --root suggests it" 2 "a model id is looked up under --root (the folder the models were downloaded to" -- \
  "$ck" plan Foo/Bar --gpus "2 nodes x 2 L20 48GB"
expect "plan of the seed's model by id, offline" 0 "planning from its config.json shipped with clusterkit (examples/models/)" -- \
  "$ck" plan Qwen/Qwen2.5-72B-Instruct --gpus "2 nodes x 2 L20 48GB"
# Inventories a careless or hostile hand wrote: each refused at its line and
# column with the fix, before any connection (nothing listens at these
# addresses: a command that tried to connect would fail differently).
inv_case() {  # NAME EXPECTED-TEXT YAML (printf format)
  name="$1" text="$2"
  printf "$3" >"$tmp/case.yaml"
  expect "inventory: $name" 2 "$text" -- "$ck" -i "$tmp/case.yaml" exec -t 5 -- true
}
inv_case "empty" "case.yaml:1:1: the inventory is empty; it needs a \`hosts:\` map" ''
inv_case "a host twice" "case.yaml:3:3: hosts.a: duplicate host 'a'; it is already defined at line 2" \
  'hosts:\n  a: {address: 10.0.0.1}\n  a: {address: 10.0.0.2}\n'
inv_case "port out of range" "hosts.a.port: expected an integer between 1 and 65535, got \"70000\"" \
  'hosts:\n  a: {address: 10.0.0.1, port: 70000}\n'
inv_case "port not a number" "hosts.a.port: expected an integer between 1 and 65535, got \"abc\"" \
  'hosts:\n  a: {address: 10.0.0.1, port: abc}\n'
inv_case "an address that is an ssh option" "hosts.a.address: expected a host name or IP address, got \"-oProxyCommand=touch $tmp/pwn\"" \
  "hosts:\n  a: {address: \"-oProxyCommand=touch $tmp/pwn\"}\n"
inv_case "an address with a space" "hosts.a.address: expected a host name or IP address, got \"10.0.0.1 x\"" \
  'hosts:\n  a: {address: "10.0.0.1 x"}\n'
inv_case "a misspelt top-level key" "unknown top-level key 'hostz'; an inventory has defaults, hosts, groups; did you mean 'hosts'?" \
  'hostz:\n  a: {address: 10.0.0.1}\n'
inv_case "a negative GPU count" "hosts.a.gpus.count: expected a non-negative integer, got \"-2\"" \
  'hosts:\n  a: {address: 10.0.0.1, gpus: {count: -2, model: L20}}\n'
inv_case "a host name with shell syntax" "invalid host name 'a;b'; use letters, digits, '_', '.' and '-'" \
  'hosts:\n  "a;b": {address: 10.0.0.1}\n'
inv_case "roles as a string" "hosts.a.roles: expected a list such as [head, gpu], got \"head\"" \
  'hosts:\n  a: {address: 10.0.0.1, roles: head}\n'
inv_case "a tab in the indentation" "(line 2 is indented with a tab; YAML indents with spaces only)" \
  'hosts:\n\ta: {address: 10.0.0.1}\n'
inv_case "a NUL byte (yaml-cpp would stop there: '10.0.' as the address)" \
  "case.yaml:2:21: a NUL byte: YAML is text, and this file is not" 'hosts:\n  a: {address: 10.0.\0000.1}\n'
python3 -c "print('hosts:\n  ' + 'a' * 5000 + ': {address: 10.0.0.1}')" >"$tmp/long.yaml"
expect "inventory: a 5000-character key" 2 "(a key of 5000 characters; YAML keys are at most 1024)" -- "$ck" -i "$tmp/long.yaml" inventory
head -c 4096 /dev/urandom >"$tmp/random.yaml"
expect "inventory: random bytes" 2 "random.yaml:" -- "$ck" -i "$tmp/random.yaml" inventory
expect "inventory: a folder" 2 "cannot read inventory /tmp: it is a folder, not a regular file. Pass -i with an inventory file, or run \`clusterkit lab up\`" -- \
  "$ck" -i /tmp inventory
expect "inventory: missing" 2 "cannot read inventory /nonexistent/inv.yaml: No such file or directory" -- "$ck" -i /nonexistent/inv.yaml inventory
printf 'hosts:\n  a: {address: 10.0.0.1, vars: {note: caf\377}}\n' >"$tmp/u8.yaml"
expect "--json inventory with a \\377 byte in a value: U+FFFD, not an exception" 0 '"note": "caf'"$(printf '\357\277\275')"'"' -- \
  "$ck" -i "$tmp/u8.yaml" --json inventory
expect "bench past the open-file limit: named before it starts" 2 "concurrency (--concurrency) 1000 needs about 1064 open files, and this process may open 64 (hard limit 64): lower concurrency, or raise the limit (ulimit -n 1064)" -- \
  sh -c 'ulimit -n 64; exec "$@"' sh "$ck" bench --url http://127.0.0.1:9 --concurrency 1000 --requests 2000
if [ -e "$tmp/pwn" ]; then fail "an inventory address ran as an ssh option"; fi
# Deployment specs: every mistake listed at once; the same limits as inventories.
printf 'inventory: inv.yaml\nmodel: {id: x}\nserve: {tensor_parallel: 0, port: 0}\nray: {port: 99999}\nbogus: 1\n' >"$tmp/spec.yaml"
expect "spec: every mistake at once" 2 "mistakes in the deployment spec, nothing was started:" -- "$ck" plan "$tmp/spec.yaml"
expect "spec: the ray port named at its place" 2 "spec.yaml:4:13: ray.port: expected a whole number from 1 to 65535" -- "$ck" plan "$tmp/spec.yaml"
printf 'inventory: inv.yaml\nmodel: {id: x\0}\n' >"$tmp/spec-nul.yaml"
expect "spec: a NUL byte" 2 "spec-nul.yaml:2:14: a NUL byte" -- "$ck" up "$tmp/spec-nul.yaml"
expect "spec: a folder" 2 "cannot read deployment spec /tmp: it is a folder, not a regular file; examples are in examples/deployments/" -- "$ck" up /tmp
# The seed's model on one server with two 48 GB cards: refused from the
# shipped config before anything is downloaded (the dry run says it too).
cat >"$tmp/nofit.yaml" <<SPEC
name: ck-cli-nofit
inventory:
  hosts:
    a: {local: true, roles: [head], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}
model: {id: Qwen/Qwen2.5-72B-Instruct, hub: none, root: $tmp/nofit-models}
runtime: {kind: bare, ray: $tmp/no-venv/bin/ray}
serve: {tensor_parallel: 2, pipeline_parallel: 1}
state_dir: $tmp/nofit-state
SPEC
expect "plan: a known model that cannot fit, said before up" 0 "\`up\` would refuse this spec at once: TP 2 x PP 1 for Qwen/Qwen2.5-72B-Instruct on " -- \
  "$ck" plan "$tmp/nofit.yaml"
expect "plan --full: the facts script whole" 0 "ck_section end; printf '@@ck-status 0@@" -- "$ck" plan "$tmp/nofit.yaml" --full
expect "plan --full: the snapshot script whole" 0 "echo '@@ck-end'" -- "$ck" plan "$tmp/nofit.yaml" --full
expect "plan --full is for a spec" 2 "--full prints a deployment's commands whole: give a deployment spec" -- \
  "$ck" plan Qwen/Qwen2.5-72B-Instruct --full
# plan MODEL on the GPUs an inventory declares (the seed's: 2 x L20 on each
# of gpu1 and gpu2), without --gpus; no GPUs anywhere: said, with the ways.
seed_inv="$(dirname "$0")/../../examples/inventories/seed-cluster.yaml"
expect "plan MODEL -i: the inventory's GPUs" 0 "GPUs: 2 nodes x 2 L20 (44.99 GiB)" -- "$ck" -i "$seed_inv" plan Qwen/Qwen2.5-72B-Instruct
expect "plan MODEL -i: the seed's layout" 0 "Recommended: TP=2 PP=2" -- "$ck" -i "$seed_inv" plan Qwen/Qwen2.5-72B-Instruct
expect "plan MODEL -i: no host declares GPUs" 2 "no host of the inventory declares GPUs (gpus: {count: 2" -- \
  "$ck" -i "$tmp/inv.yaml" plan Qwen/Qwen2.5-72B-Instruct
expect "plan MODEL: no GPUs given" 2 "plan needs the GPUs: --gpus \"2 nodes x 2 L20 48GB\", or -i INVENTORY" -- \
  env -u CLUSTERKIT_INVENTORY "$ck" plan Qwen/Qwen2.5-72B-Instruct
expect "up: a known model that cannot fit, refused before its download" 1 "nothing fits: " -- "$ck" up "$tmp/nofit.yaml"
if [ -e "$tmp/nofit-models" ]; then fail "up made the model folder for a model that cannot fit"; fi
expect "logs --follow of a worker's Ray logs: refused, nothing connects" 1 \
  "following is for the engine's log on the head (gpu1); gpu2's Ray logs are read once: leave out follow (--follow)" -- \
  "$ck" logs "$(dirname "$0")/../../examples/deployments/qwen72b-two-node.yaml" --host gpu2 --follow
# Every number a flag takes, out of its range: exit 2 with the flag (or the
# setting behind it) and the range named, before anything connects (the
# hosts are unreachable: a case that connected would say so instead).
printf 'hosts:\n  h: {address: 127.0.0.1, port: 1, user: root, roles: [head], gpus: {count: 2, model: L20}}\n  w: {address: 127.0.0.1, port: 1, user: root, gpus: {count: 2, model: L20}}\n' >"$tmp/nowhere.yaml"
while IFS='|' read -r args want; do
  [ -z "$args" ] && continue
  # shellcheck disable=SC2086  # the table's words are the arguments
  set -f; eval "set -- $args"; set +f
  expect "range: $args" 2 "$want" -- "$ck" -i "$tmp/nowhere.yaml" "$@"
done <<'TABLE'
exec -g h -f 0 -- true|-f/--concurrency must be between 1 and 100000, not 0
exec -g h -f nan -- true|Could not convert: --concurrency = nan
exec -g h -t inf -- true|-t/--timeout must be 0 (none) or between 0.001 and 604800 seconds, not inf
upload -g h /etc/hostname /tmp/x -j -1|-j/--concurrency must be between 1 and 100000, not -1
facts -g h -t nan|-t/--timeout must be between 1 and 86400 seconds, not nan
preflight -g h --shm-min-gib -1|shm_min_gib must be between 0 and 1048576 GiB, not -1 (--shm-min-gib)
preflight -g h --shm-min-gib nan|shm_min_gib must be between 0 and 1048576 GiB, not nan (--shm-min-gib)
preflight -g h --disk-min-gib inf|disk_min_free_gib must be between 0 and 1048576 GiB, not inf (--disk-min-gib)
preflight -g h --ray-port 0|ray_port 0 is not a TCP port (1-65535; --ray-port)
preflight -g h --ray-port 65536|ray_port 65536 is not a TCP port (1-65535; --ray-port)
preflight -g h --rdzv-port -1|rdzv_port -1 is not a TCP port (1-65535; --rdzv-port)
preflight -g h --max-clock-offset -1|max_clock_offset_seconds must be above 0 and at most 86400, not -1 (--max-clock-offset)
preflight -g h --max-clock-offset nan|max_clock_offset_seconds must be above 0 and at most 86400, not nan
preflight -g h --facts-timeout 0|--facts-timeout must be between 1 and 86400 seconds, not 0
preflight -g h --max-model-len 0|max_model_len must be at least 1 (--max-model-len)
preflight -g h --max-model-len -1|--max-model-len: expected a whole number from 0 up, not -1
nccl-check --port 0|rdzv_port 0 is not a TCP port (1-65535; --port)
nccl-check --port 65536|rdzv_port 65536 is not a TCP port (1-65535; --port)
nccl-check --nproc -1|--nproc: expected a whole number from 0 up, not -1
nccl-check --nproc 100000|nproc_per_node 100000 is more GPUs than a host has (0: what nvidia-smi lists, or 1 to 1024; --nproc)
nccl-check --sizes 0|--sizes: each size is in MiB, above 0 and at most 65536, not 0
nccl-check --sizes nan|--sizes: each size is in MiB, above 0 and at most 65536, not nan
nccl-check --sizes 1e12|--sizes: each size is in MiB, above 0 and at most 65536, not 1e+12
nccl-check --iterations 0|iterations must be between 1 and 1000000, not 0 (--iterations)
nccl-check --iterations -1|--iterations: expected a whole number from 0 up, not -1
nccl-check --warmup nan|Could not convert: --warmup = nan
nccl-check -t inf|-t/--timeout must be between 1 and 86400 seconds, not inf
nas mount root@nas:/srv --type sshfs -g h --port 65536|the NAS's ssh port 65536 is not a TCP port (1-65535, or 0 for ssh's default; --port)
nas mount root@nas:/srv --type sshfs -g h --port -1|the NAS's ssh port -1 is not a TCP port
nas mount nas:/srv -g h --timeout nan|--timeout must be between 1 and 86400 seconds, not nan
model download Qwen/X --on h --attempts 0|--attempts must be between 1 and 100, not 0 (runs before giving up)
model download Qwen/X --on h --attempts 1000000|--attempts must be between 1 and 100, not 1000000
model download Qwen/X --on h --max-workers 100000|--max-workers must be between 1 and 256, not 100000 (files downloaded at once)
model download Qwen/X --on h --timeout -1|--timeout must be 0 (none) or between 1 and 604800 seconds, not -1
model sync /a /b --on h --streams 0|--streams must be between 1 and 256, not 0 (rsync processes at once)
model sync /a /b --on h --streams 100000|--streams must be between 1 and 256, not 100000
plan Qwen/Qwen2.5-72B-Instruct --gpus '2x L20 48GB' --gpu-memory-utilization 1.5|gpu_memory_utilization (--gpu-memory-utilization) must be in (0, 1], not 1.5
plan Qwen/Qwen2.5-72B-Instruct --gpus '2x L20 48GB' --gpu-memory-utilization nan|gpu_memory_utilization (--gpu-memory-utilization) must be in (0, 1], not nan
plan Qwen/Qwen2.5-72B-Instruct --gpus '2x L20 48GB' --max-model-len 0|--max-model-len must be at least 1 (a context length in tokens)
plan Qwen/Qwen2.5-72B-Instruct --gpus '2x L20 48GB' --max-model-len -1|--max-model-len: expected a whole number from 0 up, not -1
plan Qwen/Qwen2.5-72B-Instruct --gpus '2x L20 48GB' --max-model-len 1e30|Could not convert: --max-model-len = 1e30
ray up --port 65536|ray port 65536 is not a TCP port (1-65535)
ray up --dashboard-port 0|ray dashboard port 0 is not a TCP port (1-65535)
ray up --num-cpus nan|ray num_cpus must be a positive number, at most 1000000, not nan
ray up --num-cpus 1e12|ray num_cpus must be a positive number, at most 1000000, not 1000000000000
ray up --object-store-memory 0|ray object_store_memory must be at least 78643200 bytes (75 MiB, Ray's minimum), not 0
ray up --object-store-memory -1|--object-store-memory: expected a whole number from 0 up, not -1
ray up --timeout inf|--timeout must be 0 (the default, 180) or between 1 and 86400 seconds, not inf
serve up --model /m --tp -1|--tp: expected a whole number from 0 up, not -1
serve up --model /m --pp 1e6|Could not convert: --pp = 1e6
serve up --model /m --max-model-len 0|serve max_model_len must be positive
serve up --model /m --max-model-len -1|--max-model-len: expected a whole number from 0 up, not -1
serve up --model /m --gpu-memory-utilization nan|serve gpu_memory_utilization must be in (0, 1], not nan
serve up --model /m --serve-port 65536|serve port 65536 is not a TCP port (1-65535)
serve up --model /m --ready-timeout nan|--ready-timeout must be 0 (the default, 1800) or between 1 and 604800 seconds, not nan
chat --url http://127.0.0.1:9 --max-tokens 0 hi|--max-tokens: 0 is not in 1..10000000
chat --url http://127.0.0.1:9 --temperature inf hi|--temperature: inf is not in 0..2 (0 is greedy)
chat --url http://127.0.0.1:9 --timeout nan hi|--timeout must be a number of seconds in (0, 1000000]
bench --url http://127.0.0.1:9 --prompt-tokens -1|--prompt-tokens: expected a whole number from 0 up, not -1
bench --url http://127.0.0.1:9 --prompt-tokens 0|prompt_tokens (--prompt-tokens): 0 is not in 1..131072
bench --url http://127.0.0.1:9 --seed -1|--seed: expected a whole number from 0 up, not -1
bench --url http://127.0.0.1:9 --poll-interval nan|poll_interval_us (--poll-interval): nan is not a number of microseconds in [0, 1000000]
lab up --name ckfz --gpus 2 --gpu-memory-gib 0|lab: simulated GPUs of 0 GiB asked for; give a size above 0 and at most 4096 GiB (--gpu-memory-gib).
lab up --name ckfz --gpu-memory-gib nan|lab: simulated GPUs of nan GiB asked for; give a size above 0 and at most 4096 GiB
lab up --name ckfz --gpu-memory-gib 1e9|lab: simulated GPUs of 1e+09 GiB asked for
lab up --name ckfz -n 1000|lab: 1000 hosts asked for; a lab has 1 to 239 hosts
TABLE
# Flags out of range or malformed: exit 2, the flag named, nothing started.
printf 'hosts:\n  h1: {address: 10.0.0.1, roles: [head], gpus: {count: 2, model: L20}}\n  h2: {address: 10.0.0.2, gpus: {count: 2, model: L20}}\n' >"$tmp/two.yaml"
expect "serve up --tp 0" 2 "tensor_parallel and pipeline_parallel must be at least 1" -- "$ck" -i "$tmp/two.yaml" serve up --model /m --tp 0
expect "serve up --tp 1.5 (CLI11's own words, exit 2)" 2 "Could not convert: --tp = 1.5" -- "$ck" -i "$tmp/two.yaml" serve up --model /m --tp 1.5
expect "serve up --serve-port 0" 2 "serve port 0 is not a TCP port (1-65535)" -- "$ck" -i "$tmp/two.yaml" serve up --model /m --serve-port 0
expect "serve up --serve-port 70000" 2 "serve port 70000 is not a TCP port (1-65535)" -- "$ck" -i "$tmp/two.yaml" serve up --model /m --serve-port 70000
expect "serve up --gpu-memory-utilization 1.5" 2 "gpu_memory_utilization must be in (0, 1], not 1.5" -- \
  "$ck" -i "$tmp/two.yaml" serve up --model /m --gpu-memory-utilization 1.5
expect "serve up --gpu-memory-utilization nan" 2 "gpu_memory_utilization must be in (0, 1], not nan" -- \
  "$ck" -i "$tmp/two.yaml" serve up --model /m --gpu-memory-utilization nan
expect "serve up --engine-env 'A B=1'" 2 "\"A B\" is not a valid environment variable name" -- \
  "$ck" -i "$tmp/two.yaml" serve up --model /m --engine-env 'A B=1'
expect "ray up --port 0 (not 'the default')" 2 "ray port 0 is not a TCP port (1-65535)" -- "$ck" -i "$tmp/two.yaml" ray up --port 0
expect "ray up --port 99999" 2 "ray port 99999 is not a TCP port (1-65535)" -- "$ck" -i "$tmp/two.yaml" ray up --port 99999
expect "ray up --dashboard-port 0" 2 "ray dashboard port 0 is not a TCP port" -- "$ck" -i "$tmp/two.yaml" ray up --dashboard-port 0
expect "ray up --num-cpus 0" 2 "ray num_cpus must be a positive number, at most 1000000, not 0" -- "$ck" -i "$tmp/two.yaml" ray up --num-cpus 0
expect "ray up --object-store-memory 0" 2 "object_store_memory must be at least 78643200 bytes (75 MiB, Ray's minimum)" -- \
  "$ck" -i "$tmp/two.yaml" ray up --object-store-memory 0
expect "ray up --shm-size -5" 2 "ray shm_size \"-5\" is not a size docker takes" -- "$ck" -i "$tmp/two.yaml" ray up --shm-size -5
expect "ray up --head not a host" 2 "the head \"nope\" is not among the Ray hosts (h1, h2)" -- "$ck" -i "$tmp/two.yaml" ray up --head nope
expect "ray up -g not a group" 2 "no host or group named 'nope' in" -- "$ck" -i "$tmp/two.yaml" ray up -g nope
expect "chat --max-tokens -5" 2 "--max-tokens: -5 is not in 1..10000000" -- "$ck" chat --url http://127.0.0.1:9 --max-tokens -5 hi
expect "chat --temperature nan" 2 "--temperature: nan is not in 0..2" -- "$ck" chat --url http://127.0.0.1:9 --temperature nan hi
expect "chat --temperature 3" 2 "--temperature: 3 is not in 0..2" -- "$ck" chat --url http://127.0.0.1:9 --temperature 3 hi
expect "chat --url ftp://" 2 "the base URL 'ftp://x' is not usable: the scheme 'ftp' is not http or https" -- "$ck" chat --url ftp://x hi
expect "chat --url with a broken IPv6 address" 2 "an IPv6 address lacks its ']'" -- "$ck" chat --url 'http://[::1' hi
expect "bench --max-tokens 0" 2 "max_tokens (--max-tokens): 0 is not in 1..10000000" -- "$ck" bench --url http://127.0.0.1:9 --max-tokens 0
expect "model verify of a file" 2 "/etc/passwd (plain): is not a folder" -- "$ck" model verify /etc/passwd
expect "lab up --hosts 0" 2 "lab: 0 hosts asked for; a lab has 1 to 239 hosts" -- "$ck" lab up --hosts 0
expect "lab up --gpus -1" 2 "lab: -1 simulated GPUs per host asked for; give 0 to 64 (--gpus)" -- "$ck" lab up --gpus -1
expect "lab up --name with shell syntax" 2 "lab name \"a;b\" is not valid" -- "$ck" lab up --name 'a;b'
expect "lab up --subnet as CIDR" 2 "for 10.89.0.0/24 give \"10.89.0\"" -- "$ck" lab up --subnet 10.89.0.0/24
# Against llm-d-inference-sim (a vLLM SIMULATOR): a model name the server
# does not serve is answered with the names it does serve.
sim=$(command -v llm-d-inference-sim || true)
checks=$((checks + 1))
if [ -z "$sim" ]; then
  failures=$((failures + 1)); echo "FAILED: llm-d-inference-sim (a vLLM simulator) not found: run scripts/install-sim.sh"
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The simulator serves the seed's model under its hub name; the README's
  # examples use the served name qwen2.5-72b-instruct.
  m=Qwen/Qwen2.5-72B-Instruct
  "$sim" --model "$m" --port "$port" --force-dummy-tokenizer >"$tmp/sim.log" 2>&1 &
  sim_pid=$!
  i=0; while [ $i -lt 100 ] && ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
  expect "chat with a model not served" 2 "http://127.0.0.1:$port serves $m (pass one with --model" -- \
    "$ck" chat --url "http://127.0.0.1:$port" --model wrong hi
  expect "chat with the served name of the model" 2 "serves $m; did you mean '$m'? (pass one with --model" -- \
    "$ck" chat --url "http://127.0.0.1:$port" --model qwen2.5-72b-instruct hi
  expect "bench with a model not served" 2 "model (--model) 'wrong' is not served by http://127.0.0.1:$port; it serves $m" -- \
    "$ck" bench --url "http://127.0.0.1:$port" --model wrong --requests 3
  expect "bench with the served name of the model" 2 "it serves $m; did you mean '$m'?" -- \
    "$ck" bench --url "http://127.0.0.1:$port" --model qwen2.5-72b-instruct --requests 3
  # Invalid UTF-8 in a prompt (a \377 byte) is sent as U+FFFD, not an
  # exception that loses the run.
  printf 'hello \377 there\n' >"$tmp/prompts.txt"
  expect "bench with invalid UTF-8 in a prompt" 0 "2 ok, 0 failed" -- \
    "$ck" bench --url "http://127.0.0.1:$port" --prompts "$tmp/prompts.txt" --requests 2 --max-tokens 2 --no-progress
  expect "chat with invalid UTF-8 in the prompt" 0 "" -- "$ck" chat --url "http://127.0.0.1:$port" "$(printf 'hi \377')"
  expect "chat --json: the server's answer, with the version" 0 "\"clusterkit_version\": \"$version\"" -- \
    "$ck" --json chat --url "http://127.0.0.1:$port" --max-tokens 2 hi
  expect "chat --json: the server's own fields kept" 0 "\"object\": \"chat.completion\"" -- \
    "$ck" --json chat --url "http://127.0.0.1:$port" --max-tokens 2 hi
  # Ctrl-C (SIGTERM here) during a bench: the run stops, what was measured
  # is reported and written, and the exit status says it was stopped.
  (ulimit -v 4194304 && exec "$ck" bench --url "http://127.0.0.1:$port" --rate 20 --duration 60 --max-tokens 2 --no-progress \
    --json "$tmp/stopped.json") >"$tmp/bstop.log" 2>&1 &
  b=$!
  sleep 3
  kill -TERM "$b"
  rc=0; wait "$b" || rc=$?
  checks=$((checks + 1))
  if [ "$rc" != 130 ] || ! grep -qF "(stopped early)" "$tmp/bstop.log" || ! grep -qF '"cancelled": true' "$tmp/stopped.json"; then
    fail "bench stopped by SIGTERM: rc $rc (expected 130), a report and its --json"; sed 's/^/  | /' "$tmp/bstop.log"
  fi
  expect "bench with warm-up bounded by the requests" 0 "3 ok, 0 failed" -- \
    "$ck" bench --url "http://127.0.0.1:$port" --requests 3 --concurrency 100000 --max-tokens 2 --no-progress
  kill "$sim_pid"; wait "$sim_pid" 2>/dev/null
fi
# nccl-check takes the GPUs the inventory declares; simulated ones (the
# lab's) are refused up front, naming the host, not failed inside torchrun.
printf 'hosts:\n  sim: {local: true, roles: [head], gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}}\n' >"$tmp/siminv.yaml"
expect "nccl-check on simulated GPUs" 2 "sim's 2 GPUs are simulated (the inventory declares them; nvidia-smi lists none): NCCL needs real GPUs" -- \
  "$ck" -i "$tmp/siminv.yaml" nccl-check --dry-run
# Ctrl-C (SIGTERM here: the same path) while `exec` runs a command: the
# command is stopped on the host, not left running, and clusterkit exits 130
# saying it stopped. The command is found by a marker in its arguments
# (split in two so that this script's own awk never matches itself).
m1="ck-stop-$$"; m2="-$(date +%s%N)"
marked() { for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null <"$p/cmdline" | awk -v a="$m1" -v b="$m2" -v p="${p#/proc/}" 'index($0, a b) { print p; exit }'; done; }
(ulimit -v 4194304 && exec "$ck" -i "$tmp/inv.yaml" exec -g me -- sh -c "sleep 300; : $m1$m2") >"$tmp/stop.log" 2>&1 &
run=$!
i=0; while [ $i -lt 100 ] && [ -z "$(marked | grep -vx "$run")" ]; do sleep 0.05; i=$((i + 1)); done
kill -TERM "$run"
rc=0; wait "$run" || rc=$?
checks=$((checks + 1))
if [ "$rc" != 130 ] || ! grep -qF "clusterkit: stopping: cancelling what runs on the hosts" "$tmp/stop.log"; then
  fail "exec stopped by SIGTERM: rc $rc (expected 130)"; sed 's/^/  | /' "$tmp/stop.log"
fi
checks=$((checks + 1))
i=0; while [ $i -lt 40 ] && [ -n "$(marked)" ]; do sleep 0.05; i=$((i + 1)); done
left=$(marked)
if [ -n "$left" ]; then
  fail "the command outlived the stopped exec: pids $left"
  for p in $left; do kill -KILL "$p" 2>/dev/null; done
fi
# Nothing running that a stop would clean up (here: `chat -` still reading
# its prompt from stdin): the first signal quits at once, as a plain
# program does (a stop that waits for an operation would wait for ever).
mkfifo "$tmp/stdin"
exec 3<>"$tmp/stdin"   # a writer that never writes nor closes
(ulimit -v 4194304 && exec "$ck" chat --url http://127.0.0.1:1 -) <"$tmp/stdin" >"$tmp/cstop.log" 2>&1 &
cpid=$!
sleep 0.5
kill -TERM "$cpid"
i=0; while [ $i -lt 50 ] && kill -0 "$cpid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
checks=$((checks + 1))
if kill -0 "$cpid" 2>/dev/null; then
  fail "chat reading stdin did not quit on SIGTERM"; kill -KILL "$cpid"
fi
rc=0; wait "$cpid" || rc=$?
checks=$((checks + 1))
[ "$rc" = 143 ] || fail "chat reading stdin, stopped by SIGTERM: rc $rc (expected 143)"
exec 3>&-
# Random command lines (tests/cli/fuzz_cli.py: each verb's own flags with
# hostile values; a fixed seed, so a failure reproduces): every one ends by
# itself with 0, 1 or 2, says why when it fails, runs no shell syntax and
# prints no ESC byte.
expect "serve up without --model (found by the fuzzer: it aborted)" 2 "clusterkit: serve up needs --model" -- "$ck" -i "$tmp/inv.yaml" serve up
expect "an ESC in a value CLI11 cannot convert (found by the fuzzer)" 2 "Could not convert: --gpu-memory-utilization = ?[2J" -- \
  "$ck" -i "$tmp/inv.yaml" serve up --gpu-memory-utilization "$(printf '\033[2J')"
checks=$((checks + 1))
python3 "$(dirname "$0")/fuzz_cli.py" "$ck" "${CK_FUZZ_CLI_CASES:-600}" >"$tmp/fuzz.out" 2>&1 || { fail "fuzz_cli:"; cat "$tmp/fuzz.out"; }
tail -1 "$tmp/fuzz.out"
# Against real lab hosts (sshd in namespaces; needs root): nothing from an
# argument, a path or an inventory field reaches a shell, and `lab up` killed
# with SIGKILL half way leaves a lab that `lab status` tells truly and `lab
# down` removes whole.
if [ "$(id -u)" != 0 ]; then
  checks=$((checks + 1)); fail "the lab part needs root (sudo ctest, or run as root in CI)"
else
  lab=ab$(($$ % 100000)) sub=10.88.231 st="$tmp/lab"
  "$ck" lab up --name "$lab" --hosts 2 --gpus 2 --subnet $sub --state-dir "$st" >"$tmp/labup.log" 2>&1 || { cat "$tmp/labup.log"; fail "lab up"; }
  inv="$st/inventory.yaml"
  pwned="$tmp/pwned"
  expect "shell syntax in argv stays text" 0 'h1: $(touch '"$pwned"') ; a|b `id`' -- \
    "$ck" -i "$inv" exec -g h1 -- echo '$(touch '"$pwned"')' ';' 'a|b' '`id`'
  expect "shell syntax in -e stays text" 0 'h1: $(touch '"$pwned"')' -- \
    "$ck" -i "$inv" exec -e 'X=$(touch '"$pwned"')' -g h1 -- printenv X
  limited "$ck" -i "$inv" exec -g h1 -- mkdir -p "/tmp/ck dir;\$(x)" >/dev/null 2>&1
  printf 'payload\n' >"$tmp/f.txt"
  expect "upload into a folder named with shell syntax" 0 "8/8 bytes" -- "$ck" -i "$inv" upload -g h1 "$tmp/f.txt" "/tmp/ck dir;\$(x)/"
  expect "and the file is there under its name" 0 "h1: payload" -- "$ck" -i "$inv" exec -g h1 -- cat "/tmp/ck dir;\$(x)/f.txt"
  limited "$ck" -i "$inv" exec -- rm -rf "/tmp/ck dir;\$(x)" >/dev/null 2>&1
  printf 'hosts:\n  evil:\n    address: "$(touch %s)"\n    user: root\n' "$pwned" >"$tmp/evil.yaml"
  checks=$((checks + 1))
  limited "$ck" -i "$tmp/evil.yaml" exec -t 10 -- true >"$tmp/out" 2>&1 && fail "an address with shell syntax was accepted"
  checks=$((checks + 1))
  [ -e "$pwned" ] && fail "something ran a shell on an argument: $pwned exists"
  # Every other inventory field that reaches ssh's command line, and a model
  # file name that reaches a script on a host: text, never run. The marker
  # is under /run (lab hosts have private /tmp, a shared /run).
  mark="/run/ck-test-pwned-$$"
  {
    printf 'hosts:\n'
    printf '  u: {address: 127.0.0.1, port: 1, user: "root$(touch %s)"}\n' "$mark"
    printf '  i: {address: 127.0.0.1, port: 1, user: root, identity_file: "/nonexistent/$(touch %s)"}\n' "$mark"
    printf '  j: {address: 127.0.0.1, port: 1, user: root, jump_host: "x$(touch %s)@127.0.0.1:1"}\n' "$mark"
    printf '  o: {address: 127.0.0.1, port: 1, user: root, ssh_options: ["ConnectTimeout=$(touch %s)"]}\n' "$mark"
    printf '  k: {address: 127.0.0.1, port: 1, user: root, known_hosts_file: "/nonexistent/`touch %s`"}\n' "$mark"
  } >"$tmp/fields.yaml"
  limited "$ck" -i "$tmp/fields.yaml" exec -t 10 -- true >"$tmp/out" 2>&1
  # A folder of this run's own (/var/tmp is the machine's, shared by runs).
  injdir=/var/tmp/ck-inj-$$
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'rm -rf "$1" && mkdir -p "$1"' sh "$injdir" >/dev/null 2>&1
  # (A file name cannot hold a slash: the model file's command would make
  # ck-pwned in the model's folder, where the scripts run.)
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'printf "{}" > "$1/config.json"; : > "$1/\$(touch ck-pwned).safetensors"' sh "$injdir" >/dev/null 2>&1
  limited "$ck" -i "$inv" model verify -g h1 --read-all "$injdir" >"$tmp/out" 2>&1
  checks=$((checks + 1))
  if [ -e "$mark" ]; then fail "an inventory field ran as shell: $mark exists"; rm -f "$mark"; fi
  limited "$ck" -i "$inv" exec -g h1 -- ls "$injdir" >"$tmp/inj.ls" 2>&1
  checks=$((checks + 1))
  grep -qF '$(touch ck-pwned).safetensors' "$tmp/inj.ls" ||
    { fail "the model file named with shell syntax was not made (the check below would prove nothing)"; cat "$tmp/inj.ls"; }
  checks=$((checks + 1))
  grep -q 'h1: ck-pwned$' "$tmp/inj.ls" && fail "a model file name ran as shell on the host (ck-pwned was made)"
  limited "$ck" -i "$inv" exec -g h1 -- rm -rf "$injdir" >/dev/null 2>&1
  # Results never lost, and paths kept in the folder, over ssh as on this
  # machine: NUL bytes through plain exec, a \377 byte in --json, a capture
  # cut at 64 MiB flagged; a manifest on the host naming ../ or a device, or
  # a symlink out of the folder: refused, never read (in well under the limit).
  checks=$((checks + 1))
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'printf "a\000b\n"; printf "x\000y\n" >&2' >"$tmp/nul.out" 2>"$tmp/nul.err"
  if [ "$(od -An -c "$tmp/nul.out" | tr -s ' ')" != " h 1 : a \0 b \n" ] || ! od -An -c "$tmp/nul.err" | grep -q 'x  *\\0  *y'; then
    fail "NUL bytes in plain exec over ssh:"; od -c "$tmp/nul.out"; od -c "$tmp/nul.err"
  fi
  expect "invalid UTF-8 in --json over ssh" 0 "$(printf 'a\357\277\275b')" -- "$ck" -i "$inv" --json exec -g h1 -- printf 'a\377b'
  expect "--json exec cut at 64 MiB over ssh" 0 "h1: warning: stdout was cut at 64 MiB in the JSON (\"stdout_truncated\": true)" -- \
    sh -c "'$ck' -i '$inv' --json exec -g h1 -- sh -c 'head -c 70000000 /dev/zero | tr \"\\\\0\" a' >'$tmp/big.json'"
  checks=$((checks + 1))
  grep -q '"stdout_truncated": true' "$tmp/big.json" || fail "no stdout_truncated in the JSON over ssh"
  rm -f "$tmp/big.json"
  hm=/var/tmp/ck-hostile-$$
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'mkdir -p "$1" && printf "{}" >"$1/config.json" && printf "%064d  ../../../etc/shadow\n" 0 >"$1/sha256sums"' sh "$hm" >/dev/null 2>&1
  expect "a host's manifest naming ../: refused (--checksums)" 1 "'../../../etc/shadow' is outside the model folder" -- \
    "$ck" -i "$inv" model verify -g h1 --checksums "$hm"
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'printf "%064d  /dev/zero\n" 0 >"$1/sha256sums"' sh "$hm" >/dev/null 2>&1
  expect "a host's manifest naming /dev/zero: refused, not read" 1 "'/dev/zero' is outside the model folder" -- \
    "$ck" -i "$inv" model verify -g h1 --checksums "$hm"
  limited "$ck" -i "$inv" exec -g h1 -- sh -c 'ln -sf /etc/shadow "$1/link" && printf "%064d  link\n" 0 >"$1/sha256sums"' sh "$hm" >/dev/null 2>&1
  expect "a host's symlink out of the folder: not read" 1 "link on h1 leads outside $hm (a symlink); not read" -- \
    "$ck" -i "$inv" model verify -g h1 --checksums "$hm"
  limited "$ck" -i "$inv" exec -g h1 -- rm -rf "$hm" >/dev/null 2>&1
  # A device or a folder is never streamed down; an upload into a folder that
  # does not exist says so, naming the folder (not sh's temporary file).
  expect "download of a device over ssh: refused by name" 2 "/dev/zero is not a regular file" -- \
    "$ck" -i "$inv" download h1 /dev/zero "$tmp/"
  checks=$((checks + 1))
  [ -e "$tmp/zero" ] && fail "download of /dev/zero left $tmp/zero"
  expect "upload into a missing folder over ssh" 1 "the folder /tmp/ck-no-such-dir does not exist on this host; make it first" -- \
    "$ck" -i "$inv" upload -g h1 "$tmp/f.txt" /tmp/ck-no-such-dir/f.txt
  # A report quoting a value with an ESC in it (facts' problem line for a
  # --disk that is not there, found by the live fuzzer): printed with ?.
  expect "an ESC in a value quoted by a report" 0 "problem  disk ?[2J" -- "$ck" -i "$inv" facts -g h1 --disk "$(printf '\033[2J')"
  # Random command lines against these live hosts (tests/cli/fuzz_cli.py
  # --live): the verbs that read from hosts, with good and hostile values;
  # the same rules as above, --json always JSON, and the hosts still answer.
  checks=$((checks + 1))
  python3 "$(dirname "$0")/fuzz_cli.py" "$ck" "${CK_FUZZ_LIVE_CASES:-300}" 20261206 --live "$inv" >"$tmp/fuzz-live.out" 2>&1 ||
    { fail "fuzz_cli --live:"; cat "$tmp/fuzz-live.out"; }
  tail -1 "$tmp/fuzz-live.out"
  # The ray verbs end to end, as a user types them: real Ray (bare, from the
  # serving venv) on the two lab hosts, 2 SIMULATED GPUs each.
  venv=${CK_SERVE_VENV:-/opt/ck-serve}
  if [ ! -x "$venv/bin/ray" ]; then
    checks=$((checks + 1)); fail "Ray not found in $venv: run scripts/install-serving.sh"
  else
    r="--name cli --runtime bare --venv $venv"
    expect "ray up" 0 "Ray cluster 'cli' is up: 2 nodes, 4 GPUs (SIMULATED)" -- "$ck" -i "$inv" ray up $r
    expect "ray up again: left as it was" 0 "(already running, left as it was)" -- "$ck" -i "$inv" ray up $r
    checks=$((checks + 1))
    limited "$ck" -i "$inv" --json ray status $r >"$tmp/ray.json" 2>"$tmp/ray.err"
    python3 - "$tmp/ray.json" <<'PY' || { fail "ray status --json:"; cat "$tmp/ray.json" "$tmp/ray.err"; }
import json, sys
s = json.load(open(sys.argv[1]))
assert s["healthy"] and (s["alive_nodes"], s["gpus"], s["gpus_simulated"]) == (2, 4.0, True), s
assert [(h["host"], h["ray_state"], h["runtime_state"], h["resources"]["GPU"], h["ray_version"]) for h in s["hosts"]] == [
    ("h1", "ALIVE", "running", 2.0, "2.60.0"), ("h2", "ALIVE", "running", 2.0, "2.60.0")], s["hosts"]
PY
    expect "ray logs" 0 "Ray runtime started" -- "$ck" -i "$inv" ray logs $r
    expect "ray logs --json: one object per host (found by the live fuzzer: it printed text)" 0 '"host": "h2"' -- \
      "$ck" -i "$inv" --json ray logs $r
    expect "serve logs --json --follow: refused, said why" 2 "--json with --follow: a followed log is a stream of lines" -- \
      "$ck" -i "$inv" --json serve logs $r --follow
    # Following the engine's log until Ctrl-C: exit 130, as tail -f; no engine yet, said so.
    expect "serve logs --follow, then Ctrl-C" 130 "clusterkit: no engine named" -- \
      timeout --preserve-status -s INT 4 "$ck" -i "$inv" serve logs $r --follow
    expect "ray down" 0 "h2: removed" -- "$ck" -i "$inv" ray down $r
    expect "ray down again: nothing there, still 0" 0 "h2: nothing of Ray cluster 'cli' was there" -- "$ck" -i "$inv" ray down $r
    expect "no Ray process left on the head" 1 "h1: 0" -- "$ck" -i "$inv" exec -g h1 -- sh -c "ps -eo args | grep -c '[/]ray/'"
    expect "no Ray process left on the worker" 1 "h2: 0" -- "$ck" -i "$inv" exec -g h2 -- sh -c "ps -eo args | grep -c '[/]ray/'"
    expect "ray status once it is down" 1 "0/2 nodes alive" -- "$ck" -i "$inv" ray status $r
  fi
  "$ck" lab down --name "$lab" --state-dir "$st" >/dev/null 2>&1 || fail "lab down"

  # A crash of `lab up` between starting the hosts and writing their pids
  # (seen after kill -9): state.json without the pids. `lab status` finds
  # the running sshds all the same, and `lab down` removes everything.
  "$ck" lab up --name "$lab" --hosts 3 --subnet $sub --state-dir "$st" >"$tmp/labup.log" 2>&1 || { cat "$tmp/labup.log"; fail "lab up"; }
  python3 - "$st/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for h in s["hosts"]:
    h["sshd_pid"] = 0
    h.pop("sshd_start_time", None)
json.dump(s, open(sys.argv[1], "w"))
PY
  checks=$((checks + 1))
  limited "$ck" --json lab status --name "$lab" --state-dir "$st" >"$tmp/status.json" 2>"$tmp/status.err"
  if ! python3 - "$tmp/status.json" <<'PY'
import json, os, sys
s = json.load(open(sys.argv[1]))
ok = len(s["hosts"]) == 3 and all(h["running"] and h["sshd_pid"] > 1 and os.path.exists(f"/proc/{h['sshd_pid']}") for h in s["hosts"])
sys.exit(0 if ok else 1)
PY
  then fail "lab status with the pids lost:"; cat "$tmp/status.json" "$tmp/status.err"; fi
  pids=$(python3 -c 'import json,sys; print(" ".join(str(h["sshd_pid"]) for h in json.load(open(sys.argv[1]))["hosts"] if h["sshd_pid"] > 0))' "$tmp/status.json" 2>/dev/null)
  expect "lab down with the pids lost" 0 "" -- "$ck" lab down --name "$lab" --state-dir "$st"
  checks=$((checks + 1))
  left=""
  for p in $pids; do [ -e "/proc/$p" ] && left="$left $p"; done
  ip netns list | grep -q "^ck-$lab-" && left="$left netns:$(ip netns list | grep "^ck-$lab-" | tr '\n' ' ')"
  [ -e "/run/clusterkit/lab-$lab.lock" ] && left="$left /run/clusterkit/lab-$lab.lock"
  [ -n "$left" ] && fail "left after lab down:$left"
  # A lock file left by a lab up that failed before making anything goes
  # with `lab down` too.
  mkdir -p /run/clusterkit && : >"/run/clusterkit/lab-$lab.lock"
  expect "lab down with only a lock file left" 0 "" -- "$ck" lab down --name "$lab" --state-dir "$st"
  checks=$((checks + 1))
  [ -e "/run/clusterkit/lab-$lab.lock" ] && fail "lab down left /run/clusterkit/lab-$lab.lock"
  # A stop (SIGTERM here; Ctrl-C's SIGINT takes the same path, and a script's
  # background job ignores SIGINT) while `lab up` waits for its hosts: exit
  # 130 naming the step, and nothing of the lab is left. An `sshd` that never
  # answers holds it there (outside /tmp: each host has a private /tmp).
  fake=$(mktemp -d /run/ck-test-fake-sshd-XXXXXX)
  printf '#!/bin/sh\nexec sleep 60\n' >"$fake/sshd" && chmod +x "$fake/sshd"
  PATH="$fake:$PATH" "$ck" lab up --name "$lab" --hosts 2 --subnet $sub --state-dir "$st" >"$tmp/labstop.log" 2>&1 &
  up=$!
  for _ in $(seq 1 400); do ip netns list | grep -q "^ck-$lab-" && break; sleep 0.05; done
  sleep 0.3
  kill -TERM "$up"
  rc=0; wait "$up" || rc=$?
  checks=$((checks + 1))
  if [ "$rc" != 130 ] || ! grep -qF "stopped (interrupted) while waiting for the hosts' sshd" "$tmp/labstop.log"; then
    fail "lab up stopped by SIGTERM: rc $rc (expected 130)"; cat "$tmp/labstop.log"
  fi
  checks=$((checks + 1))
  left=""
  ip netns list | grep -q "^ck-$lab-" && left="$left netns:$(ip netns list | grep "^ck-$lab-" | tr '\n' ' ')"
  [ -e "/sys/class/net/ckbr-$lab" ] && left="$left bridge ckbr-$lab"
  [ -e "$st" ] && left="$left $st"
  [ -n "$left" ] && fail "left after lab up was stopped:$left"
  rm -rf "$fake"
  "$ck" lab down --name "$lab" --state-dir "$st" >/dev/null 2>&1 || fail "lab down after the stop"
  checks=$((checks + 1))
  [ -e "/run/clusterkit/lab-$lab.lock" ] && fail "lab down left /run/clusterkit/lab-$lab.lock"
fi
echo "test_cli: $((checks - failures))/$checks checks passed"
[ "$failures" -eq 0 ]
