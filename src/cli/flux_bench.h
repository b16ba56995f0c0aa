// `arcflow bench` on FLUX shapes (--teacher MODEL_DIR, or --random-weights --config flux-dev): FLOPs
// per NFE, ms per NFE and peak memory at each resolution, time per image of the teacher at 28 and
// 50 steps against 2 steps (the student's NFE count), and with --distill-iters the seconds per
// ArcFlow distillation iteration (batch 1, LoRA rank --lora-rank, the reference's recipe) and its
// peak memory, with and without per-block activation checkpointing.
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace arcflow::cli {

struct FluxBenchOptions {
  std::string model_dir;           // a FLUX model folder, or empty with random_weights
  bool random_weights = false;
  std::string config = "flux-dev";  // with --random-weights: flux-dev, flux-schnell, tiny, or a config.json
  std::vector<int64_t> resolutions{512, 1024};
  std::vector<int> teacher_steps{28, 50};
  int64_t text_tokens = 512;
  std::string dtype = "auto";
  int repeats = 3;
  int distill_iters = 0;  // timed distillation iterations per resolution (0: no distillation rows)
  int lora_rank = 256;    // the distillation rows' LoRA rank (the reference's for FLUX)
  std::string output = "bench-flux.json";
};

int run_flux_bench(const FluxBenchOptions& o, const GlobalOptions& g);

}  // namespace arcflow::cli
