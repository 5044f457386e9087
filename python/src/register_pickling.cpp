// Pickling for the library's results and the plain values inside them
// (see pickling.hpp for the state's form). One list for the whole module,
// checked by the tests' assert_pickles on real results (tests/python/pickles.py):
// a member added to a struct and not here is caught there.
#include "pickling.hpp"

#include "clusterkit/bench.hpp"
#include "clusterkit/deployment.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/model_store.hpp"
#include "clusterkit/nas.hpp"
#include "clusterkit/nccl_check.hpp"
#include "clusterkit/openai_client.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/prometheus.hpp"
#include "clusterkit/ray_cluster.hpp"
#include "clusterkit/vllm_serve.hpp"

namespace ck = clusterkit;

// facts.hpp
CK_PICKLE_MEMBERS(ck::OsRelease, &ck::OsRelease::id, &ck::OsRelease::version_id, &ck::OsRelease::pretty_name, &ck::OsRelease::fields);
CK_PICKLE_MEMBERS(ck::KernelInfo, &ck::KernelInfo::system, &ck::KernelInfo::release, &ck::KernelInfo::machine);
CK_PICKLE_MEMBERS(ck::MemoryInfo, &ck::MemoryInfo::total_bytes, &ck::MemoryInfo::available_bytes, &ck::MemoryInfo::free_bytes, &ck::MemoryInfo::swap_total_bytes, &ck::MemoryInfo::swap_free_bytes);
CK_PICKLE_MEMBERS(ck::DiskUsage, &ck::DiskUsage::path, &ck::DiskUsage::filesystem, &ck::DiskUsage::mount_point, &ck::DiskUsage::total_bytes, &ck::DiskUsage::used_bytes, &ck::DiskUsage::available_bytes);
CK_PICKLE_MEMBERS(ck::GpuInfo, &ck::GpuInfo::index, &ck::GpuInfo::uuid, &ck::GpuInfo::name, &ck::GpuInfo::memory_total_bytes, &ck::GpuInfo::memory_used_bytes, &ck::GpuInfo::driver_version, &ck::GpuInfo::compute_capability, &ck::GpuInfo::pci_bus_id, &ck::GpuInfo::simulated);
CK_PICKLE_MEMBERS(ck::GpuTopology, &ck::GpuTopology::devices, &ck::GpuTopology::links, &ck::GpuTopology::cpu_affinity, &ck::GpuTopology::numa_affinity);
CK_PICKLE_MEMBERS(ck::NvidiaSmiHeader, &ck::NvidiaSmiHeader::smi_version, &ck::NvidiaSmiHeader::driver_version, &ck::NvidiaSmiHeader::cuda_version);
CK_PICKLE_MEMBERS(ck::DockerFacts, &ck::DockerFacts::client_version, &ck::DockerFacts::client_api_version, &ck::DockerFacts::daemon_reachable, &ck::DockerFacts::server_version, &ck::DockerFacts::daemon_error, &ck::DockerFacts::runtimes, &ck::DockerFacts::nvidia_toolkit, &ck::DockerFacts::images);
CK_PICKLE_MEMBERS(ck::NetAddress, &ck::NetAddress::family, &ck::NetAddress::address, &ck::NetAddress::prefix_length, &ck::NetAddress::scope);
CK_PICKLE_MEMBERS(ck::NetInterface, &ck::NetInterface::name, &ck::NetInterface::up, &ck::NetInterface::loopback, &ck::NetInterface::mtu, &ck::NetInterface::mac, &ck::NetInterface::addresses);
CK_PICKLE_MEMBERS(ck::RouteToPeer, &ck::RouteToPeer::peer, &ck::RouteToPeer::peer_address, &ck::RouteToPeer::interface, &ck::RouteToPeer::source_address, &ck::RouteToPeer::gateway, &ck::RouteToPeer::local);
CK_PICKLE_MEMBERS(ck::ClockSample, &ck::ClockSample::remote_epoch, &ck::ClockSample::local_sent, &ck::ClockSample::local_received);
CK_PICKLE_MEMBERS(ck::PythonFacts, &ck::PythonFacts::executable, &ck::PythonFacts::version, &ck::PythonFacts::packages);
CK_PICKLE_MEMBERS(ck::FactIssue, &ck::FactIssue::section, &ck::FactIssue::kind, &ck::FactIssue::message);
CK_PICKLE_MEMBERS(ck::HostFacts, &ck::HostFacts::host, &ck::HostFacts::hostname, &ck::HostFacts::os, &ck::HostFacts::kernel, &ck::HostFacts::cpus, &ck::HostFacts::memory, &ck::HostFacts::shm, &ck::HostFacts::disks, &ck::HostFacts::gpus, &ck::HostFacts::gpus_simulated, &ck::HostFacts::nvidia, &ck::HostFacts::topology, &ck::HostFacts::docker, &ck::HostFacts::interfaces, &ck::HostFacts::routes, &ck::HostFacts::ephemeral_ports, &ck::HostFacts::clock, &ck::HostFacts::python, &ck::HostFacts::issues);
CK_PICKLE_MEMBERS(ck::HostFactsOutcome, &ck::HostFactsOutcome::host, &ck::HostFactsOutcome::error, &ck::HostFactsOutcome::message, &ck::HostFactsOutcome::facts, &ck::HostFactsOutcome::duration, &ck::HostFactsOutcome::raw_output);

