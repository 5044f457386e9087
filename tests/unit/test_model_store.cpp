// ModelStore's pure half, without hosts: the hub CLIs' progress bars (on real
// captures of hf and modelscope runs, tests/fixtures/download-progress), the
// rsync progress and stats lines (a real capture), the copy plan, the
// download script and the failure explanations, and the snapshot script run
// by this machine's /bin/sh on a real model folder, checked against
// verify_model. The same operations run over ssh in tests/lab/test_models_lab.cpp.
#include "clusterkit/model_store.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

using namespace clusterkit;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string fixture(std::string const& rel) {
  std::ifstream in(std::string(CK_SOURCE_DIR) + "/tests/fixtures/" + rel, std::ios::binary);
  REQUIRE(in);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Splits output as Host does with split_on_carriage_return.
std::vector<std::string> segments(std::string const& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/ck-store-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// A real small model (config, index, three shards) from the test fixture.
fs::path make_model(fs::path const& dir) {
  auto cmd = "python3 " + std::string(CK_SOURCE_DIR) + "/tests/fixtures/make_test_model.py --total-mb 2 --shards 3 " +
             dir.string() + " >/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

/// Runs `script` with /bin/sh here and returns its stdout.
std::string run_sh(std::string const& script) {
  TempDir t;
  auto path = t.path / "script.sh";
  std::ofstream(path) << script;
  auto cmd = "/bin/sh " + path.string() + " 2>/dev/null";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[65536];
  while (auto n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace

TEST_CASE("tqdm bars: counting and byte bars as the hub CLIs draw them", "[store][progress]") {
  auto b = parse_tqdm_bar("model-00001-of-00003.safetensors:  12%|\xe2\x96\x88\xe2\x96\x8f        | 250k/2.07M [00:00<00:00, 1.84MB/s]");
  REQUIRE(b);
  CHECK(b->label == "model-00001-of-00003.safetensors");
  CHECK(b->unit == "B");
  CHECK(b->n == Approx(250000));
  CHECK(b->total == Approx(2070000));

  b = parse_tqdm_bar("Fetching 5 files:  80%|\xe2\x96\x88\xe2\x96\x88  | 4/5 [00:06<00:01,  1.58s/it]");
  REQUIRE(b);
  CHECK(b->label == "Fetching 5 files");
  CHECK(b->unit == "it");
  CHECK(b->n == 4);
  CHECK(b->total == 5);

  b = parse_tqdm_bar("config.json:   0%|          | 0.00/642 [00:00<?, ?B/s]");
  REQUIRE(b);
  CHECK(b->unit == "B");
  CHECK(b->total == 642);

  b = parse_tqdm_bar("Reconstructing (incomplete total...):  42%|\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\xe2\x96\x8f     | 10.5MB / 25.1MB");
  REQUIRE(b);
  CHECK(b->label == "Reconstructing (incomplete total...)");
  CHECK(b->n == Approx(10.5e6));
  CHECK(b->total == Approx(25.1e6));

  b = parse_tqdm_bar("Download complete: \xe2\x96\x88\xe2\x96\x88\xe2\x96\x88| 25.1MB");
  REQUIRE(b);
  CHECK(b->label == "Download complete");
  CHECK(b->n == Approx(25.1e6));
  CHECK(b->total == 0);

  CHECK_FALSE(parse_tqdm_bar("2026-12-02 19:02:36,017 | INFO    | modelscope_hub.download | Downloading 6 files"));
  CHECK_FALSE(parse_tqdm_bar(" |  |   |  |  \\ |  | |  ||  |   / : |  .--'"));  // the banner
  CHECK_FALSE(parse_tqdm_bar(""));
  CHECK(strip_ansi("\x1b[1m\x1b[31mError: x\x1b[0m\x1b[A") == "Error: x");
}

TEST_CASE("download progress from real hf and modelscope runs", "[store][progress]") {
  SECTION("hf 2.4.0 with its byte bars on (TQDM_POSITION=-1, as clusterkit runs it)") {
    DownloadProgressParser p;
    std::uint64_t last = 0;
    bool monotonic = true;
    for (auto const& s : segments(fixture("download-progress/hf-2.4.0-forced.txt"))) {
      if (p.feed(s)) {
        monotonic = monotonic && p.bytes_done() >= last;
        last = p.bytes_done();
      }
    }
    CHECK(monotonic);
    CHECK(p.files_done() == 5);
    CHECK(p.files_total() == 5);
    CHECK(p.bytes_total() == 25100000);  // "25.1MB": tqdm's rounding, not the exact size
    CHECK(p.bytes_done() == 25100000);
  }
  SECTION("hf without a terminal and without the switch: file counts only") {
    DownloadProgressParser p;
    for (auto const& s : segments(fixture("download-progress/hf-2.4.0.txt"))) p.feed(s);
    CHECK(p.files_done() == 5);
    CHECK(p.files_total() == 5);
    CHECK(p.bytes_total() == 0);
  }
  SECTION("modelscope 1.40.2: a bar per file, summed") {
    DownloadProgressParser p;
    for (auto const& s : segments(fixture("download-progress/modelscope-1.40.2.txt"))) p.feed(s);
    CHECK(p.files_done() == 6);
    CHECK(p.files_total() == 6);
    // 642 + 88 + 4.16k + 2.07M + 2.00M + 2.10M as the bars print them.
    CHECK(p.bytes_total() == Approx(642 + 88 + 4160 + 2070000 + 2000000 + 2100000).epsilon(0.001));
    CHECK(p.bytes_done() == p.bytes_total());
    CHECK_THAT(p.current_file(), Contains(".json") || Contains(".safetensors"));
  }
}

TEST_CASE("why a download failed, from the CLIs' own words", "[store][errors]") {
  DownloadSpec spec;
  spec.model_id = "Qwen/NoSuchModel";
  spec.hub = Hub::huggingface;
  auto why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/hf-2.4.0-unknown-repo.txt"));
  CHECK_THAT(why, Contains("cpu1") && Contains("has no model 'Qwen/NoSuchModel'"));
  spec.hub = Hub::modelscope;
  why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/modelscope-1.40.2-unknown-repo.txt"));
  CHECK_THAT(why, Contains("has no model 'Qwen/NoSuchModel'"));

  spec.model_id = "Qwen/Tiny2.5-Test";
  spec.hub = Hub::huggingface;
  spec.revision = "nosuch";
  why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/hf-2.4.0-unknown-revision.txt"));
  CHECK_THAT(why, Contains("no revision 'nosuch'") && Contains("main"));

  spec.revision.clear();
  spec.endpoint = "http://127.0.0.1:9";
  why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/hf-2.4.0-connection-refused.txt"));
  CHECK_THAT(why, Contains("cannot reach http://127.0.0.1:9") && Contains("resumes"));
  spec.hub = Hub::modelscope;
  why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/modelscope-1.40.2-connection-refused.txt"));
  CHECK_THAT(why, Contains("cannot reach"));
  why = explain_download_failure(spec, "cpu1", 1, fixture("download-progress/modelscope-1.40.2-interrupted.txt"));
  CHECK_THAT(why, Contains("cannot reach"));  // "... failed: ConnectionError"

  why = explain_download_failure(spec, "cpu1", 127, "@@ck-nocli\n");
  CHECK_THAT(why, Contains("modelscope is installed on cpu1") && Contains("pip install -U modelscope"));
  why = explain_download_failure(spec, "cpu1", 1, "OSError: [Errno 28] No space left on device\n");
  CHECK_THAT(why, Contains("is full"));
}

TEST_CASE("the download script: arguments per CLI, the token never in it", "[store][download]") {
  DownloadSpec spec;
  spec.model_id = "Qwen/Qwen2.5-72B-Instruct";
  spec.revision = "v1.0";
  spec.include = {"*.json", "*.safetensors"};
  spec.token = "hf_secret_token_value";
  spec.endpoint = "https://hf-mirror.com";

  auto hf = download_arguments(spec, "hf", "/data/m");
  CHECK(hf == std::vector<std::string>{"download", "Qwen/Qwen2.5-72B-Instruct", "--local-dir", "/data/m", "--max-workers",
                                       "8", "--revision", "v1.0", "--include", "*.json", "--include", "*.safetensors"});
  auto ms = download_arguments(spec, "modelscope", "/data/m");
  CHECK(std::vector<std::string>(ms.end() - 3, ms.end()) == std::vector<std::string>{"--include", "*.json", "*.safetensors"});
  // huggingface-cli (huggingface_hub before 1.0; gone from the pinned 2.x, so only its arguments are
  // tested): argparse, the patterns after one flag, as modelscope.
  auto legacy = download_arguments(spec, "huggingface-cli", "/data/m");
  CHECK(legacy == std::vector<std::string>{"download", "Qwen/Qwen2.5-72B-Instruct", "--local-dir", "/data/m",
                                           "--max-workers", "8", "--revision", "v1.0", "--include", "*.json",
                                           "*.safetensors"});

  for (auto hub : {Hub::huggingface, Hub::modelscope}) {
    spec.hub = hub;
    auto script = download_script(spec, "/data/m");
    CHECK(script.find("hf_secret_token_value") == std::string::npos);
    CHECK_THAT(script, Contains(hub == Hub::huggingface ? "HF_ENDPOINT='https://hf-mirror.com'" : "MODELSCOPE_ENDPOINT='https://hf-mirror.com'"));
    CHECK_THAT(script, Contains(hub == Hub::huggingface ? "HF_TOKEN=$ck_token" : "MODELSCOPE_API_TOKEN=$ck_token"));
  }
  auto env = download_environment(spec);
  for (auto const& [k, v] : env) CHECK(v.find("secret") == std::string::npos);

  auto bad = spec;
  bad.model_id = "just-a-name";
  CHECK_THROWS_WITH(download_script(bad, "/data/m"), Contains("is not ORG/NAME"));
  bad = spec;
  CHECK_THROWS_WITH(download_script(bad, "relative/dir"), Contains("absolute path"));
  bad.endpoint = "hf-mirror.com";
  CHECK_THROWS_WITH(download_script(bad, "/data/m"), Contains("http://"));
  bad = spec;
  bad.model_id = "Qwen/x; rm -rf /";
  CHECK_THROWS_WITH(download_script(bad, "/data/m"), Contains("is not ORG/NAME"));
}

TEST_CASE("the script finds the CLI and passes the token on stdin", "[store][download]") {
  // A stand-in CLI records what it got: its arguments and HF_TOKEN.
  TempDir t;
  auto cli = t.path / "hf";
  std::ofstream(cli) << "#!/bin/sh\necho \"args:$*\" > " << (t.path / "seen").string()
                     << "\necho \"token:$HF_TOKEN endpoint:$HF_ENDPOINT\" >> " << (t.path / "seen").string()
                     << "\nmkdir -p \"$4\" && echo '{}' > \"$4/config.json\"\n";
  fs::permissions(cli, fs::perms::owner_all);
  DownloadSpec spec;
  spec.model_id = "Org/Model";
  spec.hub = Hub::huggingface;
  spec.cli = cli.string();
  spec.endpoint = "http://127.0.0.1:1";
  auto script = download_script(spec, (t.path / "out").string());
  std::ofstream(t.path / "dl.sh") << script;
  auto out = run_sh("printf 'tok-123\\n' | /bin/sh " + (t.path / "dl.sh").string() + "\necho rc=$?\n");
  CHECK_THAT(out, Contains("@@ck-cli hf " + cli.string()));
  CHECK_THAT(out, Contains("@@ck-bytes "));
  CHECK_THAT(out, Contains("rc=0"));
  std::ifstream seen(t.path / "seen");
  std::string args, token;
  std::getline(seen, args);
  std::getline(seen, token);
  CHECK(args == "args:download Org/Model --local-dir " + (t.path / "out").string() + " --max-workers 8");
  CHECK(token == "token:tok-123 endpoint:http://127.0.0.1:1");

  spec.cli = (t.path / "missing-cli").string();
  std::ofstream(t.path / "dl2.sh") << download_script(spec, (t.path / "out").string());
  out = run_sh("printf '\\n' | /bin/sh " + (t.path / "dl2.sh").string() + " 2>&1\necho rc=$?\n");
  CHECK_THAT(out, Contains("rc=127"));
}

TEST_CASE("rsync progress and stats from a real run", "[store][copy]") {
  std::vector<RsyncProgress> seen;
  std::optional<std::uint64_t> files, bytes;
  for (auto const& s : segments(fixture("rsync/rsync-3.5.0-progress2.txt"))) {
    if (auto p = parse_rsync_progress(s)) seen.push_back(*p);
    if (auto n = parse_rsync_stat(s, "Number of regular files transferred")) files = n;
    if (auto n = parse_rsync_stat(s, "Total transferred file size")) bytes = n;
  }
  REQUIRE(seen.size() >= 3);
  CHECK(seen.front().bytes == 32768);
  CHECK(seen.back().bytes == 30001000);
  CHECK(seen.back().percent == 100);
  CHECK(seen.back().transferred == 2);
  CHECK(seen.back().to_check == 0u);
  CHECK(seen.back().total_files == 2u);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].bytes >= seen[i - 1].bytes);
  CHECK(files == 2u);
  CHECK(bytes == 30001000u);
  CHECK_FALSE(parse_rsync_progress("Number of files: 2 (reg: 2)"));
  CHECK_FALSE(parse_rsync_progress("sent 30,008,474 bytes  received 54 bytes  20,005,685.33 bytes/sec"));
  CHECK_FALSE(parse_rsync_stat("Total file size: 30,001,000 bytes", "Total transferred file size"));
}

TEST_CASE("copy plan: largest first, balanced, nothing lost", "[store][copy]") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<CopyItem> files;
    std::uint64_t total = 0, largest = 0;
    auto n = rng() % 60;
    for (std::size_t i = 0; i < n; ++i) {
      auto bytes = static_cast<std::uint64_t>(rng() % 5000000000ull);
      files.push_back({"f" + std::to_string(i), bytes});
      total += bytes;
      largest = std::max(largest, bytes);
    }
    int streams = 1 + static_cast<int>(rng() % 8);
    auto plan = plan_copy_streams(files, streams);
    CHECK(plan.size() == std::min<std::size_t>(static_cast<std::size_t>(streams), files.size()));
    std::size_t count = 0;
    std::uint64_t sum = 0, most = 0, least = UINT64_MAX;
    for (auto const& s : plan) {
      CHECK_FALSE(s.empty());
      std::uint64_t load = 0;
      for (auto const& f : s) load += f.bytes, ++count;
      sum += load;
      most = std::max(most, load);
      least = std::min(least, load);
    }
    CHECK(count == files.size());
    CHECK(sum == total);
    // Greedy largest-first: no stream exceeds another by more than the
    // largest file.
    if (!plan.empty()) CHECK(most - least <= largest);
  }
  CHECK(plan_copy_streams({}, 4).empty());
  CHECK(plan_copy_streams({{"a", 1}}, 0).size() == 1);
}

TEST_CASE("exclusions and what a destination has too many", "[store][copy]") {
  std::vector<CopyItem> files{{"config.json", 1}, {"model.bin", 2}, {"sub/x.bin", 3}, {"model-1.safetensors", 4},
                              {"original/consolidated.pth", 5}};
  auto kept = without_excluded(files, {"*.bin", "original/*"});
  REQUIRE(kept.size() == 2);
  CHECK(kept[0].path == "config.json");
  CHECK(kept[1].path == "model-1.safetensors");
  CHECK(without_excluded(files, {}).size() == files.size());
  auto extra = extraneous_files(kept, parse_file_listing("1\tconfig.json\n9\told-shard.safetensors\n"
                                                         "4\tmodel-1.safetensors\n7\t.rsync-partial/model-1.safetensors\n"));
  CHECK(extra == std::vector<std::string>{"old-shard.safetensors"});
}

TEST_CASE("file listings skip the hub CLIs' bookkeeping", "[store][copy]") {
  auto items = parse_file_listing(
      "643\tconfig.json\n"
      "120\t.cache/huggingface/download/config.json.metadata\n"
      "5000\t.cache/huggingface/download/model.safetensors.abc.incomplete\n"
      "9\t._____temp/model-00001-of-00003.safetensors\n"
      "8388608\tmodel-00001-of-00003.safetensors\n"
      "4\tsub dir/with space.txt\n");
  REQUIRE(items.size() == 3);
  CHECK(items[0].path == "config.json");
  CHECK(items[1].bytes == 8388608);
  CHECK(items[2].path == "sub dir/with space.txt");
  CHECK_THROWS_WITH(parse_file_listing("12 config.json\n"), Contains("line 1"));
  CHECK_THROWS_WITH(parse_file_listing("x\tconfig.json\n"), Contains("SIZE<TAB>PATH"));

  SyncSpec s;
  s.source = "/data/m";
  s.destination = "/mnt/m";
  auto argv = rsync_stream_argv(s);
  CHECK(argv.front() == "rsync");
  CHECK(argv[argv.size() - 2] == "/data/m/");
  CHECK(argv.back() == "/mnt/m/");
}

TEST_CASE("a manifest lists exactly the files that a sync copies", "[store][copy][manifest]") {
  // Regression: `model verify --write-manifest` kept its own list of hub
  // bookkeeping (only .cache/ and ._____temp/), so its manifest named
  // ModelScope's .msc/.mv/.mdl markers and *.incomplete files that `model
  // sync` never copies, and a verification on the NAS then failed.
  auto dir = fs::temp_directory_path() / ("ck-manifest-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::vector<std::string> files = {"config.json", "model.safetensors", "sub dir/tokenizer.json", ".msc", ".mv", ".mdl",
                                    "model.safetensors.abc.incomplete", ".cache/huggingface/download/x.metadata",
                                    "._____temp/model.safetensors", ".rsync-partial/model.safetensors"};
  std::string listing;
  for (auto const& f : files) {
    fs::create_directories((dir / f).parent_path());
    std::ofstream(dir / f) << "content of " << f;
    listing += std::to_string(fs::file_size(dir / f)) + "\t" + f + "\n";
  }
  auto manifest = write_sha256_manifest(dir);
  std::set<std::string> listed, copied;
  for (auto const& e : manifest) listed.insert(e.file);
  for (auto const& item : parse_file_listing(listing)) copied.insert(item.path);
  CHECK(listed == copied);
  CHECK(listed == std::set<std::string>{"config.json", "model.safetensors", "sub dir/tokenizer.json"});
  // The file on disk says the same, and a second run does not list itself.
  std::ifstream in(dir / "sha256sums");
  std::stringstream text;
  text << in.rdbuf();
  CHECK(parse_sha256_manifest(text.str()).size() == 3);
  CHECK(write_sha256_manifest(dir).size() == 3);
  fs::remove_all(dir);
}

TEST_CASE("the snapshot script, run by /bin/sh, sees what verify_model sees", "[store][verify]") {
  TempDir t;
  auto dir = make_model(t.path / "Qwen" / "Tiny2___5-Test");
  auto check = [&] {
    auto local = verify_model(dir, {.skip_checksums = true});
    auto snapshot = parse_model_snapshot(run_sh(model_snapshot_script(dir.string())));
    snapshot.dir = dir.string();
    auto remote = verify_snapshot(snapshot);
    CHECK(remote.ok() == local.ok());
    CHECK(remote.shards_checked == local.shards_checked);
    CHECK(remote.tensors_checked == local.tensors_checked);
    CHECK(remote.bytes_expected == local.bytes_expected);
    REQUIRE(remote.problems.size() == local.problems.size());
    for (std::size_t i = 0; i < local.problems.size(); ++i) {
      CHECK(remote.problems[i].kind == local.problems[i].kind);
      CHECK(remote.problems[i].message == local.problems[i].message);
    }
    return remote;
  };
  auto whole = check();
  CHECK(whole.ok());
  CHECK(whole.shards_checked == 3);

  // Truncated, missing, hostile header, bad index: each reported the same way.
  fs::resize_file(dir / "model-00002-of-00003.safetensors", fs::file_size(dir / "model-00002-of-00003.safetensors") / 2);
  auto r = check();
  CHECK(r.problems.at(0).kind == VerifyProblemKind::truncated);
  fs::remove(dir / "model-00003-of-00003.safetensors");
  r = check();
  CHECK(r.problems.size() == 2);
  {
    std::fstream f(dir / "model-00001-of-00003.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    char huge[8] = {0, 0, 0, 0, 0, 0, 0, 0x7f};  // a header length of ~9e18
    f.write(huge, 8);
  }
  r = check();
  CHECK(r.problems.at(0).kind == VerifyProblemKind::header_invalid);
  std::ofstream(dir / "model.safetensors.index.json") << "{not json";
  r = check();
  CHECK(r.problems.at(0).kind == VerifyProblemKind::index_invalid);

  CHECK_THROWS_WITH(parse_model_snapshot(run_sh(model_snapshot_script((t.path / "absent").string()))),
                    Contains("does not exist"));

  // A FIFO and a looping link under shard names: named, never opened (a
  // FIFO used to hang the script's `od` until the command's timeout).
  auto odd = make_model(t.path / "Odd");
  auto const fifo = odd / "model-00002-of-00003.safetensors", loop = odd / "model-00003-of-00003.safetensors";
  fs::remove(fifo);
  fs::remove(loop);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  fs::create_symlink(loop.filename(), loop);
  auto t0 = std::chrono::steady_clock::now();
  auto odd_snapshot = parse_model_snapshot(run_sh(model_snapshot_script(odd.string())));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  odd_snapshot.dir = odd.string();
  auto odd_report = verify_snapshot(odd_snapshot);
  CHECK_FALSE(odd_report.ok());
  std::string all;
  for (auto const& p : odd_report.problems) all += p.message + "\n";
  CHECK_THAT(all, Contains("model-00002-of-00003.safetensors is not a regular file") &&
                      Contains("model-00003-of-00003.safetensors is not a regular file"));
  CHECK_THROWS_WITH(parse_model_snapshot("@@ck-file config.json\n"), Contains("middle of a file"));
  CHECK_THROWS_WITH(parse_model_snapshot("@@ck-file config.json\ne30=\n"), Contains("cut short"));
}

TEST_CASE("store paths: ModelScope layout under the root, and the container's view", "[store]") {
  ModelStore store({.root = "/mnt/", .container_root = "/models"});
  CHECK(store.path_for("Qwen/Qwen2.5-72B-Instruct") == "/mnt/Qwen/Qwen2___5-72B-Instruct");
  CHECK(store.container_path("/mnt/Qwen/Qwen2___5-72B-Instruct") == "/models/Qwen/Qwen2___5-72B-Instruct");
  CHECK(store.container_path("/mnt") == "/models");
  CHECK(store.container_path("/mntx/a") == "/mntx/a");
  ModelStore plain({.root = "/data", .layout = ModelLayout::plain});
  CHECK(plain.path_for("Qwen/Qwen2.5-72B-Instruct") == "/data/Qwen/Qwen2.5-72B-Instruct");
  CHECK_THROWS_WITH(ModelStore({.root = "mnt"}), Contains("absolute path"));
}

TEST_CASE("the index is read as a stream: shards once each, errors named", "[store][verify]") {
  auto shards = shards_named_by_index(
      R"({"metadata": {"total_size": 12, "nested": {"a": [1, {"b": null}]}},
          "weight_map": {"a.weight": "m-2.safetensors", "b.weight": "m-1.safetensors", "c.weight": "m-2.safetensors"},
          "extra": [[], {}, "x", 1.5, true]})");
  REQUIRE(shards);
  CHECK(*shards == std::vector<std::string>{"m-1.safetensors", "m-2.safetensors"});
  CHECK_THROWS_WITH(shards_named_by_index("[1]"), Contains("not a JSON object"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"metadata": {}})"), Contains("no \"weight_map\" object"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": []})"), Contains("no \"weight_map\" object"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": {"a": 5}})"), Contains("weight_map['a'] must be a file name"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": {"a": {"x": 1}}})"), Contains("weight_map['a'] must be a file name"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": {"a": "../../etc/passwd"}})"),
                    Contains("is not a file inside the model folder"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": {"a": "/etc/passwd"}})"),
                    Contains("is not a file inside the model folder"));
  CHECK_THROWS_WITH(shards_named_by_index(R"({"weight_map": {"a": "x")"), Contains("is not valid JSON"));
  // Deep nesting elsewhere is skipped, not refused.
  std::string deep = R"({"weight_map": {"a": "m.safetensors"}, "x": )" + std::string(200, '[') + std::string(200, ']') + "}";
  CHECK(shards_named_by_index(deep)->size() == 1);
}
