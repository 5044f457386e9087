#!/usr/bin/env python3
"""Fan-out benchmark: `true` on N lab hosts with clusterkit, pdsh, parallel-ssh
and `ansible -m raw`, cold and warm, side by side in one run.

Python 3 standard library only. Needs root (the lab is network namespaces).
See bench/fanout/README.md for what is measured and how.

    python3 bench/fanout/run.py                 # full run: N=16 (5 reps) and N=64 (3 reps)
    python3 bench/fanout/run.py --sizes 16 --reps 3
    python3 bench/fanout/run.py --help
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
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
DEFAULT_CK = REPO / "build" / "clusterkit"
DEFAULT_VENV = Path("/tmp/ck-bench-venv")
LAB_NAME = "bench"
LAB_SUBNET = "10.88.10"
LAB_HOSTS = 64
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

TOOLS = ["clusterkit", "pdsh", "parallel-ssh", "ansible", "ssh-mux", "ck-ssh-setsid"]
# ssh-mux: OpenSSH's own floor, N `ssh host true` at once over masters that
#   are already up (warm only).
# ck-ssh-setsid: diagnostic, not a target. clusterkit with `ssh` on PATH
#   replaced by `exec setsid ssh "$@"`, so that each ssh client runs in a
#   session of its own, as pdsh's and parallel-ssh's do. With the kernel's
#   autogroup scheduling on (/proc/sys/kernel/sched_autogroup_enabled), each
#   session is one scheduling group, which changes how much CPU the clients
#   get when the machine is busy.
# Targets from the issue (clusterkit vs pdsh, median wall time).
TARGET_WARM = 0.15
TARGET_COLD = 1.0


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
    ssh_v = run(["ssh", "-V"]).stderr.strip()
    try:
        autogroup = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip()
    except OSError:
        autogroup = None
    return {
        "sched_autogroup_enabled": autogroup,
        "cpus": os.cpu_count(),
        "nproc": int(run(["nproc"]).stdout.strip() or 0),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 1048576, 1),
        "kernel": platform.release(),
        "os": os_name,
        "openssh": ssh_v,
    }


# --------------------------------------------------------------------------
# Tools: presence checks and install hints

def check_tools(args) -> dict:
    """Returns {tool: path or None}; prints how to install what is missing."""
    found: dict[str, str | None] = {}
    problems = []
    ck = Path(args.clusterkit)
    if ck.is_file() and os.access(ck, os.X_OK):
        found["clusterkit"] = str(ck)
    else:
        found["clusterkit"] = None
        problems.append(f"clusterkit: {ck} is missing; build it with `ninja -C {REPO}/build clusterkit_cli` "
                        "(or pass --clusterkit PATH)")
    for tool, pkg in (("ssh", "openssh-client"), ("pdsh", "pdsh"), ("parallel-ssh", "pssh")):
        p = shutil.which(tool)
        found[tool] = p
        if not p:
            problems.append(f"{tool}: not on PATH; install it with `apt-get install {pkg}`")
    venv = Path(args.venv)
    ansible = venv / "bin" / "ansible"
    if not ansible.exists() and not args.no_ansible:
        if args.no_install:
            problems.append(f"ansible: {ansible} is missing; create it with `{sys.executable} -m venv {venv} && "
                            f"{venv}/bin/pip install ansible-core` (or run without --no-install, or pass --no-ansible)")
        else:
            log(f"ansible: not found; installing ansible-core into {venv} (pip, PyPI)")
            r = run([sys.executable, "-m", "venv", str(venv)])
            if r.returncode == 0:
                r = run([str(venv / "bin" / "pip"), "install", "-q", "ansible-core"])
            if r.returncode != 0 or not ansible.exists():
                problems.append(f"ansible: installing into {venv} failed:\n{r.stderr[-2000:]}\n"
                                f"  install it by hand: `{sys.executable} -m venv {venv} && "
                                f"{venv}/bin/pip install ansible-core`, or pass --no-ansible")
    found["ansible"] = str(ansible) if ansible.exists() and not args.no_ansible else None
    for p in problems:
        print(f"MISSING  {p}", file=sys.stderr)
    if not found["clusterkit"] or not found["ssh"] or not found["pdsh"]:
        raise BenchError("clusterkit, ssh and pdsh are required (pdsh is the reference for every ratio)")
    return found


def tool_versions(found) -> dict:
    v = {}
    if found.get("pdsh"):
        v["pdsh"] = (run([found["pdsh"], "-V"]).stdout + run([found["pdsh"], "-V"]).stderr).split("\n")[0].strip()
    if found.get("parallel-ssh"):
        v["parallel-ssh"] = run([found["parallel-ssh"], "--version"]).stdout.strip()
    if found.get("ansible"):
        v["ansible"] = run([found["ansible"], "--version"]).stdout.split("\n")[0].strip()
    return v


# --------------------------------------------------------------------------
# Lab

class Lab:
    def __init__(self, ck: str, fallback: str | None = None):
        self.ck = ck
        self.fallback = fallback  # the original binary, should the copy be gone
        self.inventory = ""
        self.identity = ""
        self.known_hosts = ""
        self.hosts: list[tuple[str, str]] = []  # (name, address), h1..hN order

    def up(self):
        log(f"lab up: {LAB_HOSTS} hosts, name {LAB_NAME}, subnet {LAB_SUBNET}")
        r = run([self.ck, "lab", "up", "--name", LAB_NAME, "--hosts", str(LAB_HOSTS), "--subnet", LAB_SUBNET])
        m = re.search(r"^inventory:\s*(\S+)", r.stdout, re.M)
        if r.returncode != 0 or not m:
            raise BenchError(f"`clusterkit lab up` failed (rc {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        self.inventory = m.group(1)
        text = Path(self.inventory).read_text()
        self.identity = re.search(r"identity_file:\s*(\S+)", text).group(1)
        self.known_hosts = re.search(r"known_hosts_file:\s*(\S+)", text).group(1)
        self.hosts = re.findall(r"^\s+(h\d+):\s*\{address:\s*([0-9.]+)", text, re.M)
        self.hosts.sort(key=lambda h: int(h[0][1:]))
        if len(self.hosts) < LAB_HOSTS:
            raise BenchError(f"lab inventory {self.inventory} lists {len(self.hosts)} hosts, expected {LAB_HOSTS}")

    def down(self):
        log("lab down")
        for ck in dict.fromkeys(c for c in (self.ck, self.fallback) if c):
            try:
                r = run([ck, "lab", "down", "--name", LAB_NAME])
            except OSError as e:
                log(f"WARNING: cannot run {ck}: {e}")
                continue
            if r.returncode == 0:
                return
            log(f"WARNING: `{ck} lab down --name {LAB_NAME}` failed: {r.stdout[-500:]}{r.stderr[-500:]}")
        log(f"WARNING: the lab may still be up: run `clusterkit lab down --name {LAB_NAME}`")


# --------------------------------------------------------------------------
# Memory: peak RSS of a process tree plus the ssh masters a tool leaves behind

def _proc_stat(pid: str):
    """(ppid, comm, rss_kb, starttime) or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read().decode("ascii", "replace")
    except OSError:
        return None
    lp, rp = s.find("("), s.rfind(")")
    fields = s[rp + 2:].split()
    # fields[0] is field 3 (state); ppid is field 4, starttime 22, rss 24.
    return int(fields[1]), s[lp + 1:rp], int(fields[21]) * PAGE_KB, fields[19]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _tcp_remotes() -> dict[str, str]:
    """socket inode -> remote IPv4 address, from /proc/net/tcp."""
    out = {}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                rem = p[2].split(":")[0]
                ip = ".".join(str(int(rem[i:i + 2], 16)) for i in (6, 4, 2, 0))
                out[p[9]] = ip
    except OSError:
        pass
    return out