// preflight.hpp
CK_PICKLE_MEMBERS(ck::CheckResult, &ck::CheckResult::host, &ck::CheckResult::check, &ck::CheckResult::status, &ck::CheckResult::message, &ck::CheckResult::fix);
CK_PICKLE_MEMBERS(ck::CheckReport, &ck::CheckReport::hosts, &ck::CheckReport::checks, &ck::CheckReport::results, &ck::CheckReport::recommended_env, &ck::CheckReport::head);
CK_PICKLE_MEMBERS(ck::PortListener, &ck::PortListener::host, &ck::PortListener::started, &ck::PortListener::error, &ck::PortListener::ports, &ck::PortListener::busy);
CK_PICKLE_MEMBERS(ck::PortProbe, &ck::PortProbe::from, &ck::PortProbe::to, &ck::PortProbe::address, &ck::PortProbe::port, &ck::PortProbe::purpose, &ck::PortProbe::reached, &ck::PortProbe::source_address, &ck::PortProbe::error, &ck::PortProbe::milliseconds);
CK_PICKLE_MEMBERS(ck::PortProbeReport, &ck::PortProbeReport::head, &ck::PortProbeReport::listeners, &ck::PortProbeReport::probes);
CK_PICKLE_MEMBERS(ck::PreflightProbes, &ck::PreflightProbes::ports, &ck::PreflightProbes::nas, &ck::PreflightProbes::ports_skipped, &ck::PreflightProbes::nas_skipped);
CK_PICKLE_MEMBERS(ck::PreflightRun, &ck::PreflightRun::report, &ck::PreflightRun::facts, &ck::PreflightRun::probes);

// nas.hpp
CK_PICKLE_MEMBERS(ck::NasRead, &ck::NasRead::host, &ck::NasRead::directory, &ck::NasRead::mount_point, &ck::NasRead::filesystem_type, &ck::NasRead::written, &ck::NasRead::write_error, &ck::NasRead::seen, &ck::NasRead::model_present, &ck::NasRead::error);
CK_PICKLE_MEMBERS(ck::NasProbeReport, &ck::NasProbeReport::path, &ck::NasProbeReport::model_path, &ck::NasProbeReport::token, &ck::NasProbeReport::reads);
CK_PICKLE_MEMBERS(ck::MountEntry, &ck::MountEntry::id, &ck::MountEntry::parent, &ck::MountEntry::device, &ck::MountEntry::root, &ck::MountEntry::mount_point, &ck::MountEntry::mount_options, &ck::MountEntry::fstype, &ck::MountEntry::source, &ck::MountEntry::super_options);
CK_PICKLE_MEMBERS(ck::MountPlan, &ck::MountPlan::action, &ck::MountPlan::reason, &ck::MountPlan::refusal, &ck::MountPlan::script, &ck::MountPlan::new_fstab);
CK_PICKLE_MEMBERS(ck::MountOutcome, &ck::MountOutcome::host, &ck::MountOutcome::error, &ck::MountOutcome::action, &ck::MountOutcome::message, &ck::MountOutcome::entry, &ck::MountOutcome::fstab_changed);
CK_PICKLE_MEMBERS(ck::NasHostView, &ck::NasHostView::host, &ck::NasHostView::source, &ck::NasHostView::fstype, &ck::NasHostView::mounted, &ck::NasHostView::sees, &ck::NasHostView::misses, &ck::NasHostView::problem);
CK_PICKLE_MEMBERS(ck::NasCheckReport, &ck::NasCheckReport::path, &ck::NasCheckReport::hosts, &ck::NasCheckReport::problems);

// model.hpp
CK_PICKLE_MEMBERS(ck::ModelCandidate, &ck::ModelCandidate::path, &ck::ModelCandidate::layout, &ck::ModelCandidate::rejected_because);
CK_PICKLE_MEMBERS(ck::ModelLocation, &ck::ModelLocation::dir, &ck::ModelLocation::layout, &ck::ModelLocation::revision, &ck::ModelLocation::tried);
CK_PICKLE_MEMBERS(ck::ShardInfo, &ck::ShardInfo::file, &ck::ShardInfo::header_bytes, &ck::ShardInfo::data_bytes, &ck::ShardInfo::expected_file_size, &ck::ShardInfo::file_size, &ck::ShardInfo::tensor_count);
CK_PICKLE_MEMBERS(ck::ModelTensor, &ck::ModelTensor::name, &ck::ModelTensor::dtype, &ck::ModelTensor::shape, &ck::ModelTensor::bytes, &ck::ModelTensor::shard);
CK_PICKLE_MEMBERS(ck::ModelFacts, &ck::ModelFacts::dir, &ck::ModelFacts::architectures, &ck::ModelFacts::model_type, &ck::ModelFacts::hidden_size, &ck::ModelFacts::intermediate_size, &ck::ModelFacts::num_hidden_layers, &ck::ModelFacts::num_attention_heads, &ck::ModelFacts::num_key_value_heads, &ck::ModelFacts::head_dim, &ck::ModelFacts::vocab_size, &ck::ModelFacts::max_position_embeddings, &ck::ModelFacts::tie_word_embeddings, &ck::ModelFacts::torch_dtype, &ck::ModelFacts::quantized, &ck::ModelFacts::quantization_config, &ck::ModelFacts::quant_method, &ck::ModelFacts::kv_lora_rank, &ck::ModelFacts::qk_rope_head_dim, &ck::ModelFacts::config, &ck::ModelFacts::parameter_count, &ck::ModelFacts::total_tensor_bytes, &ck::ModelFacts::bytes_per_dtype, &ck::ModelFacts::parameters_per_dtype, &ck::ModelFacts::shards, &ck::ModelFacts::tensors, &ck::ModelFacts::weights_estimated, &ck::ModelFacts::warnings);
CK_PICKLE_MEMBERS(ck::FileDigest, &ck::FileDigest::path, &ck::FileDigest::sha256, &ck::FileDigest::bytes, &ck::FileDigest::error);
CK_PICKLE_MEMBERS(ck::VerifyProblem, &ck::VerifyProblem::kind, &ck::VerifyProblem::file, &ck::VerifyProblem::message);
CK_PICKLE_MEMBERS(ck::VerifyReport, &ck::VerifyReport::dir, &ck::VerifyReport::problems, &ck::VerifyReport::warnings, &ck::VerifyReport::shards_checked, &ck::VerifyReport::tensors_checked, &ck::VerifyReport::bytes_expected, &ck::VerifyReport::manifest, &ck::VerifyReport::files_hashed, &ck::VerifyReport::bytes_hashed, &ck::VerifyReport::hash_seconds);

