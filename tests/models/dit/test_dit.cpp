// Tests for arcflow/models/dit/dit.h: token order, the exact layout and keys, adaLN-Zero, attention and
// the whole forward against independent hand computations, config JSON, and the weights files.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <string>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/lora.h"
#include "arcflow/models/weights.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;
using arcflow::test::TempDir;

namespace {

DiTConfig tiny_config() { return test::tiny_dit(/*in_channels=*/2, /*width=*/8, /*depth=*/2); }

// Every parameter ~ N(0, std^2): no zero-initialised layer left, so every path matters.
void randomize(torch::nn::Module& m, double std = 0.3) {
  torch::NoGradGuard no_grad;
  for (auto& p : m.parameters()) p.normal_(0.0, std);
}

torch::Tensor lin(const torch::Tensor& x, const LoRALinear& l) { return x.matmul(l->weight.t()) + l->bias; }
torch::Tensor ref_silu(const torch::Tensor& x) { return x / (1 + torch::exp(-x)); }
torch::Tensor layer_norm(const torch::Tensor& x) {
  const torch::Tensor mean = x.mean(-1, true);
  const torch::Tensor var = (x - mean).pow(2).mean(-1, true);
  return (x - mean) / torch::sqrt(var + 1e-6);
}
torch::Tensor gelu_tanh(const torch::Tensor& x) {
  return 0.5 * x * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
}

// One block by hand: explicit loops over samples and heads, softmax written out.
torch::Tensor manual_block(DiTBlockImpl& blk, const torch::Tensor& x, const torch::Tensor& c, int64_t heads) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), hd = D / heads;
  const torch::Tensor mod = lin(ref_silu(c), blk.modulation);
  auto chunk = [&](int i) { return mod.narrow(1, i * D, D).unsqueeze(1); };
  const torch::Tensor xm = layer_norm(x) * (1 + chunk(1)) + chunk(0);
  const torch::Tensor qkv = lin(xm, blk.attn->qkv);
  torch::Tensor att = torch::zeros_like(x);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      const torch::Tensor q = qkv[b].narrow(1, h * hd, hd);
      const torch::Tensor k = qkv[b].narrow(1, D + h * hd, hd);
      const torch::Tensor v = qkv[b].narrow(1, 2 * D + h * hd, hd);
      torch::Tensor s = q.matmul(k.t()) / std::sqrt(static_cast<double>(hd));  // (N, N)
      s = torch::exp(s - std::get<0>(s.max(1, true)));
      s = s / s.sum(1, true);
      att[b].narrow(1, h * hd, hd).copy_(s.matmul(v));
    }
  EXPECT_EQ(att.size(1), N);
  const torch::Tensor h1 = x + chunk(2) * lin(att, blk.attn->proj);
  const torch::Tensor hm = layer_norm(h1) * (1 + chunk(4)) + chunk(3);
  return h1 + chunk(5) * lin(gelu_tanh(lin(hm, blk.mlp->fc1)), blk.mlp->fc2);
}

// Expects fn() to throw std::exception whose message contains every string of `parts`.
template <typename F>
void expect_error(F fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

}  // namespace

TEST(DiT, UnpatchifyOrderByHand) {
  const int64_t B = 2, C = 2, p = 2, S = 4, g = 2;
  // Token n of sample b, output (py, px, c) holds 10000 b + 1000 n + 100 py + 10 px + c.
  torch::Tensor tokens = torch::empty({B, g * g, p * p * C});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < g * g; ++n)
      for (int64_t py = 0; py < p; ++py)
        for (int64_t px = 0; px < p; ++px)
          for (int64_t c = 0; c < C; ++c)
            tokens[b][n][(py * p + px) * C + c] = 10000.0 * b + 1000.0 * n + 100.0 * py + 10.0 * px + c;
  const torch::Tensor img = patchify_tokens_to_image(tokens, p, C, S);
  ASSERT_EQ(img.sizes(), torch::IntArrayRef({B, C, S, S}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t y = 0; y < S; ++y)
        for (int64_t x = 0; x < S; ++x) {
          const int64_t n = (y / p) * g + x / p;  // row-major tokens
          const double want = 10000.0 * b + 1000.0 * n + 100.0 * (y % p) + 10.0 * (x % p) + c;
          EXPECT_EQ(img[b][c][y][x].item<double>(), want) << b << c << y << x;
        }
  // Spot checks written out: pixel (c=1, y=3, x=0) is token 2, py 1, px 0.
  EXPECT_EQ(img[0][1][3][0].item<double>(), 2101.0);
  EXPECT_EQ(img[1][0][1][3].item<double>(), 11110.0);
  EXPECT_TRUE(torch::equal(patchify_image_to_tokens(img, p), tokens));
  EXPECT_THROW(patchify_tokens_to_image(tokens, p, 1, S), std::invalid_argument);
  EXPECT_THROW(patchify_tokens_to_image(tokens, 3, C, S), std::invalid_argument);
}

