// NasMount's pure half: options, command lines, fstab edits, the mount table
// parser and the decisions, without any host. The same scripts run for real
// on lab hosts in tests/lab/test_models_lab.cpp.
#include "clusterkit/nas.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <csignal>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "clusterkit/preflight.hpp"
#include "clusterkit/shell.hpp"

using namespace clusterkit;

namespace {

NasSpec nfs(std::string source = "10.0.0.5:/share") {
  NasSpec s;
  s.kind = NasKind::nfs;
  s.source = std::move(source);
  return s;
}

NasSpec sshfs(std::string source = "root@10.88.0.250:/srv/nas") {
  NasSpec s;
  s.kind = NasKind::sshfs;
  s.source = std::move(source);
  s.identity_file = "/run/lab/id_ed25519";
  s.known_hosts_file = "/run/lab/known_hosts";
  return s;
}

std::string join(std::vector<std::string> const& v) {
  std::string out;
  for (auto const& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

// A mount table as a lab host shows it: the machine's root, the lab's tmpfs
// on /mnt, and (optionally) what is mounted on top.
std::string table(std::string const& extra = "") {
  return "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
         "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
         "90 27 0:50 / /mnt rw,relatime - tmpfs lab-mnt rw,mode=755\n"
         "91 27 254:0 /srv/data /data rw,relatime - ext4 /dev/vda rw\n" +
         extra;
}

MountProbe probe_of(std::string const& mountinfo, bool empty = true) {
  MountProbe p;
  p.mounts = parse_mountinfo(mountinfo);
  p.mount_point_exists = p.mount_point_is_directory = true;
  p.mount_point_empty = empty;
  if (!empty) p.mount_point_entries = {"README", "old-model"};
  p.uid = 0;
  return p;
}

}  // namespace

TEST_CASE("NFS options follow what cloud NAS services recommend", "[nas]") {
  CHECK(join(nas_mount_options(nfs())) == "vers=3 nolock proto=tcp rsize=1048576 wsize=1048576 hard timeo=600 retrans=2 noresvport");
  auto v4 = nfs();
  v4.nfs_version = "4";
  CHECK(join(nas_mount_options(v4)) == "vers=4.0 rsize=1048576 wsize=1048576 hard timeo=600 retrans=2 noresvport");
  v4.nfs_version = "4.1";
  CHECK(nas_mount_options(v4).front() == "vers=4.1");

  // A user option with a default's key replaces it; nfsvers replaces vers.
  auto custom = nfs();
  custom.options = {"timeo=100", "nfsvers=4.2", "actimeo=1"};
  custom.read_only = true;
  CHECK(join(nas_mount_options(custom)) ==
        "nfsvers=4.2 nolock proto=tcp rsize=1048576 wsize=1048576 hard timeo=100 retrans=2 noresvport actimeo=1 ro");

  auto bad = nfs();
  bad.nfs_version = "5";
  CHECK_THROWS_WITH(nas_mount_options(bad), Catch::Contains("NFS version '5'"));
  bad = nfs();
  bad.options = {"rsize=1,wsize=2"};
  CHECK_THROWS_WITH(nas_mount_options(bad), Catch::Contains("one option per entry"));
}

TEST_CASE("mount command lines for each kind", "[nas]") {
  CHECK(join(nas_mount_argv(nfs())) ==
        "mount -t nfs -o vers=3,nolock,proto=tcp,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport "
        "10.0.0.5:/share /mnt");
  auto s = sshfs();
  s.mount_point = "/mnt/";
  s.port = 2222;
  CHECK(join(nas_mount_argv(s)) ==
        "sshfs -o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3,BatchMode=yes,StrictHostKeyChecking=yes,dir_cache=no,"
        "IdentityFile=/run/lab/id_ed25519,UserKnownHostsFile=/run/lab/known_hosts,port=2222,allow_other "
        "root@10.88.0.250:/srv/nas /mnt");
  NasSpec b;
  b.kind = NasKind::bind;
  b.source = "/data/models";
  b.read_only = true;
  CHECK(join(nas_mount_argv(b)) == "mount --bind /data/models /mnt");
  auto script = nas_mount_script(b);
  CHECK(script.find("mp='/mnt'") != std::string::npos);
  CHECK(script.find("mount -o remount,bind,ro \"$mp\"") != std::string::npos);
  CHECK(script.find("mkdir -p -- \"$mp\"") != std::string::npos);
}

// The script itself, run by /bin/sh in a temp folder with its mount command
// swapped for `false` (nothing is mounted in this machine's namespace).
TEST_CASE("a failed mount removes the folders it made, and only those", "[nas]") {
  auto dir = std::filesystem::temp_directory_path() / ("ck-nas-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir / "kept");
  NasSpec b;
  b.kind = NasKind::bind;
  b.source = "/data/models";
  auto run_failing = [&](std::filesystem::path const& mount_point) {
    b.mount_point = mount_point.string();
    auto script = nas_mount_script(b);
    auto mount = clusterkit::shell::join(nas_mount_argv(b));
    auto at = script.find(mount);
    REQUIRE(at != std::string::npos);
    script.replace(at, mount.size(), "false");
    auto file = dir / "script.sh";
    std::ofstream(file) << script;
    return std::system(("/bin/sh " + file.string() + " >/dev/null 2>&1").c_str());
  };
  CHECK(run_failing(dir / "kept" / "a" / "b" / "c") != 0);
  CHECK(std::filesystem::exists(dir / "kept"));  // was there before
  CHECK_FALSE(std::filesystem::exists(dir / "kept" / "a"));  // made for the mount, removed again
  std::filesystem::create_directories(dir / "existing");
  CHECK(run_failing(dir / "existing") != 0);
  CHECK(std::filesystem::exists(dir / "existing"));  // not ours to remove

  // A mount that hangs (an NFS server that does not answer) and is stopped
  // by its timeout or Ctrl-C: TERM to the script's process group; the
  // folders it made go too.
  b.mount_point = (dir / "kept" / "t" / "u").string();
  auto script = nas_mount_script(b);
  auto mount = clusterkit::shell::join(nas_mount_argv(b));
  script.replace(script.find(mount), mount.size(), "sleep 30");
  auto file = dir / "hang.sh";
  std::ofstream(file) << script;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group, as the runner gives a command
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl("/bin/sh", "sh", file.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 200 && !std::filesystem::exists(dir / "kept" / "t" / "u"); ++i) ::usleep(20000);
  ::usleep(200000);  // in `sleep 30` now
  ::kill(-pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);
  CHECK(std::filesystem::exists(dir / "kept"));
  CHECK_FALSE(std::filesystem::exists(dir / "kept" / "t"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("specs that cannot work are refused with the field named", "[nas]") {
  // No source: fine for unmounting and checks; a mount needs one.
  CHECK_NOTHROW(NasMount(nfs("")));
  CHECK_THROWS_WITH(validate(nfs("")), Catch::Contains("SERVER:/EXPORT"));
  CHECK_THROWS_WITH(NasMount(nfs("10.0.0.5")), Catch::Contains("is not SERVER:/EXPORT"));
  CHECK_THROWS_WITH(NasMount(nfs("10.0.0.5:share")), Catch::Contains("is not SERVER:/EXPORT"));
  CHECK_NOTHROW(NasMount(nfs("[fd00::5]:/share")));
  CHECK_NOTHROW(NasMount(nfs("nas.example.com:/")));
  auto mp = nfs();
  mp.mount_point = "mnt";
  CHECK_THROWS_WITH(NasMount(mp), Catch::Contains("absolute path"));
  mp.mount_point = "/";
  CHECK_THROWS_WITH(NasMount(mp), Catch::Contains("over /"));
  CHECK_THROWS_WITH(NasMount(sshfs("nas")), Catch::Contains("[USER@]HOST:/PATH"));
  CHECK_NOTHROW(NasMount(sshfs("nas:")));  // the remote user's home
  NasSpec b;
  b.kind = NasKind::bind;
  b.source = "relative/dir";
  CHECK_THROWS_WITH(NasMount(b), Catch::Contains("absolute path"));
  b.source = "/mnt/";
  CHECK_THROWS_WITH(NasMount(b), Catch::Contains("onto itself"));
  auto port = sshfs();
  port.port = 70000;
  CHECK_THROWS_WITH(NasMount(port), Catch::Contains("70000"));
}

TEST_CASE("mountinfo is parsed, escapes decoded, the top mount found", "[nas]") {
  auto mounts = parse_mountinfo(table("95 90 0:60 / /mnt rw,nosuid,nodev,relatime shared:5 - fuse.sshfs root@10.88.0.250:/srv/nas rw,user_id=0\n"
                                      "96 27 0:61 / /media/my\\040disk rw - vfat /dev/sdb1 rw\n"
                                      "garbage line\n"));
  REQUIRE(mounts.size() == 6);
  auto top = mount_at(mounts, "/mnt/");
  REQUIRE(top);
  CHECK(top->fstype == "fuse.sshfs");
  CHECK(top->source == "root@10.88.0.250:/srv/nas");
  CHECK(top->mount_options == "rw,nosuid,nodev,relatime");
  CHECK(top->parent == 90);
  CHECK(mount_at(mounts, "/media/my disk"));
  CHECK_FALSE(mount_at(mounts, "/srv"));

  // The test's own mount table: real data, and "/" is in it.
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream ss;
  ss << in.rdbuf();
  auto own = parse_mountinfo(ss.str());
  CHECK(own.size() >= 3);
  CHECK(mount_at(own, "/"));
}

TEST_CASE("bind mounts are matched by device and folder", "[nas]") {
  auto mounts = parse_mountinfo(table());
  auto origin = bind_origin(mounts, "/srv/data/models");
  REQUIRE(origin);
  CHECK(origin->device == "254:0");
  CHECK(origin->root == "/srv/data/models");
  // Under a mount that is itself a bind of /srv/data: /data/x is /srv/data/x.
  auto nested = bind_origin(mounts, "/data/x");
  REQUIRE(nested);
  CHECK(nested->root == "/srv/data/x");

  NasSpec b;
  b.kind = NasKind::bind;
  b.source = "/data/x";
  auto bound = parse_mountinfo(table("97 90 254:0 /srv/data/x /mnt rw - ext4 /dev/vda rw\n"));
  CHECK(mount_matches(b, *mount_at(bound, "/mnt"), bind_origin(bound, "/data/x")));
  CHECK_FALSE(mount_matches(b, *mount_at(bound, "/mnt"), bind_origin(bound, "/data/y")));
}

TEST_CASE("plan_mount: keep the same source, refuse another, mount on an empty folder", "[nas]") {
  auto spec = sshfs();
  // Nothing shared there: the lab's empty tmpfs counts as an empty folder.
  auto plan = plan_mount(spec, probe_of(table()), "h1");
  CHECK(plan.action == MountAction::mount);
  CHECK(plan.script.find("'sshfs' '-o'") != std::string::npos);

  // The same source already mounted: kept.
  auto same = probe_of(table("95 90 0:60 / /mnt rw - fuse.sshfs root@10.88.0.250:/srv/nas/ rw\n"), false);
  plan = plan_mount(spec, same, "h1");
  CHECK(plan.action == MountAction::keep);
  CHECK(plan.reason.find("already has root@10.88.0.250:/srv/nas/") != std::string::npos);

  // Another NAS there: refused, with the host, both sources and the fix.
  auto other = probe_of(table("95 90 0:60 / /mnt rw - nfs 10.0.0.9:/other rw,vers=3\n"), false);
  plan = plan_mount(spec, other, "h1");
  CHECK(plan.action == MountAction::refuse);
  CHECK(plan.refusal == errc::mount_conflict);
  CHECK(plan.reason.find("h1") != std::string::npos);
  CHECK(plan.reason.find("10.0.0.9:/other (nfs)") != std::string::npos);
  CHECK(plan.reason.find("clusterkit nas umount -g h1 --path /mnt") != std::string::npos);
  CHECK(plan.script.empty());

  // A folder with files in it: refused unless allowed.
  plan = plan_mount(spec, probe_of(table(), false), "h2");
  CHECK(plan.action == MountAction::refuse);
  CHECK(plan.reason.find("not empty (README, old-model)") != std::string::npos);
  CHECK(plan.reason.find("--allow-non-empty") != std::string::npos);
  spec.allow_non_empty = true;
  CHECK(plan_mount(spec, probe_of(table(), false), "h2").action == MountAction::mount);

  // The program missing: refused with the install line.
  auto no_nfs = probe_of(table());
  no_nfs.helper_present = false;
  plan = plan_mount(nfs(), no_nfs, "gpu1");
  CHECK(plan.refusal == errc::program_missing);
  CHECK(plan.reason.find("apt-get install -y nfs-common") != std::string::npos);

  // Not root: NFS refused up front.
  auto user = probe_of(table());
  user.uid = 1000;
  plan = plan_mount(nfs(), user, "gpu1");
  CHECK(plan.action == MountAction::refuse);
  CHECK(plan.reason.find("needs root on gpu1") != std::string::npos);

  // A file where the folder should be.
  auto file = probe_of(table());
  file.mount_point_is_directory = false;
  CHECK(plan_mount(nfs(), file, "gpu1").reason.find("is a file") != std::string::npos);
}

TEST_CASE("fstab entries are added once, updated, and never clobber another's", "[nas]") {
  auto spec = nfs();
  spec.persist = true;
  auto line = fstab_line(spec);
  CHECK(line == "10.0.0.5:/share /mnt nfs vers=3,nolock,proto=tcp,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,"
                "noresvport,_netdev,nofail 0 0");
  std::string base = "# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n";
  auto added = fstab_with_entry(base, spec);
  CHECK(added.changed);
  CHECK(added.conflict.empty());
  CHECK(added.text == base + "# added by clusterkit (nas mount --persist)\n" + line + "\n");
  // Idempotent.
  auto again = fstab_with_entry(added.text, spec);
  CHECK_FALSE(again.changed);
  CHECK(again.text == added.text);
  // New options replace the entry in place.
  spec.options = {"timeo=100"};
  auto updated = fstab_with_entry(added.text, spec);
  CHECK(updated.changed);
  CHECK(updated.text.find("timeo=100") != std::string::npos);
  CHECK(updated.text.find("timeo=600") == std::string::npos);
  // Another source at the same mount point: a conflict naming the line.
  auto other = fstab_with_entry(base + "10.0.0.9:/x /mnt/ nfs defaults 0 0\n", spec);
  CHECK_FALSE(other.changed);
  CHECK(other.conflict.find("line 3 of /etc/fstab already mounts 10.0.0.9:/x at /mnt") != std::string::npos);
  // Removal takes our comment too, and nothing else.
  auto removed = fstab_without_entry(added.text, "/mnt");
  CHECK(removed.changed);
  CHECK(removed.text == base);
  CHECK_FALSE(fstab_without_entry(base, "/mnt").changed);
  // A file without a final newline keeps its lines.
  auto no_nl = fstab_with_entry("UUID=abc / ext4 defaults 0 1", spec);
  CHECK(no_nl.text.starts_with("UUID=abc / ext4 defaults 0 1\n# added by clusterkit"));
  // Spaces in paths are written as \040.
  NasSpec b;
  b.kind = NasKind::bind;
  b.source = "/data/my models";
  CHECK(fstab_line(b) == "/data/my\\040models /mnt none bind,nofail 0 0");
}

TEST_CASE("a persistent mount with a conflicting fstab is refused before anything changes", "[nas]") {
  auto spec = nfs();
  spec.persist = true;
  auto probe = probe_of(table());
  probe.fstab = "10.0.0.9:/x /mnt nfs defaults 0 0\n";
  auto plan = plan_mount(spec, probe, "gpu2");
  CHECK(plan.action == MountAction::refuse);
  CHECK(plan.refusal == errc::mount_conflict);
  CHECK(plan.reason.find("gpu2: line 1 of /etc/fstab") != std::string::npos);
  probe.fstab = "";
  plan = plan_mount(spec, probe, "gpu2");
  REQUIRE(plan.action == MountAction::mount);
  REQUIRE(plan.new_fstab);
  CHECK(plan.new_fstab->find(fstab_line(spec)) != std::string::npos);
}

TEST_CASE("plan_unmount only takes away what clusterkit would have mounted", "[nas]") {
  NasSpec any;  // no source: whatever NAS is there
  any.kind = NasKind::sshfs;
  auto mounted = probe_of(table("95 90 0:60 / /mnt rw - fuse.sshfs root@10.88.0.250:/srv/nas rw\n"));
  auto plan = plan_unmount(any, mounted, "h1");
  CHECK(plan.action == UnmountAction::unmount);
  CHECK(plan.script.find("umount '/mnt'") != std::string::npos);
  plan = plan_unmount(any, mounted, "h1", {.remove_fstab_entry = false, .lazy = true});
  CHECK(plan.script.find("umount -l '/mnt'") != std::string::npos);

  // Only the lab's tmpfs: nothing to do (it is not ours to unmount).
  plan = plan_unmount(any, probe_of(table()), "h1");
  CHECK(plan.action == UnmountAction::nothing);
  CHECK(plan.script.empty());

  // A source given that is not what is there: refused.
  auto spec = nfs("10.0.0.5:/share");
  plan = plan_unmount(spec, mounted, "h1");
  CHECK(plan.action == UnmountAction::refuse);
  CHECK(plan.reason.find("root@10.88.0.250:/srv/nas (fuse.sshfs) mounted, not 10.0.0.5:/share") != std::string::npos);

  // A non-root user unmounts a FUSE mount with fusermount.
  auto user = mounted;
  user.uid = 1000;
  CHECK(plan_unmount(any, user, "h1").script.find("fusermount -u") != std::string::npos);
}

TEST_CASE("mount failures are explained with the fix", "[nas]") {
  auto spec = nfs();
  CHECK(explain_mount_failure(spec, "gpu1", "mount: /mnt: unknown filesystem type 'nfs'.\n", false)
            .find("the kernel of gpu1 has no nfs support") != std::string::npos);
  CHECK(explain_mount_failure(spec, "gpu1", "mount.nfs: Connection timed out\n", false)
            .find("gpu1 cannot reach 10.0.0.5 on the NFS ports (2049") != std::string::npos);
  CHECK(explain_mount_failure(spec, "gpu1", "mount.nfs: access denied by server while mounting 10.0.0.5:/share\n", false)
            .find("does not export /share to gpu1") != std::string::npos);
  auto s = sshfs();
  CHECK(explain_mount_failure(s, "h1", "Host key verification failed.\nread: Connection reset by peer\n", false)
            .find("does not know the host key of 10.88.0.250") != std::string::npos);
  CHECK(explain_mount_failure(s, "h1", "root@10.88.0.250: Permission denied (publickey).\n", false)
            .find("refused the key h1 offered") != std::string::npos);
  CHECK(explain_mount_failure(s, "h1", "umount: /mnt: target is busy.\n", true)
            .find("`fuser -vm /mnt` lists them") != std::string::npos);
  // Anything else still names the host and quotes the last line.
  auto other = explain_mount_failure(s, "h1", "something odd\n", false);
  CHECK(other == "mounting root@10.88.0.250:/srv/nas at /mnt on h1 failed (something odd)");
}

TEST_CASE("the check report: same source everywhere and every token seen", "[nas]") {
  NasProbeReport probe;
  probe.path = "/mnt";
  for (auto const* h : {"h1", "h2", "h3"}) {
    NasRead r;
    r.host = h;
    r.directory = r.mount_point = r.written = true;
    r.seen = {"h1", "h2", "h3"};
    probe.reads.push_back(r);
  }
  auto sshfs_line = std::string("95 90 0:60 / /mnt rw - fuse.sshfs root@10.88.0.250:/srv/nas rw\n");
  std::vector<std::optional<std::vector<MountEntry>>> mounts(3, parse_mountinfo(table(sshfs_line)));
  auto ok = evaluate_nas_check("/mnt", mounts, probe);
  CHECK(ok.ok());
  CHECK(ok.problems.empty());
  CHECK(ok.hosts[1].mounted);
  CHECK(ok.hosts[1].source == "root@10.88.0.250:/srv/nas");

  // h3 has only its local tmpfs: it sees its own token but not the others'.
  probe.reads[2].seen = {"h3"};
  probe.reads[0].seen = {"h1", "h2"};
  probe.reads[1].seen = {"h1", "h2"};
  mounts[2] = parse_mountinfo(table());
  auto bad = evaluate_nas_check("/mnt", mounts, probe);
  CHECK_FALSE(bad.ok());
  CHECK_FALSE(bad.hosts[2].mounted);
  CHECK(bad.hosts[2].misses == std::vector<std::string>{"h1", "h2"});
  CHECK(bad.hosts[2].problem.find("h3 does not see the files h1, h2 wrote under /mnt") != std::string::npos);
  CHECK(bad.hosts[2].problem.find("nothing shared is mounted there on h3") != std::string::npos);
  CHECK(bad.hosts[0].problem.find("does not see the files h3") != std::string::npos);

  // Different sources on two hosts is a cluster-wide problem.
  mounts[2] = parse_mountinfo(table("95 90 0:60 / /mnt rw - nfs 10.0.0.9:/x rw\n"));
  auto split = evaluate_nas_check("/mnt", mounts, probe);
  REQUIRE_FALSE(split.problems.empty());
  CHECK(split.problems.back().find("the hosts mount different sources at /mnt") != std::string::npos);
}

TEST_CASE("the NAS from an inventory's vars", "[nas]") {
  auto vars = nlohmann::json::parse(R"({"nas_export": "nas.example.internal:/share", "mount_point": "/mnt",
                                        "nas_nfs_version": 4.1, "nas_options": ["actimeo=30"]})");
  auto spec = nas_spec_from_vars(vars, "gpu1");
  CHECK(spec.kind == NasKind::nfs);
  CHECK(spec.source == "nas.example.internal:/share");
  CHECK(spec.nfs_version == "4.1");
  auto opts = nas_mount_options(spec);
  CHECK(std::find(opts.begin(), opts.end(), "vers=4.1") != opts.end());
  CHECK(std::find(opts.begin(), opts.end(), "actimeo=30") != opts.end());
  // Absent fields keep the base's.
  NasSpec base;
  base.mount_point = "/data";
  CHECK(nas_spec_from_vars(nlohmann::json::object(), "gpu1", base).mount_point == "/data");
  CHECK(nas_spec_from_vars(nullptr, "gpu1", base).mount_point == "/data");
  auto sshfs_vars = nlohmann::json::parse(R"({"nas_export": "root@nas:/srv/nas", "nas_type": "sshfs"})");
  CHECK(nas_spec_from_vars(sshfs_vars, "gpu1").kind == NasKind::sshfs);
  // Wrong types name the host and the field.
  CHECK_THROWS_WITH(nas_spec_from_vars(nlohmann::json::parse(R"({"nas_type": "smb"})"), "gpu2"),
                    Catch::Contains("host 'gpu2': vars.nas_type must be nfs, sshfs or bind (not 'smb')"));
  CHECK_THROWS_WITH(nas_spec_from_vars(nlohmann::json::parse(R"({"nas_options": "ro"})"), "gpu2"),
                    Catch::Contains("vars.nas_options must be a list"));
  CHECK_THROWS_WITH(nas_spec_from_vars(nlohmann::json::parse(R"({"nas_export": 5})"), "gpu2"),
                    Catch::Contains("vars.nas_export must be a string"));
}

TEST_CASE("the NAS host is never a client of itself", "[nas]") {
  auto inv = Inventory::parse("hosts: {h1: {roles: [head]}, nas: {roles: [nas]}, h2: {roles: [worker]}}", "lab.yaml");
  std::vector<std::string> skipped;
  auto clients = nas_clients(inv.hosts(), &skipped);
  REQUIRE(clients.size() == 2);
  CHECK(clients[0].spec.name == "h1");
  CHECK(clients[1].spec.name == "h2");
  CHECK(skipped == std::vector<std::string>{"nas"});
  CHECK(nas_clients(inv.select("nas")).empty());
  CHECK(nas_clients(inv.select("h2")).size() == 1);
}