// model_store.hpp
CK_PICKLE_MEMBERS(ck::TransferProgress, &ck::TransferProgress::host, &ck::TransferProgress::phase, &ck::TransferProgress::file, &ck::TransferProgress::bytes_done, &ck::TransferProgress::bytes_total, &ck::TransferProgress::files_done, &ck::TransferProgress::files_total, &ck::TransferProgress::bytes_per_second, &ck::TransferProgress::elapsed);
CK_PICKLE_MEMBERS(ck::DownloadResult, &ck::DownloadResult::host, &ck::DownloadResult::dir, &ck::DownloadResult::cli, &ck::DownloadResult::attempts, &ck::DownloadResult::bytes, &ck::DownloadResult::files, &ck::DownloadResult::seconds, &ck::DownloadResult::verify, &ck::DownloadResult::error, &ck::DownloadResult::message);
CK_PICKLE_MEMBERS(ck::SyncResult, &ck::SyncResult::host, &ck::SyncResult::source, &ck::SyncResult::destination, &ck::SyncResult::files, &ck::SyncResult::bytes, &ck::SyncResult::files_transferred, &ck::SyncResult::bytes_transferred, &ck::SyncResult::files_deleted, &ck::SyncResult::streams, &ck::SyncResult::seconds, &ck::SyncResult::verify, &ck::SyncResult::error, &ck::SyncResult::message);
CK_PICKLE_MEMBERS(ck::HostVerify, &ck::HostVerify::host, &ck::HostVerify::dir, &ck::HostVerify::container_path, &ck::HostVerify::error, &ck::HostVerify::message, &ck::HostVerify::report);

// planner.hpp
CK_PICKLE_MEMBERS(ck::GpuNode, &ck::GpuNode::name, &ck::GpuNode::gpu_count, &ck::GpuNode::gpu_model, &ck::GpuNode::memory_bytes, &ck::GpuNode::memory_source);
CK_PICKLE_MEMBERS(ck::GpuInventory, &ck::GpuInventory::nodes);
CK_PICKLE_MEMBERS(ck::LayoutStage, &ck::LayoutStage::index, &ck::LayoutStage::first_layer, &ck::LayoutStage::end_layer, &ck::LayoutStage::weight_bytes, &ck::LayoutStage::kv_bytes_per_token, &ck::LayoutStage::reserve_bytes, &ck::LayoutStage::budget_bytes, &ck::LayoutStage::kv_cache_bytes, &ck::LayoutStage::kv_cache_tokens);
CK_PICKLE_MEMBERS(ck::Layout, &ck::Layout::tp, &ck::Layout::pp, &ck::Layout::gpus, &ck::Layout::nodes, &ck::Layout::uses_all_gpus, &ck::Layout::pp_within_node, &ck::Layout::allowed, &ck::Layout::gpu_memory_bytes, &ck::Layout::weight_bytes_per_gpu, &ck::Layout::kv_bytes_per_token_per_gpu, &ck::Layout::reserve_bytes_per_gpu, &ck::Layout::kv_cache_tokens, &ck::Layout::bottleneck_stage, &ck::Layout::max_concurrent_sequences, &ck::Layout::fits, &ck::Layout::missing_bytes_per_gpu, &ck::Layout::recommended, &ck::Layout::reason, &ck::Layout::stages, &ck::Layout::vllm_args);
CK_PICKLE_MEMBERS(ck::RejectedLayout, &ck::RejectedLayout::tp, &ck::RejectedLayout::pp, &ck::RejectedLayout::reason);
CK_PICKLE_MEMBERS(ck::QuantizedOption, &ck::QuantizedOption::name, &ck::QuantizedOption::weight_bytes, &ck::QuantizedOption::tp, &ck::QuantizedOption::pp, &ck::QuantizedOption::kv_cache_tokens, &ck::QuantizedOption::note);
CK_PICKLE_MEMBERS(ck::Shortfall, &ck::Shortfall::best_tp, &ck::Shortfall::best_pp, &ck::Shortfall::missing_bytes_per_gpu, &ck::Shortfall::nodes_needed, &ck::Shortfall::gpus_needed, &ck::Shortfall::nodes_needed_tp, &ck::Shortfall::nodes_needed_pp, &ck::Shortfall::max_model_len_that_fits, &ck::Shortfall::quantized, &ck::Shortfall::suggestions);
CK_PICKLE_MEMBERS(ck::Plan, &ck::Plan::model, &ck::Plan::parameter_count, &ck::Plan::total_weight_bytes, &ck::Plan::kv_bytes_per_token, &ck::Plan::kv_dtype_bytes, &ck::Plan::gpus, &ck::Plan::gpu_memory_utilization, &ck::Plan::max_model_len, &ck::Plan::sequence_length, &ck::Plan::max_num_batched_tokens, &ck::Plan::max_num_seqs, &ck::Plan::kv_cache_dtype, &ck::Plan::layouts, &ck::Plan::rejected, &ck::Plan::shortfall, &ck::Plan::notes);

