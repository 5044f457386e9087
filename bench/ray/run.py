#!/usr/bin/env python3
"""Ray cluster bring-up benchmark: `clusterkit ray up|down` against Ray's own
cluster launcher (`ray up|down` with the `local` provider), on the same lab
hosts and the same Ray, side by side in one run.

Python 3 standard library only. Needs root (the lab is network namespaces),
the clusterkit CLI and a venv with Ray (`scripts/install-serving.sh` makes
/opt/ck-serve). See bench/ray/README.md for what is measured and how.

    python3 bench/ray/run.py                      # 2, 4 and 8 hosts, 3 rounds each
    python3 bench/ray/run.py --sizes 2 --rounds 1 # quick check
    python3 bench/ray/run.py --help
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "bench" / "out"
DEFAULT_CKS = [REPO / "build" / "clusterkit", REPO / "build-test" / "clusterkit"]
DEFAULT_VENV = "/opt/ck-serve"
LAB_NAME = "tbray"          # lab names of this benchmark's runs so far; change with --lab-name
LAB_SUBNET = "10.88.100"
CK_CLUSTER = "tbrb"         # clusterkit's cluster: temp dir /tmp/ck-ray-tbrb on each host
PEER_CLUSTER = "tbrb"       # the launcher's cluster_name is tbrb-n<N>
GPUS_PER_HOST = 2           # simulated: Ray gets them as logical --num-gpus
OBJECT_STORE = 268435456
DASHBOARD_PORT = 8265
GCS_PORT = 6379

CAL_DIR = "/tmp/ck-bench-cal"  # by-hand `ray start` runs (calibration): temp dir on each host

# Targets from the issue.
TARGET_UP_RATIO = 0.5       # clusterkit up <= 0.5 x `ray up` (to every node and GPU visible)
TARGET_OVERHEAD_S = 1.0     # clusterkit's own time beyond Ray's, 8 hosts

TOOLS = ["clusterkit", "ray"]
OPTIONAL_TOOLS = ["ray-tuned"]
# ray-tuned: the launcher with two settings a user can add to go faster
#   (not its defaults): the autoscaler's loop every 1 s instead of 5 s
#   (AUTOSCALER_UPDATE_INTERVAL_S in the head's `ray start` environment) and
#   upscaling_speed 100 (all workers pending at once). Shows how much of the
#   launcher's time is its polling loop.

POLLER = r'''
import json, sys, time, urllib.request
want_nodes, want_gpus, limit, period = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
url = "http://127.0.0.1:%s/api/v0/nodes" % sys.argv[5]
print("polling", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(0)
deadline = time.time() + limit
last = None
while time.time() < deadline:
    t = time.time()
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            j = json.load(r)
        alive = [n for n in j["data"]["result"]["result"] if n.get("state") == "ALIVE"]
        cur = "%d %g" % (len(alive), sum(n.get("resources_total", {}).get("GPU", 0) for n in alive))
    except Exception as e:
        cur = "err " + type(e).__name__
    if cur != last:
        print("%.3f %s" % (t, cur), flush=True)
        last = cur
    if cur == "%d %g" % (want_nodes, want_gpus):
        print("READY %.3f" % t, flush=True)
        sys.exit(0)
    time.sleep(period)
print("TIMEOUT", flush=True)
'''


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def run(argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.run(argv, **kw)


def stop_child(p: subprocess.Popen) -> None:
    """Stop a child this script started (by its pid): TERM, then KILL."""
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    os_name = ""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {"nproc": int(run(["nproc"]).stdout.strip() or 0), "cpu_model": model,
            "mem_gib": round(mem_kb / 1048576, 1), "kernel": platform.release(), "os": os_name,
            "openssh": run(["ssh", "-V"]).stderr.strip()}


def ray_log_time(line: str) -> float | None:
    """Wall time of a Ray log line ("2026-12-05 04:47:45,760\tINFO ..."): Ray
    writes local time; this machine's clock is the lab hosts' clock."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})", line)
    if not m:
        return None
    return dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000


ANSI = re.compile(r"\x1b\[[0-9;]*m")


# Which processes are Ray's, from a command line (ps args or /proc cmdline):
# Ray's binaries and Python modules under site-packages/ray, its renamed
# workers and dashboard modules, and anything run from the venv's bin
# (`ray start`, `ray stop`). Not: sshd, the launcher's ssh masters
# ("ssh: /tmp/ray_ssh_... [mux]"), shells.
def is_ray_process(args: str, venv: str) -> bool:
    a = args.strip()
    if a.startswith(("sshd", "ssh:", "ssh ")):
        return False
    return (a.startswith(("ray::", "ray-dashboard-")) or "/site-packages/ray/" in a
            or a.startswith(venv.rstrip("/") + "/bin/"))


def process_name(args: str) -> str:
    """A short name for a Ray process: raylet, gcs_server, monitor.py,
    ray.util.client.server, ray::DashboardAgent, `ray stop`, ..."""
    w = args.split()
    if not w:
        return "?"
    if w[0].startswith(("ray::", "ray-dashboard-")):
        return w[0]
    for i, x in enumerate(w):
        if "/site-packages/ray/" in x:
            return x.rsplit("/", 1)[-1]
        if x == "-m" and i + 1 < len(w):
            return w[i + 1]
    if len(w) > 2 and w[1].endswith("/bin/ray"):
        return "ray " + w[2]
    return w[0].rsplit("/", 1)[-1]


def is_launcher_master(args: str) -> bool:
    return args.startswith("ssh: ") and "/ray_ssh_" in args


# --------------------------------------------------------------------------
# Lab

class Host:
    def __init__(self, name, address, sshd_pid, netns):
        self.name, self.address, self.sshd_pid, self.netns = name, address, sshd_pid, netns
        self.pidns = ""

    def root(self) -> str:
        """This host's private mounts seen from the machine (read only here)."""
        return f"/proc/{self.sshd_pid}/root"


