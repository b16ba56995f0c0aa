// Students on the FLUX transformer (the tiny random model of tests/data/flux, float32 and BF16):
// the reference's LoRA targets, the heads' start against the teacher, data-free distillation from
// a prompt pool, checkpoint/resume, fused vs unfused LoRA and float32 training over a BF16 base.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "arcflow/core/momentum.h"
#include "arcflow/core/activation_checkpoint.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/registry.h"
#include "arcflow/models/student.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/training/distill.h"
#include "flux_test_util.h"
#include "temp_dir.h"

namespace arcflow {
namespace {

using test::flux_case;
using test::flux_data;

// The tiny dev model at an 8 x 8 latent (4 channels), with the test prompts as its pool.
std::shared_ptr<FluxNetwork> tiny_flux(torch::ScalarType dtype = torch::kFloat32) {
  LoadOptions lo;
  lo.dtype = dtype;
  auto net = std::dynamic_pointer_cast<FluxNetwork>(load_network(flux_data("dev"), torch::kCPU, lo));
  net->set_latent_size(8, 8);
  net->set_prompt_pool(load_flux_prompt_embeddings(flux_data("prompts.safetensors"), net->transformer->config), 3.5);
  return net;
}

StudentConfig student_cfg(const std::string& policy, int64_t K, double noise) {
  StudentConfig s;
  s.policy = policy;
  s.K = K;
  s.head_bias_noise = noise;
  s.lora.rank = 4;
  s.lora.alpha = 4;
  s.lora.dropout = 0.0;
  s.train_norm_out = true;
  return s;
}

Condition pool_condition(const FluxNetwork& net, int64_t batch, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return net.random_condition(batch, gen);
}

TEST(FluxStudent, ReferenceTargetsAndHeadShapes) {
  auto teacher = tiny_flux();
  torch::manual_seed(0);
  LoRAStudent s(teacher, student_cfg("arcflow", 4, 0.05));
  int lora_layers = 0;
  for (const auto& item : s->named_modules("", false))
    if (auto* l = item.value()->as<LoRALinearImpl>(); l != nullptr && l->has_lora()) ++lora_layers;
  // 2 single blocks x (proj_mlp, proj_out) + 2 double blocks x 4 ff layers + 2 timestep MLP layers.
  EXPECT_EQ(lora_layers, 2 * 2 + 2 * 4 + 2);
  const auto children = s->named_children();
  // Means K * 16 per token (4 channels x 2 x 2), weights K * 4, log-gammas (K - 1) * 4.
  EXPECT_EQ(children["proj_out_means"]->as<torch::nn::LinearImpl>()->weight.size(0), 4 * 16);
  EXPECT_EQ(children["proj_out_logweights"]->as<torch::nn::LinearImpl>()->weight.size(0), 4 * 4);
  EXPECT_EQ(children["proj_out_log_gammas"]->as<torch::nn::LinearImpl>()->weight.size(0), 3 * 4);
  int norm_out_trainable = 0;
  for (const auto& p : s->named_parameters())
    if (p.key().find("norm_out") != std::string::npos && p.value().requires_grad()) ++norm_out_trainable;
  EXPECT_EQ(norm_out_trainable, 2);  // norm_out.linear weight and bias
}

TEST(FluxStudent, StartsAsTheTeacherWithoutHeadNoise) {
  auto teacher = tiny_flux();
  teacher->module().eval();
  const torch::Tensor x = torch::randn({2, 4, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.8f, 0.3f});
  const Condition c = pool_condition(*teacher, 2, 1);
  torch::NoGradGuard g;
  const torch::Tensor u_teacher = teacher->velocity(x, sigma, c);
  for (const char* policy : {"arcflow", "linear", "gmflow"}) {
    const bool linear = std::string(policy) == "linear";
    torch::manual_seed(0);
    LoRAStudent s(teacher, student_cfg(linear ? "arcflow" : policy, linear ? 1 : 4, 0.0));
    s->eval();
    const torch::Tensor u = s->policy(x, sigma, c)->velocity(x, sigma);
    EXPECT_LT((u - u_teacher).abs().max().item<double>(), 1e-5) << policy;
  }
  // With the bias noise the components differ, and uniform weights average the noise.
  torch::manual_seed(0);
  LoRAStudent noisy(teacher, student_cfg("arcflow", 4, 0.05));
  noisy->eval();
  const PolicyPtr policy = noisy->policy(x, sigma, c);
  const MomentumMixture& mix = dynamic_cast<const MomentumPolicy&>(*policy).mixture();
  EXPECT_GT((mix.means.select(1, 0) - mix.means.select(1, 1)).abs().max().item<double>(), 1e-3);
  EXPECT_LT((noisy->policy(x, sigma, c)->velocity(x, sigma) - u_teacher).abs().max().item<double>(), 0.2);
}

TEST(FluxStudent, DistillsFromThePromptPoolAndLowersItsLoss) {
  auto teacher = tiny_flux();
  torch::manual_seed(0);
  LoRAStudent s(teacher, student_cfg("arcflow", 4, 0.05));
  DistillConfig d;
  d.batch_size = 4;
  d.num_decay_iters = 0;
  d.warmup_iters = 0;
  d.lr = 3e-3;
  d.ema_start = 5;
  d.seed = 1;
  d.shift = 3.2;
  d.total_substeps = 32;
  Distiller dist(make_distill_problem(s, teacher, 1.0, d, torch::kCPU), d);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    const DistillStats st = dist.step();
    ASSERT_FALSE(st.skipped);
    if (i < 5) first += st.loss / 5;
    if (i >= 25) last += st.loss / 5;
  }
  EXPECT_LT(last, 0.8 * first) << first << " -> " << last;
}

TEST(FluxStudent, ResumeGivesTheSameLosses) {
  test::TempDir dir;
  auto teacher = tiny_flux();
  DistillConfig d;
  d.batch_size = 2;
  d.num_decay_iters = 4;
  d.warmup_iters = 2;
  d.ema_start = 2;
  d.total_substeps = 16;
  auto make = [&](uint64_t seed) {
    torch::manual_seed(seed);
    StudentConfig c = student_cfg("arcflow", 3, 0.05);
    c.lora.dropout = 0.1;
    return LoRAStudent(teacher, c);
  };
  LoRAStudent sa = make(0);
  Distiller a(make_distill_problem(sa, teacher, 1.0, d, torch::kCPU), d);
  for (int i = 0; i < 3; ++i) a.step();
  save_checkpoint(dir.file("c.safetensors"), a.checkpoint());
  std::vector<double> losses;
  for (int i = 0; i < 3; ++i) losses.push_back(a.step().loss);
  LoRAStudent sb = make(9);
  Distiller b(make_distill_problem(sb, teacher, 1.0, d, torch::kCPU), d);
  b.restore(load_checkpoint(dir.file("c.safetensors")), "c.safetensors");
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(b.step().loss, losses[static_cast<size_t>(i)]) << i;
}

TEST(FluxStudent, FusedLoRASamplesAsUnfusedAndAdapterRoundTrips) {
  test::TempDir dir;
  auto teacher = tiny_flux();
  torch::manual_seed(0);
  LoRAStudent s(teacher, student_cfg("arcflow", 4, 0.05));
  {
    torch::NoGradGuard g;
    for (auto& p : s->parameters())
      if (p.requires_grad()) p.add_(torch::randn_like(p) * 0.05);  // LoRA B nonzero, heads moved
  }
  const torch::Tensor noise = make_noise(2, {4, 8, 8}, 3);
  const Condition c = pool_condition(*teacher, 2, 2);
  StudentSampling so;
  so.nfe = 2;
  so.shift = 3.2;
  const torch::Tensor unfused = sample_student(*s, noise, c, so);
  save_adapter(s, dir.file("a.safetensors"));
  s->fuse_lora();
  const torch::Tensor fused = sample_student(*s, noise, c, so);
  EXPECT_LT((fused - unfused).abs().max().item<double>(), 1e-4);
  EXPECT_GT((unfused - sample_teacher(teacher, noise, c, TeacherSampling{"euler", 2, 3.2, 1.0, 1.0, 256}))
                .abs()
                .max()
                .item<double>(),
            1e-3);
  LoRAStudent r = load_adapter(teacher, dir.file("a.safetensors"));
  EXPECT_TRUE(torch::equal(sample_student(*r, noise, c, so), unfused));
}

TEST(FluxStudent, Bfloat16BaseTrainsFloat32Parameters) {
  auto teacher = tiny_flux(torch::kBFloat16);
  torch::manual_seed(0);
  LoRAStudent s(teacher, student_cfg("arcflow", 4, 0.05));
  for (const auto& p : s->named_parameters()) {
    if (p.value().requires_grad()) {
      EXPECT_EQ(p.value().scalar_type(), torch::kFloat32) << p.key();
    } else if (p.key().rfind("base.", 0) == 0) {
      EXPECT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
    }
  }
  DistillConfig d;
  d.batch_size = 2;
  d.total_substeps = 16;
  Distiller dist(make_distill_problem(s, teacher, 1.0, d, torch::kCPU), d);
  for (int i = 0; i < 2; ++i) {
    const DistillStats st = dist.step();
    EXPECT_FALSE(st.skipped);
    EXPECT_TRUE(std::isfinite(st.loss));
  }
}

TEST(FluxStudent, NoPromptPoolIsAClearError) {
  auto net = std::dynamic_pointer_cast<FluxNetwork>(load_network(flux_data("dev")));
  at::Generator gen = at::detail::createCPUGenerator(0);
  test::expect_error([&] { net->random_condition(2, gen); }, {"--prompts"});
}

}  // namespace
}  // namespace arcflow