// nccl_check.hpp
CK_PICKLE_MEMBERS(ck::NcclNodeLaunch, &ck::NcclNodeLaunch::host, &ck::NcclNodeLaunch::node_rank, &ck::NcclNodeLaunch::nproc, &ck::NcclNodeLaunch::argv, &ck::NcclNodeLaunch::env);
CK_PICKLE_MEMBERS(ck::NcclRankReport, &ck::NcclRankReport::rank, &ck::NcclRankReport::world_size, &ck::NcclRankReport::local_rank, &ck::NcclRankReport::hostname, &ck::NcclRankReport::device, &ck::NcclRankReport::torch_version, &ck::NcclRankReport::cuda_version, &ck::NcclRankReport::nccl_version, &ck::NcclRankReport::initialized, &ck::NcclRankReport::nccl_ok, &ck::NcclRankReport::nccl_value, &ck::NcclRankReport::gloo_ok, &ck::NcclRankReport::gloo_value, &ck::NcclRankReport::done, &ck::NcclRankReport::error);
CK_PICKLE_MEMBERS(ck::NcclBandwidth, &ck::NcclBandwidth::bytes, &ck::NcclBandwidth::iterations, &ck::NcclBandwidth::time_us, &ck::NcclBandwidth::algbw_gbps, &ck::NcclBandwidth::busbw_gbps, &ck::NcclBandwidth::dtype);
CK_PICKLE_MEMBERS(ck::NcclCheckOutput, &ck::NcclCheckOutput::ranks, &ck::NcclCheckOutput::bandwidth, &ck::NcclCheckOutput::malformed);
CK_PICKLE_MEMBERS(ck::NcclHostRun, &ck::NcclHostRun::host, &ck::NcclHostRun::launch, &ck::NcclHostRun::error, &ck::NcclHostRun::exit_code, &ck::NcclHostRun::message, &ck::NcclHostRun::output_tail);
CK_PICKLE_MEMBERS(ck::NcclCheckResult, &ck::NcclCheckResult::world_size, &ck::NcclCheckResult::ranks, &ck::NcclCheckResult::bandwidth, &ck::NcclCheckResult::hosts, &ck::NcclCheckResult::problems);

// ray_cluster.hpp
CK_PICKLE_MEMBERS(ck::RayNodePlan, &ck::RayNodePlan::host, &ck::RayNodePlan::head, &ck::RayNodePlan::node_ip, &ck::RayNodePlan::interface, &ck::RayNodePlan::gpus, &ck::RayNodePlan::gpus_simulated, &ck::RayNodePlan::docker_gpus, &ck::RayNodePlan::env, &ck::RayNodePlan::ray_start_argv, &ck::RayNodePlan::docker_run_argv, &ck::RayNodePlan::bare_start_script, &ck::RayNodePlan::fingerprint);
CK_PICKLE_MEMBERS(ck::RayResource, &ck::RayResource::used, &ck::RayResource::total);
CK_PICKLE_MEMBERS(ck::RayNodeState, &ck::RayNodeState::node_id, &ck::RayNodeState::node_ip, &ck::RayNodeState::is_head, &ck::RayNodeState::state, &ck::RayNodeState::state_message, &ck::RayNodeState::resources_total, &ck::RayNodeState::usage);
CK_PICKLE_MEMBERS(ck::RayStatusText, &ck::RayStatusText::active, &ck::RayStatusText::pending, &ck::RayStatusText::failed, &ck::RayStatusText::usage, &ck::RayStatusText::usage_notes, &ck::RayStatusText::pending_demands);
CK_PICKLE_MEMBERS(ck::RayReport, &ck::RayReport::nodes, &ck::RayReport::status, &ck::RayReport::ray_version, &ck::RayReport::source, &ck::RayReport::error);
CK_PICKLE_MEMBERS(ck::RayNodeDecision, &ck::RayNodeDecision::host, &ck::RayNodeDecision::action, &ck::RayNodeDecision::reason, &ck::RayNodeDecision::refusal);
CK_PICKLE_MEMBERS(ck::RayHostStatus, &ck::RayHostStatus::host, &ck::RayHostStatus::head, &ck::RayHostStatus::node_ip, &ck::RayHostStatus::ray_state, &ck::RayHostStatus::runtime_state, &ck::RayHostStatus::resources_total, &ck::RayHostStatus::usage, &ck::RayHostStatus::ray_version, &ck::RayHostStatus::python_version, &ck::RayHostStatus::problem);
CK_PICKLE_MEMBERS(ck::RayClusterStatus, &ck::RayClusterStatus::name, &ck::RayClusterStatus::runtime, &ck::RayClusterStatus::ray_version, &ck::RayClusterStatus::hosts, &ck::RayClusterStatus::other_nodes, &ck::RayClusterStatus::usage, &ck::RayClusterStatus::alive_nodes, &ck::RayClusterStatus::expected_nodes, &ck::RayClusterStatus::gpus_total, &ck::RayClusterStatus::expected_gpus, &ck::RayClusterStatus::gpus_simulated, &ck::RayClusterStatus::healthy, &ck::RayClusterStatus::degraded, &ck::RayClusterStatus::problems, &ck::RayClusterStatus::source);
CK_PICKLE_MEMBERS(ck::RayProgress, &ck::RayProgress::phase, &ck::RayProgress::alive_nodes, &ck::RayProgress::expected_nodes, &ck::RayProgress::gpus, &ck::RayProgress::expected_gpus, &ck::RayProgress::message);
CK_PICKLE_MEMBERS(ck::RayNodeOutcome, &ck::RayNodeOutcome::host, &ck::RayNodeOutcome::action, &ck::RayNodeOutcome::message, &ck::RayNodeOutcome::error, &ck::RayNodeOutcome::probed_ms, &ck::RayNodeOutcome::started_ms, &ck::RayNodeOutcome::joined_ms);
CK_PICKLE_MEMBERS(ck::RayUpResult, &ck::RayUpResult::nodes, &ck::RayUpResult::status, &ck::RayUpResult::plans, &ck::RayUpResult::total_ms, &ck::RayUpResult::message);
CK_PICKLE_MEMBERS(ck::RayDownOutcome, &ck::RayDownOutcome::host, &ck::RayDownOutcome::removed, &ck::RayDownOutcome::message, &ck::RayDownOutcome::error);
CK_PICKLE_MEMBERS(ck::RayHostLogs, &ck::RayHostLogs::host, &ck::RayHostLogs::text, &ck::RayHostLogs::error, &ck::RayHostLogs::message);

