// Data-parallel processes over PyTorch's own distributed engine (c10d): a TCPStore on the master
// for the rendezvous and a ProcessGroupGloo (CPU) for the collectives, as torchrun would set up.
// NCCL (ProcessGroupNCCL, CUDA tensors) is used with --dist-backend nccl where the build found it
// (a CUDA LibTorch plus nccl.h: CMake defines ARCFLOW_HAVE_NCCL); builds without it (the Debian
// LibTorch) refuse the name with a clear error.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "arcflow/training/communicator.h"

namespace arcflow {

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string backend = "gloo";  // gloo | nccl
  double timeout_s = 120;        // a collective or the rendezvous waiting longer than this fails

  // The torchrun variables RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT where they are set (over
  // the defaults above); throws std::invalid_argument naming a variable that is not a number.
  static DistOptions from_env();
  // Throws std::invalid_argument naming the bad field (rank outside [0, world), port, backend...).
  void validate() const;
};

// True when this build can make Gloo (NCCL) process groups.
bool gloo_available();
bool nccl_available();

// Joins the group: blocks until all world_size ranks have connected (or timeout_s passes, then
// throws std::runtime_error saying who is missing). world_size 1 returns nullptr (no group).
// `device` is where this rank trains: NCCL needs a CUDA device (one per rank, see
// local_cuda_device()) and reduces there; Gloo reduces on the CPU whatever the device.
std::shared_ptr<Communicator> connect(const DistOptions& opt, torch::Device device = torch::kCPU);

// The GPU of this process when several share a machine: cuda:LOCAL_RANK (the torchrun variable,
// which `arcflow launch` sets too) modulo the GPU count; plain cuda (the current one) without it.
torch::Device local_cuda_device();

}  // namespace arcflow
