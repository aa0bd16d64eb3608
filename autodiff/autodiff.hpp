// The whole public API of the engine: one include for users.
#pragma once

#include "autodiff/anomaly.hpp"
#include "autodiff/backends.hpp"
#include "autodiff/backward.hpp"
#include "autodiff/checkpoint.hpp"
#include "autodiff/gradcheck.hpp"
#include "autodiff/graph.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/print.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/threads.hpp"