// prometheus.hpp
CK_PICKLE_MEMBERS(ck::PrometheusSample, &ck::PrometheusSample::name, &ck::PrometheusSample::labels, &ck::PrometheusSample::value, &ck::PrometheusSample::timestamp_ms);
CK_PICKLE_MEMBERS(ck::PrometheusText, &ck::PrometheusText::samples, &ck::PrometheusText::types, &ck::PrometheusText::help, &ck::PrometheusText::bad_lines);
CK_PICKLE_MEMBERS(ck::VllmGauges, &ck::VllmGauges::requests_running, &ck::VllmGauges::requests_waiting, &ck::VllmGauges::kv_cache_usage, &ck::VllmGauges::kv_cache_metric, &ck::VllmGauges::requests_swapped, &ck::VllmGauges::prompt_tokens_total, &ck::VllmGauges::generation_tokens_total, &ck::VllmGauges::preemptions_total, &ck::VllmGauges::models);

// openai_client.hpp
CK_PICKLE_MEMBERS(ck::MetricsResult, &ck::MetricsResult::text, &ck::MetricsResult::parsed, &ck::MetricsResult::gauges, &ck::MetricsResult::meta);

// vllm_serve.hpp
CK_PICKLE_MEMBERS(ck::VllmWatch, &ck::VllmWatch::state_dir, &ck::VllmWatch::alive, &ck::VllmWatch::pid, &ck::VllmWatch::uptime_seconds, &ck::VllmWatch::log_size, &ck::VllmWatch::log, &ck::VllmWatch::fingerprint, &ck::VllmWatch::argv, &ck::VllmWatch::served_model_name, &ck::VllmWatch::backend);
CK_PICKLE_MEMBERS(ck::VllmDiagnosis, &ck::VllmDiagnosis::cause, &ck::VllmDiagnosis::message, &ck::VllmDiagnosis::evidence);
CK_PICKLE_MEMBERS(ck::VllmProgress, &ck::VllmProgress::phase, &ck::VllmProgress::elapsed_seconds, &ck::VllmProgress::message, &ck::VllmProgress::kv_cache_tokens);
CK_PICKLE_MEMBERS(ck::VllmUpResult, &ck::VllmUpResult::action, &ck::VllmUpResult::pid, &ck::VllmUpResult::endpoint, &ck::VllmUpResult::api_key_file, &ck::VllmUpResult::argv, &ck::VllmUpResult::message);
CK_PICKLE_MEMBERS(ck::VllmReady, &ck::VllmReady::endpoint, &ck::VllmReady::served_model_name, &ck::VllmReady::log, &ck::VllmReady::startup_complete_seconds, &ck::VllmReady::health_seconds, &ck::VllmReady::ready_seconds, &ck::VllmReady::engine_start_seconds, &ck::VllmReady::answer_seconds, &ck::VllmReady::first_token, &ck::VllmReady::message);
CK_PICKLE_MEMBERS(ck::VllmStatus, &ck::VllmStatus::endpoint, &ck::VllmStatus::state, &ck::VllmStatus::process_alive, &ck::VllmStatus::pid, &ck::VllmStatus::uptime_seconds, &ck::VllmStatus::health_status, &ck::VllmStatus::served_models, &ck::VllmStatus::running_requests, &ck::VllmStatus::waiting_requests, &ck::VllmStatus::kv_cache_usage, &ck::VllmStatus::ray, &ck::VllmStatus::problems, &ck::VllmStatus::diagnosis);
CK_PICKLE_MEMBERS(ck::VllmDownResult, &ck::VllmDownResult::stopped, &ck::VllmDownResult::message);

// bench.hpp
CK_PICKLE_MEMBERS(ck::BenchSample, &ck::BenchSample::scheduled, &ck::BenchSample::ttft, &ck::BenchSample::e2e, &ck::BenchSample::prompt_tokens, &ck::BenchSample::output_tokens, &ck::BenchSample::error, &ck::BenchSample::message, &ck::BenchSample::send_delay);
CK_PICKLE_MEMBERS(ck::Distribution, &ck::Distribution::count, &ck::Distribution::mean, &ck::Distribution::stddev, &ck::Distribution::min, &ck::Distribution::max, &ck::Distribution::p50, &ck::Distribution::p90, &ck::Distribution::p99);
CK_PICKLE_MEMBERS(ck::BenchSummary, &ck::BenchSummary::completed, &ck::BenchSummary::failed, &ck::BenchSummary::duration, &ck::BenchSummary::request_throughput, &ck::BenchSummary::output_token_throughput, &ck::BenchSummary::total_token_throughput, &ck::BenchSummary::output_tokens, &ck::BenchSummary::prompt_tokens, &ck::BenchSummary::ttft, &ck::BenchSummary::tpot, &ck::BenchSummary::itl, &ck::BenchSummary::e2e, &ck::BenchSummary::send_delay, &ck::BenchSummary::errors);
CK_PICKLE_MEMBERS(ck::BenchProgress, &ck::BenchProgress::launched, &ck::BenchProgress::completed, &ck::BenchProgress::failed, &ck::BenchProgress::in_flight, &ck::BenchProgress::elapsed, &ck::BenchProgress::fraction, &ck::BenchProgress::first_errors);
CK_PICKLE_MEMBERS(ck::BenchResult, &ck::BenchResult::spec, &ck::BenchResult::date, &ck::BenchResult::samples, &ck::BenchResult::itl, &ck::BenchResult::summary, &ck::BenchResult::warmed_connections, &ck::BenchResult::cancelled, &ck::BenchResult::message);

