// Tests for arcflow/io/safetensors_dir.h and arcflow/models/flux/flux_loader.h: the diffusers folder
// layout (single file, shards + index), each bad-input case with the file and the key in its
// one-line message, checks before allocation, and the prompt-embeddings file.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/io/safetensors_dir.h"
#include "arcflow/models/flux/flux_loader.h"
#include "flux_test_util.h"
#include "temp_dir.h"

using namespace arcflow;
using arcflow::test::expect_error;
using arcflow::test::flux_data;
using arcflow::test::TempDir;

namespace {

const char* kIndex = "diffusion_pytorch_model.safetensors.index.json";
const char* kSingle = "diffusion_pytorch_model.safetensors";

// The dev transformer's tensors and config (from the fixture).
io::TensorMap dev_tensors() {
  io::TensorMap all;
  const io::SafetensorsDir d = io::SafetensorsDir::open(flux_data("dev/transformer"));
  for (const auto& [name, t] : d.tensors()) all[name] = d.read(name);
  return all;
}
nlohmann::json dev_config() { return nlohmann::json::parse(io::read_file(flux_data("dev/transformer/config.json"))); }

// Writes `tensors` as a diffusers folder: config.json, and either one file or two shards + index.
void write_folder(const std::string& dir, const nlohmann::json& config, const io::TensorMap& tensors, bool sharded) {
  io::write_file_atomic(dir + "/config.json", config.dump(2));
  if (!sharded) {
    io::save_safetensors(dir + "/" + kSingle, tensors);
    return;
  }
  io::TensorMap a, b;
  nlohmann::json map = nlohmann::json::object();
  size_t i = 0;
  for (const auto& [name, t] : tensors) {
    const bool first = i++ < tensors.size() / 2;
    (first ? a : b)[name] = t;
    map[name] = first ? "part-1.safetensors" : "part-2.safetensors";
  }
  io::save_safetensors(dir + "/part-1.safetensors", a);
  io::save_safetensors(dir + "/part-2.safetensors", b);
  io::write_file_atomic(dir + "/" + kIndex, nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump());
}

}  // namespace

// ------------------------------------------------------------------------ io/safetensors_dir

TEST(FluxSafetensorsDir, ShardedAndSingleFileAgree) {
  const io::SafetensorsDir sharded = io::SafetensorsDir::open(flux_data("dev/transformer"));
  EXPECT_TRUE(sharded.sharded());
  EXPECT_NE(sharded.source().find(kIndex), std::string::npos);
  TempDir tmp;
  io::TensorMap all = dev_tensors();
  write_folder(tmp.path(), dev_config(), all, /*sharded=*/false);
  const io::SafetensorsDir single = io::SafetensorsDir::open(tmp.path());
  EXPECT_FALSE(single.sharded());
  ASSERT_EQ(single.tensors().size(), sharded.tensors().size());
  for (const auto& [name, t] : sharded.tensors()) {
    EXPECT_EQ(t.dtype, torch::kBFloat16);
    EXPECT_TRUE(torch::equal(single.read(name), sharded.read(name))) << name;
  }
  // read_into: straight into a matching CPU tensor, converted into another dtype.
  const std::string key = "proj_out.weight";
  torch::Tensor same = torch::empty(sharded.at(key).shape, torch::kBFloat16);
  sharded.read_into(key, same);
  EXPECT_TRUE(torch::equal(same, all[key]));
  torch::Tensor f32 = torch::empty(sharded.at(key).shape, torch::kFloat32);
  sharded.read_into(key, f32);
  EXPECT_TRUE(torch::equal(f32, all[key].to(torch::kFloat32)));
  torch::Tensor wrong = torch::empty({1, 2});
  expect_error([&] { sharded.read_into(key, wrong); }, {"-of-00002.safetensors", key, "[1, 2]"});
  // The header alone: no tensor data read.
  const io::SafetensorsHeader h = io::read_safetensors_header(tmp.file(kSingle));
  EXPECT_EQ(h.tensors.size(), all.size());
  EXPECT_EQ(h.tensors.at(key).shape, all[key].sizes().vec());
}

