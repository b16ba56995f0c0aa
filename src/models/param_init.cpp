#include "arcflow/models/param_init.h"

namespace arcflow {
namespace {
thread_local bool g_active = false;
thread_local torch::Device g_device = torch::kCPU;
}  // namespace

ParamInitGuard::ParamInitGuard(torch::Device device) : saved_active_(g_active), saved_device_(g_device) {
  g_active = true;
  g_device = device;
}

ParamInitGuard::~ParamInitGuard() {
  g_active = saved_active_;
  g_device = saved_device_;
}

bool ParamInitGuard::active() { return g_active; }

torch::TensorOptions ParamInitGuard::options() {
  return torch::TensorOptions().device(g_active ? g_device : torch::Device(torch::kCPU));
}

}  // namespace arcflow
