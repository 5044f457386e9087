// Inventory parsing, selection and errors. Pure code: no processes, no ssh.

#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <chrono>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>

#include "clusterkit/inventory.hpp"
#include "support/yaml_mutations.hpp"

using namespace clusterkit;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::filesystem::path const examples_dir =
    std::filesystem::path(CK_SOURCE_DIR) / "examples" / "inventories";

struct Failure {
  std::error_code code;
  std::string message;
};

/// The error parsing `text` throws; fails the test when nothing is thrown.
Failure parse_error(std::string const& text, std::string const& source = "inv.yaml") {
  try {
    Inventory::parse(text, source);
  } catch (Error const& e) {
    return {e.code(), e.what()};
  }
  FAIL("parse accepted an invalid inventory:\n" << text);
  return {};
}

Failure select_error(Inventory const& inventory, std::string const& selector) {
  try {
    inventory.select(selector);
  } catch (Error const& e) {
    return {e.code(), e.what()};
  }
  FAIL("select accepted " << selector);
  return {};
}

std::vector<std::string> names(std::vector<InventoryHost> const& hosts) {
  std::vector<std::string> out;
  for (auto const& h : hosts) out.push_back(h.spec.name);
  return out;
}

/// Sets $HOME for the scope of a test.
struct ScopedHome {
  std::optional<std::string> saved;
  explicit ScopedHome(char const* value) {
    if (char const* old = std::getenv("HOME")) saved = old;
    ::setenv("HOME", value, 1);
  }
  ~ScopedHome() {
    if (saved)
      ::setenv("HOME", saved->c_str(), 1);
    else
      ::unsetenv("HOME");
  }
};

void check_same_hosts(Inventory const& a, Inventory const& b) {
  REQUIRE(a.hosts().size() == b.hosts().size());
  for (auto const& ha : a.hosts()) {
    INFO("host " << ha.spec.name);
    auto const* hb = b.find(ha.spec.name);
    REQUIRE(hb != nullptr);
    HostSpec const& x = ha.spec;
    HostSpec const& y = hb->spec;
    CHECK(x.address == y.address);
    CHECK(x.local == y.local);
    CHECK(x.user == y.user);
    CHECK(x.port == y.port);
    CHECK(x.identity_file == y.identity_file);
    CHECK(x.jump_host == y.jump_host);
    CHECK(x.known_hosts_file == y.known_hosts_file);
    CHECK(x.ssh_config_file == y.ssh_config_file);
    CHECK(x.host_key_policy == y.host_key_policy);
    CHECK(x.connect_timeout == y.connect_timeout);
    CHECK(x.control_persist == y.control_persist);
    CHECK(x.server_alive_interval == y.server_alive_interval);
    CHECK(x.server_alive_count == y.server_alive_count);
    CHECK(x.max_sessions == y.max_sessions);
    CHECK(x.ssh_options == y.ssh_options);
    CHECK(ha.roles == hb->roles);
    CHECK(ha.groups == hb->groups);
    CHECK(ha.extra == hb->extra);
  }
  CHECK(a.groups() == b.groups());
}

}  // namespace

// ---------------------------------------------------------------------------
// Accepted inventories

TEST_CASE("inventory: defaults apply to every host and hosts override them", "[inventory]") {
  auto inv = Inventory::parse(R"(
defaults:
  user: deploy
  port: 2222
  connect_timeout: 5
  max_sessions: 4
  host_key_policy: accept-new
  ssh_options: ["Compression=yes"]
hosts:
  a: {address: 10.0.0.1}
  b:
    address: 10.0.0.2
    user: root
    port: 22
    host_key_policy: strict
    ssh_options: ["IPQoS=throughput", "Ciphers=aes128-gcm@openssh.com"]
    control_persist: 0
    server_alive_interval: 7
    server_alive_count: 2
    jump_host: bastion@10.0.0.254:2200
)");
  REQUIRE(inv.hosts().size() == 2);
  auto const& a = inv.hosts()[0].spec;
  auto const& b = inv.hosts()[1].spec;
  CHECK(a.name == "a");
  CHECK(a.address == "10.0.0.1");
  CHECK(a.user == "deploy");
  CHECK(a.port == 2222);
  CHECK(a.connect_timeout == std::chrono::seconds(5));
  CHECK(a.max_sessions == 4);
  CHECK(a.host_key_policy == HostKeyPolicy::accept_new);
  CHECK(a.ssh_options == std::vector<std::string>{"Compression=yes"});
  // Untouched fields keep HostSpec's own defaults.
  CHECK(a.control_persist == std::chrono::seconds(600));
  CHECK(a.server_alive_interval == std::chrono::seconds(3));
  CHECK(a.server_alive_count == 3);
  CHECK_FALSE(a.local);
  CHECK(a.jump_host.empty());

  CHECK(b.user == "root");
  CHECK(b.port == 22);
  CHECK(b.connect_timeout == std::chrono::seconds(5));
  CHECK(b.host_key_policy == HostKeyPolicy::strict);
  CHECK(b.ssh_options == std::vector<std::string>{"IPQoS=throughput", "Ciphers=aes128-gcm@openssh.com"});
  CHECK(b.control_persist == std::chrono::seconds(0));
  CHECK(b.server_alive_interval == std::chrono::seconds(7));
  CHECK(b.server_alive_count == 2);
  CHECK(b.jump_host == "bastion@10.0.0.254:2200");
  CHECK(inv.source() == "<inventory>");
}

