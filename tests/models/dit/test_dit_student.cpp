// The DiT student (LoRA + mixture head), its adapter files, sampling, and the image distillation
// problem, each checked against an independent computation.
#include <gtest/gtest.h>

#include "arcflow/core/gmflow.h"
#include "arcflow/core/schedule.h"
#include "arcflow/core/momentum.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/student.h"
#include "arcflow/models/weights.h"
#include "arcflow/sampling/generate.h"
#include "arcflow/sampling/student_sampling.h"
#include "arcflow/training/distill.h"
#include "temp_dir.h"
#include "tiny_models.h"

using namespace arcflow;

namespace {

DiTConfig tiny() { return test::tiny_dit(/*in_channels=*/2, /*width=*/16, /*depth=*/2); }

// A teacher whose every parameter is random (no zero-initialised layer left).
DiT random_teacher(const DiTConfig& c, uint64_t seed = 0) {
  torch::manual_seed(seed);
  DiT t(c);
  torch::NoGradGuard g;
  for (auto& p : t->parameters()) p.normal_(0.0, 0.2);
  return t;
}

StudentConfig student_cfg(int64_t K, double noise = 0.05) {
  StudentConfig s;
  s.K = K;
  s.head_bias_noise = noise;
  s.lora.dropout = 0.0;
  return s;
}

// A head layer of the student, by its checkpoint name.
torch::nn::LinearImpl& head(const LoRAStudent& s, const std::string& name) {
  return *s->named_children()[name]->as<torch::nn::LinearImpl>();
}

// The momentum mixture a student emits for (x, sigma, labels y).
MomentumMixture mixture_of(LoRAStudent& s, const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& y) {
  return dynamic_cast<const MomentumPolicy&>(*s->policy(x, sigma, Condition::labels(y))).mixture();
}

}  // namespace

TEST(DiTStudent, StartsAsTheTeacherUpToTheBiasNoise) {
  DiT teacher = random_teacher(tiny());
  teacher->eval();
  LoRAStudent s(teacher.ptr(), student_cfg(4));
  s->eval();
  const torch::Tensor x = torch::randn({3, 2, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.9f, 0.5f, 0.1f});
  const torch::Tensor y = torch::tensor({0, 2, 3}, torch::kLong);
  torch::NoGradGuard g;
  const MomentumMixture p = mixture_of(s, x, sigma, y);
  ASSERT_EQ(p.means.sizes(), torch::IntArrayRef({3, 4, 2, 8, 8}));
  ASSERT_EQ(p.logweights.sizes(), torch::IntArrayRef({3, 4, 1, 8, 8}));
  const torch::Tensor u_student = velocity(p, sigma);
  const torch::Tensor u_teacher = teacher->forward(x, sigma, y);
  // Uniform weights: the student's velocity is the teacher's plus the mean over components of the
  // bias noise, which we read back from the head (bias_k - teacher bias), unpatchified by hand.
  const torch::Tensor noise = (head(s, "proj_out_means").bias.view({4, -1}) - teacher->proj_out->bias).mean(0);  // (p*p*C)
  torch::Tensor want = u_teacher.clone();
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t yy = 0; yy < 8; ++yy)
      for (int64_t xx = 0; xx < 8; ++xx) {
        const int64_t py = yy % 4, px = xx % 4;
        want.select(1, c).select(1, yy).select(1, xx) += noise[(py * 4 + px) * 2 + c];
      }
  EXPECT_TRUE(torch::allclose(u_student, want, 1e-5, 1e-5)) << (u_student - want).abs().max();
  EXPECT_LT((u_student - u_teacher).abs().max().item<double>(), 0.1);
}

