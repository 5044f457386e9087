// NasMount, the pure half: options, command lines, fstab entries, the mount
// table parser and the decisions. Nothing here touches a host.
#include <algorithm>
#include <set>
#include <sstream>

#include "clusterkit/nas.hpp"
#include "clusterkit/shell.hpp"
#include "core/text.hpp"

namespace clusterkit {

using detail::lines_of;
using detail::split_ws;
using detail::join;
using detail::to_long;

namespace {

[[noreturn]] void invalid(std::string message) { throw Error(make_error_code(errc::invalid_argument), std::move(message)); }

std::string strip_trailing_slashes(std::string_view s) {
  std::string out(s);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string option_key(std::string_view option) { return std::string(option.substr(0, option.find('='))); }

/// sshfs's "[user@]host:/path" split at the first ':' after the host.
bool split_remote(std::string_view source, std::string& host, std::string& path) {
  // An IPv6 host is written in brackets: [fe80::1]:/share.
  std::size_t colon;
  if (auto at = source.find('@'); source.size() > at + 1 && at != std::string_view::npos && source[at + 1] == '[') {
    auto close = source.find(']', at);
    colon = close == std::string_view::npos ? close : source.find(':', close);
  } else if (!source.empty() && source.front() == '[') {
    auto close = source.find(']');
    colon = close == std::string_view::npos ? close : source.find(':', close);
  } else {
    colon = source.find(':');
  }
  if (colon == std::string_view::npos || colon == 0) return false;
  host = std::string(source.substr(0, colon));
  path = std::string(source.substr(colon + 1));
  return !host.empty();
}

/// Network or FUSE filesystems, and bind mounts of a subfolder: what a
/// shared folder looks like, as opposed to a local disk or a tmpfs.
bool looks_shared(MountEntry const& e) {
  static constexpr std::string_view prefixes[] = {"nfs", "cifs", "smb", "fuse", "9p", "ceph", "glusterfs", "lustre", "virtiofs"};
  for (auto p : prefixes)
    if (e.fstype.starts_with(p)) return true;
  return e.root != "/";
}

std::string describe(MountEntry const& e) { return e.source + " (" + e.fstype + ")"; }

// mountinfo and fstab write space, tab, newline and backslash as octal.
std::string decode_octal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.size() - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string encode_octal(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case ' ': out += "\\040"; break;
      case '\t': out += "\\011"; break;
      case '\n': out += "\\012"; break;
      case '\\': out += "\\134"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

bool is_absolute_path(std::string_view p) { return !p.empty() && p.front() == '/'; }

}  // namespace

std::string_view to_string(NasKind kind) noexcept {
  switch (kind) {
    case NasKind::nfs: return "nfs";
    case NasKind::sshfs: return "sshfs";
    case NasKind::bind: return "bind";
  }
  return "?";
}

std::optional<NasKind> nas_kind_from_string(std::string_view text) noexcept {
  if (text == "nfs") return NasKind::nfs;
  if (text == "sshfs") return NasKind::sshfs;
  if (text == "bind") return NasKind::bind;
  return std::nullopt;
}

std::string_view to_string(MountAction action) noexcept {
  switch (action) {
    case MountAction::keep: return "keep";
    case MountAction::mount: return "mount";
    case MountAction::refuse: return "refuse";
  }
  return "?";
}

std::string_view to_string(UnmountAction action) noexcept {
  switch (action) {
    case UnmountAction::nothing: return "nothing";
    case UnmountAction::unmount: return "unmount";
    case UnmountAction::refuse: return "refuse";
  }
  return "?";
}

void validate(NasSpec const& spec, bool source_required) {
  if (!is_absolute_path(spec.mount_point))
    invalid("the mount point '" + spec.mount_point + "' must be an absolute path (e.g. /mnt)");
  if (spec.mount_point.find_first_of("\n\r") != std::string::npos) invalid("the mount point contains a line break");
  if (spec.source.find_first_of("\n\r") != std::string::npos) invalid("the NAS source contains a line break");
  if (strip_trailing_slashes(spec.mount_point) == "/") invalid("refusing to mount over / (pick a mount point such as /mnt)");
  if (spec.source.empty()) {
    if (!source_required) return;
    switch (spec.kind) {
      case NasKind::nfs: invalid("an NFS mount needs a source: SERVER:/EXPORT (e.g. 10.0.0.5:/share)");
      case NasKind::sshfs: invalid("an sshfs mount needs a source: [USER@]HOST:/PATH (e.g. root@nas:/srv/nas)");
      case NasKind::bind: invalid("a bind mount needs a source folder on the host (e.g. /data/models)");
    }
  }
  std::string host, path;
  switch (spec.kind) {
    case NasKind::nfs:
      if (!split_remote(spec.source, host, path) || !is_absolute_path(path))
        invalid("the NFS source '" + spec.source + "' is not SERVER:/EXPORT (e.g. 10.0.0.5:/share or nas.example.com:/)");
      break;
    case NasKind::sshfs:
      if (!split_remote(spec.source, host, path) || (!path.empty() && !is_absolute_path(path)))
        invalid("the sshfs source '" + spec.source + "' is not [USER@]HOST:/PATH (e.g. root@10.0.0.5:/srv/nas)");
      break;
    case NasKind::bind:
      if (!is_absolute_path(spec.source))
        invalid("the bind source '" + spec.source + "' must be an absolute path on the host");
      if (strip_trailing_slashes(spec.source) == strip_trailing_slashes(spec.mount_point))
        invalid("a bind mount of " + spec.mount_point + " onto itself does nothing");
      break;
  }
  if (spec.port < 0 || spec.port > 65535) invalid("the NAS's ssh port " + std::to_string(spec.port) + " is not a TCP port (1-65535, or 0 for ssh's default; --port)");
  if (spec.persist && !is_absolute_path(spec.fstab_path))
    invalid("the fstab path '" + spec.fstab_path + "' must be absolute");
  (void)nas_mount_options(spec);  // throws for bad options and versions
}

std::vector<std::string> nas_mount_options(NasSpec const& spec) {
  std::vector<std::string> opts;
  switch (spec.kind) {
    case NasKind::nfs: {
      auto const& v = spec.nfs_version;
      if (v == "3") {
        // What cloud NAS services recommend for NFSv3: no NLM locking
        // (the lock daemon is rarely reachable), TCP, 1 MiB transfers, hard
        // mounts with a 60 s timeout, and a fresh source port after a
        // reconnect (noresvport) so a failover is survived.
        opts = {"vers=3", "nolock", "proto=tcp", "rsize=1048576", "wsize=1048576", "hard", "timeo=600", "retrans=2",
                "noresvport"};
      } else if (v == "4" || v == "4.0" || v == "4.1" || v == "4.2") {
        opts = {v == "4" ? std::string("vers=4.0") : "vers=" + v, "rsize=1048576", "wsize=1048576", "hard", "timeo=600",
                "retrans=2", "noresvport"};
      } else {
        invalid("NFS version '" + v + "' is not one of 3, 4, 4.0, 4.1, 4.2");
      }
      break;
    }
    case NasKind::sshfs:
      // Reconnect after a dropped link instead of failing every read, notice
      // a dead NAS within ~45 s, never prompt (a prompt would hang), and keep
      // host keys strict. No directory cache: sshfs otherwise keeps file
      // sizes and listings for 20 s, and a host that looks right after
      // another host rewrote a shard sees the old, truncated file (seen in
      // the lab: a resynced shard still read as truncated on the other
      // host). Opening a model's few dozen files pays a round trip each.
      opts = {"reconnect", "ServerAliveInterval=15", "ServerAliveCountMax=3", "BatchMode=yes", "StrictHostKeyChecking=yes",
              "dir_cache=no"};
      if (!spec.identity_file.empty()) opts.push_back("IdentityFile=" + spec.identity_file);
      if (!spec.known_hosts_file.empty()) opts.push_back("UserKnownHostsFile=" + spec.known_hosts_file);
      if (spec.port) opts.push_back("port=" + std::to_string(spec.port));
      if (spec.allow_other) opts.push_back("allow_other");
      break;
    case NasKind::bind: break;
  }
  for (auto const& o : spec.options) {
    if (o.empty() || o.find_first_of(", \t\n\r") != std::string::npos)
      invalid("mount option '" + o + "' is empty or has a comma or whitespace; give one option per entry");
    auto key = option_key(o);
    // NFS spells the version two ways; either replaces the default.
    auto same = [&](std::string const& existing) {
      auto k = option_key(existing);
      if (spec.kind == NasKind::nfs && (key == "vers" || key == "nfsvers") && (k == "vers" || k == "nfsvers")) return true;
      return k == key;
    };
    auto it = std::find_if(opts.begin(), opts.end(), same);
    if (it != opts.end())
      *it = o;
    else
      opts.push_back(o);
  }
  if (spec.read_only && spec.kind != NasKind::bind && std::find(opts.begin(), opts.end(), "ro") == opts.end())
    opts.push_back("ro");
  return opts;
}

std::vector<std::string> nas_mount_argv(NasSpec const& spec) {
  auto opts = nas_mount_options(spec);
  auto mp = strip_trailing_slashes(spec.mount_point);
  switch (spec.kind) {
    case NasKind::nfs: return {"mount", "-t", "nfs", "-o", join(opts, ","), spec.source, mp};
    case NasKind::sshfs: return {"sshfs", "-o", join(opts, ","), spec.source, mp};
    case NasKind::bind: {
      std::vector<std::string> argv{"mount", "--bind"};
      if (!opts.empty()) argv.insert(argv.end(), {"-o", join(opts, ",")});
      argv.push_back(spec.source);
      argv.push_back(mp);
      return argv;
    }
  }
  return {};
}

std::string nas_mount_script(NasSpec const& spec) {
  auto mp = shell::quote(strip_trailing_slashes(spec.mount_point));
  auto argv = nas_mount_argv(spec);
  std::ostringstream s;
  // A failed mount leaves nothing behind: the folders mkdir made for it (and
  // only those) are removed again.
  s << "set -e\n"
    << "mp=" << mp << "\n"
    << "created=\n"
    << "if [ ! -e \"$mp\" ]; then created=$mp; while [ ! -e \"$(dirname -- \"$created\")\" ]; do "
       "created=$(dirname -- \"$created\"); done; fi\n"
    << "unmade() { [ -n \"$created\" ] || return 0; d=$mp; while rmdir -- \"$d\" 2>/dev/null && "
       "[ \"$d\" != \"$created\" ]; do d=$(dirname -- \"$d\"); done; }\n"
    // Stopped (a timeout or Ctrl-C sends TERM to the script's process
    // group, most often while an NFS server does not answer): the same.
    << "trap 'unmade; exit 143' TERM INT HUP\n"
    << "mkdir -p -- \"$mp\"\n"
    << shell::join(argv) << " || { rc=$?; unmade; exit $rc; }\n";
  if (spec.kind == NasKind::bind && spec.read_only)
    // A bind mount takes ro only on a remount; if that fails, the mount is
    // undone too (a read-write NAS where read-only was asked is worse than none).
    s << "mount -o remount,bind,ro \"$mp\" || { rc=$?; umount -- \"$mp\" 2>/dev/null || true; unmade; exit $rc; }\n";
  s << "trap - TERM INT HUP\n"
    << "echo @@ck-mountinfo\ncat /proc/self/mountinfo\necho @@ck-mountinfo-end\n";
  return s.str();
}

std::vector<InventoryHost> nas_clients(std::vector<InventoryHost> const& selected, std::vector<std::string>* skipped) {
  std::vector<InventoryHost> clients;
  for (auto const& h : selected) {
    if (std::find(h.roles.begin(), h.roles.end(), "nas") != h.roles.end()) {
      if (skipped) skipped->push_back(h.spec.name);
      continue;
    }
    clients.push_back(h);
  }
  return clients;
}

NasSpec nas_spec_from_vars(nlohmann::json const& vars, std::string_view host, NasSpec base) {
  if (vars.is_null()) return base;
  auto bad = [&](std::string const& field, std::string const& want) {
    throw Error(make_error_code(errc::inventory_invalid),
                "host '" + std::string(host) + "': vars." + field + " must be " + want);
  };
  if (!vars.is_object()) bad("", "a map");
  auto text = [&](char const* field, std::string& into) {
    auto it = vars.find(field);
    if (it == vars.end() || it->is_null()) return;
    if (!it->is_string()) bad(field, "a string");
    into = it->get<std::string>();
  };
  text("nas_export", base.source);
  text("mount_point", base.mount_point);
  text("nas_identity_file", base.identity_file);
  text("nas_known_hosts_file", base.known_hosts_file);
  if (auto it = vars.find("nas_nfs_version"); it != vars.end() && !it->is_null()) {
    if (it->is_number()) base.nfs_version = it->dump();
    else if (it->is_string()) base.nfs_version = it->get<std::string>();
    else bad("nas_nfs_version", "3, 4, 4.0, 4.1 or 4.2");
  }
  std::string type;
  text("nas_type", type);
  if (!type.empty()) {
    auto kind = nas_kind_from_string(type);
    if (!kind) bad("nas_type", "nfs, sshfs or bind (not '" + type + "')");
    base.kind = *kind;
  }
  if (auto it = vars.find("nas_options"); it != vars.end() && !it->is_null()) {
    if (!it->is_array()) bad("nas_options", "a list of mount options");
    base.options.clear();
    for (auto const& o : *it) {
      if (!o.is_string()) bad("nas_options", "a list of strings");
      base.options.push_back(o.get<std::string>());
    }
  }
  return base;
}

// ---------------------------------------------------------------------------
// mountinfo

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  for (auto line : lines_of(text)) {
    auto w = split_ws(line);
    // id parent dev root mountpoint options [optional...] - fstype source super
    auto dash = std::find(w.begin(), w.end(), std::string_view("-"));
    if (w.size() < 10 || dash == w.end() || dash - w.begin() < 6 || w.end() - dash < 4) continue;
    auto id = detail::to_long(w[0]), parent = detail::to_long(w[1]);
    if (!id || !parent) continue;
    MountEntry e;
    e.id = static_cast<int>(*id);
    e.parent = static_cast<int>(*parent);
    e.device = std::string(w[2]);
    e.root = decode_octal(w[3]);
    e.mount_point = decode_octal(w[4]);
    e.mount_options = std::string(w[5]);
    e.fstype = std::string(dash[1]);
    e.source = decode_octal(dash[2]);
    e.super_options = std::string(dash[3]);
    out.push_back(std::move(e));
  }
  return out;
}

std::optional<MountEntry> mount_at(std::vector<MountEntry> const& mounts, std::string_view path) {
  auto want = strip_trailing_slashes(path);
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it)
    if (it->mount_point == want) return *it;
  return std::nullopt;
}

std::optional<BindOrigin> bind_origin(std::vector<MountEntry> const& mounts, std::string_view real_path) {
  auto path = strip_trailing_slashes(real_path);
  // The mount that holds the path: the last one whose mount point is the
  // longest prefix of it (at a '/' boundary).
  MountEntry const* best = nullptr;
  for (auto const& m : mounts) {
    auto const& mp = m.mount_point;
    bool prefix = mp == "/" || path == mp || (path.size() > mp.size() && path.compare(0, mp.size(), mp) == 0 && path[mp.size()] == '/');
    if (prefix && (!best || mp.size() >= best->mount_point.size())) best = &m;
  }
  if (!best) return std::nullopt;
  auto rest = best->mount_point == "/" ? path : path.substr(best->mount_point.size());
  std::string root = best->root == "/" ? rest : best->root + rest;
  if (root.empty()) root = "/";
  return BindOrigin{best->device, strip_trailing_slashes(root)};
}

bool mount_matches(NasSpec const& spec, MountEntry const& entry, std::optional<BindOrigin> const& origin) {
  switch (spec.kind) {
    case NasKind::nfs:
      return entry.fstype.starts_with("nfs") && strip_trailing_slashes(entry.source) == strip_trailing_slashes(spec.source);
    case NasKind::sshfs:
      return entry.fstype == "fuse.sshfs" && strip_trailing_slashes(entry.source) == strip_trailing_slashes(spec.source);
    case NasKind::bind:
      return origin && entry.device == origin->device && strip_trailing_slashes(entry.root) == origin->root;
  }
  return false;
}

// ---------------------------------------------------------------------------
// The probe

std::string mount_probe_script(NasSpec const& spec, bool read_fstab) {
  auto mp = shell::quote(strip_trailing_slashes(spec.mount_point));
  std::ostringstream s;
  s << "echo @@ck-probe\n"
    << "printf '@@ck-uid %s\\n' \"$(id -u)\"\n"
    << "if [ -d " << mp << " ]; then echo '@@ck-mp dir'\n"
    // Up to three names, so a refusal can say what is there.
    << "  ls -A " << mp << " 2>/dev/null | head -n 3 | while IFS= read -r ck_n; do printf '@@ck-mp-entry %s\\n' \"$ck_n\"; done\n"
    << "elif [ -e " << mp << " ]; then echo '@@ck-mp file'\n"
    << "else echo '@@ck-mp missing'; fi\n";
  switch (spec.kind) {
    case NasKind::nfs:
      // root's PATH over ssh may lack /sbin on some systems; look there too.
      s << "if command -v mount.nfs >/dev/null 2>&1 || [ -x /sbin/mount.nfs ] || [ -x /usr/sbin/mount.nfs ]; "
           "then echo '@@ck-helper yes'; else echo '@@ck-helper no'; fi\n";
      break;
    case NasKind::sshfs:
      s << "if command -v sshfs >/dev/null 2>&1; then echo '@@ck-helper yes'; else echo '@@ck-helper no'; fi\n";
      break;
    case NasKind::bind:
      s << "echo '@@ck-helper yes'\n"
        << "if ck_r=$(realpath -- " << shell::quote(spec.source) << " 2>/dev/null) && [ -d \"$ck_r\" ]; "
        << "then printf '@@ck-bind-source %s\\n' \"$ck_r\"; else echo '@@ck-bind-source-missing'; fi\n";
      break;
  }
  if (read_fstab) {
    auto f = shell::quote(spec.fstab_path);
    // Framed by its length, so any content (no final newline, '@@' lines)
    // comes back exactly.
    s << "if [ -f " << f << " ]; then printf '@@ck-fstab %s\\n' \"$(wc -c < " << f << " | tr -d ' ')\"; cat " << f
      << "; echo; else echo '@@ck-fstab-missing'; fi\n";
  }
  s << "echo @@ck-mountinfo\ncat /proc/self/mountinfo\necho @@ck-mountinfo-end\n";
  return s.str();
}

MountProbe parse_mount_probe(std::string_view output) {
  MountProbe p;
  bool saw_probe = false, saw_mountinfo = false;
  std::size_t pos = 0;
  auto next_line = [&](std::string_view& line) {
    if (pos >= output.size()) return false;
    auto nl = output.find('\n', pos);
    line = output.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? output.size() : nl + 1;
    return true;
  };
  std::string_view line;
  while (next_line(line)) {
    if (line == "@@ck-probe") {
      saw_probe = true;
    } else if (line.starts_with("@@ck-uid ")) {
      p.uid = static_cast<int>(detail::to_long(detail::trim(line.substr(9))).value_or(-1));
    } else if (line == "@@ck-mp dir") {
      p.mount_point_exists = p.mount_point_is_directory = true;
    } else if (line == "@@ck-mp file") {
      p.mount_point_exists = true;
    } else if (line.starts_with("@@ck-mp-entry ")) {
      p.mount_point_empty = false;
      p.mount_point_entries.push_back(std::string(line.substr(14)));
    } else if (line == "@@ck-helper no") {
      p.helper_present = false;
    } else if (line.starts_with("@@ck-bind-source ")) {
      p.bind_source_real = std::string(line.substr(17));
    } else if (line.starts_with("@@ck-fstab ")) {
      auto n = detail::to_u64(detail::trim(line.substr(11)));
      if (!n || pos + *n > output.size()) throw Error(make_error_code(errc::parse_error), "the fstab in the probe's output is cut short");
      p.fstab = std::string(output.substr(pos, *n));
      pos += *n;
      if (pos < output.size() && output[pos] == '\n') ++pos;  // the `echo` after `cat`
    } else if (line == "@@ck-fstab-missing") {
      p.fstab = std::string();
    } else if (line == "@@ck-mountinfo") {
      auto end = output.find("\n@@ck-mountinfo-end", pos - 1);
      if (end == std::string_view::npos) throw Error(make_error_code(errc::parse_error), "the mount table in the probe's output is cut short");
      p.mounts = parse_mountinfo(output.substr(pos, end + 1 - pos));
      saw_mountinfo = true;
      pos = end + 1;
    }
  }
  if (!saw_probe || !saw_mountinfo)
    throw Error(make_error_code(errc::parse_error), "the host did not print what the mount probe prints (is /bin/sh a POSIX shell?)");
  return p;
}

// ---------------------------------------------------------------------------
// fstab

std::string fstab_line(NasSpec const& spec) {
  auto opts = nas_mount_options(spec);
  std::string type;
  switch (spec.kind) {
    case NasKind::nfs: type = "nfs"; break;
    case NasKind::sshfs: type = "fuse.sshfs"; break;
    case NasKind::bind:
      type = "none";
      opts.insert(opts.begin(), "bind");
      if (spec.read_only) opts.push_back("ro");
      break;
  }
  if (spec.kind != NasKind::bind) {
    // Wait for the network at boot, and do not hold the boot hostage when
    // the NAS is down.
    opts.push_back("_netdev");
  }
  opts.push_back("nofail");
  return encode_octal(spec.source) + " " + encode_octal(strip_trailing_slashes(spec.mount_point)) + " " + type + " " +
         join(opts, ",") + " 0 0";
}

namespace {

struct FstabFields {
  std::string source, mount_point;
};

std::optional<FstabFields> fstab_fields(std::string_view line) {
  auto t = detail::trim(line);
  if (t.empty() || t.front() == '#') return std::nullopt;
  auto w = split_ws(t);
  if (w.size() < 2) return std::nullopt;
  return FstabFields{decode_octal(w[0]), strip_trailing_slashes(decode_octal(w[1]))};
}

/// The text split into lines, keeping whether it ended with a newline.
std::vector<std::string> fstab_lines(std::string_view text) {
  std::vector<std::string> out;
  for (auto l : lines_of(text)) out.emplace_back(l);
  return out;
}

std::string join_lines(std::vector<std::string> const& lines) {
  std::string out;
  for (auto const& l : lines) out += l + "\n";
  return out;
}

}  // namespace

FstabEdit fstab_with_entry(std::string_view fstab, NasSpec const& spec) {
  auto want = fstab_line(spec);
  auto mp = strip_trailing_slashes(spec.mount_point);
  auto lines = fstab_lines(fstab);
  FstabEdit edit;
  std::optional<std::size_t> ours;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto f = fstab_fields(lines[i]);
    if (!f || f->mount_point != mp) continue;
    if (strip_trailing_slashes(f->source) != strip_trailing_slashes(spec.source)) {
      edit.conflict = "line " + std::to_string(i + 1) + " of " + spec.fstab_path + " already mounts " + f->source +
                      " at " + mp + " (`" + lines[i] + "`); remove or change it, or pick another mount point";
      edit.text = std::string(fstab);
      return edit;
    }
    if (ours) {
      edit.conflict = spec.fstab_path + " has several entries for " + mp + " (lines " + std::to_string(*ours + 1) + " and " +
                      std::to_string(i + 1) + "); keep one";
      edit.text = std::string(fstab);
      return edit;
    }
    ours = i;
  }
  if (ours) {
    if (lines[*ours] == want) {
      edit.text = std::string(fstab);
      return edit;
    }
    lines[*ours] = want;
  } else {
    lines.push_back("# added by clusterkit (nas mount --persist)");
    lines.push_back(want);
  }
  edit.text = join_lines(lines);
  edit.changed = true;
  return edit;
}

