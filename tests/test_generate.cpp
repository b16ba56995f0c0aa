// Tests for image generation (sampling/generate.h): seeded noise, labels, the batched guided teacher
// loop against a hand-written Euler loop, the PNG grid, and the sample-tensor file.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "arcflow/io/safetensors.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/sampling/generate.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

DiTConfig tiny_config() { return test::tiny_dit(); }

// A tiny DiT in float64 with every parameter random (the adaLN-Zero layers included), so the
// output depends on x, sigma and the class.
DiT tiny_dit() {
  torch::manual_seed(3);
  DiT m(tiny_config());
  torch::NoGradGuard no_grad;
  for (auto& p : m->parameters()) p.normal_(0.0, 0.3);
  m->to(torch::kFloat64);
  return m;
}

// Euler with guidance written out: separate conditional and null calls, sigmas computed here.
torch::Tensor hand_euler(DiT& m, torch::Tensor x, const torch::Tensor& y, int steps, double shift, double g,
                         bool cond_only) {
  torch::NoGradGuard no_grad;
  x = x.to(torch::kFloat64);
  const torch::Tensor null_y = torch::full_like(y, m->config.num_classes);
  auto sigma_at = [&](int i) {
    const double tau = 1.0 - static_cast<double>(i) / steps;
    return shift * tau / (1.0 + (shift - 1.0) * tau);
  };
  for (int i = 0; i < steps; ++i) {
    const double s = sigma_at(i), t = sigma_at(i + 1);
    const torch::Tensor sig = torch::full({x.size(0)}, s, torch::kFloat64);
    const torch::Tensor u_cond = m->forward(x, sig, y);
    torch::Tensor u = u_cond;
    if (!cond_only) {
      const torch::Tensor u_null = m->forward(x, sig, null_y);
      u = u_null + g * (u_cond - u_null);
    }
    x = x - (s - t) * u;
  }
  return x.to(torch::kFloat32);
}

// sample_teacher with class labels, as the CLI calls it.
torch::Tensor sample_teacher(DiT& m, const torch::Tensor& noise, const torch::Tensor& y, const TeacherSampling& s,
                             const SamplerCallback& cb = nullptr) {
  return arcflow::sample_teacher(m.ptr(), noise, Condition::labels(y), s, cb);
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace

TEST(GenerateNoise, ReproduciblePrefixStableAndNormal) {
  const std::vector<int64_t> shape{1, 8, 8};
  const torch::Tensor a = make_noise(16, shape, 7);
  torch::manual_seed(123);  // torch's global RNG must not matter
  const torch::Tensor b = make_noise(16, shape, 7);
  EXPECT_EQ(a.scalar_type(), torch::kFloat32);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{16, 1, 8, 8}));
  EXPECT_TRUE(a.device().is_cpu());
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_TRUE(torch::equal(make_noise(4, shape, 7), a.narrow(0, 0, 4)));
  EXPECT_FALSE(torch::equal(make_noise(16, shape, 8), a));
  // An odd number of values per sample (Box-Muller pairs straddle samples): still prefix-stable.
  const torch::Tensor odd = make_noise(9, {3}, 1);
  for (int64_t n : {1, 2, 5}) EXPECT_TRUE(torch::equal(make_noise(n, {3}, 1), odd.narrow(0, 0, n))) << n;
  EXPECT_EQ(make_noise(0, shape, 7).size(0), 0);
  // Standard normal.
  const torch::Tensor big = make_noise(200, {1, 10, 10}, 42);
  EXPECT_NEAR(big.mean().item<double>(), 0.0, 0.03);
  EXPECT_NEAR(big.std().item<double>(), 1.0, 0.03);
  EXPECT_TRUE(torch::isfinite(big).all().item<bool>());
  EXPECT_THROW(make_noise(-1, shape, 0), std::invalid_argument);
  EXPECT_THROW(make_noise(2, {1, 0, 8}, 0), std::invalid_argument);
}

TEST(GenerateLabels, CyclingAndValidation) {
  EXPECT_EQ(make_labels(7, {}, 3), (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0}));
  EXPECT_EQ(make_labels(5, {2, 0}, 3), (std::vector<int64_t>{2, 0, 2, 0, 2}));
  const torch::Tensor t = make_label_tensor(4, {1}, 10);
  EXPECT_EQ(t.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(t, torch::full({4}, 1, torch::kInt64)));
  try {
    make_labels(4, {1, 10}, 10);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("10"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_labels(4, {-1}, 10), std::invalid_argument);
}

