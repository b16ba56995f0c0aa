#include "arcflow/distributed/process_group.h"

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>

#ifdef ARCFLOW_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef ARCFLOW_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if defined(ARCFLOW_HAVE_GLOO) || defined(ARCFLOW_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#define ARCFLOW_HAVE_C10D 1
#endif

namespace arcflow {

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0') throw std::invalid_argument(std::string("environment variable ") + name + "='" + v + "' is not an integer");
  return static_cast<int>(x);
}

#ifdef ARCFLOW_HAVE_C10D
// The collectives over one c10d process group (ProcessGroupGloo or ProcessGroupNCCL: the same
// calls). Tensors travel on `device_`, the group's device (CPU for Gloo, this rank's GPU for NCCL),
// and the results are copied back to wherever the caller's tensors live.
template <typename Group>
class C10dCommunicator : public Communicator {
 public:
  C10dCommunicator(c10::intrusive_ptr<Group> pg, int rank, int world, torch::Device device)
      : pg_(std::move(pg)), rank_(rank), world_(world), device_(device) {}
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void all_reduce_sum(std::vector<torch::Tensor>& tensors) override {
    // One flat buffer per dtype: a few messages per step instead of one per tensor.
    torch::NoGradGuard no_grad;
    std::map<c10::ScalarType, std::vector<size_t>> groups;
    for (size_t i = 0; i < tensors.size(); ++i) groups[tensors[i].scalar_type()].push_back(i);
    run("all-reduce", [&] {
      for (const auto& [dtype, idx] : groups) {
        std::vector<torch::Tensor> parts;
        for (size_t i : idx) parts.push_back(tensors[i].reshape({-1}).to(device_));
        std::vector<at::Tensor> flat{torch::cat(parts)};
        pg_->allreduce(flat)->wait();
        int64_t at = 0;
        for (size_t i : idx) {
          const int64_t n = tensors[i].numel();
          tensors[i].copy_(flat[0].narrow(0, at, n).view_as(tensors[i]));
          at += n;
        }
      }
    });
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    std::vector<std::vector<at::Tensor>> out(1);
    const torch::Tensor staged = t.to(device_).contiguous();
    for (int r = 0; r < world_; ++r) out[0].push_back(torch::empty_like(staged));
    std::vector<at::Tensor> in{staged};
    run("all-gather", [&] { pg_->allgather(out, in)->wait(); });
    for (auto& x : out[0]) x = x.to(t.device());
    return out[0];
  }

  void barrier() override {
    run("barrier", [&] { pg_->barrier()->wait(); });
  }

 private:
  template <typename F>
  void run(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      throw std::runtime_error("rank " + std::to_string(rank_) + " of " + std::to_string(world_) + ": " + what +
                               " failed, a peer process has probably stopped: " + e.what());
    }
  }
  c10::intrusive_ptr<Group> pg_;
  int rank_, world_;
  torch::Device device_;
};
#endif

}  // namespace

DistOptions DistOptions::from_env() {
  DistOptions o;
  o.rank = env_int("RANK", o.rank);
  o.world_size = env_int("WORLD_SIZE", o.world_size);
  if (const char* a = std::getenv("MASTER_ADDR"); a != nullptr && *a != '\0') o.master_addr = a;
  o.master_port = env_int("MASTER_PORT", o.master_port);
  return o;
}

void DistOptions::validate() const {
  if (world_size < 1) throw std::invalid_argument("world size must be >= 1, got " + std::to_string(world_size));
  if (rank < 0 || rank >= world_size)
    throw std::invalid_argument("rank " + std::to_string(rank) + " is outside [0, " + std::to_string(world_size) + ")");
  if (master_port < 1 || master_port > 65535)
    throw std::invalid_argument("master port must be in 1..65535, got " + std::to_string(master_port));
  if (backend != "gloo" && backend != "nccl")
    throw std::invalid_argument("distributed backend must be gloo or nccl, got '" + backend + "'");
  if (!(timeout_s > 0)) throw std::invalid_argument("distributed timeout must be > 0");
}

bool gloo_available() {
#ifdef ARCFLOW_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

bool nccl_available() {
#ifdef ARCFLOW_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::shared_ptr<Communicator> connect(const DistOptions& opt, torch::Device device) {
  opt.validate();
  if (opt.world_size == 1) return nullptr;
  if (opt.backend == "nccl") {
    if (!nccl_available())
      throw std::runtime_error("--dist-backend nccl: this build of arcflow has no NCCL process group (it needs a "
                               "CUDA LibTorch with NCCL and nccl.h at build time); use gloo");
    if (!device.is_cuda())
      throw std::invalid_argument("--dist-backend nccl needs --device cuda (NCCL reduces GPU tensors)");
  } else if (!gloo_available()) {
    throw std::runtime_error("this build of arcflow has no Gloo (install libgloo-dev and rebuild)");
  }
#ifdef ARCFLOW_HAVE_C10D
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(opt.timeout_s * 1000));
  c10::intrusive_ptr<c10d::TCPStore> store;
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(opt.master_port);
    so.isServer = opt.rank == 0;
    so.numWorkers = opt.world_size;
    so.waitWorkers = true;
    so.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(opt.master_addr, so);
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(opt.rank) + ": cannot meet the other " +
                             std::to_string(opt.world_size - 1) + " process(es) at " + opt.master_addr + ":" +
                             std::to_string(opt.master_port) + " within " + std::to_string(opt.timeout_s) +
                             " s: " + e.what());
  }
#ifdef ARCFLOW_HAVE_NCCL
  if (opt.backend == "nccl") {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, opt.rank, opt.world_size, options);
    return std::make_shared<C10dCommunicator<c10d::ProcessGroupNCCL>>(pg, opt.rank, opt.world_size, device);
  }
#endif
#ifdef ARCFLOW_HAVE_GLOO
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const std::string host = opt.master_addr == "127.0.0.1" || opt.master_addr == "localhost" ? "127.0.0.1" : "";
  options->devices.push_back(host.empty() ? c10d::ProcessGroupGloo::createDefaultDevice()
                                          : c10d::ProcessGroupGloo::createDeviceForHostname(host));
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, opt.rank, opt.world_size, options);
  return std::make_shared<C10dCommunicator<c10d::ProcessGroupGloo>>(pg, opt.rank, opt.world_size, torch::kCPU);
#endif
#endif
  throw std::logic_error("connect: no process group for backend " + opt.backend);
}

torch::Device local_cuda_device() {
  const char* v = std::getenv("LOCAL_RANK");
  if (v == nullptr || *v == '\0') return torch::Device(torch::kCUDA);
  const int local = env_int("LOCAL_RANK", 0);
  const int count = static_cast<int>(torch::cuda::device_count());
  if (local < 0) throw std::invalid_argument("environment variable LOCAL_RANK=" + std::to_string(local) + " is negative");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(count > 0 ? local % count : 0));
}

}  // namespace arcflow