TEST(DiT, PatchEmbeddingIsRowMajorAndMatchesTokens) {
  torch::manual_seed(0);
  DiT m(tiny_config());  // image 8, patch 4: 2x2 tokens
  randomize(*m);
  const torch::Tensor x = torch::randn({3, 2, 8, 8});
  // The conv equals a Linear over the (py, px, c)-ordered token inputs with the permuted kernel.
  const torch::Tensor W = m->x_embedder->weight.permute({0, 2, 3, 1}).reshape({8, -1});
  const torch::Tensor want = patchify_image_to_tokens(x, 4).matmul(W.t()) + m->x_embedder->bias;
  EXPECT_TRUE(torch::allclose(m->embed_patches(x), want, 1e-5, 1e-5));
  // One lit patch at grid row 1, column 0 lights token 1 * 2 + 0 = 2 only.
  {
    torch::NoGradGuard no_grad;
    m->x_embedder->bias.zero_();
  }
  torch::Tensor lit = torch::zeros({1, 2, 8, 8});
  lit.narrow(2, 4, 4).narrow(3, 0, 4).fill_(1.0);
  const torch::Tensor t = m->embed_patches(lit).abs().sum(2)[0];
  EXPECT_EQ(t[0].item<float>(), 0.0f);
  EXPECT_EQ(t[1].item<float>(), 0.0f);
  EXPECT_GT(t[2].item<float>(), 0.0f);
  EXPECT_EQ(t[3].item<float>(), 0.0f);
}

TEST(DiT, CheckpointKeysAndShapes) {
  const DiTConfig cfg = tiny_config();  // C 2, p 4, D 8, depth 2, 3 classes, mlp 32
  DiT m(cfg);
  std::map<std::string, std::vector<int64_t>> want = {
      {"x_embedder.weight", {8, 2, 4, 4}},  {"x_embedder.bias", {8}},   {"pos_embed", {1, 4, 8}},
      {"t_embedder.linear_1.weight", {8, 256}}, {"t_embedder.linear_1.bias", {8}},
      {"t_embedder.linear_2.weight", {8, 8}},   {"t_embedder.linear_2.bias", {8}},
      {"y_embedder.weight", {4, 8}},        {"norm_out.linear.weight", {16, 8}}, {"norm_out.linear.bias", {16}},
      {"proj_out.weight", {32, 8}},         {"proj_out.bias", {32}}};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    want[b + "adaLN_modulation.1.weight"] = {48, 8};
    want[b + "adaLN_modulation.1.bias"] = {48};
    want[b + "attn.qkv.weight"] = {24, 8};
    want[b + "attn.qkv.bias"] = {24};
    want[b + "attn.proj.weight"] = {8, 8};
    want[b + "attn.proj.bias"] = {8};
    want[b + "mlp.fc1.weight"] = {32, 8};
    want[b + "mlp.fc1.bias"] = {32};
    want[b + "mlp.fc2.weight"] = {8, 32};
    want[b + "mlp.fc2.bias"] = {8};
  }
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& [name, t] : state_dict(*m)) got[name] = t.sizes().vec();
  EXPECT_EQ(got, want);
}

