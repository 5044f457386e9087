# One list per target, kept apart from the build logic so that adding a file
# touches one line here. The library's folders are its layers; each depends
# only on the ones above it in this list:
#   core/     errors, quoting, text, formatting, coroutine/process/blocking helpers
#   remote/   hosts over OpenSSH, fan-out, inventory, the lab, the blocking runtime
#   storage/  the NAS, model files, the model store, the capacity planner
#   facts/    host facts, preflight, the NCCL check
#   openai/   the OpenAI-compatible client (needs only core/)
#   serve/    Ray, vLLM and the deployment that composes everything
# In every folder, X.cpp is pure (no processes, no sockets: tested without
# I/O) and X_io.cpp is its I/O half. Heavy Asio/Process templates are
# instantiated once, in core/asio_instances.cpp.
set(CLUSTERKIT_SOURCES
  src/core/asio_instances.cpp
  src/core/block_on.cpp
  src/core/digest.cpp
  src/core/error.cpp
  src/core/format.cpp
  src/core/shell.cpp
  src/core/yaml_limits.cpp

  src/remote/host.cpp
  src/remote/host_io.cpp
  src/remote/remote_script.cpp
  src/remote/ssh_diagnosis.cpp
  src/remote/fanout_io.cpp
  src/remote/run_each_io.cpp
  src/remote/runtime_io.cpp
  src/remote/inventory.cpp
  src/remote/lab.cpp
  src/remote/lab_io.cpp

  src/storage/nas.cpp
  src/storage/known_models.cpp
  src/storage/nas_io.cpp
  src/storage/model.cpp
  src/storage/model_store.cpp
  src/storage/model_store_io.cpp
  src/storage/planner.cpp

  src/facts/facts.cpp
  src/facts/facts_io.cpp
  src/facts/preflight.cpp
  src/facts/preflight_io.cpp
  src/facts/nccl_check.cpp
  src/facts/nccl_check_io.cpp

  src/openai/sse.cpp
  src/openai/prometheus.cpp
  src/openai/openai_chunk.cpp
  src/openai/openai_client_io.cpp
  src/openai/bench.cpp
  src/openai/bench_io.cpp

  src/serve/ray_cluster.cpp
  src/serve/ray_cluster_io.cpp
  src/serve/vllm_serve.cpp
  src/serve/vllm_serve_io.cpp
  src/serve/deployment.cpp
  src/serve/deployment_io.cpp
)
set(CLUSTERKIT_CLI_SOURCES
  src/cli/main.cpp
  src/cli/exec.cpp
  src/cli/transfer.cpp
  src/cli/inventory_cmd.cpp
  src/cli/lab_cmd.cpp
  src/cli/signals.cpp
  src/cli/connection.cpp
  src/cli/model_cmd.cpp
  src/cli/chat_cmd.cpp
  src/cli/bench_cmd.cpp
  src/cli/facts_cmd.cpp
  src/cli/preflight_cmd.cpp
  src/cli/nccl_check_cmd.cpp
  src/cli/nas_cmd.cpp
  src/cli/store_cmd.cpp
  src/cli/cluster_args.cpp
  src/cli/ray_cmd.cpp
  src/cli/serve_cmd.cpp
  src/cli/deploy_cmd.cpp
)
