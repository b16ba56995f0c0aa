// Tests for arcflow/models/flux/flux.h and flux_vae.h: the forward passes against the independent
// Python reference (tests/flux_reference/make_fixtures.py, outputs in tests/data/flux), and the
// pieces (RoPE, timestep features, packing) against hand computation; the shape table, parameter
// count and FLOPs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <iostream>
#include <string>

#include "arcflow/io/safetensors_dir.h"
#include "arcflow/models/dit/dit.h"  // count_parameters
#include "arcflow/models/flux/flux.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_vae.h"
#include "flux_test_util.h"

using namespace arcflow;
using arcflow::test::flux_case;
using arcflow::test::flux_data;
using arcflow::test::max_abs_diff;

namespace {

constexpr double kTol = 1e-5;  // float32 against the float32 reference

FluxConfig tiny_config(bool guidance = true, int64_t in_channels = 16) {
  return FluxConfig::tiny(guidance, in_channels);
}

}  // namespace

// ------------------------------------------------------------------------ against the reference

TEST(FluxReference, DevTransformerMatchesPython) {
  torch::NoGradGuard no_grad;
  FluxTransformer m = load_flux_transformer(flux_data("dev/transformer"));
  EXPECT_TRUE(m->config.guidance_embeds);
  EXPECT_EQ(m->config.output_channels(), 16);  // out_channels absent from config.json: = in_channels
  // Packing and ids as the pipeline: exact.
  const torch::Tensor lat = flux_case("dev.latents");
  EXPECT_TRUE(torch::equal(pack_latents(lat), flux_case("dev.hidden_states")));
  EXPECT_TRUE(torch::equal(latent_image_ids(lat.size(2) / 2, lat.size(3) / 2), flux_case("dev.img_ids")));
  EXPECT_TRUE(torch::equal(text_ids(5), flux_case("dev.txt_ids")));

  torch::Tensor temb;
  const torch::Tensor feats =
      m->features(flux_case("dev.hidden_states"), flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"),
                  flux_case("dev.sigma"), flux_case("dev.guidance"), flux_case("dev.img_ids"), flux_case("dev.txt_ids"),
                  &temb);
  const torch::Tensor v =
      m->forward(flux_case("dev.hidden_states"), flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"),
                 flux_case("dev.sigma"), flux_case("dev.guidance"), flux_case("dev.img_ids"), flux_case("dev.txt_ids"));
  const double e_v = max_abs_diff(v, flux_case("dev.velocity"));
  const double e_f = max_abs_diff(feats, flux_case("dev.features"));
  const double e_t = max_abs_diff(temb, flux_case("dev.temb"));
  std::cout << "[fixture] dev transformer: velocity max abs error " << e_v << ", features " << e_f << ", temb " << e_t
            << "\n";
  EXPECT_LT(e_v, kTol);
  EXPECT_LT(e_f, kTol);
  EXPECT_LT(e_t, kTol);
  // Unpacking is a permutation: the unpacked velocities stay as close as the packed ones (not
  // bit-equal: the fixture's floats come from another machine's kernels; 1.1e-6 apart on an AVX-512 CPU).
  EXPECT_LT(max_abs_diff(unpack_latents(v, lat.size(2), lat.size(3)),
                         unpack_latents(flux_case("dev.velocity"), lat.size(2), lat.size(3))),
            kTol);
  EXPECT_TRUE(torch::equal(unpack_latents(flux_case("dev.velocity"), 8, 6), flux_case("dev.velocity_unpacked")));
}

