#include "arcflow/models/scheduler_config.h"

#include <cmath>
#include <stdexcept>

#include "arcflow/io/atomic_file.h"
#include "arcflow/io/json_file.h"
#include "arcflow/util/text.h"

namespace arcflow {

namespace {

const char* kScheduler = "FlowMatchEulerDiscreteScheduler";

}  // namespace

ShiftRule parse_scheduler_config(const nlohmann::json& j, const std::string& source) {
  const auto fail = [&](const std::string& key, const std::string& why) {
    throw std::runtime_error(source + ": \"" + key + "\" " + why);
  };
  if (!j.is_object()) throw std::runtime_error(source + ": not a JSON object");
  if (j.contains("_class_name") && !(j["_class_name"].is_string() && j["_class_name"] == kScheduler))
    fail("_class_name", std::string("is ") + j["_class_name"].dump() + "; arcflow reads " + kScheduler + " only");
  const auto number = [&](const char* key, double fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number() || !std::isfinite(j[key].get<double>())) fail(key, "must be a finite number");
    return j[key].get<double>();
  };
  const auto flag = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) return false;
    if (!j[key].is_boolean()) fail(key, "must be true or false");
    return j[key].get<bool>();
  };
  const auto integer = [&](const char* key, int64_t fallback) {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_number_integer()) fail(key, "must be an integer");
    return j[key].get<int64_t>();
  };
  ShiftRule r;
  r.shift = number("shift", 1.0);
  if (!(r.shift > 0)) fail("shift", "must be > 0, got " + format_number(r.shift));
  r.dynamic = flag("use_dynamic_shifting");
  r.base_shift = number("base_shift", r.base_shift);
  r.max_shift = number("max_shift", r.max_shift);
  r.base_seq_len = integer("base_image_seq_len", r.base_seq_len);
  r.max_seq_len = integer("max_image_seq_len", r.max_seq_len);
  if (r.dynamic && !(r.max_seq_len > r.base_seq_len))
    fail("max_image_seq_len", "must exceed base_image_seq_len (" + std::to_string(r.base_seq_len) + ")");
  if (j.contains("time_shift_type") && !(j["time_shift_type"].is_string() && j["time_shift_type"] == "exponential"))
    fail("time_shift_type", "is " + j["time_shift_type"].dump() + "; only \"exponential\" is supported");
  // diffusers stretches only when shift_terminal is truthy: null, absent and 0 leave the sigmas be.
  if (j.contains("shift_terminal") && !j["shift_terminal"].is_null() &&
      !(j["shift_terminal"].is_number() && j["shift_terminal"].get<double>() == 0.0))
    fail("shift_terminal", "(stretching the schedule to a terminal sigma) is not supported yet");
  for (const char* key : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"})
    if (flag(key)) fail(key, "is true; arcflow samples the shifted linear schedule only");
  return r;
}

ShiftRule read_folder_shift_rule(const std::string& model_dir) {
  const std::string path = join_path(model_dir, "scheduler/scheduler_config.json");
  if (!io::is_regular_file(path)) return ShiftRule{};
  return parse_scheduler_config(io::read_json_file(path), path);
}

}  // namespace arcflow
