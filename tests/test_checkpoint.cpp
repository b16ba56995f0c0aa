#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "arcflow/models/weights.h"
#include "arcflow/training/checkpoint.h"
#include "temp_dir.h"

using namespace arcflow;

namespace {

// A few AdamW steps of a small regression with noise from `gen`; returns the losses.
std::vector<double> train(torch::nn::Linear& m, torch::optim::AdamW& opt, at::Generator& gen, int steps) {
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) {
    const torch::Tensor x = torch::randn({16, 4}, gen);
    const torch::Tensor y = x.sum(1, true) + torch::randn({16, 1}, gen) * 0.1;
    const torch::Tensor loss = torch::mse_loss(m(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item<double>());
  }
  return losses;
}

}  // namespace

TEST(Checkpoint, ResumeGivesTheSameLossesAsAnUninterruptedRun) {
  arcflow::test::TempDir dir;
  const std::string path = dir.file("run.ckpt.safetensors");
  torch::manual_seed(0);
  torch::nn::Linear a(4, 1);
  torch::optim::AdamW opt_a(a->parameters(), torch::optim::AdamWOptions(0.05));
  at::Generator gen_a = at::detail::createCPUGenerator(3);
  train(a, opt_a, gen_a, 5);
  // Checkpoint after 5 steps, then the uninterrupted run goes on for 5 more.
  Checkpoint c;
  c.model = state_dict(*a);
  c.optimizer = serialize_optimizer(opt_a);
  c.rng_state = gen_a.get_state();
  c.step = 5;
  c.metadata["config"] = "{\"lr\":0.05}";
  save_checkpoint(path, c);
  const std::vector<double> straight = train(a, opt_a, gen_a, 5);

  // A fresh process: new model, optimizer and generator, restored from the file.
  torch::manual_seed(123);
  torch::nn::Linear b(4, 1);
  torch::optim::AdamW opt_b(b->parameters(), torch::optim::AdamWOptions(0.05));
  at::Generator gen_b = at::detail::createCPUGenerator(999);
  const Checkpoint r = load_checkpoint(path);
  EXPECT_EQ(r.step, 5);
  EXPECT_EQ(r.metadata.at("config"), "{\"lr\":0.05}");
  load_state(*b, r.model, path);
  deserialize_optimizer(opt_b, r.optimizer, path, torch::kCPU);
  gen_b.set_state(r.rng_state);
  const std::vector<double> resumed = train(b, opt_b, gen_b, 5);
  EXPECT_EQ(resumed, straight);
}

TEST(Checkpoint, RejectsOtherFiles) {
  arcflow::test::TempDir dir;
  const std::string path = dir.file("weights.safetensors");
  io::save_safetensors(path, {{"w", torch::zeros({2})}});
  try {
    load_checkpoint(path);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

TEST(Checkpoint, BytesRoundTrip) {
  std::string s("a\0b\xff", 4);
  EXPECT_EQ(tensor_to_bytes(bytes_to_tensor(s)), s);
  EXPECT_EQ(tensor_to_bytes(bytes_to_tensor("")), "");
}
