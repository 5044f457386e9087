// Deployment, the pure half: the spec (YAML, every mistake reported with
// file:line:column and a suggestion), its fingerprint and paths, the record
// (JSON in and out) and the texts people read (summary, plan).
#include "clusterkit/deployment.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <set>
#include <sstream>

#include "clusterkit/facts.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/shell.hpp"
#include "core/digest.hpp"
#include "core/text.hpp"
#include "core/yaml_limits.hpp"

namespace clusterkit {

using json = nlohmann::json;
namespace fs = std::filesystem;
using detail::join;

namespace {

constexpr std::size_t kMaxSpecBytes = 1u << 20;

using detail::sha256_hex;

/// Collects every problem of a spec with its position; thrown as one Error.
struct Problems {
  std::string source;
  std::vector<std::string> list;

  void add(YAML::Mark const& mark, std::string const& field, std::string const& message) {
    std::string text = source;
    if (!mark.is_null()) text += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    list.push_back(text + ": " + (field.empty() ? "" : field + ": ") + message);
  }
};

/// The keys of a map, each checked against `known` (a typo gets "did you
/// mean"); calls f(key, value) for the known ones.
template <class F>
void each_key(Problems& p, YAML::Node const& map, std::string const& path, std::vector<std::string> const& known, F&& f) {
  if (!map.IsMap()) {
    p.add(map.Mark(), path, "expected a map of " + join(known));
    return;
  }
  std::set<std::string> seen;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar()) {
      p.add(it->first.Mark(), path, "a key must be a plain word");
      continue;
    }
    auto key = it->first.as<std::string>();
    auto field = path.empty() ? key : path + "." + key;
    if (!seen.insert(key).second) {
      p.add(it->first.Mark(), field, "given twice; keep one");
      continue;
    }
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      auto s = detail::suggest(key, known);
      p.add(it->first.Mark(), field, "unknown field '" + key + "'" + (s ? "; did you mean '" + *s + "'?" : "; known: " + join(known)));
      continue;
    }
    f(key, it->second, field);
  }
}

std::optional<std::string> as_string(Problems& p, YAML::Node const& v, std::string const& field) {
  if (!v.IsScalar()) {
    p.add(v.Mark(), field, "expected a string");
    return std::nullopt;
  }
  return v.as<std::string>();
}