class Lab:
    def __init__(self, ck: str, name: str, subnet: str, hosts: int):
        self.ck, self.name, self.subnet, self.count = ck, name, subnet, hosts
        self.inventory = self.identity = self.known_hosts = ""
        self.hosts: list[Host] = []

    def up(self):
        log(f"lab up: {self.count} hosts, name {self.name}, subnet {self.subnet}, {GPUS_PER_HOST} simulated GPUs each")
        r = run([self.ck, "lab", "up", "--name", self.name, "--hosts", str(self.count), "--subnet", self.subnet,
                 "--gpus", str(GPUS_PER_HOST)])
        m = re.search(r"^inventory:\s*(\S+)", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise BenchError(f"`clusterkit lab up` failed (rc {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.inventory = m.group(1)
        text = Path(self.inventory).read_text()
        self.identity = re.search(r"identity_file:\s*(\S+)", text).group(1)
        self.known_hosts = re.search(r"known_hosts_file:\s*(\S+)", text).group(1)
        state = json.loads((Path(self.inventory).parent / "state.json").read_text())
        hosts = [Host(h["name"], h["address"], int(h["sshd_pid"]), h["netns"]) for h in state["hosts"] if not h.get("nas")]
        hosts.sort(key=lambda h: int(h.name[1:]))
        for h in hosts:
            h.pidns = os.readlink(f"/proc/{h.sshd_pid}/ns/pid")
        if len(hosts) < self.count:
            raise BenchError(f"lab {self.name} has {len(hosts)} hosts, expected {self.count}")
        self.hosts = hosts[: self.count]

    def down(self):
        log(f"lab down ({self.name})")
        r = run([self.ck, "lab", "down", "--name", self.name])
        if r.returncode != 0:
            log(f"WARNING: `clusterkit lab down --name {self.name}` failed: {r.stdout[-500:]}{r.stderr[-500:]}\n"
                f"  run it by hand")


class Shell:
    """The bench's own ssh to lab hosts (checks, cleanup; never timed): one
    OpenSSH master per host, kept up for the run so that checks between
    timed runs cost no handshakes."""

    def __init__(self, lab: Lab, tmp: Path):
        self.lab, self.dir = lab, tmp / "cm"
        self.dir.mkdir()
        self.opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={lab.known_hosts}",
                     "-i", lab.identity, "-o", "IdentitiesOnly=yes", "-o", "ControlMaster=auto",
                     "-o", f"ControlPath={self.dir}/%h", "-o", "ControlPersist=3600", "-l", "root"]

    def start(self, host: Host) -> subprocess.Popen:
        return subprocess.Popen(["ssh", *self.opts, host.address, "sh", "-s"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run_all(self, hosts: list[Host], script, timeout=120) -> dict[str, subprocess.CompletedProcess]:
        """`script` (a string, or a function of the host) on every host at once."""
        procs = [(h, self.start(h), script(h) if callable(script) else script) for h in hosts]
        out: dict = {}

        def talk(h, p, s):   # one thread per host: every script starts at once
            try:
                o, e = p.communicate(s, timeout=timeout)
                out[h.name] = subprocess.CompletedProcess(p.args, p.returncode, o, e)
            except Exception as ex:
                stop_child(p)
                out[h.name] = subprocess.CompletedProcess(p.args, 255, "", f"{type(ex).__name__}: {ex}")
        threads = [threading.Thread(target=talk, args=x, daemon=True) for x in procs]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        except BaseException:
            for _, p, _ in procs:
                stop_child(p)
            raise
        return out

    def close(self):
        for sock in sorted(self.dir.iterdir()) if self.dir.exists() else []:
            run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench-master"])


def prepare_hosts(shell: Shell, hosts: list[Host], venv: str):
    """Per host, inside its own mount namespace: a private /root (tmpfs) with
    a .bashrc that puts the venv first on PATH and a .profile that reads it.
    Why: the launcher copies its key and config to ~ on the head, and with
    the lab's shared disk that would be the machine's own /root; its `ray
    down` runs a bare `ray stop`, so `ray` must be on the login shell's PATH
    (as on a server whose .bashrc activates the venv). clusterkit's commands
    go through the same shell, so both tools pay the same (nothing measurable)."""
    script = (
        "set -e\n"
        "if ! mountpoint -q /root; then mount -t tmpfs -o mode=0700 ck-bench-root /root; fi\n"
        f"printf '%s\\n' 'export PATH={venv}/bin:$PATH' > /root/.bashrc\n"
        "printf '%s\\n' 'if [ -n \"$BASH\" ] && [ -f ~/.bashrc ]; then . ~/.bashrc; fi' > /root/.profile\n"
        "bash -c 'command -v ray'\n")
    res = shell.run_all(hosts, script)
    for h in hosts:
        r = res[h.name]
        if r.returncode != 0 or not r.stdout.strip().startswith(venv):
            raise BenchError(f"preparing {h.name} failed (rc {r.returncode}): {r.stdout[-300:]}{r.stderr[-500:]}")


def ray_processes(shell: Shell, hosts: list[Host], venv: str) -> dict:
    """By looking, over ssh: {host: {"ray": [(pid, args)], "masters": [...]}}
    (pids as the host sees them)."""
    res = shell.run_all(hosts, "ps -e -o pid=,args=\n")
    out = {}
    for h in hosts:
        r = res[h.name]
        if r.returncode != 0:
            raise BenchError(f"ps on {h.name} failed: {r.stderr[-300:]}")
        rays, masters = [], []
        for line in r.stdout.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) < 2 or not parts[0].isdigit() or parts[0] == "1":
                continue
            pid, args = int(parts[0]), parts[1]
            if is_ray_process(args, venv):
                rays.append((pid, args[:160]))
            elif is_launcher_master(args):
                masters.append((pid, args[:160]))
        out[h.name] = {"ray": rays, "masters": masters}
    return out


def kill_and_clean(shell: Shell, hosts: list[Host], found: dict, grace: float = 2.0) -> int:
    """Stop what `found` lists on each host BY PID (inside that host's own pid
    namespace), then remove both tools' state in the host's private /tmp and
    /root. Returns how many processes were killed."""
    killed = 0

    def script(h):
        nonlocal killed
        pids = [str(p) for p, _ in found.get(h.name, {}).get("ray", []) + found.get(h.name, {}).get("masters", [])]
        killed += len(pids)
        s = ""
        if pids:
            p = " ".join(pids)
            s += (f"kill -TERM {p} 2>/dev/null\n"
                  f"i=0; while [ $i -lt {int(grace * 10)} ]; do alive=0; for x in {p}; do "
                  "[ -d /proc/$x ] && [ \"$(cut -d' ' -f3 /proc/$x/stat 2>/dev/null)\" != Z ] && alive=1; done; "
                  "[ $alive = 0 ] && break; sleep 0.1; i=$((i+1)); done\n"
                  f"kill -KILL {p} 2>/dev/null\n")
        s += (f"rm -rf /tmp/ray /tmp/ray_ssh_* /tmp/ck-ray-{CK_CLUSTER} {CAL_DIR} /root/ray_bootstrap_config.yaml "
              "/root/ray_bootstrap_key.pem\n")
        return s
    shell.run_all(hosts, script)
    return killed


class ProcSampler(threading.Thread):
    """From the machine, read-only: every `period` s, which Ray processes live
    in each lab host (by the pid namespace of the host's sshd). Keeps, per
    host, the last time one was seen and the names still alive then."""

    def __init__(self, hosts: list[Host], venv: str, period: float = 0.1):
        super().__init__(daemon=True)
        self.ns = {h.pidns: h.name for h in hosts}
        self.venv, self.period = venv, period
        self.stop = threading.Event()
        self.last_seen: dict[str, float] = {}
        self.last_names: dict[str, list[str]] = {}
        self.first: dict[str, int] = {}
        # Per host: [time, [names alive]] each time the set changes (the
        # order in which Ray's processes went away).
        self.changes: dict[str, list] = {}

    def scan(self) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                host = self.ns.get(os.readlink(f"/proc/{d}/ns/pid"))
                if not host:
                    continue
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    args = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue
            except OSError:
                continue
            if args and is_ray_process(args, self.venv):
                seen.setdefault(host, []).append(process_name(args))
        return seen

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            seen = self.scan()
            for host in self.ns.values():
                names = sorted(seen.get(host, []))
                ch = self.changes.setdefault(host, [])
                if not ch or ch[-1][1] != names:
                    ch.append([t, names])
            for host, names in seen.items():
                self.first.setdefault(host, len(names))
                self.last_seen[host] = t
                self.last_names[host] = sorted(set(names))
            self.stop.wait(self.period)


def ck_breakdown(ray_start: dict, ck_nodes: dict, head: str, wall: float, ready: float) -> dict:
    """Where clusterkit's `up` spends its time, from each host's `ray start`
    [begin, last write] and clusterkit's own phases (all in s from t0)."""
    hb, hm = ray_start[head]
    workers = {h: tuple(v) for h, v in ray_start.items() if h != head}
    head_rs = hm - hb
    if workers:
        last = max(workers, key=lambda h: workers[h][1])
        lb, lm = workers[last]
        slow_rs = max(m - b for b, m in workers.values())
    else:
        last, lb, lm, slow_rs = head, hm, hm, 0.0
    ray_wait = max(0.0, ready - max(hm, lm))
    head_started = ck_nodes.get(head, {}).get("started_ms", 0)
    workers_started = max((v.get("started_ms", 0) for h, v in ck_nodes.items() if h != head), default=head_started)
    b = {
        "head_ray_start_s": head_rs,
        "slowest_worker_ray_start_s": slow_rs,
        # From the end of the last `ray start` log line to the dashboard
        # listing every node and GPU (0 when it listed them before).
        "ray_report_wait_s": ray_wait,
        # What clusterkit adds: the definition.
        "overhead_s": wall - head_rs - slow_rs - ray_wait,
        # The same, along the critical path (t0 -> head's ray start ->
        # last worker's ray start -> Ray reports all -> exit):
        "before_head_start_s": hb,                      # exec, connect, probe, plan, start script
        "head_done_to_last_worker_start_s": lb - hm,    # head's python exit, return, dispatch, worker script
        "last_worker_ray_start_s": lm - lb,
        # Last `ray start` line (or Ray reporting all, if later) -> exit:
        # python's exit, the command's return, clusterkit's status polls.
        "after_ray_s": wall - max(lm, ready),
        "ready_to_exit_s": wall - ready,
        "last_worker": last,
        # clusterkit's own phases (its JSON; "started" = the command returned)
        "ck_probe_s": ck_nodes.get(head, {}).get("probed_ms", 0),
        "ck_head_started_s": head_started,
        "ck_workers_started_s": workers_started,
        "ck_all_joined_s": max(v.get("joined_ms", 0) for v in ck_nodes.values()),
    }
    # clusterkit moves on when a node's start command has returned: since
    # 2026-12-05 13:00 that is when `ray start` printed "Ray runtime
    # started" (before, when the process exited: up to ~2 s later under
    # CPU contention). Each node's started_ms is its own command's return
    # (before, every worker had the slowest one's).
    b["head_exit_and_return_s"] = head_started - hm
    b["last_worker_exit_and_return_s"] = workers_started - lm if workers else 0.0
    b["dispatch_to_last_worker_s"] = b["head_done_to_last_worker_start_s"] - b["head_exit_and_return_s"]
    b["status_poll_to_exit_s"] = wall - max(workers_started, ready)
    # The overhead less the waits for `ray start` processes to exit after
    # their last line (the head's and the last worker's).
    b["overhead_without_ray_exits_s"] = b["overhead_s"] - b["head_exit_and_return_s"] - b["last_worker_exit_and_return_s"]
    return b


# --------------------------------------------------------------------------
# The bench

class Bench:
    def __init__(self, args, ck: str, lab: Lab, shell: Shell, tmp: Path):
        self.args, self.ck, self.lab, self.shell, self.tmp = args, ck, lab, shell, tmp
        self.venv = args.venv.rstrip("/")
        self.ray = f"{self.venv}/bin/ray"
        self.poller = tmp / "poll.py"
        self.poller.write_text(POLLER)
        self.peer_tmp = tmp / "launcher-tmp"   # the launcher's TMPDIR: its state, config cache, bootstrap file
        self.peer_tmp.mkdir()
        self.base_env = dict(os.environ)
        self.base_env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.logs = tmp / "logs"
        self.logs.mkdir()

    def hosts(self, n) -> list[Host]:
        return self.lab.hosts[:n]

    # ---- commands
    def ck_argv(self, op, n):
        return [self.ck, "--json", "-i", self.lab.inventory, "ray", op, "-g", ",".join(h.name for h in self.hosts(n)),
                "--name", CK_CLUSTER, "--runtime", "bare", "--venv", self.venv] + \
            (["--object-store-memory", str(OBJECT_STORE)] if op == "up" else [])

    def peer_config(self, tool, n) -> Path:
        hosts = self.hosts(n)
        common = (f"--node-ip-address=$(hostname -I | cut -d' ' -f1) --num-gpus={GPUS_PER_HOST} "
                  f"--object-store-memory={OBJECT_STORE} --disable-usage-stats")
        head_env = "AUTOSCALER_UPDATE_INTERVAL_S=1 " if tool == "ray-tuned" else ""
        cfg = {
            "cluster_name": f"{PEER_CLUSTER}-n{n}",
            "provider": {"type": "local", "head_ip": hosts[0].address, "worker_ips": [h.address for h in hosts[1:]]},
            "auth": {"ssh_user": "root", "ssh_private_key": self.lab.identity},
            "head_start_ray_commands": [
                f"{head_env}{self.ray} start --head --port={GCS_PORT} --autoscaling-config=~/ray_bootstrap_config.yaml "
                f"--dashboard-host=127.0.0.1 --dashboard-port={DASHBOARD_PORT} {common}"],
            "worker_start_ray_commands": [f"{self.ray} start --address=$RAY_HEAD_IP:{GCS_PORT} {common}"],
        }
        if tool == "ray-tuned":
            cfg["upscaling_speed"] = 100
        # JSON is YAML: no PyYAML needed.
        path = self.tmp / f"{tool}-n{n}.yaml"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        return path

    def peer_argv(self, tool, op, n):
        cfg = str(self.peer_config(tool, n))
        if op == "up":
            return [self.ray, "up", cfg, "-y", "--no-config-cache", "--disable-usage-stats", "--log-color", "false"]
        return [self.ray, "down", cfg, "-y", "--log-color", "false"]

    def peer_env(self):
        env = dict(self.base_env)
        env["TMPDIR"] = str(self.peer_tmp)
        # Ray 2.60's `ray up` turns autoscaler v2 on by default; with the local
        # provider v2 never starts a worker (see README and --check-v2). v1 is
        # the launcher's documented way back.
        env["RAY_UP_enable_autoscaler_v2"] = "0"
        return env

    # ---- cold state for both tools
    def make_cold(self):
        r = run([self.ck, "-i", self.lab.inventory, "disconnect"])
        if r.returncode != 0:
            raise BenchError(f"clusterkit disconnect failed: {r.stdout[-500:]}{r.stderr[-500:]}")
        # The launcher's masters on this machine (ControlPersist=10s): close them.
        for d in Path("/tmp").glob("ray_ssh_*/*"):
            if d.name in self.peer_ctl_dirs():
                for sock in d.iterdir():
                    run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "launcher-master"])

    def peer_ctl_dirs(self) -> set[str]:
        """The launcher's ControlPath folders of this bench's clusters:
        /tmp/ray_ssh_<sha256(user)[:10]>/<sha256(cluster)[:10]>."""
        return {hashlib.sha256(f"{PEER_CLUSTER}-n{n}".encode()).hexdigest()[:10] for n in self.args.sizes}

    # ---- clean slate before a timed run
    def ensure_clean(self, n, where):
        found = ray_processes(self.shell, self.lab.hosts, self.venv)
        busy = {h: v for h, v in found.items() if v["ray"] or v["masters"]}
        if busy:
            log(f"  cleanup ({where}): " + "; ".join(f"{h}: {len(v['ray'])} Ray, {len(v['masters'])} ssh masters"
                                                         for h, v in busy.items()))
        kill_and_clean(self.shell, self.lab.hosts, found)
        if busy:
            again = ray_processes(self.shell, self.lab.hosts, self.venv)
            left = {h: v for h, v in again.items() if v["ray"]}
            if left:
                raise BenchError(f"Ray processes survive cleanup: {left}")

    # ---- one timed run
    def timed(self, argv, env, name, timeout, poller_for: int | None = None):
        """Runs argv; with poller_for=N, polls the head's dashboard (from inside
        h1's network namespace) from the start until N nodes and N*GPUS
        GPUs are alive. Returns a record with wall_s and ready_s."""
        out = self.logs / f"{name}.log"
        poll = None
        poll_lines: list[str] = []
        if poller_for:
            py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            poll = subprocess.Popen(["ip", "netns", "exec", self.lab.hosts[0].netns, py, "-u", str(self.poller),
                                     str(poller_for), str(poller_for * GPUS_PER_HOST), str(timeout),
                                     str(self.args.poll_interval), str(DASHBOARD_PORT)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            first = poll.stdout.readline().strip()
            if first != "polling":
                stop_child(poll)
                raise BenchError(f"the dashboard poller did not start: {first} {poll.stdout.read()[-500:]}")
            reader = threading.Thread(target=lambda: poll_lines.extend(l.strip() for l in poll.stdout), daemon=True)
        la = loadavg()
        with open(out, "w") as f, open(out.with_suffix(".err"), "w") as ferr:
            t0 = time.time()
            if poll:
                poll.stdin.write("go\n")
                poll.stdin.flush()
                reader.start()
            p = subprocess.Popen(argv, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=f, stderr=ferr)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stop_child(p)
                rc = "timeout"
            except BaseException:
                stop_child(p)
                if poll:
                    stop_child(poll)
                raise
            t1 = time.time()
        rec = {"t0": t0, "wall_s": t1 - t0, "rc": rc, "load1": la[0], "log": str(out), "err": str(out.with_suffix(".err"))}
        if poll:
            try:
                poll.wait(timeout=max(1.0, timeout - (t1 - t0)))
            except subprocess.TimeoutExpired:
                stop_child(poll)
            reader.join(timeout=2)
            ready = next((float(l.split()[1]) for l in poll_lines if l.startswith("READY ")), None)
            rec["ready_s"] = None if ready is None else max(ready, t1) - t0     # usable: ready AND returned
            rec["ray_ready_s"] = None if ready is None else ready - t0           # Ray reports every node and GPU
            rec["poll"] = [l for l in poll_lines][:200]
        return rec

    # ---- up
    def up(self, tool, n, rnd) -> dict:
        name = f"{tool}-up-n{n}-r{rnd}"
        if tool == "clusterkit":
            rec = self.timed(self.ck_argv("up", n), self.base_env, name, self.args.timeout, poller_for=n)
            rec.update(self.ck_up_details(rec, n))
        else:
            rec = self.timed(self.peer_argv(tool, "up", n), self.peer_env(), name, self.args.timeout, poller_for=n)
            rec.update(self.peer_up_details(rec, n))
        rec["ok"] = rec["rc"] == 0 and rec.get("ray_ready_s") is not None
        return rec

    def ray_start_stats(self, n) -> dict:
        """Birth and last write of each host's ray-start.log (clusterkit bare
        runtime): the `ray start` process began right after the file was
        created, and its last line ("Ray runtime started" + next steps) is
        the last write."""
        paths = [f"{h.root()}/tmp/ck-ray-{CK_CLUSTER}/ray-start.log" for h in self.hosts(n)]
        r = run(["stat", "-c", "%.9W %.9Y", *paths])
        out = {}
        lines = r.stdout.split("\n")
        for h, line in zip(self.hosts(n), lines):
            w = line.split()
            if len(w) == 2 and float(w[0]) > 0:
                out[h.name] = (float(w[0]), float(w[1]))
        return out

    def ck_up_details(self, rec, n) -> dict:
        d: dict = {}
        try:
            j = json.loads(Path(rec["log"]).read_text())
        except (ValueError, OSError):
            return {"error": "no JSON from clusterkit: " + Path(rec["log"]).read_text()[-1000:] +
                    Path(rec["err"]).read_text()[-1000:]}
        t0 = rec["t0"]
        d["ck_total_s"] = j.get("total_ms", 0) / 1000
        nodes = {x["host"]: x for x in j.get("nodes", [])}
        d["ck_nodes"] = {h: {k: round(v[k] / 1000, 3) for k in ("probed_ms", "started_ms", "joined_ms")} for h, v in nodes.items()}
        if rec["rc"] != 0:
            d["error"] = j.get("message", "")
            return d
        rs = self.ray_start_stats(n)
        d["ray_start"] = {h: [round(b - t0, 3), round(m - t0, 3)] for h, (b, m) in rs.items()}
        head = self.hosts(n)[0].name
        if head not in rs or len(rs) != n:
            d["error"] = f"ray-start.log missing on {sorted(set(h.name for h in self.hosts(n)) - set(rs))}"
            return d
        d["breakdown"] = ck_breakdown(d["ray_start"], d["ck_nodes"], head, rec["wall_s"], rec["ray_ready_s"])
        return d

    def peer_up_details(self, rec, n) -> dict:
        """The launcher's own timeline, from its output (head) and the head's
        autoscaler log (workers)."""
        t0 = rec["t0"]
        d: dict = {"timeline": {}}
        text = ANSI.sub("", Path(rec["log"]).read_text(errors="replace") + "\n" + Path(rec["err"]).read_text(errors="replace"))
        tl = d["timeline"]

        def first(pattern, src):
            for line in src.splitlines():
                if re.search(pattern, line):
                    t = ray_log_time(line)
                    if t:
                        return round(t - t0, 3)
            return None
        tl["first_log_s"] = first(r".", text)
        tl["head_ssh_check_s"] = first(r"Waiting for SSH to become available", text)
        tl["head_ray_start_begin_s"] = first(r"\[7/7\] Starting the Ray runtime", text)
        tl["head_up_to_date_s"] = first(r"New status: up-to-date", text)
        tl["ray_up_exit_s"] = round(rec["wall_s"], 3)
        # The head's autoscaler log (its private /tmp, read through /proc).
        head = self.hosts(n)[0]
        sessions = sorted(Path(f"{head.root()}/tmp/ray").glob("session_2*"))
        mon = ""
        # The updaters log "Applied config" once their ssh command returned,
        # which is after Ray already reports the node: wait for them (<= 20 s).
        deadline = time.time() + (20 if rec.get("ray_ready_s") is not None else 0)
        while sessions:
            mon = ""
            for f in ("monitor.log", "monitor.out", "monitor.err"):   # the updaters' LogTimer lines are in .out
                try:
                    mon += ANSI.sub("", (sessions[-1] / "logs" / f).read_text(errors="replace")) + "\n"
                except OSError:
                    pass
            if mon.count(": Applied config ") >= n - 1 or time.time() > deadline:
                break
            time.sleep(0.2)
        d["monitor_log_found"] = bool(mon.strip())
        tl["autoscaler_start_s"] = first(r"StandardAutoscaler: \{", mon)
        launches = [(ray_log_time(l), int(m.group(1))) for l in mon.splitlines()
                    for m in [re.search(r"Queue (\d+) new nodes for launch", l)] if m]
        tl["worker_launch_batches"] = [[round(t - t0, 3), k] for t, k in launches if t]
        workers = {}
        for line in mon.splitlines():
            m = re.search(r"spawn_updater\) updater thread for node (\d+\.\d+\.\d+\.\d+)", line)
            if m and ray_log_time(line):
                workers.setdefault(m.group(1), {})["updater_s"] = round(ray_log_time(line) - t0, 3)
            m = re.search(r"NodeUpdater: (\d+\.\d+\.\d+\.\d+): Ray start commands succeeded \[LogTimer=(\d+)ms\]", line)
            if m and ray_log_time(line):
                w = workers.setdefault(m.group(1), {})
                w["ray_start_done_s"] = round(ray_log_time(line) - t0, 3)
                w["ray_start_cmd_s"] = int(m.group(2)) / 1000
            m = re.search(r"NodeUpdater: (\d+\.\d+\.\d+\.\d+): Applied config \S+\s+\[LogTimer=(\d+)ms\]", line)
            if m and ray_log_time(line):
                workers.setdefault(m.group(1), {})["updater_total_s"] = int(m.group(2)) / 1000
        d["workers"] = workers
        if tl["head_ray_start_begin_s"] is not None and tl["head_up_to_date_s"] is not None:
            d["head_ray_start_cmd_s"] = round(tl["head_up_to_date_s"] - tl["head_ray_start_begin_s"], 3)
        if workers:
            d["first_worker_updater_s"] = min((w.get("updater_s") for w in workers.values() if w.get("updater_s") is not None), default=None)
            d["slowest_worker_ray_start_cmd_s"] = max((w.get("ray_start_cmd_s", 0) for w in workers.values()), default=None)
        if rec.get("ray_ready_s") is None:
            d["error"] = ("workers never all joined within the timeout; autoscaler log tail:\n" +
                          "\n".join(mon.splitlines()[-15:]))
        return d

    # ---- down
    def down(self, tool, n, rnd) -> dict:
        name = f"{tool}-down-n{n}-r{rnd}"
        sampler = ProcSampler(self.hosts(n), self.venv, self.args.sample_interval)
        sampler.start()
        try:
            if tool == "clusterkit":
                rec = self.timed(self.ck_argv("down", n), self.base_env, name, self.args.timeout)
            else:
                rec = self.timed(self.peer_argv(tool, "down", n), self.peer_env(), name, self.args.timeout)
        finally:
            sampler.stop.set()
            sampler.join()
        t0 = rec["t0"]
        rec["ray_procs_at_start"] = sampler.first
        rec["last_ray_process_s"] = {h: round(t - t0, 3) for h, t in sampler.last_seen.items()}
        rec["last_ray_names"] = sampler.last_names
        rec["ray_process_changes"] = {h: [[round(t - t0, 3), names] for t, names in ch] for h, ch in sampler.changes.items()}
        found = ray_processes(self.shell, self.hosts(n), self.venv)
        rec["left_ray"] = {h: [a for _, a in v["ray"]] for h, v in found.items() if v["ray"]}
        rec["left_masters"] = {h: len(v["masters"]) for h, v in found.items() if v["masters"]}
        rec["left_ray_count"] = sum(len(v) for v in rec["left_ray"].values())
        rec["clean"] = rec["left_ray_count"] == 0
        rec["ok"] = rec["rc"] == 0
        return rec


def calibrate(bench: Bench, n: int, overlap: bool) -> dict:
    """`ray start` by hand over the bench's own (already open) ssh
    connections, with the same arguments as clusterkit's bare runtime: the
    head, then every worker at once (overlap=False: what clusterkit does,
    without clusterkit), or every worker started as soon as the head's GCS
    port listens (overlap=True: what could be done). Each node's `ray start`
    is timed on its host (date before and after) and by its log (birth and
    last write). Ready: the dashboard reports every node and GPU."""
    hosts = bench.hosts(n)
    head = hosts[0]
    bench.ensure_clean(n, "before calibration")

    def script(h, is_head):
        where = (f"--head --port={GCS_PORT} --dashboard-host=127.0.0.1 --dashboard-port={DASHBOARD_PORT}" if is_head
                 else f"--address={head.address}:{GCS_PORT}")
        return (f"mkdir -p {CAL_DIR} && cd {CAL_DIR}\n"
                "b=$(date +%s.%N)\n"
                f"RAY_USAGE_STATS_ENABLED=0 setsid {bench.ray} start {where} --node-ip-address={h.address} "
                f"--temp-dir={CAL_DIR} --num-gpus={GPUS_PER_HOST} --object-store-memory={OBJECT_STORE} "
                "--disable-usage-stats > ray-start.log 2>&1 < /dev/null\n"
                "rc=$?; e=$(date +%s.%N)\n"
                "echo \"CAL $rc $b $e $(stat -c '%.9W %.9Y' ray-start.log)\"\n")

    def parse(r, t0):
        m = re.search(r"^CAL (\d+) (\S+) (\S+) (\S+) (\S+)$", r.stdout, re.M)
        if not m or m.group(1) != "0":
            raise BenchError(f"by-hand ray start failed: {r.stdout[-500:]} {r.stderr[-500:]}")
        b, e, w, y = (float(m.group(i)) - t0 for i in range(2, 6))
        return {"process_s": e - b, "log_span_s": y - w, "exit_after_last_line_s": e - y,
                "begin_s": b, "end_s": e}

    port_hex = f":{GCS_PORT:04X} "
    poll_py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    poll = subprocess.Popen(["ip", "netns", "exec", head.netns, poll_py, "-u", str(bench.poller), str(n),
                             str(n * GPUS_PER_HOST), "180", str(bench.args.poll_interval), str(DASHBOARD_PORT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if poll.stdout.readline().strip() != "polling":
            raise BenchError("the dashboard poller did not start")
        t0 = time.time()
        poll.stdin.write("go\n")
        poll.stdin.flush()
        hp = bench.shell.start(head)
        hp.stdin.write(script(head, True))
        hp.stdin.close()
        hp.stdin = None   # communicate() below must not touch it
        gcs_s = None
        if overlap:
            while hp.poll() is None:
                tcp = ""
                for f in ("tcp", "tcp6"):   # h1's network namespace; the GCS may listen on either
                    try:
                        tcp += Path(f"/proc/{head.sshd_pid}/net/{f}").read_text()
                    except OSError:
                        pass
                if any(len(l.split()) > 3 and l.split()[1].endswith(port_hex.strip()) and l.split()[3] == "0A"
                       for l in tcp.splitlines()):
                    gcs_s = time.time() - t0
                    break
                time.sleep(0.02)
            if gcs_s is None:
                log("  WARNING: the head's GCS port was never seen listening; the workers start after the head")
        else:
            hp.wait(timeout=180)
        wres = bench.shell.run_all(hosts[1:], lambda h: script(h, False), timeout=180)
        hout, herr = hp.communicate(timeout=180)
        head_rec = parse(subprocess.CompletedProcess(hp.args, hp.returncode, hout, herr), t0)
        workers = {h.name: parse(wres[h.name], t0) for h in hosts[1:]}
        lines = [l.strip() for l in poll.stdout]
        poll.wait(timeout=10)
    finally:
        stop_child(poll)
    ready = next((float(l.split()[1]) - t0 for l in lines if l.startswith("READY ")), None)
    bench.ensure_clean(n, "after calibration")
    rec = {"n": n, "overlap": overlap, "ready_s": ready, "gcs_listening_s": gcs_s, "head": head_rec, "workers": workers,
           "slowest_worker_process_s": max(w["process_s"] for w in workers.values()),
           "slowest_worker_log_span_s": max(w["log_span_s"] for w in workers.values()),
           "exit_after_last_line_s": [head_rec["exit_after_last_line_s"]] + [w["exit_after_last_line_s"] for w in workers.values()]}
    log(f"  by hand, N={n}, {'workers as soon as the GCS listens' if overlap else 'head, then workers'}: every node "
        f"and GPU at {_fmt(ready, '.2f')} s (head's ray start {head_rec['process_s']:.2f} s"
        + (f", GCS listening at {gcs_s:.2f} s" if gcs_s is not None else "")
        + f"; slowest worker's {rec['slowest_worker_process_s']:.2f} s; "
        f"python exits {1000 * statistics.median(rec['exit_after_last_line_s']):.0f} ms after its last log line)")
    return rec


def wait_for_load(args, why: str) -> list[float]:
    t0 = time.time()
    la = loadavg()
    if la[0] <= args.max_load:
        return la
    log(f"load average {la[0]:.2f} > {args.max_load} before {why}; waiting up to {args.load_wait:.0f} s")
    while time.time() - t0 < args.load_wait:
        time.sleep(5)
        la = loadavg()
        if la[0] <= args.max_load:
            log(f"load average now {la[0]:.2f}; going on")
            return la
    log(f"load average still {la[0]:.2f} after {args.load_wait:.0f} s; measuring anyway (recorded)")
    return la


def check_v2(bench: Bench, wait_s: float) -> dict:
    """The launcher with its defaults (autoscaler v2 since Ray 2.50) on 2
    hosts: does the worker ever join? Untimed; recorded for the README."""
    n = 2
    bench.ensure_clean(n, "before the autoscaler v2 check")
    bench.make_cold()
    env = bench.peer_env()
    env.pop("RAY_UP_enable_autoscaler_v2", None)
    rec = bench.timed(bench.peer_argv("ray", "up", n), env, "ray-v2-up-n2", wait_s + 120, poller_for=None)
    joined = None
    t_end = time.time() + wait_s
    head = bench.hosts(n)[0]
    while time.time() < t_end:
        r = run(["ip", "netns", "exec", head.netns, "/usr/bin/python3", "-c",
                 "import json,urllib.request;j=json.load(urllib.request.urlopen("
                 f"'http://127.0.0.1:{DASHBOARD_PORT}/api/v0/nodes',timeout=2));"
                 "print(sum(1 for n in j['data']['result']['result'] if n['state']=='ALIVE'))"])
        if r.stdout.strip() == str(n):
            joined = time.time() - rec["t0"]
            break
        time.sleep(2)
    sessions = sorted(Path(f"{head.root()}/tmp/ray").glob("session_2*"))
    mon = ""
    if sessions:
        try:
            mon = (sessions[-1] / "logs" / "monitor.log").read_text(errors="replace")
        except OSError:
            pass
    tail = [l for l in mon.splitlines() if re.match(r"\d{4}-", l)][-12:]
    down = bench.timed(bench.peer_argv("ray", "down", n), env, "ray-v2-down-n2", 300)
    bench.ensure_clean(n, "after the autoscaler v2 check")
    res = {"ray_up_rc": rec["rc"], "ray_up_s": rec["wall_s"], "waited_s": wait_s, "worker_joined_after_s": joined,
           "monitor_log_tail": tail, "ray_down_rc": down["rc"]}
    log(f"autoscaler v2 check: ray up rc {rec['rc']} in {rec['wall_s']:.1f} s; worker "
        + (f"joined after {joined:.1f} s" if joined else f"NOT joined after {wait_s:.0f} s"))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusterkit", default=None, help="clusterkit CLI (default: build/clusterkit, else build-test/clusterkit)")
    ap.add_argument("--no-snapshot", action="store_true", help="run the clusterkit binary in place instead of a private copy")
    ap.add_argument("--venv", default=DEFAULT_VENV, help=f"venv with Ray on every host (default {DEFAULT_VENV})")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4, 8],
                    help="host counts, comma list (default 2,4,8)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per size (default 3; 0: only the by-hand runs); the tool order rotates each round")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help=f"comma list out of {','.join(TOOLS + OPTIONAL_TOOLS)} (default {','.join(TOOLS)})")
    ap.add_argument("--timeout", type=float, default=300, help="longest up or down, seconds (default 300)")
    ap.add_argument("--poll-interval", type=float, default=0.1, help="dashboard poll period, seconds (default 0.1)")
    ap.add_argument("--sample-interval", type=float, default=0.1, help="/proc sampling period during down (default 0.1)")
    ap.add_argument("--settle", type=float, default=3.0, help="pause before each timed command, seconds (default 3)")
    ap.add_argument("--max-load", type=float, default=2.0, help="wait for the 1-min load average to drop below this")
    ap.add_argument("--load-wait", type=float, default=120, help="longest wait for the load before a size, seconds")
    ap.add_argument("--check-v2", type=float, default=45, metavar="S",
                    help="first run the launcher with its default autoscaler v2 on 2 hosts and wait S s for the "
                         "worker (0: skip; default 45)")
    ap.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                    help="skip the by-hand `ray start` runs before each size (head then workers, and workers as soon "
                         "as the head's GCS listens)")
    ap.add_argument("--lab-name", default=LAB_NAME, help=f"lab name (default {LAB_NAME})")
    ap.add_argument("--subnet", default=LAB_SUBNET, help=f"lab subnet, three octets (default {LAB_SUBNET})")
    ap.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    ap.add_argument("--json", default=None, help="JSON output path (default bench/out/ray-<UTC time>.json)")
    ap.add_argument("--report", metavar="JSON", default=None,
                    help="re-summarize and print an earlier run's JSON (no lab, nothing run)")
    args = ap.parse_args(argv)
    if args.report:
        doc = json.loads(Path(args.report).read_text())
        for r in doc["runs"]:
            if r["tool"] == "clusterkit" and r["op"] == "up" and r.get("ok") and r.get("ray_start"):
                r["breakdown"] = ck_breakdown(r["ray_start"], r["ck_nodes"], "h1", r["wall_s"], r["ray_ready_s"])
        doc["summary"] = summarize(doc, doc["config"]["sizes"], doc["config"]["tools"])
        print(render(doc))
        return 0
    if os.geteuid() != 0:
        print("run.py needs root (the lab is network namespaces)", file=sys.stderr)
        return 2
    tools = [t for t in args.tools.split(",") if t]
    if any(t not in TOOLS + OPTIONAL_TOOLS for t in tools) or "clusterkit" not in tools or "ray" not in tools:
        ap.error(f"--tools: clusterkit and ray are needed, optionally {','.join(OPTIONAL_TOOLS)}")
    if min(args.sizes) < 2:
        ap.error("--sizes: at least 2 hosts (a head and a worker)")

    ck_src = args.clusterkit or next((str(p) for p in DEFAULT_CKS if p.is_file()), str(DEFAULT_CKS[0]))
    if not (os.path.isfile(ck_src) and os.access(ck_src, os.X_OK)):
        raise BenchError(f"clusterkit: {ck_src} is missing; build it with `ninja -C {REPO}/build clusterkit_cli` "
                         "(or pass --clusterkit PATH)")
    ray_bin = Path(args.venv) / "bin" / "ray"
    if not ray_bin.exists():
        raise BenchError(f"{ray_bin} is missing: make the venv with scripts/install-serving.sh (or pass --venv)")
    for prog in ("ssh", "rsync", "ip", "stat"):
        if not shutil.which(prog):
            raise BenchError(f"{prog} is not on PATH (the launcher needs ssh and rsync)")
    ray_version = run([str(ray_bin), "--version"]).stdout.strip()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    started = time.time()
    stamp = dt.datetime.now(dt.timezone.utc)
    tmp = Path(tempfile.mkdtemp(prefix="ckrb-", dir="/tmp"))   # short: unix socket paths
    ck_sha = hashlib.sha256(Path(ck_src).read_bytes()).hexdigest()[:16]
    ck_mtime = dt.datetime.fromtimestamp(Path(ck_src).stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    ck = ck_src
    if not args.no_snapshot:
        shutil.copy2(ck_src, tmp / "clusterkit")
        ck = str(tmp / "clusterkit")
    lab = Lab(ck, args.lab_name, args.subnet, max(args.sizes))
    shell = bench = None
    results: dict = {"runs": [], "load_before": {}}
    lab_started = False
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    raw_dir = OUT_DIR / f"ray-{stamp.strftime('%Y%m%dT%H%M%SZ')}-logs"
    try:
        lab_started = True
        lab.up()
        shell = Shell(lab, tmp)
        prepare_hosts(shell, lab.hosts, args.venv.rstrip("/"))
        bench = Bench(args, ck, lab, shell, tmp)
        bench.ensure_clean(max(args.sizes), "before the first run")
        if args.check_v2 > 0:
            results["autoscaler_v2_check"] = check_v2(bench, args.check_v2)

        for n in args.sizes:
            la = wait_for_load(args, f"N={n}")
            results["load_before"][str(n)] = la
            log(f"N={n}: {args.rounds} rounds, load {la}")
            if args.calibrate:
                for overlap in (False, True):
                    results.setdefault("by_hand", []).append(calibrate(bench, n, overlap))
            for r in range(args.rounds):
                order = tools[r % len(tools):] + tools[:r % len(tools)]
                for tool in order:
                    bench.ensure_clean(n, f"before {tool} up")
                    bench.make_cold()
                    time.sleep(args.settle)
                    up = bench.up(tool, n, r)
                    up.update({"tool": tool, "n": n, "round": r, "op": "up"})
                    results["runs"].append(up)
                    extra = ""
                    if tool == "clusterkit" and "breakdown" in up:
                        extra = f", overhead {up['breakdown']['overhead_s']:.2f} s"
                    if up.get("ray_ready_s") is not None:
                        log(f"  N={n} r{r + 1} {tool:10s} up:   {up['ready_s']:.2f} s to every node+GPU "
                            f"(command {up['wall_s']:.2f} s{extra}; load {up['load1']:.2f})")
                    else:
                        log(f"  N={n} r{r + 1} {tool:10s} up FAILED (rc {up['rc']}, {up['wall_s']:.1f} s): "
                            f"{up.get('error', '')[:800]}")
                    bench.make_cold()
                    time.sleep(args.settle)
                    down = bench.down(tool, n, r)
                    down.update({"tool": tool, "n": n, "round": r, "op": "down"})
                    results["runs"].append(down)
                    left = (f"; LEFT {down['left_ray_count']} Ray processes on {','.join(down['left_ray'])}"
                            if down["left_ray_count"] else "; no Ray process left")
                    log(f"  N={n} r{r + 1} {tool:10s} down: {down['wall_s']:.2f} s (rc {down['rc']}{left}; "
                        f"load {down['load1']:.2f})")
                    # Whatever the tool left (Ray processes, ssh masters) is
                    # killed by pid inside its host before the next run.
                    bench.ensure_clean(n, "what the down left")
    except BaseException:
        log("stopped early: cleaning up; what was measured goes to a -partial.json")
        try:
            part = OUT_DIR / f"ray-{stamp.strftime('%Y%m%dT%H%M%SZ')}-partial.json"
            part.write_text(json.dumps({"date_utc": stamp.isoformat(timespec="seconds"), "incomplete": True,
                                        **results}, indent=2, default=str) + "\n")
        except Exception:
            pass
        raise
    finally:
        if bench:
            try:
                bench.ensure_clean(max(args.sizes), "at the end")
            except Exception as e:
                log(f"WARNING: final cleanup: {e}")
            try:
                if (tmp / "logs").exists():
                    shutil.copytree(tmp / "logs", raw_dir, dirs_exist_ok=True)
                bench.make_cold()
            except Exception as e:
                log(f"WARNING: {e}")
            # The launcher's ControlPath folders on this machine (ours only).
            for d in Path("/tmp").glob("ray_ssh_*/*"):
                if d.name in bench.peer_ctl_dirs():
                    shutil.rmtree(d, ignore_errors=True)
                    try:
                        d.parent.rmdir()
                    except OSError:
                        pass
        if shell:
            shell.close()
        if lab_started and not args.keep_lab:
            lab.down()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(results, args.sizes, tools)
    doc = {
        "date_utc": stamp.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_at_end": loadavg(),
        "duration_s": round(time.time() - started, 1),
        "clusterkit": {"path": ck_src, "sha256_16": ck_sha, "mtime_utc": ck_mtime,
                       "git_head": run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip(),
                       "git_dirty": bool(run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"]).stdout.strip())},
        "ray": ray_version,
        "config": {"sizes": args.sizes, "rounds": args.rounds, "tools": tools, "settle_s": args.settle,
                   "poll_interval_s": args.poll_interval, "object_store_memory": OBJECT_STORE,
                   "gpus_per_host": GPUS_PER_HOST, "lab": {"name": args.lab_name, "subnet": args.subnet},
                   "raw_logs": str(raw_dir)},
        "summary": summary,
        **results,
    }
    path = Path(args.json) if args.json else OUT_DIR / f"ray-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown(doc))
    print(render(doc))
    print(f"\nJSON: {path}\nmarkdown: {path.with_suffix('.md')}\ncommand output of every run: {raw_dir}\n"
          f"full run took {doc['duration_s']:.0f} s")
    return 0 if all(v["pass"] for v in summary["verdicts"]) else 1


# --------------------------------------------------------------------------
# Reporting

def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(results, sizes, tools) -> dict:
    rows = []
    by = {}
    for n in sizes:
        for tool in tools:
            ups = [r for r in results["runs"] if r["n"] == n and r["tool"] == tool and r["op"] == "up"]
            downs = [r for r in results["runs"] if r["n"] == n and r["tool"] == tool and r["op"] == "down"]
            if not ups:
                continue
            ok = [r for r in ups if r.get("ok")]
            ready = [r["ready_s"] for r in ok]
            row = {"n": n, "tool": tool, "rounds": len(ups), "up_ok": len(ok),
                   "up_median_s": _med(ready), "up_min_s": min(ready) if ready else None,
                   "up_max_s": max(ready) if ready else None,
                   "command_median_s": _med([r["wall_s"] for r in ok]),
                   "down_median_s": _med([r["wall_s"] for r in downs if r.get("ok")]),
                   "down_min_s": min((r["wall_s"] for r in downs if r.get("ok")), default=None),
                   "down_max_s": max((r["wall_s"] for r in downs if r.get("ok")), default=None),
                   "down_left_ray_median": _med([r["left_ray_count"] for r in downs]),
                   "down_clean": sum(1 for r in downs if r.get("clean")),
                   "load1_mean": statistics.mean(r["load1"] for r in ups + downs)}
            if tool == "clusterkit":
                bd = [r["breakdown"] for r in ok if "breakdown" in r]
                for k in ("overhead_s", "head_ray_start_s", "slowest_worker_ray_start_s", "ray_report_wait_s",
                          "before_head_start_s", "head_done_to_last_worker_start_s", "after_ray_s", "ready_to_exit_s",
                          "ck_probe_s", "head_exit_and_return_s", "last_worker_exit_and_return_s",
                          "dispatch_to_last_worker_s", "status_poll_to_exit_s", "overhead_without_ray_exits_s"):
                    row[k] = _med([b.get(k) for b in bd])
                row["overhead_max_s"] = max((b["overhead_s"] for b in bd), default=None)
            else:
                row["ray_up_exit_median_s"] = _med([r["wall_s"] for r in ok])
                row["head_ray_start_cmd_s"] = _med([r.get("head_ray_start_cmd_s") for r in ok])
                row["first_worker_updater_s"] = _med([r.get("first_worker_updater_s") for r in ok])
                row["slowest_worker_ray_start_cmd_s"] = _med([r.get("slowest_worker_ray_start_cmd_s") for r in ok])
            by[(n, tool)] = row
            rows.append(row)
    for row in rows:
        ref = by.get((row["n"], "ray"))
        row["up_x_ray"] = row["up_median_s"] / ref["up_median_s"] if ref and row["up_median_s"] and ref["up_median_s"] else None
        row["down_x_ray"] = (row["down_median_s"] / ref["down_median_s"]
                             if ref and row["down_median_s"] and ref["down_median_s"] else None)
    verdicts = []
    for n in sizes:
        ck, ray = by.get((n, "clusterkit")), by.get((n, "ray"))
        if ck and ray and ck["up_median_s"] and ray["up_median_s"]:
            ratio = ck["up_median_s"] / ray["up_median_s"]
            verdicts.append({"n": n, "what": "up", "target": f"<= {TARGET_UP_RATIO}x ray up", "value": ratio,
                             "ratio_of_max_to_min": ck["up_max_s"] / ray["up_min_s"], "pass": ratio <= TARGET_UP_RATIO})
        elif ck:
            verdicts.append({"n": n, "what": "up", "target": f"<= {TARGET_UP_RATIO}x ray up", "value": None,
                             "pass": False, "note": "a tool did not bring the cluster up"})
        if ck and n == 8 and ck.get("overhead_s") is not None:
            verdicts.append({"n": n, "what": "overhead", "target": f"< {TARGET_OVERHEAD_S} s", "value": ck["overhead_s"],
                             "pass": ck["overhead_s"] < TARGET_OVERHEAD_S})
    return {"rows": rows, "verdicts": verdicts}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


COLUMNS = [  # header, key, format
    ("N", "n", "d"), ("tool", "tool", "s"), ("ok", "up_ok", "d"), ("up s (median)", "up_median_s", ".2f"),
    ("min", "up_min_s", ".2f"), ("max", "up_max_s", ".2f"), ("x ray", "up_x_ray", ".3f"),
    ("down s", "down_median_s", ".2f"), ("down x ray", "down_x_ray", ".3f"),
    ("Ray procs left after down", "down_left_ray_median", "g"),
    ("ck overhead s", "overhead_s", ".2f"), ("load1", "load1_mean", ".2f"),
]


def by_hand_line(c) -> str:
    return (f"N={c['n']} by hand ({'workers when the GCS listens' if c['overlap'] else 'head, then workers'}): every node "
            f"and GPU at {_fmt(c['ready_s'], '.2f')} s; head's ray start {c['head']['process_s']:.2f} s"
            + (f" (GCS listening at {c['gcs_listening_s']:.2f} s)" if c.get("gcs_listening_s") is not None else "")
            + f", slowest worker's {c['slowest_worker_process_s']:.2f} s; each exits "
            f"{1000 * statistics.median(c['exit_after_last_line_s']):.0f} ms (median) after its last log line")


def render(doc) -> str:
    mach = doc["machine"]
    rows = [[h for h, _, _ in COLUMNS]] + [[_fmt(r.get(k), f) for _, k, f in COLUMNS] for r in doc["summary"]["rows"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"\nRay cluster up/down, {doc['date_utc']}, {mach['nproc']} cores {mach['cpu_model']}, "
             f"{mach['mem_gib']} GiB, {doc['ray']}"]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i != 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("")
    for r in doc["summary"]["rows"]:
        if r["tool"] == "clusterkit" and r.get("overhead_s") is not None:
            lines.append(f"N={r['n']} clusterkit overhead {r['overhead_s']:.2f} s (medians of each part): before the head's "
                         f"ray start {r['before_head_start_s']:.2f} s (probe {r['ck_probe_s']:.2f}); waiting for the head's "
                         f"`ray start` to exit after its last line and return {r['head_exit_and_return_s']:.2f} s; starting "
                         f"the workers {r['dispatch_to_last_worker_s']:.2f} s; waiting for the last worker's `ray start` to "
                         f"exit and return {r['last_worker_exit_and_return_s']:.2f} s (Ray already reported every node "
                         f"{r['ready_to_exit_s']:.2f} s before clusterkit exited); status poll to exit "
                         f"{r['status_poll_to_exit_s']:.2f} s; without the two waits for `ray start` to exit: "
                         f"{r['overhead_without_ray_exits_s']:.2f} s")
            lines.append(f"N={r['n']} clusterkit up, medians: head ray start {r['head_ray_start_s']:.2f} s + slowest worker "
                         f"ray start {r['slowest_worker_ray_start_s']:.2f} s + Ray reporting {r['ray_report_wait_s']:.2f} s; "
                         f"overhead {r['overhead_s']:.2f} s = before the head's ray start {r['before_head_start_s']:.2f} s "
                         f"(probe {r['ck_probe_s']:.2f}) + head done -> last worker start "
                         f"{r['head_done_to_last_worker_start_s']:.2f} s + last ray start line -> exit {r['after_ray_s']:.2f} s (+ skew)")
        elif r["tool"] != "clusterkit" and r.get("up_median_s") is not None:
            lines.append(f"N={r['n']} {r['tool']} up, medians: `ray up` returns at {_fmt(r.get('ray_up_exit_median_s'), '.2f')} s "
                         f"(head's ray start command {_fmt(r.get('head_ray_start_cmd_s'), '.2f')} s); the autoscaler starts "
                         f"the first worker's updater at {_fmt(r.get('first_worker_updater_s'), '.2f')} s; slowest worker's "
                         f"ray start command {_fmt(r.get('slowest_worker_ray_start_cmd_s'), '.2f')} s")
    for c in doc.get("by_hand", []):
        lines.append(by_hand_line(c))
    lines.append("")
    for v in doc["summary"]["verdicts"]:
        val = "-" if v["value"] is None else (f"{v['value']:.3f}x" if v["what"] == "up" else f"{v['value']:.2f} s")
        lines.append(f"N={v['n']:<2} clusterkit {v['what']}: {val} (target {v['target']})  "
                     f"{'PASS' if v['pass'] else 'FAIL'}{' ' + v.get('note', '') if v.get('note') else ''}")
    if doc.get("autoscaler_v2_check"):
        c = doc["autoscaler_v2_check"]
        lines.append(f"launcher defaults (autoscaler v2), 2 hosts: worker "
                     + (f"joined after {c['worker_joined_after_s']:.1f} s" if c["worker_joined_after_s"]
                        else f"did NOT join within {c['waited_s']:.0f} s after `ray up` returned"))
    return "\n".join(lines)


def markdown(doc) -> str:
    mach = doc["machine"]
    machine = f"{mach['nproc']} cores {mach['cpu_model']}, {mach['mem_gib']} GiB"
    date = doc["date_utc"].replace("+00:00", "Z")
    heads = ["date (UTC)", "machine"] + [h for h, _, _ in COLUMNS]
    out = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for r in doc["summary"]["rows"]:
        out.append("| " + " | ".join([date, machine] + [_fmt(r.get(k), f) for _, k, f in COLUMNS]) + " |")
    out.append("")
    for c in doc.get("by_hand", []):
        out.append("- " + by_hand_line(c))
    for v in doc["summary"]["verdicts"]:
        val = "-" if v["value"] is None else (f"{v['value']:.3f}x" if v["what"] == "up" else f"{v['value']:.2f} s")
        out.append(f"- N={v['n']} clusterkit {v['what']}: {val}, target {v['target']}: {'PASS' if v['pass'] else 'FAIL'}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