TEST(FluxReference, SchnellTransformerWithoutGuidanceMatchesPython) {
  torch::NoGradGuard no_grad;
  FluxTransformer m = load_flux_transformer(flux_data("schnell/transformer"));
  EXPECT_FALSE(m->config.guidance_embeds);
  EXPECT_EQ(m->config.in_channels, 64);
  EXPECT_TRUE(torch::equal(pack_latents(flux_case("schnell.latents")), flux_case("schnell.hidden_states")));
  EXPECT_TRUE(torch::equal(latent_image_ids(3, 4), flux_case("schnell.img_ids")));
  const torch::Tensor v = m->forward(flux_case("schnell.hidden_states"), flux_case("schnell.encoder_hidden_states"),
                                     flux_case("schnell.pooled"), flux_case("schnell.sigma"), torch::Tensor(),
                                     flux_case("schnell.img_ids"), flux_case("schnell.txt_ids"));
  const double e = max_abs_diff(v, flux_case("schnell.velocity"));
  std::cout << "[fixture] schnell transformer: velocity max abs error " << e << "\n";
  EXPECT_LT(e, kTol);
  // Guidance on a model without guidance_embeds (and none on one with it) is refused.
  test::expect_error(
      [&] {
        m->forward(flux_case("schnell.hidden_states"), flux_case("schnell.encoder_hidden_states"),
                   flux_case("schnell.pooled"), flux_case("schnell.sigma"), torch::ones({1}),
                   flux_case("schnell.img_ids"), flux_case("schnell.txt_ids"));
      },
      {"no guidance embedding"});
}

TEST(VaeReference, DecoderMatchesPython) {
  torch::NoGradGuard no_grad;
  FluxVaeDecoder vae = load_flux_vae_decoder(flux_data("dev/vae"));  // the file also holds encoder.* tensors
  EXPECT_EQ(vae->config.downscale(), 4);
  EXPECT_FALSE(vae->config.use_post_quant_conv);
  EXPECT_FALSE(vae->post_quant_conv);
  const torch::Tensor img = vae->decode(flux_case("vae.latents"));
  EXPECT_EQ(img.sizes(), flux_case("vae.images").sizes());
  const double e = max_abs_diff(img, flux_case("vae.images"));
  std::cout << "[fixture] VAE decode: max abs error " << e << "\n";
  EXPECT_LT(e, kTol);
}

TEST(FluxReference, RopeTableMatchesPython) {
  const torch::Tensor ids = torch::cat({flux_case("dev.txt_ids"), flux_case("dev.img_ids")}, 0);
  const auto cs = flux_rope(ids, {4, 6, 6});
  EXPECT_LT(max_abs_diff(cs[0], flux_case("dev.rope_cos")), 1e-7);
  EXPECT_LT(max_abs_diff(cs[1], flux_case("dev.rope_sin")), 1e-7);
}

TEST(FluxReference, Bfloat16WeightsStayBfloat16) {
  torch::NoGradGuard no_grad;
  FluxTransformer m = load_flux_transformer(flux_data("dev/transformer"), torch::kBFloat16);
  const io::SafetensorsDir dir = io::SafetensorsDir::open(flux_data("dev/transformer"));
  size_t n = 0;
  for (const auto& p : m->named_parameters(true)) {
    ASSERT_EQ(p.value().scalar_type(), torch::kBFloat16) << p.key();
    EXPECT_FALSE(p.value().requires_grad());
    ASSERT_TRUE(torch::equal(p.value(), dir.read(p.key()))) << p.key();  // bit for bit the file's values
    ++n;
  }
  EXPECT_EQ(n, dir.tensors().size());
  // The forward runs in bfloat16. diffusers rounds sigma to the compute dtype before multiplying
  // by 1000 (in that dtype): bfloat16 turns sigma 0.3 into t = 300, not 300.78, which moves the
  // sinusoid's fast frequencies completely. Compare against the float32 model fed the timesteps
  // bfloat16 produces, so that the difference left is the bfloat16 arithmetic.
  const torch::Tensor v =
      m->forward(flux_case("dev.hidden_states"), flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"),
                 flux_case("dev.sigma"), flux_case("dev.guidance"), flux_case("dev.img_ids"), flux_case("dev.txt_ids"));
  EXPECT_EQ(v.scalar_type(), torch::kBFloat16);
  auto as_bf16 = [](const torch::Tensor& s) { return (s.to(torch::kBFloat16) * 1000).to(torch::kFloat32) / 1000; };
  FluxTransformer f32 = load_flux_transformer(flux_data("dev/transformer"));
  const torch::Tensor ref =
      f32->forward(flux_case("dev.hidden_states"), flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"),
                   as_bf16(flux_case("dev.sigma")), as_bf16(flux_case("dev.guidance")), flux_case("dev.img_ids"),
                   flux_case("dev.txt_ids"));
  const double e = max_abs_diff(v, ref);
  std::cout << "[fixture] dev transformer in bfloat16: velocity max abs error " << e
            << " against float32 with the same rounded timesteps (max |v| " << ref.abs().max().item<double>()
            << "); against the float32 reference " << max_abs_diff(v, flux_case("dev.velocity")) << "\n";
  EXPECT_LT(e, 0.1);
  // float16 too.
  FluxVaeDecoder vae = load_flux_vae_decoder(flux_data("dev/vae"), torch::kFloat16);
  for (const auto& p : vae->parameters()) ASSERT_EQ(p.scalar_type(), torch::kFloat16);
}