def _socket_inodes(pid: str) -> list[str]:
    res = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                t = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if t.startswith("socket:["):
                res.append(t[8:-1])
    except OSError:
        pass
    return res


class MasterFinder:
    """Finds backgrounded OpenSSH masters whose control socket sits in
    `control_dir` and whose TCP connection goes to one of `addrs` (the
    clusterkit control dir is shared with other labs on this machine).
    A master made by ControlPersist renames itself `ssh: <ControlPath> [mux]`;
    one made by `ssh -M -N -f` keeps its argv. Read-only: never signals."""

    def __init__(self, control_dir: str, addrs):
        self.prefix = "ssh: " + control_dir.rstrip("/") + "/"
        self.prefix2 = "ControlPath=" + control_dir.rstrip("/") + "/"
        self.addrs = set(addrs)
        self.cache: dict[tuple[str, str], bool] = {}

    def is_master(self, pid: str, comm: str, start: str) -> bool:
        if comm != "ssh":
            return False
        key = (pid, start)
        if key in self.cache:
            return self.cache[key]
        cmd = _cmdline(pid)
        ok = cmd.startswith(self.prefix) or (self.prefix2 in cmd and " -N" in cmd)
        if ok:
            remotes = _tcp_remotes()
            ok = any(remotes.get(ino) in self.addrs for ino in _socket_inodes(pid))
        if cmd:  # unreadable: maybe not yet exec'd; decide next time
            self.cache[key] = ok
        return ok