TEST(DiTStudent, HeadLayoutIsComponentThenPixelThenChannel) {
  DiT teacher = random_teacher(tiny());
  LoRAStudent s(teacher.ptr(), student_cfg(3, 0.0));
  torch::NoGradGuard g;
  // Zero weights, biases encoding their own index: means bias (k, py, px, c) = 1000 k + 100 py + 10 px + c.
  head(s, "proj_out_means").weight.zero_();
  head(s, "proj_out_logweights").weight.zero_();
  head(s, "proj_out_log_gammas").weight.zero_();
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t py = 0; py < 4; ++py)
      for (int64_t px = 0; px < 4; ++px) {
        for (int64_t c = 0; c < 2; ++c)
          head(s, "proj_out_means").bias[((k * 4 + py) * 4 + px) * 2 + c] = 1000.0 * k + 100.0 * py + 10.0 * px + c;
        head(s, "proj_out_logweights").bias[(k * 4 + py) * 4 + px] = 0.01 * (k + 1) + 0.001 * py;
        if (k < 2) head(s, "proj_out_log_gammas").bias[(k * 4 + py) * 4 + px] = 0.1 * (k + 1) + 0.01 * px;
      }
  const MomentumMixture p = mixture_of(s, torch::randn({1, 2, 8, 8}), torch::tensor({0.5f}), torch::tensor({1}, torch::kLong));
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t yy : {0, 3, 5, 7})
      for (int64_t xx : {0, 2, 6}) {
        const int64_t py = yy % 4, px = xx % 4;
        for (int64_t c = 0; c < 2; ++c)
          EXPECT_FLOAT_EQ(p.means[0][k][c][yy][xx].item<float>(), 1000.0f * k + 100.0f * py + 10.0f * px + c);
        EXPECT_FLOAT_EQ(p.logweights[0][k][0][yy][xx].item<float>(), 0.01f * (k + 1) + 0.001f * py);
        // log_gammas: component 0 is fixed at 0, head component j is policy component j + 1.
        const float g_want = k == 0 ? 0.0f : 0.1f * k + 0.01f * px;
        EXPECT_FLOAT_EQ(p.log_gammas[0][k][0][yy][xx].item<float>(), g_want);
      }
}

TEST(DiTStudent, TrainableFractionUnderFivePercentWithDefaults) {
  torch::manual_seed(0);
  DiT teacher{DiTConfig{}};  // the shipped preset: width 256, depth 6, patch 4
  LoRAStudent s(teacher.ptr(), StudentConfig{});
  const double frac = static_cast<double>(s->trainable_count()) / static_cast<double>(s->total_count());
  EXPECT_LT(frac, 0.05) << s->trainable_count() << " of " << s->total_count();
  EXPECT_GT(frac, 0.01);
  // Only LoRA and the head train; the teacher's own weights are frozen.
  int64_t requiring = 0;
  for (const auto& p : s->parameters())
    if (p.requires_grad()) requiring += p.numel();
  EXPECT_EQ(requiring, s->trainable_count());
}

TEST(DiTStudent, FusedAndUnfusedLoRAGiveTheSameOutput) {
  DiT teacher = random_teacher(tiny());
  LoRAStudent s(teacher.ptr(), student_cfg(4));
  s->eval();
  torch::NoGradGuard g;
  for (auto& p : lora_parameters(s->base->module())) p.normal_(0.0, 0.3);  // B is zero at start: make LoRA matter
  const torch::Tensor x = torch::randn({2, 2, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.7f, 0.2f});
  const torch::Tensor y = torch::tensor({1, 0}, torch::kLong);
  const MomentumMixture a = mixture_of(s, x, sigma, y);
  s->fuse_lora();
  const MomentumMixture b = mixture_of(s, x, sigma, y);
  unfuse_lora(s->base->module());
  const MomentumMixture c = mixture_of(s, x, sigma, y);
  EXPECT_TRUE(torch::allclose(a.means, b.means, 1e-5, 1e-5)) << (a.means - b.means).abs().max();
  EXPECT_TRUE(torch::allclose(a.log_gammas, b.log_gammas, 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.means, c.means, 1e-5, 1e-5));
  // LoRA does change the output (the check above is not vacuous).
  LoRAStudent fresh(teacher.ptr(), student_cfg(4));
  fresh->eval();
  EXPECT_GT((mixture_of(fresh, x, sigma, y).means - a.means).abs().max().item<float>(), 1e-3);
}

