#include "arcflow/core/step_loop.h"

#include <stdexcept>

namespace arcflow {

torch::Tensor run_steps(const PolicyFn& model, torch::Tensor x, const std::vector<Segment>& segs,
                        const StepLoopOptions& opt, const StepObserver& observe, const StepAdvance& advance) {
  if (!(opt.temperature > 0.0)) throw std::invalid_argument("temperature must be > 0");
  const int64_t B = x.size(0);
  for (size_t i = 0; i < segs.size(); ++i) {
    const torch::Tensor sigma_src = torch::full({B}, segs[i].sigma_src, x.options());
    const torch::Tensor sigma_dst = torch::full({B}, segs[i].sigma_dst, x.options());
    const StepContext ctx{i, segs[i], sigma_src, sigma_dst};
    PolicyPtr p = model(x, sigma_src);
    if (opt.temperature != 1.0 && i + 1 < segs.size()) p = p->with_temperature(opt.temperature);
    torch::Tensor next = advance ? advance(p, x, ctx) : p->integrate(x, sigma_src, sigma_dst);
    if (observe) observe(ctx, p, x, next);
    x = std::move(next);
  }
  return x;
}

}  // namespace arcflow