TEST(DiT, AdaLNZeroStartsAtExactlyZero) {
  torch::manual_seed(1);
  DiTConfig cfg;  // the default layout, small batch
  DiT m(cfg);
  const torch::Tensor x = torch::randn({4, 1, 28, 28}), sigma = torch::rand({4});
  const torch::Tensor y = torch::tensor({0, 3, 9, 10}, torch::kInt64);  // 10 = null class
  const torch::Tensor u = m->forward(x, sigma, y);
  ASSERT_EQ(u.sizes(), torch::IntArrayRef({4, 1, 28, 28}));
  EXPECT_EQ(u.abs().max().item<float>(), 0.0f);
  // The trunk's features are not zero (only the output layers start at zero).
  torch::Tensor c;
  const torch::Tensor f = m->features(x, sigma, y, &c);
  EXPECT_EQ(f.sizes(), torch::IntArrayRef({4, 49, 256}));
  EXPECT_EQ(c.sizes(), torch::IntArrayRef({4, 256}));
  EXPECT_GT(f.abs().max().item<float>(), 0.1f);
  // A changed proj_out gives a nonzero, input-dependent output.
  {
    torch::NoGradGuard no_grad;
    m->proj_out->weight.normal_(0.0, 0.1);
  }
  const torch::Tensor u2 = m->forward(x, sigma, y);
  EXPECT_GT(u2.abs().min().item<float>(), 0.0f);
  EXPECT_FALSE(torch::allclose(u2[0], u2[1]));
  // A scalar sigma is broadcast; bad shapes are rejected.
  EXPECT_TRUE(torch::allclose(m->forward(x, torch::tensor(0.5), y), m->forward(x, torch::full({4}, 0.5), y)));
  EXPECT_THROW(m->forward(x, torch::rand({3}), y), std::invalid_argument);
  EXPECT_THROW(m->forward(x, sigma, y.to(torch::kInt32)), std::invalid_argument);
  EXPECT_THROW(m->forward(torch::randn({4, 1, 32, 32}), sigma, y), std::invalid_argument);
}

TEST(DiT, BlockMatchesPerHeadLoop) {
  torch::manual_seed(2);
  DiTConfig cfg = tiny_config();  // width 8, 2 heads, 4 tokens
  DiT m(cfg);
  randomize(*m);
  m->to(torch::kFloat64);
  auto blk = m->blocks->ptr<DiTBlockImpl>(0);
  const torch::Tensor x = torch::randn({3, 4, 8}, torch::kFloat64);
  const torch::Tensor c = torch::randn({3, 8}, torch::kFloat64);
  const torch::Tensor got = blk->forward(x, c);
  const torch::Tensor want = manual_block(*blk, x, c, cfg.heads);
  EXPECT_TRUE(torch::allclose(got, want, 1e-10, 1e-10)) << (got - want).abs().max();
  // Attention mixes tokens: changing token 3 changes token 0's output. (A non-constant change: the
  // LayerNorm would remove a constant one.)
  torch::Tensor x2 = x.clone();
  x2[0][3].add_(torch::randn({8}, torch::kFloat64));
  EXPECT_GT((blk->forward(x2, c)[0][0] - got[0][0]).abs().max().item<double>(), 1e-6);
}

TEST(DiT, ForwardMatchesHandComposition) {
  torch::manual_seed(3);
  const DiTConfig cfg = tiny_config();
  DiT m(cfg);
  randomize(*m);
  m->to(torch::kFloat64);
  const int64_t B = 3, D = cfg.width;
  const torch::Tensor x = torch::randn({B, 2, 8, 8}, torch::kFloat64);
  const torch::Tensor sigma = torch::tensor({0.0, 0.37, 1.0}, torch::kFloat64);
  const torch::Tensor y = torch::tensor({2, 3, 0}, torch::kInt64);
  // Patch embedding + pos_embed.
  const torch::Tensor W = m->x_embedder->weight.permute({0, 2, 3, 1}).reshape({D, -1});
  torch::Tensor h = patchify_image_to_tokens(x, 4).matmul(W.t()) + m->x_embedder->bias + m->pos_embed;
  // Time features written out from the spec: f_i = exp(-ln(10000) i / 128), [cos(t f), sin(t f)].
  const torch::Tensor f = torch::exp(torch::arange(128, torch::kFloat64) * (-std::log(10000.0) / 128));
  const torch::Tensor args = (sigma * 1000).unsqueeze(1) * f.unsqueeze(0);
  const torch::Tensor temb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
  const torch::Tensor c = lin(ref_silu(lin(temb, m->t_embedder->linear_1)), m->t_embedder->linear_2) +
                          m->y_embedder->weight.index_select(0, y);
  for (int i = 0; i < cfg.depth; ++i) h = manual_block(*m->blocks->ptr<DiTBlockImpl>(i), h, c, cfg.heads);
  const torch::Tensor mod = lin(ref_silu(c), m->norm_out->linear);
  const torch::Tensor feats = layer_norm(h) * (1 + mod.narrow(1, D, D).unsqueeze(1)) + mod.narrow(1, 0, D).unsqueeze(1);
  const torch::Tensor want = patchify_tokens_to_image(lin(feats, m->proj_out), 4, 2, 8);
  torch::Tensor got_c;
  EXPECT_TRUE(torch::allclose(m->features(x, sigma, y, &got_c), feats, 1e-9, 1e-9));
  EXPECT_TRUE(torch::allclose(got_c, c, 1e-9, 1e-9));
  const torch::Tensor got = m->forward(x, sigma, y);
  EXPECT_TRUE(torch::allclose(got, want, 1e-9, 1e-9)) << (got - want).abs().max();
}

