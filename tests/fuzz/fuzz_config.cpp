// libFuzzer harness: parse_config (TOML settings files) on arbitrary text. Malformed input must
// throw std::runtime_error naming the source; accepted input gives flag-named entries.
#include <sstream>

#include "arcflow/io/config.h"
#include "fuzz_util.h"

using arcflow::fuzz::violation;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<arcflow::io::ConfigEntry> entries;
  try {
    entries = arcflow::io::parse_config(in, "input.toml");
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).rfind("input.toml:", 0) != 0) violation(std::string("error without the source: ") + e.what());
    return 0;
  } catch (const std::exception& e) {
    violation(std::string("not a runtime_error: ") + e.what());
  }
  for (const auto& e : entries) {
    if (e.key.find('_') != std::string::npos) violation("key '" + e.key + "' kept an underscore");
    if (e.line < 1) violation("entry '" + e.key + "' has no line number");
  }
  return 0;
}

void arcflow::fuzz::write_seeds(const std::string& dir) {
  write_seed(dir, "distill.toml",
             "# a distillation recipe\npolicy = \"arcflow\"\nk = 16\nlr = 3e-4\nnfe = 2\nema = true\n"
             "teacher_steps = [1, 2]\nname = 'x'\n");
  write_seed(dir, "table.toml", "[section]\nkey = 1\n");
  write_seed(dir, "nested.toml", "a = [[1, 2], [3]]\nb = 1979-05-27\nc = { x = 1 }\n");
  write_seed(dir, "strings.toml", "s = \"\"\"multi\nline\"\"\"\nt = 'lit'\nu = \"\\u00e9\"\nf = -inf\ng = nan\nh = 0x1F\n");
}