TEST_CASE("inventory: bare-string and empty hosts", "[inventory]") {
  auto inv = Inventory::parse(R"(
defaults: {user: ops}
hosts:
  web: 192.168.1.10
  db.internal:
  me: {local: true}
)");
  REQUIRE(names(inv.hosts()) == std::vector<std::string>{"web", "db.internal", "me"});
  CHECK(inv.hosts()[0].spec.address == "192.168.1.10");
  CHECK(inv.hosts()[0].spec.user == "ops");
  // No address: the name is the address, and defaults still apply.
  CHECK(inv.hosts()[1].spec.address == "db.internal");
  CHECK(inv.hosts()[1].spec.user == "ops");
  CHECK(inv.hosts()[2].spec.local);
  CHECK(inv.hosts()[2].roles.empty());
  CHECK(inv.hosts()[2].groups.empty());
  CHECK(inv.find("web") == &inv.hosts()[0]);
  CHECK(inv.find("nope") == nullptr);
}

TEST_CASE("inventory: groups from the host side and from the groups map", "[inventory]") {
  auto inv = Inventory::parse(R"(
hosts:
  h1: {groups: [rack2, gpu]}
  h2: {groups: [gpu]}
  h3: {}
groups:
  gpu: [h1, h3]
  rack1: [h2, h3]
)");
  CHECK(inv.find("h1")->groups == std::vector<std::string>{"gpu", "rack2"});  // sorted
  CHECK(inv.find("h2")->groups == std::vector<std::string>{"gpu", "rack1"});
  CHECK(inv.find("h3")->groups == std::vector<std::string>{"gpu", "rack1"});
  CHECK(inv.groups() == std::vector<std::string>{"gpu", "rack1", "rack2"});
  // Listed both ways: still one membership.
  CHECK(names(inv.select("gpu")) == std::vector<std::string>{"h1", "h2", "h3"});
}

TEST_CASE("inventory: roles are kept in order without repeats", "[inventory]") {
  auto inv = Inventory::parse(R"(
hosts:
  a: {roles: [head, gpu, head]}
  b: {roles: [worker, gpu]}
  c: {roles: [download]}
  d: {roles: [nas]}
  e: {}
)");
  CHECK(inv.find("a")->roles == std::vector<std::string>{"head", "gpu"});
  CHECK(inv.find("b")->roles == std::vector<std::string>{"worker", "gpu"});
  CHECK(inv.find("c")->roles == std::vector<std::string>{"download"});
  CHECK(inv.find("d")->roles == std::vector<std::string>{"nas"});
  CHECK(inv.find("e")->roles.empty());
}

TEST_CASE("inventory: gpus and vars are kept as JSON", "[inventory]") {
  auto inv = Inventory::parse(R"(
defaults:
  vars: {mount_point: /mnt, hf_home: /mnt/hf, replicas: 1}
hosts:
  g:
    gpus: {count: 2, model: L20, memory_gib: 48, simulated: true}
    vars:
      replicas: 2
      tags: [a, "b"]
      nested: {ratio: 0.5, off: null, quoted: "7", flag: false}
  h:
    gpus: {count: 0, model: "4090", memory_gib: 23.5}
  i: {}
)");
  auto const& g = inv.find("g")->extra;
  REQUIRE(g.contains("gpus"));
  CHECK(g["gpus"]["count"] == 2);
  CHECK(g["gpus"]["count"].is_number_integer());
  CHECK(g["gpus"]["model"] == "L20");
  CHECK(g["gpus"]["memory_gib"] == 48);
  CHECK(g["gpus"]["simulated"] == true);
  // vars: the host's keys win over defaults, others are inherited.
  CHECK(g["vars"]["mount_point"] == "/mnt");
  CHECK(g["vars"]["hf_home"] == "/mnt/hf");
  CHECK(g["vars"]["replicas"] == 2);
  CHECK(g["vars"]["tags"] == nlohmann::json::array({"a", "b"}));
  CHECK(g["vars"]["nested"]["ratio"] == 0.5);
  CHECK(g["vars"]["nested"]["off"].is_null());
  CHECK(g["vars"]["nested"]["quoted"] == "7");  // quoted: stays a string
  CHECK(g["vars"]["nested"]["flag"] == false);

  auto const& h = inv.find("h")->extra;
  CHECK(h["gpus"]["count"] == 0);
  CHECK(h["gpus"]["model"] == "4090");  // a model name, not a number
  CHECK(h["gpus"]["memory_gib"] == 23.5);
  CHECK(h["vars"]["replicas"] == 1);

  auto const& i = inv.find("i")->extra;
  CHECK_FALSE(i.contains("gpus"));
  CHECK(i["vars"]["mount_point"] == "/mnt");
}

