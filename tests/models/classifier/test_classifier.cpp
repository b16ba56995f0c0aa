// Tests for arcflow/models/classifier/classifier.h, arcflow/training/classifier_train.h and the classifier
// route of arcflow/evaluation/image_metrics.h: shapes and keys, config JSON, weights files (round
// trip, strict loading naming the file and tensor), augmentation, seeded training on synthetic data,
// and (when the data set and the shipped model are present) the shipped classifier's accuracy.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include <set>
#include <string>

#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/io/atomic_file.h"
#include "arcflow/io/idx.h"
#include "arcflow/io/safetensors.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/weights.h"
#include "arcflow/training/classifier_train.h"
#include "temp_dir.h"

using namespace arcflow;
using arcflow::test::TempDir;

namespace {

ClassifierConfig tiny_config() {
  ClassifierConfig c;
  c.channels = {4, 8};
  c.feature_dim = 8;
  c.num_classes = 3;
  return c;
}

// Runs a few training-mode forwards so the BN running statistics differ from their defaults.
void touch_running_stats(Classifier& m) {
  torch::NoGradGuard no_grad;
  m->train();
  for (int i = 0; i < 3; ++i) m->forward(torch::randn({4, 1, 28, 28}));
  m->eval();
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

}  // namespace

TEST(Classifier, ShapesKeysAndSize) {
  torch::manual_seed(0);
  Classifier m{ClassifierConfig{}};
  m->eval();
  const torch::Tensor x = torch::rand({3, 1, 28, 28}) * 2 - 1;
  EXPECT_EQ(m->features(x).sizes(), (std::vector<int64_t>{3, 128}));
  EXPECT_EQ(m->forward(x).sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_TRUE(torch::allclose(m->forward(x), m->logits_from_features(m->features(x))));
  EXPECT_LT(count_parameters(*m), 1000000);
  std::set<std::string> keys;
  for (const auto& kv : state_dict(*m)) keys.insert(kv.first);
  std::set<std::string> expected = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
  for (int i = 0; i < 3; ++i)
    for (const char* k : {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
                          "bn.num_batches_tracked"})
      expected.insert("blocks." + std::to_string(i) + "." + k);
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(m->fc1->weight.size(1), 128 * 3 * 3);  // 28 -> 14 -> 7 -> 3
  EXPECT_THROW(m->forward(torch::zeros({2, 1, 32, 32})), c10::Error);
}

TEST(Classifier, ConfigJsonStrict) {
  const ClassifierConfig c = tiny_config();
  const ClassifierConfig back = ClassifierConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  auto with = [&](const char* key, const nlohmann::json& v) {
    nlohmann::json j = c.to_json();
    j[key] = v;
    return j;
  };
  EXPECT_NE(error_of([&] { ClassifierConfig::from_json(with("depth", 3)); }).find("unknown field 'depth'"),
            std::string::npos);
  nlohmann::json missing = c.to_json();
  missing.erase("feature_dim");
  EXPECT_NE(error_of([&] { ClassifierConfig::from_json(missing); }).find("feature_dim"), std::string::npos);
  EXPECT_NE(error_of([&] { ClassifierConfig::from_json(with("num_classes", 2.5)); }).find("num_classes"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ClassifierConfig::from_json(with("channels", {4, "x"})); }).find("channels[1]"),
            std::string::npos);
  EXPECT_THROW(ClassifierConfig::from_json(with("channels", nlohmann::json::array())), std::invalid_argument);
  EXPECT_THROW(ClassifierConfig::from_json(with("image_size", 2)), std::invalid_argument);  // 2 -> 1 -> 0
  EXPECT_THROW(ClassifierConfig::from_json(with("dropout", 1.0)), std::invalid_argument);
}

TEST(Classifier, SaveLoadRoundTripGivesIdenticalLogits) {
  TempDir dir;
  torch::manual_seed(1);
  Classifier m{ClassifierConfig{}};
  touch_running_stats(m);
  const std::string path = dir.file("clf.safetensors");
  save_classifier(m, path, {{"test_accuracy", "0.9"}});
  io::Metadata meta;
  Classifier back = load_classifier(path, torch::kCPU, &meta);
  EXPECT_FALSE(back->is_training());
  EXPECT_EQ(meta.at("model"), "classifier");
  EXPECT_EQ(meta.at("test_accuracy"), "0.9");
  EXPECT_EQ(back->config.to_json(), m->config.to_json());
  const torch::Tensor x = torch::rand({5, 1, 28, 28}) * 2 - 1;
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(m->forward(x), back->forward(x)));
  EXPECT_LT(io::read_file(path).size(), 2u * 1024 * 1024);
  EXPECT_THROW(save_classifier(m, path, {{"model", "x"}}), std::invalid_argument);
}