namespace arcflow {
namespace {

TEST(FluxStudent, ActivationCheckpointingGivesTheSameGradients) {
  auto teacher = tiny_flux();
  torch::manual_seed(0);
  LoRAStudent s(teacher, student_cfg("arcflow", 4, 0.05));
  {
    torch::NoGradGuard g;
    for (auto& p : s->parameters())
      if (p.requires_grad()) p.add_(torch::randn_like(p) * 0.05);  // LoRA B nonzero: every path live
  }
  s->train();
  auto* flux = dynamic_cast<FluxNetwork*>(s->base.get());
  ASSERT_NE(flux, nullptr);
  const torch::Tensor x = torch::randn({2, 4, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.8f, 0.3f});
  const Condition c = pool_condition(*teacher, 2, 3);
  auto grads = [&](bool recompute) {
    flux->transformer->checkpoint_blocks = recompute;
    for (auto& p : s->parameters()) p.mutable_grad() = torch::Tensor();
    const PolicyPtr p = s->policy(x, sigma, c);
    const auto& mix = dynamic_cast<const MomentumPolicy&>(*p).mixture();
    (mix.means.pow(2).sum() + mix.logweights.sin().sum() + mix.log_gammas.pow(2).sum()).backward();
    std::vector<torch::Tensor> out;
    for (auto& q : s->parameters())
      if (q.requires_grad()) out.push_back(q.grad().defined() ? q.grad().clone() : torch::zeros_like(q));
    return out;
  };
  const auto plain = grads(false), recomputed = grads(true);
  ASSERT_EQ(plain.size(), recomputed.size());
  int nonzero = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_LT((plain[i] - recomputed[i]).abs().max().item<double>(), 1e-5 * (1 + plain[i].abs().max().item<double>())) << i;
    if (plain[i].abs().max().item<double>() > 0) ++nonzero;
  }
  EXPECT_GT(nonzero, static_cast<int>(plain.size()) / 2);  // the LoRA layers inside the blocks got gradients
}

}  // namespace
}  // namespace arcflow

