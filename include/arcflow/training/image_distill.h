// The image pipeline's distillation problem: a DiT student (LoRA + mixture head) imitating the
// class-conditional DiT teacher with classifier-free guidance (cond and null passes in one batch),
// for the generic Distiller of distill.h. Conditions are class labels drawn uniformly.
#pragma once

#include "arcflow/models/dit.h"
#include "arcflow/models/dit_student.h"
#include "arcflow/training/distill.h"

namespace arcflow {

// teacher is put in eval mode and frozen; student in train mode (LoRA dropout on).
DistillProblem make_dit_distill_problem(DiTStudent student, DiT teacher, double guidance, torch::Device device);

}  // namespace arcflow