TEST(Classifier, LoadRejectsWrongOrMissingTensorsNamingThem) {
  TempDir dir;
  torch::manual_seed(2);
  Classifier m(tiny_config());
  const io::Metadata meta = {{"model", "classifier"}, {"config", m->config.to_json().dump()}};
  io::TensorMap sd = state_dict(*m);

  io::TensorMap missing = sd;
  missing.erase("fc2.bias");
  const std::string p1 = dir.file("missing.safetensors");
  io::save_safetensors(p1, missing, meta);
  const std::string e1 = error_of([&] { load_classifier(p1); });
  EXPECT_NE(e1.find(p1), std::string::npos) << e1;
  EXPECT_NE(e1.find("fc2.bias"), std::string::npos) << e1;

  io::TensorMap wrong = sd;
  wrong["blocks.1.conv.weight"] = torch::zeros({8, 4, 5, 5});
  const std::string p2 = dir.file("wrong.safetensors");
  io::save_safetensors(p2, wrong, meta);
  const std::string e2 = error_of([&] { load_classifier(p2); });
  EXPECT_NE(e2.find(p2), std::string::npos) << e2;
  EXPECT_NE(e2.find("blocks.1.conv.weight"), std::string::npos) << e2;

  io::TensorMap extra = sd;
  extra["fc3.weight"] = torch::zeros({2});
  const std::string p3 = dir.file("extra.safetensors");
  io::save_safetensors(p3, extra, meta);
  EXPECT_NE(error_of([&] { load_classifier(p3); }).find("fc3.weight"), std::string::npos);

  const std::string p4 = dir.file("dit.safetensors");
  io::save_safetensors(p4, sd, {{"model", "dit"}, {"config", meta.at("config")}});
  const std::string e4 = error_of([&] { load_classifier(p4); });
  EXPECT_NE(e4.find(p4), std::string::npos) << e4;
  EXPECT_NE(e4.find("classifier"), std::string::npos) << e4;

  const std::string p5 = dir.file("noconfig.safetensors");
  io::save_safetensors(p5, sd, {{"model", "classifier"}});
  EXPECT_NE(error_of([&] { load_classifier(p5); }).find("config"), std::string::npos);

  const std::string absent = dir.file("absent.safetensors");
  EXPECT_NE(error_of([&] { load_classifier(absent); }).find(absent), std::string::npos);
}

TEST(Classifier, AugmentFlipsAndShifts) {
  const torch::Tensor x = torch::rand({6, 1, 28, 28}) * 2 - 1;
  at::Generator g1 = at::detail::createCPUGenerator(7), g2 = at::detail::createCPUGenerator(7);
  const torch::Tensor a = augment_batch(x, 2, true, g1), b = augment_batch(x, 2, true, g2);
  EXPECT_TRUE(torch::equal(a, b));  // same seed, same result
  EXPECT_EQ(a.sizes(), x.sizes());
  at::Generator g3 = at::detail::createCPUGenerator(8);
  const torch::Tensor f = augment_batch(x, 0, true, g3);  // flips only
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_TRUE(torch::equal(f[i], x[i]) || torch::equal(f[i], x[i].flip({2})));
  // Shift only: each output is the input shifted by (dy, dx) in [-2, 2], the rest filled with -1.
  at::Generator g4 = at::detail::createCPUGenerator(9);
  const torch::Tensor s = augment_batch(x, 2, false, g4);
  const torch::Tensor padded = torch::constant_pad_nd(x, {2, 2, 2, 2}, -1.0);
  for (int64_t i = 0; i < 6; ++i) {
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx)
        found = torch::equal(s[i], padded[i].narrow(1, dy, 28).narrow(2, dx, 28));
    EXPECT_TRUE(found) << "sample " << i;
  }
}