FstabEdit fstab_without_entry(std::string_view fstab, std::string_view mount_point) {
  auto mp = strip_trailing_slashes(mount_point);
  auto lines = fstab_lines(fstab);
  std::vector<std::string> kept;
  FstabEdit edit;
  for (auto const& l : lines) {
    auto f = fstab_fields(l);
    if (f && f->mount_point == mp) {
      edit.changed = true;
      // Our own comment line goes with our entry.
      if (!kept.empty() && kept.back() == "# added by clusterkit (nas mount --persist)") kept.pop_back();
      continue;
    }
    kept.push_back(l);
  }
  edit.text = edit.changed ? join_lines(kept) : std::string(fstab);
  return edit;
}

// ---------------------------------------------------------------------------
// Decisions

namespace {

std::string install_hint(NasKind kind) {
  switch (kind) {
    case NasKind::nfs:
      return "install the NFS client (`apt-get install -y nfs-common` on Debian/Ubuntu, `dnf install -y nfs-utils` on "
             "RHEL/Rocky) and run again";
    case NasKind::sshfs:
      return "install sshfs (`apt-get install -y sshfs` on Debian/Ubuntu, `dnf install -y fuse-sshfs` on RHEL/Rocky) and "
             "run again";
    case NasKind::bind: return "";
  }
  return "";
}

std::string entries_text(MountProbe const& probe) {
  std::string out;
  for (auto const& e : probe.mount_point_entries) out += (out.empty() ? "" : ", ") + e;
  return out;
}

}  // namespace