namespace arcflow {
namespace {
TEST(ActivationCheckpoint, LinearChainGradients) {
  torch::manual_seed(0);
  torch::nn::Linear a(4, 4), b(4, 4);
  const torch::Tensor x = torch::randn({3, 4}, torch::requires_grad());
  const torch::Tensor t = torch::randn({3, 4}, torch::requires_grad());
  auto run = [&](bool ck) {
    for (auto* m : {&a, &b}) for (auto& p : (*m)->parameters()) p.mutable_grad() = torch::Tensor();
    x.mutable_grad() = torch::Tensor();
    t.mutable_grad() = torch::Tensor();
    const BlockFn fn = [&](const std::vector<torch::Tensor>& in) {
      return std::vector<torch::Tensor>{torch::tanh(a(in[0]) + in[1]), b(in[0]) * in[1]};
    };
    auto out = ck ? checkpointed(fn, {x, t}) : fn({x, t});
    auto out2 = ck ? checkpointed(fn, {out[0], t}) : fn({out[0], t});
    (out2[0].pow(2).sum() + out[1].sum() + out2[1].sum()).backward();
    return std::vector<torch::Tensor>{a->weight.grad().clone(), b->weight.grad().clone(), x.grad().clone(), t.grad().clone()};
  };
  const auto p = run(false), q = run(true);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_LT((p[i] - q[i]).abs().max().item<double>(), 1e-5) << i;
}
}  // namespace
}  // namespace arcflow
