// Runtime: an io_context on a thread of its own, for callers that want plain
// blocking calls (scripts, the Python binding, tests). The async API is the
// primary one; these wrappers only wait on it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"

namespace clusterkit {

class Runtime {
public:
  Runtime();
  ~Runtime();
  Runtime(Runtime const&) = delete;
  Runtime& operator=(Runtime const&) = delete;

  asio::any_io_executor executor() const;
  /// A host whose operations run on this runtime.
  Host host(HostSpec spec) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Blocking wrappers. Each throws clusterkit::Error (with the diagnostic)
/// when the operation fails; a non-zero exit status is returned, not thrown.
/// Never call them from the thread that runs the host's executor.
RunResult run(Host& host, Command command, RunOptions options = {});
void connect(Host& host);
TransferResult upload(Host& host, std::string local_path, std::string remote_path, TransferOptions options = {});
TransferResult download(Host& host, std::string remote_path, std::string local_path, TransferOptions options = {});
std::vector<HostOutcome> run_on_hosts(std::vector<Host> hosts, Command command, FanoutOptions options = {});
/// One file to every host, a few at once; one outcome per host (errors are
/// in the outcomes, never thrown).
std::vector<TransferOutcome> upload_to_hosts(std::vector<Host> hosts, std::string local_path, std::string remote_path,
                                             UploadFanoutOptions options = {});

}  // namespace clusterkit
