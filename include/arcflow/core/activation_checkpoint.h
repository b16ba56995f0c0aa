// Activation checkpointing (recompute in backward): `checkpointed(fn, inputs)` runs fn without
// keeping its intermediate activations; the backward pass runs fn again with gradients on and
// back-propagates through that recomputation, accumulating the gradients of the parameters fn uses
// (as torch.utils.checkpoint's reentrant variant does). Memory: one block's activations at a time
// instead of all blocks'. fn must be deterministic (no dropout between the two runs, or the same
// draws) and read no state that changes between forward and backward.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace arcflow {

using BlockFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

// fn(inputs) with recomputation in backward; outside grad mode (or when no input or parameter
// needs a gradient, i.e. nothing to recompute for) it is simply fn(inputs).
std::vector<torch::Tensor> checkpointed(const BlockFn& fn, const std::vector<torch::Tensor>& inputs);

}  // namespace arcflow
