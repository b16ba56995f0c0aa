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
