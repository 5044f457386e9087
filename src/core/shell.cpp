// Quoting for POSIX shells (see shell.hpp).
#include "clusterkit/shell.hpp"

namespace clusterkit::shell {

std::string quote(std::string_view argument) {
  std::string out;
  out.reserve(argument.size() + 2);
  out.push_back('\'');
  for (char c : argument) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string join(std::span<std::string const> argv) {
  std::string out;
  for (auto const& a : argv) {
    if (!out.empty()) out.push_back(' ');
    out += quote(a);
  }
  return out;
}

std::string quote_for_display(std::string_view argument) {
  if (argument.empty()) return "''";
  for (char c : argument) {
    bool const plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       std::string_view("-_./:=@%+,").find(c) != std::string_view::npos;
    if (!plain) return quote(argument);
  }
  return std::string(argument);
}

std::string join_for_display(std::span<std::string const> argv) {
  std::string out;
  for (auto const& a : argv) {
    if (!out.empty()) out.push_back(' ');
    out += quote_for_display(a);
  }
  return out;
}

bool is_valid_variable_name(std::string_view name) {
  if (name.empty()) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name)
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  return true;
}

}  // namespace clusterkit::shell