TEST(DiTStudent, AdapterRoundTripGivesIdenticalSamples) {
  arcflow::test::TempDir dir;
  DiT teacher = random_teacher(tiny());
  LoRAStudent s(teacher.ptr(), student_cfg(4));
  {
    torch::NoGradGuard g;
    for (auto& p : lora_parameters(s->base->module())) p.normal_(0.0, 0.3);
    head(s, "proj_out_log_gammas").weight.normal_(0.0, 0.1);
  }
  save_adapter(s, dir.file("a.safetensors"));
  const io::SafetensorsFile f = io::load_safetensors(dir.file("a.safetensors"));
  // PEFT naming under the teacher's module names.
  EXPECT_EQ(f.tensors.count("blocks.0.mlp.fc1.lora_A.weight"), 1u);
  EXPECT_EQ(f.tensors.at("blocks.1.mlp.fc2.lora_B.weight").sizes(), torch::IntArrayRef({16, 8}));
  EXPECT_EQ(f.tensors.count("proj_out_means.weight"), 1u);
  EXPECT_EQ(f.tensors.count("blocks.0.attn.qkv.weight"), 0u);  // no teacher weights
  EXPECT_EQ(f.metadata.at("lora_rank"), "8");

  LoRAStudent r = load_adapter(teacher.ptr(), dir.file("a.safetensors"));
  const torch::Tensor noise = make_noise(4, {2, 8, 8}, 7, torch::kCPU);
  const torch::Tensor labels = torch::tensor({0, 1, 2, 0}, torch::kLong);
  StudentSampling opt;
  opt.nfe = 2;
  const torch::Tensor a = sample_student(*s, noise, Condition::labels(labels), opt);
  const torch::Tensor b = sample_student(*r, noise, Condition::labels(labels), opt);
  EXPECT_TRUE(torch::equal(a, b));
  // A teacher of another shape, or a damaged adapter, is refused with the file named.
  DiTConfig other = tiny();
  other.width = 32;
  other.heads = 4;
  try {
    load_adapter(DiT(other).ptr(), dir.file("a.safetensors"));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a.safetensors"), std::string::npos) << e.what();
  }
  io::TensorMap t = f.tensors;
  t.erase("proj_out_logweights.bias");
  io::save_safetensors(dir.file("b.safetensors"), t, f.metadata);
  EXPECT_THROW(load_adapter(teacher.ptr(), dir.file("b.safetensors")), std::runtime_error);
}

TEST(StudentSampling, LinearStudentAtInitIsTheTeachersEulerSteps) {
  // K = 1, g = 0 and no bias noise: the student is exactly the (unguided, conditional) teacher,
  // so its N closed-form steps are N Euler steps of the teacher (cfg 1).
  DiT teacher = random_teacher(tiny(), 3);
  LoRAStudent s(teacher.ptr(), student_cfg(1, 0.0));
  const torch::Tensor noise = make_noise(3, {2, 8, 8}, 1, torch::kCPU);
  const torch::Tensor labels = torch::tensor({2, 0, 1}, torch::kLong);
  for (int nfe : {1, 2, 3}) {
    StudentSampling so;
    so.nfe = nfe;
    so.shift = 2.0;
    TeacherSampling ts;
    ts.sampler = "euler";
    ts.steps = nfe;
    ts.shift = 2.0;
    ts.cfg_scale = 1.0;
    const torch::Tensor a = sample_student(*s, noise, Condition::labels(labels), so);
    const torch::Tensor b = sample_teacher(teacher.ptr(), noise, Condition::labels(labels), ts);
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5)) << "nfe " << nfe << ": " << (a - b).abs().max();
  }
}

