// How data-parallel training processes ("ranks") talk to each other. The trainers use only this
// interface; distributed/process_group.h implements it over PyTorch's c10d (Gloo, NCCL), and a
// single process needs none (a null communicator means world size 1).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace arcflow {

// The seed of random stream `stream` of a run seeded `seed`: stream 0 is the seed itself (so a
// single process draws what it always drew); data-parallel ranks and micro-batches use the others.
uint64_t stream_seed(uint64_t seed, int64_t stream);

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

// Data-parallel step: averages the gradients of `params` (an undefined gradient counts as zeros)
// and the per-rank figures `stats` (e.g. losses, float64) over the ranks of `comm`, in place, and
// returns the averaged `stats`. Where `poison` is true on a rank (its step was non-finite), that rank
// sends NaN so that every rank sees a non-finite result and skips the same update.
torch::Tensor average_gradients(Communicator& comm, const std::vector<torch::Tensor>& params, torch::Tensor stats,
                                bool poison);

// Every rank's copy of `local` (a CPU uint8 state, e.g. a generator's), in rank order; just
// `local` without a communicator.
std::vector<torch::Tensor> gather_states(Communicator* comm, const torch::Tensor& local);

}  // namespace arcflow
