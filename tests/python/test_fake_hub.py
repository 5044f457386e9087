"""tests/fixtures/fake_hub.py against the real hub CLIs (hf, modelscope).

Everything talks to a fake hub on 127.0.0.1 only. The CLIs are the pinned ones
scripts/install-deps.sh installs in a venv of their own (/opt/ck-hubcli/bin;
CLUSTERKIT_HUB_CLI_BIN names another folder); a test whose CLI is missing
fails and says so. tests/fixtures/download-progress holds what these versions
print. The tests of the server and of the test model need nothing but the
standard library.

huggingface_hub 2.x ships `hf` only: `huggingface-cli` is gone, so it is not
tested here (the library still finds and drives it on hosts with an older
huggingface_hub; its arguments are checked in tests/unit/test_model_store.cpp).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from components import hub_cli
from fake_hub_process import FakeHub as _FakeHubProcess, make_test_model  # noqa: E402
from waiting import wait_until

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"



REPO = "Qwen/Tiny2.5-Test"  # a dot in the name, as in Qwen2.5: ModelScope's old layout turns it into ___
TAG = "v0.1"
BIG = "Org/Big-Test"  # shards over 10 MiB: hf reads bodies in 10 MiB chunks
CLI_TIMEOUT = 60


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _tree_sums(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, skipping hidden folders (.cache/huggingface, .lock)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = _sha256(p)
    return out


@cache
def _cli(name: str) -> Path:
    """The pinned hub CLI `name`, checked to run and to be the hub CLI."""
    path = hub_cli(name)
    probe = {"hf": ["version"], "modelscope": ["--version"]}[name]
    try:
        p = subprocess.run([str(path), *probe], capture_output=True, text=True, timeout=30,
                           env={"PATH": f"{path.parent}:/usr/bin:/bin", "HOME": "/nonexistent",
                                "HF_HUB_DISABLE_UPDATE_CHECK": "1", "LANG": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"`{path} {' '.join(probe)}` did not run ({e}): run scripts/install-deps.sh", pytrace=False)
    text = p.stdout + p.stderr
    ok = ("modelscope" in text) if name == "modelscope" else p.returncode == 0 and any(c.isdigit() for c in text)
    if not ok:
        pytest.fail(f"{path} is not a working {name} CLI (`{' '.join(probe)}` said {text.strip()[:300]!r}): "
                    "run scripts/install-deps.sh", pytrace=False)
    return path


def _python_of(script: Path) -> str:
    """The interpreter a console script runs with (its shebang)."""
    first = script.read_bytes().split(b"\n", 1)[0].decode()
    return first[2:].strip().split()[0] if first.startswith("#!") else sys.executable


class FakeHub(_FakeHubProcess):
    """The shared helper, plus a check this file needs."""

    def unexpected(self) -> list[dict[str, Any]]:
        """Requests for paths the fake hub does not implement."""
        return [r for r in self.requests() if r["api"] == "none"]

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, headers=headers or {}, method=method)
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: nothing of the caller's (proxies, agent markers, tokens) leaks in."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",  # else hf asks PyPI once a day
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_COLOR": "1",
    }
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(env)
    env["PATH"] = f"{Path(argv[0]).parent}:{env['PATH']}"
    p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=CLI_TIMEOUT)
    # decoded by hand: text=True would turn the progress bars' \r into \n
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode("utf-8", "replace"),
                                       p.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("hub-root")
    sums = {
        REPO: make_test_model(root / REPO, total_mb=6, shards=3),
        f"{REPO}@{TAG}": make_test_model(root / f"{REPO}@{TAG}", total_mb=1, shards=1, seed=7),
        BIG: make_test_model(root / BIG, total_mb=24, shards=2, seed=1),
    }
    return root, sums


@pytest.fixture(scope="module")
def commits(hub_root: tuple[Path, dict[str, dict[str, str]]], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, str]:
    """{"Qwen/Tiny2.5-Test": main commit, "Qwen/Tiny2.5-Test@v0.1": tag commit, ...}"""
    root, _ = hub_root
    with FakeHub(root, tmp_path_factory.mktemp("commits")) as hub:
        status, _, body = hub.get("/_fakehub/repos")
    assert status == 200
    out = {}
    for repo_id, info in json.loads(body).items():
        for rev in info["revisions"]:
            key = repo_id if "main" in rev["names"] else f"{repo_id}@{rev['names'][0]}"
            out[key] = rev["commit"]
    return out


@pytest.fixture
def hf_exe() -> Path:
    return _cli("hf")


@pytest.fixture
def ms_exe() -> Path:
    return _cli("modelscope")


@pytest.fixture
def hub(hub_root: tuple[Path, dict[str, dict[str, str]]], tmp_path: Path) -> Iterator[FakeHub]:
    root, _ = hub_root
    with FakeHub(root, tmp_path) as h:
        yield h
        assert h.unexpected() == []


# ---------------------------------------------------------------------------
# the test model and the server alone (standard library only)
# ---------------------------------------------------------------------------
def test_test_model_is_real_safetensors(hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    root, sums = hub_root
    folder = root / REPO
    assert set(sums[REPO]) == {"config.json", "generation_config.json", "model.safetensors.index.json",
                               "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                               "model-00003-of-00003.safetensors"}
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["architectures"] == ["Qwen2ForCausalLM"]
    seen: dict[str, str] = {}
    total = 0
    for shard in sorted(folder.glob("*.safetensors")):
        raw = shard.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        assert n % 8 == 0
        header = json.loads(raw[8:8 + n])
        assert header.pop("__metadata__") == {"format": "pt"}
        end = 0
        for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            a, b = t["data_offsets"]
            assert a == end and t["dtype"] == "BF16"
            size = 2
            for d in t["shape"]:
                size *= d
            assert b - a == size
            end = b
            seen[name] = shard.name
        assert 8 + n + end == len(raw)
        total += end
    assert index["weight_map"] == seen
    assert index["metadata"]["total_size"] == total
    assert f"model.layers.{config['num_hidden_layers'] - 1}.mlp.down_proj.weight" in seen
    assert 5_000_000 < total < 7_000_000
    # deterministic: same arguments, same bytes
    assert make_test_model(root / "again", total_mb=6, shards=3) == sums[REPO]
    shutil.rmtree(root / "again")


def test_fake_hub_speaks_both_apis(hub: FakeHub, commits: dict[str, str],
                                   hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    root, sums = hub_root
    main, tag = commits[REPO], commits[f"{REPO}@{TAG}"]
    assert len(main) == 40 and main != tag

    # Hugging Face: model info, tree, resolve (small file direct, LFS via redirect), Range, errors
    status, _, body = hub.get(f"/api/models/{REPO}/revision/main")
    assert status == 200 and json.loads(body)["sha"] == main
    status, _, body = hub.get(f"/api/models/{REPO}/revision/{TAG}")
    assert status == 200 and json.loads(body)["sha"] == tag
    status, _, body = hub.get(f"/api/models/{REPO}/tree/{main}?recursive=true&expand=false")
    tree = {e["path"]: e for e in json.loads(body)}
    assert status == 200 and set(tree) == set(sums[REPO])
    shard = "model-00001-of-00003.safetensors"
    assert tree[shard]["lfs"]["oid"] == sums[REPO][shard] and "lfs" not in tree["config.json"]

    status, h, _ = hub.get(f"/{REPO}/resolve/main/config.json", method="HEAD")
    assert status == 200 and h["X-Repo-Commit"] == main and h["ETag"].startswith('"')
    assert int(h["Content-Length"]) == (root / REPO / "config.json").stat().st_size
    assert not [k for k in h if k.lower().startswith("x-xet") or k.lower() == "link"]
    status, h, _ = hub.get(f"/{REPO}/resolve/{main}/{shard}", method="HEAD")
    assert status == 302 and h["X-Linked-Etag"] == f'"{sums[REPO][shard]}"' and h["X-Repo-Commit"] == main
    assert int(h["X-Linked-Size"]) == (root / REPO / shard).stat().st_size
    cdn = h["Location"].replace(hub.url, "")
    status, h, body = hub.get(cdn, headers={"Range": "bytes=100-199"})
    assert status == 206 and h["Content-Range"].startswith("bytes 100-199/") and len(body) == 100
    assert body == (root / REPO / shard).read_bytes()[100:200]
    size = (root / REPO / shard).stat().st_size
    status, h, _ = hub.get(cdn, headers={"Range": f"bytes={size}-"})
    assert status == 416 and h["Content-Range"] == f"bytes */{size}"

    status, h, _ = hub.get(f"/api/models/{REPO}/revision/nosuch")
    assert status == 404 and h["X-Error-Code"] == "RevisionNotFound"
    status, h, _ = hub.get(f"/{REPO}/resolve/nosuch/config.json", method="HEAD")
    assert status == 404 and h["X-Error-Code"] == "RevisionNotFound"
    status, h, _ = hub.get(f"/{REPO}/resolve/main/nosuch.json", method="HEAD")
    assert status == 404 and h["X-Error-Code"] == "EntryNotFound" and h["X-Repo-Commit"] == main
    status, h, _ = hub.get("/api/models/Qwen/Nope/revision/main")
    assert status == 401 and h["X-Error-Code"] == "RepoNotFound"

    # ModelScope: file list, file, revisions, errors
    status, _, body = hub.get(f"/api/v1/models/{REPO}/repo/files?Revision={TAG}&Recursive=True")
    env = json.loads(body)
    assert status == 200 and env["Success"] and env["Code"] == 200
    files = {f["Path"]: f for f in env["Data"]["Files"]}
    assert {p: f["Sha256"] for p, f in files.items()} == sums[f"{REPO}@{TAG}"]
    assert all(f["Revision"] == tag for f in files.values())
    status, _, body = hub.get(f"/api/v1/models/{REPO}/repo?Revision=master&FilePath=config.json")
    assert status == 200 and body == (root / REPO / "config.json").read_bytes()
    status, h, _ = hub.get(f"/api/v1/models/{REPO}/repo?Revision=master&FilePath={shard}")
    assert status == 302 and "/_fakehub/cdn/" in h["Location"]
    status, _, body = hub.get(f"/api/v1/models/{REPO}/revisions")
    rmap = json.loads(body)["Data"]["RevisionMap"]
    assert [b["Revision"] for b in rmap["Branches"]] == ["master"] and [t["Revision"] for t in rmap["Tags"]] == [TAG]
    # what the live hub is reported to answer for an unknown revision: 200 and no files
    status, _, body = hub.get(f"/api/v1/models/{REPO}/repo/files?Revision=nosuch&Recursive=True")
    assert status == 200 and json.loads(body)["Data"] == {"Files": None}
    status, _, body = hub.get("/api/v1/models/Qwen/Nope/repo/files?Revision=master&Recursive=True")
    assert status == 404 and json.loads(body)["Success"] is False

    log = hub.requests()
    assert {r["api"] for r in log} <= {"hf", "ms", "cdn", "fakehub"}
    assert any(r["range"] == "bytes=100-199" and r["status"] == 206 and r["bytes"] == 100 for r in log)
    assert all(r["client"] == "127.0.0.1" for r in log)


def test_fake_hub_drops_then_serves_ranges(hub_root: tuple[Path, dict[str, dict[str, str]]],
                                           tmp_path: Path) -> None:
    root, _ = hub_root
    data = (root / REPO / "config.json").read_bytes()
    with FakeHub(root, tmp_path, "--drop-after", "config.json:100", "--ms-strict-revisions") as hub:
        conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
        conn.request("GET", f"/{REPO}/resolve/main/config.json")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == data[:100]
        conn.close()
        status, _, body = hub.get(f"/{REPO}/resolve/main/config.json", headers={"Range": "bytes=100-"})
        assert status == 206 and body == data[100:]
        status, _, _ = hub.get(f"/api/v1/models/{REPO}/repo/files?Revision=nosuch&Recursive=True")
        assert status == 404

        # The hub logs a request once its handler is done, which can be after
        # the client has its answer and sent the next one: look for the two
        # config.json requests, not at the first two lines.
        def config_requests() -> list[tuple[Any, Any, Any]]:
            return [(r["range"], r["bytes"], r["dropped"]) for r in hub.requests()
                    if r["path"].endswith("/config.json")]

        wait_until(lambda: len(config_requests()) >= 2)
        assert config_requests() == [(None, 100, True), ("bytes=100-", len(data) - 100, False)]


def test_fake_hub_binds_only_the_address_given(hub_root: tuple[Path, dict[str, dict[str, str]]],
                                               tmp_path: Path) -> None:
    root, _ = hub_root
    with FakeHub(root, tmp_path) as hub:
        if not shutil.which("ss"):
            pytest.fail("`ss` not found: run scripts/install-deps.sh (Debian's iproute2)", pytrace=False)
        out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        mine = [line for line in out.stdout.splitlines() if f"pid={hub.proc.pid}," in line]
        assert mine and all(f"127.0.0.1:{hub.port}" in line for line in mine), mine


# ---------------------------------------------------------------------------
# Hugging Face CLI
# ---------------------------------------------------------------------------
def test_hf_download_pinned_tag_to_local_dir(hf_exe: Path, hub: FakeHub, tmp_path: Path, commits: dict[str, str],
                                             hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = hf_exe
    _, sums = hub_root
    dest = tmp_path / "model"
    p = _run([str(exe), "download", REPO, "--revision", TAG, "--local-dir", str(dest)],
             _env(tmp_path / "home", HF_ENDPOINT=hub.url))
    assert p.returncode == 0, p.stderr
    assert _tree_sums(dest) == sums[f"{REPO}@{TAG}"]
    tag = commits[f"{REPO}@{TAG}"]
    log = hub.requests()
    assert any(r["path"] == f"/api/models/{REPO}/revision/{TAG}" for r in log)
    resolves = [r for r in log if "/resolve/" in r["path"]]
    assert resolves and all(f"/resolve/{tag}/" in r["path"] for r in resolves)
    assert not [r for r in log if "/resolve/main/" in r["path"]]


def test_hf_download_pinned_commit(hf_exe: Path, hub: FakeHub, commits: dict[str, str], tmp_path: Path,
                                   hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = hf_exe
    _, sums = hub_root
    main = commits[REPO]
    dest = tmp_path / "model"
    p = _run([str(exe), "download", REPO, "--revision", main, "--local-dir", str(dest)],
             _env(tmp_path / "home", HF_ENDPOINT=hub.url))
    assert p.returncode == 0, p.stderr
    assert _tree_sums(dest) == sums[REPO]
    log = hub.requests()
    # every file asked at that commit (hf 2.x skips the /revision/ call for a commit; 0.36 makes it, with the commit)
    assert all(r["path"].endswith(f"/revision/{main}") for r in log if "/revision/" in r["path"])
    assert any(r["path"] in (f"/api/models/{REPO}/tree/{main}", f"/api/models/{REPO}/revision/{main}") for r in log)
    assert all(f"/resolve/{main}/" in r["path"] for r in log if "/resolve/" in r["path"])
    # the LFS shards came from the CDN redirect, whole
    shards = [r for r in log if r["api"] == "cdn" and r["method"] == "GET"]
    assert sorted(r["file"] for r in shards) == sorted(f for f in sums[REPO] if f.endswith(".safetensors"))


def test_hf_resumes_a_dropped_connection_with_range(hf_exe: Path, tmp_path: Path,
                                                    hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = hf_exe
    root, sums = hub_root
    shard = "model-00001-of-00002.safetensors"
    cut = 11 * 1024 * 1024
    with FakeHub(root, tmp_path, "--drop-after", f"{shard}:{cut}") as hub:
        dest = tmp_path / "model"
        env = _env(tmp_path / "home", HF_ENDPOINT=hub.url)
        p = _run([str(exe), "download", BIG, "--local-dir", str(dest)], env)
        # huggingface_hub 2.x retries in the same run; 0.36 fails and resumes from its .incomplete file next run
        runs = 1 if p.returncode == 0 else 2
        if runs == 2:
            assert list((dest / ".cache" / "huggingface" / "download").glob("*.incomplete"))
            p = _run([str(exe), "download", BIG, "--local-dir", str(dest)], env)
        log = hub.requests()
        assert hub.unexpected() == []
    assert p.returncode == 0, p.stderr
    assert _tree_sums(dest) == sums[BIG]
    gets = [r for r in log if r.get("file") == shard and r["method"] == "GET"]
    assert gets[0]["dropped"] and gets[0]["bytes"] == cut
    # hf writes whole 10 MiB chunks only, so it resumes at the last chunk boundary
    assert [(g["range"], g["status"]) for g in gets[1:]] == [(f"bytes={10 * 1024 * 1024}-", 206)]
    if runs == 1:
        assert "Trying to resume download..." in p.stderr
    assert not list((dest / ".cache").rglob("*.incomplete"))


def test_hf_errors(hf_exe: Path, hub: FakeHub, tmp_path: Path) -> None:
    exe = hf_exe
    env = _env(tmp_path / "home", HF_ENDPOINT=hub.url)
    # 2.x prints one "Error: ..." line (plain with NO_COLOR); 0.36 prints the traceback
    p = _run([str(exe), "download", REPO, "--revision", "nosuch", "--local-dir", str(tmp_path / "a")], env)
    assert p.returncode == 1 and "revision not found" in p.stderr.lower() and "\x1b[" not in p.stderr
    p = _run([str(exe), "download", "Qwen/NoSuchModel", "--local-dir", str(tmp_path / "b")], env)
    assert p.returncode == 1 and "not found" in p.stderr.lower()
    assert [r["status"] for r in hub.requests() if r["path"].startswith("/api/models/")] == [404, 401]
    refused = _env(tmp_path / "home", HF_ENDPOINT="http://127.0.0.1:9")
    p = _run([str(exe), "download", REPO, "--local-dir", str(tmp_path / "c")], refused)
    assert p.returncode == 1
    assert "Connection refused" in p.stderr or "check your internet connection" in p.stderr


def test_hf_progress_without_a_tty(hf_exe: Path, tmp_path: Path,
                                   hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = hf_exe
    root, _ = hub_root
    with FakeHub(root, tmp_path) as hub:
        plain = _run([str(exe), "download", REPO, "--local-dir", str(tmp_path / "a")],
                     _env(tmp_path / "home", HF_ENDPOINT=hub.url))
        forced = _run([str(exe), "download", REPO, "--local-dir", str(tmp_path / "b")],
                      _env(tmp_path / "home", HF_ENDPOINT=hub.url, TQDM_POSITION="-1"))
    assert plain.returncode == 0 and forced.returncode == 0
    # without a TTY only the file-count bar is drawn; TQDM_POSITION=-1 turns the byte bars on
    # (2.x: aggregate "Downloading bytes"/"Reconstructing" bars; 0.36: one bar per file, in B/s)
    assert "\rFetching 6 files:" in plain.stderr
    assert "Downloading bytes" not in plain.stderr and "B/s]" not in plain.stderr
    assert "Downloading bytes" in forced.stderr or "B/s]" in forced.stderr


# ---------------------------------------------------------------------------
# ModelScope CLI and snapshot_download
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["tag", "commit"])
def test_modelscope_download_pinned_to_local_dir(how: str, ms_exe: Path, hub: FakeHub, commits: dict[str, str],
                                                 tmp_path: Path,
                                                 hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = ms_exe
    _, sums = hub_root
    rev = TAG if how == "tag" else commits[f"{REPO}@{TAG}"]
    dest = tmp_path / "model"
    # the legacy spelling (--model, --local_dir) is what the seed's hand procedure used
    argv = ([str(exe), "download", REPO, "--revision", rev, "--local-dir", str(dest)] if how == "tag" else
            [str(exe), "download", "--model", REPO, "--revision", rev, "--local_dir", str(dest)])
    p = _run(argv, _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url))
    assert p.returncode == 0, p.stderr
    assert f"Snapshot ready at {dest}" in p.stdout
    assert _tree_sums(dest) == sums[f"{REPO}@{TAG}"]
    log = [r for r in hub.requests() if r["api"] == "ms" and r.get("repo") == REPO]
    assert log and all(f"Revision={rev}&" in r["query"] for r in log)
    assert not list(dest.rglob("*.incomplete"))


def test_modelscope_resumes_across_runs(ms_exe: Path, tmp_path: Path,
                                        hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = ms_exe
    root, sums = hub_root
    shard = "model-00001-of-00003.safetensors"
    cut = 500_000
    dest = tmp_path / "model"
    with FakeHub(root, tmp_path, "--drop-after", f"{shard}:{cut}") as hub:
        env = _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url)
        # no in-process retry, so the first run fails the way a killed or cut-off run would
        first = _run([str(exe), "download", REPO, "--local-dir", str(dest)],
                     {**env, "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "0"})
        assert first.returncode == 1 and "1 of 6 file(s) failed" in first.stderr
        partial = dest / f"{shard}.incomplete"
        assert partial.stat().st_size == cut and not (dest / shard).exists()
        n_first = len(hub.requests())
        second = _run([str(exe), "download", REPO, "--local-dir", str(dest)], env)
        log = hub.requests()[n_first:]
        assert hub.unexpected() == []
    assert second.returncode == 0, second.stderr
    assert _tree_sums(dest) == sums[REPO] and not partial.exists()
    body = [r for r in log if r["api"] == "cdn"]
    assert [(r["file"], r["range"], r["status"]) for r in body] == [(shard, f"bytes={cut}-", 206)]


def test_modelscope_snapshot_download_cache_dir(ms_exe: Path, hub: FakeHub, tmp_path: Path,
                                                hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = ms_exe
    _, sums = hub_root
    python = _python_of(exe)
    cache = tmp_path / "cache"
    cache.mkdir()
    code = ("import sys; from modelscope import snapshot_download; "
            "print(snapshot_download(sys.argv[1], cache_dir='./'))")
    p = _run([python, "-c", code, REPO], _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url), cwd=cache)
    # the modelscope package (not only modelscope-hub): scripts/install-deps.sh installs it
    assert p.returncode == 0, p.stderr
    # modelscope >= 1.38 (modelscope-hub): {cache}/models/{org}--{name}/snapshots/{revision},
    # not the old {cache}/{org}/{name with . -> ___} of the seed's procedure
    rel = Path(p.stdout.strip().splitlines()[-1])
    assert rel == Path("models/Qwen--Tiny2.5-Test/snapshots/master")
    assert _tree_sums(cache / rel) == sums[REPO]
    assert not (cache / "Qwen").exists()


def test_modelscope_unknown_revision_downloads_nothing_and_succeeds(
        ms_exe: Path, tmp_path: Path, hub_root: tuple[Path, dict[str, dict[str, str]]]) -> None:
    exe = ms_exe
    root, _ = hub_root
    with FakeHub(root, tmp_path) as hub:
        dest = tmp_path / "a"
        p = _run([str(exe), "download", REPO, "--revision", "nosuch", "--local-dir", str(dest)],
                 _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url))
        # the live hub's answer (200, Files: null) makes the CLI report success with an empty folder
        assert p.returncode == 0 and "No files to download" in p.stderr
        assert dest.is_dir() and not any(dest.iterdir())
        p = _run([str(exe), "download", "Qwen/NoSuchModel", "--local-dir", str(tmp_path / "b")],
                 _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url))
        assert p.returncode == 1 and "Model does not exist" in p.stderr
    with FakeHub(root, tmp_path, "--ms-strict-revisions") as hub:
        p = _run([str(exe), "download", REPO, "--revision", "nosuch", "--local-dir", str(tmp_path / "c")],
                 _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url))
        assert p.returncode == 1 and "error: [E3020] [404]" in p.stderr


def test_modelscope_progress_without_a_tty(ms_exe: Path, hub: FakeHub, tmp_path: Path) -> None:
    exe = ms_exe
    p = _run([str(exe), "download", REPO, "--local-dir", str(tmp_path / "a")],
             _env(tmp_path / "home", MODELSCOPE_ENDPOINT=hub.url))
    assert p.returncode == 0
    # tqdm bars are drawn on stderr whatever stderr is, with \r and cursor-up escapes between bars
    assert "\rDownloading:" in p.stderr and "\rmodel-00001-of-00003.safetensors:" in p.stderr
    assert "100%" in p.stderr and "Downloading snapshot of" in p.stdout
