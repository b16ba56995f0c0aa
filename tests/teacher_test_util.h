// Shared by the teacher-training tests (DiT and FLUX architectures).
#pragma once

#include "arcflow/training/teacher.h"

namespace arcflow::test {

// The mean loss of the first 10 and of the last 10 of `steps` (>= 20) training steps.
struct LossEnds {
  double first = 0, last = 0;
};

inline LossEnds train_loss_ends(TeacherTrainer& t, int steps) {
  LossEnds e;
  for (int i = 0; i < steps; ++i) {
    const double l = t.step().loss;
    if (i < 10) e.first += l / 10;
    if (i >= steps - 10) e.last += l / 10;
  }
  return e;
}

}  // namespace arcflow::test
