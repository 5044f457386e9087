// NasMount: one shared folder mounted at the same path on a set of hosts, so
// that a model downloaded once is seen by every GPU host (and by the serving
// containers, through `-v /mnt/...:/models`).
//
// Three kinds: NFS (what cloud NAS services offer; options as they
// recommend), sshfs (any machine with sshd can be the NAS; what the lab
// uses) and bind mounts (a folder of the host itself, e.g. a local disk
// already shared another way).
//
// Two layers:
//  * Pure code, tested without hosts: the mount options, the command lines,
//    the /etc/fstab entry, the parser of /proc/self/mountinfo, and
//    `plan_mount()` / `plan_unmount()`, which decide from what a host
//    reported (its mount table, its mount point, its programs) what to do:
//    keep an existing mount of the same source, mount, or refuse with a
//    sentence that names what is there and the fix.
//  * Operations on hosts, each one probe and at most one change per host:
//    `async_mount`, `async_unmount`, and `async_check` (every host writes a
//    token file and reads every other host's: hosts that see each other's
//    files share the folder).
//
//   clusterkit::NasMount nas({.kind = NasKind::nfs, .source = "10.0.0.5:/share"});
//   auto outcomes = co_await nas.async_mount(hosts, asio::use_awaitable);
//   auto report   = co_await nas.async_check(hosts, asio::use_awaitable);
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"

