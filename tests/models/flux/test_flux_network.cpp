// FLUX through the Network seam: the registry loads a diffusers model folder, the network's
// velocity on latents matches the Python reference (tests/flux_reference), the head layout reads
// the output layer as the network's own unpacking does, conditions are checked, teacher sampling
// equals an Euler loop written out on the raw transformer, and uninitialised construction draws
// no random numbers.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "arcflow/core/schedule.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/flux/flux_loader.h"
#include "arcflow/models/flux/flux_network.h"
#include "arcflow/models/param_init.h"
#include "arcflow/models/pipeline.h"
#include "arcflow/models/registry.h"
#include "arcflow/sampling/generate.h"
#include "flux_test_util.h"

namespace arcflow {
namespace {

using test::expect_error;
using test::flux_case;
using test::flux_data;
using test::max_abs_diff;

Condition dev_condition() {
  Condition c;
  c.set("prompt_embeds", flux_case("dev.encoder_hidden_states"));
  c.set("pooled_prompt_embeds", flux_case("dev.pooled"));
  c.set("guidance", flux_case("dev.guidance"));
  return c;
}

std::shared_ptr<FluxNetwork> dev_network() {
  NetworkPtr net = load_network(flux_data("dev"));
  auto flux = std::dynamic_pointer_cast<FluxNetwork>(net);
  if (!flux) throw std::runtime_error("not a FluxNetwork");
  return flux;
}

TEST(FluxNetwork, RegistryLoadsTheFolderAndVelocityMatchesPython) {
  torch::NoGradGuard no_grad;
  auto net = dev_network();
  EXPECT_EQ(net->kind(), "flux");
  const torch::Tensor lat = flux_case("dev.latents");  // (2, 4, 8, 6)
  net->set_latent_size(lat.size(2), lat.size(3));
  EXPECT_EQ(net->sample_shape(), (std::vector<int64_t>{4, 8, 6}));
  const torch::Tensor v = net->velocity(lat, flux_case("dev.sigma"), dev_condition());
  const double err = max_abs_diff(v, flux_case("dev.velocity_unpacked"));
  std::cout << "[fixture] FluxNetwork velocity on latents: max abs error " << err << "\n";
  EXPECT_LT(err, 1e-5);
  // The transformer folder itself loads too.
  NetworkPtr again = load_network(flux_data("dev/transformer"));
  EXPECT_LT(max_abs_diff(again->velocity(lat, flux_case("dev.sigma"), dev_condition()), v), 1e-7);
}

TEST(FluxNetwork, HeadLayoutReadsTheOutputLayerAsTheNetworkUnpacks) {
  torch::NoGradGuard no_grad;
  auto net = dev_network();
  const torch::Tensor lat = flux_case("dev.latents");
  net->set_latent_size(lat.size(2), lat.size(3));
  const HeadInput in = net->head_input(lat, flux_case("dev.sigma"), dev_condition());
  EXPECT_EQ(in.embedding.sizes(), (std::vector<int64_t>{2, 32}));
  const HeadLayout l = net->head_layout();
  EXPECT_EQ(l.pixels, 4);
  EXPECT_EQ(l.channels, 4);
  // K = 1, per = channels: the output layer's values through to_sample are the velocity.
  const torch::Tensor out = net->output_layer()(in.tokens);
  const torch::Tensor as_sample = l.to_sample(out, 1, l.channels).squeeze(1);
  EXPECT_LT(max_abs_diff(as_sample, flux_case("dev.velocity_unpacked")), 1e-5);
  // K = 3 copies with a different offset each land in their own component, pixel for pixel.
  const torch::Tensor three = torch::cat({out, out + 1, out + 2}, -1);
  const torch::Tensor k3 = l.to_sample(three, 3, l.channels);
  for (int k = 0; k < 3; ++k) EXPECT_LT(max_abs_diff(k3.select(1, k) - k, as_sample), 1e-5);
  // per = 1 (log-weights): value p of token n is pixel p of that token's 2x2 patch, (py, px) row-major.
  const torch::Tensor ramp = torch::arange(12 * 4, torch::kFloat32).reshape({1, 12, 4});
  const torch::Tensor w = l.to_sample(ramp, 1, 1).reshape({8, 6});
  // token (r, c) of the 4 x 3 token grid covers latent rows 2r..2r+1, cols 2c..2c+1.
  EXPECT_EQ(w[0][0].item<float>(), 0.0f);
  EXPECT_EQ(w[0][1].item<float>(), 1.0f);
  EXPECT_EQ(w[1][0].item<float>(), 2.0f);
  EXPECT_EQ(w[1][1].item<float>(), 3.0f);
  EXPECT_EQ(w[0][2].item<float>(), 4.0f);   // token (0, 1)
  EXPECT_EQ(w[2][0].item<float>(), 12.0f);  // token (1, 0)
}

TEST(FluxNetwork, ConditionErrorsNameTheKey) {
  auto net = dev_network();
  net->set_latent_size(8, 6);
  Condition c = dev_condition();
  expect_error([&] { net->check_condition(c, 3); }, {"prompt_embeds", "(3, L, 32)"});
  Condition no_g;
  no_g.set("prompt_embeds", flux_case("dev.encoder_hidden_states"));
  no_g.set("pooled_prompt_embeds", flux_case("dev.pooled"));
  expect_error([&] { net->check_condition(no_g, 2); }, {"guidance"});
  Condition wide = dev_condition();
  wide.set("pooled_prompt_embeds", torch::zeros({2, 17}));
  expect_error([&] { net->check_condition(wide, 2); }, {"pooled_prompt_embeds", "(2, 16)"});
  Condition extra = dev_condition();
  extra.set("labels", torch::zeros({2}, torch::kLong));
  expect_error([&] { net->check_condition(extra, 2); }, {"unknown condition key 'labels'"});
  expect_error([&] { net->set_latent_size(7, 6); }, {"even"});
  EXPECT_FALSE(net->has_null_condition());
  expect_error([&] { GuidedTeacher(net, 4.0); }, {"flux", "no null condition"});

  NetworkPtr schnell = load_network(flux_data("schnell"));
  Condition sc;
  sc.set("prompt_embeds", flux_case("schnell.encoder_hidden_states"));
  sc.set("pooled_prompt_embeds", flux_case("schnell.pooled"));
  schnell->check_condition(sc, 1);
  sc.set("guidance", torch::full({1}, 3.5));
  expect_error([&] { schnell->check_condition(sc, 1); }, {"no guidance embedding"});
}

TEST(FluxNetwork, CopyIsIndependentAndEqual) {
  torch::NoGradGuard no_grad;
  auto net = dev_network();
  net->set_latent_size(8, 6);
  NetworkPtr copy = net->copy_network();
  const torch::Tensor lat = flux_case("dev.latents");
  EXPECT_TRUE(torch::equal(copy->velocity(lat, flux_case("dev.sigma"), dev_condition()),
                           net->velocity(lat, flux_case("dev.sigma"), dev_condition())));
  copy->output_layer()->bias.add_(1.0);
  EXPECT_FALSE(torch::equal(copy->output_layer()->bias, net->output_layer()->bias));
}

TEST(FluxNetwork, TeacherSamplingIsEulerOnTheRawTransformer) {
  torch::NoGradGuard no_grad;
  auto net = dev_network();
  net->set_latent_size(8, 6);
  const torch::Tensor noise = make_noise(2, {4, 8, 6}, 7);
  TeacherSampling s;
  s.steps = 3;
  s.shift = 3.2;
  s.cfg_scale = 1.0;
  const torch::Tensor got = sample_teacher(net, noise, dev_condition(), s);
  // By hand: pack once, Euler over the shifted schedule with the transformer's own forward.
  FluxTransformer t = net->transformer;
  torch::Tensor x = pack_latents(noise);
  const std::vector<double> sig = sigmas(3, 3.2, 1.0);
  ASSERT_EQ(sig.size(), 4u);
  for (size_t i = 0; i + 1 < sig.size(); ++i) {
    const torch::Tensor sg = torch::full({2}, sig[i]);
    const torch::Tensor v = t->forward(x, flux_case("dev.encoder_hidden_states"), flux_case("dev.pooled"), sg,
                                       flux_case("dev.guidance"), latent_image_ids(4, 3), text_ids(5));
    x = x + (sig[i + 1] - sig[i]) * v;
  }
  EXPECT_LT(max_abs_diff(got, unpack_latents(x, 8, 6)), 1e-5);
}

TEST(FluxNetwork, UninitialisedConstructionDrawsNoRandomNumbers) {
  FluxConfig cfg = FluxConfig::from_json(nlohmann::json::parse(io::read_file(flux_data("dev/transformer/config.json"))));
  torch::manual_seed(3);
  const torch::Tensor expected = torch::randn({4});
  torch::manual_seed(3);
  {
    ParamInitGuard guard(torch::kCPU);
    FluxTransformer m(cfg);
    EXPECT_TRUE(ParamInitGuard::active());
  }
  EXPECT_FALSE(ParamInitGuard::active());
  EXPECT_TRUE(torch::equal(torch::randn({4}), expected));
  // Without the guard, construction draws (torch::nn::Linear's default initialisation).
  torch::manual_seed(3);
  FluxTransformer drawn(cfg);
  EXPECT_FALSE(torch::equal(torch::randn({4}), expected));
}

TEST(FluxNetwork, RandomWeightsHaveTheAskedStatistics) {
  FluxConfig cfg = FluxConfig::from_json(nlohmann::json::parse(io::read_file(flux_data("dev/transformer/config.json"))));
  NetworkPtr net = random_flux_network(cfg, torch::kCPU, torch::kBFloat16, 1, 0.02);
  auto flux = std::dynamic_pointer_cast<FluxNetwork>(net);
  ASSERT_TRUE(flux);
  EXPECT_EQ(flux->transformer->dtype(), torch::kBFloat16);
  const torch::Tensor w = flux->transformer->context_embedder->weight.to(torch::kFloat32);
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.003);
  EXPECT_EQ(flux->transformer->context_embedder->bias.abs().max().item<float>(), 0.0f);
  // A BF16 network samples with a float32 state and returns float32.
  net->module().eval();
  TeacherSampling s;
  s.steps = 1;
  s.cfg_scale = 1.0;
  flux->set_latent_size(4, 4);
  Condition c;
  c.set("prompt_embeds", torch::randn({1, 3, 32}));
  c.set("pooled_prompt_embeds", torch::randn({1, 16}));
  c.set("guidance", torch::full({1}, 3.5));
  const torch::Tensor out = sample_teacher(net, make_noise(1, {4, 4, 4}, 0), c, s);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

TEST(FluxNetwork, FolderErrorsNameTheFile) {
  const std::string dir = testing::TempDir() + "/flux_bad_class";
  io::make_output_dir(dir);
  io::write_file_atomic(dir + "/config.json", R"({"_class_name": "QwenImageTransformer2DModel"})");
  expect_error([&] { load_network(dir); }, {dir + "/config.json", "QwenImageTransformer2DModel", "FluxTransformer2DModel"});
  const std::string empty = testing::TempDir() + "/flux_empty_dir";
  io::make_output_dir(empty);
  expect_error([&] { load_network(empty); }, {empty, "not a model folder"});
}

TEST(FluxNetwork, LoadTeacherSetsAFolderUpAtItsSizeWithItsPromptPool) {
  FolderTeacherOptions o;
  o.prompts = flux_data("prompts.safetensors");
  o.height = 32;  // the fixture's VAE downscales by 4: latent 8 x 6
  o.width = 24;
  o.guidance = 2.5;
  NetworkPtr net = load_teacher(flux_data("dev"), o);
  EXPECT_EQ(net->sample_shape(), (std::vector<int64_t>{4, 8, 6}));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
  const Condition c = net->random_condition(3, gen);
  EXPECT_TRUE(torch::allclose(c.at("guidance").to(torch::kFloat64), torch::full({3}, 2.5, torch::kFloat64)));
  const FluxPromptEmbeddings pool = load_flux_prompt_embeddings(o.prompts, read_flux_config(
      flux_data("dev/transformer/config.json")));
  EXPECT_EQ(c.at("prompt_embeds").size(1), pool.prompt_embeds.size(1));
  // Each drawn prompt is a row of the file.
  for (int64_t i = 0; i < 3; ++i) {
    bool found = false;
    for (int64_t r = 0; r < pool.size(); ++r)
      found = found || torch::equal(c.at("prompt_embeds")[i], pool.prompt_embeds[r].to(c.at("prompt_embeds").dtype()));
    EXPECT_TRUE(found) << "sample " << i;
  }
  o.height = 30;
  expect_error([&] { load_teacher(flux_data("dev"), o); }, {"--height and --width", "multiples of 8", "30 x 24"});
  o.height = 32;
  o.memory_flags = "--size-flag";
  o.batch = int64_t{1} << 40;
  expect_error([&] { load_teacher(flux_data("dev"), o); }, {"--size-flag", "needs about"});
}

TEST(FluxPipeline, AFolderIsItsTeacherConditionsDecoderAndScheduler) {
  PipelineOptions o;
  o.prompts = flux_data("prompts.safetensors");
  o.height = 32;  // latent 8 x 6 (downscale 4), 4 x 3 = 12 packed tokens
  o.width = 24;
  const PipelinePtr p = load_pipeline(flux_data("dev"), o);
  EXPECT_EQ(p->network->sample_shape(), (std::vector<int64_t>{4, 8, 6}));
  EXPECT_EQ(p->network->image_tokens(), 12);
  EXPECT_FALSE(p->shift_rule.dynamic);  // the fixture has no scheduler folder: a fixed shift 1
  EXPECT_EQ(p->shift_rule.at(12), 1.0);
  // The conditions are the file's rows, with the distilled guidance; built here from the file itself.
  const FluxPromptEmbeddings file = load_flux_prompt_embeddings(o.prompts, read_flux_config(
      flux_data("dev/transformer/config.json")));
  ASSERT_EQ(p->num_prompts(), file.size());
  const Condition c = p->conditions({2, 0, 2}, 2.5);
  for (int64_t i = 0; i < 3; ++i) {
    const int64_t row = i == 1 ? 0 : 2;
    EXPECT_TRUE(torch::equal(c.at("prompt_embeds")[i], file.prompt_embeds[row].to(c.at("prompt_embeds").dtype())));
    EXPECT_TRUE(torch::equal(c.at("pooled_prompt_embeds")[i],
                             file.pooled_prompt_embeds[row].to(c.at("pooled_prompt_embeds").dtype())));
  }
  EXPECT_TRUE(torch::allclose(c.at("guidance").to(torch::kFloat64), torch::full({3}, 2.5, torch::kFloat64)));
  if (!file.prompts.empty()) {
    EXPECT_EQ(p->prompt_text(1), file.prompts[1]);
  }
  EXPECT_EQ(p->prompt_text(99), "");
  // The decoder is the folder's VAE.
  ASSERT_TRUE(p->has_decoder());
  torch::manual_seed(3);
  const torch::Tensor latents = torch::randn({2, 4, 8, 6});
  FluxVaeDecoder vae = load_flux_vae_decoder(flux_data("dev/vae"), torch::kFloat32, torch::kCPU);
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(p->decode(latents), vae->decode(latents)));
  // Without the decoder, or for a folder without a VAE or a guidance embedding: refused by name.
  o.decoder = false;
  EXPECT_FALSE(load_pipeline(flux_data("dev"), o)->has_decoder());
  EXPECT_THROW(load_pipeline(flux_data("dev"), o)->decode(latents), std::logic_error);
  o.decoder = true;
  o.decoder_note = "say so";
  expect_error([&] { load_pipeline(flux_data("schnell"), o); }, {"schnell/vae/config.json", "say so"});
  o.decoder = false;
  o.guidance_given = true;
  expect_error([&] { load_pipeline(flux_data("schnell"), o); }, {"--guidance", "no guidance embedding"});
}

TEST(FluxNetwork, GuidanceKindAndBlockCheckpointingAreOnTheSeam) {
  auto dev = dev_network();
  EXPECT_EQ(dev->guidance_kind(), GuidanceKind::distilled);
  EXPECT_EQ(load_network(flux_data("schnell"))->guidance_kind(), GuidanceKind::none);
  dev->set_class_prompts(make_class_prompts(dev->transformer->config, {"a", "b"}, 3, 0));
  EXPECT_EQ(dev->guidance_kind(), GuidanceKind::classifier_free);
  EXPECT_TRUE(dev->set_block_checkpointing(true));
  EXPECT_TRUE(dev->transformer->checkpoint_blocks);
  EXPECT_TRUE(dev->set_block_checkpointing(false));
  EXPECT_FALSE(dev->transformer->checkpoint_blocks);
  // The DiT: classifier-free (it has a null class), no per-block checkpointing.
  DiTConfig small;
  small.width = 32;
  small.depth = 1;
  NetworkPtr dit = create_network("dit", small.to_json());
  EXPECT_EQ(dit->guidance_kind(), GuidanceKind::classifier_free);
  EXPECT_FALSE(dit->set_block_checkpointing(true));
  EXPECT_TRUE(dit->set_block_checkpointing(false));
  EXPECT_NE(find_model("flux").save_reference_adapter, nullptr);
  EXPECT_EQ(find_model("dit").save_reference_adapter, nullptr);
}

}  // namespace
}  // namespace arcflow
