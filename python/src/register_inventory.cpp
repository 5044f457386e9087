// Inventory and InventoryHost. JSON values (`extra`, to_json()) cross into
// Python as plain dicts/lists through the json module.
#include "support.hpp"

#include "clusterkit/inventory.hpp"

namespace ckpy {
namespace {

template <class Json>
py::object json_to_python(Json const& j) {
  static auto* loads = new py::object(py::module_::import("json").attr("loads"));
  return (*loads)(j.dump(-1, ' ', false, Json::error_handler_t::replace));
}

}  // namespace

void register_inventory(py::module_& m) {
  using IH = ck::InventoryHost;
  py::class_<IH>(m, "InventoryHost", "One host of an inventory.")
      .def_readonly("spec", &IH::spec)
      .def_property_readonly("name", [](IH const& h) { return h.spec.name; })
      .def_readonly("groups", &IH::groups, "Groups the host is in, sorted, without 'all'.")
      .def_readonly("roles", &IH::roles, "What the host is for: head, worker, gpu, download, nas...")
      .def_property_readonly(
          "extra", [](IH const& h) { return json_to_python(h.extra); },
          "Other fields (gpus:, vars:, ...), as given, as a dict (a new copy on each access).")
      .def("__repr__", [](IH const& h) {
        return "InventoryHost(" + py::repr(py::str(h.spec.name)).cast<std::string>() +
               ", groups=" + py::repr(py::cast(h.groups)).cast<std::string>() +
               ", roles=" + py::repr(py::cast(h.roles)).cast<std::string>() + ")";
      });

  using I = ck::Inventory;
  py::class_<I>(m, "Inventory",
                "The hosts of a cluster from a YAML or JSON file. Errors raise clusterkit.Error with code "
                "'inventory_invalid' and a message naming the file, line and field.")
      .def(py::init<>(), "An empty inventory.")
      .def(py::init<I const&>(), py::arg("other"), "A copy.")
      .def_static(
          "load", [](py::object path) { return I::load(path_string(path)); }, py::arg("path"),
          "Read an inventory file (YAML or JSON).")
      .def_static("parse", [](std::string_view text, std::string source) { return I::parse(text, std::move(source)); },
                  py::arg("text"), py::arg("source") = "<inventory>",
                  "Parse inventory text; `source` names it in error messages.")
      .def_property_readonly("hosts", [](I const& i) { return i.hosts(); }, "The hosts, in file order (a copy).")
      .def_property_readonly("source", [](I const& i) { return i.source(); })
      .def(
          "find",
          [](I const& i, std::string_view name) -> std::optional<IH> {
            if (auto const* h = i.find(name)) return *h;
            return std::nullopt;
          },
          py::arg("name"), "The host named `name`, or None.")
      .def("groups", &I::groups, "Group names, sorted ('all' is implicit and not listed).")
      .def("select", &I::select, py::arg("selector"),
           "Hosts matching 'all', a group, a host name, 'role:NAME', or a comma-separated list of those; in "
           "inventory order. Raises clusterkit.Error('unknown_host_or_group') naming what did not match.")
      .def(
          "to_json", [](I const& i) { return json_to_python(i.to_json()); },
          "The inventory as a dict in the shape load() accepts.")
      .def("__len__", [](I const& i) { return i.hosts().size(); })
      .def("__contains__", [](I const& i, std::string_view name) { return i.find(name) != nullptr; })
      .def("__iter__", [](I const& i) { return py::iter(py::cast(i.hosts())); })
      .def("__repr__", [](I const& i) {
        return "Inventory(" + py::repr(py::str(i.source())).cast<std::string>() + ", " +
               std::to_string(i.hosts().size()) + " hosts)";
      });
}

}  // namespace ckpy
