#include <gtest/gtest.h>

#include "arcflow/core/schedule.h"

using namespace arcflow;

TEST(Schedule, WarpKnownValues) {
  EXPECT_DOUBLE_EQ(warp(0.0, 3.0), 0.0);
  EXPECT_DOUBLE_EQ(warp(1.0, 3.0), 1.0);
  EXPECT_DOUBLE_EQ(warp(0.5, 3.0), 0.75);  // 1.5 / 2
  EXPECT_DOUBLE_EQ(warp(0.25, 1.0), 0.25);  // shift 1 is the identity
  EXPECT_NEAR(warp(0.1, 3.2), 0.32 / 1.22, 1e-15);
}

TEST(Schedule, UnwarpInvertsWarp) {
  for (double s : {1.0, 2.0, 3.0, 3.2, 10.0})
    for (int i = 0; i <= 100; ++i) {
      const double tau = i / 100.0;
      EXPECT_NEAR(unwarp(warp(tau, s), s), tau, 1e-14);
    }
  torch::Tensor tau = torch::linspace(0, 1, 11, torch::kFloat64);
  EXPECT_TRUE(torch::allclose(unwarp(warp(tau, 3.0), 3.0), tau, 0, 1e-14));
  EXPECT_NEAR(warp(tau, 3.0)[5].item<double>(), 0.75, 1e-15);
}

TEST(Schedule, ShiftMovesStepsTowardNoise) {
  for (int i = 1; i < 10; ++i) EXPECT_GT(warp(i / 10.0, 3.0), i / 10.0);
}

TEST(Schedule, EqualSegments) {
  auto segs = segments(2, 1.0);
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_DOUBLE_EQ(segs[0].tau_src, 1.0);
  EXPECT_DOUBLE_EQ(segs[0].tau_dst, 0.5);
  EXPECT_DOUBLE_EQ(segs[1].tau_src, 0.5);
  EXPECT_DOUBLE_EQ(segs[1].tau_dst, 0.0);
  auto shifted = segments(2, 3.0);
  EXPECT_DOUBLE_EQ(shifted[0].sigma_dst, 0.75);
  EXPECT_DOUBLE_EQ(shifted[1].sigma_dst, 0.0);
}

TEST(Schedule, TimestepRatioScalesLastSegment) {
  // N = 3, r = 0.5: base = 1 / 2.5 = 0.4, boundaries 1, 0.6, 0.2, 0.
  auto segs = segments(3, 1.0, 0.5);
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_NEAR(segs[0].length(), 0.4, 1e-15);
  EXPECT_NEAR(segs[1].length(), 0.4, 1e-15);
  EXPECT_NEAR(segs[2].length(), 0.2, 1e-15);
  EXPECT_NEAR(segs[1].tau_dst, 0.2, 1e-15);
  EXPECT_EQ(segs[2].tau_dst, 0.0);
  auto sg = sigmas(3, 3.0, 0.5);
  ASSERT_EQ(sg.size(), 4u);
  EXPECT_EQ(sg.front(), 1.0);
  EXPECT_EQ(sg.back(), 0.0);
  EXPECT_NEAR(sg[1], warp(0.6, 3.0), 1e-15);
}

TEST(Schedule, RejectsBadArguments) {
  EXPECT_THROW(segments(0, 1.0), std::invalid_argument);
  EXPECT_THROW(segments(2, 1.0, 0.0), std::invalid_argument);
  EXPECT_THROW(warp(0.5, 0.0), std::invalid_argument);
}

// ---- One schedule value, the folder's shift rule, the adapter metadata that carries it ----

#include <cmath>

#include "arcflow/models/scheduler_config.h"
#include "arcflow/models/student.h"

TEST(StepSchedule, SegmentsAndValidation) {
  StepSchedule s;
  s.nfe = 3;
  s.shift = 3.2;
  s.timestep_ratio = 0.5;
  const auto a = s.segments(), b = segments(3, 3.2, 0.5);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].sigma_src, b[i].sigma_src);
  EXPECT_NO_THROW(s.validate("x"));
  using Edit = void (*)(StepSchedule&);
  for (Edit bad : std::vector<Edit>{[](StepSchedule& t) { t.nfe = 0; }, [](StepSchedule& t) { t.shift = 0.5; },
                                    [](StepSchedule& t) { t.timestep_ratio = 0; },
                                    [](StepSchedule& t) { t.total_substeps = 0; },
                                    [](StepSchedule& t) { t.shift = std::nan(""); }}) {
    StepSchedule t = s;
    bad(t);
    try {
      t.validate("adapter a.safetensors");
      ADD_FAILURE() << "accepted a bad schedule";
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind("adapter a.safetensors: ", 0), 0u) << e.what();
    }
  }
}