TEST(GenerateTeacher, MatchesHandWrittenGuidedEuler) {
  DiT m = tiny_dit();
  const torch::Tensor noise = make_noise(5, {1, 8, 8}, 11);
  const torch::Tensor y = torch::tensor({0, 1, 2, 1, 0}, torch::kInt64);
  TeacherSampling s;
  s.steps = 6;
  s.shift = 2.0;
  s.cfg_scale = 3.0;
  int calls = 0, last_step = -1;
  const torch::Tensor out = sample_teacher(m, noise, y, s, [&](const StepInfo& info) {
    ++calls;
    EXPECT_EQ(info.step, last_step + 1);
    EXPECT_EQ(info.total, 6);
    last_step = info.step;
  });
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(out.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(out.device().is_cpu());
  EXPECT_EQ(out.sizes(), noise.sizes());
  const torch::Tensor ref = hand_euler(m, noise, y, 6, 2.0, 3.0, false);
  EXPECT_LT(max_diff(out, ref), 1e-5);
  EXPECT_GT(max_diff(out, noise), 0.1);  // the model did something
  // Guidance matters: the conditional-only result is different.
  EXPECT_GT(max_diff(out, hand_euler(m, noise, y, 6, 2.0, 1.0, true)), 1e-3);
  EXPECT_TRUE(m->is_training());  // the training flag is restored
}

TEST(GenerateTeacher, CfgOneIsTheConditionalModel) {
  DiT m = tiny_dit();
  const torch::Tensor noise = make_noise(4, {1, 8, 8}, 5);
  const torch::Tensor y = torch::tensor({2, 0, 1, 2}, torch::kInt64);
  TeacherSampling s;
  s.steps = 4;
  s.cfg_scale = 1.0;
  EXPECT_LT(max_diff(sample_teacher(m, noise, y, s), hand_euler(m, noise, y, 4, 1.0, 1.0, true)), 1e-5);
}

TEST(GenerateTeacher, BatchingDoesNotChangeResults) {
  DiT m = tiny_dit();
  const torch::Tensor noise = make_noise(7, {1, 8, 8}, 9);
  const torch::Tensor y = make_label_tensor(7, {}, 3);
  TeacherSampling s;
  s.steps = 3;
  s.sampler = "heun";
  s.max_batch = 8;
  const torch::Tensor whole = sample_teacher(m, noise, y, s);
  s.max_batch = 2;  // chunks of 2, 2, 2, 1
  int calls = 0;
  const torch::Tensor chunked = sample_teacher(m, noise, y, s, [&](const StepInfo& info) {
    EXPECT_EQ(info.step, calls);
    EXPECT_EQ(info.total, 12);
    ++calls;
  });
  EXPECT_EQ(calls, 12);
  EXPECT_LT(max_diff(whole, chunked), 1e-6);
  // Sample i depends on its own noise and label only: the first 3 of a 3-sample run agree.
  EXPECT_LT(max_diff(sample_teacher(m, noise.narrow(0, 0, 3), y.narrow(0, 0, 3), s), whole.narrow(0, 0, 3)), 1e-6);
}

TEST(GenerateTeacher, NfeAndValidation) {
  TeacherSampling s;  // euler 50, cfg 4
  EXPECT_EQ(teacher_nfe(s), 100);
  s.cfg_scale = 1.0;
  EXPECT_EQ(teacher_nfe(s), 50);
  s.cfg_scale = 2.0;
  s.sampler = "heun";
  s.steps = 10;
  EXPECT_EQ(teacher_nfe(s), 40);
  s.sampler = "lms";
  try {
    s.validate();
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("dpmpp_2m"), std::string::npos) << e.what();
  }
  DiT m = tiny_dit();
  TeacherSampling ok;
  ok.steps = 1;
  const torch::Tensor noise = make_noise(2, {1, 8, 8}, 0);
  EXPECT_THROW(sample_teacher(m, make_noise(2, {1, 4, 4}, 0), torch::zeros({2}, torch::kInt64), ok),
               std::invalid_argument);
  EXPECT_THROW(sample_teacher(m, noise, torch::zeros({3}, torch::kInt64), ok), std::invalid_argument);
  EXPECT_THROW(sample_teacher(m, noise, torch::full({2}, 4, torch::kInt64), ok), std::invalid_argument);
  ok.steps = 0;
  EXPECT_THROW(sample_teacher(m, noise, torch::zeros({2}, torch::kInt64), ok), std::invalid_argument);
}

