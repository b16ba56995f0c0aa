#include <gtest/gtest.h>

#include "arcflow/models/lora.h"
#include "arcflow/models/toy_mlp/toy_mlp.h"

using namespace arcflow;

TEST(LoRA, GlobMatch) {
  EXPECT_TRUE(glob_match("blocks.*.mlp.fc1", "blocks.3.mlp.fc1"));
  EXPECT_TRUE(glob_match("blocks.*.mlp.fc1", "blocks.12.mlp.fc1"));
  EXPECT_FALSE(glob_match("blocks.*.mlp.fc1", "blocks.3.mlp.fc2"));
  EXPECT_FALSE(glob_match("blocks.*.mlp.fc1", "x.blocks.3.mlp.fc1"));
  EXPECT_TRUE(glob_match("*", "anything"));
  EXPECT_TRUE(glob_match("layers.1", "layers.1"));
  EXPECT_FALSE(glob_match("layers.1", "layers.10"));
  EXPECT_TRUE(glob_match("*linear_*", "t_embedder.linear_2"));
}

TEST(LoRA, StartsAsTheBaseLayerAndMatchesTheFormula) {
  torch::manual_seed(0);
  LoRALinear layer(6, 5);
  const torch::Tensor x = torch::randn({4, 6});
  const torch::Tensor base = layer->forward(x).detach();
  layer->enable_lora(3, 6.0, 0.0);
  EXPECT_FALSE(layer->weight.requires_grad());
  EXPECT_TRUE(layer->lora_A->weight.requires_grad());
  EXPECT_TRUE(torch::equal(layer->forward(x), base));  // B = 0
  {
    torch::NoGradGuard ng;
    layer->lora_B->weight.normal_();
  }
  // y = x W^T + b + (alpha / r) x A^T B^T, computed by hand.
  const torch::Tensor expect = x.mm(layer->weight.t()) + layer->bias +
                               x.mm(layer->lora_A->weight.t()).mm(layer->lora_B->weight.t()) * 2.0;
  EXPECT_TRUE(torch::allclose(layer->forward(x), expect, 1e-5, 1e-5));
}

TEST(LoRA, FusedEqualsUnfused) {
  torch::manual_seed(1);
  LoRALinear layer(16, 8);
  layer->enable_lora(4, 4.0, 0.0);
  {
    torch::NoGradGuard ng;
    layer->lora_B->weight.normal_();
  }
  const torch::Tensor w0 = layer->weight.clone();
  const torch::Tensor x = torch::randn({10, 16});
  const torch::Tensor unfused = layer->forward(x);
  layer->fuse();
  EXPECT_TRUE(layer->fused());
  EXPECT_FALSE(torch::allclose(layer->weight, w0));
  EXPECT_TRUE(torch::allclose(layer->forward(x), unfused, 1e-5, 1e-5));
  layer->unfuse();
  EXPECT_TRUE(torch::allclose(layer->weight, w0, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(layer->forward(x), unfused, 1e-5, 1e-5));
}

TEST(LoRA, ApplyByPatternNamesKeysLikePeft) {
  ToyMLP mlp(ToyMLPConfig{32, 4, 8});
  LoRAConfig cfg{2, 2.0, 0.0, {"layers.1", "layers.2"}};
  const auto adapted = apply_lora(*mlp, cfg);
  EXPECT_EQ(adapted, (std::vector<std::string>{"layers.1", "layers.2"}));
  auto params = mlp->named_parameters();
  ASSERT_NE(params.find("layers.1.lora_A.weight"), nullptr);
  EXPECT_EQ(params["layers.1.lora_A.weight"].sizes(), torch::IntArrayRef({2, 32}));
  EXPECT_EQ(params["layers.2.lora_B.weight"].sizes(), torch::IntArrayRef({32, 2}));
  EXPECT_EQ(params.find("layers.0.lora_A.weight"), nullptr);
  EXPECT_EQ(lora_parameters(*mlp).size(), 4u);
  EXPECT_THROW(apply_lora(*mlp, LoRAConfig{2, 2.0, 0.0, {"blocks.*.mlp.fc1"}}), std::invalid_argument);
}

TEST(LoRA, CopyStateNamesTheBadTensor) {
  ToyMLP a(ToyMLPConfig{32, 4, 8}), b(ToyMLPConfig{16, 4, 8});
  try {
    copy_state(*a, *b);
    FAIL() << "expected a shape error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.weight"), std::string::npos) << e.what();
  }
}

#include <unistd.h>

#include "arcflow/models/weights.h"

TEST(Weights, RoundTripAndStrictLoad) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/toy_teacher_" + std::to_string(::getpid()) + ".safetensors";
  torch::manual_seed(4);
  ToyMLP a(ToyMLPConfig{16, 3, 8}), b(ToyMLPConfig{16, 3, 8});
  save_weights(*a, path, {{"config", "{\"hidden\":16}"}});
  const auto meta = load_weights(*b, path);
  EXPECT_EQ(meta.at("config"), "{\"hidden\":16}");
  const torch::Tensor x = torch::randn({5, 2}), s = torch::rand({5});
  EXPECT_TRUE(torch::equal(a->forward(x, s), b->forward(x, s)));
  auto state = state_dict(*a);
  auto expect_error = [&](io::TensorMap t, const std::string& word) {
    const torch::Tensor before = b->layers[0]->as<LoRALinearImpl>()->weight.clone();
    try {
      load_state(*b, t, "file.safetensors");
      ADD_FAILURE() << "no error for " << word;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("file.safetensors"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(torch::equal(before, b->layers[0]->as<LoRALinearImpl>()->weight));  // nothing changed
  };
  auto missing = state;
  missing.erase("proj_out.bias");
  expect_error(missing, "proj_out.bias");
  auto extra = state;
  extra["layers.9.weight"] = torch::zeros({1});
  expect_error(extra, "layers.9.weight");
  auto wrong = state;
  wrong["layers.0.weight"] = torch::zeros({16, 3});
  wrong["layers.1.weight"] = torch::zeros({2, 2});
  expect_error(wrong, "layers.");
  std::remove(path.c_str());
}
