# One list per target, kept apart from the build logic so that adding a file
# touches one line here. Heavy Asio/Process templates are instantiated once,
# in src/asio_instances.cpp.
set(CLUSTERKIT_SOURCES
  src/asio_instances.cpp
  src/error.cpp
  src/shell.cpp
  src/remote_script.cpp
  src/ssh_diagnosis.cpp
  src/host_spec.cpp
  src/host.cpp
  src/fanout.cpp
  src/runtime.cpp
  src/inventory.cpp
  src/lab.cpp
  src/model.cpp
  src/planner.cpp
)
set(CLUSTERKIT_CLI_SOURCES
  src/cli/main.cpp
  src/cli/exec.cpp
  src/cli/transfer.cpp
  src/cli/inventory_cmd.cpp
  src/cli/lab_cmd.cpp
  src/cli/connection.cpp
  src/cli/model_cmd.cpp
)