MountPlan plan_mount(NasSpec const& spec, MountProbe const& probe, std::string_view host_name) {
  std::string host(host_name);
  auto mp = strip_trailing_slashes(spec.mount_point);
  MountPlan plan;
  auto refuse = [&](errc code, std::string reason) {
    plan.action = MountAction::refuse;
    plan.refusal = make_error_code(code);
    plan.reason = std::move(reason);
    plan.script.clear();
    plan.new_fstab.reset();
    return plan;
  };

  // The fstab first: a conflict there refuses before anything changes.
  if (spec.persist) {
    if (!probe.fstab) return refuse(errc::parse_error, "the probe did not return " + spec.fstab_path + " from " + host);
    auto edit = fstab_with_entry(*probe.fstab, spec);
    if (!edit.conflict.empty()) return refuse(errc::mount_conflict, host + ": " + edit.conflict);
    if (edit.changed) plan.new_fstab = std::move(edit.text);
  }

  std::optional<BindOrigin> origin;
  if (spec.kind == NasKind::bind && !probe.bind_source_real.empty())
    origin = bind_origin(probe.mounts, probe.bind_source_real);

  if (auto existing = mount_at(probe.mounts, mp)) {
    if (mount_matches(spec, *existing, origin)) {
      plan.action = MountAction::keep;
      plan.reason = mp + " on " + host + " already has " + describe(*existing) + " mounted; kept";
      return plan;
    }
    if (looks_shared(*existing))
      return refuse(errc::mount_conflict,
                    mp + " on " + host + " already has " + describe(*existing) + " mounted, not " + spec.source +
                        "; nothing was changed. Unmount it first (`clusterkit nas umount -g " + host + " --path " + mp +
                        "`) or choose another mount point");
    // A local filesystem mounted there (a tmpfs, a data disk): mounting on
    // top is like mounting on a folder, judged by what it holds (below).
  }

  if (probe.mount_point_exists && !probe.mount_point_is_directory)
    return refuse(errc::invalid_argument, mp + " on " + host + " is a file, not a folder; choose another mount point");
  if (!probe.mount_point_empty && !spec.allow_non_empty)
    return refuse(errc::mount_conflict,
                  mp + " on " + host + " is not empty (" + entries_text(probe) +
                      (probe.mount_point_entries.size() >= 3 ? ", ..." : "") +
                      "); mounting there would hide those files until the unmount. Move them, choose another mount "
                      "point, or allow it explicitly (--allow-non-empty)");
  if (!probe.helper_present)
    return refuse(errc::program_missing, host + " cannot mount " + std::string(to_string(spec.kind)) + ": " +
                                             (spec.kind == NasKind::nfs ? "mount.nfs is missing" : "sshfs is missing") +
                                             "; " + install_hint(spec.kind));
  if (spec.kind == NasKind::bind && probe.bind_source_real.empty())
    return refuse(errc::invalid_argument, "the bind source " + spec.source + " is not a folder on " + host);
  if (spec.kind != NasKind::sshfs && probe.uid != 0)
    return refuse(errc::invalid_argument, "mounting " + std::string(to_string(spec.kind)) + " needs root on " + host +
                                              " (the inventory's user there has uid " + std::to_string(probe.uid) +
                                              "); connect as root");
  plan.action = MountAction::mount;
  plan.reason = "mount " + spec.source + " at " + mp + " on " + host;
  plan.script = nas_mount_script(spec);
  return plan;
}

