// Everything clusterkit offers, in one include.
#pragma once

#include "clusterkit/error.hpp"
#include "clusterkit/fanout.hpp"
#include "clusterkit/host.hpp"
#include "clusterkit/inventory.hpp"
#include "clusterkit/lab.hpp"
#include "clusterkit/model.hpp"
#include "clusterkit/planner.hpp"
#include "clusterkit/runtime.hpp"
#include "clusterkit/shell.hpp"
