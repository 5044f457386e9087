#include "clusterkit/error.hpp"

namespace clusterkit {
namespace {

class category final : public std::error_category {
public:
  char const* name() const noexcept override { return "clusterkit"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::ok: return "success";
      case errc::ssh_not_found: return "the ssh client could not be started";
      case errc::connection_refused: return "connection refused (nothing listens on that port)";
      case errc::host_unreachable: return "host unreachable or not answering";
      case errc::name_resolution_failed: return "host name did not resolve";
      case errc::authentication_failed: return "ssh authentication failed";
      case errc::host_key_unknown: return "host key not known";
      case errc::host_key_changed: return "host key changed";
      case errc::connection_lost: return "connection lost";
      case errc::ssh_failed: return "ssh failed";
      case errc::timed_out: return "timed out";
      case errc::cancelled: return "cancelled";
      case errc::bad_working_directory: return "working directory does not exist";
      case errc::bad_environment_name: return "invalid environment variable name";
      case errc::transfer_failed: return "file transfer failed";
      case errc::local_file_error: return "local file error";
      case errc::inventory_invalid: return "invalid inventory";
      case errc::unknown_host_or_group: return "unknown host or group";
      case errc::skipped: return "skipped after an earlier failure";
      case errc::lab_needs_root: return "the lab needs root";
      case errc::lab_failed: return "lab operation failed";
      case errc::program_missing: return "required program missing";
      case errc::parse_error: return "could not parse";
      case errc::invalid_argument: return "invalid argument";
      case errc::http_error: return "the HTTP server answered with an error";
      case errc::tls_error: return "TLS handshake failed";
      case errc::protocol_error: return "the server broke its protocol";
      case errc::mount_conflict: return "something else is mounted there";
      case errc::mount_failed: return "mount or unmount failed";
      case errc::download_failed: return "model download failed";
      case errc::copy_failed: return "copy failed";
      case errc::model_incomplete: return "the model folder is incomplete or damaged";
      case errc::ray_failed: return "a Ray node did not start or join";
      case errc::engine_failed: return "the vLLM engine died or did not become ready";
      case errc::deployment_failed: return "a deployment step failed";
      case errc::command_failed: return "the command failed";
      case errc::file_not_found: return "no such file or folder";
    }
    return "unknown clusterkit error";
  }
};

}  // namespace

std::error_category const& error_category() noexcept {
  static category const instance;
  return instance;
}

}  // namespace clusterkit
