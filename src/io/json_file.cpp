#include "arcflow/io/json_file.h"

#include <stdexcept>

#include "arcflow/io/atomic_file.h"

namespace arcflow::io {

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
}

}  // namespace arcflow::io