TEST_CASE("inventory: a leading ~ in file paths is the home directory", "[inventory]") {
  ScopedHome home("/home/tester");
  auto inv = Inventory::parse(R"(
defaults:
  identity_file: ~/.ssh/id_ed25519
hosts:
  a:
    known_hosts_file: ~/.ssh/known_hosts.lab
    ssh_config_file: "~"
  b:
    identity_file: /etc/keys/b
    known_hosts_file: ~other/known_hosts
)");
  auto const& a = inv.find("a")->spec;
  CHECK(a.identity_file == "/home/tester/.ssh/id_ed25519");
  CHECK(a.known_hosts_file == "/home/tester/.ssh/known_hosts.lab");
  CHECK(a.ssh_config_file == "/home/tester");
  auto const& b = inv.find("b")->spec;
  CHECK(b.identity_file == "/etc/keys/b");
  CHECK(b.known_hosts_file == "~other/known_hosts");  // ~user is left to ssh
}

TEST_CASE("inventory: selectors", "[inventory]") {
  auto inv = Inventory::parse(R"(
hosts:
  gpu1: {roles: [head, gpu], groups: [gpu]}
  gpu2: {roles: [worker, gpu], groups: [gpu]}
  cpu1: {roles: [download]}
  nas: {roles: [nas]}
groups:
  storage: [nas]
)",
                              "cluster.yaml");
  using V = std::vector<std::string>;
  CHECK(names(inv.select("all")) == V{"gpu1", "gpu2", "cpu1", "nas"});
  CHECK(names(inv.select("gpu")) == V{"gpu1", "gpu2"});
  CHECK(names(inv.select("storage")) == V{"nas"});
  CHECK(names(inv.select("cpu1")) == V{"cpu1"});
  CHECK(names(inv.select("role:gpu")) == V{"gpu1", "gpu2"});
  CHECK(names(inv.select("role:head")) == V{"gpu1"});
  CHECK(names(inv.select("role:download")) == V{"cpu1"});
  CHECK(inv.select("role:nas").front().spec.name == "nas");
  // Lists: inventory order, no repeats, blanks around items ignored.
  CHECK(names(inv.select("nas,gpu2")) == V{"gpu2", "nas"});
  CHECK(names(inv.select("gpu, gpu1 ,role:head")) == V{"gpu1", "gpu2"});
  CHECK(names(inv.select("cpu1,all")) == V{"gpu1", "gpu2", "cpu1", "nas"});
  // A known role nobody has: an error naming what exists (an empty
  // selection once read as "0/0 hosts succeeded", exit 0).
  auto no_workers = Inventory::parse("hosts: {a: {roles: [gpu]}, b: {groups: [cpu]}}", "two.yaml");
  auto nobody = select_error(no_workers, "role:worker");
  CHECK(nobody.code == make_error_code(errc::unknown_host_or_group));
  CHECK(nobody.message == "'role:worker' selects no host in two.yaml; roles in use: role:gpu; groups: cpu");

  auto unknown = select_error(inv, "gpu01");
  CHECK(unknown.code == make_error_code(errc::unknown_host_or_group));
  CHECK_THAT(unknown.message, Contains("no host or group named 'gpu01' in cluster.yaml"));
  CHECK_THAT(unknown.message, Contains("known groups: gpu, storage"));
  CHECK_THAT(unknown.message, Contains("hosts: gpu1, gpu2, cpu1, nas"));
  CHECK_THAT(unknown.message, Contains("did you mean 'gpu1'?"));

  auto in_list = select_error(inv, "gpu1,storge");
  CHECK(in_list.code == make_error_code(errc::unknown_host_or_group));
  CHECK_THAT(in_list.message, Contains("'storge'"));
  CHECK_THAT(in_list.message, Contains("did you mean 'storage'?"));

  auto role = select_error(inv, "role:gpus");
  CHECK(role.code == make_error_code(errc::unknown_host_or_group));
  CHECK_THAT(role.message, Contains("no role named 'gpus'"));
  CHECK_THAT(role.message, Contains("known roles: head, worker, gpu, download, nas"));

  auto empty = select_error(inv, " , ");
  CHECK(empty.code == make_error_code(errc::unknown_host_or_group));
  CHECK_THAT(empty.message, Contains("empty host selector"));
}

TEST_CASE("inventory: to_json round-trips", "[inventory]") {
  ScopedHome home("/home/rt");
  auto inv = Inventory::parse(R"(
defaults: {user: root, identity_file: ~/.ssh/id, vars: {mount_point: /mnt}}
hosts:
  zeta: {address: 10.1.0.9, port: 2201, roles: [head, gpu], groups: [gpu],
         gpus: {count: 2, model: L20, memory_gib: 48, simulated: true},
         ssh_options: ["Compression=yes"], host_key_policy: accept-new,
         known_hosts_file: /tmp/kh, ssh_config_file: /tmp/cfg, jump_host: jump:22,
         connect_timeout: 3, control_persist: 30, server_alive_interval: 2,
         server_alive_count: 5, max_sessions: 16, vars: {flag: "true", n: 3}}
  alpha: {local: true, roles: [download]}
  mid: 10.1.0.5
groups:
  compute: [zeta, mid]
)");
  auto j = inv.to_json();
  CHECK(j["hosts"]["zeta"]["port"] == 2201);
  CHECK(j["hosts"]["zeta"]["host_key_policy"] == "accept-new");
  CHECK(j["hosts"]["zeta"]["identity_file"] == "/home/rt/.ssh/id");
  CHECK(j["hosts"]["alpha"]["local"] == true);
  CHECK(j["groups"]["compute"] == nlohmann::ordered_json::array({"mid", "zeta"}));  // by name
  CHECK(j["groups"]["gpu"] == nlohmann::ordered_json::array({"zeta"}));
  // Hosts keep the file's order: it is the order of fan-out output.
  std::vector<std::string> order;
  for (auto const& [name, value] : j["hosts"].items()) order.push_back(name);
  CHECK(order == std::vector<std::string>{"zeta", "alpha", "mid"});

  auto again = Inventory::parse(j.dump(), "roundtrip.json");
  check_same_hosts(inv, again);
  CHECK(again.find("zeta")->extra["vars"]["flag"] == "true");  // still a string
  CHECK(again.to_json() == j);
  // Pretty-printed JSON parses the same (YAML reads it).
  check_same_hosts(inv, Inventory::parse(j.dump(2)));
}