UnmountPlan plan_unmount(NasSpec const& spec, MountProbe const& probe, std::string_view host_name,
                         UnmountOptions const& options) {
  std::string host(host_name);
  auto mp = strip_trailing_slashes(spec.mount_point);
  UnmountPlan plan;
  if (options.remove_fstab_entry) {
    if (!probe.fstab) {
      plan.action = UnmountAction::refuse;
      plan.refusal = make_error_code(errc::parse_error);
      plan.reason = "the probe did not return " + spec.fstab_path + " from " + host;
      return plan;
    }
    auto edit = fstab_without_entry(*probe.fstab, mp);
    if (edit.changed) plan.new_fstab = std::move(edit.text);
  }
  auto existing = mount_at(probe.mounts, mp);
  auto nothing_there = [&] {
    plan.action = UnmountAction::nothing;
    plan.reason = "nothing clusterkit would unmount is mounted at " + mp + " on " + host;
    return plan;
  };
  if (!existing) return nothing_there();
  plan.entry = existing;
  std::optional<BindOrigin> origin;
  if (spec.kind == NasKind::bind && !probe.bind_source_real.empty())
    origin = bind_origin(probe.mounts, probe.bind_source_real);
  if (!spec.source.empty()) {
    if (!mount_matches(spec, *existing, origin)) {
      if (!looks_shared(*existing)) return nothing_there();
      plan.action = UnmountAction::refuse;
      plan.refusal = make_error_code(errc::mount_conflict);
      plan.reason = mp + " on " + host + " has " + describe(*existing) + " mounted, not " + spec.source +
                    "; nothing was unmounted (leave out the source to unmount whatever NAS is there)";
      return plan;
    }
  } else if (!looks_shared(*existing)) {
    // A tmpfs or a disk: not something clusterkit mounts.
    return nothing_there();
  }
  plan.action = UnmountAction::unmount;
  plan.reason = "unmount " + describe(*existing) + " from " + mp + " on " + host;
  std::ostringstream s;
  auto q = shell::quote(mp);
  if (probe.uid == 0 || !existing->fstype.starts_with("fuse"))
    s << "umount " << (options.lazy ? "-l " : "") << q << "\n";
  else
    s << "if command -v fusermount3 >/dev/null 2>&1; then fusermount3 -u " << (options.lazy ? "-z " : "") << q
      << "; else fusermount -u " << (options.lazy ? "-z " : "") << q << "; fi\n";
  s << "echo @@ck-mountinfo\ncat /proc/self/mountinfo\necho @@ck-mountinfo-end\n";
  plan.script = s.str();
  return plan;
}

