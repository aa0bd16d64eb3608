// The whole nn/ API: one include for users.
#pragma once

#include "nn/activation.hpp"
#include "nn/batch_norm.hpp"
#include "nn/checkpoint.hpp"
#include "nn/clip.hpp"
#include "nn/dropout.hpp"
#include "nn/init.hpp"
#include "nn/layer_norm.hpp"
#include "nn/linear.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"
#include "nn/npz.hpp"
#include "nn/optim.hpp"
#include "nn/residual.hpp"
#include "nn/schedule.hpp"
#include "nn/sequential.hpp"
#include "nn/stochastic_depth.hpp"
