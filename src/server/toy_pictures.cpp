#include "arcflow/server/toy_pictures.h"

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace arcflow::server {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }
bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

}  // namespace

bool is_toy_file_name(const std::string& name) {
  if (name == "report.json") return true;
  if (!(starts_with(name, "paths_") || starts_with(name, "samples_")) || !ends_with(name, ".png")) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return name.find("..") == std::string::npos;
}

std::vector<ToyPicture> list_toy_pictures(const std::string& dir) {
  std::vector<ToyPicture> paths, samples;
  if (dir.empty()) return {};
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return {};
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "report.json" || !is_toy_file_name(name)) continue;
    const bool is_paths = starts_with(name, "paths_");
    const size_t prefix = is_paths ? 6 : 8;
    ToyPicture p{name, is_paths ? "paths" : "samples", name.substr(prefix, name.size() - prefix - 4)};
    (is_paths ? paths : samples).push_back(p);
  }
  ::closedir(d);
  const auto by_name = [](const ToyPicture& a, const ToyPicture& b) { return a.file < b.file; };
  std::sort(paths.begin(), paths.end(), by_name);
  std::sort(samples.begin(), samples.end(), by_name);
  paths.insert(paths.end(), samples.begin(), samples.end());
  return paths;
}

bool read_file_bytes(const std::string& path, std::string& out, size_t max_bytes) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f && !f.eof()) return false;
  out = ss.str();
  return out.size() <= max_bytes;
}

nlohmann::json toy_json(const std::string& dir) {
  nlohmann::json pics = nlohmann::json::array();
  for (const ToyPicture& p : list_toy_pictures(dir))
    pics.push_back({{"file", p.file}, {"kind", p.kind}, {"method", p.method}, {"url", "/toy/" + p.file}});
  nlohmann::json j = {{"dir", dir}, {"available", !pics.empty()}, {"pictures", pics}, {"rows", nullptr}};
  std::string text;
  if (!dir.empty() && read_file_bytes(dir + "/report.json", text, 4u << 20)) {
    const nlohmann::json report = nlohmann::json::parse(text, nullptr, false);
    if (report.is_object() && report.contains("rows")) {
      j["rows"] = report["rows"];
      for (const char* key : {"data", "shift", "nfe", "K"})
        if (report.contains(key)) j[key] = report[key];
    }
  }
  if (pics.empty())
    j["hint"] = "no toy pictures in '" + dir +
                "': `arcflow demo` writes them to demo/toy/, `arcflow toy -o DIR` to DIR; then start "
                "`arcflow serve --toy-dir DIR`";
  return j;
}

}  // namespace arcflow::server