TEST(FluxSafetensorsDir, LayoutErrorsNameTheFileAndTheTensor) {
  const io::TensorMap all = dev_tensors();
  {  // neither file
    TempDir tmp;
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {tmp.path(), kSingle, kIndex});
  }
  {  // index naming a shard that does not exist
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, true);
    std::remove(tmp.file("part-2.safetensors").c_str());
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {kIndex, "part-2.safetensors", "does not exist", "weight_map['"});
  }
  {  // index listing a tensor its shard does not hold
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, true);
    auto j = nlohmann::json::parse(io::read_file(tmp.file(kIndex)));
    j["weight_map"]["ghost.weight"] = "part-1.safetensors";
    io::write_file_atomic(tmp.file(kIndex), j.dump());
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {"part-1.safetensors", "ghost.weight", kIndex});
  }
  {  // a shard holding a tensor the index does not list
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, true);
    auto j = nlohmann::json::parse(io::read_file(tmp.file(kIndex)));
    j["weight_map"].erase("proj_out.bias");
    io::write_file_atomic(tmp.file(kIndex), j.dump());
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {"part-", "proj_out.bias", "not listed", kIndex});
  }
  {  // index without weight_map, index not JSON, shard path escaping the folder
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, true);
    io::write_file_atomic(tmp.file(kIndex), "{\"metadata\": {}}");
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {kIndex, "weight_map"});
    io::write_file_atomic(tmp.file(kIndex), "{\"weight_map\": ");
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {kIndex, "invalid JSON"});
    io::write_file_atomic(tmp.file(kIndex), "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {kIndex, "'a'", "../x.safetensors"});
  }
  {  // a truncated shard: the header check names it
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, true);
    const std::string bytes = io::read_file(tmp.file("part-1.safetensors"));
    io::write_file_atomic(tmp.file("part-1.safetensors"), bytes.substr(0, bytes.size() - 10));
    expect_error([&] { io::SafetensorsDir::open(tmp.path()); }, {"part-1.safetensors", "out of range"});
  }
}

// ------------------------------------------------------------------------ model folders

TEST(FluxLoading, ModelErrorsNameTheFileAndTheKey) {
  const io::TensorMap all = dev_tensors();
  auto with = [&](auto edit) {
    io::TensorMap t = all;
    edit(t);
    return t;
  };
  {  // missing tensor (absent from the shards and the index)
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), with([](io::TensorMap& t) { t.erase("transformer_blocks.1.attn.norm_added_k.weight"); }), true);
    expect_error([&] { load_flux_transformer(tmp.path()); }, {kIndex, "missing tensor", "transformer_blocks.1.attn.norm_added_k.weight"});
  }
  {  // extra tensor
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), with([](io::TensorMap& t) { t["transformer_blocks.2.norm1.linear.weight"] = torch::zeros({2}); }), false);
    expect_error([&] { load_flux_transformer(tmp.path()); }, {kSingle, "unexpected tensor", "transformer_blocks.2.norm1.linear.weight"});
  }
  {  // wrong shape
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), with([](io::TensorMap& t) { t["proj_out.weight"] = torch::zeros({16, 31}); }), true);
    expect_error([&] { load_flux_transformer(tmp.path()); }, {"part-", "proj_out.weight", "[16, 31]", "[16, 32]"});
  }
  {  // wrong dtype
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), with([](io::TensorMap& t) { t["x_embedder.bias"] = torch::zeros({32}, torch::kInt64); }), false);
    expect_error([&] { load_flux_transformer(tmp.path()); }, {kSingle, "x_embedder.bias", "I64"});
  }
  {  // guidance embedder in the file, but config.json says no guidance: extra tensors
    TempDir tmp;
    nlohmann::json c = dev_config();
    c["guidance_embeds"] = false;
    write_folder(tmp.path(), c, all, true);
    expect_error([&] { load_flux_transformer(tmp.path()); }, {"unexpected tensor", "time_text_embed.guidance_embedder"});
  }
  {  // config.json: unknown key, inconsistent sizes, another class, not JSON, absent
    TempDir tmp;
    write_folder(tmp.path(), dev_config(), all, false);
    const std::string cfg = tmp.file("config.json");
    nlohmann::json c = dev_config();
    c["qk_norm"] = "rms_norm";
    io::write_file_atomic(cfg, c.dump());
    expect_error([&] { load_flux_transformer(tmp.path()); }, {cfg, "qk_norm"});
    c = dev_config();
    c["axes_dims_rope"] = {4, 6, 8};
    io::write_file_atomic(cfg, c.dump());
    expect_error([&] { load_flux_transformer(tmp.path()); }, {cfg, "axes_dims_rope"});
    c = dev_config();
    c["_class_name"] = "AutoencoderKL";
    io::write_file_atomic(cfg, c.dump());
    expect_error([&] { load_flux_transformer(tmp.path()); }, {cfg, "_class_name"});
    io::write_file_atomic(cfg, "{");
    expect_error([&] { load_flux_transformer(tmp.path()); }, {cfg, "invalid JSON"});
    std::remove(cfg.c_str());
    expect_error([&] { load_flux_transformer(tmp.path()); }, {cfg});
  }
  // A bad compute dtype.
  expect_error([&] { load_flux_transformer(flux_data("dev/transformer"), torch::kInt32); }, {"compute dtype"});
}