// ------------------------------------------------------------------------ pieces by hand

TEST(FluxPieces, RopeByHand) {
  // ids rows (a0, a1, a2); axes (2, 4, 2): angle(axis a, k) = pos_a * theta^(-2k / d_a).
  const torch::Tensor ids = torch::tensor({0.f, 0.f, 0.f, 1.f, 2.f, 3.f, 0.f, 5.f, 1.f}).reshape({3, 3});
  const std::vector<int64_t> axes = {2, 4, 2};
  const auto cs = flux_rope(ids, axes);
  ASSERT_EQ(cs[0].sizes(), (std::vector<int64_t>{3, 8}));
  const auto c = cs[0].accessor<float, 2>(), s = cs[1].accessor<float, 2>();
  for (int r = 0; r < 3; ++r) {
    int col = 0;
    for (int a = 0; a < 3; ++a)
      for (int k = 0; k < axes[a] / 2; ++k) {
        const double angle = ids[r][a].item<double>() * std::pow(10000.0, -2.0 * k / axes[a]);
        for (int rep = 0; rep < 2; ++rep, ++col) {  // each angle twice (interleaved pairs)
          EXPECT_NEAR(c[r][col], std::cos(angle), 1e-7) << r << "," << col;
          EXPECT_NEAR(s[r][col], std::sin(angle), 1e-7) << r << "," << col;
        }
      }
  }
  // Rotation of pairs: (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin).
  const torch::Tensor x = torch::randn({1, 3, 2, 8});
  const torch::Tensor y = flux_apply_rope(x, cs[0], cs[1]);
  for (int r = 0; r < 3; ++r)
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 8; j += 2) {
        const double x0 = x[0][r][h][j].item<double>(), x1 = x[0][r][h][j + 1].item<double>();
        const double cv = c[r][j], sv = s[r][j];
        EXPECT_NEAR(y[0][r][h][j].item<double>(), x0 * cv - x1 * sv, 1e-6);
        EXPECT_NEAR(y[0][r][h][j + 1].item<double>(), x1 * cv + x0 * sv, 1e-6);
      }
}

TEST(FluxPieces, TimestepFeaturesByHand) {
  // flip_sin_to_cos = true (cos first), downscale_freq_shift = 0 (f_i = 10000^(-i/128), the last
  // frequency is 10000^(-127/128), not 1e-4).
  const torch::Tensor t = torch::tensor({0.f, 1.f, 500.f, 3500.f});
  const torch::Tensor f = flux_timestep_features(t);
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{4, 256}));
  for (int b = 0; b < 4; ++b)
    for (int i = 0; i < 128; ++i) {
      const double arg = t[b].item<double>() * std::exp(-std::log(10000.0) * i / 128.0);
      const double tol = 5e-7 * std::max(1.0, arg) + 1e-6;  // float32 rounding of f_i and t f_i
      EXPECT_NEAR(f[b][i].item<double>(), std::cos(arg), tol) << b << "," << i;
      EXPECT_NEAR(f[b][128 + i].item<double>(), std::sin(arg), tol) << b << "," << i;
    }
  EXPECT_EQ(f[0][0].item<float>(), 1.f);  // cos(0) first
  EXPECT_EQ(f[0][128].item<float>(), 0.f);
}