namespace clusterkit {

enum class NasKind {
  /// `mount -t nfs SERVER:/EXPORT` (needs mount.nfs: nfs-common / nfs-utils).
  nfs,
  /// `sshfs [USER@]HOST:/PATH` over SFTP (needs sshfs and FUSE).
  sshfs,
  /// `mount --bind /PATH` of a folder on the host itself.
  bind,
};

std::string_view to_string(NasKind kind) noexcept;
/// "nfs", "sshfs", "bind"; nullopt for anything else.
std::optional<NasKind> nas_kind_from_string(std::string_view text) noexcept;

struct NasSpec {
  NasKind kind = NasKind::nfs;
  /// nfs: "SERVER:/EXPORT"; sshfs: "[USER@]HOST:/PATH"; bind: "/PATH" on
  /// the mounting host.
  std::string source;
  /// Where the folder appears on every host.
  std::string mount_point = "/mnt";
  /// NFS protocol version: "3" (the default), "4", "4.0", "4.1" or "4.2".
  std::string nfs_version = "3";
  /// Extra mount options ("key=value" or "flag"). One with the key of a
  /// default option replaces it; the others are appended.
  std::vector<std::string> options;
  bool read_only = false;
  /// sshfs: the key and known_hosts file the MOUNTING host uses to reach
  /// the NAS (paths on that host; empty: its ssh defaults), and the port.
  std::string identity_file;
  std::string known_hosts_file;
  int port = 0;
  /// sshfs: let other users (and containers started by the Docker daemon)
  /// read the mount. Needs root, or `user_allow_other` in /etc/fuse.conf.
  bool allow_other = true;
  /// Also write an /etc/fstab entry so the mount comes back after a reboot.
  bool persist = false;
  /// The fstab to edit (tests and labs point this elsewhere).
  std::string fstab_path = "/etc/fstab";
  /// Mount over a folder that is not empty. Its files are hidden (not
  /// lost) until the unmount; refused by default because a model copied
  /// there by hand would seem to vanish.
  bool allow_non_empty = false;
  /// How long a mount or unmount command may take. An NFS mount of an
  /// unreachable server retries for minutes before it gives up.
  std::chrono::seconds timeout{120};
};

// ---------------------------------------------------------------------------
// Pure pieces

/// The options a mount of `spec` uses, in order: the recommended defaults
/// for its kind (NFS v3: vers=3,nolock,proto=tcp,rsize=1048576,
/// wsize=1048576,hard,timeo=600,retrans=2,noresvport; v4.x the same without
/// nolock/proto, with vers=4.x), then `spec.options` (same key: replaced),
/// then `ro` when read_only. Throws Error(errc::invalid_argument) for an
/// unknown NFS version or an option with a comma or whitespace.
std::vector<std::string> nas_mount_options(NasSpec const& spec);

/// The command that mounts `spec` (argv), e.g. {"mount", "-t", "nfs", "-o",
/// "vers=3,...", "10.0.0.5:/share", "/mnt"}. A read-only bind mount needs a
/// second command (`mount -o remount,bind,ro`), which `nas_mount_script`
/// adds.
std::vector<std::string> nas_mount_argv(NasSpec const& spec);

/// The shell script a host runs to mount `spec`: create the mount point,
/// mount, and print the mount table line for it.
std::string nas_mount_script(NasSpec const& spec);

/// Throws Error(errc::invalid_argument) naming the field when `spec`
/// cannot work (no source when `source_required`, relative paths, a source
/// of the wrong shape for its kind, a bad port).
void validate(NasSpec const& spec, bool source_required = true);

/// The NAS an inventory describes for a host, from its `vars` (the
/// defaults' vars merged with its own): `nas_export` (the source),
/// `nas_type` (nfs, sshfs or bind; default nfs), `mount_point`,
/// `nas_nfs_version`, `nas_options` (a list), `nas_identity_file`,
/// `nas_known_hosts_file`. What `vars` lacks keeps `base`'s value.
/// Throws Error(errc::inventory_invalid) naming the host and the field.
///
///   defaults: {vars: {nas_export: "10.0.0.5:/share", mount_point: /mnt}}
NasSpec nas_spec_from_vars(nlohmann::json const& vars, std::string_view host, NasSpec base = {});

/// The hosts that mount the NAS, of those selected: every one but the NAS
/// host itself (role `nas`), which serves the folder and is never a client
/// of itself. `skipped` (if given) receives the names left out.
std::vector<InventoryHost> nas_clients(std::vector<InventoryHost> const& selected,
                                       std::vector<std::string>* skipped = nullptr);

/// One line of /proc/self/mountinfo.
struct MountEntry {
  int id = 0;
  int parent = 0;
  /// "MAJOR:MINOR" of the filesystem.
  std::string device;
  /// The folder of the filesystem that is mounted here ("/" for a whole
  /// filesystem; the bound folder for a bind mount).
  std::string root;
  std::string mount_point;
  std::string mount_options;
  std::string fstype;
  std::string source;
  std::string super_options;
};

/// Parse /proc/self/mountinfo (octal escapes such as \040 decoded).
/// Malformed lines are skipped.
std::vector<MountEntry> parse_mountinfo(std::string_view text);

/// The mount visible at `path` (the last one mounted there), if any.
std::optional<MountEntry> mount_at(std::vector<MountEntry> const& mounts, std::string_view path);

/// For a bind mount of `real_path` (the source, symlinks resolved): the
/// device and root a mount of it shows in mountinfo.
struct BindOrigin {
  std::string device;
  std::string root;
};
std::optional<BindOrigin> bind_origin(std::vector<MountEntry> const& mounts, std::string_view real_path);

/// True when `entry` is a mount of `spec`'s source (NFS: an nfs* type and
/// the same SERVER:/EXPORT; sshfs: fuse.sshfs and the same source; bind:
/// the device and root of `origin`).
bool mount_matches(NasSpec const& spec, MountEntry const& entry, std::optional<BindOrigin> const& origin = {});

/// What a host told us before a mount or unmount.
struct MountProbe {
  std::vector<MountEntry> mounts;
  bool mount_point_exists = false;
  bool mount_point_is_directory = false;
  bool mount_point_empty = true;
  /// A few names in the mount point (for the message when not empty).
  std::vector<std::string> mount_point_entries;
  /// The programs the kind needs are on the host (mount.nfs, sshfs).
  bool helper_present = true;
  /// A bind source resolved with `realpath` ("" when it does not exist).
  std::string bind_source_real;
  int uid = -1;
  /// The fstab's text (only read when asked: persist).
  std::optional<std::string> fstab;
};

/// The script that produces a MountProbe, and its parser.
std::string mount_probe_script(NasSpec const& spec, bool read_fstab);
/// Throws Error(errc::parse_error) when the output is not the probe's.
MountProbe parse_mount_probe(std::string_view output);

/// An edit to an fstab: the new text, whether anything changed, and a
/// conflict (a sentence) when another entry holds the mount point.
struct FstabEdit {
  std::string text;
  bool changed = false;
  std::string conflict;
};

/// The fstab line for `spec` (with `_netdev` for network kinds, so boot
/// waits for the network).
std::string fstab_line(NasSpec const& spec);
/// Add or update the entry for `spec.mount_point`. An entry for that mount
/// point with another source is a conflict, and nothing changes.
FstabEdit fstab_with_entry(std::string_view fstab, NasSpec const& spec);
/// Remove the entries for `mount_point` (comments and other lines kept).
FstabEdit fstab_without_entry(std::string_view fstab, std::string_view mount_point);

enum class MountAction {
  /// The same source is already mounted there: nothing to do.
  keep,
  mount,
  /// Something else is there, or the host cannot mount this kind.
  refuse,
};
std::string_view to_string(MountAction action) noexcept;

struct MountPlan {
  MountAction action = MountAction::refuse;
  /// keep: what is mounted; refuse: what is wrong and the fix.
  std::string reason;
  /// errc::mount_conflict, program_missing or invalid_argument when refused.
  std::error_code refusal;
  /// The script to run (mount), empty otherwise.
  std::string script;
  /// A new fstab to write (persist, and the entry is missing or differs).
  std::optional<std::string> new_fstab;
};

/// Decide what to do on a host named `host` from its probe.
MountPlan plan_mount(NasSpec const& spec, MountProbe const& probe, std::string_view host);

enum class UnmountAction {
  /// Nothing of ours is mounted there: nothing to do.
  nothing,
  unmount,
  refuse,
};
std::string_view to_string(UnmountAction action) noexcept;

struct UnmountPlan {
  UnmountAction action = UnmountAction::nothing;
  std::string reason;
  std::error_code refusal;
  std::string script;
  std::optional<std::string> new_fstab;
  /// What was mounted (for the report).
  std::optional<MountEntry> entry;
};

struct UnmountOptions {
  /// Also remove the fstab entry for the mount point.
  bool remove_fstab_entry = false;
  /// `umount -l`: detach now, clean up when the last user closes its files.
  bool lazy = false;
};

/// With `spec.source` set, only a mount of that source is unmounted. With
/// it empty, a network or FUSE mount (nfs*, cifs, fuse.*) is; anything else
/// (a tmpfs, a disk) is refused, so that a stray `umount` cannot take away
/// a filesystem clusterkit did not mount.
UnmountPlan plan_unmount(NasSpec const& spec, MountProbe const& probe, std::string_view host,
                         UnmountOptions const& options = {});

/// The sentence for a failed mount or unmount command: names the host and
/// says what to do, from the command's stderr ("No such device" on NFS ->
/// the kernel lacks NFS; "target is busy" -> what holds it; ...).
std::string explain_mount_failure(NasSpec const& spec, std::string_view host, std::string_view stderr_text,
                                  bool unmounting);

// ---------------------------------------------------------------------------
// Do the hosts share one folder? (used by `async_check` and by preflight)

/// One host's view of the NAS path.
struct NasRead {
  std::string host;
  /// The path exists and is a directory.
  bool directory = false;
  /// The path is a mount point (something is mounted there).
  bool mount_point = false;
  std::string filesystem_type;
  /// This host wrote its token file under the path.
  bool written = false;
  std::string write_error;
  /// The hosts whose token files this host sees (itself included when it
  /// wrote one): hosts that see each other's files share the filesystem.
  std::vector<std::string> seen;
  /// Model folder with config.json at the same path (when asked).
  std::optional<bool> model_present;
  /// The probe itself failed (connection...).
  std::string error;
};

struct NasProbeReport {
  std::string path;
  std::string model_path;
  /// The random name part of this run's token files.
  std::string token;
  std::vector<NasRead> reads;
  nlohmann::json to_json() const;
};


/// Host number `index` writes `.clusterkit-preflight-TOKEN-INDEX` (content
/// "TOKEN-INDEX") under `path`; prints `@@ck-nas-written` or
/// `@@ck-nas-error REASON`.
std::string nas_write_script(std::string const& path, std::string const& token, std::size_t index);
/// Says which of the `hosts` token files are visible (and intact), and
/// whether the path is a directory, a mount point, its filesystem type, and
/// the model. Files are looked up by name, never by listing the folder: an
/// NFS client may serve a folder listing from its cache for a minute, but a
/// name it has never looked up goes to the server.
std::string nas_read_script(std::string const& path, std::string const& token, std::size_t hosts,
                            std::string const& model_path);
/// `hosts[i]` is the host that wrote token file i.
NasRead parse_nas_read_output(std::string_view host, std::string_view token, std::vector<std::string> const& hosts,
                              std::string_view output);
/// Removes this run's token files (the `hosts` names).
std::string nas_cleanup_script(std::string const& path, std::string const& token, std::size_t hosts);

using NasProbeSignature = void(NasProbeReport);

namespace detail {
void start_probe_nas(std::vector<Host> hosts, std::string path, std::string model_path,
                     asio::any_completion_handler<NasProbeSignature> handler);
}  // namespace detail

/// Every host writes a token file under `path` (a random name per run);
/// then every host lists the token files it sees (and checks
/// `model_path`/config.json when not empty); then the files are removed.
/// Hosts that see each other's files share the filesystem.
template <class CompletionToken = asio::deferred_t>
auto async_probe_nas(std::vector<Host> hosts, std::string path, std::string model_path = {},
                     CompletionToken&& token = {}) {
  return asio::async_initiate<CompletionToken, NasProbeSignature>(
      [](auto handler, std::vector<Host> h, std::string p, std::string m) {
        detail::start_probe_nas(std::move(h), std::move(p), std::move(m), std::move(handler));
      },
      token, std::move(hosts), std::move(path), std::move(model_path));
}

// ---------------------------------------------------------------------------
// Operations on hosts

struct MountOutcome {
  std::string host;
  /// Empty on success (mounted or kept; nothing / unmounted).
  std::error_code error;
  /// keep / mount / refuse for mounts; for unmounts the UnmountAction's
  /// name ("nothing", "unmount", "refuse").
  std::string action;
  /// A sentence: what was done, or what is wrong and the fix.
  std::string message;
  /// The mount table entry at the mount point afterwards (mounts), or the
  /// one that was removed (unmounts).
  std::optional<MountEntry> entry;
  bool fstab_changed = false;

