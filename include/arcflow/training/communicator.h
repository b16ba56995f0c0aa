// How data-parallel training processes ("ranks") talk to each other. The trainers use only this
// interface; distributed/process_group.h implements it over PyTorch's c10d (Gloo, NCCL), and a
// single process needs none (a null communicator means world size 1).
#pragma once

#include <torch/torch.h>

#include <vector>

namespace arcflow {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Element-wise sum over all ranks, in place; every rank passes tensors of the same shapes, in
  // the same order. Throws std::runtime_error (naming the peer problem) when a rank is gone.
  virtual void all_reduce_sum(std::vector<torch::Tensor>& tensors) = 0;
  // Every rank's `t` (same shape and dtype on all ranks), in rank order.
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& t) = 0;
  virtual void barrier() = 0;
};

}  // namespace arcflow
