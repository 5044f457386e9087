# Unit tests: pure code, no processes or sockets.
ck_add_test(test_shell SOURCES unit/test_shell.cpp unit/test_remote_script.cpp unit/test_ssh_diagnosis.cpp)
ck_add_test(test_inventory SOURCES unit/test_inventory.cpp)
ck_add_test(test_model SOURCES unit/test_model.cpp)
ck_add_test(test_planner SOURCES unit/test_planner.cpp)
# Local processes (no ssh): the same code path as remote commands.
ck_add_test(test_host_local SOURCES unit/test_host_local.cpp)
# Against the real lab (root, sshd in namespaces).
ck_add_test(test_lab SOURCES lab/test_lab.cpp LABELS lab)
ck_add_test(test_host_ssh SOURCES lab/test_host_ssh.cpp LABELS lab)