std::optional<long long> as_integer(Problems& p, YAML::Node const& v, std::string const& field, long long lo, long long hi) {
  if (v.IsScalar()) {
    auto text = v.as<std::string>();
    if (auto n = detail::parse_number<long long>(text); n && *n >= lo && *n <= hi) return n;
  }
  p.add(v.Mark(), field, "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return std::nullopt;
}

std::optional<double> as_number(Problems& p, YAML::Node const& v, std::string const& field, double lo, double hi) {
  if (v.IsScalar()) {
    auto n = detail::to_double(v.as<std::string>());
    if (n && std::isfinite(*n) && *n >= lo && *n <= hi) return n;
  }
  char range[96];
  std::snprintf(range, sizeof range, "expected a number from %g to %g", lo, hi);
  p.add(v.Mark(), field, range);
  return std::nullopt;
}

std::optional<bool> as_bool(Problems& p, YAML::Node const& v, std::string const& field) {
  if (v.IsScalar()) {
    auto t = detail::lower(v.as<std::string>());
    if (t == "true" || t == "yes" || t == "on") return true;
    if (t == "false" || t == "no" || t == "off") return false;
  }
  p.add(v.Mark(), field, "expected true or false");
  return std::nullopt;
}

std::vector<std::string> as_strings(Problems& p, YAML::Node const& v, std::string const& field) {
  std::vector<std::string> out;
  if (!v.IsSequence()) {
    p.add(v.Mark(), field, "expected a list");
    return out;
  }
  for (std::size_t i = 0; i < v.size(); ++i)
    if (auto s = as_string(p, v[i], field + "[" + std::to_string(i) + "]")) out.push_back(*s);
  return out;
}

std::map<std::string, std::string> as_env(Problems& p, YAML::Node const& v, std::string const& field) {
  std::map<std::string, std::string> out;
  if (!v.IsMap()) {
    p.add(v.Mark(), field, "expected a map of NAME: value");
    return out;
  }
  for (auto it = v.begin(); it != v.end(); ++it) {
    auto name = it->first.as<std::string>();
    if (!shell::is_valid_variable_name(name)) {
      p.add(it->first.Mark(), field + "." + name, "not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
      continue;
    }
    if (!it->second.IsScalar()) {
      p.add(it->second.Mark(), field + "." + name, "expected a string or a number");
      continue;
    }
    out[name] = it->second.as<std::string>();
  }
  return out;
}

bool absolute(std::string const& path) { return !path.empty() && path.front() == '/'; }

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::vector<std::string> const& deployment_steps() {
  static std::vector<std::string> const steps{"preflight", "nas", "model", "verify", "layout", "ray", "serve", "smoke", "bench"};
  return steps;
}

std::string DeploymentSpec::fingerprint() const {
  // What changes the running deployment: hosts, NAS, model, runtime, serve.
  json j{{"name", name},
         {"inventory", inventory.to_json()},
         {"nas", nas ? json{{"kind", std::string(to_string(nas->kind))}, {"source", nas->source}, {"mount_point", nas->mount_point}}
                     : json(nullptr)},
         {"model", {{"id", model.id}, {"hub", model.hub}, {"revision", model.revision}, {"root", model.root}, {"container_root", model.container_root}}},
         {"ray", {{"runtime", std::string(to_string(ray.runtime))}, {"image", ray.image}, {"ray", ray.ray_command}, {"port", ray.port},
                  {"shm", ray.shm_size}, {"ipc_host", ray.ipc_host}, {"env", ray.env}, {"args", ray.ray_start_args}}},
         {"head", head},
         {"workers", workers},
         {"serve", {{"name", served_name(serve)}, {"tp", serve.tensor_parallel}, {"pp", serve.pipeline_parallel},
                    {"max_model_len", serve.max_model_len ? json(*serve.max_model_len) : json(nullptr)},
                    {"gmu", serve.gpu_memory_utilization ? json(*serve.gpu_memory_utilization) : json(nullptr)},
                    {"dtype", serve.dtype}, {"port", serve.port}, {"env", serve.env}, {"args", serve.extra_args},
                    {"backend", std::string(to_string(serve.backend))}}}};
  return sha256_hex(j.dump()).substr(0, 16);
}

std::string DeploymentSpec::model_path() const {
  ModelStoreSpec s;
  s.root = model.root.empty() ? (nas ? nas->mount_point : std::string("/mnt")) : model.root;
  return ModelStore(s).path_for(model.id);
}

std::string DeploymentSpec::engine_model_path() const {
  auto path = model_path();
  if (ray.runtime != RayRuntimeKind::docker) return path;
  // As the seed: the model's parent folder (-v /mnt/Qwen:/models) mounted at
  // container_root, the model under it.
  auto slash = path.rfind('/');
  return model.container_root + "/" + path.substr(slash + 1);
}

DeploymentSpec load_deployment_spec(fs::path const& path) {
  std::string text;
  try {
    text = detail::read_yaml_file(path, "deployment spec", make_error_code(errc::inventory_invalid),
                                  {kMaxSpecBytes, 100'000, 64});
  } catch (Error const& e) {
    throw Error(e.code(), std::string(e.what()) + "; examples are in examples/deployments/");
  }
  return parse_deployment_spec(text, path.string(), fs::absolute(path).parent_path());
}

DeploymentSpec parse_deployment_spec(std::string_view text, std::string source, fs::path const& base_dir) {
  Problems p{source, {}};
  DeploymentSpec spec;
  spec.source = source;
  if (text.size() > kMaxSpecBytes)
    throw Error(make_error_code(errc::inventory_invalid), source + " is larger than 1 MiB; a deployment spec is a page of YAML");
  if (auto problem = detail::yaml_text_problem(text)) {
    p.add(problem->mark, "", problem->message);
    throw Error(make_error_code(errc::inventory_invalid), p.list.front());
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (YAML::Exception const& e) {
    p.add(e.mark, "", detail::yaml_parse_error_text(text, e.mark, e.msg));
    throw Error(make_error_code(errc::inventory_invalid), p.list.front());
  }
  if (auto problem = detail::yaml_tree_problem(root)) {
    p.add(YAML::Mark::null_mark(), "", *problem);
    throw Error(make_error_code(errc::inventory_invalid), p.list.front());
  }
  if (!root.IsMap())
    throw Error(make_error_code(errc::inventory_invalid),
                source + ": a deployment spec is a map with name, inventory, model, runtime, ray, serve (see examples/deployments/)");

  // Defaults for the serve layout: auto unless given.
  spec.serve.tensor_parallel = 0;
  spec.serve.pipeline_parallel = 0;
  bool have_inventory = false, have_model = false;
  YAML::Mark model_mark, ray_mark;
  YAML::Mark head_mark = YAML::Mark::null_mark(), workers_mark = YAML::Mark::null_mark(),
             download_mark = YAML::Mark::null_mark();
  std::optional<std::string> api_key_env;

  each_key(p, root, "", {"name", "inventory", "nas", "model", "runtime", "ray", "serve", "checks", "state_dir"},
           [&](std::string const& key, YAML::Node const& v, std::string const& field) {
    if (key == "name") {
      if (auto s = as_string(p, v, field)) spec.name = *s;
    } else if (key == "inventory") {
      have_inventory = true;
      try {
        if (v.IsScalar()) {
          fs::path ip = v.as<std::string>();
          if (ip.is_relative() && !base_dir.empty()) ip = base_dir / ip;
          spec.inventory = Inventory::load(ip);
        } else if (v.IsMap()) {
          YAML::Emitter out;
          out << v;
          spec.inventory = Inventory::parse(out.c_str(), source + " (inline inventory at line " + std::to_string(v.Mark().line + 1) + ")");
        } else {
          p.add(v.Mark(), field, "expected a path to an inventory file, or an inventory (defaults, hosts, groups)");
        }
      } catch (Error const& e) {
        p.list.push_back(e.what());
        have_inventory = false;
      }
    } else if (key == "nas") {
      NasSpec n;
      bool have_export = false;
      each_key(p, v, field, {"type", "export", "mount_point", "nfs_version", "options", "identity_file", "known_hosts_file", "port"},
               [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        if (k == "type") {
          if (auto s = as_string(p, x, f)) {
            if (auto kind = nas_kind_from_string(*s)) n.kind = *kind;
            else p.add(x.Mark(), f, "\"" + *s + "\" is not a NAS type; use nfs, sshfs or bind");
          }
        } else if (k == "export") {
          if (auto s = as_string(p, x, f)) n.source = *s, have_export = true;
        } else if (k == "mount_point") {
          if (auto s = as_string(p, x, f)) n.mount_point = *s;
        } else if (k == "nfs_version") {
          if (auto s = as_string(p, x, f)) n.nfs_version = *s;
        } else if (k == "options") {
          n.options = as_strings(p, x, f);
        } else if (k == "identity_file") {
          if (auto s = as_string(p, x, f)) n.identity_file = *s;
        } else if (k == "known_hosts_file") {
          if (auto s = as_string(p, x, f)) n.known_hosts_file = *s;
        } else if (k == "port") {
          if (auto i = as_integer(p, x, f, 1, 65535)) n.port = static_cast<int>(*i);
        }
      });
      if (!have_export) p.add(v.Mark(), field + ".export", "missing: the NAS's source (nfs SERVER:/EXPORT, sshfs USER@HOST:/PATH)");
      try {
        validate(n, have_export);
      } catch (Error const& e) {
        p.add(v.Mark(), field, e.what());
      }
      spec.nas = n;
    } else if (key == "model") {
      have_model = true;
      model_mark = v.Mark();
      each_key(p, v, field, {"id", "hub", "revision", "endpoint", "token_env", "download_host", "download_dir", "root",
                             "container_root", "sync_streams"},
               [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        auto& m = spec.model;
        if (k == "sync_streams") {
          if (auto i = as_integer(p, x, f, 1, 32)) m.sync_streams = static_cast<unsigned>(*i);
          return;
        }
        auto s = as_string(p, x, f);
        if (!s) return;
        if (k == "id") m.id = *s;
        else if (k == "hub") {
          if (*s != "modelscope" && *s != "hf" && *s != "none") p.add(x.Mark(), f, "\"" + *s + "\" is not a hub; use modelscope, hf or none");
          m.hub = *s;
        } else if (k == "revision") m.revision = *s;
        else if (k == "endpoint") m.endpoint = *s;
        else if (k == "token_env") m.token_env = *s;
        else if (k == "download_host") m.download_host = *s, download_mark = x.Mark();
        else if (k == "download_dir") {
          if (!absolute(*s)) p.add(x.Mark(), f, "must be an absolute path on the download host");
          m.download_dir = *s;
        } else if (k == "root") {
          if (!absolute(*s)) p.add(x.Mark(), f, "must be an absolute path (where models live on the NAS)");
          m.root = *s;
        } else if (k == "container_root") {
          if (!absolute(*s)) p.add(x.Mark(), f, "must be an absolute path (where the containers see the models)");
          m.container_root = *s;
        }
      });
      if (spec.model.id.empty()) p.add(v.Mark(), field + ".id", "missing: the model's hub id (Qwen/Qwen2.5-72B-Instruct)");
    } else if (key == "runtime") {
      each_key(p, v, field, {"kind", "image", "venv", "ray", "shm_size", "ipc_host", "gpus", "env", "volumes", "docker_args"},
               [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        auto& r = spec.ray;
        if (k == "kind") {
          if (auto s = as_string(p, x, f)) {
            if (auto kind = ray_runtime_from_string(*s)) r.runtime = *kind;
            else p.add(x.Mark(), f, "\"" + *s + "\" is not a runtime; use docker or bare");
          }
        } else if (k == "image") {
          if (auto s = as_string(p, x, f)) r.image = *s;
        } else if (k == "venv") {
          if (auto s = as_string(p, x, f)) {
            if (!absolute(*s)) p.add(x.Mark(), f, "must be an absolute path (the same on every host)");
            else r = ray_spec_from_vars(json{{"serve_venv", *s}}, r);
          }
        } else if (k == "ray") {
          if (auto s = as_string(p, x, f)) r.ray_command = *s;
        } else if (k == "shm_size") {
          if (auto s = as_string(p, x, f)) r.shm_size = *s;
        } else if (k == "ipc_host") {
          if (auto b = as_bool(p, x, f)) r.ipc_host = *b;
        } else if (k == "gpus") {
          if (auto s = as_string(p, x, f)) r.docker_gpus = *s;
        } else if (k == "env") {
          for (auto const& [n, val] : as_env(p, x, f)) r.env[n] = val;
        } else if (k == "volumes") {
          for (auto const& vol : as_strings(p, x, f)) {
            auto c = vol.find(':');
            if (c == std::string::npos) {
              p.add(x.Mark(), f, "'" + vol + "' is not HOST:CONTAINER[:ro]");
              continue;
            }
            auto rest = vol.substr(c + 1);
            bool ro = rest.ends_with(":ro");
            if (ro) rest.resize(rest.size() - 3);
            r.volumes.push_back({vol.substr(0, c), rest, ro});
          }
        } else if (k == "docker_args") {
          r.docker_args = as_strings(p, x, f);
        }
      });
    } else if (key == "ray") {
      ray_mark = v.Mark();
      each_key(p, v, field, {"name", "head", "workers", "port", "dashboard_port", "num_cpus", "object_store_memory", "join_timeout", "args"},
               [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        auto& r = spec.ray;
        if (k == "name") {
          if (auto s = as_string(p, x, f)) r.name = *s;
        } else if (k == "head") {
          head_mark = x.Mark();
          if (auto s = as_string(p, x, f)) spec.head = *s;
        } else if (k == "workers") {
          workers_mark = x.Mark();
          spec.workers = as_strings(p, x, f);
        } else if (k == "port") {
          if (auto i = as_integer(p, x, f, 1, 65535)) r.port = static_cast<int>(*i);
        } else if (k == "dashboard_port") {
          if (auto i = as_integer(p, x, f, 1, 65535)) r.dashboard_port = static_cast<int>(*i);
        } else if (k == "num_cpus") {
          if (auto d = as_number(p, x, f, 0.001, 100000)) r.num_cpus = *d;
        } else if (k == "object_store_memory") {
          if (auto i = as_integer(p, x, f, 78643200, 1ll << 50)) r.object_store_memory = static_cast<std::uint64_t>(*i);
        } else if (k == "join_timeout") {
          if (auto i = as_integer(p, x, f, 1, 86400)) r.join_timeout = std::chrono::seconds(*i);
        } else if (k == "args") {
          r.ray_start_args = as_strings(p, x, f);
        }
      });
    } else if (key == "serve") {
      each_key(p, v, field, {"served_model_name", "tensor_parallel", "pipeline_parallel", "max_model_len", "gpu_memory_utilization",
                             "dtype", "host", "port", "backend", "api_key_env", "no_api_key", "env", "extra_args", "ready_timeout", "vllm"},
               [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        auto& s = spec.serve;
        auto auto_or_int = [&](unsigned& out) {
          if (x.IsScalar() && x.as<std::string>() == "auto") out = 0;
          else if (auto i = as_integer(p, x, f, 1, 1024)) out = static_cast<unsigned>(*i);
        };
        if (k == "served_model_name") {
          if (auto t = as_string(p, x, f)) s.served_model_name = *t;
        } else if (k == "tensor_parallel") {
          auto_or_int(s.tensor_parallel);
        } else if (k == "pipeline_parallel") {
          auto_or_int(s.pipeline_parallel);
        } else if (k == "max_model_len") {
          if (x.IsScalar() && x.as<std::string>() == "auto") spec.max_model_len_auto = true;
          else if (auto i = as_integer(p, x, f, 16, 10000000)) s.max_model_len = static_cast<std::uint64_t>(*i), spec.max_model_len_auto = false;
        } else if (k == "gpu_memory_utilization") {
          if (auto d = as_number(p, x, f, 0.01, 1.0)) s.gpu_memory_utilization = *d;
        } else if (k == "dtype") {
          if (auto t = as_string(p, x, f)) s.dtype = *t == "auto" ? "" : *t;
        } else if (k == "host") {
          if (auto t = as_string(p, x, f)) s.host = *t;
        } else if (k == "port") {
          if (auto i = as_integer(p, x, f, 1, 65535)) s.port = static_cast<int>(*i);
        } else if (k == "backend") {
          if (auto t = as_string(p, x, f)) {
            if (auto b = executor_backend_from_string(*t)) s.backend = *b;
            else p.add(x.Mark(), f, "\"" + *t + "\" is not a backend; use ray, mp or multinode");
          }
        } else if (k == "api_key_env") {
          api_key_env = as_string(p, x, f);
        } else if (k == "no_api_key") {
          if (auto b = as_bool(p, x, f)) s.no_api_key = *b;
        } else if (k == "env") {
          s.env = as_env(p, x, f);
        } else if (k == "extra_args") {
          s.extra_args = as_strings(p, x, f);
        } else if (k == "ready_timeout") {
          if (auto i = as_integer(p, x, f, 1, 7 * 86400)) s.ready_timeout = std::chrono::seconds(*i);
        } else if (k == "vllm") {
          if (auto t = as_string(p, x, f)) s.vllm_command = *t;
        }
      });
    } else if (key == "checks") {
      each_key(p, v, field, {"preflight", "smoke", "bench"}, [&](std::string const& k, YAML::Node const& x, std::string const& f) {
        auto& c = spec.checks;
        if (k == "preflight") {
          if (auto b = as_bool(p, x, f)) c.preflight = *b;
        } else if (k == "smoke") {
          if (auto b = as_bool(p, x, f)) c.smoke = *b;
        } else if (k == "bench") {
          if (x.IsScalar()) {
            if (auto b = as_bool(p, x, f); b && !*b) c.bench_requests = 0;
            return;
          }
          each_key(p, x, f, {"requests", "concurrency", "max_tokens", "prompt_words"},
                   [&](std::string const& bk, YAML::Node const& bx, std::string const& bf) {
            auto i = as_integer(p, bx, bf, bk == "requests" ? 0 : 1, 100000);
            if (!i) return;
            auto u = static_cast<unsigned>(*i);
            if (bk == "requests") c.bench_requests = u;
            else if (bk == "concurrency") c.bench_concurrency = u;
            else if (bk == "max_tokens") c.bench_max_tokens = u;
            else c.bench_prompt_words = u;
          });
        }
      });
    } else if (key == "state_dir") {
      if (auto s = as_string(p, v, field)) spec.state_dir = *s;
    }
  });

  // What the pieces need of each other.
  if (!have_inventory && p.list.empty())
    p.add(root.Mark(), "inventory", "missing: the hosts (a path to an inventory file, or an inline inventory)");
  if (!have_model) p.add(root.Mark(), "model", "missing: the model (id, hub, where it is downloaded)");
  bool const name_ok = !spec.name.empty() && spec.name.size() <= 32 && spec.name.front() != '-' &&
                       std::all_of(spec.name.begin(), spec.name.end(),
                                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
  if (!name_ok) p.add(root.Mark(), "name", "\"" + spec.name + "\" is not valid: use 1 to 32 of a-z, 0-9 and '-'");
  if (spec.ray.name == "ck" || spec.ray.name.empty()) spec.ray.name = spec.name;
  spec.serve.name = spec.name;
  if (spec.serve.vllm_command == "vllm" && spec.ray.ray_command.find('/') != std::string::npos)
    spec.serve.vllm_command = spec.ray.ray_command.substr(0, spec.ray.ray_command.rfind('/')) + "/vllm";
  if (api_key_env) {
    char const* key = std::getenv(api_key_env->c_str());
    if (!key || !*key) p.add(root.Mark(), "serve.api_key_env", *api_key_env + " is not set in this environment");
    else spec.serve.api_key = key;
  }
  try {
    validate(spec.ray);
  } catch (Error const& e) {
    p.add(ray_mark, "ray", e.what());
  }

  if (have_inventory) {
    auto const& inv = spec.inventory;
    // The NAS from the inventory's vars when the spec has none.
    if (!spec.nas) {
      for (auto const& h : inv.hosts()) {
        auto vars = h.extra.contains("vars") ? h.extra.at("vars") : json();
        if (vars.is_object() && vars.contains("nas_export")) {
          try {
            spec.nas = nas_spec_from_vars(vars, h.spec.name);
          } catch (Error const& e) {
            p.list.push_back(e.what());
          }
          break;
        }
      }
    }
    auto roles = cluster_roles(inv.hosts());
    std::vector<std::string> names;
    for (auto const& h : inv.hosts()) names.push_back(h.spec.name);
    auto known_host = [&](std::string const& n, std::string const& field) {
      if (inv.find(n)) return true;
      auto s = detail::suggest(n, names);
      auto mark = field == "ray.head" ? head_mark : field == "ray.workers" ? workers_mark : field == "model.download_host" ? download_mark : root.Mark();
      p.add(mark.is_null() ? root.Mark() : mark, field, "no host \"" + n + "\" in the inventory" + (s ? "; did you mean '" + *s + "'?" : " (" + join(names) + ")"));
      return false;
    };
    if (spec.head.empty()) spec.head = roles.head;
    if (spec.head.empty()) p.add(root.Mark(), "ray.head", "no GPU host in the inventory (roles head/worker/gpu, or gpus:) to be the head");
    else if (known_host(spec.head, "ray.head") &&
             std::find(roles.gpu_hosts.begin(), roles.gpu_hosts.end(), spec.head) == roles.gpu_hosts.end())
      p.add(root.Mark(), "ray.head", spec.head + " is not a GPU host (roles head/worker/gpu, or gpus:); the download box must never be the head (vLLM: \"Current node has no GPU available\")");
    if (spec.workers.empty()) {
      for (auto const& g : roles.gpu_hosts)
        if (g != spec.head) spec.workers.push_back(g);
    } else {
      for (auto const& w : spec.workers) known_host(w, "ray.workers");
    }
    if (spec.model.download_host.empty() && !roles.download_hosts.empty()) spec.model.download_host = roles.download_hosts.front();
    if (!spec.model.download_host.empty()) known_host(spec.model.download_host, "model.download_host");
    else if (spec.model.hub != "none")
      p.add(model_mark, "model.download_host", "no host downloads the model: give one, or give a host the role download");
    if (spec.model.download_dir.empty() && !spec.model.id.empty()) {
      ModelStoreSpec ms;
      ms.root = "/data";
      spec.model.download_dir = ModelStore(ms).path_for(spec.model.id);
    }
  }
  if (!p.list.empty()) {
    std::string all = std::to_string(p.list.size()) + (p.list.size() == 1 ? " mistake" : " mistakes") + " in the deployment spec, nothing was started:";
    for (auto const& l : p.list) all += "\n  " + l;
    // Keys and values from the file are quoted: no ESC or NUL of theirs
    // reaches the terminal that prints this.
    throw Error(make_error_code(errc::inventory_invalid), detail::without_control_characters(all));
  }
  return spec;
}

// ---------------------------------------------------------------------------
// The record

StepRecord* DeploymentRecord::step(std::string_view name) {
  for (auto& s : steps)
    if (s.step == name) return &s;
  return nullptr;
}

StepRecord const* DeploymentRecord::step(std::string_view name) const {
  for (auto const& s : steps)
    if (s.step == name) return &s;
  return nullptr;
}

json DeploymentRecord::to_json() const {
  json j{{"name", name},
         {"spec_file", spec_file},
         {"spec_fingerprint", spec_fingerprint},
         {"status", status},
         {"message", message},
         {"started_at", started_at},
         {"finished_at", finished_at},
         {"total_seconds", total_seconds},
         {"own_seconds", own_seconds},
         {"own_breakdown", own_breakdown},
         {"endpoint", endpoint},
         {"served_model_name", served_model_name},
         {"api_key_file", api_key_file},
         {"versions", versions},
         {"layout", layout},
         {"node_env", node_env},
         {"smoke", smoke},
         {"bench", bench},
         {"simulated", simulated},
         {"steps", json::array()}};
  for (auto const& s : steps) {
    json hosts = json::array();
    for (auto const& h : s.hosts)
      hosts.push_back({{"host", h.host}, {"status", h.status}, {"message", h.message}, {"started_s", h.started_s}, {"ended_s", h.ended_s}});
    j["steps"].push_back({{"step", s.step},
                          {"status", s.status},
                          {"message", s.message},
                          {"started_s", s.started_s},
                          {"ended_s", s.ended_s},
                          {"hosts", hosts},
                          {"detail", s.detail}});
  }
  return j;
}

DeploymentRecord DeploymentRecord::from_json(json const& j) {
  DeploymentRecord r;
  auto str = [&](char const* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  r.name = str("name");
  r.spec_file = str("spec_file");
  r.spec_fingerprint = str("spec_fingerprint");
  r.status = str("status");
  r.message = str("message");
  r.started_at = str("started_at");
  r.finished_at = str("finished_at");
  r.endpoint = str("endpoint");
  r.served_model_name = str("served_model_name");
  r.api_key_file = str("api_key_file");
  r.total_seconds = j.value("total_seconds", 0.0);
  r.own_seconds = j.value("own_seconds", 0.0);
  if (auto b = j.find("own_breakdown"); b != j.end() && b->is_object()) r.own_breakdown = *b;
  if (j.contains("versions") && j["versions"].is_object()) r.versions = j["versions"].get<std::map<std::string, std::string>>();
  if (j.contains("layout")) r.layout = j["layout"];
  if (j.contains("node_env") && j["node_env"].is_object())
    r.node_env = j["node_env"].get<std::map<std::string, std::map<std::string, std::string>>>();
  if (j.contains("smoke")) r.smoke = j["smoke"];
  if (j.contains("bench")) r.bench = j["bench"];
  if (j.contains("simulated") && j["simulated"].is_array()) r.simulated = j["simulated"].get<std::vector<std::string>>();
  for (auto const& s : j.value("steps", json::array())) {
    StepRecord sr;
    sr.step = s.value("step", "");
    sr.status = s.value("status", "");
    sr.message = s.value("message", "");
    sr.started_s = s.value("started_s", 0.0);
    sr.ended_s = s.value("ended_s", 0.0);
    if (s.contains("detail")) sr.detail = s["detail"];
    for (auto const& h : s.value("hosts", json::array()))
      sr.hosts.push_back({h.value("host", ""), h.value("status", ""), h.value("message", ""), h.value("started_s", 0.0), h.value("ended_s", 0.0)});
    r.steps.push_back(std::move(sr));
  }
  return r;
}

std::string DeploymentRecord::summary() const {
  std::ostringstream s;
  s << "deployment '" << name << "': " << status << (message.empty() ? "" : " (" + message + ")") << "\n";
  char line[256];
  for (auto const& st : steps) {
    std::snprintf(line, sizeof line, "  %-10s %-8s %7.1f s  ", st.step.c_str(), st.status.c_str(), st.ended_s - st.started_s);
    s << line << st.message << "\n";
  }
  if (status == "up") {
    s << "endpoint:  " << endpoint << "/v1  (model " << served_model_name << ")\n";
    if (!api_key_file.empty()) s << "api key:   " << api_key_file << " (mode 0600; chat and bench use it)\n";
    s << "try:       clusterkit chat --url " << endpoint << " --model " << served_model_name << " \"Who are you?\"\n";
  }
  if (!bench.empty() && bench.contains("requests_per_second")) {
    std::snprintf(line, sizeof line, "bench:     %d requests, %.2f req/s, %.1f output tok/s, TTFT p50 %.0f ms\n",
                  bench.value("requests", 0), bench.value("requests_per_second", 0.0), bench.value("output_tokens_per_second", 0.0),
                  bench.value("ttft_p50_ms", 0.0));
    s << line;
  }
  char t[320];
  if (own_breakdown.contains("engine_start"))
    std::snprintf(t, sizeof t,
                  "time:      %.1f s in all, %.1f s of it clusterkit's own (the rest: engine start %.1f s, Ray start "
                  "%.1f s beside the data copy %.1f s, the engine answering the checks %.1f s)\n",
                  total_seconds, own_seconds, own_breakdown.value("engine_start", 0.0), own_breakdown.value("ray_start", 0.0),
                  own_breakdown.value("data_copy", 0.0), own_breakdown.value("engine_answers", 0.0));
  else
    std::snprintf(t, sizeof t, "time:      %.1f s in all, %.1f s of it clusterkit's own\n", total_seconds, own_seconds);
  s << t;
  for (auto const& x : simulated) s << "SIMULATED: " << x << "\n";
  return s.str();
}

fs::path deployment_record_path(DeploymentSpec const& spec) {
  fs::path dir = spec.state_dir;
  if (dir.empty()) {
    if (char const* x = std::getenv("XDG_STATE_HOME"); x && *x) dir = fs::path(x) / "clusterkit" / "deployments" / spec.name;
    else if (char const* h = std::getenv("HOME"); h && *h) dir = fs::path(h) / ".local" / "state" / "clusterkit" / "deployments" / spec.name;
    else dir = fs::path("/tmp") / "clusterkit" / "deployments" / spec.name;
  }
  return dir / "record.json";
}

std::optional<DeploymentRecord> load_deployment_record(DeploymentSpec const& spec) {
  std::ifstream in(deployment_record_path(spec));
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), {});
  if (!detail::json_nesting_within(text, 32)) return std::nullopt;
  auto j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  try {
    return DeploymentRecord::from_json(j);
  } catch (json::exception const&) {
    return std::nullopt;  // a record of another shape: as if none (the next up writes a new one)
  }
}

json DeploymentPlanResult::to_json() const {
  json j{{"steps", json::array()}, {"notes", notes}};
  for (auto const& s : steps) {
    json cmds = json::array();
    for (auto const& c : s.commands) {
      json cmd{{"host", c.host}, {"command", c.command}};
      if (!c.script.empty()) cmd["script"] = c.script;
      cmds.push_back(std::move(cmd));
    }
    j["steps"].push_back({{"step", s.step}, {"what", s.what}, {"skip", s.skip_reason}, {"commands", cmds}});
  }
  return j;
}

std::string DeploymentPlanResult::text(bool full) const {
  std::ostringstream s;
  int n = 0;
  // Whole: each line indented under its host, so a script reads as one.
  auto const indented = [&](std::string const& text) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) s << "         " << line << "\n";
  };
  for (auto const& st : steps) {
    s << ++n << ". " << st.step << ": " << st.what;
    if (!st.skip_reason.empty()) s << "  [skip: " << st.skip_reason << "]";
    s << "\n";
    for (auto const& c : st.commands) {
      if (full) {
        s << "     " << c.host << ":\n";
        indented(c.command);
        if (!c.script.empty()) {
          s << "       the script, whole:\n";
          indented(c.script);
        }
        continue;
      }
      auto first = c.command.substr(0, c.command.find('\n'));
      if (first.size() > 200) first = first.substr(0, 197) + "...";
      s << "     " << c.host << ": " << first << (c.command.find('\n') != std::string::npos ? " ..." : "") << "\n";
    }
  }
  for (auto const& x : notes) s << "note: " << x << "\n";
  return s.str();
}

bool parse_host_probe(std::string_view text, DeploymentHostLook& look) {
  // /proc/uptime then /proc/loadavg: "12345.67 23456.78\n0.52 0.40 0.31 1/234 5678\n".
  std::istringstream in{std::string(text)};
  double up = 0, idle = 0;
  std::string l1, l5, l15;
  if (!(in >> up >> idle >> l1 >> l5 >> l15) || !std::isfinite(up) || up < 0) return false;
  for (auto const* l : {&l1, &l5, &l15})
    if (l->empty() || l->find_first_not_of("0123456789.") != std::string::npos) return false;
  look.uptime_seconds = up;
  look.load = l1 + " " + l5 + " " + l15;
  return true;
}

json DeploymentHostLook::to_json() const {
  json j{{"host", host}, {"roles", roles}, {"reachable", reachable}, {"answer_seconds", answer_seconds}};
  j["uptime_seconds"] = uptime_seconds > 0 ? json(uptime_seconds) : json(nullptr);
  j["load"] = load.empty() ? json(nullptr) : json(load);
  if (!message.empty()) j["message"] = message;
  return j;
}

std::string DeploymentHostLook::summary() const {
  std::ostringstream s;
  s << host;
  if (!roles.empty()) s << " (" << join(roles, ", ") << ")";
  if (!reachable) {
    s << ": UNREACHABLE" << (message.empty() ? std::string() : ": " + message);
    return s.str();
  }
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.2f", answer_seconds);
  s << ": answered in " << secs << " s";
  if (uptime_seconds > 0) {
    auto const minutes = static_cast<std::uint64_t>(uptime_seconds / 60);
    s << ", up ";
    if (minutes >= 24 * 60) s << minutes / (24 * 60) << " d " << (minutes / 60) % 24 << " h";
    else if (minutes >= 60) s << minutes / 60 << " h " << minutes % 60 << " min";
    else s << minutes << " min";
  }
  if (!load.empty()) s << ", load " << load;
  return s.str();
}

json DeploymentStatus::to_json() const {
  json j{{"name", name}, {"state", state}, {"problems", problems}};
  j["hosts"] = json::array();
  for (auto const& h : hosts) j["hosts"].push_back(h.to_json());
  j["record"] = record ? record->to_json() : json(nullptr);
  j["nas"] = nas ? nas->to_json() : json(nullptr);
  j["model"] = json::array();
  for (auto const& m : model) j["model"].push_back(m.to_json());
  j["ray"] = ray ? ray->to_json() : json(nullptr);
  j["engine"] = engine ? engine->to_json() : json(nullptr);
  return j;
}

std::string DeploymentStatus::summary() const {
  std::ostringstream s;
  s << "deployment '" << name << "': " << state << "\n";
  for (auto const& h : hosts) s << "  host " << h.summary() << "\n";
  if (nas) s << "  nas " << nas->path << ": " << (nas->ok() ? "shared by every host" : "NOT shared") << "\n";
  for (auto const& m : model) s << "  model on " << m.host << ": " << (m.ok() ? "complete" : m.message) << "\n";
  if (ray) s << ray->summary();
  if (engine) s << engine->summary();
  for (auto const& p : problems) s << "  problem: " << p << "\n";
  return s.str();
}

std::string layout_count_refusal(unsigned tp, unsigned pp, GpuInventory const& gpus) {
  if (tp == 0 || pp == 0 || gpus.nodes.empty()) return {};
  std::uint64_t const need = std::uint64_t(tp) * pp, have = gpus.total_gpus();
  if (need <= have) return {};
  std::string each;
  for (auto const& n : gpus.nodes) each += (each.empty() ? "" : ", ") + n.name + ": " + std::to_string(n.gpu_count);
  // Hosts alike: the seed's shape uses them all (TP across one host's
  // GPUs, PP across the hosts).
  unsigned const per_node = gpus.max_gpus_per_node();
  bool const alike = std::all_of(gpus.nodes.begin(), gpus.nodes.end(), [&](GpuNode const& n) { return n.gpu_count == per_node; });
  std::string const all = alike ? " (TP " + std::to_string(per_node) + " x PP " + std::to_string(gpus.nodes.size()) + " uses them all)" : "";
  return "TP " + std::to_string(tp) + " x PP " + std::to_string(pp) + " needs " + std::to_string(need) + " GPUs, and the GPU hosts have " +
         std::to_string(have) + " (" + each + "); set serve.tensor_parallel x serve.pipeline_parallel to at most " + std::to_string(have) +
         all + ", or both to auto for the planner's choice";
}

Layout choose_layout(Plan const& plan, unsigned tp, unsigned pp) {
  auto const on = plan.model + " on " + plan.gpus.describe();
  auto const nothing_fits = [&] {
    // The planner's suggestions start with "nothing fits: " already.
    auto said = plan.shortfall ? join(plan.shortfall->suggestions, "; ") : std::string();
    if (said.empty()) said = "more GPUs or a smaller model";
    return said.rfind("nothing fits", 0) == 0 ? said : "nothing fits: " + said;
  };
  if (tp == 0 && pp == 0) {
    if (auto const* best = plan.recommended_layout()) return *best;
    throw Error(errc::invalid_argument, on + ": " + nothing_fits());
  }
  // The first of that shape (preferred first) that fits and that the
  // options allow (no pipeline stages sharing a node unless asked), else
  // the first of that shape, whose reason is then said.
  Layout const* chosen = nullptr;
  auto const usable = [](Layout const& l) { return l.fits && l.allowed; };
  for (auto const& l : plan.layouts)
    if (l.tp == (tp ? tp : l.tp) && l.pp == (pp ? pp : l.pp) && (!chosen || (usable(l) && !usable(*chosen)))) chosen = &l;
  if (chosen && usable(*chosen)) return *chosen;
  std::string why = chosen ? chosen->reason : std::string();
  if (!chosen)
    for (auto const& r : plan.rejected)
      if ((tp == 0 || r.tp == tp) && (r.pp == 0 || pp == 0 || r.pp == pp)) {
        why = r.reason;
        break;
      }
  auto const shape = "TP " + (tp ? std::to_string(tp) : std::string("auto")) + " x PP " + (pp ? std::to_string(pp) : std::string("auto"));
  auto const* best = plan.recommended_layout();
  if (why.empty()) why = chosen ? "does not fit" : "not a layout the planner can make on these GPUs";
  throw Error(errc::invalid_argument, shape + " for " + on + ": " + why +
                                          (best ? "; what fits: TP " + std::to_string(best->tp) + " x PP " + std::to_string(best->pp) +
                                                      " (`clusterkit plan` lists every layout)"
                                                : "; " + nothing_fits()));
}

namespace detail {
// The plan of a model clusterkit ships the config of, from that config
// (tensor sizes estimated), named by its id; nullopt for another model or
// when a node's per-GPU memory is not known (it would plan as 0 bytes).
// Options out of range throw (the caller's mistake, not the model's size).
std::optional<Plan> known_model_plan(std::string_view model_id, GpuInventory const& gpus, PlanOptions const& options) {
  if (gpus.nodes.empty() || std::any_of(gpus.nodes.begin(), gpus.nodes.end(), [](GpuNode const& n) { return n.memory_bytes == 0; }))
    return std::nullopt;
  auto config = known_model_config(model_id);
  if (!config) return std::nullopt;
  auto facts = model_facts_from_config(*config, std::string(model_id) + " (config shipped with clusterkit)");
  estimate_tensors_from_config(facts);
  facts.dir = std::string(model_id);
  auto plan = plan_deployment(facts, gpus, options);
  plan.model = std::string(model_id);
  return plan;
}
}  // namespace detail

std::string known_model_fit_refusal(std::string_view model_id, unsigned tp, unsigned pp, GpuInventory const& gpus, PlanOptions const& options) {
  auto plan = detail::known_model_plan(model_id, gpus, options);
  if (!plan) return {};
  try {
    (void)choose_layout(*plan, tp, pp);
    return {};
  } catch (Error const& e) {
    return std::string(e.what()) + " (planned before any download, from the config.json clusterkit ships for it; tensor sizes "
                                   "estimated)";
  }
}

// Used by the I/O half.
namespace detail {
std::string deployment_now_iso() { return now_iso(); }
}  // namespace detail

}  // namespace clusterkit