TEST(ShiftRule, DynamicIsThePipelinesCalculateShift) {
  ShiftRule flux;  // FLUX.1-dev's scheduler_config.json
  flux.dynamic = true;
  // 1024 x 1024: a 128 x 128 latent packed in 2 x 2 -> 4096 tokens, the top of the range: mu = max_shift.
  EXPECT_NEAR(flux.at(4096), std::exp(1.15), 1e-13);
  EXPECT_NEAR(flux.at(256), std::exp(0.5), 1e-13);
  EXPECT_NEAR(flux.at(1024), std::exp(0.5 + 768 * 0.65 / 3840), 1e-13);
  EXPECT_NEAR(flux.at(8192), std::exp(0.5 + 7936 * 0.65 / 3840), 1e-12);  // extrapolated, as the pipeline does
  ShiftRule qwen = flux;  // Qwen-Image: max_shift 0.9 over 256 .. 8192 (ARCFLOW.md section 8: 1024^2 -> 2.0008)
  qwen.max_shift = 0.9;
  qwen.max_seq_len = 8192;
  EXPECT_NEAR(std::log(qwen.at(4096)), 0.6935, 1e-4);
  EXPECT_NEAR(qwen.at(4096), 2.0008, 5e-5);
  // diffusers' exponential time shift e^mu / (e^mu + (1 / t - 1)) is section 1's warp at s = e^mu.
  for (double t : {0.05, 0.3, 0.5, 0.9}) {
    const double e = std::exp(1.15);
    EXPECT_NEAR(warp(t, flux.at(4096)), e / (e + (1 / t - 1)), 1e-14);
  }
  ShiftRule fixed;
  fixed.shift = 3.2;
  EXPECT_EQ(fixed.at(4096), 3.2);
  EXPECT_EQ(fixed.describe(), "3.2");
  EXPECT_EQ(flux.describe(), "dynamic: exp(0.5 .. 1.15 over 256 .. 4096 tokens)");
}

TEST(ShiftRule, SchedulerConfigIsReadStrictly) {
  const nlohmann::json dev = nlohmann::json::parse(R"({"_class_name": "FlowMatchEulerDiscreteScheduler",
      "_diffusers_version": "0.30.0.dev0", "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
      "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": true})");
  const ShiftRule r = parse_scheduler_config(dev, "dev/scheduler/scheduler_config.json");
  EXPECT_TRUE(r.dynamic);
  EXPECT_NEAR(r.at(4096), std::exp(1.15), 1e-13);  // "shift" 3.0 is unused when dynamic, as in diffusers
  nlohmann::json schnell = {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"shift", 1.0},
                            {"use_dynamic_shifting", false}};
  EXPECT_EQ(parse_scheduler_config(schnell, "s").at(4096), 1.0);
  schnell["shift"] = 3.2;
  EXPECT_EQ(parse_scheduler_config(schnell, "s").at(123), 3.2);
  const auto error = [](nlohmann::json j) {
    try {
      parse_scheduler_config(j, "F/scheduler_config.json");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = dev;
    j[key] = v;
    return error(j);
  };
  EXPECT_EQ(with("shift_terminal", 0.02).rfind("F/scheduler_config.json: \"shift_terminal\"", 0), 0u);
  EXPECT_EQ(with("shift_terminal", nullptr), "no error");
  EXPECT_EQ(with("shift_terminal", 0), "no error");  // falsy in diffusers: no stretch
  EXPECT_NE(with("time_shift_type", "linear").find("\"time_shift_type\""), std::string::npos);
  EXPECT_EQ(with("time_shift_type", "exponential"), "no error");
  EXPECT_NE(with("use_karras_sigmas", true).find("\"use_karras_sigmas\""), std::string::npos);
  EXPECT_NE(with("max_shift", "1.15").find("\"max_shift\" must be a finite number"), std::string::npos);
  EXPECT_NE(with("max_image_seq_len", 256).find("\"max_image_seq_len\""), std::string::npos);
  EXPECT_NE(with("use_dynamic_shifting", 1).find("must be true or false"), std::string::npos);
  EXPECT_NE(with("_class_name", "DDIMScheduler").find("\"_class_name\""), std::string::npos);
  EXPECT_NE(error(nlohmann::json::array()).find("not a JSON object"), std::string::npos);
}

TEST(StepSchedule, AdapterMetadataRoundTripsAndOldFilesRead) {
  StepSchedule s;
  s.nfe = 4;
  s.shift = std::exp(1.15);
  s.timestep_ratio = 0.75;
  s.total_substeps = 64;
  io::Metadata meta = {{"policy", "gmflow"}};
  write_schedule(s, meta);
  EXPECT_EQ(meta.at("policy"), "gmflow");
  EXPECT_EQ(meta.at("nfe"), "4");
  EXPECT_EQ(meta.at("timestep_ratio"), "0.75");
  const StepSchedule back = read_schedule(meta, "a.safetensors");
  EXPECT_EQ(back.nfe, 4);
  EXPECT_EQ(back.shift, s.shift);  // exactly
  EXPECT_EQ(back.timestep_ratio, 0.75);
  EXPECT_EQ(back.total_substeps, 64);
  // As `arcflow distill` wrote them before (std::to_string), and without the later keys.
  const StepSchedule old = read_schedule({{"nfe", "2"}, {"shift", "3.200000"}}, "old.safetensors");
  EXPECT_EQ(old.shift, 3.2);
  EXPECT_EQ(old.timestep_ratio, 1.0);
  EXPECT_EQ(old.total_substeps, 128);
  StepSchedule defaults;
  defaults.total_substeps = 32;
  EXPECT_EQ(read_schedule({}, "x", defaults).total_substeps, 32);
  try {
    read_schedule({{"shift", "abc"}}, "bad.safetensors");
    ADD_FAILURE() << "read an unreadable shift";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.safetensors: unreadable 'shift'"), std::string::npos) << e.what();
  }
}
