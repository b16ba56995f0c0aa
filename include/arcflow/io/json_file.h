// A JSON file read whole (a model folder's config.json, scheduler_config.json, an adapter folder's).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace arcflow::io {

// The parsed file. Throws std::runtime_error naming `path`: missing or unreadable (read_file's
// message), or "PATH: invalid JSON: ..." with the parser's position.
nlohmann::json read_json_file(const std::string& path);

}  // namespace arcflow::io