std::string explain_mount_failure(NasSpec const& spec, std::string_view host_name, std::string_view stderr_text,
                                  bool unmounting) {
  std::string host(host_name);
  auto mp = strip_trailing_slashes(spec.mount_point);
  std::string last;
  for (auto l : lines_of(stderr_text))
    if (!detail::trim(l).empty()) last = std::string(detail::trim(l));
  auto has = [&](std::string_view needle) { return stderr_text.find(needle) != std::string_view::npos; };
  std::string server, path;
  split_remote(spec.source, server, path);
  if (auto at = server.find('@'); at != std::string::npos) server = server.substr(at + 1);
  std::string what = unmounting ? "unmounting " + mp + " on " + host + " failed" : "mounting " + spec.source + " at " + mp + " on " + host + " failed";
  std::string said = last.empty() ? "" : " (" + last + ")";
  if (unmounting) {
    if (has("target is busy") || has("Device or resource busy"))
      return what + said + ": processes on " + host + " have files open under " + mp +
             " (a running vLLM, Ray or shell?). Stop them (`fuser -vm " + mp + "` lists them) or unmount lazily (--lazy)";
    if (has("not mounted")) return what + said + ": nothing is mounted there any more";
    if (has("Operation not permitted") || has("must be superuser"))
      return what + said + ": unmounting needs root on " + host;
    return what + said;
  }
  if (has("Host key verification failed"))
    return what + said + ": " + host + " does not know the host key of " + server + ". Record it on " + host +
           " (`ssh-keyscan " + server + " >> ~/.ssh/known_hosts`, after checking it) or give the NAS's known_hosts file (--known-hosts)";
  if (has("Permission denied (publickey") || has("Permission denied, please try again"))
    return what + said + ": " + server + " refused the key " + host + " offered; put the key's public half in " + server +
           "'s authorized_keys, or give the right key (--identity, a path on " + host + ")";
  if (has("read: Connection reset by peer") || has("Connection closed by"))
    return what + said + ": " + server + " closed the SSH connection from " + host +
           " (wrong user or key, or its sshd has no SFTP subsystem)";
  if (has("user_allow_other"))
    return what + said + ": allow_other needs `user_allow_other` in /etc/fuse.conf on " + host + " when not root";
  if (has("fuse: device not found") || has("/dev/fuse"))
    return what + said + ": FUSE is not available on " + host + " (`modprobe fuse`; in a container, pass --device /dev/fuse)";
  if (has("No such device") || has("unknown filesystem type"))
    return what + said + ": the kernel of " + host + " has no " + std::string(to_string(spec.kind)) +
           " support (`modprobe nfs`; minimal cloud kernels need their extra modules package)";
  if (has("access denied by server"))
    return what + said + ": " + server + " does not export " + path + " to " + host +
           ". Add " + host + "'s address to the export's permission group (cloud NAS console) or /etc/exports";
  if (has("Connection timed out") || has("timed out") || has("No route to host") || has("Connection refused"))
    return what + said + ": " + host + " cannot reach " + server +
           (spec.kind == NasKind::nfs ? " on the NFS ports (2049; for v3 also 111): check the security group or firewall, and that both are in the same VPC/subnet"
                                      : " over SSH: check the address and port");
  if (has("No such file or directory") && spec.kind == NasKind::nfs)
    return what + said + ": " + server + " has no export " + path + " (`showmount -e " + server + "` lists them)";
  if (has("No such file or directory") && spec.kind == NasKind::sshfs)
    return what + said + ": " + path + " does not exist on " + server;
  if (has("wrong fs type") || has("bad option"))
    return what + said + ": " + (spec.kind == NasKind::nfs ? "mount.nfs is missing or an option is wrong (" + join(nas_mount_options(spec), ",") + ")" : std::string("an option is wrong"));
  if (has("Operation not permitted") || has("must be superuser") || has("only root"))
    return what + said + ": mounting needs root on " + host;
  return what + said;
}

