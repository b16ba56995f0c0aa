// What the evaluation tests share: a 28x28, 10-class DiT teacher with every parameter random (a
// fresh DiT outputs exactly 0 because of adaLN-Zero), a fresh small evaluation classifier, and the
// classifier's feature statistics of random images standing in for the test set, and the student
// that starts as its teacher.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include "arcflow/evaluation/fid.h"
#include "arcflow/evaluation/image_metrics.h"
#include "arcflow/models/classifier/classifier.h"
#include "arcflow/models/dit/dit.h"
#include "arcflow/models/student.h"

namespace arcflow::test {

inline DiTConfig eval_dit() {
  DiTConfig c;
  c.in_channels = 1;
  c.image_size = 28;
  c.patch = 14;
  c.width = 16;
  c.depth = 1;
  c.heads = 2;
  c.num_classes = 10;
  return c;
}

inline DiT random_eval_teacher(uint64_t seed = 0) {
  torch::manual_seed(seed);
  DiT t(eval_dit());
  torch::NoGradGuard g;
  for (auto& p : t->parameters()) p.normal_(0.0, 0.2);
  t->eval();
  return t;
}

inline Classifier tiny_classifier() {
  torch::manual_seed(1);
  ClassifierConfig c;
  c.channels = {4, 8};
  c.feature_dim = 8;
  c.num_classes = 10;
  Classifier m(c);
  m->eval();
  return m;
}

// A student of `teacher` with K components that starts as exactly its teacher's Euler for K = 1:
// zero LoRA B (as built), no head bias noise, no LoRA dropout; in eval mode.
inline LoRAStudent zero_lora_student(DiT& teacher, int64_t K) {
  torch::manual_seed(2);
  StudentConfig s;
  s.K = K;
  s.head_bias_noise = 0.0;
  s.lora.dropout = 0.0;
  LoRAStudent st(teacher.ptr(), s);
  st->eval();
  return st;
}

// Feature statistics of 40 uniform random images in [-1, 1].
inline FeatureStats random_reference_stats(Classifier& clf) {
  torch::manual_seed(3);
  return feature_stats(classify_images(clf, torch::rand({40, 1, 28, 28}) * 2 - 1).features);
}

}  // namespace arcflow::test
