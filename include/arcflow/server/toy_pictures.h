// The page's second tab: the 2-D toy's pictures as `arcflow toy -o DIR` and `arcflow demo` (DIR =
// demo/toy) write them (toy/report.h): paths_<method>.png (trajectories against the fine
// reference), samples_<method>.png, report.json. The server hands out only those files, by name.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace arcflow::server {

struct ToyPicture {
  std::string file;    // e.g. paths_arcflow-2.png
  std::string kind;    // "paths" or "samples"
  std::string method;  // e.g. arcflow-2
};

// The pictures in `dir`, trajectories first, then samples, each sorted by name; empty when the
// folder is absent or holds none.
std::vector<ToyPicture> list_toy_pictures(const std::string& dir);

// True for a file the server may serve from the toy folder: report.json, or paths_*.png /
// samples_*.png with a name of letters, digits, '.', '_' and '-' only (no '/', so nothing outside
// the folder).
bool is_toy_file_name(const std::string& name);

// GET /v1/toy: {"dir", "available", "pictures": [{file, kind, method, url}], "rows": report.json's
// rows (or null), "hint": which command makes the pictures (when none are there)}.
nlohmann::json toy_json(const std::string& dir);

// The whole file, or false when it cannot be read or is larger than max_bytes.
bool read_file_bytes(const std::string& path, std::string& out, size_t max_bytes = 16u << 20);

}  // namespace arcflow::server