// deployment.hpp
CK_PICKLE_MEMBERS(ck::StepHostRecord, &ck::StepHostRecord::host, &ck::StepHostRecord::status, &ck::StepHostRecord::message, &ck::StepHostRecord::started_s, &ck::StepHostRecord::ended_s);
CK_PICKLE_MEMBERS(ck::StepRecord, &ck::StepRecord::step, &ck::StepRecord::status, &ck::StepRecord::message, &ck::StepRecord::started_s, &ck::StepRecord::ended_s, &ck::StepRecord::hosts, &ck::StepRecord::detail);
CK_PICKLE_MEMBERS(ck::DeploymentRecord, &ck::DeploymentRecord::name, &ck::DeploymentRecord::spec_file, &ck::DeploymentRecord::spec_fingerprint, &ck::DeploymentRecord::status, &ck::DeploymentRecord::message, &ck::DeploymentRecord::started_at, &ck::DeploymentRecord::finished_at, &ck::DeploymentRecord::total_seconds, &ck::DeploymentRecord::own_seconds, &ck::DeploymentRecord::own_breakdown, &ck::DeploymentRecord::endpoint, &ck::DeploymentRecord::served_model_name, &ck::DeploymentRecord::api_key_file, &ck::DeploymentRecord::versions, &ck::DeploymentRecord::layout, &ck::DeploymentRecord::node_env, &ck::DeploymentRecord::steps, &ck::DeploymentRecord::smoke, &ck::DeploymentRecord::bench, &ck::DeploymentRecord::simulated);
CK_PICKLE_MEMBERS(ck::DeploymentProgress, &ck::DeploymentProgress::step, &ck::DeploymentProgress::host, &ck::DeploymentProgress::status, &ck::DeploymentProgress::message, &ck::DeploymentProgress::elapsed_seconds);
CK_PICKLE_MEMBERS(ck::PlannedCommand, &ck::PlannedCommand::host, &ck::PlannedCommand::command, &ck::PlannedCommand::script);
CK_PICKLE_MEMBERS(ck::PlannedStep, &ck::PlannedStep::step, &ck::PlannedStep::what, &ck::PlannedStep::skip_reason, &ck::PlannedStep::commands);
CK_PICKLE_MEMBERS(ck::DeploymentPlanResult, &ck::DeploymentPlanResult::steps, &ck::DeploymentPlanResult::notes);
CK_PICKLE_MEMBERS(ck::DeploymentHostLook, &ck::DeploymentHostLook::host, &ck::DeploymentHostLook::roles, &ck::DeploymentHostLook::reachable,
                  &ck::DeploymentHostLook::answer_seconds, &ck::DeploymentHostLook::uptime_seconds, &ck::DeploymentHostLook::load,
                  &ck::DeploymentHostLook::message);
CK_PICKLE_MEMBERS(ck::DeploymentStatus, &ck::DeploymentStatus::name, &ck::DeploymentStatus::state, &ck::DeploymentStatus::record, &ck::DeploymentStatus::hosts, &ck::DeploymentStatus::nas, &ck::DeploymentStatus::model, &ck::DeploymentStatus::ray, &ck::DeploymentStatus::engine, &ck::DeploymentStatus::problems);
CK_PICKLE_MEMBERS(ck::DeploymentDownResult, &ck::DeploymentDownResult::removed, &ck::DeploymentDownResult::problems);