TEST(FluxPieces, PackOrderingAndRoundTrip) {
  const int64_t B = 2, C = 3, H = 4, W = 6;
  const torch::Tensor lat = torch::arange(B * C * H * W, torch::kFloat32).reshape({B, C, H, W});
  const torch::Tensor tok = pack_latents(lat);
  ASSERT_EQ(tok.sizes(), (std::vector<int64_t>{B, (H / 2) * (W / 2), 4 * C}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t gy = 0; gy < H / 2; ++gy)
      for (int64_t gx = 0; gx < W / 2; ++gx)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t py = 0; py < 2; ++py)
            for (int64_t px = 0; px < 2; ++px)
              ASSERT_EQ(tok[b][gy * (W / 2) + gx][c * 4 + py * 2 + px].item<float>(),
                        lat[b][c][2 * gy + py][2 * gx + px].item<float>());
  EXPECT_TRUE(torch::equal(unpack_latents(tok, H, W), lat));
  const torch::Tensor ids = latent_image_ids(2, 3);
  EXPECT_TRUE(torch::equal(ids, torch::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f, 2.f, 0.f, 1.f, 0.f, 0.f, 1.f, 1.f, 0.f, 1.f, 2.f}).reshape({6, 3})));
  test::expect_error([] { pack_latents(torch::zeros({1, 4, 3, 4})); }, {"even"});
  test::expect_error([] { unpack_latents(torch::zeros({1, 6, 16}), 4, 4); }, {"unpack_latents"});
}

// ------------------------------------------------------------------------ layout, size, cost

TEST(FluxCost, ShapeTableIsTheModuleAndCountsParameters) {
  for (bool guidance : {true, false}) {
    const FluxConfig cfg = tiny_config(guidance);
    FluxTransformer m(cfg);
    const auto shapes = flux_state_shapes(cfg);
    size_t n = 0;
    for (const auto& p : m->named_parameters(true)) {
      ASSERT_TRUE(shapes.count(p.key())) << p.key();
      EXPECT_EQ(shapes.at(p.key()), p.value().sizes().vec()) << p.key();
      ++n;
    }
    EXPECT_EQ(n, shapes.size());
    EXPECT_EQ(flux_parameter_count(cfg), static_cast<double>(count_parameters(*m)));
  }
  // FLUX.1-dev: 11.9 B parameters (diffusers reports 11,901,408,320 for its transformer).
  const double dev = flux_parameter_count(FluxConfig::flux1_dev());
  std::cout << "[count] FLUX.1-dev transformer parameters: " << static_cast<int64_t>(dev) << "\n";
  EXPECT_EQ(static_cast<int64_t>(dev), 11901408320LL);
  // The VAE decoder's table is its module too.
  FluxVaeConfig v = FluxVaeConfig::flux1();
  v.block_out_channels = {8, 16, 16};
  v.norm_num_groups = 4;
  v.use_post_quant_conv = true;
  FluxVaeDecoder vae(v);
  const auto vs = flux_vae_state_shapes(v);
  size_t nv = 0;
  for (const auto& p : vae->named_parameters(true)) {
    ASSERT_TRUE(vs.count(p.key())) << p.key();
    EXPECT_EQ(vs.at(p.key()), p.value().sizes().vec()) << p.key();
    ++nv;
  }
  EXPECT_EQ(nv, vs.size());
}

TEST(FluxCost, ForwardFlopsCountEveryMatrixProduct) {
  // Independent count: every Linear weight (out, in) costs 2 * in * out per row it is applied to;
  // rows by module: image tokens, text tokens, all tokens, or one per sample; plus q k^T and
  // weights v (2 * S * S * D each) per block.
  const FluxConfig cfg = tiny_config(true);
  FluxTransformer m(cfg);
  const int64_t B = 3, N = 12, L = 5, S = N + L, D = cfg.inner_dim();
  double expected = 0;
  for (const auto& p : m->named_parameters(true)) {
    const std::string& k = p.key();
    if (p.value().dim() != 2) continue;
    double rows = 1;  // embedders and modulations: once per sample
    if (k.rfind("x_embedder", 0) == 0 || k.rfind("proj_out", 0) == 0) rows = N;
    if (k.rfind("context_embedder", 0) == 0) rows = L;
    if (k.rfind("single_transformer_blocks", 0) == 0 && k.find(".norm.") == std::string::npos) rows = S;
    if (k.rfind("transformer_blocks", 0) == 0 && k.find("norm1") == std::string::npos)
      rows = (k.find("add_") != std::string::npos || k.find("ff_context") != std::string::npos) ? L : N;
    expected += 2.0 * static_cast<double>(p.value().numel()) * rows;
  }
  expected += static_cast<double>(cfg.num_layers + cfg.num_single_layers) * 2 * (2.0 * S * S * D);
  expected *= B;
  EXPECT_DOUBLE_EQ(flux_forward_flops(cfg, B, N, L), expected);
  // FLUX.1-dev at 1024x1024 (4096 image tokens, 512 text tokens): 74.4 TFLOP per forward.
  const double dev = flux_forward_flops(FluxConfig::flux1_dev(), 1, 4096, 512);
  std::cout << "[count] FLUX.1-dev forward at 1024px, 512 text tokens: " << dev / 1e12 << " TFLOP\n";
  EXPECT_NEAR(dev / 1e12, 74.38, 0.01);
}

