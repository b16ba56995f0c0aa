// Classifier-free guidance as a VelocityFn adapter (see guidance.h).
#include "arcflow/sampling/guidance.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace arcflow {

VelocityFn guided(ConditionalVelocityFn model, torch::Tensor y, int64_t null_class, double scale) {
  if (!model) throw std::invalid_argument("guided: empty model");
  return [model = std::move(model), y = std::move(y), null_class, scale](const torch::Tensor& x,
                                                                         const torch::Tensor& sigma) {
    // Unconditional model: pass the undefined labels through, one call.
    if (!y.defined()) return model(x, sigma, y);
    if (y.size(0) != x.size(0))
      throw std::invalid_argument("guided: " + std::to_string(y.size(0)) + " labels for a batch of " +
                                  std::to_string(x.size(0)));
    const torch::Tensor labels = y.to(x.device());
    if (scale == 1.0) return model(x, sigma, labels);  // plain conditional velocity
    const torch::Tensor null_labels = torch::full_like(labels, null_class);
    if (scale == 0.0) return model(x, sigma, null_labels);  // plain null velocity
    // One batched call over 2B samples: first half conditional, second half null.
    const torch::Tensor out =
        model(torch::cat({x, x}, 0), torch::cat({sigma, sigma}, 0), torch::cat({labels, null_labels}, 0));
    const int64_t b = x.size(0);
    const torch::Tensor u_cond = out.narrow(0, 0, b), u_null = out.narrow(0, b, b);
    return u_null + scale * (u_cond - u_null);
  };
}

}  // namespace arcflow
