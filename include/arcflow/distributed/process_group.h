// Data-parallel processes over PyTorch's own distributed engine (c10d): a TCPStore on the master
// for the rendezvous and a ProcessGroupGloo (CPU) for the collectives, as torchrun would set up.
// NCCL (CUDA) is accepted as a backend name and refused with a clear error by builds whose
// LibTorch lacks it (the Debian one does).
#pragma once

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

// True when this build can make Gloo process groups.
bool gloo_available();

// Joins the group: blocks until all world_size ranks have connected (or timeout_s passes, then
// throws std::runtime_error saying who is missing). world_size 1 returns nullptr (no group).
std::shared_ptr<Communicator> connect(const DistOptions& opt);

}  // namespace arcflow