// values seen on the way (progress, probes, parsers' results) and the lab
CK_PICKLE_MEMBERS(ck::CopyItem, &ck::CopyItem::path, &ck::CopyItem::bytes);
CK_PICKLE_MEMBERS(ck::HashProgress, &ck::HashProgress::files_done, &ck::HashProgress::files_total, &ck::HashProgress::bytes_done, &ck::HashProgress::bytes_total);
CK_PICKLE_MEMBERS(ck::TqdmBar, &ck::TqdmBar::label, &ck::TqdmBar::n, &ck::TqdmBar::total, &ck::TqdmBar::unit);
CK_PICKLE_MEMBERS(ck::RsyncProgress, &ck::RsyncProgress::bytes, &ck::RsyncProgress::percent, &ck::RsyncProgress::transferred, &ck::RsyncProgress::to_check, &ck::RsyncProgress::total_files);
CK_PICKLE_MEMBERS(ck::InventoryHost, &ck::InventoryHost::spec, &ck::InventoryHost::groups, &ck::InventoryHost::roles, &ck::InventoryHost::extra);
CK_PICKLE_MEMBERS(ck::LabHostStatus, &ck::LabHostStatus::name, &ck::LabHostStatus::address, &ck::LabHostStatus::netns, &ck::LabHostStatus::sshd_pid, &ck::LabHostStatus::running, &ck::LabHostStatus::role, &ck::LabHostStatus::gpus, &ck::LabHostStatus::docker, &ck::LabHostStatus::dockerd_pid, &ck::LabHostStatus::docker_running, &ck::LabHostStatus::docker_host);
CK_PICKLE_MEMBERS(ck::LabStatus, &ck::LabStatus::name, &ck::LabStatus::exists, &ck::LabStatus::state_dir, &ck::LabStatus::inventory_path, &ck::LabStatus::identity_file, &ck::LabStatus::known_hosts_file, &ck::LabStatus::bridge, &ck::LabStatus::docker, &ck::LabStatus::gpus, &ck::LabStatus::runtime_image, &ck::LabStatus::hosts);
CK_PICKLE_MEMBERS(ck::ModelSnapshot::Shard, &ck::ModelSnapshot::Shard::name, &ck::ModelSnapshot::Shard::exists, &ck::ModelSnapshot::Shard::size, &ck::ModelSnapshot::Shard::head, &ck::ModelSnapshot::Shard::error);
CK_PICKLE_MEMBERS(ck::ModelSnapshot, &ck::ModelSnapshot::dir, &ck::ModelSnapshot::config_json, &ck::ModelSnapshot::index_json, &ck::ModelSnapshot::config_error, &ck::ModelSnapshot::index_error, &ck::ModelSnapshot::shards);
CK_PICKLE_MEMBERS(ck::MountProbe, &ck::MountProbe::mounts, &ck::MountProbe::mount_point_exists, &ck::MountProbe::mount_point_is_directory, &ck::MountProbe::mount_point_empty, &ck::MountProbe::mount_point_entries, &ck::MountProbe::helper_present, &ck::MountProbe::bind_source_real, &ck::MountProbe::uid, &ck::MountProbe::fstab);
CK_PICKLE_MEMBERS(ck::RayNodeProbe, &ck::RayNodeProbe::host, &ck::RayNodeProbe::node_ip, &ck::RayNodeProbe::interface, &ck::RayNodeProbe::gpus_found, &ck::RayNodeProbe::nvidia_smi, &ck::RayNodeProbe::docker, &ck::RayNodeProbe::docker_error, &ck::RayNodeProbe::docker_nvidia_runtime, &ck::RayNodeProbe::image_present, &ck::RayNodeProbe::container_state, &ck::RayNodeProbe::container_fingerprint, &ck::RayNodeProbe::ray_found, &ck::RayNodeProbe::ray_error, &ck::RayNodeProbe::cluster_pids, &ck::RayNodeProbe::bare_fingerprint, &ck::RayNodeProbe::python_version, &ck::RayNodeProbe::ray_version, &ck::RayNodeProbe::port_in_use, &ck::RayNodeProbe::port_owner);
CK_PICKLE_MEMBERS(ck::StreamChunk, &ck::StreamChunk::id, &ck::StreamChunk::index, &ck::StreamChunk::delta, &ck::StreamChunk::role, &ck::StreamChunk::finish_reason, &ck::StreamChunk::usage, &ck::StreamChunk::raw, &ck::StreamChunk::arrived);
CK_PICKLE_MEMBERS(ck::VllmLogProgress, &ck::VllmLogProgress::phase, &ck::VllmLogProgress::version, &ck::VllmLogProgress::weights_seconds, &ck::VllmLogProgress::kv_cache_tokens, &ck::VllmLogProgress::max_concurrency, &ck::VllmLogProgress::init_engine_seconds, &ck::VllmLogProgress::waiting_for_placement_group, &ck::VllmLogProgress::api_started, &ck::VllmLogProgress::startup_complete, &ck::VllmLogProgress::last, &ck::VllmLogProgress::phases);
CK_PICKLE_MEMBERS(ck::VllmDiagnosisContext, &ck::VllmDiagnosisContext::cluster_gpus, &ck::VllmDiagnosisContext::tensor_parallel, &ck::VllmDiagnosisContext::pipeline_parallel, &ck::VllmDiagnosisContext::port, &ck::VllmDiagnosisContext::model);
CK_PICKLE_MEMBERS(ck::DeploymentSpec, &ck::DeploymentSpec::name, &ck::DeploymentSpec::source, &ck::DeploymentSpec::inventory, &ck::DeploymentSpec::nas, &ck::DeploymentSpec::model, &ck::DeploymentSpec::ray, &ck::DeploymentSpec::head, &ck::DeploymentSpec::workers, &ck::DeploymentSpec::serve, &ck::DeploymentSpec::max_model_len_auto, &ck::DeploymentSpec::checks, &ck::DeploymentSpec::state_dir);