// ---------------------------------------------------------------------------
// Checking

NasCheckReport evaluate_nas_check(std::string const& path, std::vector<std::optional<std::vector<MountEntry>>> const& mounts,
                                  NasProbeReport const& probe) {
  NasCheckReport r;
  r.path = strip_trailing_slashes(path);
  std::vector<std::string> names;
  for (auto const& read : probe.reads) names.push_back(read.host);
  std::map<std::string, std::vector<std::string>> by_source;
  for (std::size_t i = 0; i < probe.reads.size(); ++i) {
    auto const& read = probe.reads[i];
    NasHostView v;
    v.host = read.host;
    if (i < mounts.size() && mounts[i]) {
      if (auto e = mount_at(*mounts[i], r.path)) {
        v.mounted = true;
        v.source = e->source;
        v.fstype = e->fstype;
        // The lab's own tmpfs under the NAS is a mount too, but not a share.
        if (!looks_shared(*e)) v.mounted = false, v.source.clear();
      }
    }
    for (auto const& n : names) {
      if (std::find(read.seen.begin(), read.seen.end(), n) != read.seen.end())
        v.sees.push_back(n);
      else
        v.misses.push_back(n);
    }
    if (!read.error.empty()) {
      v.problem = read.host + " could not be checked: " + read.error;
    } else if (!read.directory) {
      v.problem = r.path + " does not exist on " + read.host + "; mount the NAS there (`clusterkit nas mount -g " + read.host + " ...`)";
    } else if (!v.misses.empty()) {
      std::string list;
      for (auto const& m : v.misses) list += (list.empty() ? "" : ", ") + m;
      v.problem = read.host + " does not see the files " + list + " wrote under " + r.path + ": it is not the same folder" +
                  (v.mounted ? "" : " (nothing shared is mounted there on " + read.host + ")");
    } else if (!read.written) {
      v.problem = read.host + " cannot write under " + r.path + (read.write_error.empty() ? "" : ": " + read.write_error);
    }
    if (v.mounted) by_source[v.source].push_back(v.host);
    if (!v.problem.empty()) r.problems.push_back(v.problem);
    r.hosts.push_back(std::move(v));
  }
  if (by_source.size() > 1) {
    std::string list;
    for (auto const& [src, hosts] : by_source) {
      std::string hs;
      for (auto const& h : hosts) hs += (hs.empty() ? "" : ",") + h;
      list += (list.empty() ? "" : "; ") + hs + ": " + src;
    }
    r.problems.push_back("the hosts mount different sources at " + r.path + " (" + list + ")");
  }
  return r;
}