TEST_CASE("inventory: the seed-cluster examples (YAML and JSON) say the same thing", "[inventory]") {
  ScopedHome home("/home/seed");
  auto yaml = Inventory::load(examples_dir / "seed-cluster.yaml");
  auto json = Inventory::load(examples_dir / "seed-cluster.json");
  CHECK_THAT(yaml.source(), Contains("seed-cluster.yaml"));
  check_same_hosts(yaml, json);
  using V = std::vector<std::string>;
  CHECK(names(yaml.hosts()) == names(json.hosts()));

  for (auto const* inv : {&yaml, &json}) {
    CHECK(names(inv->select("role:gpu")) == V{"gpu1", "gpu2"});
    CHECK(names(inv->select("role:head")) == V{"gpu1"});
    CHECK(names(inv->select("role:worker")) == V{"gpu2"});
    CHECK(names(inv->select("role:download")).size() == 1);
    CHECK(names(inv->select("role:nas")).size() == 1);
    auto gpu1 = inv->find("gpu1");
    REQUIRE(gpu1 != nullptr);
    CHECK(gpu1->spec.address == "172.18.190.25");
    CHECK(inv->find("gpu2")->spec.address == "172.18.190.26");
    CHECK(gpu1->spec.identity_file == "/home/seed/.ssh/id_ed25519");
    CHECK(gpu1->extra["gpus"]["count"] == 2);
    CHECK(gpu1->extra["gpus"]["model"] == "L20");
    CHECK(gpu1->extra["gpus"]["memory_gib"] == 48);
    auto cpu = inv->select("role:download").front();
    CHECK((!cpu.extra.contains("gpus") || cpu.extra["gpus"].value("count", 0) == 0));
    for (auto const& h : inv->hosts()) {
      INFO(h.spec.name);
      CHECK(h.extra["vars"]["mount_point"] == "/mnt");
      CHECK(h.extra["vars"]["nas_export"].get<std::string>().find(":/") != std::string::npos);
    }
  }
}

