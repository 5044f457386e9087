// The seed's step 1 on the lab, for real: a NAS mounted with sshfs on every
// host (NasMount), a model downloaded on the "CPU server" h3 by the real hub
// CLIs (hf, modelscope from PyPI) from tests/fixtures/fake_hub.py on the
// lab's bridge address, copied into the NAS with rsync streams, and checked
// from the "GPU hosts" h1 and h2 through their own mounts. Then things go
// wrong one at a time: a conflicting mount, an unknown model, an unreachable
// hub, a download stopped half way and resumed, a shard damaged on the NAS.
//
// Needs root (the lab) and the hub CLIs (scripts/install-deps.sh puts them in
// /opt/ck-hubcli). The lab ("tmod", 10.88.13.0/24) is brought up and torn
// down by this binary; every mount happens inside a lab host's namespace.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/model_store.hpp"
#include "clusterkit/nas.hpp"
#include "clusterkit/runtime.hpp"
#include "machine_mounts.hpp"
#include "support/wait.hpp"

extern char** environ;

using namespace clusterkit;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using cktest::machine_mounts;

constexpr char const* kLab = "tmod";
constexpr char const* kSubnet = "10.88.13";
constexpr char const* kModel = "Qwen/Tiny2.5-Test";
constexpr char const* kToken = "ck-test-secret-token-5d1c";