namespace ckpy {

using pickling::define_pickle;
using pickling::define_pickle_on;

// After every register_*(): the classes exist by now.
void register_pickling(py::module_& m) {
  define_pickle<ck::CopyItem>(m, "CopyItem");
  define_pickle<ck::HashProgress>(m, "HashProgress");
  define_pickle<ck::TqdmBar>(m, "TqdmBar");
  define_pickle<ck::RsyncProgress>(m, "RsyncProgress");
  define_pickle<ck::InventoryHost>(m, "InventoryHost");
  define_pickle<ck::LabHostStatus>(m, "LabHostStatus");
  define_pickle<ck::LabStatus>(m, "LabStatus");
  define_pickle<ck::ModelSnapshot>(m, "ModelSnapshot");
  define_pickle_on<ck::ModelSnapshot::Shard>(m.attr("ModelSnapshot").attr("Shard"));
  define_pickle<ck::MountProbe>(m, "MountProbe");
  define_pickle<ck::RayNodeProbe>(m, "RayNodeProbe");
  define_pickle<ck::StreamChunk>(m, "StreamChunk");
  define_pickle<ck::VllmLogProgress>(m, "VllmLogProgress");
  define_pickle<ck::VllmDiagnosisContext>(m, "VllmDiagnosisContext");
  define_pickle<ck::DeploymentSpec>(m, "DeploymentSpec");
  define_pickle<ck::OsRelease>(m, "OsRelease");
  define_pickle<ck::KernelInfo>(m, "KernelInfo");
  define_pickle<ck::MemoryInfo>(m, "MemoryInfo");
  define_pickle<ck::DiskUsage>(m, "DiskUsage");
  define_pickle<ck::GpuInfo>(m, "GpuInfo");
  define_pickle<ck::GpuTopology>(m, "GpuTopology");
  define_pickle<ck::DockerFacts>(m, "DockerFacts");
  define_pickle<ck::NetAddress>(m, "NetAddress");
  define_pickle<ck::NetInterface>(m, "NetInterface");
  define_pickle<ck::RouteToPeer>(m, "RouteToPeer");
  define_pickle<ck::ClockSample>(m, "ClockSample");
  define_pickle<ck::PythonFacts>(m, "PythonFacts");
  define_pickle<ck::FactIssue>(m, "FactIssue");
  define_pickle<ck::HostFacts>(m, "HostFacts");
  define_pickle<ck::HostFactsOutcome>(m, "HostFactsOutcome");
  define_pickle<ck::CheckResult>(m, "CheckResult");
  define_pickle<ck::CheckReport>(m, "CheckReport");
  define_pickle<ck::PreflightRun>(m, "PreflightRun");
  define_pickle<ck::MountEntry>(m, "MountEntry");
  define_pickle<ck::MountPlan>(m, "MountPlan");
  define_pickle<ck::MountOutcome>(m, "MountOutcome");
  define_pickle<ck::NasHostView>(m, "NasHostView");
  define_pickle<ck::NasCheckReport>(m, "NasCheckReport");
  define_pickle<ck::ModelCandidate>(m, "ModelCandidate");
  define_pickle<ck::ModelLocation>(m, "ModelLocation");
  define_pickle<ck::ShardInfo>(m, "ShardInfo");
  define_pickle<ck::ModelTensor>(m, "ModelTensor");
  define_pickle<ck::ModelFacts>(m, "ModelFacts");
  define_pickle<ck::FileDigest>(m, "FileDigest");
  define_pickle<ck::VerifyProblem>(m, "VerifyProblem");
  define_pickle<ck::VerifyReport>(m, "VerifyReport");
  define_pickle<ck::TransferProgress>(m, "TransferProgress");
  define_pickle<ck::DownloadResult>(m, "DownloadResult");
  define_pickle<ck::SyncResult>(m, "SyncResult");
  define_pickle<ck::HostVerify>(m, "HostVerify");
  define_pickle<ck::GpuNode>(m, "GpuNode");
  define_pickle<ck::GpuInventory>(m, "GpuInventory");
  define_pickle<ck::LayoutStage>(m, "LayoutStage");
  define_pickle<ck::Layout>(m, "Layout");
  define_pickle<ck::RejectedLayout>(m, "RejectedLayout");
  define_pickle<ck::QuantizedOption>(m, "QuantizedOption");
  define_pickle<ck::Shortfall>(m, "Shortfall");
  define_pickle<ck::Plan>(m, "Plan");
  define_pickle<ck::NcclNodeLaunch>(m, "NcclNodeLaunch");
  define_pickle<ck::NcclRankReport>(m, "NcclRankReport");
  define_pickle<ck::NcclBandwidth>(m, "NcclBandwidth");
  define_pickle<ck::NcclCheckOutput>(m, "NcclCheckOutput");
  define_pickle<ck::NcclHostRun>(m, "NcclHostRun");
  define_pickle<ck::NcclCheckResult>(m, "NcclCheckResult");
  define_pickle<ck::RayNodePlan>(m, "RayNodePlan");
  define_pickle<ck::RayResource>(m, "RayResource");
  define_pickle<ck::RayNodeState>(m, "RayNodeState");
  define_pickle<ck::RayStatusText>(m, "RayStatusText");
  define_pickle<ck::RayReport>(m, "RayReport");
  define_pickle<ck::RayNodeDecision>(m, "RayNodeDecision");
  define_pickle<ck::RayHostStatus>(m, "RayHostStatus");
  define_pickle<ck::RayClusterStatus>(m, "RayClusterStatus");
  define_pickle<ck::RayProgress>(m, "RayProgress");
  define_pickle<ck::RayNodeOutcome>(m, "RayNodeOutcome");
  define_pickle<ck::RayUpResult>(m, "RayUpResult");
  define_pickle<ck::RayDownOutcome>(m, "RayDownOutcome");
  define_pickle<ck::RayHostLogs>(m, "RayHostLogs");
  define_pickle<ck::VllmGauges>(m, "VllmGauges");
  define_pickle<ck::MetricsResult>(m, "MetricsResult");
  define_pickle<ck::VllmWatch>(m, "VllmWatch");
  define_pickle<ck::VllmDiagnosis>(m, "VllmDiagnosis");
  define_pickle<ck::VllmProgress>(m, "VllmProgress");
  define_pickle<ck::VllmUpResult>(m, "VllmUpResult");
  define_pickle<ck::VllmReady>(m, "VllmReady");
  define_pickle<ck::VllmStatus>(m, "VllmStatus");
  define_pickle<ck::VllmDownResult>(m, "VllmDownResult");
  define_pickle<ck::BenchSample>(m, "BenchSample");
  define_pickle<ck::Distribution>(m, "Distribution");
  define_pickle<ck::BenchSummary>(m, "BenchSummary");
  define_pickle<ck::BenchProgress>(m, "BenchProgress");
  define_pickle<ck::BenchResult>(m, "BenchResult");
  define_pickle<ck::StepHostRecord>(m, "StepHostRecord");
  define_pickle<ck::StepRecord>(m, "StepRecord");
  define_pickle<ck::DeploymentRecord>(m, "DeploymentRecord");
  define_pickle<ck::DeploymentProgress>(m, "DeploymentProgress");
  define_pickle<ck::PlannedCommand>(m, "PlannedCommand");
  define_pickle<ck::PlannedStep>(m, "PlannedStep");
  define_pickle<ck::DeploymentPlanResult>(m, "DeploymentPlanResult");
  define_pickle<ck::PortListener>(m, "PortListener");
  define_pickle<ck::PortProbe>(m, "PortProbe");
  define_pickle<ck::PortProbeReport>(m, "PortProbeReport");
  define_pickle<ck::NasRead>(m, "NasRead");
  define_pickle<ck::NasProbeReport>(m, "NasProbeReport");
  define_pickle<ck::PreflightProbes>(m, "PreflightProbes");
  define_pickle<ck::DeploymentHostLook>(m, "DeploymentHostLook");
  define_pickle<ck::DeploymentStatus>(m, "DeploymentStatus");
  define_pickle<ck::DeploymentDownResult>(m, "DeploymentDownResult");
}

}  // namespace ckpy