TEST(FluxLoading, RefusesBeforeAllocatingWhatTheConfigClaims) {
  // config.json claims FLUX.1-dev (11.9 B parameters, 48 GB in float32) over the tiny file: the
  // header check must refuse at once, without building the model.
  TempDir tmp;
  write_folder(tmp.path(), FluxConfig::flux1_dev().to_json(), dev_tensors(), true);
  const auto t0 = std::chrono::steady_clock::now();
  expect_error([&] { load_flux_transformer(tmp.path()); }, {"part-1.safetensors", "context_embedder.bias", "[32]", "[3072]"});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 5.0);
}

TEST(VaeLoading, EncoderKeysIgnoredOtherErrorsNamed) {
  const io::SafetensorsDir d = io::SafetensorsDir::open(flux_data("dev/vae"));
  EXPECT_TRUE(d.contains("encoder.conv_in.weight"));  // the fixture holds some encoder tensors
  io::TensorMap all;
  for (const auto& [name, t] : d.tensors()) all[name] = d.read(name);
  const nlohmann::json cfg = nlohmann::json::parse(io::read_file(flux_data("dev/vae/config.json")));
  {
    TempDir tmp;
    io::TensorMap t = all;
    t.erase("decoder.up_blocks.2.resnets.0.conv_shortcut.bias");
    write_folder(tmp.path(), cfg, t, false);
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {kSingle, "decoder.up_blocks.2.resnets.0.conv_shortcut.bias"});
  }
  {
    TempDir tmp;
    io::TensorMap t = all;
    t["decoder.up_blocks.3.resnets.0.conv1.weight"] = torch::zeros({1});
    write_folder(tmp.path(), cfg, t, true);
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {"part-", "unexpected tensor", "decoder.up_blocks.3"});
  }
  {  // post_quant_conv promised by the config but absent
    TempDir tmp;
    nlohmann::json c = cfg;
    c["use_post_quant_conv"] = true;
    write_folder(tmp.path(), c, all, false);
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {kSingle, "missing tensor", "post_quant_conv.bias"});
  }
  {  // config errors
    TempDir tmp;
    write_folder(tmp.path(), cfg, all, false);
    nlohmann::json c = cfg;
    c["norm_num_groups"] = 3;
    io::write_file_atomic(tmp.file("config.json"), c.dump());
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {tmp.file("config.json"), "norm_num_groups"});
    c = cfg;
    c["up_block_types"] = {"UpDecoderBlock2D"};
    io::write_file_atomic(tmp.file("config.json"), c.dump());
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {tmp.file("config.json"), "up_block_types"});
    c = cfg;
    c["act_fn"] = "gelu";
    io::write_file_atomic(tmp.file("config.json"), c.dump());
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {tmp.file("config.json"), "act_fn"});
    c = cfg;
    c["_class_name"] = "AutoencoderKLFlux2";
    io::write_file_atomic(tmp.file("config.json"), c.dump());
    expect_error([&] { load_flux_vae_decoder(tmp.path()); }, {tmp.file("config.json"), "_class_name"});
  }
  // FLUX.1's own config: downscale 8 from its four blocks.
  EXPECT_EQ(FluxVaeConfig::flux1().downscale(), 8);
  EXPECT_EQ(FluxVaeConfig::from_json({{"block_out_channels", {128, 256, 512, 512}},
                                      {"up_block_types", std::vector<std::string>(4, "UpDecoderBlock2D")}})
                .downscale(),
            8);
}