TEST(GenerateGrid, LayoutValuesAndPadding) {
  // Three 2x2 gray images, 2 per row, pad 1: a 5x5 grid, the bottom-right cell is background.
  const torch::Tensor t = torch::tensor({-1.0, 1.0, 0.0, 2.0,        // image 0
                                         -0.5, 0.5, -3.0, 0.25,      // image 1
                                         0.1, -0.1, 0.999, -0.999},  // image 2
                                        torch::kFloat64)
                              .view({3, 1, 2, 2});
  const io::Image g = images_to_grid(t, 2, 1, 200);
  ASSERT_EQ(g.width, 5);
  ASSERT_EQ(g.height, 5);
  ASSERT_EQ(g.channels, 1);
  auto px = [&](int x, int y) { return static_cast<int>(g.pixels[static_cast<size_t>(y * 5 + x)]); };
  // round((x + 1) * 127.5), clamped: -1 -> 0, 1 -> 255, 0 -> 128 (127.5 rounds up), 2 -> 255.
  EXPECT_EQ(px(0, 0), 0);
  EXPECT_EQ(px(1, 0), 255);
  EXPECT_EQ(px(0, 1), 128);
  EXPECT_EQ(px(1, 1), 255);
  // Image 1 at x = 3: -0.5 -> 64 (63.75), 0.5 -> 191 (191.25), -3 -> 0, 0.25 -> 159 (159.375).
  EXPECT_EQ(px(3, 0), 64);
  EXPECT_EQ(px(4, 0), 191);
  EXPECT_EQ(px(3, 1), 0);
  EXPECT_EQ(px(4, 1), 159);
  // Image 2 at y = 3: 0.1 -> 140 (140.25), -0.1 -> 115 (114.75), 0.999 -> 255 (254.87), -0.999 -> 0 (0.13).
  EXPECT_EQ(px(0, 3), 140);
  EXPECT_EQ(px(1, 3), 115);
  EXPECT_EQ(px(0, 4), 255);
  EXPECT_EQ(px(1, 4), 0);
  // Padding row/column and the empty cell.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(px(2, i), 200) << i;
    EXPECT_EQ(px(i, 2), 200) << i;
  }
  EXPECT_EQ(px(3, 3), 200);
  EXPECT_EQ(px(4, 4), 200);

  // RGB: channels interleaved per pixel.
  // R = (-1, 1), G = (0, 0.5), B = (1, -1) for pixels (0, 0) and (1, 0).
  const torch::Tensor rgb = torch::tensor({-1.f, 1.f, 0.f, 0.5f, 1.f, -1.f}).view({1, 3, 1, 2});
  const io::Image c = images_to_grid(rgb, 4, 2);
  ASSERT_EQ(c.width, 2);
  ASSERT_EQ(c.height, 1);
  ASSERT_EQ(c.channels, 3);
  EXPECT_EQ(c.pixels, (std::vector<uint8_t>{0, 128, 255, 255, 191, 0}));

  EXPECT_THROW(images_to_grid(torch::zeros({2, 2, 4, 4}), 2, 1), std::invalid_argument);
  EXPECT_THROW(images_to_grid(torch::zeros({0, 1, 4, 4}), 2, 1), std::invalid_argument);
  EXPECT_THROW(images_to_grid(torch::zeros({2, 1, 4, 4}), 0, 1), std::invalid_argument);
}

TEST(GenerateTensors, SaveLoadRoundTrip) {
  test::TempDir dir;
  const std::string path = dir.file("s.safetensors");
  const torch::Tensor noise = make_noise(3, {1, 4, 4}, 2);
  const torch::Tensor samples = noise * 0.5 + 0.1;
  const torch::Tensor labels = torch::tensor({2, 0, 1}, torch::kInt32);  // stored as int64
  save_sample_tensors(path, noise, labels, samples, {{"sampler", "euler"}, {"nfe", "100"}});
  const SampleTensors back = load_sample_tensors(path);
  EXPECT_TRUE(torch::equal(back.noise, noise));
  EXPECT_TRUE(torch::equal(back.samples, samples));
  EXPECT_EQ(back.labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(back.labels, labels.to(torch::kInt64)));
  EXPECT_EQ(back.metadata.at("sampler"), "euler");
  EXPECT_EQ(back.metadata.at("nfe"), "100");
  // The raw file has exactly the three tensors.
  const io::SafetensorsFile raw = io::load_safetensors(path);
  EXPECT_EQ(raw.tensors.size(), 3u);
  EXPECT_EQ(raw.tensors.count("noise") + raw.tensors.count("labels") + raw.tensors.count("samples"), 3u);

  EXPECT_THROW(save_sample_tensors(path, noise, labels.narrow(0, 0, 2), samples), std::invalid_argument);
  EXPECT_THROW(save_sample_tensors(path, noise, labels, samples.narrow(0, 0, 2)), std::invalid_argument);
  io::save_safetensors(dir.file("bad.safetensors"), {{"samples", samples}});
  try {
    load_sample_tensors(dir.file("bad.safetensors"));
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("labels"), std::string::npos) << e.what();
  }
}
