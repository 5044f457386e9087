// Inventory parsing: YAML (or JSON, read as YAML) into HostSpecs, with errors
// that name the file, line, column and field, and say what was expected.
//
// Shape:
//   defaults: {<host fields>}          applied to every host first
//   hosts:    {name: {<host fields>} | "address" | null}
//   groups:   {group: [host, ...]}
//
// Merging: a host's own field replaces the default, except `vars`, whose keys
// are merged (the host's keys win).

#include "clusterkit/inventory.hpp"
#include "core/text.hpp"
#include "core/yaml_limits.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

namespace clusterkit {
namespace {

using json = nlohmann::json;

constexpr std::array<std::string_view, 5> known_roles = {"head", "worker", "gpu", "download", "nas"};

constexpr std::array<std::string_view, 19> host_fields = {
    "address",         "local",          "user",          "port",
    "identity_file",   "jump_host",      "known_hosts_file", "ssh_config_file",
    "host_key_policy", "connect_timeout", "control_persist", "server_alive_interval",
    "server_alive_count", "max_sessions", "ssh_options",    "roles",
    "groups",          "gpus",           "vars"};

constexpr std::array<std::string_view, 3> top_fields = {"defaults", "hosts", "groups"};

// ---------------------------------------------------------------------------
// Small helpers

using detail::join;

using detail::suggest;

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

bool known_role(std::string_view role) {
  return std::find(known_roles.begin(), known_roles.end(), role) != known_roles.end();
}

std::string home_directory() {
  if (char const* home = std::getenv("HOME"); home && *home) return home;
  if (passwd const* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
  return {};
}

/// "~" and "~/x" become $HOME and $HOME/x; "~user/x" is left to ssh.
std::string expand_home(std::string path) {
  if (path == "~" || path.starts_with("~/")) {
    std::string home = home_directory();
    if (!home.empty()) return home + path.substr(1);
  }
  return path;
}

/// How a value looks in a message: a quoted scalar, or what kind of node.
std::string describe(YAML::Node const& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return "nothing";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: break;
  }
  std::string text = node.Scalar();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return json(text).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string squote(std::string_view s) { return "'" + std::string(s) + "'"; }

// ---------------------------------------------------------------------------
// Errors with positions

struct Context {
  std::string source;

  [[noreturn]] void fail(YAML::Mark const& mark, std::string_view path, std::string_view message) const {
    std::string text = source;
    if (!mark.is_null()) text += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    text += ": ";
    if (!path.empty()) {
      // A path through deep nesting can run to kilobytes: its ends say enough.
      if (path.size() > 120) text += std::string(path.substr(0, 60)) + "..." + std::string(path.substr(path.size() - 40));
      else text += path;
      text += ": ";
    }
    text += message;
    // Keys and values from the file are quoted: no ESC or NUL of theirs
    // reaches the terminal that prints this.
    throw Error(make_error_code(errc::inventory_invalid), detail::without_control_characters(text));
  }
};

/// Where to point for a value: its own position, or its key's when the value
/// is empty (yaml-cpp places an empty value at the start of the next line).
YAML::Mark mark_of(YAML::Node const& key, YAML::Node const& value) {
  if (value.IsDefined() && !value.IsNull() && !value.Mark().is_null()) return value.Mark();
  return key.Mark();
}

/// Calls f(name, key, value) for every entry of a map, in file order,
/// refusing non-scalar and repeated keys (yaml-cpp keeps both copies of a
/// repeated key; we refuse them instead of silently taking one).
template <class F>
void for_each_entry(Context const& ctx, YAML::Node const& map, std::string const& path, std::string_view noun,
                    F&& f) {
  std::map<std::string, YAML::Mark> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    YAML::Node const key = it->first;
    YAML::Node const value = it->second;
    std::string const prefix = path.empty() ? std::string() : path + ".";
    if (!key.IsScalar())
      ctx.fail(key.Mark(), path, "expected a " + std::string(noun) + " name as key, got " + describe(key));
    std::string const& name = key.Scalar();
    auto [pos, inserted] = seen.emplace(name, key.Mark());
    if (!inserted) {
      ctx.fail(key.Mark(), prefix + name,
               "duplicate " + std::string(noun) + " " + squote(name) + "; it is already defined at line " +
                   std::to_string(pos->second.line + 1));
    }
    f(name, key, value);
  }
}

// ---------------------------------------------------------------------------
// Scalars

std::string const& expect_string(Context const& ctx, YAML::Node const& key, YAML::Node const& value,
                                 std::string const& path) {
  if (!value.IsScalar()) ctx.fail(mark_of(key, value), path, "expected a string, got " + describe(value));
  return value.Scalar();
}

std::optional<long long> parse_integer(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> parse_number(std::string_view s) {
  if (auto i = parse_integer(s)) return static_cast<double>(*i);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(v)) return std::nullopt;
  return v;
}

long long expect_integer(Context const& ctx, YAML::Node const& key, YAML::Node const& value,
                         std::string const& path, long long lo, long long hi, std::string_view expected) {
  std::optional<long long> v;
  if (value.IsScalar()) v = parse_integer(value.Scalar());
  if (!v || *v < lo || *v > hi)
    ctx.fail(mark_of(key, value), path, "expected " + std::string(expected) + ", got " + describe(value));
  return *v;
}

bool expect_bool(Context const& ctx, YAML::Node const& key, YAML::Node const& value, std::string const& path) {
  if (value.IsScalar()) {
    std::string s = value.Scalar();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (s == "true" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "no" || s == "off") return false;
  }
  ctx.fail(mark_of(key, value), path, "expected true or false, got " + describe(value));
}

/// A list of strings; each item passed to `check(item, item_node, item_path)`.
template <class Check>
std::vector<std::string> expect_string_list(Context const& ctx, YAML::Node const& key, YAML::Node const& value,
                                            std::string const& path, std::string_view example, Check&& check) {
  if (!value.IsSequence())
    ctx.fail(mark_of(key, value), path,
             "expected a list such as " + std::string(example) + ", got " + describe(value));
  std::vector<std::string> out;
  std::size_t index = 0;
  for (auto const& item : value) {
    std::string const item_path = path + "[" + std::to_string(index++) + "]";
    if (!item.IsScalar())
      ctx.fail(item.Mark().is_null() ? mark_of(key, value) : item.Mark(), item_path,
               "expected a string, got " + describe(item));
    check(item.Scalar(), item, item_path);
    out.push_back(item.Scalar());
  }
  return out;
}

// ---------------------------------------------------------------------------
// YAML -> JSON for `gpus:` and `vars:`

json scalar_to_json(YAML::Node const& node) {
  std::string const& s = node.Scalar();
  std::string const& tag = node.Tag();
  if (tag != "?") return s;  // quoted ("!") or explicitly tagged: keep the text
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (s == "null" || s == "Null" || s == "NULL" || s == "~") return nullptr;
  bool numeric_shape = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  });
  if (numeric_shape) {
    if (auto i = parse_integer(s)) return *i;
    if (auto d = parse_number(s)) return *d;
  }
  return s;
}