std::string read_file(fs::path const& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// tests/fixtures/fake_hub.py on the lab's bridge address, stopped by pid.
class FakeHub {
public:
  FakeHub(fs::path const& root, std::vector<std::string> extra = {}) {
    char tmpl[] = "/tmp/ck-fakehub-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir_ = tmpl;
    std::vector<std::string> args{"python3", std::string(CK_SOURCE_DIR) + "/tests/fixtures/fake_hub.py", "--root",
                                  root.string(), "--host", std::string(kSubnet) + ".1", "--port", "0", "--port-file",
                                  (dir_ / "port").string(), "--log", log().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, (dir_ / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, (dir_ / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(posix_spawnp(&pid_, "python3", &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    // The port file is complete once it ends with a newline.
    cktest::wait_until(
        [&] {
          auto text = read_file(dir_ / "port");
          if (!text.empty() && text.back() == '\n') port_ = text.substr(0, text.size() - 1);
          return !port_.empty();
        },
        10s);
    INFO(read_file(dir_ / "err"));
    REQUIRE_FALSE(port_.empty());
  }
  ~FakeHub() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string endpoint() const { return "http://" + std::string(kSubnet) + ".1:" + port_; }
  fs::path log() const { return dir_ / "log.jsonl"; }

private:
  pid_t pid_ = -1;
  fs::path dir_;
  std::string port_;
};

struct Lab {
  LabStatus status;
  Inventory inventory;
  Runtime rt;
  std::set<std::string> mounts_before;
  fs::path hub_root;
  NasSpec nas;

  static Lab& get() {
    static Lab lab;
    return lab;
  }
  Host host(std::string const& name) { return rt.host(inventory.find(name)->spec); }
  std::vector<Host> hosts(std::vector<std::string> const& names) {
    std::vector<Host> out;
    for (auto const& n : names) out.push_back(host(n));
    return out;
  }
  RunResult sh(std::string const& name, std::string const& script) {
    auto h = host(name);
    return run(h, Command::shell(script));
  }

private:
  Lab() {
    REQUIRE(::geteuid() == 0);  // the lab creates namespaces: run the lab tests as root
    mounts_before = machine_mounts();
    LabOptions o;
    o.name = kLab;
    o.hosts = 3;
    o.nas = true;
    o.subnet = kSubnet;
    status = lab_up(o);
    inventory = Inventory::load(status.inventory_path);
    nas.kind = NasKind::sshfs;
    nas.source = "root@" + std::string(kSubnet) + ".250:/srv/nas";
    nas.identity_file = status.identity_file;
    nas.known_hosts_file = status.known_hosts_file;
    // The hub's repositories: one small real model (config, index, three
    // shards), written by the same script the Python tests use.
    char tmpl[] = "/tmp/ck-hubroot-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    hub_root = tmpl;
    auto cmd = "python3 " + std::string(CK_SOURCE_DIR) + "/tests/fixtures/make_test_model.py --total-mb 6 --shards 3 " +
               (hub_root / kModel).string() + " >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  ~Lab() {
    for (auto const& h : inventory.hosts()) close_connection(h.spec);
    lab_down(kLab);
    std::error_code ec;
    fs::remove_all(hub_root, ec);
  }
};

std::uint64_t model_bytes(fs::path const& dir) {
  std::uint64_t sum = 0;
  for (auto const& e : fs::directory_iterator(dir)) sum += e.file_size();
  return sum;
}

MountOutcome const& outcome(std::vector<MountOutcome> const& all, std::string const& host) {
  for (auto const& o : all)
    if (o.host == host) return o;
  FAIL("no outcome for " << host);
  return all.front();
}

}  // namespace

TEST_CASE("NasMount on the lab: mount, keep, refuse, check, persist, unmount", "[nas][lab]") {
  auto& lab = Lab::get();
  // The lab's inventory describes its NAS (vars.nas_export, ...): the spec
  // `clusterkit nas mount -g lab` uses with no more said.
  auto from_inventory = nas_spec_from_vars(lab.inventory.find("h1")->extra.at("vars"), "h1");
  CHECK(from_inventory.kind == NasKind::sshfs);
  CHECK(from_inventory.source == lab.nas.source);
  CHECK(from_inventory.identity_file == lab.nas.identity_file);
  CHECK(from_inventory.mount_point == "/mnt");
  NasMount nas(from_inventory);
  auto all = lab.hosts({"h1", "h2", "h3"});

  auto first = mount_nas(nas, all);
  for (auto const& o : first) {
    INFO(o.message);
    CHECK(o.ok());
    CHECK(o.action == "mount");
    REQUIRE(o.entry);
    CHECK(o.entry->fstype == "fuse.sshfs");
  }
  // Idempotent: the same source stays, nothing is remounted.
  for (auto const& o : mount_nas(nas, all)) {
    CHECK(o.ok());
    CHECK(o.action == "keep");
  }
  // The NAS's files are what the hosts see.
  REQUIRE(lab.sh("nas", "echo from-the-nas > /srv/nas/hello.txt").exit_code == 0);
  for (auto const* h : {"h1", "h2", "h3"}) CHECK(lab.sh(h, "cat /mnt/hello.txt").stdout_text == "from-the-nas\n");

  auto report = check_nas(nas, all);
  INFO(report.to_json().dump(2));
  CHECK(report.ok());
  for (auto const& v : report.hosts) {
    CHECK(v.mounted);
    CHECK(v.sees.size() == 3);
  }

  // Something else at the mount point: refused, naming both sources and the fix.
  NasSpec other;
  other.kind = NasKind::bind;
  other.source = "/srv";
  auto refused = mount_nas(NasMount(other), lab.hosts({"h1"}));
  CHECK(refused.front().error == errc::mount_conflict);
  CHECK_THAT(refused.front().message, Contains(lab.nas.source) && Contains("clusterkit nas umount -g h1"));
  CHECK(lab.sh("h1", "cat /mnt/hello.txt").stdout_text == "from-the-nas\n");  // nothing changed

  // Persistence: an fstab entry (a private fstab in h3's own /tmp), then
  // its removal with the unmount.
  auto persistent = lab.nas;
  persistent.persist = true;
  persistent.fstab_path = "/tmp/ck-fstab";
  REQUIRE(lab.sh("h3", "printf '# the host\\n/dev/vda / ext4 defaults 0 1\\n' > /tmp/ck-fstab").exit_code == 0);
  auto kept = mount_nas(NasMount(persistent), lab.hosts({"h3"}));
  CHECK(kept.front().action == "keep");
  CHECK(kept.front().fstab_changed);
  auto fstab = lab.sh("h3", "cat /tmp/ck-fstab").stdout_text;
  CHECK_THAT(fstab, Contains("/dev/vda / ext4 defaults 0 1"));
  CHECK_THAT(fstab, Contains(lab.nas.source + " /mnt fuse.sshfs ") && Contains("_netdev"));
  UnmountOptions remove_entry;
  remove_entry.remove_fstab_entry = true;
  auto gone = unmount_nas(NasMount(persistent), lab.hosts({"h3"}), remove_entry);
  CHECK(gone.front().ok());
  CHECK(gone.front().action == "unmount");
  fstab = lab.sh("h3", "cat /tmp/ck-fstab").stdout_text;
  CHECK(fstab.find("fuse.sshfs") == std::string::npos);
  CHECK_THAT(fstab, Contains("/dev/vda / ext4 defaults 0 1"));

  // One host without the NAS: the check says which and why.
  report = check_nas(nas, all);
  CHECK_FALSE(report.ok());
  bool h3_named = false;
  for (auto const& v : report.hosts)
    if (v.host == "h3") h3_named = !v.mounted && !v.problem.empty();
  CHECK(h3_named);
  // Unmounting again is a no-op; a tmpfs is never unmounted by a sourceless umount.
  auto again = unmount_nas(nas, lab.hosts({"h3"}));
  CHECK(again.front().ok());
  CHECK(again.front().action == "nothing");

  // Back for the next test case.
  CHECK(outcome(mount_nas(nas, all), "h3").action == "mount");
  CHECK(check_nas(nas, all).ok());
  CHECK(machine_mounts() == lab.mounts_before);
}

TEST_CASE("download on a lab host through the real hub CLIs", "[store][lab]") {
  auto& lab = Lab::get();
  FakeHub hub(lab.hub_root);
  ModelStore store;
  auto const expected_bytes = model_bytes(lab.hub_root / kModel);

  for (auto hub_kind : {Hub::modelscope, Hub::huggingface}) {
    DYNAMIC_SECTION("from " << to_string(hub_kind)) {
      DownloadSpec spec;
      spec.model_id = kModel;
      spec.hub = hub_kind;
      spec.endpoint = hub.endpoint();
      spec.local_dir = std::string("/tmp/models/") + std::string(to_string(hub_kind)) + "/Tiny2___5-Test";
      spec.token = kToken;
      std::vector<TransferProgress> seen;
      auto result = download_model(store, lab.host("h3"), spec, [&](TransferProgress const& p) { seen.push_back(p); });
      INFO(result.to_json().dump(2));
      REQUIRE(result.ok());
      CHECK(result.cli == (hub_kind == Hub::modelscope ? "modelscope" : "hf"));
      CHECK(result.attempts == 1);
      CHECK(result.files == 6);
      CHECK(result.bytes == expected_bytes);
      REQUIRE(result.verify);
      CHECK(result.verify->ok());
      CHECK(result.verify->shards_checked == 3);
      // Progress came while it ran and ended at the total.
      REQUIRE_FALSE(seen.empty());
      CHECK(seen.back().bytes_done == expected_bytes);
      CHECK(seen.back().files_done == 6);
      for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].elapsed >= seen[i - 1].elapsed);
      // The files are h3's own (its private /tmp), the same bytes as the hub's.
      CHECK(lab.sh("h1", "test -e " + spec.local_dir).exit_code != 0);
      auto shard = "model-00002-of-00003.safetensors";
      CHECK(lab.sh("h3", "sha256sum " + spec.local_dir + "/" + shard).stdout_text.substr(0, 64) ==
            sha256_file(lab.hub_root / kModel / shard));
      // The token reached the hub and nothing else.
      auto log = read_file(hub.log());
      CHECK_THAT(log, Contains(kToken));
      CHECK_THAT(result.to_json().dump(), !Contains(kToken));
    }
  }
}

TEST_CASE("download failures: unknown model, unreachable hub, stopped and resumed", "[store][lab]") {
  auto& lab = Lab::get();
  ModelStore store;
  {
    FakeHub hub(lab.hub_root);
    DownloadSpec spec;
    spec.model_id = "Qwen/NoSuchModel";
    spec.hub = Hub::huggingface;
    spec.endpoint = hub.endpoint();
    spec.local_dir = "/tmp/models/none";
    // The blocking rule: a failed download throws; with an error_code& it
    // is set instead and the result says the rest.
    try {
      download_model(store, lab.host("h3"), spec);
      FAIL("download_model did not throw");
    } catch (Error const& e) {
      CHECK(e.code() == errc::download_failed);
      CHECK_THAT(e.what(), Contains("has no model 'Qwen/NoSuchModel'"));
    }
    std::error_code ec;
    auto r = download_model(store, lab.host("h3"), spec, {}, ec);
    CHECK(ec == errc::download_failed);
    CHECK(r.error == errc::download_failed);
    CHECK(r.attempts == 1);  // the hub said no: not worth repeating
    CHECK_THAT(r.message, Contains("h3") && Contains("has no model 'Qwen/NoSuchModel'"));
  }
  {
    DownloadSpec spec;
    spec.model_id = kModel;
    spec.hub = Hub::huggingface;
    spec.endpoint = std::string("http://") + kSubnet + ".1:9";  // nothing listens there
    spec.local_dir = "/tmp/models/unreachable";
    spec.attempts = 2;
    spec.retry_delay = 1s;
    std::error_code ec;
    auto r = download_model(store, lab.host("h3"), spec, {}, ec);
    CHECK(r.error == errc::download_failed);
    CHECK(r.attempts == 2);
    CHECK_THAT(r.message, Contains("cannot reach " + spec.endpoint) && Contains("after 2 attempts"));
  }
  {
    // A slow hub: the first run is stopped by its timeout half way; the
    // remote CLI is gone with it; the second run asks only for the rest.
    FakeHub hub(lab.hub_root, {"--throttle", "1000000"});
    DownloadSpec spec;
    spec.model_id = kModel;
    spec.hub = Hub::modelscope;
    spec.endpoint = hub.endpoint();
    spec.local_dir = "/tmp/models/resumed";
    spec.max_workers = 1;
    spec.timeout = 3s;
    std::error_code ec;
    auto stopped = download_model(store, lab.host("h3"), spec, {}, ec);
    CHECK(stopped.error == errc::timed_out);
    CHECK_THAT(stopped.message, Contains("next run resumes"));
    CHECK(lab.sh("h3", "pgrep -f 'modelscope[ ]download' || true").stdout_text.empty());
    spec.timeout = 0s;
    auto resumed = download_model(store, lab.host("h3"), spec);
    INFO(resumed.message);
    REQUIRE(resumed.ok());
    CHECK(resumed.verify->ok());
    CHECK_THAT(read_file(hub.log()), Contains("\"range\": \"bytes="));
  }
}

TEST_CASE("copy into the NAS in streams, verify from every GPU host, repair", "[store][lab]") {
  auto& lab = Lab::get();
  ModelStore store({.root = "/mnt", .container_root = "/models"});
  auto const nas_dir = store.path_for(kModel);  // /mnt/Qwen/Tiny2___5-Test
  CHECK(nas_dir == "/mnt/Qwen/Tiny2___5-Test");
  auto const expected_bytes = model_bytes(lab.hub_root / kModel);
  // The download host's copy (made by the previous test case, or made here).
  std::string const source = "/tmp/models/modelscope/Tiny2___5-Test";
  if (lab.sh("h3", "test -f " + source + "/config.json").exit_code != 0) {
    FakeHub hub(lab.hub_root);
    DownloadSpec spec;
    spec.model_id = kModel;
    spec.endpoint = hub.endpoint();
    spec.local_dir = source;
    REQUIRE(download_model(store, lab.host("h3"), spec).ok());
  }

  SyncSpec sync;
  sync.source = source;
  sync.destination = nas_dir;
  sync.streams = 3;
  std::vector<TransferProgress> seen;
  auto copied = sync_model(store, lab.host("h3"), sync, [&](TransferProgress const& p) { seen.push_back(p); });
  INFO(copied.to_json().dump(2));
  REQUIRE(copied.ok());
  CHECK(copied.streams == 3);
  CHECK(copied.files == 6);
  CHECK(copied.files_transferred == 6);
  CHECK(copied.bytes == expected_bytes);
  CHECK(copied.bytes_transferred == expected_bytes);
  REQUIRE_FALSE(seen.empty());
  CHECK(seen.back().bytes_done == expected_bytes);
  CHECK(seen.back().phase == "copy");
  REQUIRE(copied.verify);
  CHECK(copied.verify->ok());
  // On the NAS itself.
  CHECK(lab.sh("nas", "ls /srv/nas/Qwen/Tiny2___5-Test | wc -l").stdout_text == "6\n");

  auto gpus = lab.hosts({"h1", "h2"});
  auto views = verify_model_on_hosts(store, gpus, nas_dir);
  REQUIRE(views.size() == 2);
  for (auto const& v : views) {
    INFO(v.message);
    CHECK(v.ok());
    CHECK(v.container_path == "/models/Qwen/Tiny2___5-Test");
    CHECK(v.report.shards_checked == 3);
  }

  // Nothing to do the second time.
  auto again = sync_model(store, lab.host("h3"), sync);
  CHECK(again.ok());
  CHECK(again.files_transferred == 0);

  // A shard cut short on the NAS: both GPU hosts see it; a sync repairs
  // exactly that file.
  REQUIRE(lab.sh("nas", "truncate -s 100000 /srv/nas/Qwen/Tiny2___5-Test/model-00002-of-00003.safetensors").exit_code == 0);
  for (auto const& v : verify_model_on_hosts(store, gpus, nas_dir)) {
    CHECK(v.error == errc::model_incomplete);
    REQUIRE_FALSE(v.report.problems.empty());
    CHECK(v.report.problems.front().kind == VerifyProblemKind::truncated);
    CHECK_THAT(v.message, Contains(v.host) && Contains("model-00002-of-00003.safetensors is truncated"));
  }
  auto repaired = sync_model(store, lab.host("h3"), sync);
  CHECK(repaired.ok());
  CHECK(repaired.files_transferred == 1);
  for (auto const& v : verify_model_on_hosts(store, gpus, nas_dir)) CHECK(v.ok());

  // Checksums: a manifest written on the download host travels with the
  // copy; a flipped byte (same size) is caught on every host.
  REQUIRE(lab.sh("h3", "cd " + source + " && sha256sum config.json model-0000*.safetensors > sha256sums").exit_code == 0);
  REQUIRE(sync_model(store, lab.host("h3"), sync).ok());
  RemoteVerifyOptions with_sums;
  with_sums.checksums = true;
  with_sums.read_all = true;
  for (auto const& v : verify_model_on_hosts(store, gpus, nas_dir, with_sums)) {
    INFO(v.message);
    CHECK(v.ok());
    CHECK(v.report.files_hashed == 4);
  }
  REQUIRE(lab.sh("nas", "printf 'X' | dd of=/srv/nas/Qwen/Tiny2___5-Test/model-00003-of-00003.safetensors bs=1 "
                        "seek=4000000 conv=notrunc 2>/dev/null")
              .exit_code == 0);
  for (auto const& v : verify_model_on_hosts(store, gpus, nas_dir, with_sums)) {
    CHECK_FALSE(v.ok());
    bool mismatch = false;
    for (auto const& p : v.report.problems)
      mismatch = mismatch || (p.kind == VerifyProblemKind::checksum_mismatch && p.file == "model-00003-of-00003.safetensors");
    CHECK(mismatch);
  }
  // A manifest that names a file outside the folder: refused, never read.
  auto const sums = std::string("/srv/nas/Qwen/Tiny2___5-Test/sha256sums");
  REQUIRE(lab.sh("nas", "cp " + sums + " /tmp/ck-sums.bak && printf '%064d  /etc/hostname\\n' 0 >> " + sums).exit_code == 0);
  for (auto const& v : verify_model_on_hosts(store, gpus, nas_dir, with_sums)) {
    bool refused = false;
    for (auto const& p : v.report.problems)
      refused = refused || (p.kind == VerifyProblemKind::manifest_invalid &&
                            p.message.find("is outside the model folder") != std::string::npos);
    CHECK(refused);
  }
  REQUIRE(lab.sh("nas", "mv /tmp/ck-sums.bak " + sums).exit_code == 0);

  // A stale file in the NAS copy (an old shard, say) goes with --delete.
  REQUIRE(lab.sh("nas", "echo stale > /srv/nas/Qwen/Tiny2___5-Test/old-shard.safetensors").exit_code == 0);
  auto exact = sync;
  exact.delete_extraneous = true;
  auto cleaned = sync_model(store, lab.host("h3"), exact);
  INFO(cleaned.message);
  CHECK(cleaned.ok());
  CHECK(cleaned.files_deleted == 1);
  CHECK(lab.sh("nas", "test -e /srv/nas/Qwen/Tiny2___5-Test/old-shard.safetensors").exit_code != 0);
  CHECK(lab.sh("nas", "test -e /srv/nas/Qwen/Tiny2___5-Test/config.json").exit_code == 0);

  // Wrong paths are named.
  sync.source = "/tmp/models/absent";
  CHECK_THROWS_WITH(sync_model(store, lab.host("h3"), sync), Contains("h3: /tmp/models/absent does not exist"));
  std::error_code ec;
  auto missing = sync_model(store, lab.host("h3"), sync, {}, ec);
  CHECK(ec == errc::copy_failed);
  CHECK(missing.error == errc::copy_failed);
  CHECK_THAT(missing.message, Contains("h3: /tmp/models/absent does not exist"));
  auto absent = verify_model_on_hosts(store, gpus, "/mnt/Qwen/NotCopied");
  for (auto const& v : absent) CHECK_THAT(v.message, Contains("does not exist"));
  CHECK(machine_mounts() == lab.mounts_before);
}
