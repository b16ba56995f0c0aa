#include "arcflow/training/communicator.h"

#include <limits>

namespace arcflow {

uint64_t stream_seed(uint64_t seed, int64_t stream) {
  if (stream == 0) return seed;
  // splitmix64 of (seed, stream): distinct, well-mixed seeds for the other streams.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * static_cast<uint64_t>(stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

torch::Tensor average_gradients(Communicator& comm, const std::vector<torch::Tensor>& params, torch::Tensor stats,
                                bool poison) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (auto p : params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    tensors.push_back(p.grad());
  }
  tensors.push_back(stats);
  if (poison)
    for (auto& t : tensors) t.fill_(std::numeric_limits<double>::quiet_NaN());
  comm.all_reduce_sum(tensors);
  for (auto& t : tensors) t.div_(comm.world_size());
  return tensors.back();
}

std::vector<torch::Tensor> gather_states(Communicator* comm, const torch::Tensor& local) {
  if (comm == nullptr || comm->world_size() == 1) return {local};
  return comm->all_gather(local);
}

}  // namespace arcflow