json to_json_value(Context const& ctx, YAML::Node const& node, std::string const& path, int depth = 0) {
  if (depth > 64) ctx.fail(node.Mark(), path, "nesting deeper than 64 levels");
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
    case YAML::NodeType::Scalar: return scalar_to_json(node);
    case YAML::NodeType::Sequence: {
      json out = json::array();
      std::size_t index = 0;
      for (auto const& item : node)
        out.push_back(to_json_value(ctx, item, path + "[" + std::to_string(index++) + "]", depth + 1));
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for_each_entry(ctx, node, path, "key", [&](std::string const& name, YAML::Node const&, YAML::Node const& v) {
        out[name] = to_json_value(ctx, v, path + "." + name, depth + 1);
      });
      return out;
    }
  }
  return nullptr;
}

json parse_gpus(Context const& ctx, YAML::Node const& key, YAML::Node const& value, std::string const& path) {
  if (!value.IsMap())
    ctx.fail(mark_of(key, value), path,
             "expected a map such as {count: 2, model: L20, memory_gib: 48}, got " + describe(value));
  json out = to_json_value(ctx, value, path);
  for_each_entry(ctx, value, path, "key", [&](std::string const& name, YAML::Node const& k, YAML::Node const& v) {
    std::string const field_path = path + "." + name;
    if (name == "count") {
      out["count"] = expect_integer(ctx, k, v, field_path, 0, 1 << 20, "a non-negative integer");
    } else if (name == "memory_gib") {
      std::optional<double> n;
      if (v.IsScalar()) n = parse_number(v.Scalar());
      if (!n || *n <= 0) ctx.fail(mark_of(k, v), field_path, "expected a positive number, got " + describe(v));
      if (auto i = parse_integer(v.Scalar()))
        out["memory_gib"] = *i;
      else
        out["memory_gib"] = *n;
    } else if (name == "model") {
      out["model"] = expect_string(ctx, k, v, field_path);  // "4090" stays a string
    } else if (name == "simulated") {
      out["simulated"] = expect_bool(ctx, k, v, field_path);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------
// Host fields

struct Draft {
  HostSpec spec;
  std::vector<std::string> roles;
  /// Groups named in the host's own `groups:`, with where they were named.
  std::vector<std::pair<std::string, YAML::Mark>> groups;
  json extra = json::object();
};

/// Applies the fields of `map` (a host's or `defaults`) onto `draft`.
void apply_fields(Context const& ctx, YAML::Node const& map, Draft& draft, std::string const& path,
                  std::string const& owner, bool is_defaults) {
  for_each_entry(ctx, map, path, "field", [&](std::string const& field, YAML::Node const& k, YAML::Node const& v) {
    std::string const fp = path + "." + field;
    HostSpec& s = draft.spec;
    auto seconds = [&](long long lo, std::string_view expected) {
      return std::chrono::seconds(expect_integer(ctx, k, v, fp, lo, 365LL * 24 * 3600, expected));
    };
    if (field == "address") {
      if (is_defaults)
        ctx.fail(k.Mark(), fp, "an address belongs to one host, not to defaults; set it under hosts.<name>");
      std::string const& a = expect_string(ctx, k, v, fp);
      if (a.empty() || a.find_first_of(" \t\r\n") != std::string::npos)
        ctx.fail(mark_of(k, v), fp, "expected a host name or IP address, got " + describe(v));
      s.address = a;
    } else if (field == "local") {
      s.local = expect_bool(ctx, k, v, fp);
    } else if (field == "user") {
      s.user = expect_string(ctx, k, v, fp);
    } else if (field == "port") {
      s.port = static_cast<int>(expect_integer(ctx, k, v, fp, 1, 65535, "an integer between 1 and 65535"));
    } else if (field == "identity_file") {
      s.identity_file = expand_home(expect_string(ctx, k, v, fp));
    } else if (field == "jump_host") {
      s.jump_host = expect_string(ctx, k, v, fp);
    } else if (field == "known_hosts_file") {
      s.known_hosts_file = expand_home(expect_string(ctx, k, v, fp));
    } else if (field == "ssh_config_file") {
      s.ssh_config_file = expand_home(expect_string(ctx, k, v, fp));
    } else if (field == "host_key_policy") {
      std::string p = v.IsScalar() ? v.Scalar() : std::string();
      if (p == "strict")
        s.host_key_policy = HostKeyPolicy::strict;
      else if (p == "accept-new" || p == "accept_new")
        s.host_key_policy = HostKeyPolicy::accept_new;
      else
        ctx.fail(mark_of(k, v), fp, "expected \"strict\" or \"accept-new\", got " + describe(v));
    } else if (field == "connect_timeout") {
      s.connect_timeout = seconds(1, "a positive number of seconds");
    } else if (field == "control_persist") {
      s.control_persist = seconds(0, "a number of seconds (0 or more)");
    } else if (field == "server_alive_interval") {
      s.server_alive_interval = seconds(1, "a positive number of seconds");
    } else if (field == "server_alive_count") {
      s.server_alive_count = static_cast<int>(expect_integer(ctx, k, v, fp, 1, 1000, "a positive integer"));
    } else if (field == "max_sessions") {
      s.max_sessions = static_cast<int>(expect_integer(ctx, k, v, fp, 1, 64, "an integer between 1 and 64"));
    } else if (field == "ssh_options") {
      s.ssh_options = expect_string_list(
          ctx, k, v, fp, "[\"Compression=yes\"]",
          [&](std::string const& option, YAML::Node const& node, std::string const& item_path) {
            auto eq = option.find('=');
            bool ok = eq != std::string::npos && eq > 0 &&
                      std::all_of(option.begin(), option.begin() + static_cast<std::ptrdiff_t>(eq),
                                  [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
            if (!ok)
              ctx.fail(node.Mark(), item_path,
                       "expected an ssh option as \"Key=Value\" (e.g. \"Compression=yes\"), got " + describe(node));
          });
    } else if (field == "roles") {
      auto roles = expect_string_list(
          ctx, k, v, fp, "[head, gpu]", [&](std::string const& role, YAML::Node const& node, std::string const& ip) {
            if (!known_role(role)) {
              std::string msg = "unknown role " + squote(role) + "; known roles: " + join(known_roles);
              if (auto near = suggest(role, known_roles)) msg += "; did you mean " + squote(*near) + "?";
              ctx.fail(node.Mark(), ip, msg);
            }
          });
      draft.roles.clear();
      for (auto& r : roles)
        if (std::find(draft.roles.begin(), draft.roles.end(), r) == draft.roles.end()) draft.roles.push_back(r);
    } else if (field == "groups") {
      draft.groups.clear();
      expect_string_list(ctx, k, v, fp, "[gpu, rack1]",
                         [&](std::string const& group, YAML::Node const& node, std::string const&) {
                           draft.groups.emplace_back(group, node.Mark().is_null() ? k.Mark() : node.Mark());
                         });
    } else if (field == "gpus") {
      draft.extra["gpus"] = parse_gpus(ctx, k, v, fp);
    } else if (field == "vars") {
      if (!v.IsMap()) ctx.fail(mark_of(k, v), fp, "expected a map of variables, got " + describe(v));
      json vars = to_json_value(ctx, v, fp);
      json& target = draft.extra["vars"];
      if (!target.is_object()) target = json::object();
      for (auto& [name, val] : vars.items()) target[name] = val;
    } else {
      std::string msg = "unknown field " + squote(field) + " in " + owner;
      if (auto near = suggest(field, host_fields))
        msg += "; did you mean " + squote(*near) + "?";
      else
        msg += "; known fields: " + join(host_fields);
      ctx.fail(k.Mark(), fp, msg);
    }
  });
}

void check_group_name(Context const& ctx, YAML::Mark const& mark, std::string const& path, std::string const& group) {
  if (group == "all")
    ctx.fail(mark, path, "'all' is reserved: it always means every host; choose another group name");
  if (!valid_name(group))
    ctx.fail(mark, path,
             "invalid group name " + squote(group) + "; use letters, digits, '_', '.' and '-'");
}

// ---------------------------------------------------------------------------
// JSON output

nlohmann::ordered_json host_to_json(InventoryHost const& h) {
  HostSpec const& s = h.spec;
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  if (!s.address.empty()) out["address"] = s.address;  // a local host may have none
  if (s.local) out["local"] = true;
  if (!s.user.empty()) out["user"] = s.user;
  if (s.port != 0) out["port"] = s.port;
  if (!s.identity_file.empty()) out["identity_file"] = s.identity_file;
  if (!s.jump_host.empty()) out["jump_host"] = s.jump_host;
  if (!s.known_hosts_file.empty()) out["known_hosts_file"] = s.known_hosts_file;
  if (!s.ssh_config_file.empty()) out["ssh_config_file"] = s.ssh_config_file;
  out["host_key_policy"] = s.host_key_policy == HostKeyPolicy::accept_new ? "accept-new" : "strict";
  out["connect_timeout"] = s.connect_timeout.count();
  out["control_persist"] = s.control_persist.count();
  out["server_alive_interval"] = s.server_alive_interval.count();
  out["server_alive_count"] = s.server_alive_count;
  out["max_sessions"] = s.max_sessions;
  if (!s.ssh_options.empty()) out["ssh_options"] = s.ssh_options;
  if (!h.roles.empty()) out["roles"] = h.roles;
  if (!h.groups.empty()) out["groups"] = h.groups;
  if (h.extra.is_object()) {
    if (h.extra.contains("gpus")) out["gpus"] = nlohmann::ordered_json(h.extra["gpus"]);
    if (h.extra.contains("vars")) out["vars"] = nlohmann::ordered_json(h.extra["vars"]);
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------

Inventory Inventory::load(std::filesystem::path const& path) {
  std::string text;
  try {
    text = detail::read_yaml_file(path, "inventory", make_error_code(errc::inventory_invalid));
  } catch (Error const& e) {
    throw Error(e.code(), std::string(e.what()) +
                              ". Pass -i with an inventory file, or run `clusterkit lab up` to make one.");
  }
  return parse(text, path.string());
}

Inventory Inventory::parse(std::string_view text, std::string source) {
  Context const ctx{source};
  if (auto problem = detail::yaml_text_problem(text)) ctx.fail(problem->mark, "", problem->message);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (YAML::Exception const& e) {
    ctx.fail(e.mark, "", detail::yaml_parse_error_text(text, e.mark, e.msg));
  }
  if (auto problem = detail::yaml_tree_problem(root)) ctx.fail(YAML::Mark::null_mark(), "", *problem);

  std::string const example = "e.g.\n  hosts:\n    gpu1: {address: 10.0.0.11, roles: [head, gpu]}";
  if (!root.IsDefined() || root.IsNull())
    ctx.fail(YAML::Mark(), "", "the inventory is empty; it needs a `hosts:` map with at least one host, " +
                                          example);
  if (!root.IsMap())
    ctx.fail(root.Mark(), "",
             "expected a map with the keys defaults, hosts and groups, got " + describe(root) + "; " + example);

  // A default-constructed YAML::Node is a defined null, so presence is kept
  // apart.
  YAML::Node defaults, hosts, groups;
  bool has_defaults = false, has_hosts = false, has_groups = false;
  YAML::Mark hosts_key_mark;
  for_each_entry(ctx, root, "", "key", [&](std::string const& name, YAML::Node const& k, YAML::Node const& v) {
    if (name == "defaults") {
      defaults = v;
      has_defaults = true;
    } else if (name == "hosts") {
      hosts = v;
      has_hosts = true;
      hosts_key_mark = k.Mark();
    } else if (name == "groups") {
      groups = v;
      has_groups = true;
    } else {
      std::string msg = "unknown top-level key " + squote(name) + "; an inventory has " + join(top_fields);
      if (auto near = suggest(name, top_fields)) msg += "; did you mean " + squote(*near) + "?";
      ctx.fail(k.Mark(), name, msg);
    }
  });

  if (!has_hosts)
    ctx.fail(root.Mark(), "hosts", "missing; the inventory needs a `hosts:` map with at least one host, " + example);
  if (!hosts.IsMap() && !hosts.IsNull())
    ctx.fail(hosts.Mark(), "hosts",
             "expected a map of host names to host fields, got " + describe(hosts));
  if (hosts.IsNull() || hosts.size() == 0)
    ctx.fail(hosts_key_mark, "hosts", "no hosts; the inventory needs at least one host, " + example);

  Draft base;
  if (has_defaults && !defaults.IsNull()) {
    if (!defaults.IsMap())
      ctx.fail(defaults.Mark(), "defaults", "expected a map of host fields, got " + describe(defaults));
    apply_fields(ctx, defaults, base, "defaults", "defaults", true);
  }

  std::vector<Draft> drafts;
  std::map<std::string, std::size_t> index_of;  // host name -> position
  for_each_entry(ctx, hosts, "hosts", "host", [&](std::string const& name, YAML::Node const& k, YAML::Node const& v) {
    std::string const path = "hosts." + name;
    if (!valid_name(name))
      ctx.fail(k.Mark(), path, "invalid host name " + squote(name) + "; use letters, digits, '_', '.' and '-'");
    if (name == "all")
      ctx.fail(k.Mark(), path, "'all' is reserved: it always means every host; choose another host name");
    Draft d = base;
    d.spec.name = name;
    d.spec.address = name;
    if (v.IsNull()) {
      // `gpu1:` alone: every field from defaults, address = name.
    } else if (v.IsScalar()) {
      std::string const& a = v.Scalar();
      if (a.empty() || a.find_first_of(" \t\r\n") != std::string::npos)
        ctx.fail(v.Mark(), path, "expected a host name or IP address, got " + describe(v));
      d.spec.address = a;
    } else if (v.IsMap()) {
      apply_fields(ctx, v, d, path, "host " + squote(name), false);
      // A local host needs no address, and its name is not one: where an
      // address is needed (port checks, a rendezvous) this machine is
      // 127.0.0.1 unless the inventory says otherwise.
      if (d.spec.local && !v["address"]) d.spec.address.clear();
    } else {
      ctx.fail(v.Mark(), path,
               "expected a map of host fields or an address such as 10.0.0.11, got " + describe(v));
    }
    index_of.emplace(name, drafts.size());
    drafts.push_back(std::move(d));
  });

  std::vector<std::string> host_names;
  for (auto const& d : drafts) host_names.push_back(d.spec.name);

  // Group membership, both ways. Each group remembers where it was first
  // named, for errors.
  std::map<std::string, std::set<std::size_t>> members;
  std::map<std::string, std::pair<YAML::Mark, std::string>> named_at;
  auto check_not_host = [&](std::string const& group, YAML::Mark const& mark, std::string const& path) {
    if (index_of.count(group))
      ctx.fail(mark, path,
               "group " + squote(group) + " has the same name as a host; selectors could not tell them apart, "
               "so rename one of them");
  };
  for (std::size_t i = 0; i < drafts.size(); ++i) {
    std::size_t index = 0;
    for (auto const& [group, mark] : drafts[i].groups) {
      std::string const path = "hosts." + drafts[i].spec.name + ".groups[" + std::to_string(index++) + "]";
      check_group_name(ctx, mark, path, group);
      check_not_host(group, mark, path);
      members[group].insert(i);
      named_at.emplace(group, std::make_pair(mark, path));
    }
  }
  if (has_groups && !groups.IsNull()) {
    if (!groups.IsMap())
      ctx.fail(groups.Mark(), "groups", "expected a map of group names to lists of hosts, got " + describe(groups));
    for_each_entry(ctx, groups, "groups", "group",
                   [&](std::string const& group, YAML::Node const& k, YAML::Node const& v) {
                     std::string const path = "groups." + group;
                     check_group_name(ctx, k.Mark(), path, group);
                     check_not_host(group, k.Mark(), path);
                     auto& set = members[group];
                     if (!v.IsNull()) {
                       expect_string_list(
                           ctx, k, v, path, "[gpu1, gpu2]",
                           [&](std::string const& host, YAML::Node const& node, std::string const& item_path) {
                             auto found = index_of.find(host);
                             if (found == index_of.end()) {
                               std::string msg = "no host named " + squote(host) + " in hosts";
                               if (auto near = suggest(host, host_names))
                                 msg += "; did you mean " + squote(*near) + "?";
                               else
                                 msg += "; known hosts: " + join(host_names);
                               ctx.fail(node.Mark(), item_path, msg);
                             }
                             set.insert(found->second);
                           });
                     }
                     if (set.empty())
                       ctx.fail(mark_of(k, v), path,
                                "group " + squote(group) + " has no hosts; list at least one, e.g. [" +
                                    host_names.front() + "]");
                   });
  }

  Inventory inventory;
  inventory.source_ = std::move(source);
  inventory.hosts_.reserve(drafts.size());
  for (std::size_t i = 0; i < drafts.size(); ++i) {
    InventoryHost h;
    h.spec = std::move(drafts[i].spec);
    h.roles = std::move(drafts[i].roles);
    h.extra = std::move(drafts[i].extra);
    for (auto const& [group, set] : members)
      if (set.count(i)) h.groups.push_back(group);  // std::map order: sorted
    inventory.hosts_.push_back(std::move(h));
  }
  return inventory;
}

InventoryHost const* Inventory::find(std::string_view name) const {
  for (auto const& h : hosts_)
    if (h.spec.name == name) return &h;
  return nullptr;
}

std::vector<std::string> Inventory::groups() const {
  std::set<std::string> all;
  for (auto const& h : hosts_) all.insert(h.groups.begin(), h.groups.end());
  return {all.begin(), all.end()};
}

std::vector<InventoryHost> Inventory::select(std::string_view selector) const {
  std::vector<bool> chosen(hosts_.size(), false);
  auto const known_groups = groups();
  bool any_item = false;

  std::size_t start = 0;
  while (start <= selector.size()) {
    std::size_t comma = selector.find(',', start);
    if (comma == std::string_view::npos) comma = selector.size();
    std::string_view item = selector.substr(start, comma - start);
    start = comma + 1;
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.remove_prefix(1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.remove_suffix(1);
    if (item.empty()) continue;
    any_item = true;

    if (item == "all") {
      std::fill(chosen.begin(), chosen.end(), true);
    } else if (item.starts_with("role:")) {
      std::string_view role = item.substr(5);
      if (!known_role(role)) {
        std::string msg = "no role named " + squote(role) + " (in selector " + squote(item) + "); known roles: " +
                          join(known_roles);
        if (auto near = suggest(role, known_roles)) msg += "; did you mean 'role:" + *near + "'?";
        throw Error(make_error_code(errc::unknown_host_or_group), msg);
      }
      for (std::size_t i = 0; i < hosts_.size(); ++i)
        if (std::find(hosts_[i].roles.begin(), hosts_[i].roles.end(), role) != hosts_[i].roles.end())
          chosen[i] = true;
    } else if (std::binary_search(known_groups.begin(), known_groups.end(), item)) {
      for (std::size_t i = 0; i < hosts_.size(); ++i)
        if (std::binary_search(hosts_[i].groups.begin(), hosts_[i].groups.end(), item)) chosen[i] = true;
    } else {
      bool found = false;
      for (std::size_t i = 0; i < hosts_.size(); ++i) {
        if (hosts_[i].spec.name == item) {
          chosen[i] = true;
          found = true;
        }
      }
      if (!found) {
        std::vector<std::string> names;
        for (auto const& h : hosts_) names.push_back(h.spec.name);
        std::string msg = "no host or group named " + squote(item) + " in " + source_ + "; known groups: " +
                          (known_groups.empty() ? std::string("(none)") : join(known_groups)) +
                          "; hosts: " + join(names);
        std::vector<std::string> candidates = known_groups;
        candidates.insert(candidates.end(), names.begin(), names.end());
        if (auto near = suggest(item, candidates)) msg += "; did you mean " + squote(*near) + "?";
        throw Error(make_error_code(errc::unknown_host_or_group), msg);
      }
    }
  }
  if (!any_item)
    throw Error(make_error_code(errc::unknown_host_or_group),
                "empty host selector; give \"all\", a group, a host name or role:NAME (comma-separated)");

  std::vector<InventoryHost> out;
  for (std::size_t i = 0; i < hosts_.size(); ++i)
    if (chosen[i]) out.push_back(hosts_[i]);
  if (out.empty()) {
    // A known group or role nobody has: "0/0 hosts succeeded" would read
    // as success. Say what exists instead.
    std::set<std::string> roles_in_use;
    for (auto const& h : hosts_) roles_in_use.insert(h.roles.begin(), h.roles.end());
    std::vector<std::string> roles(roles_in_use.begin(), roles_in_use.end());
    for (auto& r : roles) r = "role:" + r;
    throw Error(make_error_code(errc::unknown_host_or_group),
                squote(selector) + " selects no host in " + source_ + "; roles in use: " +
                    (roles.empty() ? std::string("(none)") : join(roles)) +
                    "; groups: " + (known_groups.empty() ? std::string("(none)") : join(known_groups)));
  }
  return out;
}

nlohmann::ordered_json Inventory::to_json() const {
  // Hosts keep the inventory's order (it is the order of fan-out output);
  // group members are listed by name.
  nlohmann::ordered_json hosts = nlohmann::ordered_json::object();
  std::map<std::string, std::set<std::string>> group_members;
  for (auto const& h : hosts_) {
    hosts[h.spec.name] = host_to_json(h);
    for (auto const& g : h.groups) group_members[g].insert(h.spec.name);
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  out["hosts"] = std::move(hosts);
  nlohmann::ordered_json groups = nlohmann::ordered_json::object();
  for (auto& [g, names] : group_members) groups[g] = names;
  out["groups"] = std::move(groups);
  return out;
}

}  // namespace clusterkit