TEST(ImageDistill, TinyDiTDistillsEndToEndAndLowersItsLoss) {
  DiT teacher = random_teacher(tiny(), 4);
  torch::manual_seed(0);
  LoRAStudent s(teacher.ptr(), student_cfg(4));
  DistillConfig d;
  d.batch_size = 8;
  d.num_decay_iters = 0;  // teacher_ratio 0 from the start: the objective does not drift
  d.warmup_iters = 0;
  d.lr = 3e-3;
  d.ema_start = 5;
  d.seed = 1;
  Distiller dist(make_distill_problem(s, teacher.ptr(), 2.0, d, torch::kCPU), d);
  double first = 0, last = 0;
  for (int i = 0; i < 40; ++i) {
    const DistillStats st = dist.step();
    ASSERT_FALSE(st.skipped);
    ASSERT_EQ(st.step_losses.size(), 2u);
    if (i < 5) first += st.loss / 5;
    if (i >= 35) last += st.loss / 5;
  }
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
}

TEST(ImageDistill, ResumeGivesTheSameLosses) {
  arcflow::test::TempDir dir;
  DiT teacher = random_teacher(tiny(), 5);
  auto make = [&](uint64_t seed) {
    torch::manual_seed(seed);
    StudentConfig c = student_cfg(3);
    c.lora.dropout = 0.1;  // uses torch's global generator: the checkpoint must carry it
    return LoRAStudent(teacher.ptr(), c);
  };
  DistillConfig d;
  d.batch_size = 4;
  d.num_decay_iters = 4;
  d.warmup_iters = 2;
  d.ema_start = 2;
  LoRAStudent sa = make(0);
  Distiller a(make_distill_problem(sa, teacher.ptr(), 3.0, d, torch::kCPU), d);
  std::vector<double> losses;
  for (int i = 0; i < 3; ++i) a.step();
  save_checkpoint(dir.file("c.safetensors"), a.checkpoint());
  for (int i = 0; i < 3; ++i) losses.push_back(a.step().loss);

  LoRAStudent sb = make(9);  // another head noise: everything must come from the checkpoint
  Distiller b(make_distill_problem(sb, teacher.ptr(), 3.0, d, torch::kCPU), d);
  b.restore(load_checkpoint(dir.file("c.safetensors")), "c.safetensors");
  EXPECT_EQ(b.iteration(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(b.step().loss, losses[i]) << "iteration " << i + 4;
  for (size_t i = 0; i < a.ema().size(); ++i) EXPECT_TRUE(torch::equal(a.ema()[i], b.ema()[i])) << i;
}

TEST(StudentSampling, RestoresTheTrainingFlagWhenAnErrorIsThrown) {
  DiT teacher = random_teacher(tiny(), 6);
  LoRAStudent s(teacher.ptr(), student_cfg(2));
  const torch::Tensor bad_noise = torch::randn({2, 3, 8, 8});  // 3 channels: the DiT takes 2
  const torch::Tensor labels = torch::tensor({0, 1}, torch::kLong);
  for (bool training : {true, false}) {
    s->train(training);
    EXPECT_THROW(sample_student(*s, bad_noise, Condition::labels(labels), StudentSampling{}), std::invalid_argument);
    EXPECT_EQ(s->is_training(), training);
  }
}

// pi-Flow's GMFlow head on the DiT: at initialisation (no bias noise) the policy's velocity at its
// own source is the teacher's; the adapter carries the logstd MLP under pi-Flow's names.
TEST(DiTStudent, GMFlowHeadStartsAsTheTeacherAndRoundTrips) {
  arcflow::test::TempDir dir;
  DiT teacher = random_teacher(tiny(), 7);
  teacher->eval();
  StudentConfig c = student_cfg(4, 0.0);
  c.policy = "gmflow";
  LoRAStudent s(teacher.ptr(), c);
  s->eval();
  const torch::Tensor x = torch::randn({3, 2, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.9f, 0.5f, 0.2f});
  const torch::Tensor y = torch::tensor({0, 2, 3}, torch::kLong);
  torch::NoGradGuard g;
  const PolicyPtr p = s->policy(x, sigma, Condition::labels(y));
  EXPECT_EQ(p->name(), "gmflow");
  EXPECT_LT((p->velocity(x, sigma) - teacher->forward(x, sigma, y)).abs().max().item<float>(), 1e-5);
  for (auto& t : s->parameters())
    if (t.requires_grad()) t.normal_(0.0, 0.05);  // every trainable tensor nonzero
  save_adapter(s, dir.file("g.safetensors"));
  const io::SafetensorsFile f = io::load_safetensors(dir.file("g.safetensors"));
  for (const char* k : {"proj_out_logstds.1.weight", "proj_out_logstds.1.bias", "proj_out_logstds.3.weight",
                        "proj_out_logstds.3.bias", "proj_out_means.weight", "proj_out_logweights.bias"})
    EXPECT_EQ(f.tensors.count(k), 1u) << k;
  EXPECT_EQ(f.tensors.count("proj_out_log_gammas.bias"), 0u);
  LoRAStudent r = load_adapter(teacher.ptr(), dir.file("g.safetensors"));
  EXPECT_EQ(r->config.policy, "gmflow");
  const torch::Tensor noise = make_noise(3, {2, 8, 8}, 2, torch::kCPU);
  StudentSampling so;
  so.total_substeps = 16;
  EXPECT_TRUE(torch::equal(sample_student(*s, noise, Condition::labels(y), so),
                           sample_student(*r, noise, Condition::labels(y), so)));
  // A policy name nobody knows is refused naming the file.
  io::Metadata meta = f.metadata;
  nlohmann::json cj = nlohmann::json::parse(meta.at("config"));
  cj["policy"] = "mystery";
  meta["config"] = cj.dump();
  io::save_safetensors(dir.file("m.safetensors"), f.tensors, meta);
  try {
    load_adapter(teacher.ptr(), dir.file("m.safetensors"));
    ADD_FAILURE() << "no error for an unknown policy";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("m.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unknown policy 'mystery'"), std::string::npos) << e.what();
  }
}

// pi-Flow's "auto" temperature: with none asked for, a GMFlow student samples its non-final steps
// at 0.1 (2 NFE) and its last at 1, computed here step by step from the student's raw policies and
// a tempered mixture built by hand (logits / T, logstd + log(T) / 2: variance * T).
TEST(DiTStudent, GMFlowSamplesAtPiFlowsAutoTemperatureOnNonFinalStepsOnly) {
  DiT teacher = random_teacher(tiny(), 11);
  teacher->eval();
  StudentConfig c = student_cfg(4, 0.0);
  c.policy = "gmflow";
  LoRAStudent s(teacher.ptr(), c);
  s->eval();
  torch::NoGradGuard g;
  for (auto& t : s->parameters())
    if (t.requires_grad()) t.normal_(0.0, 0.3);  // logits and logstd away from their zero start
  EXPECT_DOUBLE_EQ(s->auto_temperature(1), 1.0);
  EXPECT_DOUBLE_EQ(s->auto_temperature(2), 0.1);
  EXPECT_NEAR(s->auto_temperature(4), 0.3, 1e-15);
  EXPECT_DOUBLE_EQ(s->auto_temperature(20), 1.0);

  const torch::Tensor noise = make_noise(3, {2, 8, 8}, 5, torch::kCPU);
  const torch::Tensor y = torch::tensor({0, 2, 1}, torch::kLong);
  const Condition cond = Condition::labels(y);
  StudentSampling so;
  so.nfe = 2;
  so.shift = 3.0;
  so.total_substeps = 16;
  ASSERT_FALSE(so.temperature.has_value());  // "auto" is the default
  EXPECT_DOUBLE_EQ(so.temperature_for(*s), 0.1);
  const torch::Tensor got = sample_student(*s, noise, cond, so);

  // By hand: step 1 tempered at 0.1, step 2 at 1.
  s->integration = IntegrationOptions{so.shift, so.total_substeps};
  const std::vector<Segment> segs = segments(2, so.shift, 1.0);
  torch::Tensor x = noise;
  for (size_t i = 0; i < segs.size(); ++i) {
    const torch::Tensor sa = torch::full({3}, segs[i].sigma_src), sb = torch::full({3}, segs[i].sigma_dst);
    const PolicyPtr p = s->policy(x, sa, cond);
    const auto& gm = dynamic_cast<const GMFlowPolicy&>(*p);
    GaussianMixture m = gm.mixture();
    if (i == 0) {
      m.logweights = m.logweights / 0.1;
      m.logstd = m.logstd + 0.5 * std::log(0.1);
    }
    x = GMFlowPolicy(m, GMFlowIntegration{so.shift, so.total_substeps}).integrate(x, sa, sb);
  }
  EXPECT_LT((got - x).abs().max().item<double>(), 1e-6);
  // An explicit temperature overrides the rule: T = 1 everywhere is another sample.
  so.temperature = 1.0;
  const torch::Tensor plain = sample_student(*s, noise, cond, so);
  EXPECT_GT((plain - got).abs().max().item<double>(), 1e-3);
  so.temperature = 0.1;
  EXPECT_TRUE(torch::equal(sample_student(*s, noise, cond, so), got));
  // One step: the last, so T = 1 whatever the rule.
  so.nfe = 1;
  so.temperature.reset();
  EXPECT_TRUE(torch::equal(sample_student(*s, noise, cond, so), [&] {
    StudentSampling one = so;
    one.temperature = 1.0;
    return sample_student(*s, noise, cond, one);
  }()));
  // ArcFlow's reference has no working temperature: its "auto" is 1.
  LoRAStudent a(teacher.ptr(), student_cfg(4));
  EXPECT_DOUBLE_EQ(a->auto_temperature(2), 1.0);
  EXPECT_DOUBLE_EQ(a->auto_temperature(4), 1.0);
}

TEST(StudentSampling, TemperatureFlagTakesAutoOrAPositiveNumber) {
  EXPECT_FALSE(parse_temperature("auto", "--temperature").has_value());
  EXPECT_DOUBLE_EQ(*parse_temperature("0.3", "--temperature"), 0.3);
  EXPECT_EQ(temperature_text(std::nullopt), "auto");
  EXPECT_EQ(temperature_text(0.1), "0.1");
  for (const char* bad : {"", "0", "-1", "nan", "inf", "1x", "Auto"}) {
    try {
      parse_temperature(bad, "--temperature");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--temperature"), std::string::npos) << e.what();
    }
  }
}

TEST(ImageDistill, TinyDiTGMFlowStudentLowersItsLoss) {
  DiT teacher = random_teacher(tiny(), 8);
  torch::manual_seed(0);
  StudentConfig c = student_cfg(4);
  c.policy = "gmflow";
  LoRAStudent s(teacher.ptr(), c);
  DistillConfig d;
  d.batch_size = 8;
  d.num_decay_iters = 0;
  d.warmup_iters = 0;
  d.lr = 3e-3;
  d.total_substeps = 16;
  d.seed = 1;
  Distiller dist(make_distill_problem(s, teacher.ptr(), 2.0, d, torch::kCPU), d);
  double first = 0, last = 0;
  for (int i = 0; i < 40; ++i) {
    const DistillStats st = dist.step();
    ASSERT_FALSE(st.skipped);
    if (i < 5) first += st.loss / 5;
    if (i >= 35) last += st.loss / 5;
  }
  EXPECT_LT(last, 0.7 * first) << first << " -> " << last;
}

TEST(DiTStudent, DistilledSamplingComesFromTheAdapterMetadata) {
  const StudentSampling d = distilled_sampling({{"nfe", "4"}, {"shift", "3"}, {"K", "16"}}, "a.safetensors");
  EXPECT_EQ(d.nfe, 4);
  EXPECT_DOUBLE_EQ(d.shift, 3.0);
  EXPECT_DOUBLE_EQ(d.timestep_ratio, StudentSampling().timestep_ratio);  // absent: the default
  try {
    distilled_sampling({{"timestep_ratio", "fast"}}, "a.safetensors");
    ADD_FAILURE() << "no error for an unreadable value";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a.safetensors: unreadable 'timestep_ratio'"), std::string::npos) << e.what();
  }
}

TEST(DiTStudent, MeansBiasNoiseIsSharedByATokensPixels) {
  // Section 4 (the reference's rule): one draw per (component, channel), the same at every pixel
  // of the token; configs from before the rule drew one per output.
  DiT teacher = random_teacher(tiny());
  for (bool per_token : {true, false}) {
    StudentConfig c = student_cfg(3, 0.05);
    c.head_bias_noise_per_token = per_token;
    torch::manual_seed(7);
    LoRAStudent s(teacher.ptr(), c);
    // (K, pixels p*p = 16, channels 2): the bias minus the teacher's, by the head's layout.
    const torch::Tensor noise =
        (head(s, "proj_out_means").bias.view({3, -1}) - teacher->proj_out->bias).view({3, 16, 2});
    const double spread = (noise - noise.select(1, 0).unsqueeze(1)).abs().max().item<double>();
    if (per_token) {
      EXPECT_LT(spread, 1e-6);
      EXPECT_GT(noise.std().item<double>(), 0.01);  // but not zero: the components differ
    } else {
      EXPECT_GT(spread, 1e-3);
    }
  }
  // A config without the field (written before it) reads as one draw per output.
  nlohmann::json j = student_cfg(3).to_json();
  j.erase("head_bias_noise_per_token");
  EXPECT_FALSE(StudentConfig::from_json(j).head_bias_noise_per_token);
}

TEST(DiTStudent, GMFlowLogstdWidthIsPiFlowsAndOlderWidthsLoadByShape) {
  DiT teacher = random_teacher(tiny());
  const arcflow::test::TempDir dir;
  StudentConfig c = student_cfg(2, 0.0);
  c.policy = "gmflow";
  EXPECT_EQ(c.logstd_hidden, 1024);  // pi-Flow's width for new students
  c.logstd_hidden = 0;               // the width files written before the field have: the embedding's
  LoRAStudent old(teacher.ptr(), c);
  for (auto& t : old->parameters())
    if (t.requires_grad()) t.detach().normal_(0.0, 0.05);
  const int64_t E = teacher->head_layout().embed_dim;
  EXPECT_EQ(old->named_parameters()["proj_out_logstds.1.weight"].size(0), E);
  // Written as an older file is: no logstd_hidden in its config.
  save_adapter(old, dir.file("a.safetensors"));
  io::SafetensorsFile f = io::load_safetensors(dir.file("a.safetensors"));
  nlohmann::json cj = nlohmann::json::parse(f.metadata.at("config"));
  cj.erase("logstd_hidden");
  f.metadata["config"] = cj.dump();
  io::save_safetensors(dir.file("b.safetensors"), f.tensors, f.metadata);
  LoRAStudent r = load_adapter(teacher.ptr(), dir.file("b.safetensors"));
  EXPECT_EQ(r->config.logstd_hidden, E);
  const torch::Tensor x = torch::randn({2, 2, 8, 8});
  const torch::Tensor sigma = torch::tensor({0.9f, 0.4f});
  const torch::Tensor y = torch::tensor({1, 3}, torch::kLong);
  old->eval();
  r->eval();
  torch::NoGradGuard g;
  EXPECT_TRUE(torch::equal(old->policy(x, sigma, Condition::labels(y))->velocity(x, sigma * 0.5),
                           r->policy(x, sigma, Condition::labels(y))->velocity(x, sigma * 0.5)));
  // A new student has the 1024-wide hidden layer.
  StudentConfig n = student_cfg(2, 0.0);
  n.policy = "gmflow";
  LoRAStudent s(teacher.ptr(), n);
  EXPECT_EQ(s->named_parameters()["proj_out_logstds.1.weight"].size(0), 1024);
}