TEST(DiT, PosEmbedStartsAsSinCosTable) {
  DiT m(tiny_config());  // D 8, 2x2 grid: token (i, j) = [sin j, cos j, sin j/100, cos j/100, same for i]
  const torch::Tensor pe = m->pos_embed[0];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      const torch::Tensor want = torch::tensor({std::sin(j), std::sin(j / 100.0), std::cos(j), std::cos(j / 100.0),
                                                std::sin(i), std::sin(i / 100.0), std::cos(i), std::cos(i / 100.0)},
                                               torch::kFloat32);
      EXPECT_TRUE(torch::allclose(pe[i * 2 + j], want, 1e-6, 1e-6)) << i << j << pe[i * 2 + j];
    }
  EXPECT_TRUE(m->pos_embed.requires_grad());
}

TEST(DiT, ConfigJsonRoundTripAndValidation) {
  DiTConfig c = tiny_config();
  c.mlp_ratio = 2.5;
  const DiTConfig r = DiTConfig::from_json(nlohmann::json::parse(c.to_json().dump()));
  EXPECT_EQ(r.to_json(), c.to_json());
  EXPECT_EQ(r.mlp_ratio, 2.5);
  EXPECT_EQ(r.num_classes, 3);
  EXPECT_EQ(DiTConfig::from_json(DiTConfig().to_json()).to_json(), DiTConfig().to_json());

  auto with = [](const std::string& key, const nlohmann::json& v) {
    nlohmann::json j = DiTConfig().to_json();
    j[key] = v;
    return j;
  };
  expect_error([&] { DiTConfig::from_json(with("patch", 5)); }, {"image_size", "patch"});
  expect_error([&] { DiTConfig::from_json(with("heads", 3)); }, {"width", "heads"});
  expect_error([&] { DiTConfig::from_json(with("depth", 0)); }, {"depth"});
  expect_error([&] { DiTConfig::from_json(with("in_channels", -1)); }, {"in_channels"});
  expect_error([&] { DiTConfig::from_json(with("num_classes", 0)); }, {"num_classes"});
  expect_error([&] { DiTConfig::from_json(with("mlp_ratio", 0.0)); }, {"mlp_ratio"});
  expect_error([&] { DiTConfig::from_json(with("mlp_ratio", "4")); }, {"mlp_ratio"});
  expect_error([&] { DiTConfig::from_json(with("width", 256.5)); }, {"width", "integer"});
  expect_error([&] { DiTConfig::from_json(with("width", "256")); }, {"width", "integer"});
  expect_error([&] { DiTConfig::from_json(with("widht", 256)); }, {"unknown field 'widht'"});
  nlohmann::json missing = DiTConfig().to_json();
  missing.erase("heads");
  expect_error([&] { DiTConfig::from_json(missing); }, {"missing field 'heads'"});
  expect_error([&] { DiTConfig::from_json(nlohmann::json::array()); }, {"JSON object"});
  DiTConfig bad;
  bad.image_size = 30;
  expect_error([&] { bad.validate(); }, {"image_size"});
  expect_error([&] { DiT{bad}; }, {"image_size"});
}