  bool ok() const { return !error; }
  nlohmann::json to_json() const;
};

/// One host's part of a check.
struct NasHostView {
  std::string host;
  /// What is mounted at the path ("" when it is a plain folder).
  std::string source;
  std::string fstype;
  bool mounted = false;
  /// The hosts whose token files this host saw (itself included).
  std::vector<std::string> sees;
  /// The hosts whose token files it did not see.
  std::vector<std::string> misses;
  /// A problem on this host (a sentence), empty when fine.
  std::string problem;
};

struct NasCheckReport {
  std::string path;
  std::vector<NasHostView> hosts;
  /// Every host has the path mounted from the same source, and every host
  /// saw every other host's token file.
  bool ok() const { return problems.empty() && !hosts.empty(); }
  /// Cluster-wide findings (sources differ, ...), sentences.
  std::vector<std::string> problems;
  nlohmann::json to_json() const;
};

/// Build the report from each host's mount table and the token probe.
/// Pure: `mounts[i]` is the mountinfo of `probe.reads[i].host` (nullopt
/// when it could not be read).
NasCheckReport evaluate_nas_check(std::string const& path, std::vector<std::optional<std::vector<MountEntry>>> const& mounts,
                                  NasProbeReport const& probe);

using MountSignature = void(std::vector<MountOutcome>);
using NasCheckSignature = void(NasCheckReport);

namespace detail {
void start_nas_mount(NasSpec spec, std::vector<Host> hosts, bool unmount, UnmountOptions options,
                     asio::any_completion_handler<MountSignature> handler);
void start_nas_check(NasSpec spec, std::vector<Host> hosts, asio::any_completion_handler<NasCheckSignature> handler);
}  // namespace detail

class NasMount {
public:
  /// Throws Error(errc::invalid_argument) when the spec cannot work. The
  /// source may be empty for unmounting any shared mount at the mount point
  /// and for checks; `async_mount` then refuses on every host.
  explicit NasMount(NasSpec spec);

