// Weights files whose metadata promises a bigger model than the file holds (found by
// tests/fuzz/fuzz_weights: a 200-byte file asking for a DiT of width 1.6 million made the loader try
// to allocate 10 TB). The closed-form state sizes are checked against the modules themselves, and
// the loaders must refuse such files, naming them, before building anything.
#include <gtest/gtest.h>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/student.h"
#include "arcflow/models/weights.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

double counted(torch::nn::Module& m) {
  double n = 0;
  for (const auto& [k, t] : state_dict(m)) n += static_cast<double>(t.numel());
  return n;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(WeightFiles, DiTStateSizeMatchesTheModule) {
  for (auto [C, S, P, W, Dp, Hd, R, NC] : std::vector<std::tuple<int, int, int, int, int, int, double, int>>{
           {1, 28, 4, 256, 6, 4, 4.0, 10}, {2, 8, 4, 16, 2, 2, 4.0, 3}, {3, 12, 2, 24, 1, 3, 2.5, 7}, {1, 4, 4, 8, 3, 1, 0.5, 1}}) {
    DiTConfig c;
    c.in_channels = C, c.image_size = S, c.patch = P, c.width = W, c.depth = Dp, c.heads = Hd, c.mlp_ratio = R,
    c.num_classes = NC;
    DiT m(c);
    EXPECT_EQ(c.state_size(), counted(*m)) << c.to_json().dump();
  }
}

TEST(WeightFiles, ClassifierStateSizeMatchesTheModule) {
  for (auto [S, chans, F, NC] : std::vector<std::tuple<int, std::vector<int64_t>, int, int>>{
           {28, {32, 64, 128}, 128, 10}, {9, {3}, 5, 2}, {16, {4, 8, 2, 6}, 7, 3}}) {
    ClassifierConfig c;
    c.image_size = S, c.channels = chans, c.feature_dim = F, c.num_classes = NC;
    Classifier m(c);
    EXPECT_EQ(c.state_size(), counted(*m)) << c.to_json().dump();
  }
}

TEST(WeightFiles, ConfigsPromisingMoreThanTheFileHoldsAreRefusedByName) {
  test::TempDir dir;
  DiTConfig big;
  big.width = 1600000;  // 10 TB of weights if it were built
  big.heads = 1;
  const std::string dit = dir.file("big.safetensors");
  io::save_safetensors(dit, {{"pos_embed", torch::zeros({1, 2})}}, {{"model", "dit"}, {"config", big.to_json().dump()}});
  const std::string e1 = error_of([&] { load_dit(dit); });
  EXPECT_NE(e1.find(dit + ": the config in its metadata describes a model of"), std::string::npos) << e1;

  ClassifierConfig wide;
  wide.feature_dim = 1 << 28;
  const std::string cls = dir.file("cls.safetensors");
  io::save_safetensors(cls, {}, {{"model", "classifier"}, {"config", wide.to_json().dump()}});
  const std::string e2 = error_of([&] { load_classifier(cls); });
  EXPECT_NE(e2.find(cls + ": the config in its metadata describes a model of"), std::string::npos) << e2;

  // A real adapter of a tiny teacher, then its config edited to promise K = 10^8 and rank 10^6.
  DiT teacher(test::tiny_dit());
  StudentConfig sc;
  sc.K = 2, sc.lora.rank = 2;
  LoRAStudent s(teacher.ptr(), sc);
  const std::string ok = dir.file("ok.safetensors");
  save_adapter(s, ok);
  EXPECT_NO_THROW(load_adapter(teacher.ptr(), ok));
  io::SafetensorsFile f = io::load_safetensors(ok);
  for (auto [field, value, says] : std::vector<std::tuple<std::string, int64_t, std::string>>{
           {"K", 100000000, "as K = 100000000 in the config says"}, {"lora_rank", 1000000, "rows as the LoRA rank"}}) {
    nlohmann::json j = nlohmann::json::parse(f.metadata.at("config"));
    j[field] = value;
    io::Metadata m = f.metadata;
    m["config"] = j.dump();
    const std::string bad = dir.file(field + ".safetensors");
    io::save_safetensors(bad, f.tensors, m);
    const std::string e = error_of([&] { load_adapter(teacher.ptr(), bad); });
    EXPECT_EQ(e.rfind(bad + ": ", 0), 0u) << e;
    EXPECT_NE(e.find(says), std::string::npos) << e;
  }
  // A LoRA target that matches no layer of this teacher (found by fuzz_weights: the error did not
  // name the file).
  nlohmann::json j = nlohmann::json::parse(f.metadata.at("config"));
  j["lora_targets"] = {"t_embedder.linea_r2"};
  io::Metadata m = f.metadata;
  m["config"] = j.dump();
  const std::string bad = dir.file("targets.safetensors");
  io::save_safetensors(bad, f.tensors, m);
  const std::string e = error_of([&] { load_adapter(teacher.ptr(), bad); });
  EXPECT_EQ(e.rfind(bad + ": ", 0), 0u) << e;
  EXPECT_NE(e.find("t_embedder.linea_r2"), std::string::npos) << e;
}
