// Everything clusterkit offers, in one include.
#pragma once

#include "clusterkit/error.hpp"
#include "clusterkit/facts.hpp"
#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/nccl_check.hpp"
#include "clusterkit/openai_client.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/preflight.hpp"
#include "clusterkit/prometheus.hpp"
#include "clusterkit/runtime.hpp"
#include "clusterkit/shell.hpp"
#include "clusterkit/sse.hpp"