// ---------------------------------------------------------------------------
// JSON

namespace {
nlohmann::json entry_json(std::optional<MountEntry> const& e) {
  if (!e) return nullptr;
  return {{"source", e->source}, {"fstype", e->fstype}, {"mount_point", e->mount_point}, {"root", e->root},
          {"options", e->mount_options}, {"device", e->device}};
}
}  // namespace

nlohmann::json MountOutcome::to_json() const {
  nlohmann::json j{{"host", host}, {"ok", ok()}, {"action", action}, {"message", message},
                   {"entry", entry_json(entry)}, {"fstab_changed", fstab_changed}};
  if (error) {
    j["error"] = error.message();
    j["error_code"] = error.value();
  } else {
    j["error"] = nullptr;
  }
  return j;
}

nlohmann::json NasCheckReport::to_json() const {
  nlohmann::json hs = nlohmann::json::array();
  for (auto const& h : hosts)
    hs.push_back({{"host", h.host}, {"mounted", h.mounted}, {"source", h.source}, {"fstype", h.fstype},
                  {"sees", h.sees}, {"misses", h.misses}, {"problem", h.problem}});
  return {{"path", path}, {"ok", ok()}, {"hosts", hs}, {"problems", problems}};
}

NasMount::NasMount(NasSpec spec) : spec_(std::move(spec)) {
  validate(spec_, false);
  spec_.mount_point = strip_trailing_slashes(spec_.mount_point);
}