TEST(FluxConfigJson, DefaultsUnknownKeysAndConsistency) {
  const FluxConfig dev = FluxConfig::from_json(
      {{"_class_name", "FluxTransformer2DModel"}, {"_diffusers_version", "0.30.0"}, {"guidance_embeds", true}});
  EXPECT_EQ(dev.to_json(), FluxConfig::flux1_dev().to_json());
  EXPECT_EQ(dev.output_channels(), 64);
  EXPECT_EQ(dev.axes_dims_rope, (std::vector<int64_t>{16, 56, 56}));
  EXPECT_EQ(dev.inner_dim(), 3072);
  EXPECT_EQ(FluxConfig::from_json({{"out_channels", 32}}).proj_out_dim(), 32);
  EXPECT_EQ(FluxConfig::from_json(FluxConfig::flux1_dev().to_json()).to_json(), FluxConfig::flux1_dev().to_json());
  test::expect_error([] { FluxConfig::from_json({{"_class_name", "SD3Transformer2DModel"}}); },
                     {"_class_name", "SD3Transformer2DModel"});
  test::expect_error([] { FluxConfig::from_json({{"num_layerz", 3}}); }, {"unknown key", "num_layerz"});
  test::expect_error([] { FluxConfig::from_json({{"axes_dims_rope", {16, 56, 48}}}); },
                     {"axes_dims_rope", "attention_head_dim"});
  test::expect_error([] { FluxConfig::from_json({{"num_attention_heads", "24"}}); }, {"num_attention_heads"});
  test::expect_error([] { FluxConfig::from_json({{"guidance_embeds", 1}}); }, {"guidance_embeds"});
}

TEST(FluxReference, ArcFlowLoraRecipeTargetsMatchAndStartAsTheTeacher) {
  // The reference recipe's LoRA targets (ARCFLOW.md section 7) name our modules; fresh adapters
  // (B = 0) leave the output unchanged.
  torch::NoGradGuard no_grad;
  FluxTransformer m = load_flux_transformer(flux_data("dev/transformer"));
  LoRAConfig lc;
  lc.rank = 4;
  lc.alpha = 4;
  lc.dropout = 0.0;
  lc.targets = {"single_transformer_blocks.*.proj_mlp",        "single_transformer_blocks.*.proj_out",
                "transformer_blocks.*.ff.net.0.proj",          "transformer_blocks.*.ff.net.2",
                "transformer_blocks.*.ff_context.net.0.proj",  "transformer_blocks.*.ff_context.net.2",
                "time_text_embed.timestep_embedder.linear_1",  "time_text_embed.timestep_embedder.linear_2"};
  const std::vector<std::string> adapted = apply_lora(*m, lc);
  EXPECT_EQ(adapted.size(), 2u * 2 + 2u * 4 + 2u);  // 2 single x 2, 2 double x 4, timestep MLP x 2
  m->eval();
  const torch::Tensor v =
      m->forward(flux_case("dev.hidden_states"), flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"),
                 flux_case("dev.sigma"), flux_case("dev.guidance"), flux_case("dev.img_ids"), flux_case("dev.txt_ids"));
  EXPECT_LT(max_abs_diff(v, flux_case("dev.velocity")), kTol);
  EXPECT_TRUE(m->named_parameters().contains("single_transformer_blocks.1.proj_mlp.lora_A.weight"));
  EXPECT_TRUE(m->named_parameters().contains("transformer_blocks.0.ff_context.net.2.lora_B.weight"));
}