TEST(DiT, SaveLoadRoundTripAndStrictLoading) {
  torch::manual_seed(4);
  TempDir dir;
  DiT m(tiny_config());
  randomize(*m);
  const std::string path = dir.file("dit.safetensors");
  save_dit(m, path);
  const io::SafetensorsFile file = io::load_safetensors(path);
  EXPECT_EQ(file.metadata.at("model"), "dit");
  EXPECT_EQ(nlohmann::json::parse(file.metadata.at("config")), tiny_config().to_json());

  DiT back = load_dit(path);
  const torch::Tensor x = torch::randn({2, 2, 8, 8}), sigma = torch::rand({2});
  const torch::Tensor y = torch::tensor({1, 3}, torch::kInt64);
  const torch::Tensor u = m->forward(x, sigma, y);
  EXPECT_GT(u.abs().max().item<float>(), 0.0f);
  EXPECT_TRUE(torch::equal(back->forward(x, sigma, y), u));

  // Rewrites the file with changed tensors or metadata, then expects load_dit to name it all.
  auto rewrite = [&](const std::string& name, io::TensorMap t, io::Metadata md) {
    const std::string p = dir.file(name);
    io::save_safetensors(p, t, md);
    return p;
  };
  const io::Metadata md = file.metadata;
  io::TensorMap t = file.tensors;
  t.erase("blocks.1.attn.qkv.weight");
  const std::string p1 = rewrite("missing.safetensors", t, md);
  expect_error([&] { load_dit(p1); }, {p1, "blocks.1.attn.qkv.weight", "missing"});
  t = file.tensors;
  t["blocks.0.attn.extra.weight"] = torch::zeros({2});
  const std::string p2 = rewrite("extra.safetensors", t, md);
  expect_error([&] { load_dit(p2); }, {p2, "blocks.0.attn.extra.weight"});
  t = file.tensors;
  t["pos_embed"] = torch::zeros({1, 5, 8});
  const std::string p3 = rewrite("shape.safetensors", t, md);
  expect_error([&] { load_dit(p3); }, {p3, "pos_embed", "shape"});
  // Metadata problems.
  const std::string p4 = rewrite("noconfig.safetensors", file.tensors, {{"model", "dit"}});
  expect_error([&] { load_dit(p4); }, {p4, "config"});
  const std::string p5 = rewrite("badjson.safetensors", file.tensors, {{"config", "{not json"}});
  expect_error([&] { load_dit(p5); }, {p5, "invalid config"});
  nlohmann::json bad = tiny_config().to_json();
  bad["patch"] = 3;
  const std::string p6 = rewrite("badconfig.safetensors", file.tensors, {{"config", bad.dump()}});
  expect_error([&] { load_dit(p6); }, {p6, "image_size"});
  const std::string p7 = rewrite("toy.safetensors", file.tensors, {{"config", md.at("config")}, {"model", "toy_mlp"}});
  expect_error([&] { load_dit(p7); }, {p7, "toy_mlp"});
  expect_error([&] { load_dit(dir.file("absent.safetensors")); }, {dir.file("absent.safetensors")});
  // A config that disagrees with the tensors fails on the first mismatching tensor.
  nlohmann::json wide = tiny_config().to_json();
  wide["width"] = 16;
  const std::string p8 = rewrite("wide.safetensors", file.tensors, {{"config", wide.dump()}});
  expect_error([&] { load_dit(p8); }, {p8, "shape"});
  // A model carrying adapters is refused by save_dit.
  apply_lora(*back, LoRAConfig{2, 2.0, 0.0, {"blocks.*.attn.qkv"}});
  expect_error([&] { save_dit(back, dir.file("lora.safetensors")); }, {"blocks.0.attn.qkv", "LoRA"});
}

TEST(DiT, LoRAByNamePatternKeepsOutput) {
  torch::manual_seed(5);
  DiT m(tiny_config());
  randomize(*m);
  const torch::Tensor x = torch::randn({2, 2, 8, 8}), sigma = torch::rand({2});
  const torch::Tensor y = torch::tensor({0, 3}, torch::kInt64);
  const torch::Tensor u = m->forward(x, sigma, y);
  const auto names = apply_lora(*m, LoRAConfig{2, 2.0, 0.0, {"blocks.*.attn.qkv", "blocks.*.adaLN_modulation.1",
                                                             "blocks.*.mlp.fc*", "t_embedder.linear_*", "proj_out"}});
  EXPECT_EQ(names.size(), 2u + 2u + 4u + 2u + 1u);
  EXPECT_TRUE(torch::allclose(m->forward(x, sigma, y), u, 1e-6, 1e-6));
  const auto sd = state_dict(*m);
  EXPECT_TRUE(sd.count("blocks.1.adaLN_modulation.1.lora_A.weight"));
  EXPECT_TRUE(sd.count("blocks.0.attn.qkv.lora_B.weight"));
}

TEST(DiT, DefaultParameterCountAndForwardTime) {
  DiT m{DiTConfig()};
  const int64_t n = count_parameters(*m);
  // Hand count: embeddings 4352 + 12544 + 131584 + 2816, 6 blocks x 1183488, norm_out 131584, proj_out 4112.
  EXPECT_EQ(n, 7387920);
  m->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({64, 1, 28, 28}), sigma = torch::rand({64});
  const torch::Tensor y = torch::randint(0, 11, {64}, torch::kInt64);
  m->forward(x, sigma, y);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  m->forward(x, sigma, y);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ DiT      ] default config: " << n << " parameters; forward at batch 64 on CPU (" << torch::get_num_threads()
            << " threads): " << ms << " ms (not asserted)" << std::endl;
}