TEST_CASE("inventory: load reads a file and names it in errors", "[inventory]") {
  auto dir = std::filesystem::temp_directory_path() / ("ck-inv-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto good = dir / "good.yaml";
  auto bad = dir / "bad.yaml";
  std::ofstream(good) << "hosts:\n  a: 10.0.0.1\n";
  std::ofstream(bad) << "hosts:\n  a: 10.0.0.1\n  b: {port: 0}\n";

  auto inv = Inventory::load(good);
  CHECK(inv.source() == good.string());
  CHECK(inv.hosts().at(0).spec.address == "10.0.0.1");

  try {
    Inventory::load(bad);
    FAIL("bad.yaml accepted");
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::inventory_invalid));
    CHECK_THAT(e.what(), Contains(bad.string() + ":3:"));
    CHECK_THAT(e.what(), Contains("hosts.b.port"));
  }

  auto missing = dir / "missing.yaml";
  try {
    Inventory::load(missing);
    FAIL("missing file accepted");
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::inventory_invalid));
    CHECK_THAT(e.what(), Contains("cannot read inventory " + missing.string() + ": No such file or directory"));
    CHECK_THAT(e.what(), Contains("Pass -i with an inventory file, or run `clusterkit lab up` to make one."));
  }

  try {
    Inventory::load(dir);  // a directory cannot be read as a file
    FAIL("directory accepted");
  } catch (Error const& e) {
    CHECK(e.code() == make_error_code(errc::inventory_invalid));
    CHECK_THAT(e.what(), Contains("cannot read inventory " + dir.string() + ": it is a folder, not a regular file"));
  }
  // A device is never read (`-i /dev/zero` used to read until std::bad_alloc).
  try {
    Inventory::load("/dev/zero");
    FAIL("/dev/zero accepted");
  } catch (Error const& e) {
    CHECK_THAT(e.what(), Contains("cannot read inventory /dev/zero: it is a device, not a regular file"));
  }
  // Nor a FIFO (the open would block).
  auto fifo = dir / "fifo.yaml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  try {
    Inventory::load(fifo);
    FAIL("FIFO accepted");
  } catch (Error const& e) {
    CHECK_THAT(e.what(), Contains("it is a FIFO, not a regular file"));
  }
  // Nor more than 4 MiB.
  auto big = dir / "big.yaml";
  std::ofstream(big) << "hosts:\n  a: 10.0.0.1\n" << std::string(5u << 20, '#') << "\n";
  try {
    Inventory::load(big);
    FAIL("5 MiB accepted");
  } catch (Error const& e) {
    CHECK_THAT(e.what(), Contains(" bytes, over the limit of 4 MiB"));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("inventory errors: a chain of aliases and deep nesting fail at once, naming the limit", "[inventory][errors]") {
  // Billion laughs: 9^8 strings through eight aliases, a few hundred bytes of text.
  std::string laughs = "defaults:\n  vars:\n    a: &a [x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'h'; ++c, ++prev) {
    laughs += std::string("    ") + c + ": &" + c + " [";
    for (int k = 0; k < 9; ++k) laughs += std::string(k ? ", " : "") + "*" + prev;
    laughs += "]\n";
  }
  laughs += "hosts:\n  h1: {address: 10.0.0.1, vars: {boom: *h}}\n";
  auto t0 = std::chrono::steady_clock::now();
  auto e = parse_error(laughs);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  CHECK(e.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(e.message, Contains("more than 100000 values once its aliases (*name) are expanded"));

  // Flow nesting 3000 deep (yaml-cpp's parser said only "bad file").
  std::string deep = "hosts:\n  h1: {address: x, vars: {a: " + std::string(3000, '[') + std::string(3000, ']') + "}}\n";
  e = parse_error(deep);
  CHECK_THAT(e.message, Contains(":2:") && Contains("nesting deeper than 64 levels"));
  // Block nesting, 80 levels of indentation.
  std::string block = "hosts:\n  h1:\n    address: x\n    vars:\n";
  std::string indent = "      ";
  for (int i = 0; i < 80; ++i, indent += "  ") block += indent + "k" + std::to_string(i) + ":\n";
  block += indent + "v\n";
  e = parse_error(block);
  CHECK_THAT(e.message, Contains("nesting deeper than 64 levels"));
  // A flat list of 2 million values (4 MB of text): refused on the text,
  // before yaml-cpp builds it (it took 3 s and 0.9 GB to parse first).
  std::string flat = "hosts: [";
  for (int i = 0; i < 2000000; ++i) flat += "x,";
  flat += "]\n";
  t0 = std::chrono::steady_clock::now();
  e = parse_error(flat);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK_THAT(e.message, Contains(":1:") && Contains("more than 100000 values (lines and list items)"));
  // 60 levels are within the limits.
  std::string sixty = "hosts:\n  h1: {address: x, vars: {a: " + std::string(60, '[') + "1" + std::string(60, ']') + "}}\n";
  CHECK(Inventory::parse(sixty, "inv.yaml").hosts().size() == 1);
}

// ---------------------------------------------------------------------------
// Rejected inventories: each error names the file, the line and the field.

TEST_CASE("inventory errors: YAML syntax", "[inventory][errors]") {
  auto e = parse_error("hosts:\n  a: {port: 22\n  b: 10.0.0.2\n");
  CHECK(e.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(e.message, Contains("inv.yaml:"));
  CHECK_THAT(e.message, Contains("invalid YAML"));

  auto indent = parse_error("hosts:\n  a: x\n   b: y\n");
  CHECK_THAT(indent.message, Contains("inv.yaml:3:"));
  CHECK_THAT(indent.message, Contains("invalid YAML"));

  auto json = parse_error("{\"hosts\": {\"a\": \"x\",\n \"b\": [1, 2}}\n", "inv.json");
  CHECK_THAT(json.message, Contains("inv.json:2:"));
}

TEST_CASE("inventory errors: empty, missing or empty hosts", "[inventory][errors]") {
  for (std::string text : {"", "\n\n", "# only a comment\n"}) {
    auto e = parse_error(text);
    CHECK(e.code == make_error_code(errc::inventory_invalid));
    CHECK_THAT(e.message, Contains("inv.yaml:1:1:"));
    CHECK_THAT(e.message, Contains("the inventory is empty"));
    CHECK_THAT(e.message, Contains("hosts:"));
  }
  auto no_hosts = parse_error("defaults: {user: root}\n");
  CHECK_THAT(no_hosts.message, Contains("inv.yaml:1:1: hosts: missing"));

  auto empty_hosts = parse_error("defaults: {user: root}\nhosts: {}\n");
  CHECK_THAT(empty_hosts.message, Contains("inv.yaml:2:1: hosts: no hosts"));

  auto null_hosts = parse_error("hosts:\n");
  CHECK_THAT(null_hosts.message, Contains("inv.yaml:1:1: hosts: no hosts"));

  auto list = parse_error("- a\n- b\n");
  CHECK_THAT(list.message, Contains("inv.yaml:1:1:"));
  CHECK_THAT(list.message, Contains("got a list"));

  auto hosts_list = parse_error("hosts:\n  - a\n  - b\n");
  CHECK_THAT(hosts_list.message, Contains("inv.yaml:2:3: hosts: expected a map of host names"));
}

TEST_CASE("inventory errors: wrong types and out-of-range values", "[inventory][errors]") {
  auto port = parse_error("hosts:\n  gpu1:\n    address: 10.0.0.1\n    port: abc\n");
  CHECK(port.code == make_error_code(errc::inventory_invalid));
  // std::system_error appends the category's words after the message.
  CHECK_THAT(port.message,
             StartsWith("inv.yaml:4:11: hosts.gpu1.port: expected an integer between 1 and 65535, got \"abc\""));

  auto range = parse_error("hosts:\n  gpu1: {port: 70000}\n");
  CHECK_THAT(range.message, Contains("inv.yaml:2:"));
  CHECK_THAT(range.message, Contains("hosts.gpu1.port: expected an integer between 1 and 65535, got \"70000\""));

  auto zero = parse_error("defaults:\n  port: 0\nhosts: {a: x}\n");
  CHECK_THAT(zero.message, Contains("inv.yaml:2:9: defaults.port"));

  auto local = parse_error("hosts:\n  a:\n    local: maybe\n");
  CHECK_THAT(local.message, Contains("inv.yaml:3:12: hosts.a.local: expected true or false, got \"maybe\""));

  auto user = parse_error("hosts:\n  a:\n    user: [root]\n");
  CHECK_THAT(user.message, Contains("inv.yaml:3:11: hosts.a.user: expected a string, got a list"));

  auto empty_user = parse_error("hosts:\n  a:\n    user:\n  b: x\n");
  CHECK_THAT(empty_user.message, Contains("inv.yaml:3:5: hosts.a.user: expected a string, got nothing"));

  auto host_value = parse_error("hosts:\n  a: [1, 2]\n");
  CHECK_THAT(host_value.message, Contains("inv.yaml:2:6: hosts.a: expected a map of host fields or an address"));

  auto timeout = parse_error("hosts:\n  a: {connect_timeout: -1}\n");
  CHECK_THAT(timeout.message, Contains("inv.yaml:2:"));
  CHECK_THAT(timeout.message, Contains("hosts.a.connect_timeout: expected a positive number of seconds, got \"-1\""));

  auto sessions = parse_error("hosts:\n  a: x\n  b: {max_sessions: 65}\n");
  CHECK_THAT(sessions.message, Contains("inv.yaml:3:"));
  CHECK_THAT(sessions.message, Contains("hosts.b.max_sessions: expected an integer between 1 and 64"));

  auto policy = parse_error("hosts:\n  a:\n    host_key_policy: yes\n");
  CHECK_THAT(policy.message,
             Contains("inv.yaml:3:22: hosts.a.host_key_policy: expected \"strict\" or \"accept-new\", got \"yes\""));

  auto option = parse_error("hosts:\n  a:\n    ssh_options:\n      - Compression=yes\n      - Compression\n");
  CHECK_THAT(option.message, Contains("inv.yaml:5:9: hosts.a.ssh_options[1]: expected an ssh option as \"Key=Value\""));

  auto options_scalar = parse_error("hosts:\n  a: {ssh_options: Compression=yes}\n");
  CHECK_THAT(options_scalar.message, Contains("inv.yaml:2:"));
  CHECK_THAT(options_scalar.message, Contains("hosts.a.ssh_options: expected a list"));

  auto vars = parse_error("hosts:\n  a:\n    vars: [x]\n");
  CHECK_THAT(vars.message, Contains("inv.yaml:3:11: hosts.a.vars: expected a map of variables, got a list"));

  auto address = parse_error("defaults:\n  address: 10.0.0.1\nhosts: {a: x}\n");
  CHECK_THAT(address.message, Contains("inv.yaml:2:3: defaults.address: an address belongs to one host"));
}

TEST_CASE("inventory errors: gpus are checked", "[inventory][errors]") {
  auto count = parse_error("hosts:\n  a:\n    gpus: {count: -2, model: L20}\n");
  CHECK_THAT(count.message, Contains("inv.yaml:3:19: hosts.a.gpus.count: expected a non-negative integer, got \"-2\""));

  auto fraction = parse_error("hosts:\n  a:\n    gpus: {count: 1.5}\n");
  CHECK_THAT(fraction.message, Contains("hosts.a.gpus.count: expected a non-negative integer, got \"1.5\""));

  auto memory = parse_error("hosts:\n  a: x\n  b:\n    gpus:\n      count: 2\n      memory_gib: 0\n");
  CHECK_THAT(memory.message, Contains("inv.yaml:6:19: hosts.b.gpus.memory_gib: expected a positive number, got \"0\""));

  auto words = parse_error("hosts:\n  a:\n    gpus: {memory_gib: lots}\n");
  CHECK_THAT(words.message, Contains("inv.yaml:3:"));
  CHECK_THAT(words.message, Contains("hosts.a.gpus.memory_gib: expected a positive number, got \"lots\""));

  auto not_map = parse_error("hosts:\n  a:\n    gpus: 2\n");
  CHECK_THAT(not_map.message, Contains("inv.yaml:3:11: hosts.a.gpus: expected a map such as {count: 2"));
}

TEST_CASE("inventory errors: unknown fields get a suggestion", "[inventory][errors]") {
  auto typo = parse_error("hosts:\n  gpu1:\n    adress: 10.0.0.1\n");
  CHECK(typo.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(typo.message,
             StartsWith("inv.yaml:3:5: hosts.gpu1.adress: unknown field 'adress' in host 'gpu1'; "
                        "did you mean 'address'?"));

  auto swapped = parse_error("hosts:\n  gpu1: {prot: 22}\n");
  CHECK_THAT(swapped.message, Contains("inv.yaml:2:10: hosts.gpu1.prot: unknown field 'prot'"));
  CHECK_THAT(swapped.message, Contains("did you mean 'port'?"));

  auto prefix = parse_error("defaults:\n  identity: ~/.ssh/id\nhosts: {a: x}\n");
  CHECK_THAT(prefix.message, Contains("inv.yaml:2:3: defaults.identity: unknown field 'identity' in defaults"));
  CHECK_THAT(prefix.message, Contains("did you mean 'identity_file'?"));

  auto far = parse_error("hosts:\n  a:\n    zzzzzzzzzz: 1\n");
  CHECK_THAT(far.message, Contains("inv.yaml:3:5: hosts.a.zzzzzzzzzz: unknown field 'zzzzzzzzzz'"));
  CHECK_THAT(far.message, Contains("known fields: address, local, user, port"));

  auto top = parse_error("host:\n  a: x\n");
  CHECK_THAT(top.message, Contains("inv.yaml:1:1: host: unknown top-level key 'host'"));
  CHECK_THAT(top.message, Contains("did you mean 'hosts'?"));
}

TEST_CASE("inventory errors: unknown roles list the known ones", "[inventory][errors]") {
  auto e = parse_error("hosts:\n  a: x\n  b:\n    roles: [gpu, haed]\n");
  CHECK(e.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(e.message, Contains("inv.yaml:4:18: hosts.b.roles[1]: unknown role 'haed'"));
  CHECK_THAT(e.message, Contains("known roles: head, worker, gpu, download, nas"));
  CHECK_THAT(e.message, Contains("did you mean 'head'?"));

  auto upper = parse_error("hosts:\n  a:\n    roles: [GPU]\n");
  CHECK_THAT(upper.message, Contains("inv.yaml:3:13: hosts.a.roles[0]: unknown role 'GPU'"));
  CHECK_THAT(upper.message, Contains("did you mean 'gpu'?"));

  auto scalar = parse_error("hosts:\n  a: {roles: gpu}\n");
  CHECK_THAT(scalar.message, Contains("inv.yaml:2:"));
  CHECK_THAT(scalar.message, Contains("hosts.a.roles: expected a list such as [head, gpu], got \"gpu\""));
}

TEST_CASE("inventory errors: groups", "[inventory][errors]") {
  auto unknown = parse_error("hosts:\n  gpu1: x\n  gpu2: y\ngroups:\n  gpu: [gpu1, gpu3]\n");
  CHECK(unknown.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(unknown.message, Contains("inv.yaml:5:15: groups.gpu[1]: no host named 'gpu3' in hosts"));
  CHECK_THAT(unknown.message, Contains("did you mean 'gpu1'?"));

  auto short_name = parse_error("hosts: {a: x}\ngroups: {g: [a, b]}\n");
  CHECK_THAT(short_name.message, Contains("inv.yaml:2:17: groups.g[1]: no host named 'b' in hosts; known hosts: a"));

  auto far = parse_error("hosts:\n  gpu1: x\ngroups:\n  gpu:\n    - somewhere-else\n");
  CHECK_THAT(far.message, Contains("inv.yaml:5:7: groups.gpu[0]: no host named 'somewhere-else'"));
  CHECK_THAT(far.message, Contains("known hosts: gpu1"));

  auto all = parse_error("hosts:\n  a: x\ngroups:\n  all: [a]\n");
  CHECK_THAT(all.message, Contains("inv.yaml:4:3: groups.all: 'all' is reserved"));

  auto all_on_host = parse_error("hosts:\n  a: {groups: [gpu, all]}\n");
  CHECK_THAT(all_on_host.message, Contains("inv.yaml:2:"));
  CHECK_THAT(all_on_host.message, Contains("hosts.a.groups[1]: 'all' is reserved"));

  auto bad_name = parse_error("hosts:\n  a: x\ngroups:\n  \"gpu nodes\": [a]\n");
  CHECK_THAT(bad_name.message, Contains("inv.yaml:4:3: groups.gpu nodes: invalid group name 'gpu nodes'"));

  auto empty = parse_error("hosts:\n  a: x\ngroups:\n  spare: []\n");
  CHECK_THAT(empty.message, Contains("inv.yaml:4:"));
  CHECK_THAT(empty.message, Contains("groups.spare: group 'spare' has no hosts"));

  auto clash = parse_error("hosts:\n  a: x\n  b: y\ngroups:\n  a: [b]\n");
  CHECK_THAT(clash.message, Contains("inv.yaml:5:3: groups.a: group 'a' has the same name as a host"));

  auto not_list = parse_error("hosts:\n  a: x\ngroups:\n  g: a\n");
  CHECK_THAT(not_list.message, Contains("inv.yaml:4:6: groups.g: expected a list such as [gpu1, gpu2]"));
}

TEST_CASE("inventory errors: names and duplicates", "[inventory][errors]") {
  auto dup = parse_error("hosts:\n  gpu1: 10.0.0.1\n  gpu2: 10.0.0.2\n  gpu1: 10.0.0.3\n");
  CHECK(dup.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(dup.message,
             StartsWith("inv.yaml:4:3: hosts.gpu1: duplicate host 'gpu1'; it is already defined at line 2"));

  auto dup_field = parse_error("hosts:\n  a:\n    port: 22\n    port: 23\n");
  CHECK_THAT(dup_field.message, Contains("inv.yaml:4:5: hosts.a.port: duplicate field 'port'"));

  auto dup_json = parse_error("{\"hosts\": {\n  \"a\": \"x\",\n  \"a\": \"y\"}}\n", "inv.json");
  CHECK_THAT(dup_json.message, Contains("inv.json:3:3: hosts.a: duplicate host 'a'; it is already defined at line 2"));

  auto dup_group = parse_error("hosts: {a: x}\ngroups:\n  g: [a]\n  g: [a]\n");
  CHECK_THAT(dup_group.message, Contains("inv.yaml:4:3: groups.g: duplicate group 'g'"));

  auto dup_top = parse_error("hosts: {a: x}\nhosts: {b: y}\n");
  CHECK_THAT(dup_top.message, Contains("inv.yaml:2:1: hosts: duplicate key 'hosts'"));

  auto bad_name = parse_error("hosts:\n  a: x\n  \"gpu 1\": y\n");
  CHECK_THAT(bad_name.message, Contains("inv.yaml:3:3: hosts.gpu 1: invalid host name 'gpu 1'"));

  auto all = parse_error("hosts:\n  all: x\n");
  CHECK_THAT(all.message, Contains("inv.yaml:2:3: hosts.all: 'all' is reserved"));
}

TEST_CASE("inventory errors: JSON inventories get line numbers too", "[inventory][errors]") {
  std::string text =
      "{\n"
      "  \"hosts\": {\n"
      "    \"gpu1\": {\"address\": \"10.0.0.1\"},\n"
      "    \"gpu2\": {\"address\": \"10.0.0.2\", \"port\": \"ssh\"}\n"
      "  }\n"
      "}\n";
  auto e = parse_error(text, "cluster.json");
  CHECK(e.code == make_error_code(errc::inventory_invalid));
  CHECK_THAT(e.message, Contains("cluster.json:4:"));
  CHECK_THAT(e.message, Contains("hosts.gpu2.port: expected an integer between 1 and 65535, got \"ssh\""));
}

// ---------------------------------------------------------------------------
// HostSpec and Command helpers used in messages

TEST_CASE("HostSpec::display and local_machine", "[inventory][host]") {
  HostSpec spec;
  spec.name = "gpu1";
  spec.address = "10.0.0.1";
  CHECK(spec.display() == "10.0.0.1");
  spec.user = "root";
  CHECK(spec.display() == "root@10.0.0.1");
  spec.port = 2222;
  CHECK(spec.display() == "root@10.0.0.1:2222");
  spec.address = "fe80::1";
  CHECK(spec.display() == "root@[fe80::1]:2222");
  spec.address.clear();
  spec.port = 0;
  CHECK(spec.display() == "root@gpu1");

  auto local = HostSpec::local_machine();
  CHECK(local.name == "localhost");
  CHECK(local.local);
  CHECK(local.display() == "local");
  CHECK(HostSpec::local_machine("here").name == "here");
}

TEST_CASE("Command::display", "[inventory][host]") {
  CHECK(Command::args({"nvidia-smi", "-L"}).display() == "nvidia-smi -L");
  CHECK(Command::args({"echo", "a b", "it's", ""}).display() == "echo 'a b' 'it'\\''s' ''");
  CHECK(Command::shell("set -e\nvllm serve x\n").display() == "set -e ...");
  CHECK(Command::shell("\n  uname -a  \n").display() == "uname -a");
  CHECK(Command::shell("").display().empty());
}

TEST_CASE("inventory: a local host without an address has none (its name is not one)", "[inventory]") {
  // Issue 14: on a real H200 machine, `h200: {local: true}` made preflight's
  // port checks and nccl-check's rendezvous resolve "h200".
  auto inv = Inventory::parse("hosts:\n  h200: {local: true, roles: [head, gpu]}\n  gpu2: {address: 10.0.0.2}\n"
                              "  me: {local: true, address: 10.0.0.1}\n",
                              "inv.yaml");
  CHECK(inv.find("h200")->spec.address.empty());
  CHECK(inv.find("h200")->spec.local);
  CHECK(inv.find("me")->spec.address == "10.0.0.1");  // given: kept
  CHECK(inv.find("gpu2")->spec.address == "10.0.0.2");
  // And it round-trips through the JSON form.
  auto again = Inventory::parse(inv.to_json().dump(), "roundtrip.json");
  CHECK(again.find("h200")->spec.address.empty());
}

// Mutations of every example inventory (tests/support/yaml_mutations.hpp):
// each parses or throws clusterkit::Error, in bounded time, with a message
// that is bounded and safe to print (no ESC or NUL from the file reaches a
// terminal). CK_FUZZ_ITERATIONS sets the count per file (default 600).
TEST_CASE("fuzz: inventories mutated as a careless edit or a hostile file would", "[inventory][fuzz]") {
  namespace fs = std::filesystem;
  std::uint32_t seed = 20261206;
  test::FuzzCounts counts;
  for (auto const& entry : fs::directory_iterator(fs::path(CK_SOURCE_DIR) / "examples" / "inventories")) {
    if (entry.path().extension() != ".yaml" && entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string const original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE_NOTHROW(Inventory::parse(original, entry.path().string()));
    test::fuzz_yaml(entry.path().filename().string(), original, seed++, test::fuzz_iterations(600),
                    [](std::string const& text) { (void)Inventory::parse(text, "fuzz.yaml"); }, counts);
  }
  INFO(counts.parsed << " parsed, " << counts.refused << " refused");
  CHECK(counts.parsed > 0);
  CHECK(counts.refused > 0);
}