TEST(Classifier, SeededTrainingReproducesAndLearns) {
  // Synthetic 3-class data: a bright square in one of three places on a dark background.
  const int64_t n = 96;
  torch::Tensor images = torch::full({n, 1, 28, 28}, -1.0);
  torch::Tensor labels = torch::arange(n, torch::kLong) % 3;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = labels[i].item<int64_t>();
    images[i].narrow(1, 4 + 8 * c, 8).narrow(2, 10, 8).fill_(1.0);
  }
  // The noise comes from its own seeded generator. It used to come from torch's global one, which
  // LibTorch seeds from /dev/urandom at start-up, so every process trained on other data, and with
  // 3 epochs 11 of 100 data seeds left one class never predicted (accuracy 2/3): the "1 run in 8"
  // flake of issue 17, independent of load and thread count. 6 epochs learn all 100 of those data
  // seeds (>= 0.9; measured with this test's model and settings), so the bound below is not a
  // property of the one seed used here.
  at::Generator noise_gen = at::detail::createCPUGenerator(5);
  images = images + 0.1 * torch::randn({n, 1, 28, 28}, noise_gen);
  const io::FashionMnist data{images, labels};
  ClassifierTrainConfig cfg;
  cfg.epochs = 6;
  cfg.batch_size = 16;
  cfg.lr = 1e-2;
  cfg.warmup_steps = 0;
  cfg.seed = 11;
  cfg.progress = false;
  auto run = [&] {
    torch::manual_seed(cfg.seed);
    Classifier m(tiny_config());
    const ClassifierTrainResult r = train_classifier(m, data, data, cfg);
    return std::make_pair(r, state_dict(*m));
  };
  const auto [r1, w1] = run();
  const auto [r2, w2] = run();
  EXPECT_EQ(r1.steps, 6 * (n / 16));
  EXPECT_DOUBLE_EQ(r1.test_accuracy, r2.test_accuracy);
  for (const auto& [k, t] : w1) EXPECT_TRUE(torch::equal(t, w2.at(k))) << k;
  EXPECT_GE(r1.test_accuracy, 0.9);
  cfg.epochs = 0;
  EXPECT_THROW(cfg.validate(), std::invalid_argument);
}

TEST(Classifier, EvaluateImagesAgainstOwnStats) {
  torch::manual_seed(3);
  Classifier m(tiny_config());
  touch_running_stats(m);
  const torch::Tensor x = torch::rand({40, 1, 28, 28}) * 3 - 1.5;  // some pixels outside [-1, 1]
  const torch::Tensor y = torch::arange(40, torch::kLong) % 3;
  const ClassifierOutputs out = classify_images(m, x, 16);  // clamps, batches
  EXPECT_EQ(out.features.sizes(), (std::vector<int64_t>{40, 8}));
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::allclose(out.logits, m->forward(x.clamp(-1, 1)), 1e-5, 1e-5));
  }
  const ImageMetrics r = evaluate_images(m, x, y, feature_stats(out.features), 16);
  EXPECT_EQ(r.n, 40);
  EXPECT_LT(r.fid, 1e-6);
  EXPECT_DOUBLE_EQ(r.accuracy, class_accuracy(out.logits, y));
  EXPECT_EQ(r.per_class_count, (std::vector<int64_t>{14, 13, 13}));
  EXPECT_EQ(r.per_class_diversity.size(), 3u);
  EXPECT_THROW(evaluate_images(m, x, torch::full({40}, 3, torch::kLong), feature_stats(out.features)),
               std::invalid_argument);
  EXPECT_THROW(evaluate_images(m, x.narrow(2, 0, 27), y, feature_stats(out.features)), std::invalid_argument);
}

TEST(Classifier, ShippedModelAccuracy) {
  // ARCFLOW_TEST_DATA_DIR is <source>/tests/data (which may not exist): the model is <source>/models/.
  std::string root = ARCFLOW_TEST_DATA_DIR;
  root = root.substr(0, root.rfind("/tests/data"));
  const std::string model = root + "/models/classifier.safetensors";
  if (!test::path_exists(std::string(io::kFashionMnistDir) + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed at " << io::kFashionMnistDir;
  if (!test::path_exists(model)) GTEST_SKIP() << "no shipped classifier at " << model;
  const io::FashionMnist t = io::load_fashion_mnist(io::kFashionMnistDir, false);
  Classifier m = load_classifier(model);
  EXPECT_GE(classifier_accuracy(m, t.images.narrow(0, 0, 1000), t.labels.narrow(0, 0, 1000)), 0.88);
}
