// Teacher training: resume reproduces an uninterrupted run exactly, non-finite steps are skipped and
// then stop the run, the loss falls on a trivially learnable data set, configs are checked.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "arcflow/io/config.h"
#include "arcflow/models/weights.h"
#include "arcflow/training/teacher.h"
#include "teacher_test_util.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

TeacherTrainConfig tiny() {
  TeacherTrainConfig c;
  c.model = test::tiny_dit();
  c.batch_size = 4;
  c.warmup_iters = 2;
  c.lr = 1e-3;
  c.iters = 100;
  c.seed = 5;
  return c;
}

struct Data {
  torch::Tensor images, labels;
};

Data data(int64_t n = 12) {
  torch::manual_seed(11);
  return {torch::rand({n, 1, 8, 8}) * 2 - 1, torch::arange(n, torch::kLong) % 3};
}

}  // namespace

TEST(TeacherTraining, ResumeGivesTheSameLossesAndWeights) {
  arcflow::test::TempDir dir;
  const Data d = data();
  TeacherTrainer a(tiny(), d.images, d.labels, torch::kCPU);
  std::vector<double> full;
  for (int i = 0; i < 6; ++i) full.push_back(a.step().loss);

  TeacherTrainer b(tiny(), d.images, d.labels, torch::kCPU);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.step().loss, full[i]);
  save_checkpoint(dir.file("c.safetensors"), b.checkpoint());

  // A fresh trainer with another seed: everything must come from the checkpoint.
  TeacherTrainConfig other = tiny();
  other.seed = 99;
  TeacherTrainer c(other, d.images, d.labels, torch::kCPU);
  c.restore(load_checkpoint(dir.file("c.safetensors")), "c.safetensors");
  EXPECT_EQ(c.steps_done(), 3);
  for (int i = 3; i < 6; ++i) EXPECT_EQ(c.step().loss, full[i]) << "step " << i + 1;
  const auto wa = state_dict(a.model()->module()), wc = state_dict(c.model()->module());
  const auto ea = state_dict(a.ema()->module()), ec = state_dict(c.ema()->module());
  for (const auto& [k, v] : wa) EXPECT_TRUE(torch::equal(v, wc.at(k))) << k;
  for (const auto& [k, v] : ea) EXPECT_TRUE(torch::equal(v, ec.at(k))) << k;
}

TEST(TeacherTraining, RestoreRejectsAnotherModelConfig) {
  const Data d = data();
  TeacherTrainer a(tiny(), d.images, d.labels, torch::kCPU);
  a.step();
  TeacherTrainConfig wider = tiny();
  wider.model["width"] = 32;
  TeacherTrainer b(wider, d.images, d.labels, torch::kCPU);
  try {
    b.restore(a.checkpoint(), "ck.safetensors");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("ck.safetensors"), std::string::npos) << e.what();
  }
}

TEST(TeacherTraining, EmaAveragesTheWeights) {
  const Data d = data();
  TeacherTrainer a(tiny(), d.images, d.labels, torch::kCPU);
  // beta_1 = min(0.999, 2 / 11): after one step ema = beta * w0 + (1 - beta) * w1.
  const auto w0 = state_dict(a.model()->module());
  a.step();
  const auto w1 = state_dict(a.model()->module()), e1 = state_dict(a.ema()->module());
  const double beta = 2.0 / 11.0;
  for (const auto& [k, v] : w1)
    EXPECT_TRUE(torch::allclose(e1.at(k), beta * w0.at(k) + (1 - beta) * v, 1e-5, 1e-6)) << k;
}

TEST(TeacherTraining, NonFiniteStepsAreSkippedThenStop) {
  Data d = data();
  d.images.fill_(NAN);
  TeacherTrainConfig c = tiny();
  c.max_bad_steps = 3;
  TeacherTrainer a(c, d.images, d.labels, torch::kCPU);
  const auto before = state_dict(a.model()->module());
  EXPECT_TRUE(a.step().skipped);
  EXPECT_TRUE(a.step().skipped);
  EXPECT_THROW(a.step(), std::runtime_error);
  EXPECT_EQ(a.skipped_steps(), 3);
  for (const auto& [k, v] : state_dict(a.model()->module())) EXPECT_TRUE(torch::equal(v, before.at(k))) << k;
}

TEST(TeacherTraining, LossFallsOnALearnableDataSet) {
  // Every image of class k is the constant (k - 1) / 2: the velocity is learnable exactly.
  const torch::Tensor labels = torch::arange(30, torch::kLong) % 3;
  const torch::Tensor images = ((labels.to(torch::kFloat32) - 1) / 2).view({30, 1, 1, 1}).expand({30, 1, 8, 8});
  TeacherTrainConfig c = tiny();
  c.batch_size = 16;
  c.lr = 3e-3;
  c.warmup_iters = 5;
  TeacherTrainer a(c, images.contiguous(), labels, torch::kCPU);
  const test::LossEnds l = test::train_loss_ends(a, 150);
  EXPECT_LT(l.last, 0.5 * l.first) << l.first << " -> " << l.last;
}

TEST(TeacherTraining, BadInputsAreRejected) {
  const Data d = data();
  TeacherTrainConfig c = tiny();
  c.lr = -1;
  EXPECT_THROW(TeacherTrainer(c, d.images, d.labels, torch::kCPU), std::invalid_argument);
  EXPECT_THROW(TeacherTrainer(tiny(), d.images.narrow(2, 0, 4), d.labels, torch::kCPU), std::invalid_argument);
  EXPECT_THROW(TeacherTrainer(tiny(), d.images, d.labels + 5, torch::kCPU), std::invalid_argument);
}

TEST(ConfigFile, ParsesFlatKeysAndNormalisesUnderscores) {
  std::istringstream in("lr = 3e-4\nwarmup_iters = 200\nquiet = true\nname = \"x y\"\nclass = [1, 2]\n");
  const auto e = io::parse_config(in, "t.toml");
  ASSERT_EQ(e.size(), 5u);
  std::map<std::string, std::vector<std::string>> m;
  for (const auto& x : e) m[x.key] = x.values;
  EXPECT_DOUBLE_EQ(std::stod(m.at("lr").at(0)), 3e-4);
  EXPECT_EQ(m.at("warmup-iters"), std::vector<std::string>{"200"});
  EXPECT_EQ(m.at("quiet"), std::vector<std::string>{"true"});
  EXPECT_EQ(m.at("name"), std::vector<std::string>{"x y"});
  EXPECT_EQ(m.at("class"), (std::vector<std::string>{"1", "2"}));
}

TEST(ConfigFile, ErrorsNameTheFileAndLine) {
  const auto message = [](const std::string& text) {
    std::istringstream in(text);
    try {
      io::parse_config(in, "cfg.toml");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message("a = 1\nb = \n").rfind("cfg.toml:2:", 0), 0u) << message("a = 1\nb = \n");
  EXPECT_EQ(message("a = 1\n[model]\nwidth = 3\n").rfind("cfg.toml:", 0), 0u);
  EXPECT_NE(message("a = 1\n[model]\nwidth = 3\n").find("tables"), std::string::npos);
  EXPECT_NE(message("a = [[1], [2]]\n").find("arrays"), std::string::npos);
  EXPECT_THROW(io::read_config("/nonexistent/x.toml"), std::runtime_error);
}