// ---------------------------------------------------------------------------
// The shared-folder probe

namespace {
std::string without_trailing_slash(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}
}  // namespace

std::string nas_write_script(std::string const& path, std::string const& token, std::size_t index) {
  auto p = without_trailing_slash(path);
  auto d = shell::quote(p);
  auto name = token + "-" + std::to_string(index);
  auto f = shell::quote(p + "/.clusterkit-preflight-" + name);
  std::ostringstream s;
  s << "if [ ! -d " << d << " ]; then echo '@@ck-nas-error '" << d << "' is not a directory'; exit 0; fi\n"
    << "if ck_e=$( { printf '%s\\n' " << shell::quote(name) << " > " << f << "; } 2>&1 ); then echo @@ck-nas-written; "
    << "else printf '@@ck-nas-error %s\\n' \"$ck_e\" | head -n 1; rm -f " << f << " 2>/dev/null; fi\n";
  return s.str();
}

std::string nas_read_script(std::string const& path, std::string const& token, std::size_t hosts,
                            std::string const& model_path) {
  auto p = without_trailing_slash(path);
  auto d = shell::quote(p);
  std::ostringstream s;
  s << "if [ -d " << d << " ]; then echo '@@ck-nas dir yes'; else echo '@@ck-nas dir no'; fi\n"
    << "if awk -v p=" << d << " '$2 == p {found = 1} END {exit !found}' /proc/mounts 2>/dev/null; "
    << "then echo '@@ck-nas mount yes'; else echo '@@ck-nas mount no'; fi\n"
    << "printf '@@ck-nas fstype %s\\n' \"$(stat -f -c %T " << d << " 2>/dev/null || echo unknown)\"\n"
    << "ck_i=0\n"
    << "while [ \"$ck_i\" -lt " << hosts << " ]; do\n"
    << "  ck_f=" << shell::quote(p + "/.clusterkit-preflight-" + token + "-") << "\"$ck_i\"\n"
    << "  if [ -f \"$ck_f\" ]; then printf '@@ck-nas seen %s %s\\n' \"$ck_i\" \"$(head -c 100 \"$ck_f\")\"; fi\n"
    << "  ck_i=$((ck_i + 1))\n"
    << "done\n";
  if (!model_path.empty()) {
    auto m = shell::quote(without_trailing_slash(model_path) + "/config.json");
    s << "if [ -f " << m << " ]; then echo '@@ck-nas model yes'; else echo '@@ck-nas model no'; fi\n";
  }
  return s.str();
}

std::string nas_cleanup_script(std::string const& path, std::string const& token, std::size_t hosts) {
  std::string s = "rm -f";
  for (std::size_t i = 0; i < hosts; ++i)
    s += " " + shell::quote(without_trailing_slash(path) + "/.clusterkit-preflight-" + token + "-" + std::to_string(i));
  return s + "\n";
}

NasRead parse_nas_read_output(std::string_view host, std::string_view token, std::vector<std::string> const& hosts,
                              std::string_view output) {
  NasRead r;
  r.host = std::string(host);
  std::set<std::string> seen;
  for (auto line : lines_of(output)) {
    auto w = split_ws(line, 4);
    if (w.size() < 2 || w[0] != "@@ck-nas") continue;
    if (w[1] == "dir" && w.size() == 3) r.directory = w[2] == "yes";
    else if (w[1] == "mount" && w.size() == 3) r.mount_point = w[2] == "yes";
    else if (w[1] == "fstype" && w.size() == 3) r.filesystem_type = std::string(w[2].substr(0, 64));
    else if (w[1] == "model" && w.size() == 3) r.model_present = w[2] == "yes";
    else if (w[1] == "seen" && w.size() == 4) {
      auto idx = to_long(w[2]);
      if (!idx || *idx < 0 || static_cast<std::size_t>(*idx) >= hosts.size()) continue;
      // The content proves it is this run's file, whole.
      if (w[3] != std::string(token) + "-" + std::string(w[2])) continue;
      seen.insert(hosts[static_cast<std::size_t>(*idx)]);
    }
  }
  for (auto const& h : hosts)
    if (seen.count(h)) r.seen.push_back(h);
  return r;
}

nlohmann::json NasProbeReport::to_json() const {
  nlohmann::json j;
  j["path"] = path;
  j["model_path"] = model_path;
  j["token"] = token;
  j["reads"] = nlohmann::json::array();
  for (auto const& r : reads)
    j["reads"].push_back({{"host", r.host},
                          {"directory", r.directory},
                          {"mount_point", r.mount_point},
                          {"filesystem_type", r.filesystem_type},
                          {"written", r.written},
                          {"write_error", r.write_error},
                          {"seen", r.seen},
                          {"model_present", r.model_present ? nlohmann::json(*r.model_present) : nlohmann::json(nullptr)},
                          {"error", r.error}});
  return j;
}

}  // namespace clusterkit