def _pss_kb(pid) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def snapshot(root_pid: int | None, finder: MasterFinder | None, pss: bool = False):
    """(tree_kb, masters_kb, n_tree, n_masters, then tree_pss_kb and
    masters_pss_kb if `pss`) right now: RSS (and PSS) of the process tree
    under root_pid and of the live masters `finder` recognises."""
    procs = {}
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = _proc_stat(d)
        if st is None:
            continue
        procs[int(d)] = st
        children.setdefault(st[0], []).append(int(d))
    tree = set()
    if root_pid is not None and root_pid in procs:
        stack = [root_pid]
        while stack:
            p = stack.pop()
            tree.add(p)
            stack.extend(children.get(p, ()))
    masters = []
    if finder:
        masters = [p for p, (ppid, comm, rss, start) in procs.items()
                   if p not in tree and finder.is_master(str(p), comm, start)]
    res = (sum(procs[p][2] for p in tree), sum(procs[p][2] for p in masters), len(tree), len(masters))
    if pss:
        return res + (sum(_pss_kb(p) for p in tree), sum(_pss_kb(p) for p in masters))
    return res


def masters_cpu_ns(finder: MasterFinder | None) -> dict:
    """(pid, starttime) -> CPU ns so far, for each live master `finder`
    recognises (/proc/PID/schedstat: ns, where /proc/PID/stat rounds to
    10 ms ticks; a master is one thread)."""
    res = {}
    if not finder:
        return res
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _proc_stat(d)
            if st and finder.is_master(d, st[1], st[3]):
                try:
                    with open(f"/proc/{d}/schedstat") as f:
                        res[(d, st[3])] = int(f.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
    return res


class Sampler(threading.Thread):
    """Polls the tool's process tree (and its masters) until stopped; keeps
    the peak of the RSS sum. (No PSS here: reading smaps_rollup for every
    process of every sample is too slow, and read after the fact it misses
    processes that have exited.)"""

    def __init__(self, root_pid: int, finder: MasterFinder | None, period: float):
        super().__init__(daemon=True)
        self.root_pid, self.finder, self.period = root_pid, finder, period
        self.stop = threading.Event()
        self.peak_kb = self.peak_tree_kb = self.peak_procs = self.samples = 0

    def run(self):
        while not self.stop.is_set():
            t, m, nt, nm = snapshot(self.root_pid, self.finder)
            self.samples += 1
            if t + m > self.peak_kb:
                self.peak_kb, self.peak_tree_kb, self.peak_procs = t + m, t, nt + nm
            self.stop.wait(self.period)


# --------------------------------------------------------------------------
# The bench

def control_dir_of_clusterkit() -> str:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return xdg + "/clusterkit"
    return f"/tmp/clusterkit-{os.getuid()}"


class Bench:
    def __init__(self, args, found, lab: Lab, tmp: Path):
        self.args, self.found, self.lab, self.tmp = args, found, lab, tmp
        self.ck = found["clusterkit"]
        self.ssh_opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                         "-o", f"UserKnownHostsFile={lab.known_hosts}",
                         "-i", lab.identity, "-o", "IdentitiesOnly=yes"]
        self.ansible_cp = tmp / "acp"       # ANSIBLE_SSH_CONTROL_PATH_DIR
        self.mux_dir = tmp / "mux"          # masters for the raw OpenSSH floor
        self.ansible_cp.mkdir()
        self.mux_dir.mkdir()
        self.setsid_dir = tmp / "setsid-ssh"
        self.setsid_dir.mkdir()
        wrapper = self.setsid_dir / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("setsid") or "setsid"} {found["ssh"]} "$@"\n')
        wrapper.chmod(0o755)
        (tmp / "ansible-home").mkdir()
        (tmp / "ansible.cfg").write_text("[defaults]\n")  # no user/system config leaks in
        self.finders: dict[tuple[str, int], MasterFinder] = {}
        self.mux_up: set[str] = set()
        self.base_env = dict(os.environ)
        for n in args.sizes:
            self._write_ansible_inventory(n)

    def finder(self, tool: str, n: int) -> MasterFinder | None:
        """Masters this tool leaves up to the first n hosts."""
        dirs = {"clusterkit": control_dir_of_clusterkit(), "ck-ssh-setsid": control_dir_of_clusterkit(),
                "ansible": str(self.ansible_cp),
                "ssh-mux": str(self.mux_dir)}
        if tool not in dirs:
            return None
        if (tool, n) not in self.finders:
            self.finders[(tool, n)] = MasterFinder(dirs[tool], [a for _, a in self.hosts(n)])
        return self.finders[(tool, n)]

    def wait_masters_gone(self, tool: str):
        f = self.finder(tool, LAB_HOSTS)
        deadline = time.time() + 3
        while True:
            left = snapshot(None, f)[3]
            if not left:
                return
            if time.time() > deadline:
                log(f"WARNING: {left} {tool} masters to the bench lab still up 3 s after closing them")
                return
            time.sleep(0.05)

    # ---- per-tool commands
    def hosts(self, n):
        return self.lab.hosts[:n]

    def _write_ansible_inventory(self, n):
        lines = ["[lab]"] + [f"{h} ansible_host={a}" for h, a in self.hosts(n)]
        common = " ".join(self.ssh_opts[:6] + ["-o", "IdentitiesOnly=yes"])
        lines += ["", "[all:vars]", "ansible_user=root",
                  f"ansible_ssh_private_key_file={self.lab.identity}",
                  f"ansible_ssh_common_args='{common}'", ""]
        (self.tmp / f"ansible-{n}.ini").write_text("\n".join(lines))

    def command(self, tool: str, n: int):
        """(argv, env) for one timed run of `true` on the first n hosts."""
        env = dict(self.base_env)
        names = ",".join(h for h, _ in self.hosts(n))
        addrs = [a for _, a in self.hosts(n)]
        if tool in ("clusterkit", "ck-ssh-setsid"):
            if tool == "ck-ssh-setsid":
                env["PATH"] = f"{self.setsid_dir}:{env.get('PATH', '/usr/bin:/bin')}"
            return [self.ck, "-i", self.lab.inventory, "exec", "-g", names, "-f", str(n), "--", "true"], env
        if tool == "pdsh":
            env["PDSH_RCMD_TYPE"] = "ssh"
            env["PDSH_SSH_ARGS"] = " ".join(self.ssh_opts) + " -l%u %h"
            return [self.found["pdsh"], "-S", "-R", "ssh", "-f", str(n), "-l", "root", "-w", ",".join(addrs), "true"], env
        if tool == "parallel-ssh":
            return [self.found["parallel-ssh"], "-p", str(n), "-l", "root", "-H", " ".join(addrs),
                    "-x", " ".join(self.ssh_opts), "true"], env
        if tool == "ansible":
            env.update({
                "ANSIBLE_CONFIG": str(self.tmp / "ansible.cfg"),
                "ANSIBLE_HOME": str(self.tmp / "ansible-home"),
                "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-home" / "tmp"),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.ansible_cp),
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_NOCOLOR": "1",
            })
            return [self.found["ansible"], "all", "-i", str(self.tmp / f"ansible-{n}.ini"),
                    "-m", "raw", "-a", "true", "-f", str(n)], env
        raise ValueError(tool)

    # ---- cold preparation
    def make_cold(self, tool: str):
        if tool in ("clusterkit", "ck-ssh-setsid"):
            tool = "clusterkit"
            r = run([self.ck, "-i", self.lab.inventory, "disconnect"])
            if r.returncode != 0:
                raise BenchError(f"clusterkit disconnect failed: {r.stderr[-1000:]}")
            self.wait_masters_gone(tool)
        elif tool == "ansible":
            for sock in sorted(self.ansible_cp.iterdir()):
                run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "ansible-master"])
                try:  # the exiting master may remove it meanwhile
                    if not sock.is_dir():
                        sock.unlink(missing_ok=True)
                except OSError:
                    pass
            self.wait_masters_gone(tool)

    def mux_open(self, n):
        """Masters for the raw OpenSSH floor (untimed)."""
        procs = []
        for h, a in self.hosts(n):
            if h in self.mux_up:
                continue
            procs.append((h, subprocess.Popen(
                ["ssh", *self.ssh_opts, "-l", "root", "-o", "ControlMaster=yes",
                 "-o", f"ControlPath={self.mux_dir}/{h}", "-o", "ControlPersist=yes", "-N", "-f", a],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        for h, p in procs:
            if p.wait() != 0:
                raise BenchError(f"ssh master to {h} failed: {p.stderr.read().decode()[-500:]}")
            self.mux_up.add(h)

    def mux_close_all(self):
        for sock in sorted(self.mux_dir.iterdir()):
            run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "mux-master"])
        self.mux_up.clear()

    def time_mux(self, n) -> tuple[float, int]:
        """N `ssh host true` at once over masters already up: OpenSSH's floor.
        Each client gets a session of its own, as pdsh's do (see README)."""
        t0 = time.perf_counter()
        ps = [subprocess.Popen(["ssh", "-o", f"ControlPath={self.mux_dir}/{h}", "-o", "ControlMaster=no",
                                "-T", a, "true"], stdin=subprocess.DEVNULL, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for h, a in self.hosts(n)]
        try:
            bad = sum(1 for p in ps if p.wait() != 0)
        except BaseException:
            for p in ps:
                stop_child(p)
            raise
        return time.perf_counter() - t0, bad

    # ---- one timed run
    def time_one(self, tool: str, n: int, memory: bool = False) -> dict:
        """One timed run. Besides wall time it counts the client side's CPU
        seconds: the tool and every descendant it reaped (rusage), plus what
        the backgrounded ssh masters to these hosts spent meanwhile. (The
        lab's sshd side runs on this machine too but is not counted: live
        sessions only report CPU in 10 ms ticks, too coarse per host.)"""
        la = loadavg()
        finder = self.finder(tool, n)
        m0 = masters_cpu_ns(finder)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler = None
        out = self.tmp / "last.out"
        if tool == "ssh-mux":
            wall, bad = self.time_mux(n)
            rc = 1 if bad else 0
        else:
            argv, env = self.command(tool, n)
            with open(out, "wb") as f:
                t0 = time.perf_counter()
                p = subprocess.Popen(argv, env=env, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
                if memory:
                    sampler = Sampler(p.pid, finder, self.args.sample_ms / 1000)
                    sampler.start()
                try:
                    rc = p.wait()
                except BaseException:  # interrupted: stop the tool we started, by its pid
                    stop_child(p)
                    raise
                wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        m1 = masters_cpu_ns(finder)
        client = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) + \
            sum(v - m0.get(k, 0) for k, v in m1.items()) / 1e9
        rec = {"wall_s": wall, "rc": rc, "load1": la[0], "cpu_client_s": round(client, 4)}
        if sampler:
            sampler.stop.set()
            sampler.join()
            after = snapshot(None, finder, pss=True)
            rec.update({"peak_kb": sampler.peak_kb, "peak_tree_kb": sampler.peak_tree_kb,
                        "peak_procs": sampler.peak_procs, "samples": sampler.samples,
                        "resident_after_kb": after[1], "resident_after_pss_kb": after[5],
                        "masters_after": after[3]})
        if rc != 0:
            tail = "" if tool == "ssh-mux" else out.read_text(errors="replace")[-1500:]
            raise BenchError(f"{tool} on {n} hosts failed (rc {rc}):\n{tail}")
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


def modes_of(tool):
    return ["warm"] if tool == "ssh-mux" else ["cold", "warm"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusterkit", default=str(DEFAULT_CK), help="clusterkit CLI (default: build/clusterkit)")
    ap.add_argument("--no-snapshot", action="store_true",
                    help="run the clusterkit binary in place instead of a private copy "
                         "(a copy keeps a concurrent rebuild from swapping it mid-run)")
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[16, 64],
                    help="host counts, comma list (default 16,64; at most 64)")
    ap.add_argument("--reps", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="repetitions per size, comma list matching --sizes (default 5 for N<=16, 3 above)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list out of {','.join(TOOLS)}")
    ap.add_argument("--no-ansible", action="store_true", help="leave ansible out")
    ap.add_argument("--no-install", action="store_true", help="never pip-install ansible-core")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="venv holding ansible-core (created on demand)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory pass")
    ap.add_argument("--sample-ms", type=float, default=10,
                    help="pause between memory samples (default 10 ms; one /proc scan takes ~4 ms more)")
    ap.add_argument("--mem-reps", type=int, default=2, help="memory runs per tool and mode; the highest peak counts")
    ap.add_argument("--settle", type=float, default=0.5, help="pause before each timed run, seconds")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for the 1-min load average to drop below this")
    ap.add_argument("--load-wait", type=float, default=300, help="longest wait for the load, seconds (default 300)")
    ap.add_argument("--keep-lab", action="store_true", help="leave the bench lab up at the end")
    ap.add_argument("--json", default=None, help="JSON output path (default bench/out/fanout-<UTC time>.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("run.py needs root (the lab is network namespaces)", file=sys.stderr)
        return 2
    if any(n < 1 or n > LAB_HOSTS for n in args.sizes):
        ap.error(f"--sizes must lie in 1..{LAB_HOSTS}")
    if args.reps is None:
        args.reps = [5 if n <= 16 else 3 for n in args.sizes]
    if len(args.reps) != len(args.sizes):
        ap.error("--reps needs one count per size")
    tools = [t for t in args.tools.split(",") if t]
    if args.no_ansible and "ansible" in tools:
        tools.remove("ansible")
    if "ansible" not in tools:
        args.no_ansible = True

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    started = time.time()
    stamp = dt.datetime.now(dt.timezone.utc)
    found = check_tools(args)
    if "ck-ssh-setsid" in tools and not shutil.which("setsid"):
        log("setsid (util-linux) is missing: ck-ssh-setsid left out")
        tools.remove("ck-ssh-setsid")
    for t in list(tools):
        if t in ("pdsh", "parallel-ssh", "ansible") and not found.get(t):
            log(f"{t} is missing: left out")
            tools.remove(t)
    if "pdsh" not in tools:
        raise BenchError("pdsh must be among --tools: every ratio is against it")

    tmp = Path(tempfile.mkdtemp(prefix="ckb-", dir="/tmp"))  # short: unix socket paths max 107 bytes
    ck_src = found["clusterkit"]
    ck_sha = hashlib.sha256(Path(ck_src).read_bytes()).hexdigest()[:16]
    ck_mtime = dt.datetime.fromtimestamp(Path(ck_src).stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
    if not args.no_snapshot:
        shutil.copy2(ck_src, tmp / "clusterkit")
        found["clusterkit"] = str(tmp / "clusterkit")
    lab = Lab(found["clusterkit"], ck_src)
    bench = None
    # load_before: /proc/loadavg when each size started, after the wait. The
    # per-run load1 also counts this bench's own processes from the runs just
    # before (64 handshakes alone push it up by several).
    results: dict = {"runs": [], "memory": [], "load_before": {}}
    lab_started = False
    try:
        lab_started = True
        lab.up()
        bench = Bench(args, found, lab, tmp)
        nmax = max(args.sizes)

        # Smoke test: every tool once on the largest size (untimed), so a broken
        # setup fails before minutes of measuring.
        log(f"smoke test: each tool once on {nmax} hosts")
        for tool in tools:
            if tool == "ssh-mux":
                bench.mux_open(nmax)
            bench.time_one(tool, nmax)

        for n, reps in zip(args.sizes, args.reps):
            la = wait_for_load(args, f"N={n}")
            results.setdefault("load_before", {})[str(n)] = la
            log(f"N={n}: {reps} rounds, load {la}")
            if "ssh-mux" in tools:
                bench.mux_open(n)
            for r in range(reps):
                order = tools[r % len(tools):] + tools[:r % len(tools)]
                for tool in order:
                    for mode in modes_of(tool):
                        if mode == "cold":
                            bench.make_cold(tool)
                        time.sleep(args.settle)
                        rec = bench.time_one(tool, n)
                        rec.update({"tool": tool, "n": n, "mode": mode, "round": r})
                        results["runs"].append(rec)
                        log(f"  N={n} round {r + 1}/{reps} {tool:12s} {mode}: {rec['wall_s']:.3f} s, cpu "
                            f"client {rec['cpu_client_s']:.2f} s "
                            f"(load {rec['load1']:.2f})")

        if not args.no_memory:
            for n in args.sizes:
                # Not timed: no waiting for the load, it is only recorded.
                log(f"memory pass N={n} (sampling every {args.sample_ms:.0f} ms; these runs are not timed)")
                for tool in tools:
                    if tool in ("ssh-mux", "ck-ssh-setsid"):
                        continue
                    for mode in modes_of(tool):
                        recs = []
                        # Short runs give few samples: repeat them until the
                        # samples add up (at most 4 x --mem-reps runs).
                        while len(recs) < args.mem_reps or (
                                sum(x["samples"] for x in recs) < 40 and len(recs) < 4 * args.mem_reps):
                            if mode == "cold":
                                bench.make_cold(tool)
                            time.sleep(args.settle)
                            recs.append(bench.time_one(tool, n, memory=True))
                        rec = dict(max(recs, key=lambda x: x["peak_kb"]))
                        rec.update({"tool": tool, "n": n, "mode": mode, "peaks_kb": [x["peak_kb"] for x in recs]})
                        results["memory"].append(rec)
                        log(f"  N={n} {tool:12s} {mode}: peak RSS {rec['peak_kb'] / n:.0f} KB/host "
                            f"({rec['peak_procs']} procs; {len(recs)} runs, "
                            f"{sum(x['samples'] for x in recs)} samples), "
                            f"resident after {rec['resident_after_kb'] / n:.0f} KB/host")
    except BaseException:
        log("stopped early: cleaning up; what was measured goes to a -partial.json")
        try:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            part = OUT_DIR / f"fanout-{stamp.strftime('%Y%m%dT%H%M%SZ')}-partial.json"
            part.write_text(json.dumps({"date_utc": stamp.isoformat(timespec="seconds"), "incomplete": True,
                                        **results}, indent=2) + "\n")
        except Exception:
            pass
        raise
    finally:
        # Each step on its own: one failing must not skip the others. Taking
        # the lab down ends every connection to it anyway.
        if bench:
            for step in (lambda: bench.make_cold("clusterkit"), lambda: bench.make_cold("ansible"),
                         bench.mux_close_all):
                try:
                    step()
                except Exception as e:
                    log(f"WARNING: closing connections: {e}")
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
        "versions": tool_versions(found),
        "config": {"sizes": args.sizes, "reps": args.reps, "tools": tools, "settle_s": args.settle,
                   "sample_ms": args.sample_ms, "lab": {"name": LAB_NAME, "subnet": LAB_SUBNET, "hosts": LAB_HOSTS}},
        "summary": summary,
        **results,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = Path(args.json) if args.json else OUT_DIR / f"fanout-{stamp.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    path.with_suffix(".md").write_text(md)
    print(render(doc))
    print(f"\nJSON: {path}\nmarkdown rows: {path.with_suffix('.md')}\nfull run took {doc['duration_s']:.0f} s")
    return 0 if all(v["pass"] for v in summary["verdicts"]) else 1


# --------------------------------------------------------------------------
# Reporting

def summarize(results, sizes, tools) -> dict:
    rows = []
    med = {}
    for n in sizes:
        for tool in tools:
            for mode in modes_of(tool):
                rs = [r for r in results["runs"] if r["n"] == n and r["tool"] == tool and r["mode"] == mode]
                if not rs:
                    continue
                w = [r["wall_s"] for r in rs]
                m = next((x for x in results["memory"] if x["n"] == n and x["tool"] == tool and x["mode"] == mode), None)
                cl = [r["cpu_client_s"] for r in rs]
                row = {"n": n, "tool": tool, "mode": mode, "runs": len(w), "median_s": statistics.median(w),
                       "min_s": min(w), "max_s": max(w),
                       "load1_mean": statistics.mean(r["load1"] for r in rs),
                       "cpu_client_ms_per_host": round(1000 * statistics.median(cl) / n, 1),
                       "peak_kb_per_host": round(m["peak_kb"] / n) if m else None,
                       "resident_after_kb_per_host": round(m["resident_after_kb"] / n) if m else None,
                       "resident_after_pss_kb_per_host": round(m["resident_after_pss_kb"] / n) if m else None}
                med[(n, tool, mode)] = row
                rows.append(row)
    for row in rows:
        ref = med.get((row["n"], "pdsh", row["mode"]))
        row["x_pdsh"] = row["median_s"] / ref["median_s"] if ref else None
        row["x_pdsh_min"] = row["min_s"] / ref["min_s"] if ref else None
    verdicts = []
    for n in sizes:
        for mode, target in (("warm", TARGET_WARM), ("cold", TARGET_COLD)):
            ck, pd = med.get((n, "clusterkit", mode)), med.get((n, "pdsh", mode))
            if not ck or not pd:
                continue
            ratio = ck["median_s"] / pd["median_s"]
            # Noise note: do the run ranges overlap across the target?
            overlap = ck["min_s"] <= target * pd["max_s"] and ck["max_s"] >= target * pd["min_s"]
            verdicts.append({"n": n, "mode": mode, "target": target, "ratio": ratio,
                             "ratio_of_mins": ck["min_s"] / pd["min_s"], "pass": ratio <= target,
                             "ranges_overlap_target": overlap})
    return {"rows": rows, "verdicts": verdicts}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


COLUMNS = [  # header, key, format
    ("N", "n", "d"), ("tool", "tool", "s"), ("mode", "mode", "s"), ("runs", "runs", "d"),
    ("median s", "median_s", ".3f"), ("min s", "min_s", ".3f"), ("max s", "max_s", ".3f"),
    ("x pdsh", "x_pdsh", ".3f"), ("load1", "load1_mean", ".2f"),
    ("client CPU ms/host", "cpu_client_ms_per_host", ".1f"),
    ("peak RSS KB/host", "peak_kb_per_host", "d"),
    ("left RSS KB/host", "resident_after_kb_per_host", "d"), ("left PSS KB/host", "resident_after_pss_kb_per_host", "d"),
]


def render(doc) -> str:
    mach = doc["machine"]
    rows = [[h for h, _, _ in COLUMNS]] + [[_fmt(r[k], f) for _, k, f in COLUMNS] for r in doc["summary"]["rows"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [f"\nfan-out of `true`, {doc['date_utc']}, {mach['nproc']} cores {mach['cpu_model']}, "
             f"{mach['mem_gib']} GiB, {mach['openssh']}"]
    for r in rows:
        lines.append("  ".join(c.rjust(w) if i not in (1, 2) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append("")
    for v in doc["summary"]["verdicts"]:
        note = "" if v["pass"] or not v["ranges_overlap_target"] else "  (run ranges overlap the target: noise?)"
        lines.append(f"N={v['n']:<3} clusterkit {v['mode']}: {v['ratio']:.3f}x pdsh (min/min {v['ratio_of_mins']:.3f}x; "
                     f"target <= {v['target']}x)  {'PASS' if v['pass'] else 'FAIL'}{note}")
    return "\n".join(lines)


def markdown(doc) -> str:
    mach = doc["machine"]
    machine = f"{mach['nproc']} cores {mach['cpu_model']}, {mach['mem_gib']} GiB"
    date = doc["date_utc"].replace("+00:00", "Z")
    heads = ["date (UTC)", "machine"] + [h for h, _, _ in COLUMNS]
    out = ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]
    for r in doc["summary"]["rows"]:
        out.append("| " + " | ".join([date, machine] + [_fmt(r[k], f) for _, k, f in COLUMNS]) + " |")
    out.append("")
    for v in doc["summary"]["verdicts"]:
        out.append(f"- N={v['n']} clusterkit {v['mode']}: {v['ratio']:.3f}x pdsh (min/min {v['ratio_of_mins']:.3f}x), "
                   f"target <= {v['target']}x: {'PASS' if v['pass'] else 'FAIL'}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench failed: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