// ------------------------------------------------------------------------ prompt embeddings

TEST(FluxPrompts, ReadsThePythonFileAndChecksWidths) {
  FluxConfig cfg = FluxConfig::from_json(dev_config());
  const FluxPromptEmbeddings e = load_flux_prompt_embeddings(flux_data("prompts.safetensors"), cfg);
  EXPECT_EQ(e.size(), 3);
  ASSERT_EQ(e.prompts.size(), 3u);
  EXPECT_EQ(e.prompts[0], "a red fox in the snow");
  EXPECT_EQ(e.prompts[2], "\xc3\xa9t\xc3\xa9 \xe2\x80\x94 unicode");
  EXPECT_EQ(e.prompt_embeds.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(e.prompt_embeds.sizes(), (std::vector<int64_t>{3, 7, 32}));
  EXPECT_EQ(e.pooled_prompt_embeds.sizes(), (std::vector<int64_t>{3, 16}));

  // Widths of another transformer (FLUX.1-dev: 4096 and 768): refused, naming file and tensor.
  const std::string path = flux_data("prompts.safetensors");
  expect_error([&] { load_flux_prompt_embeddings(path, FluxConfig::flux1_dev()); }, {path, "prompt_embeds", "4096"});
  cfg.joint_attention_dim = 32;
  cfg.pooled_projection_dim = 768;
  expect_error([&] { load_flux_prompt_embeddings(path, cfg); }, {path, "pooled_prompt_embeds", "768"});

  // Round trip, and the other bad files.
  const FluxConfig dev = FluxConfig::from_json(dev_config());
  TempDir tmp;
  const std::string out = tmp.file("p.safetensors");
  save_flux_prompt_embeddings(out, e);
  const FluxPromptEmbeddings back = load_flux_prompt_embeddings(out, dev);
  EXPECT_EQ(back.prompts, e.prompts);
  EXPECT_TRUE(torch::equal(back.prompt_embeds, e.prompt_embeds));
  io::save_safetensors(out, {{"prompt_embeds", e.prompt_embeds}});
  expect_error([&] { load_flux_prompt_embeddings(out, dev); }, {out, "pooled_prompt_embeds", "missing"});
  io::save_safetensors(out, {{"prompt_embeds", e.prompt_embeds}, {"pooled_prompt_embeds", e.pooled_prompt_embeds.narrow(0, 0, 2)}});
  expect_error([&] { load_flux_prompt_embeddings(out, dev); }, {out, "pooled_prompt_embeds", "rows"});
  io::save_safetensors(out, {{"prompt_embeds", e.prompt_embeds}, {"pooled_prompt_embeds", e.pooled_prompt_embeds}},
                       {{"prompts", "[\"only one\"]"}});
  expect_error([&] { load_flux_prompt_embeddings(out, dev); }, {out, "prompts", "3 strings"});
  io::save_safetensors(out, {{"prompt_embeds", e.prompt_embeds}, {"pooled_prompt_embeds", e.pooled_prompt_embeds},
                             {"text_ids", torch::zeros({7, 3})}});
  expect_error([&] { load_flux_prompt_embeddings(out, dev); }, {out, "text_ids"});
  io::save_safetensors(out, {{"prompt_embeds", e.prompt_embeds.to(torch::kInt32)}, {"pooled_prompt_embeds", e.pooled_prompt_embeds}});
  expect_error([&] { load_flux_prompt_embeddings(out, dev); }, {out, "prompt_embeds", "I32"});
}
