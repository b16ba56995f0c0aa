// Adapter interop with the reference implementation (pnotp/ArcFlow): a folder written in its layout
// by tests/flux_reference/make_reference_adapter.py (plain Python, F16) loads, its heads are read in
// the reference's order (checked against the reference's own unpack reshape, written out here),
// ours round-trip through the same layout, and bad folders fail naming the file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "arcflow/core/momentum.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/flux/reference_adapter.h"
#include "arcflow/models/registry.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"
#include "flux_test_util.h"
#include "temp_dir.h"

namespace arcflow {
namespace {

using test::expect_error;
using test::flux_data;

std::shared_ptr<FluxNetwork> teacher() {
  auto net = std::dynamic_pointer_cast<FluxNetwork>(load_network(flux_data("dev")));
  net->set_latent_size(8, 6);
  net->set_prompt_pool(load_flux_prompt_embeddings(flux_data("prompts.safetensors"), net->transformer->config), 3.5);
  return net;
}

Condition condition(const FluxNetwork& net, int64_t batch) {
  at::Generator gen = at::detail::createCPUGenerator(5);
  return net.random_condition(batch, gen);
}

// Copies the fixture folder to `dir`, letting `edit` change its tensors, metadata and config.
void copy_fixture(const std::string& dir, const std::function<void(io::TensorMap&, io::Metadata&, nlohmann::json&)>& edit) {
  const std::string src = flux_data("arcflow-adapter");
  io::SafetensorsFile f = io::load_safetensors(src + "/diffusion_pytorch_model.safetensors");
  nlohmann::json cfg = nlohmann::json::parse(io::read_file(src + "/config.json"));
  edit(f.tensors, f.metadata, cfg);
  io::make_output_dir(dir);
  io::save_safetensors(dir + "/diffusion_pytorch_model.safetensors", f.tensors, f.metadata);
  io::write_file_atomic(dir + "/config.json", cfg.dump(2));
}

TEST(ReferenceAdapter, FixtureLoadsEveryTensorWhereTheReferenceKeepsIt) {
  auto t = teacher();
  const std::string dir = flux_data("arcflow-adapter");
  ASSERT_TRUE(is_reference_adapter(dir));
  io::Metadata meta;
  LoRAStudent s = load_adapter(t, dir, &meta);  // the folder is recognised by load_adapter itself
  EXPECT_EQ(s->config.K, 3);
  EXPECT_EQ(s->config.lora.rank, 2);
  EXPECT_DOUBLE_EQ(s->config.lora.alpha, 2.0);
  EXPECT_EQ(meta.at("shift"), "3.2");
  const io::SafetensorsFile f = io::load_safetensors(dir + "/diffusion_pytorch_model.safetensors");
  auto params = s->named_parameters();
  int lora = 0;
  for (const auto& [key, value] : f.tensors) {
    std::string ours = key.rfind("proj_out_", 0) == 0 ? key : "base." + key;
    if (key.rfind("proj_out_loggamma.", 0) == 0) ours = "proj_out_log_gammas." + key.substr(18);
    const torch::Tensor* p = params.find(ours);
    ASSERT_NE(p, nullptr) << key;
    EXPECT_TRUE(torch::equal(*p, value.to(torch::kFloat32))) << key;
    if (key.find(".lora_") != std::string::npos) ++lora;
  }
  EXPECT_EQ(lora, 2 * (2 * 4 + 2 * 2 + 2));  // the reference's 8 target kinds on 2 + 2 blocks
}

TEST(ReferenceAdapter, HeadsFollowTheReferencesUnpack) {
  auto t = teacher();
  LoRAStudent s = load_adapter(t, flux_data("arcflow-adapter"));
  s->eval();
  torch::NoGradGuard g;
  const torch::Tensor x = torch::randn({2, 4, 8, 6});
  const torch::Tensor sigma = torch::tensor({0.7f, 0.4f});
  const Condition c = condition(*t, 2);
  const PolicyPtr policy = s->policy(x, sigma, c);
  const MomentumMixture& mix = dynamic_cast<const MomentumPolicy&>(*policy).mixture();
  // The reference (arcflux_pipeline.py): head rows reshaped (bs, h, w, k, c, 2, 2), permuted
  // (0, 3, 4, 1, 5, 2, 6), reshaped (bs, k, c, 2h, 2w); h, w = the token grid (4 x 3 here).
  const torch::Tensor tokens = s->base->head_input(x, sigma, c).tokens;  // (2, 12, 32)
  const io::SafetensorsFile f = io::load_safetensors(flux_data("arcflow-adapter/diffusion_pytorch_model.safetensors"));
  auto head = [&](const std::string& name, int64_t k, int64_t ch) {
    const torch::Tensor w = f.tensors.at(name + ".weight").to(torch::kFloat32);
    const torch::Tensor b = f.tensors.at(name + ".bias").to(torch::kFloat32);
    return torch::nn::functional::linear(tokens, w, b)
        .reshape({2, 4, 3, k, ch, 2, 2})
        .permute({0, 3, 4, 1, 5, 2, 6})
        .reshape({2, k, ch, 8, 6});
  };
  EXPECT_LT((mix.means - head("proj_out_means", 3, 4)).abs().max().item<double>(), 1e-5);
  // Our log-weights may be shifted per pixel (log-softmax); compare the weights themselves.
  EXPECT_LT((mix.logweights.softmax(1) - head("proj_out_logweights", 3, 1).softmax(1)).abs().max().item<double>(), 1e-5);
  // Component 0 is the linear one (g = 0); the file's K - 1 rows are components 1..K-1.
  EXPECT_EQ(mix.log_gammas.select(1, 0).abs().max().item<float>(), 0.0f);
  EXPECT_LT((mix.log_gammas.narrow(1, 1, 2) - head("proj_out_loggamma", 2, 1)).abs().max().item<double>(), 1e-5);
}

TEST(ReferenceAdapter, OursRoundTripsThroughTheReferenceLayout) {
  test::TempDir dir;
  auto t = teacher();
  StudentConfig sc;
  sc.K = 4;
  sc.lora.rank = 3;
  sc.lora.alpha = 6;  // scale 2: folded into lora_B in the reference layout (which implies alpha = rank)
  sc.train_norm_out = true;
  torch::manual_seed(1);
  LoRAStudent s(t, sc);
  {
    torch::NoGradGuard g;
    for (auto& p : s->parameters())
      if (p.requires_grad()) p.add_(torch::randn_like(p) * 0.05);
  }
  save_reference_adapter(s, dir.file("ref"));
  const nlohmann::json cfg = nlohmann::json::parse(io::read_file(dir.file("ref") + "/config.json"));
  EXPECT_EQ(cfg.at("_class_name"), "ArcFluxTransformer2DModel");
  EXPECT_EQ(cfg.at("num_gaussians"), 4);
  EXPECT_EQ(cfg.at("logweights_channels"), 4);
  EXPECT_FALSE(cfg.contains("patch_size"));
  const io::SafetensorsFile f = io::load_safetensors(dir.file("ref") + "/diffusion_pytorch_model.safetensors");
  EXPECT_EQ(f.metadata.at("policy_config"), R"({"type": "ArcFlow"})");
  EXPECT_EQ(f.tensors.count("proj_out_loggamma.weight"), 1u);
  EXPECT_EQ(f.tensors.count("proj_out.weight"), 0u);
  EXPECT_EQ(f.tensors.count("norm_out.linear.weight"), 1u);
  EXPECT_EQ(f.tensors.count("transformer_blocks.0.ff.net.0.proj.lora_A.weight"), 1u);
  LoRAStudent r = load_adapter(t, dir.file("ref"));
  const torch::Tensor noise = make_noise(2, {4, 8, 6}, 4);
  const Condition c = condition(*t, 2);
  StudentSampling so;
  so.shift = 3.2;
  EXPECT_LT((sample_student(*s, noise, c, so) - sample_student(*r, noise, c, so)).abs().max().item<double>(), 1e-5);
}

TEST(ReferenceAdapter, BadFoldersFailNamingTheFile) {
  test::TempDir dir;
  auto t = teacher();
  copy_fixture(dir.file("other"), [](io::TensorMap&, io::Metadata&, nlohmann::json& cfg) { cfg["num_layers"] = 19; });
  expect_error([&] { load_adapter(t, dir.file("other")); }, {"config.json", "num_layers", "another base model"});
  copy_fixture(dir.file("head"), [](io::TensorMap& m, io::Metadata&, nlohmann::json&) { m.erase("proj_out_loggamma.bias"); });
  expect_error([&] { load_adapter(t, dir.file("head")); },
               {"diffusion_pytorch_model.safetensors", "missing head tensor 'proj_out_loggamma.bias'"});
  copy_fixture(dir.file("policy"), [](io::TensorMap&, io::Metadata& meta, nlohmann::json&) {
    meta["policy_config"] = R"({"type": "GMFlow"})";
  });
  expect_error([&] { load_adapter(t, dir.file("policy")); }, {"diffusion_pytorch_model.safetensors", "'GMFlow'", "unknown policy"});
  copy_fixture(dir.file("shape"), [](io::TensorMap& m, io::Metadata&, nlohmann::json&) {
    m["proj_out_means.weight"] = torch::zeros({5, 32});
  });
  expect_error([&] { load_adapter(t, dir.file("shape")); }, {"proj_out_means.weight", "shape"});
  copy_fixture(dir.file("pair"), [](io::TensorMap& m, io::Metadata&, nlohmann::json&) {
    m.erase("single_transformer_blocks.1.proj_mlp.lora_B.weight");
  });
  expect_error([&] { load_adapter(t, dir.file("pair")); }, {"single_transformer_blocks.1.proj_mlp", "lora_B"});
}

}  // namespace
}  // namespace arcflow