  NasSpec const& spec() const { return spec_; }

  /// Mount on every host at once: probe (mount table, mount point,
  /// programs), then mount, keep or refuse; with `persist`, the fstab entry
  /// too. One outcome per host, in order; never completes with an error of
  /// its own. Cancelling stops the commands running.
  template <class CompletionToken = asio::deferred_t>
  auto async_mount(std::vector<Host> hosts, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, MountSignature>(
        [spec = spec_](auto handler, std::vector<Host> h) {
          detail::start_nas_mount(spec, std::move(h), false, {}, std::move(handler));
        },
        token, std::move(hosts));
  }

  /// Unmount on every host (see `plan_unmount` for what is refused).
  template <class CompletionToken = asio::deferred_t>
  auto async_unmount(std::vector<Host> hosts, UnmountOptions options = {}, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, MountSignature>(
        [spec = spec_](auto handler, std::vector<Host> h, UnmountOptions o) {
          detail::start_nas_mount(spec, std::move(h), true, o, std::move(handler));
        },
        token, std::move(hosts), options);
  }

  /// Does every host see the same folder at the mount point? Each host's
  /// mount table, then token files written by each host and read by all.
  template <class CompletionToken = asio::deferred_t>
  auto async_check(std::vector<Host> hosts, CompletionToken&& token = {}) const {
    return asio::async_initiate<CompletionToken, NasCheckSignature>(
        [spec = spec_](auto handler, std::vector<Host> h) {
          detail::start_nas_check(spec, std::move(h), std::move(handler));
        },
        token, std::move(hosts));
  }

private:
  NasSpec spec_;
};

/// Blocking forms (never from the thread that runs the hosts' executor).
std::vector<MountOutcome> mount_nas(NasMount const& nas, std::vector<Host> hosts);
std::vector<MountOutcome> unmount_nas(NasMount const& nas, std::vector<Host> hosts, UnmountOptions options = {});
NasCheckReport check_nas(NasMount const& nas, std::vector<Host> hosts);

}  // namespace clusterkit
