// A diffusers model folder's scheduler as the shift rule its pipeline samples with
// (DIR/scheduler/scheduler_config.json, FlowMatchEulerDiscreteScheduler; ARCFLOW.md sections 7, 8):
//   use_dynamic_shifting false: the fixed "shift" (default 1);
//   use_dynamic_shifting true:  exp(mu), mu linear in the image token count from base_shift at
//     base_image_seq_len to max_shift at max_image_seq_len ("shift" is then unused, as in diffusers).
// Settings that change the sigmas in ways the rule does not express are refused with the key named
// (time_shift_type other than "exponential", a shift_terminal, Karras / exponential / beta sigmas,
// invert_sigmas), so a folder never samples at a schedule other than its own without saying so.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "arcflow/core/schedule.h"

namespace arcflow {

// The rule of a parsed scheduler_config.json; std::runtime_error naming `source` and the key.
ShiftRule parse_scheduler_config(const nlohmann::json& config, const std::string& source);
// The rule of DIR/scheduler/scheduler_config.json, or ShiftRule{} (fixed shift 1) when the folder
// has none. Errors as parse_scheduler_config's, or the file's when it cannot be read.
ShiftRule read_folder_shift_rule(const std::string& model_dir);

}  // namespace arcflow
